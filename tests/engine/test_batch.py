"""``prepare_batch``: features from ``feature_keys`` (xyz + height), and a missing key named."""
import pytest
import torch

from plugin.engine.batch import prepare_batch
from plugin.errors import ConfigError


def _batch() -> dict:
    pos = torch.rand(2, 16, 3, generator=torch.Generator().manual_seed(0))
    return {"pos": pos, "x": pos.clone(), "heights": pos[..., 1:2] - pos[..., 1:2].min(1, keepdim=True).values,
            "y": torch.tensor([0, 1])}


def test_feature_keys_build_xyz_and_height():
    data = _batch()
    out = prepare_batch(dict(data), torch.device("cpu"), 4, num_points=8, feature_keys="pos,heights")
    assert out["x"].shape == (2, 4, 8)
    torch.testing.assert_close(out["x"][:, :3], out["pos"].transpose(1, 2))
    torch.testing.assert_close(out["x"][:, 3:], out["heights"].transpose(1, 2))   # gathered with the points


def test_a_feature_key_the_dataset_lacks_is_named():
    data = _batch()
    del data["heights"]
    with pytest.raises(ConfigError, match=r"feature_keys names heights, which the dataset does not give: set "
                                          r"feature_keys to keys of its samples \(pos, x, y\) or null"):
        prepare_batch(data, torch.device("cpu"), 4, feature_keys="pos,heights")
