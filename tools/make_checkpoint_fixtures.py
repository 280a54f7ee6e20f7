"""Write the small legacy-checkpoint fixtures of ``tests/engine/test_legacy_checkpoints.py``.

Each fixture is the ``ckpt_latest.pth`` of a tiny one-epoch run of ``tools/main.py``, so the test freezes
today's on-disk layout: after any refactor, checkpoints written by this code must still load through every
mode that reads them. The fixtures that the test resumes are copied byte for byte; the two that only
downstream modes read were too large as written and lose what no downstream mode reads (``Run.strip``:
frozen random image-backbone weights, optimizer and RNG states), the rest saved again with ``torch.save``.
The four runs, on a tiny synthetic dataset written to a temporary
folder (3 classes x (8 train + 4 test) clouds of 256 points in the ``modelnet40_normal_resampled``
layout, the same layout and classes as ``tests/engine/conftest.py``'s ``tiny_modelnet``; views rendered
by ``tools/render_views.py`` at 64 px):

- ``pic_at_point.pth``: ``PicAtPoint`` pre-training (``cfgs/shapenet/pic_at_point-dgcnn.yaml``, a tiny
  DGCNN against timm's tiny ``test_efficientnet``), mode ``pretrain``, exports ``encoder``;
- ``basecls_finetune.pth``: ``BaseCls`` fine-tuned from it (``cfgs/modelnet40/dgcnn.yaml mode=finetune``);
- ``clip2point.pth``: CLIP2Point image-depth pre-training (``cfgs/shapenet/clip2point.yaml``) with the tiny
  random CLIP ``tiny-clip-test``, exports ``depth_encoder``;
- ``gdpa_fewshot.pth``: the Gated Dual-Path Adapter, 2-shot (``cfgs/modelnet40/clip2point-gdpa-fewshot.yaml``)
  on the depth encoder of ``clip2point.pth``.

The runs start in the temporary folder with relative paths (``data/...``, ``root_dir=log``), so the
configs stored in the checkpoints name ``data/modelnet40_normal_resampled``, ``data/views`` and
``pretrained/<fixture>.pth``: a test that resumes a fixture runs in a folder where those paths hold its own
tiny data and the fixtures.

``manifest.json`` records, per fixture, the command (config and overrides), the mode, epoch, size and
SHA-256 and what was stripped, and for all of them the commit (``git rev-parse HEAD``), whether the tree had uncommitted
changes, and the torch version; ``README.md`` says the same for people. Run from a clean checkout (or
``git archive HEAD`` export, with ``--commit``) so the fixtures are the commit's own.

Examples::

    python tools/make_checkpoint_fixtures.py --out tests/fixtures/checkpoints
    # from a clean export of HEAD while the checkout has uncommitted changes:
    git archive HEAD | tar -x -C /tmp/src && cp tools/make_checkpoint_fixtures.py /tmp/src/tools/ && cd /tmp/src \
        && python tools/make_checkpoint_fixtures.py --out <checkout>/tests/fixtures/checkpoints \
           --commit $(git -C <checkout> rev-parse HEAD)
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "bathtub", "bed"]  # as tests/engine/conftest.py's tiny_modelnet
MODELNET = "data/modelnet40_normal_resampled"
VIEWS = "data/views"
PRETRAINED = "pretrained"  # the runs that read an earlier fixture find it here
MAX_BYTES = 150_000  # default --max-bytes: a larger fixture is refused

ENCODER = ["model.encoder_args.channels=4", "model.encoder_args.k=4", "model.encoder_args.embed_dim=16",
           "model.encoder_args.n_blocks=3"]
TINY_CLIP = ["model.clip.name=tiny-clip-test", "model.clip.pretrained=none"]
COMMON = ["root_dir=log", "dataloader.num_workers=0", "seed=0"]
MODELNET_DATA = [f"dataset.common.data_dir={MODELNET}", "dataset.common.num_points=128", "num_points=128",
                 "num_classes=3"]

class Run(NamedTuple):
    """One fixture's run of ``tools/main.py``."""

    cfg: str                   # experiment file, relative to the repository
    overrides: List[str]       # besides COMMON
    reads: Optional[str]       # the earlier fixture it reads through pretrained_path, or None
    what: str                  # for the README
    strip: Tuple[str, ...] = ()  # removed from the checkpoint, only where its size demands it: top-level
    #                              keys ("optimizer") or prefixes of 'model' entries ("model.image_backbone.")


