"""A tiny, linearly separable ModelNet-layout dataset and a runner invocation helper."""
from pathlib import Path

import pytest

from ..conftest import REPO, load_tool
FIXTURES = load_tool("make_checkpoint_fixtures")  # writes the same tiny dataset its checkpoints were trained on
CLASSES = FIXTURES.CLASSES


@pytest.fixture(scope="session")
def tiny_modelnet(tmp_path_factory) -> Path:
    """``modelnet40_normal_resampled`` layout: 3 classes (sphere, cube, thin cylinder) x (8 train + 4 test) shapes
    of 256 points, with normals; the data of the committed checkpoint fixtures."""
    root = tmp_path_factory.mktemp("data") / "modelnet40_normal_resampled"
    FIXTURES.write_modelnet(root)
    return root


def tiny_overrides(data_dir: Path, root_dir: Path, epochs: int = 2):
    """Overrides that shrink cfgs/modelnet40/dgcnn.yaml to a seconds-long run on ``tiny_modelnet``."""
    return [f"dataset.common.data_dir={data_dir}", f"root_dir={root_dir}", f"epochs={epochs}",
            "dataset.common.num_points=128", "num_points=128", "num_classes=3", "batch_size=6",
            "val_batch_size=12", "model.encoder_args.channels=8", "model.encoder_args.k=8",
            "model.encoder_args.embed_dim=32", "model.cls_args.num_classes=3", "model.cls_args.mlps=[16]",
            "lr=0.01"]


def _load_main():
    return load_tool("main").main


@pytest.fixture(scope="session")
def main():
    """``tools/main.py``'s ``main(argv) -> exit status``."""
    return _load_main()


DGCNN_CFG = str(REPO / "cfgs" / "modelnet40" / "dgcnn.yaml")


def only_run(root: Path) -> Path:
    """The one run folder under ``root/modelnet40``."""
    runs = [p for p in (root / "modelnet40").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def encoder_at_first_step(monkeypatch) -> dict:
    """Filled with ``mode=finetune``'s encoder state dict as the first training step sees it (CPU copies)."""
    from plugin.engine.modes.finetune import FinetuneRunner

    seen: dict = {}
    original_step = FinetuneRunner.step

    def spy_step(self, data):
        if not seen:
            seen.update({k: v.detach().cpu().clone() for k, v in self.model.encoder.state_dict().items()})
        return original_step(self, data)

    monkeypatch.setattr(FinetuneRunner, "step", spy_step)
    return seen
