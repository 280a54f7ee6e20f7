"""``mode=fewshot`` and ``mode=gdpa``: the K-shot split, end-to-end runs with a tiny CLIP, learning, mode checks."""
import json

import numpy as np
import pytest
import torch

from plugin.clip import depth_encoder_state, load_clip, trainable_visual_copy
from plugin.engine import load_config, runner_for
from plugin.engine.loop import LoopSettings, Selection, TrainingLoop
from plugin.engine.modes.gdpa import AdapterRunner, FeatureBatches, FewShotRunner, adapter_logits
from plugin.engine.modes.finetune import FinetuneRunner
from plugin.errors import ConfigError
from plugin.eval import draw_per_class
from plugin.models.heads.gdpa import GatedDualPathAdapter

from .conftest import DGCNN_CFG, REPO, only_run

FEWSHOT_CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point-gdpa-fewshot.yaml")
FINETUNE_CFG = str(REPO / "cfgs" / "modelnet40" / "clip2point-gdpa-finetune.yaml")
RUN_FILES = {"cfg.yaml", "log.txt", "metrics.json", "ckpt_latest.pth", "ckpt_best.pth"}


def tiny_adapter_overrides(data_dir, root_dir, *extra):
    """Shrink the GDPA configs to seconds: tiny random CLIP (32 px), 128 points, 3 classes."""
    return [f"dataset.common.data_dir={data_dir}", f"root_dir={root_dir}", "model.clip.name=tiny-clip-test",
            "model.clip.pretrained=none", "pretrained_path=None", "dataset.common.num_points=128",
            "num_points=128", "num_classes=3", "epochs=2", "batch_size=4", "val_batch_size=12", "lr=0.01",
            "model.render.dilation=1", "model.text_cache=None", *extra]


def test_fewshot_split_has_k_per_class_and_depends_only_on_the_seed():
    labels = np.repeat([0, 1, 2], [20, 16, 5])
    indices, short = draw_per_class(labels, 8, np.random.default_rng(0), num_classes=4)
    assert np.bincount(labels[indices], minlength=4).tolist() == [8, 8, 5, 0]
    assert short == {2: 5, 3: 0}
    assert len(set(indices.tolist())) == len(indices) and np.all(np.diff(indices) > 0)
    again, _ = draw_per_class(labels, 8, np.random.default_rng(0), num_classes=4)
    other, _ = draw_per_class(labels, 8, np.random.default_rng(1), num_classes=4)
    assert np.array_equal(indices, again) and not np.array_equal(indices, other)
    assert np.array_equal(np.flatnonzero(labels == 2), indices[labels[indices] == 2])  # the short class: all of it


def test_fewshot_run_end_to_end_records_split_seed_and_metrics(tiny_modelnet, tmp_path, main):
    args = ["--cfg", FEWSHOT_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path, "fewshot.shots=2",
                                                          "fewshot.seed=5")]
    assert main(args) == 0
    run = only_run(tmp_path)
    assert RUN_FILES | {"fewshot_split.json"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= 100 and 0 <= metrics["top5"] <= 100 and metrics["top5"] >= metrics["top1"]
    assert metrics["shots"] == 2 and metrics["fewshot_seed"] == 5 and metrics["train_samples"] == 6
    assert metrics["test_samples"] == 12 and metrics["num_views"] == 10 and metrics["depth_encoder"] == "clip"
    assert metrics["variant"] == "gated" and isinstance(metrics["gate"], float)
    assert metrics["selected_by"] == "last" and metrics["best_epoch"] == 2 and metrics["best_val_top1"] is None
    assert metrics["logit_scale"] == 1.0                                   # Eq. 14's plain cosine
    split = json.loads((run / "fewshot_split.json").read_text())
    assert split["seed"] == 5 and split["shots"] == 2 and split["per_class"] == {"airplane": 2, "bathtub": 2, "bed": 2}
    # the tiny train split lists 8 clouds per class, class by class
    assert split["labels"] == [i // 8 for i in split["indices"]]
    expected, _ = draw_per_class(np.repeat([0, 1, 2], 8), 2, np.random.default_rng(5), 3)
    assert split["indices"] == expected.tolist()
    log = (run / "log.txt").read_text()
    assert "pretrained_path is not set" in log and "epoch 2/2" in log


def test_short_classes_use_all_their_clouds_and_are_logged(tiny_modelnet, tmp_path, main):
    args = ["--cfg", FEWSHOT_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path, "fewshot.shots=10", "epochs=1",
                                                          "model.variant=depth_only")]
    assert main(args) == 0
    run = only_run(tmp_path)
    split = json.loads((run / "fewshot_split.json").read_text())
    assert split["per_class"] == {"airplane": 8, "bathtub": 8, "bed": 8} and len(split["short_classes"]) == 3
    assert "3 classes have fewer than 10 training clouds and use all of them" in (run / "log.txt").read_text()
    assert json.loads((run / "metrics.json").read_text())["gate"] is None


def test_resume_keeps_the_split_and_continues(tiny_modelnet, tmp_path, main):
    args = ["--cfg", FEWSHOT_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path, "fewshot.shots=2", "epochs=1")]
    assert main(args) == 0
    run = only_run(tmp_path)
    split = (run / "fewshot_split.json").read_text()
    # a resumed run keeps its config: another seed on the command line is refused, not applied silently
    assert main(["--cfg", FEWSHOT_CFG, "mode=resume", f"run_dir={run}", "epochs=2", "fewshot.seed=9"]) == 2
    assert main(["--cfg", FEWSHOT_CFG, "mode=resume", f"run_dir={run}", "epochs=2"]) == 0
    assert (run / "fewshot_split.json").read_text() == split
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and torch.load(run / "ckpt_latest.pth", weights_only=True)["epoch"] == 2
    assert "resumed after epoch 1" in (run / "log.txt").read_text()


