"""``mode=selftrain`` (Cross-MoST) end to end at tiny size through ``tools/main.py``: a run from a CLIPAlign alignment
export with the text-initialised classifier (figures, history, curves, frozen tokenizer, EMA teacher's momentum ramp),
a killed run resumed bit for bit on CPU, the ``examples`` classifier that reads one label per class, and the
one-sentence refusals of bad settings.

Tiny: the tiny random CLIP (``tiny-clip-test``, 32 px, 32-d), a one-block PointViTEncoder of 32-d tokens, a
rendered-views folder of 3 classes with 8 train and 3 test objects of 2 views (``write_pairs_folder``), 64 points,
batch 4 (2 updates per epoch), no workers.
"""
import functools
import json
import re
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch

from plugin.engine.modes.selftrain import SelfTrainRunner
from plugin.models import CLIPAlign
from plugin.models.pretext.cross_most import CrossMoST
from tests.conftest import REPO, one_sentence
from tests.datasets.conftest import write_pairs_folder
from tests.engine.ddp import WORLD, needs_gloo, run_ranks

CFG = str(REPO / "cfgs" / "modelnet40" / "cross_most.yaml")
DEMO_CFG = str(REPO / "cfgs" / "demo_cross_most" / "default.yaml")   # PointNeXt-S: a point encoder without tokens
CLASSES = ("airplane", "chair", "lamp")
TRAIN, TEST, VIEWS, SIZE, STORED_POINTS, POINTS, BATCH = 8, 3, 2, 32, 96, 64, 4
UPDATES_PER_EPOCH = TRAIN // BATCH                       # the train loader drops the incomplete last batch
ENCODER: Dict[str, Any] = {"NAME": "PointViTEncoder", "embed_dim": 32, "depth": 1, "num_heads": 2, "group_dim": 32,
                           "num_groups": 8, "group_size": 8, "drop_path_rate": 0.0}
CLIP_DIM = 32                                            # tiny-clip-test's embedding width
MOMENTUM = {"start": 0.99, "end": 0.9998, "ramp_steps": 400}   # cfgs/_blocks/cross_most.yaml's teacher
WHO, BRANCHES, FIGURES = ("student", "teacher"), ("image", "image_star", "point"), ("top1", "entropy", "bias")
EVALUATION_KEYS = {f"{who}_{branch}_{figure}" for who in WHO for branch in BRANCHES for figure in FIGURES}
TIMING_KEYS = {"data_wait"}                              # wall-clock shares: never equal between two runs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """The rendered-views folder: 3 classes (object ``k`` of a split has label ``k % 3``), each its own proportions."""
    rng = np.random.default_rng(0)

    def cloud(label: int) -> np.ndarray:
        return rng.normal(size=(STORED_POINTS, 3)) * np.array([1.0 + label, 1.0, 0.5 + 0.5 * label])

    return write_pairs_folder(tmp_path_factory.mktemp("selftrain") / "views",
                              {"train": [cloud(k % 3) for k in range(TRAIN)],
                               "test": [cloud(k % 3) for k in range(TEST)]},
                              classes=CLASSES, views=VIEWS, side=SIZE)


@pytest.fixture(scope="module")
def alignment(pairs) -> Path:
    """A CLIPAlign alignment export (what ``model.init: aligned`` reads) of the tiny encoder, D = the tiny CLIP's."""
    with torch.random.fork_rng():
        torch.manual_seed(1234)                          # weights unlike those CrossMoST draws itself
        model = CLIPAlign(ENCODER, objective="plain", embed_dim=CLIP_DIM)
    path = pairs.parent / "alignment.pth"
    torch.save(model.checkpoint_entries(), path)
    return path


def selftrain_args(pairs: Path, alignment: Path, root: Path, *extra: str, epochs: int = 2) -> List[str]:
    """``tools/main.py`` arguments of a tiny Cross-MoST run of ``cfgs/modelnet40/cross_most.yaml`` under ``root``:
    pseudo-labels always kept (threshold 0), lr 1e-3 instead of the recipe's 2e-5 x batch / 256, on the CPU."""
    return ["--cfg", CFG, "device=cpu", f"root_dir={root}", f"dataset.common.data_dir={pairs}",
            f"dataset.common.num_points={POINTS}", f"dataset.common.image_size={SIZE}",
            "model.image_encoder.name=tiny-clip-test", "model.image_encoder.pretrained=none",
            *[f"model.encoder_args.{key}={value}" for key, value in ENCODER.items()],
            f"pretrained_path={alignment}", f"batch_size={BATCH}", f"val_batch_size={BATCH}", f"epochs={epochs}",
            "model.threshold=0.0", "selftrain.base_lr=null", "lr=1.0e-3", "dataloader.num_workers=0", *extra]


