"""``import plugin`` makes OpenPoints' own backbones and point-op classes work on CPU."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import plugin  # noqa: F401  (installs the host patches)
from plugin.engine import load_config
from plugin.host import autograd_rebinding, openpoints_kernel_api
from pointnet2_ops import ops, reference

from openpoints.models import build_model_from_cfg
from openpoints.models.layers import group, subsample, upsampling

CFGS = Path(__file__).resolve().parents[2] / "cfgs"


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_seven_classes_rebound():
    import importlib

    assert len(plugin.host.install()) == 7
    for (module, name), op in autograd_rebinding.REBINDINGS.items():
        upstream = getattr(importlib.import_module(module), name)
        ours = autograd_rebinding.replacement_function(op)
        assert upstream.forward is ours.forward and upstream.backward is ours.backward


def test_kernel_module_registered_before_openpoints():
    import openpoints.cpp

    assert sys.modules["pointnet2_batch_cuda"] is openpoints_kernel_api
    assert openpoints.cpp.pointnet2_cuda is openpoints_kernel_api
    assert subsample.pointnet2_cuda is openpoints_kernel_api


def test_upstream_aliases_match_reference_on_cpu():
    torch.manual_seed(0)
    xyz = torch.rand(2, 200, 3)
    feats = torch.rand(2, 5, 200, requires_grad=True)
    idx = subsample.furthest_point_sample(xyz, 32)
    assert idx.dtype == torch.int32 and torch.equal(idx, reference.furthest_point_sample(xyz, 32))
    centers = torch.gather(xyz, 1, idx.long().unsqueeze(-1).expand(-1, -1, 3)).contiguous()
    nbr = group.ball_query(0.3, 16, xyz, centers)
    assert torch.equal(nbr, reference.ball_query(0.3, 16, xyz, centers))
    # grouping vs OpenPoints' own pure-torch grouping, values and gradients
    out = group.grouping_operation(feats, nbr)
    expected = group.torch_grouping_operation(feats, nbr.long())
    assert torch.allclose(out, expected)
    w = torch.rand_like(out)
    g1, = torch.autograd.grad((out * w).sum(), feats)
    g2, = torch.autograd.grad((expected * w).sum(), feats)
    assert torch.allclose(g1, g2, atol=1e-6)
    # three_nn keeps OpenPoints' Python semantics: Euclidean distances (the kernel gives squared ones)
    dist, nn_idx = upsampling.three_nn(xyz, centers)
    d2, i2 = reference.three_nn(xyz, centers)
    assert torch.equal(nn_idx, i2) and torch.allclose(dist, d2.sqrt())


def test_kernel_api_wrappers_write_and_accumulate():
    torch.manual_seed(1)
    feats = torch.rand(2, 4, 50)
    idx = torch.randint(0, 50, (2, 7, 3), dtype=torch.int32)
    out = torch.empty(2, 4, 7, 3)
    openpoints_kernel_api.group_points_wrapper(2, 4, 50, 7, 3, feats, idx, out)
    assert torch.equal(out, ops.group_points(feats, idx))
    grad = torch.ones(2, 4, 50)
    openpoints_kernel_api.group_points_grad_wrapper(2, 4, 50, 7, 3, torch.ones_like(out), idx, grad)
    counts = torch.zeros(2, 50)
    for b in range(2):
        counts[b].index_add_(0, idx[b].flatten().long(), torch.ones(21))
    assert torch.allclose(grad, 1 + counts.unsqueeze(1).expand(-1, 4, -1))


def _forward_backward(model, out_shape, **inputs):
    out = model(inputs)
    assert out.shape == out_shape and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("cfg_file, params_m, in_ch, classes", [
    ("scanobjectnn/pointnext-s.yaml", 1.367, 4, 15),
    ("scanobjectnn/dgcnn.yaml", 1.803, 4, 15),
    ("modelnet40/pointnext-s.yaml", None, 3, 40),
    ("modelnet40/dgcnn.yaml", None, 3, 40),
])
def test_classifiers_forward_backward_cpu(cfg_file, params_m, in_ch, classes):
    torch.manual_seed(0)
    cfg = load_config(str(CFGS / cfg_file))
    model = build_model_from_cfg(cfg.model).train()
    if params_m is not None:  # the figure published in the config header
        assert round(n_params(model) / 1e6, 3) == params_m
    pos = torch.rand(2, 1024, 3)
    x = torch.cat([pos, pos[:, :, 1:2]], -1)[:, :, :in_ch].transpose(1, 2).contiguous()
    _forward_backward(model, (2, classes), pos=pos, x=x)


def test_pointnext_segmentation_uses_three_nn_and_interpolate():
    torch.manual_seed(0)
    cfg = load_config(str(CFGS / "s3dis/pointnext-s.yaml"))
    model = build_model_from_cfg(cfg.model).train()
    assert round(n_params(model) / 1e6, 3) == 0.792  # published figure
    pos = torch.rand(2, 2048, 3)
    x = torch.cat([torch.rand(2, 2048, 3), pos[:, :, 2:3]], -1).transpose(1, 2).contiguous()
    _forward_backward(model, (2, 13, 2048), pos=pos, x=x)


def test_rotation_transform_runs_on_python_311():
    from openpoints.transforms import PointCloudRotation

    pos = torch.rand(64, 3)
    data = PointCloudRotation(angle=[0.0, 1.0, 0.0])({"pos": pos.clone(), "normals": pos.clone()})
    # a rotation about y keeps y and the norms
    assert torch.allclose(data["pos"][:, 1], pos[:, 1], atol=1e-6)
    assert torch.allclose(data["pos"].norm(dim=1), pos.norm(dim=1), atol=1e-5)
    assert torch.allclose(data["normals"], data["pos"], atol=1e-6)


def _ply2048_loader(folder: Path):
    import h5py
    from openpoints.dataset import build_dataloader_from_cfg
    from openpoints.utils import EasyConfig

    folder.mkdir(exist_ok=True)
    for split in ("train", "test"):
        with h5py.File(folder / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = np.random.rand(6, 2048, 3).astype(np.float32)
            f["label"] = np.arange(6).reshape(6, 1) % 3
            f["normal"] = np.random.rand(6, 2048, 3).astype(np.float32)
    dataset = EasyConfig({"common": {"NAME": "ModelNet40Ply2048", "data_dir": str(folder)}})
    return build_dataloader_from_cfg(2, dataset, EasyConfig({"num_workers": 0}),
                                     datatransforms_cfg=EasyConfig({"train": ["PointsToTensor"]}), split="train")


def test_dataloader_default_is_single_process(tmp_path):
    from torch.utils.data.distributed import DistributedSampler

    loader = _ply2048_loader(tmp_path / "modelnet40_ply_hdf5_2048")
    batch = next(iter(loader))
    assert batch["pos"].shape == (2, 1024, 3) and not isinstance(loader.sampler, DistributedSampler)
    assert loader.pin_memory == torch.cuda.is_available()  # pinned exactly when there is a GPU to copy to


@pytest.mark.parametrize("cuda_present", [False, True])
def test_dataloader_pins_memory_only_with_cuda(tmp_path, monkeypatch, cuda_present):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_present)
    assert _ply2048_loader(tmp_path / "modelnet40_ply_hdf5_2048").pin_memory is cuda_present


# PointNeXt-S is compared with its CPU run: its neighbourhoods come from our ops, whose CUDA and
# CPU indices agree bit for bit. DGCNN builds its graphs with torch.cdist + topk, whose CUDA and
# CPU distances differ in the last bits, so near-ties may pick other neighbours: it only has to run.
@pytest.mark.cuda
@pytest.mark.parametrize("cfg_file, compare", [("scanobjectnn/pointnext-s.yaml", True),
                                               ("scanobjectnn/dgcnn.yaml", False)])
def test_classifiers_run_on_cuda(cfg_file, compare, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # compare float32 with float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    model = build_model_from_cfg(load_config(str(CFGS / cfg_file)).model).eval()
    pos = torch.rand(2, 1024, 3)
    x = torch.cat([pos, pos[:, :, 1:2]], -1).transpose(1, 2).contiguous()
    with torch.no_grad():
        cpu = model({"pos": pos, "x": x})
        gpu = model.cuda()({"pos": pos.cuda(), "x": x.cuda()})
    assert gpu.is_cuda and gpu.shape == cpu.shape
    if compare:
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
    _forward_backward(model.train(), (2, 15), pos=pos.cuda(), x=x.cuda())