def test_gdpa_mode_trains_on_the_whole_split_and_reads_the_depth_encoder(tiny_modelnet, tmp_path, main):
    clip = load_clip("tiny-clip-test", None)
    depth = trainable_visual_copy(clip)
    with torch.no_grad():
        for p in depth.parameters():
            p.add_(0.05)
    checkpoint = tmp_path / "clip2point.pth"
    torch.save(depth_encoder_state(depth), checkpoint)
    overrides = tiny_adapter_overrides(tiny_modelnet, tmp_path / "log", f"pretrained_path={checkpoint}")
    cfg = load_config(FINETUNE_CFG, overrides)
    assert cfg.mode == "gdpa" and runner_for("gdpa") is AdapterRunner
    assert main(["--cfg", FINETUNE_CFG, *overrides]) == 0
    run = only_run(tmp_path / "log")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_split"] == "full" and "shots" not in metrics
    # the finetune config selects on adapter.holdout = 10 % of the 24 training clouds, held out from training
    assert metrics["selected_by"] == "holdout" and (metrics["train_samples"], metrics["holdout_samples"]) == (22, 2)
    assert metrics["best_epoch"] in (1, 2) and 0 <= metrics["best_val_top1"] <= 100
    assert metrics["depth_encoder"] == str(checkpoint) and 0 <= metrics["top1"] <= 100
    assert not (run / "fewshot_split.json").exists()
    assert f"tensors from {checkpoint}" in (run / "log.txt").read_text()
    assert torch.load(run / "ckpt_latest.pth", weights_only=True)["mode"] == "gdpa"


@pytest.mark.parametrize("selection", ["last", "holdout"])
def test_epoch_selection_never_reads_the_test_split(tiny_modelnet, tmp_path, main, monkeypatch, selection):
    """A spy on the split loaders: the test clouds are read once, after the last epoch, to score the choice."""
    import plugin.engine.modes.gdpa as adapter

    events = []
    probe_loader, batches = adapter.probe_loader, adapter.FeatureBatches.__iter__

    def spy_loader(cfg, split, *args, **kwargs):
        events.append(("loader", split, cfg.dataset[split].get("split", split)))
        return probe_loader(cfg, split, *args, **kwargs)

    def spy_epoch(*args, **kwargs):
        events.append(("epoch",))
        return batches(*args, **kwargs)

    monkeypatch.setattr(adapter, "probe_loader", spy_loader)
    monkeypatch.setattr(adapter.FeatureBatches, "__iter__", spy_epoch)
    args = ["--cfg", FEWSHOT_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path, "fewshot.shots=4",
                                                          f"adapter.select={selection}", "adapter.holdout=0.25")]
    assert main(args) == 0
    reads = [i for i, event in enumerate(events) if event[0] == "loader" and event[2] != "train"]
    assert [events[i][1:] for i in reads] == [("test", "test")]         # dataset.val (= test) is never read
    assert reads[0] > max(i for i, event in enumerate(events) if event == ("epoch",))
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    split = json.loads((run / "fewshot_split.json").read_text())
    assert metrics["selected_by"] == split["selected_by"] == selection
    held, drawn = set(split["holdout_indices"]), set(split["indices"])
    assert len(drawn) == 12 and held <= drawn                             # selection uses only the K shots
    assert len(held) == (3 if selection == "holdout" else 0) and metrics["train_samples"] == 12 - len(held)
    if selection == "last":
        assert metrics["best_epoch"] == 2
    best = torch.load(run / "ckpt_best.pth", weights_only=True)
    assert best["epoch"] == metrics["best_epoch"] and set(best["train_indices"]).isdisjoint(held)


