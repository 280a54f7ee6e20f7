"""The fingerprinted on-disk cache: records in both formats, misses on stale or corrupt files, optional writes."""
import errno
import logging
import os

import numpy as np
import pytest
import torch

from plugin.io import fingerprint, read_record, write_optional, write_record


@pytest.mark.parametrize("name, key_field", [("features.npz", "fingerprint"), ("text.pt", "key")])
def test_a_record_is_read_back_only_with_its_fingerprint(tmp_path, name, key_field):
    path = str(tmp_path / name)
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    record = {"values": values if name.endswith(".npz") else torch.from_numpy(values)}
    key = fingerprint({"split": "train"})
    assert read_record(path, key, key_field) is None                                   # absent
    write_record(path, record, key, "root_dir", key_field)
    got = read_record(path, key, key_field)
    assert np.array_equal(np.asarray(got["values"]), values) and str(got[key_field]) == key
    assert read_record(path, fingerprint({"split": "test"}), key_field) is None        # stale
    assert [p.name for p in tmp_path.iterdir()] == [name]                               # atomic: no temp file left


def test_a_corrupt_record_is_a_miss_with_a_warning(tmp_path, caplog):
    path = tmp_path / "features.npz"
    path.write_bytes(b"not a zip")
    with caplog.at_level(logging.WARNING, logger="plugin"):
        assert read_record(str(path), "k") is None
    assert "is unreadable: recomputing" in caplog.text


def test_fingerprint_key_order():
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1, "b": 2}, sort_keys=False) != fingerprint({"b": 2, "a": 1}, sort_keys=False)


def test_an_optional_write_that_fails_only_warns(caplog):
    def full():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with caplog.at_level(logging.WARNING, logger="plugin"):
        assert write_optional(full, "FPS cache x.npy") is False
    assert "FPS cache x.npy not cached" in caplog.text and "No space left" in caplog.text
    assert write_optional(lambda: None, "y") is True
