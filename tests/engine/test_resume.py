"""``mode=resume`` continues the right run with its own config, alone, from its newest readable checkpoint."""
import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from plugin.engine.run_folder import LOCK_FILE, RunFolder
from plugin.io import read_checkpoint

from .conftest import DGCNN_CFG, only_run, tiny_overrides


def _run(root: Path) -> Path:
    runs = list((root / "modelnet40").glob("dgcnn-*"))
    assert len(runs) == 1, runs
    return runs[0]


def _resume(main, root: Path, *extra: str) -> int:
    return main(["--cfg", DGCNN_CFG, f"root_dir={root}", "mode=resume", *extra])


@pytest.fixture
def one_epoch(tiny_modelnet, tmp_path, main) -> Path:
    """A finished 1-epoch run at 128 points, batch 6 (the experiment file says 1024 points, batch 32)."""
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path, epochs=1)]) == 0
    return _run(tmp_path)


def test_a_bare_resume_keeps_the_runs_config(one_epoch, tmp_path, main):
    cfg_yaml = (one_epoch / "cfg.yaml").read_bytes()
    first = json.loads((one_epoch / "metrics.json").read_text())["seconds"]
    assert _resume(main, tmp_path, "epochs=2") == 0
    state = read_checkpoint(str(one_epoch / "ckpt_latest.pth"), "run_dir")
    assert state["epoch"] == 2 and state["cfg"]["num_points"] == 128 and state["cfg"]["batch_size"] == 6
    assert (one_epoch / "cfg.yaml").read_bytes() == cfg_yaml                       # never rewritten
    log = (one_epoch / "log.txt").read_text()
    assert "resume: ckpt_latest.pth after epoch 1" in log and "extended to 2 epochs" in log
    assert json.loads((one_epoch / "metrics.json").read_text())["seconds"] > first  # summed over segments


def test_other_overrides_are_refused(one_epoch, tmp_path, main, capsys):
    before = (one_epoch / "ckpt_latest.pth").read_bytes()
    assert _resume(main, tmp_path, "epochs=2", "batch_size=4") == 2
    err = capsys.readouterr().err.strip()
    assert "'batch_size=4' cannot be applied" in err and len(err.splitlines()) == 1
    assert (one_epoch / "ckpt_latest.pth").read_bytes() == before


def test_a_live_run_is_refused_and_a_dead_ones_lock_taken_over(one_epoch, tmp_path, main, capsys):
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (one_epoch / LOCK_FILE).write_text(json.dumps({"pid": writer.pid, "host": socket.gethostname()}))
        assert _resume(main, tmp_path, "epochs=2") == 2
        err = capsys.readouterr().err
        assert f"is being written by process {writer.pid}" in err
    finally:
        writer.kill()
        writer.wait()
    assert _resume(main, tmp_path, "epochs=2") == 0           # the holder died: its lock is stale
    assert not (one_epoch / LOCK_FILE).exists()                # freed when the run finished


def test_resume_picks_exactly_its_experiment(tmp_path):
    task = tmp_path / "modelnet40"
    for name in ("clip2point-20261130-010000", "clip2point-gdpa-finetune-20261130-020000",
                 "clip2point-20261130-010000-1-extra"):
        (task / name).mkdir(parents=True)
        (task / name / "ckpt_latest.pth").write_bytes(b"")
    assert RunFolder.latest(str(tmp_path), "modelnet40", "clip2point") == str(task / "clip2point-20261130-010000")
    assert RunFolder.latest(str(tmp_path), "modelnet40", "clip2point-gdpa") is None


def test_a_killed_first_save_resumes_from_ckpt_best_and_sweeps_debris(one_epoch, tmp_path, main):
    os.remove(one_epoch / "ckpt_latest.pth")                   # killed while writing the first ckpt_latest.pth
    (one_epoch / ".ckpt_latest.pth.abc123.tmp").write_bytes(b"partial")
    assert _resume(main, tmp_path, "epochs=2") == 0
    assert read_checkpoint(str(one_epoch / "ckpt_latest.pth"), "run_dir")["epoch"] == 2
    assert not list(one_epoch.glob(".*.tmp"))


def _create(args):
    root, barrier = args
    barrier.wait()
    folder = RunFolder.create(root, "task", "exp")
    folder.release()
    return folder.path


def test_concurrent_creates_get_distinct_folders(tmp_path):
    context = multiprocessing.get_context("fork")  # cheap: the children only make folders
    with context.Manager() as manager:
        barrier = manager.Barrier(16)
        with context.Pool(16) as pool:
            paths = pool.map(_create, [(str(tmp_path), barrier)] * 16)
    assert len(set(paths)) == 16


def test_a_resumed_run_keeps_every_epoch_in_history_json(tiny_modelnet, tmp_path, main):
    assert main(["--cfg", DGCNN_CFG, *tiny_overrides(tiny_modelnet, tmp_path, epochs=1)]) == 0
    run = only_run(tmp_path)
    assert main(["--cfg", DGCNN_CFG, f"root_dir={tmp_path}", "mode=resume", "epochs=2"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2]
    logged = [line for line in (run / "log.txt").read_text().splitlines() if " epoch 2/2 loss " in line]
    assert history[1]["loss"] == pytest.approx(float(logged[0].split(" loss ")[1].split()[0]), abs=1e-4)
    assert {"val_oa", "lr", "data_wait"} <= set(history[1])
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