def test_unknown_selection_rule_is_refused(tiny_modelnet, tmp_path, main, capsys):
    assert main(["--cfg", FEWSHOT_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path), "adapter.select=test"]) == 2
    assert "Unknown adapter.select 'test': set it to last or holdout" in capsys.readouterr().err


def test_no_shots_are_refused(tiny_modelnet, tmp_path, main, capsys):
    assert main(["--cfg", FEWSHOT_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path), "fewshot.shots=0"]) == 2
    assert "fewshot.shots is 0: set it to a positive number of samples per class" in capsys.readouterr().err


def test_finetune_refuses_the_adapter_and_leaves_pic_at_point_alone(tiny_modelnet, tmp_path, main, capsys):
    cfg = load_config(DGCNN_CFG, [f"dataset.common.data_dir={tiny_modelnet}", f"root_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="mode=finetune needs pretrained_path"):  # FinetuneRunner's own check
        FinetuneRunner(cfg)
    assert issubclass(FewShotRunner, AdapterRunner) and not issubclass(AdapterRunner, FinetuneRunner)
    assert main(["--cfg", FINETUNE_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path), "mode=finetune"]) == 2
    assert "trains with mode=gdpa" in capsys.readouterr().err


def test_a_gdpa_checkpoint_of_the_old_finetune_mode_resumes_in_gdpa():
    from plugin.engine.modes.resume import _mode_of

    gdpa = {"model": {"NAME": "GatedDualPathAdapter"}}
    assert _mode_of({"mode": "finetune"}, gdpa) == "gdpa"
    assert _mode_of({"mode": "finetune"}, {"model": {"NAME": "BaseCls"}}) == "finetune"
    assert _mode_of({}, gdpa) == "train"


def test_bad_model_or_missing_checkpoint_fail_in_one_sentence(tiny_modelnet, tmp_path, main, capsys):
    assert main(["--cfg", DGCNN_CFG, f"dataset.common.data_dir={tiny_modelnet}", f"root_dir={tmp_path}",
                 "mode=fewshot"]) == 2
    assert "set model.NAME to GatedDualPathAdapter" in capsys.readouterr().err
    missing = tmp_path / "nope.pth"
    assert main(["--cfg", FEWSHOT_CFG, *tiny_adapter_overrides(tiny_modelnet, tmp_path),
                 f"pretrained_path={missing}"]) == 2
    err = capsys.readouterr().err
    assert f"'{missing}' not found: set pretrained_path" in err and "Traceback" not in err
    assert not (tmp_path / "modelnet40").exists()  # no run folder for a run that cannot start


@pytest.fixture
def one_thread():
    """Tiny matrices train far faster on one thread than on oversubscribed shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_adapter_learns_a_separable_constructed_case(one_thread):
    """Cached features of 4 classes (a prototype per class and path plus noise), text features unrelated to them."""
    torch.manual_seed(0)
    classes, views, dim, per_class = 4, 3, 16, 24
    protos = {path: torch.randn(classes, views, dim) for path in ("depth", "clip")}
    labels = torch.arange(classes).repeat_interleave(per_class)

    def sample(labels):
        return {path: torch.nn.functional.normalize(p[labels] + 0.3 * torch.randn(len(labels), views, dim), dim=-1)
                for path, p in protos.items()}

    features = sample(labels)
    model = GatedDualPathAdapter(num_views=views, feature_dim=dim, hidden_dim=32)
    model.set_text_features(torch.randn(classes, dim))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss()

    def step(batch):
        paths, y = batch
        logits = model(**paths)
        return criterion(logits, y), {"top1": 100.0 * float((logits.argmax(1) == y).float().mean())}

    loop = TrainingLoop(model, optimizer, _NoScheduler(), LoopSettings(epochs=30, amp="off"), torch.device("cpu"),
                        step, save=lambda *args: None, selection=Selection(None))
    accuracy = [loop.train_epoch(FeatureBatches(features, labels, 16), epoch)["top1"] for epoch in range(1, 31)]
    assert accuracy[-1] >= 95.0 and accuracy[-1] > accuracy[0] + 30  # chance is 25 %
    held_out = torch.arange(classes).repeat_interleave(10)
    predicted = adapter_logits(model, sample(held_out), 16).argmax(dim=1)
    assert (predicted == held_out).float().mean() >= 0.9
    assert float(model.gate.detach()) != 1.0  # the gate trained too


class _NoScheduler:
    """A constant learning rate with the OpenPoints scheduler's ``step(epoch)``."""

    def step(self, epoch):
        pass
