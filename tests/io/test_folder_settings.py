"""A rerun's settings against an output folder's ``meta.json``: the first setting that differs is one sentence."""
import json

import pytest

from plugin.io import settings_conflict

OPTIONS = {"source": None, "views": "--views", "num_points": "--num-points"}
REDO = "--overwrite to import every object again"


def _conflict(out, **settings):
    return settings_conflict(out, {"source": "a", "views": 30, "num_points": None, **settings}, OPTIONS,
                             "objects imported", REDO)


def test_a_folder_without_meta_or_with_the_same_settings_resumes(tmp_path):
    assert _conflict(tmp_path) is None
    (tmp_path / "meta.json").write_text(json.dumps({"source": "a", "views": 30, "num_points": None, "extra": 1}))
    assert _conflict(tmp_path) is None


def test_the_first_setting_that_differs_is_named(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"source": "a", "views": 30, "num_points": None}))
    message = _conflict(tmp_path, views=12, num_points=64)
    assert message == (f"'{tmp_path}' holds objects imported with --views 30, not 12 (its meta.json), and the two "
                       f"would mix: pass --views 30 to resume, another --out, or {REDO}.")
    assert "--num-points all, not 64" in _conflict(tmp_path, num_points=64)         # None is shown as all
    assert _conflict(tmp_path, source="b") == f"'{tmp_path}' holds another dataset ('a', not 'b'): pass another --out."


@pytest.mark.parametrize("text, problem", [("{not json", "is unreadable (JSONDecodeError)"),
                                           ("[1]", "holds no settings")])
def test_an_unusable_meta_is_one_sentence(tmp_path, text, problem):
    (tmp_path / "meta.json").write_text(text)
    message = _conflict(tmp_path)
    assert problem in message and message.endswith(f"pass {REDO}, or another --out.")


def test_prepare_reads_older_formats_and_unrecorded_settings_are_not_compared(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"source": "old-a", "num_points": 64}))
    assert _conflict(tmp_path, num_points=64, source="old-a") is None                 # no views recorded
    renamed = settings_conflict(tmp_path, {"source": "a", "views": 30, "num_points": 64}, OPTIONS, "objects imported",
                                REDO, prepare=lambda meta: dict(meta, source=meta["source"].replace("old-", "")))
    assert renamed is None