RUNS = {
    # test_efficientnet, timm's smallest features-only model, is still 84k frozen parameters (340 KB): its
    # random weights are stripped, so the file no longer resumes, and with them the optimizer and RNG states that
    # only resume reads; 'encoder' and 'encoder_args' (what svm and finetune read), 'model' and the rest stay
    "pic_at_point": Run("cfgs/shapenet/pic_at_point-dgcnn.yaml", [
        *ENCODER, "model.embed_dim=8", "model.pose_dim=2", "model.image_backbone.name=test_efficientnet",
        "model.image_backbone.weights=none", "model.image_backbone.image_size=64",
        f"dataset.common.data_dir={VIEWS}", "dataset.common.num_points=128", "batch_size=4", "epochs=1"],
        None, "PicAtPoint pre-training (mode pretrain, exports 'encoder')",
        strip=("model.image_backbone.", "optimizer", "rng")),
    "basecls_finetune": Run("cfgs/modelnet40/dgcnn.yaml", [
        "mode=finetune", *ENCODER, *MODELNET_DATA, "model.cls_args.num_classes=3", "model.cls_args.mlps=[8]",
        "batch_size=6", "val_batch_size=12", "lr=0.01", "epochs=1"],
        "pic_at_point", "BaseCls fine-tuned from pic_at_point.pth (mode finetune, 'model' with 'encoder.*')"),
    "clip2point": Run("cfgs/shapenet/clip2point.yaml", [
        *TINY_CLIP, f"dataset.common.data_dir={VIEWS}", "dataset.common.num_points=128", "batch_size=4",
        "val_batch_size=4", "pretrain.holdout=0.25", "epochs=1"],
        # the tiny CLIP's visual tower is 20.6k parameters (82 KB), and LAMB's two moments double it again:
        # the optimizer and RNG states, which only resume reads, are stripped (zeroshot and the adapters read
        # 'depth_encoder' and 'clip'; 'model' shares its tensors with 'depth_encoder', so it costs nothing)
        None, "CLIP2Point pre-training with tiny-clip-test (mode pretrain, exports 'depth_encoder')",
        strip=("optimizer", "rng")),
    "gdpa_fewshot": Run("cfgs/modelnet40/clip2point-gdpa-fewshot.yaml", [
        *TINY_CLIP, *MODELNET_DATA, "fewshot.shots=2", "batch_size=4", "val_batch_size=12", "lr=0.01",
        "model.render.dilation=1", "model.text_cache=None", "model.hidden_dim=4", "epochs=1"],
        "clip2point", "Gated Dual-Path Adapter, 2-shot, on clip2point.pth's depth encoder (mode fewshot)"),
}


