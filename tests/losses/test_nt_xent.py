"""NT-Xent and CLIP2Point's σ-balanced loss against hand computations and analytic gradients."""
import math

import pytest
import torch
import torch.nn.functional as F

from plugin.errors import BadInputError, ConfigError
from plugin.losses import SigmaBalancedLoss, nt_xent


def test_nt_xent_equals_hand_computation_2x2():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 2.0]])          # normalised inside: (s, s) and (0, 1)
    tau, s = 0.5, 1 / math.sqrt(2)
    e = math.exp
    # rows z0=(1,0), z1=(0,1), z2=(s,s), z3=(0,1); positives 0<->2, 1<->3; denominator over k != i
    l0 = -s / tau + math.log(e(0) + e(s / tau) + e(0))
    l1 = -1 / tau + math.log(e(0) + e(s / tau) + e(1 / tau))
    l2 = -s / tau + math.log(e(s / tau) + e(s / tau) + e(s / tau))
    l3 = -1 / tau + math.log(e(0) + e(1 / tau) + e(s / tau))
    expected = (l0 + l1 + l2 + l3) / 4
    assert math.isclose(float(nt_xent(a, b, tau)), expected, rel_tol=1e-6)


def test_nt_xent_equals_definition_loop_3x2_and_is_symmetric():
    a = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.3, -2.0]])
    b = torch.tensor([[0.5, 1.0], [2.0, -1.0], [-0.2, 0.1]])
    tau = 0.7
    z = [v / v.norm() for v in torch.cat([a, b])]
    expected = 0.0
    for i in range(6):
        pair = (i + 3) % 6
        denominator = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(6) if k != i)
        expected += -float(z[i] @ z[pair]) / tau + math.log(denominator)
    expected /= 6
    assert math.isclose(float(nt_xent(a, b, tau)), expected, rel_tol=1e-6)
    assert math.isclose(float(nt_xent(b, a, tau)), expected, rel_tol=1e-6)


def test_nt_xent_is_low_for_matching_pairs_and_rejects_bad_input():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(8, 16), dim=1)
    assert float(nt_xent(a, a, 0.1)) < float(nt_xent(a, a.roll(1, 0), 0.1))
    with pytest.raises(BadInputError, match="paired features"):
        nt_xent(a, a[:4])
    with pytest.raises(ConfigError, match="set tau to a positive"):
        nt_xent(a, a, 0.0)


def test_bad_values_name_the_callers_config_keys():
    a = torch.randn(4, 8)
    with pytest.raises(ConfigError, match="set model.loss_args.temperature to a positive"):
        nt_xent(a, a, -1.0, tau_key="model.loss_args.temperature")
    with pytest.raises(ConfigError, match="set model.tau to a positive"):
        SigmaBalancedLoss(tau=0.0, tau_key="model.tau")
    with pytest.raises(ConfigError, match="set model.loss.init_sigma to a positive"):
        SigmaBalancedLoss(init_sigma=-1.0, init_sigma_key="model.loss.init_sigma")


def test_sigma_balanced_value_and_sigma_gradient_match_analytic():
    loss_fn = SigmaBalancedLoss(init_sigma=0.5)
    l_intra, l_cross, sigma = torch.tensor(2.0), torch.tensor(1.5), 0.5
    loss = loss_fn.combine(l_intra, l_cross)
    assert math.isclose(loss.item(), 2.0 / sigma ** 2 + 1.5 + math.log(sigma + 1), rel_tol=1e-6)
    loss.backward()
    d_sigma = -2 * 2.0 / sigma ** 3 + 1 / (sigma + 1)                   # dL/dσ of Eq. 7
    # the parameter is log σ: dL/d(log σ) = σ dL/dσ
    assert math.isclose(float(loss_fn.log_sigma.grad), sigma * d_sigma, rel_tol=1e-5)


def test_sigma_balanced_forward_combines_nt_xent_terms():
    torch.manual_seed(1)
    d1, d2, img = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)
    loss_fn = SigmaBalancedLoss(tau=0.7, init_sigma=2.0)
    loss, logs = loss_fn(d1, d2, img)
    intra = nt_xent(d1, d2, 0.7)
    cross = nt_xent((F.normalize(d1, dim=1) + F.normalize(d2, dim=1)) / 2, img, 0.7)
    assert torch.isclose(loss, intra / 4 + cross + math.log(3.0))
    assert math.isclose(logs["sigma"], 2.0, rel_tol=1e-6) and math.isclose(logs["l_intra"], float(intra), rel_tol=1e-6)


def test_cross_only_switch_drops_intra_and_sigma():
    torch.manual_seed(2)
    d1, d2 = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6)
    img = torch.randn(4, 6)
    loss_fn = SigmaBalancedLoss(cross_only=True)
    loss, logs = loss_fn(d1, None, img)
    # Sec. 5.6: L_cross of the single depth map itself, not of a mean of two maps
    assert torch.isclose(loss, nt_xent(d1, img, 0.7)) and set(logs) == {"l_cross"}
    assert not loss_fn.log_sigma.requires_grad
    loss.backward()
    assert loss_fn.log_sigma.grad is None and d1.grad is not None
    with pytest.raises(BadInputError, match="depth_2=None"):
        loss_fn(d1, d2, img)
    with pytest.raises(BadInputError, match="pass depth_2"):
        SigmaBalancedLoss()(d1, None, img)
    with pytest.raises(ConfigError, match="init_sigma"):
        SigmaBalancedLoss(init_sigma=0.0)
