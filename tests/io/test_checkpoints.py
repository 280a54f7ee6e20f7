"""Checkpoints are read without running code; bad files give one sentence; RNG states round-trip."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plugin.errors import BadCheckpointError, WeightsNotFoundError
from plugin.io import read_checkpoint, restore_rng_state, rng_state_for_checkpoint

REPO = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this runs ``os.system`` (the attack a shared checkpoint can carry)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": _Payload(marker)}, evil)
    with pytest.raises(BadCheckpointError, match="could run code.*set load_path"):
        read_checkpoint(str(evil), "load_path")
    assert not marker.exists()


def test_a_malicious_checkpoint_through_the_runner_exits_2_and_runs_nothing(tmp_path, main_cli):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "x": _Payload(marker)}, evil)
    result = main_cli("--cfg", "cfgs/modelnet40/dgcnn.yaml", "mode=extract", f"load_path={evil}",
                      f"root_dir={tmp_path / 'log'}")
    assert result.returncode == 2 and not marker.exists()
    assert result.stderr.count("\n") == 1 and "could run code" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", os.urandom(512)], ids=["empty", "text", "random"])
def test_corrupt_files_are_one_sentence(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(BadCheckpointError, match=r"not a readable torch checkpoint .*: set pretrained_path to"):
        read_checkpoint(str(path), "pretrained_path")


def test_truncated_and_non_dict_checkpoints(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(BadCheckpointError, match="not a readable torch checkpoint"):
        read_checkpoint(str(path), "load_path")
    torch.save([torch.ones(2)], path)
    with pytest.raises(BadCheckpointError, match="holds a list, not a checkpoint dict"):
        read_checkpoint(str(path), "load_path")
    with pytest.raises(WeightsNotFoundError, match="does not exist: set load_path"):
        read_checkpoint(str(tmp_path / "missing.pth"), "load_path")


def test_rng_state_round_trips_through_a_safe_checkpoint(tmp_path):
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in NumPy's state
    path = tmp_path / "rng.pth"
    torch.save({"rng": rng_state_for_checkpoint()}, path)
    want = (np.random.rand(5), np.random.normal(size=3), torch.rand(5))
    restore_rng_state(read_checkpoint(str(path), "load_path")["rng"])
    got = (np.random.rand(5), np.random.normal(size=3), torch.rand(5))
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and torch.equal(want[2], got[2])


def test_checkpoints_with_the_older_numpy_rng_tuple_still_load(tmp_path):
    # Checkpoints written before the RNG state became tensors pickled NumPy's state tuple.
    np.random.seed(5)
    path = tmp_path / "old.pth"
    torch.save({"rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}, "epoch": 1}, path)
    want = np.random.rand(4)
    state = read_checkpoint(str(path), "load_path")
    restore_rng_state(state["rng"])
    assert state["epoch"] == 1 and np.array_equal(np.random.rand(4), want)


@pytest.fixture
def main_cli():
    """Run ``tools/main.py`` in a subprocess from the repository root."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "tools/main.py", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=300)
    return run


def test_checkpoints_whose_config_holds_openpoints_transforms_still_load(tmp_path):
    # Before the dataloader builder got a copy of the config, OpenPoints wrote its built transforms into it.
    from openpoints.transforms import build_transforms_from_cfg
    from openpoints.utils import EasyConfig

    transforms = build_transforms_from_cfg("train", EasyConfig({"train": ["PointsToTensor",
                                                                          "PointCloudScaleAndTranslate"]}))
    path = tmp_path / "old.pth"
    torch.save({"epoch": 2, "best_oa": np.float64(90.5),
                "cfg": {"dataset": {"train": {"split": "train", "transform": transforms}}}}, path)
    state = read_checkpoint(str(path), "run_dir")
    assert state["epoch"] == 2 and state["best_oa"] == 90.5
    assert type(state["cfg"]["dataset"]["train"]["transform"]).__name__ == "Compose"