def run_folder(root: Path) -> Path:
    """The one run folder under ``root/modelnet40``."""
    runs = [p for p in (root / "modelnet40").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def load(path: Path) -> Dict[str, Any]:
    """A checkpoint, as the project reads them (``weights_only``)."""
    return torch.load(path, weights_only=True)


def momentum_after(updates: int) -> float:
    """The teacher's momentum of its last update after ``updates`` optimizer updates (``EmaHook`` updates with the
    schedule at ``loop.updates``, which already counts the update: step U after U updates)."""
    progress = min(updates / MOMENTUM["ramp_steps"], 1.0)
    return MOMENTUM["start"] + (MOMENTUM["end"] - MOMENTUM["start"]) * progress


@pytest.fixture(scope="module")
def straight(pairs, alignment, main, tmp_path_factory) -> Path:
    """A finished 2-epoch run (the uninterrupted reference of the resume test too)."""
    root = tmp_path_factory.mktemp("straight")
    assert main(selftrain_args(pairs, alignment, root)) == 0
    return run_folder(root)


# ---- a run from the alignment export --------------------------------------------------------------------------

def test_a_run_reports_the_start_and_both_models_per_branch(straight):
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["selected_by"] == "last" and metrics["best_epoch"] == 2 and metrics["epochs"] == 2
    assert metrics["labels_read_for_init"] == 0 and metrics["classifier_init"] == "text"
    assert metrics["pseudo_labels"] == "joint"
    history = json.loads((straight / "history.json").read_text())
    assert [record["epoch"] for record in history] == [0, 1, 2]
    start, last = history[0], history[-1]
    assert set(start) == {"epoch"} | EVALUATION_KEYS                  # the start: evaluation only, no training
    for who in WHO:
        for branch in BRANCHES:
            key = f"{who}_{branch}_top1"
            assert 0 <= metrics[key] <= 100 and metrics[key] == last[key], key
            assert metrics[f"start_{key}"] == start[key], key
    for branch in BRANCHES:                                           # the teacher starts as a copy of the student
        for figure in FIGURES:
            assert start[f"student_{branch}_{figure}"] == start[f"teacher_{branch}_{figure}"], (branch, figure)
    for record in history[1:]:
        assert EVALUATION_KEYS <= set(record) and {"loss", "loss_cls", "loss_fair", "loss_align", "loss_mim",
                                                   "loss_mpm", "loss_gl", "pl_acc", "lr"} <= set(record)
        assert record["pl_kept"] == 1.0                               # threshold 0: every pseudo-label is kept
        assert 0 <= record["pl_from_image"] <= 1 and 0 <= record["pl_agree"] <= 100
    assert metrics["last_pl_kept"] == 1.0 and metrics["last_loss_cls"] == last["loss_cls"]
    assert metrics["curves"] == history                               # the per-epoch figures in metrics.json too
    assert (straight / "self_training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_point_branch_starts_from_the_export_and_trains_all_but_the_tokenizer(straight, alignment):
    export, best = load(alignment), load(straight / "ckpt_best.pth")
    assert best["exports"] == "encoder" and best["epoch"] == 2 and best["labels_read"] == 0
    encoder = best["encoder"]
    assert set(export["encoder"]) == set(encoder) - {"mask_token"}   # MPM's [MASK] is CrossMoST's own
    tokenizer = [key for key in export["encoder"] if key.startswith("tokenizer.")]
    assert tokenizer and all(torch.equal(encoder[key], export["encoder"][key]) for key in tokenizer)
    trained = [key for key in export["encoder"] if key not in tokenizer and encoder[key].is_floating_point()]
    assert any(not torch.equal(encoder[key], export["encoder"][key]) for key in trained)
    assert any(not torch.equal(best["projection"][key], value) for key, value in export["projection"].items())
    assert list(best["class_names"]) == list(CLASSES) and best["classifier"].shape == (len(CLASSES), CLIP_DIM)


def test_the_teacher_momentum_ramps_with_the_updates(straight):
    history = json.loads((straight / "history.json").read_text())
    for record in history[1:]:
        updates = UPDATES_PER_EPOCH * record["epoch"]
        assert record["ema_momentum"] == pytest.approx(momentum_after(updates), abs=1e-12), record["epoch"]
    state = load(straight / "ckpt_latest.pth")
    ema = state["loop"]["hooks"]["ema"]
    assert state["loop"]["updates"] == ema["updates"] == 2 * UPDATES_PER_EPOCH
    assert ema["momentum"] == pytest.approx(momentum_after(2 * UPDATES_PER_EPOCH), abs=1e-12)
    student = state["model"]                                          # the teacher lags behind the student
    assert any(not torch.equal(ema["module"][key], value) for key, value in student.items()
               if value.is_floating_point())


# ---- resume ----------------------------------------------------------------------------------------------------

def test_a_killed_run_resumes_bit_for_bit_on_cpu(straight, pairs, alignment, main, tmp_path, monkeypatch):
    """Killed after epoch 1's checkpoint of the same 2-epoch run, then ``mode=resume``: the same weights (student,
    teacher, optimizer) and the same history as the uninterrupted run. (A 1-epoch run extended with ``epochs=2``
    would differ by design: the per-step cosine of lr spans ``epochs``.)"""
    original = SelfTrainRunner._save

    def killed_after_epoch_one(self, name, epoch, loop_state):
        original(self, name, epoch, loop_state)
        if name == "ckpt_latest.pth" and epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(SelfTrainRunner, "_save", killed_after_epoch_one)
    assert main(selftrain_args(pairs, alignment, tmp_path)) == 130
    monkeypatch.setattr(SelfTrainRunner, "_save", original)
    run = run_folder(tmp_path)
    assert load(run / "ckpt_latest.pth")["epoch"] == 1 and not (run / "metrics.json").exists()
    assert main(["--cfg", CFG, "mode=resume", f"run_dir={run}"]) == 0
    assert "resumed after epoch 1" in (run / "log.txt").read_text()
    resumed, reference = load(run / "ckpt_latest.pth"), load(straight / "ckpt_latest.pth")
    assert resumed["epoch"] == reference["epoch"] == 2
    for part, ours, theirs in (("model", resumed["model"], reference["model"]),
                               ("teacher", resumed["loop"]["hooks"]["ema"]["module"],
                                reference["loop"]["hooks"]["ema"]["module"])):
        assert ours.keys() == theirs.keys(), part
        for key, value in theirs.items():
            assert torch.equal(ours[key], value), (part, key)
    for index, moments in reference["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(resumed["optimizer"]["state"][index][name], value), (index, name)
    ours, theirs = (json.loads((folder / "history.json").read_text()) for folder in (run, straight))
    assert [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ours] == \
        [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in theirs]
    figures = json.loads((run / "metrics.json").read_text())
    expected = json.loads((straight / "metrics.json").read_text())
    assert {k: v for k, v in figures.items() if k not in ("seconds", "run_dir", "curves")} == \
        {k: v for k, v in expected.items() if k not in ("seconds", "run_dir", "curves")}
    assert [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in figures["curves"]] == \
        [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in expected["curves"]]


# ---- the classifier from labelled examples ---------------------------------------------------------------------

def test_the_examples_classifier_reads_one_label_per_class(pairs, alignment, main, tmp_path, monkeypatch):
    read: List[Dict[str, Any]] = []
    example_embeddings = CrossMoST.example_embeddings

    def spy(self, batch):
        read.append({"keys": set(batch), "y": batch["y"].view(-1).tolist(), "index": batch["index"].tolist()})
        return example_embeddings(self, batch)

    monkeypatch.setattr(CrossMoST, "example_embeddings", spy)
    # the recipe's lr = base_lr x batch / lr_batch this time
    args = selftrain_args(pairs, alignment, tmp_path, "model.classifier_init=examples", "selftrain.shots=1",
                          "selftrain.base_lr=2.0e-5", epochs=1)
    assert main(args) == 0
    run = run_folder(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["labels_read_for_init"] == len(CLASSES) and metrics["classifier_init"] == "examples"
    labels = [y for batch in read for y in batch["y"]]
    indices = [i for batch in read for i in batch["index"]]
    assert sorted(labels) == list(range(len(CLASSES)))               # one labelled train example per class ...
    assert all(y == i % len(CLASSES) for y, i in zip(labels, indices)) and max(indices) < TRAIN   # ... of train
    assert all({"img", "pos"} <= batch["keys"] and "img_weak" not in batch["keys"] for batch in read)  # unaugmented
    state = load(run / "ckpt_latest.pth")
    assert state["labels_read"] == len(CLASSES)
    assert state["cfg"]["lr"] == pytest.approx(2.0e-5 * BATCH / 256)
    assert set(json.loads((run / "history.json").read_text())[0]) == {"epoch"} | EVALUATION_KEYS


# ---- refusals --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, fix", [
    (["pretrained_path=null"], "model.init=aligned needs pretrained_path: set it to the ckpt_best.pth of a CLIPAlign"),
    (["selftrain.select=test_accuracy"], "selftrain.select is 'test_accuracy': set it to one of last, confidence, "
                                         "agreement"),
    (["model.weights.clss=1"], "Unknown config key 'model.weights.clss'"),
    (["+model.weights.clss=1"], "Unknown key(s) model.weights.clss of CrossMoST: use model.weights.cls"),
    (["ema=null"], "mode=selftrain needs the EMA teacher: set ema.momentum"),
    (["model.NAME=CLIPAlign", "strict_keys=False", "+model.objective=plain"],
     "model.NAME=CLIPAlign is not one: set model.NAME=CrossMoST"),
    (["dataset.common.data_dir={tmp}/absent"], "Rendered views not found at '{tmp}/absent': set "
                                               "dataset.common.data_dir"),
], ids=["no-pretrained-path", "select-on-test", "weights-typo", "weights-typo-forced", "no-teacher", "not-crossmost",
        "no-data"])
def test_bad_settings_exit_2_with_one_sentence(extra, fix, pairs, alignment, main, tmp_path, capsys):
    extra = [value.format(tmp=tmp_path) for value in extra]
    assert main(selftrain_args(pairs, alignment, tmp_path / "log", *extra)) == 2
    assert fix.format(tmp=tmp_path) in one_sentence(capsys)
    task = tmp_path / "log" / "modelnet40"
    assert not task.exists() or not any(task.iterdir())                # no run folder left behind


def test_masked_point_modelling_needs_a_token_encoder(pairs, main, tmp_path, capsys):
    args = ["--cfg", DEMO_CFG, "device=cpu", f"root_dir={tmp_path}", f"dataset.common.data_dir={pairs}",
            f"dataset.common.image_size={SIZE}", f"dataset.test.eval_views={VIEWS}",
            "model.image_encoder.pretrained=none", f"model.image_encoder.image_size={SIZE}",
            "model.masked_modelling=True"]
    assert main(args) == 2
    message = one_sentence(capsys)
    assert re.search(r"Masked point modelling needs a token encoder .*not PointNextEncoder: set "
                     r"model\.masked_modelling to image or false\.$", message), message


# ---- under DDP -----------------------------------------------------------------------------------------------------

def _selftrain_on_rank(ctx, args: List[str]) -> Dict[str, Any]:
    """One ``mode=selftrain`` process of a torchrun-like pair; its final student and teacher weights."""
    from plugin.engine import load_config, runner_for

    cfg = load_config(args[1], args[2:])
    runner = runner_for(cfg.mode)(cfg)
    metrics = runner.run()
    flat = lambda module: torch.cat([p.detach().reshape(-1) for p in module.state_dict().values()  # noqa: E731
                                     if p.is_floating_point()])
    return {"student": flat(runner.model), "teacher": flat(runner.ema.module), "metrics": metrics}


@needs_gloo
def test_under_ddp_both_ranks_train_one_student_and_teacher_and_write_one_run(pairs, alignment, tmp_path):
    root = tmp_path / "log"
    args = selftrain_args(pairs, alignment, root, f"batch_size={BATCH // WORLD}", epochs=1)
    ranks = run_ranks(tmp_path, functools.partial(_selftrain_on_rank, args=args))
    assert torch.equal(ranks[0]["student"], ranks[1]["student"])          # DDP keeps the students identical
    assert torch.equal(ranks[0]["teacher"], ranks[1]["teacher"])          # and so their EMA teachers
    run = run_folder(root)                                                 # only rank 0 writes a run folder
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["start_student_point_top1"] == ranks[1]["metrics"]["start_student_point_top1"]
    assert (run / "self_training.png").is_file()