def tiny_shape(label: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """Class 0: a unit sphere, 1: a cube surface, 2: a thin cylinder; xyz plus outward normals, (n, 6)."""
    if label == 0:
        p = rng.normal(size=(n, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
    elif label == 1:
        p = rng.uniform(-0.8, 0.8, (n, 3))
        face = rng.integers(0, 3, n)
        p[np.arange(n), face] = np.sign(rng.uniform(-1, 1, n)) * 0.8
    else:
        angle = rng.uniform(0, 2 * np.pi, n)
        p = np.c_[0.2 * np.cos(angle), 0.2 * np.sin(angle), rng.uniform(-1, 1, n)]
    p = p + 0.01 * rng.normal(size=p.shape)
    normals = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-6)
    return np.c_[p, normals]


def write_modelnet(root: Path, per_class_train: int = 8, per_class_test: int = 4, points: int = 256) -> None:
    """A tiny ``modelnet40_normal_resampled`` folder of :data:`CLASSES` at ``root``."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(CLASSES) + "\n")
    splits: Dict[str, List[str]] = {"train": [], "test": []}
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(per_class_train + per_class_test):
            shape_id = f"{name}_{i + 1:04d}"
            np.savetxt(root / name / f"{shape_id}.txt", tiny_shape(label, rng, points), fmt="%.6f", delimiter=",")
            splits["train" if i < per_class_train else "test"].append(shape_id)
    for split, ids in splits.items():
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")


def _call(argv: List[str], cwd: Path) -> None:
    """Run ``argv`` in ``cwd`` with this interpreter; stop with its output when it fails."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(argv)} exited with {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def _commit(given: Optional[str]) -> Dict[str, object]:
    """``{"commit", "dirty"}`` of this checkout (read-only git queries), or the ``--commit`` given for an export."""
    def git(*args: str) -> Optional[str]:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    head = git("rev-parse", "HEAD")
    if head is None or given:
        return {"commit": given or "unknown", "dirty": None, "source": "export of the commit (--commit)"}
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head, "dirty": bool(changes), "source": "checkout"}


def _strip(state: Dict[str, object], strip: Tuple[str, ...]) -> Dict[str, int]:
    """Remove ``strip``'s entries from ``state`` in place; returns how many tensors each removed."""
    removed = {}
    for entry in strip:
        if entry.startswith("model."):
            keys = [k for k in state["model"] if k.startswith(entry[len("model."):])]
            for key in keys:
                del state["model"][key]
            removed[entry] = len(keys)
        else:
            removed[entry] = _tensor_count(state.pop(entry))
    return removed


def _tensor_count(value: object) -> int:
    """Tensors in ``value`` (nested dicts, lists and tuples)."""
    if isinstance(value, dict):
        return sum(_tensor_count(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_count(v) for v in value)
    import torch

    return int(torch.is_tensor(value))


def make(out: Path, work: Path, commit: Optional[str], max_bytes: int = MAX_BYTES) -> Dict[str, object]:
    """Write the data, run :data:`RUNS` in ``work`` and copy their checkpoints into ``out``; returns the manifest."""
    import torch

    write_modelnet(work / MODELNET)
    _call([str(REPO / "tools" / "render_views.py"), "--source", "modelnet40_normal_resampled", "--data-dir", MODELNET,
           "--out", VIEWS, "--num-points", "256", "--image-size", "64", "--workers", "1"], work)
    out.mkdir(parents=True, exist_ok=True)
    manifest: Dict[str, object] = {**_commit(commit), "torch": torch.__version__, "fixtures": {}}
    for name, (cfg, overrides, reads, what, strip) in RUNS.items():
        overrides = [*COMMON, *overrides]
        if reads is not None:  # a relative path, as the data's: the fixture's config names no folder of this machine
            (work / PRETRAINED).mkdir(exist_ok=True)
            shutil.copyfile(out / f"{reads}.pth", work / PRETRAINED / f"{reads}.pth")
            overrides.append(f"pretrained_path={PRETRAINED}/{reads}.pth")
        _call([str(REPO / "tools" / "main.py"), "--cfg", str(REPO / cfg), *overrides], work)
        task, exp = Path(cfg).parent.name, Path(cfg).stem
        (run,) = [p for p in (work / "log" / task).glob(f"{exp}-*") if p.is_dir()]
        target, written = out / f"{name}.pth", run / "ckpt_latest.pth"
        written_bytes = written.stat().st_size
        state = torch.load(written, map_location="cpu", weights_only=True)
        stripped = _strip(state, strip)
        if stripped:
            torch.save(state, target)  # torch.load kept shared storages shared, so save keeps them too
        else:
            shutil.copyfile(written, target)  # byte for byte
        size = target.stat().st_size
        if size > max_bytes:
            sys.exit(f"error: {target} is {size} bytes, over the {max_bytes} of --max-bytes: shrink its run.")
        shutil.rmtree(run)  # a later run of the same experiment finds only its own folder
        manifest["fixtures"][name] = {
            "file": target.name, "what": what, "cfg": cfg,
            "overrides": overrides, "reads": None if reads is None else f"{reads}.pth", "run_name": run.name,
            "mode": state.get("mode"), "epoch": state.get("epoch"), "keys": sorted(state),
            "bytes": size, "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
            "written_bytes": written_bytes,
            "stripped": stripped or None}
        print(f"{target}: {size} bytes, mode {state.get('mode')}, epoch {state.get('epoch')}")
    return manifest


def readme(manifest: Dict[str, object]) -> str:
    """The fixtures' README: what each file is, and the command and commit that wrote it."""
    def stripped(f: Dict[str, object]) -> str:
        if not f["stripped"]:
            return "nothing: byte for byte as written"
        removed = ", ".join(f"`{k}` ({n} tensors)" for k, n in f["stripped"].items())
        return f"{removed} (as written: {f['written_bytes']:,} bytes)"

    rows = "\n".join(f"| `{f['file']}` | {f['bytes']:,} | {f['what']} | `{f['cfg']}` | {stripped(f)} |"
                     for f in manifest["fixtures"].values())
    dirty = {True: " (with uncommitted changes)", False: "", None: ""}[manifest["dirty"]]
    exported = manifest["dirty"] is None
    where = " (in a `git archive` export of that commit, run with this checkout's `.venv`)" if exported else ""
    commit_option = f" --commit {manifest['commit']}" if exported else ""
    return f"""# Legacy checkpoint fixtures

Checkpoints written by the code of commit `{manifest['commit']}`{dirty} (torch {manifest['torch']}), each the
`ckpt_latest.pth` of a tiny one-epoch run. `tests/engine/test_legacy_checkpoints.py` loads them through every
mode that reads them, so a change that breaks loading checkpoints of earlier runs fails there. Do not
regenerate them to make that test pass: they stand for the checkpoints users already have.

The two that the test resumes are byte for byte as written. The two that only downstream modes read were
too large as written, so the script removed what no downstream mode reads (frozen random image-backbone
weights, optimizer and RNG states) and saved the rest with `torch.save`; those two no longer resume.

| file | bytes | what | config | removed |
| --- | --- | --- | --- | --- |
{rows}

Written by{where}

```bash
python tools/make_checkpoint_fixtures.py --out tests/fixtures/checkpoints{commit_option}
```

on a tiny synthetic dataset (3 classes x 12 clouds of 256 points; views rendered at 64 px). The runs used
relative paths, so the configs stored in the checkpoints read `{MODELNET}`, `{VIEWS}` and
`{PRETRAINED}/<fixture>.pth` (the fine-tune and the adapter read the fixture before them);
`manifest.json` lists each run's overrides, mode, epoch, top-level keys, size and SHA-256.
"""


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="tests/fixtures/checkpoints", help="folder of the fixtures (and README)")
    parser.add_argument("--commit", default=None,
                        help="commit to record when this is not a git checkout (e.g. a git archive export)")
    parser.add_argument("--work", default=None, help="keep the data and runs in this folder (default: a temp one)")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="largest fixture accepted")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if args.work:
        Path(args.work).mkdir(parents=True)
        manifest = make(out, Path(args.work).resolve(), args.commit, args.max_bytes)
    else:
        with tempfile.TemporaryDirectory(prefix="ckpt-fixtures-") as work:
            manifest = make(out, Path(work), args.commit, args.max_bytes)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "README.md").write_text(readme(manifest))
    total = sum(f["bytes"] for f in manifest["fixtures"].values())
    print(f"{len(manifest['fixtures'])} fixtures, {total} bytes, in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
