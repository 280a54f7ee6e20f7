"""Kill/resume drill: does an interrupted run end exactly where an uninterrupted one does?

For each training mode it runs one tiny config on the real 3-class ModelNet40 subset twice: once
straight through, and once interrupted the ways a real run is:

1. SIGINT (Ctrl-C) in the middle of epoch 2, then ``mode=resume``;
2. SIGKILL in the middle of epoch 3, then ``mode=resume``;
3. SIGKILL while a checkpoint is being written, then ``mode=resume`` to the end.

It reports, per mode, whether every epoch's logged loss and the final weights equal the
uninterrupted run's (bit for bit: both runs take the same CPU code path). The runs go through
``tools/main.py`` in child processes. To hit the windows reliably, the children slow down (never
change) two things: each backward pass sleeps ``--step-delay`` seconds, and each checkpoint sleeps
``--save-delay`` seconds between writing its temporary file and renaming it over the checkpoint.

Usage::

    python tools/fault_drill.py                                   # train, finetune, fewshot, pretrain
    python tools/fault_drill.py --modes train --out benchmarks/fault_drill.json

The JSON report goes to ``--out``; the run folders to ``--work``.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "modelnet40_normal_resampled"
MODES = ("train", "finetune", "fewshot", "pretrain")
EPOCHS = 4
TINY_DGCNN = ["num_points=128", "dataset.common.num_points=128", "model.encoder_args.channels=8",
              "model.encoder_args.k=8", "model.encoder_args.embed_dim=32", "dataloader.num_workers=0"]
EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) .*?\bloss ([-0-9.naif]+)")  # each mode's end-of-epoch log line


def _child(argv: Sequence[str]) -> int:
    """Run ``tools/main.py`` with slowed steps and checkpoint renames (``--child STEP SAVE -- ARGS``)."""
    step_delay, save_delay = float(argv[0]), float(argv[1])
    import torch

    backward, save = torch.Tensor.backward, torch.save

    def slow_backward(self, *args, **kwargs):
        result = backward(self, *args, **kwargs)
        time.sleep(step_delay)
        return result

    def slow_save(obj, f, *args, **kwargs):
        result = save(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)) and os.path.basename(str(f)).startswith(".ckpt_"):
            time.sleep(save_delay)  # the temporary file exists; the rename has not happened yet
        return result

    torch.Tensor.backward, torch.save = slow_backward, slow_save
    sys.path.insert(0, str(REPO / "tools"))
    from main import main

    return main(list(argv[3:]))


class Drill:
    """One mode's straight and interrupted runs.

    Args:
        name: the mode's name in the report.
        cfg: the experiment file.
        overrides: the key=value overrides of both runs.
        work: the folder under which both runs' root_dirs go.
        step_delay: seconds each backward pass sleeps in the children.
        save_delay: seconds each checkpoint write waits before its rename in the children.
        kill_after: seconds after an epoch's log line that "mid-epoch" signals are sent (well inside the
            next epoch at these step delays).
    """

    def __init__(self, name: str, cfg: str, overrides: List[str], work: Path, step_delay: float,
                 save_delay: float, kill_after: float = 1.0):
        self.name, self.cfg, self.overrides, self.work = name, cfg, overrides, work
        self.delays = [str(step_delay), str(save_delay)]
        self.kill_after = kill_after

    def _start(self, root: Path, extra: Sequence[str]) -> subprocess.Popen:
        args = [sys.executable, str(Path(__file__).resolve()), "--child", *self.delays, "--", "--cfg", self.cfg,
                f"root_dir={root}", *extra]
        log = open(root / "drill.out", "a")
        return subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @staticmethod
    def _run_log(root: Path) -> Optional[Path]:
        logs = glob.glob(str(root / "*" / "*" / "log.txt"))
        return Path(logs[0]) if logs else None

    def _epochs_logged(self, root: Path) -> int:
        log = self._run_log(root)
        return len(EPOCH_LINE.findall(log.read_text())) if log else 0

    def _wait(self, process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 900) -> bool:
        """Poll until ``ready()``; False when the process ended first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                return True
            if process.poll() is not None:
                return False
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: nothing happened for {timeout} s")

    def straight(self) -> Path:
        root = self.work / self.name / "straight"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        code = self._start(root, self.overrides).wait()
        if code != 0:
            raise RuntimeError(f"{self.name}: the uninterrupted run failed (exit {code}); see {root / 'drill.out'}")
        return root

    def interrupted(self) -> tuple[Path, List[Dict[str, object]]]:
        root = self.work / self.name / "drill"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        phases = []

        def interrupt(extra: Sequence[str], trigger: Callable[[], bool], sig: int, what: str) -> None:
            process = self._start(root, extra)
            hit = self._wait(process, trigger)
            if hit:
                os.killpg(process.pid, sig)
            code = process.wait()
            phases.append({"phase": what, "signal_sent": hit, "exit": code,
                           "epochs_logged": self._epochs_logged(root)})

        def mid_epoch(after: int) -> Callable[[], bool]:
            seen: Dict[str, float] = {}

            def ready() -> bool:  # kill_after seconds into the epoch after epoch `after`
                if self._epochs_logged(root) < after:
                    return False
                seen.setdefault("t", time.time())
                return time.time() - seen["t"] > self.kill_after
            return ready

        def writing_checkpoint() -> bool:
            return bool(glob.glob(str(root / "*" / "*" / ".ckpt_*.tmp")))

        resume = ["mode=resume"]
        interrupt(self.overrides, mid_epoch(1), signal.SIGINT, "SIGINT mid-epoch 2")
        interrupt(resume, mid_epoch(2), signal.SIGKILL, "SIGKILL mid-epoch 3")
        interrupt(resume, writing_checkpoint, signal.SIGKILL, "SIGKILL during a checkpoint write")
        code = self._start(root, resume).wait()
        phases.append({"phase": "resume to the end", "exit": code, "epochs_logged": self._epochs_logged(root)})
        return root, phases

    def compare(self, straight: Path, drilled: Path) -> Dict[str, object]:
        from plugin.io import read_checkpoint

        def losses(root: Path) -> Dict[int, str]:
            log = self._run_log(root)
            return {int(e): loss for e, _, loss in EPOCH_LINE.findall(log.read_text())} if log else {}

        def weights(root: Path) -> Dict[str, object]:
            path = glob.glob(str(root / "*" / "*" / "ckpt_latest.pth"))[0]
            return read_checkpoint(path, "drill")["model"]

        want, got = losses(straight), losses(drilled)
        a, b = weights(straight), weights(drilled)
        same_weights = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
        return {"losses_straight": want, "losses_resumed": got, "losses_equal": want == got and len(want) == EPOCHS,
                "final_weights_equal": same_weights}


