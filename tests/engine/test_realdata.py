"""Short supervised training on the real ModelNet40 subset in ../shared/data (skips when absent)."""
import json

from .conftest import REPO

MAJORITY_TEST_OA = 100 * 100 / 170  # airplane: 100 of the 170 official test shapes


def test_small_dgcnn_learns_real_modelnet(modelnet_dir, tmp_path, main):
    args = ["--cfg", str(REPO / "cfgs" / "modelnet40" / "dgcnn.yaml"), f"dataset.common.data_dir={modelnet_dir}",
            f"root_dir={tmp_path}", "epochs=1", "num_points=128", "dataset.common.num_points=128",
            "model.encoder_args.channels=16", "model.encoder_args.embed_dim=128", "model.encoder_args.k=10",
            "batch_size=16"]
    assert main(args) == 0
    run = next((tmp_path / "modelnet40").glob("dgcnn-*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_oa"] > MAJORITY_TEST_OA + 15, metrics
