"""Pic@Point InfoNCE losses against hand computations on tiny tensors."""
import math

import torch
import torch.nn.functional as F

from plugin.losses import PointPictureInfoNCE, global_info_nce, local_info_nce


def test_global_loss_equals_hand_computation():
    p = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    q = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=1)
    tau = 0.5
    s = 1 / math.sqrt(2)
    # anchor 0: sims (s, 0), positive 0; anchor 1: sims (s, 1), positive 1
    expected = 0.5 * (-(s / tau) + math.log(math.exp(s / tau) + 1)
                      - (1 / tau) + math.log(math.exp(s / tau) + math.exp(1 / tau)))
    assert math.isclose(float(global_info_nce(p, q, tau)), expected, rel_tol=1e-6)


def test_local_loss_equals_hand_computation_with_masking():
    # m=2 objects, d=2, R=2 image regions each, L=2 point regions each
    image = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],      # object 0: region0=(1,0), region1=(0,1)
                          [[0.6, 0.8], [0.8, -0.6]]])    # object 1: region0=(0.6,0.8), region1=(0.8,-0.6)
    points = torch.tensor([[[1.0, 0.0], [0.0, 1.0]],     # object 0: p0=(1,0), p1=(0,1)
                           [[0.0, 1.0], [1.0, 0.0]]])    # object 1: p0=(0,1), p1=(1,0)
    cells = torch.tensor([[0, 1], [1, 0]])
    inside = torch.tensor([[True, False], [True, True]])  # object 0, region 1 is outside the image
    tau = 0.25
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]])
    anchors = [(torch.tensor([1.0, 0.0]), 0), (torch.tensor([0.0, 1.0]), 3), (torch.tensor([1.0, 0.0]), 2)]
    expected = 0.0
    for a, pos in anchors:
        sims = [float(a @ c) / tau for c in candidates]
        expected += -sims[pos] + math.log(sum(math.exp(s) for s in sims))
    expected /= 3
    loss, used = local_info_nce(points, image, cells, inside, tau)
    assert used == 3 and math.isclose(float(loss), expected, rel_tol=1e-6)


def test_local_loss_without_visible_regions_is_zero_and_differentiable():
    points = torch.randn(2, 4, 3, requires_grad=True)
    loss, used = local_info_nce(points, torch.randn(2, 4, 9), torch.zeros(2, 3, dtype=torch.long),
                                torch.zeros(2, 3, dtype=torch.bool), 0.1)
    loss.backward()
    assert used == 0 and float(loss) == 0.0 and points.grad is not None


def test_switches_select_terms():
    torch.manual_seed(0)
    args = (F.normalize(torch.randn(3, 8, 5), dim=1), F.normalize(torch.randn(3, 8, 4), dim=1),
            torch.randint(0, 4, (3, 5)), torch.ones(3, 5, dtype=torch.bool),
            F.normalize(torch.randn(3, 8), dim=1), F.normalize(torch.randn(3, 8), dim=1))
    both, logs = PointPictureInfoNCE(tau=0.2)(*args)
    local_only, _ = PointPictureInfoNCE(tau=0.2, use_global=False)(*args)
    global_only, _ = PointPictureInfoNCE(tau=0.2, use_local=False)(*args)
    assert torch.isclose(both, local_only + global_only)
    assert math.isclose(logs["loss_local"] + logs["loss_global"], float(both), rel_tol=1e-6)