def _drills(modes: Sequence[str], data_dir: Path, work: Path, step_delay: float, save_delay: float) -> List[Drill]:
    common = [f"dataset.common.data_dir={data_dir}", f"epochs={EPOCHS}", "seed=0"]
    dgcnn = str(REPO / "cfgs" / "modelnet40" / "dgcnn.yaml")
    drills = {
        "train": lambda: Drill("train", dgcnn, [*common, *TINY_DGCNN, "batch_size=32"], work, step_delay, save_delay),
        "finetune": lambda: Drill("finetune", dgcnn, [*common, *TINY_DGCNN, "batch_size=32", "mode=finetune",
                                                      f"pretrained_path={_pretrained(work, dgcnn, common)}"],
                                  work, step_delay, save_delay),
        "fewshot": lambda: Drill("fewshot", str(REPO / "cfgs" / "modelnet40" / "clip2point-gdpa-fewshot.yaml"),
                                 [*common, "model.clip.name=tiny-clip-test", "model.clip.pretrained=none",
                                  "pretrained_path=null", "fewshot.shots=16", "batch_size=8"],
                                 work, step_delay * 4, save_delay, kill_after=0.4),
        "pretrain": lambda: Drill("pretrain", str(REPO / "cfgs" / "shapenet" / "pic_at_point-dgcnn.yaml"),
                                  [f"dataset.common.data_dir={_views(work, data_dir)}", f"epochs={EPOCHS}", "seed=0",
                                   *TINY_DGCNN, "model.image_backbone.image_size=64", "batch_size=8",
                                   "model.embed_dim=32", "model.pose_dim=8"], work, step_delay * 10, save_delay),
    }
    return [drills[mode]() for mode in modes]


def _pretrained(work: Path, cfg: str, common: List[str]) -> Path:
    """A 1-epoch supervised checkpoint for the fine-tuning drill."""
    root = work / "finetune-source"
    found = glob.glob(str(root / "*" / "*" / "ckpt_best.pth"))
    if not found:
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, str(REPO / "tools" / "main.py"), "--cfg", cfg, f"root_dir={root}", *common,
                        *TINY_DGCNN, "batch_size=32", "epochs=1"], cwd=REPO, check=True, capture_output=True)
        found = glob.glob(str(root / "*" / "*" / "ckpt_best.pth"))
    return Path(found[0])


def _views(work: Path, data_dir: Path) -> Path:
    """64-pixel views of 48 objects per split for the pre-training drill (rendered once, resumable)."""
    out = work / "views"
    subprocess.run([sys.executable, str(REPO / "tools" / "render_views.py"), "--source", "modelnet40_normal_resampled",
                    "--data-dir", str(data_dir), "--out", str(out), "--limit", "48", "--image-size", "64",
                    "--workers", "1"], cwd=REPO, check=True, capture_output=True)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--data-dir", type=Path, default=DATA, help="modelnet40_normal_resampled folder")
    parser.add_argument("--work", type=Path, default=REPO / "log" / "fault_drill", help="run folders go here")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "fault_drill.json")
    parser.add_argument("--step-delay", type=float, default=0.05, help="seconds each backward pass sleeps")
    parser.add_argument("--save-delay", type=float, default=1.0, help="seconds between a checkpoint's write and rename")
    args = parser.parse_args(argv)
    if not (args.data_dir / "modelnet40_shape_names.txt").is_file():
        print(f"error: no ModelNet40 data at {args.data_dir}: pass --data-dir.", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    report = {}
    for drill in _drills(args.modes, args.data_dir.resolve(), args.work.resolve(), args.step_delay, args.save_delay):
        started = time.time()
        straight = drill.straight()
        drilled, phases = drill.interrupted()
        report[drill.name] = {"phases": phases, **drill.compare(straight, drilled),
                              "seconds": round(time.time() - started, 1)}
        result = report[drill.name]
        print(f"{drill.name:9s} losses equal: {result['losses_equal']}  final weights equal: "
              f"{result['final_weights_equal']}  ({result['seconds']} s)")
        for phase in phases:
            print(f"    {phase}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from plugin.io import save_json

    save_json(report, str(args.out))
    print(f"report: {args.out}")
    return 0 if all(r["losses_equal"] and r["final_weights_equal"] for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
