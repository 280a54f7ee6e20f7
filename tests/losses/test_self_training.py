"""Cross-MoST's losses against hand computations: joint pseudo-labels, the masked cross-entropy, fairness, MIM/MPM
L1 over masked elements only, global-local alignment, and the entropy/bias figures."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from plugin.errors import BadInputError, ConfigError
from plugin.losses.self_training import (fairness_loss, global_local_alignment, kl_from_uniform, masked_cross_entropy,
                                         masked_pixel_l1, masked_token_l1, prediction_bias, pseudo_labels)
from tests.engine.ddp import WORLD, needs_gloo, run_ranks

# teacher softmax of 4 samples, 3 classes: sample 0 image-confident, 1 point-confident, 2 both weak, 3 a close call
PROB_IMAGE = torch.tensor([[0.90, 0.05, 0.05], [0.40, 0.30, 0.30], [0.50, 0.25, 0.25], [0.10, 0.86, 0.04]])
PROB_POINT = torch.tensor([[0.20, 0.70, 0.10], [0.05, 0.05, 0.90], [0.30, 0.60, 0.10], [0.05, 0.05, 0.90]])


def test_joint_labels_take_the_more_confident_modality_and_threshold_it():
    labels = pseudo_labels(PROB_IMAGE, PROB_POINT, "joint", threshold=0.84, point_weight=1.0)
    # r_b = max(s_img, s_pcl): 0.90 (image, class 0), 0.90 (point, 2), 0.60 (point, 1), 0.90 (point, 2)
    assert labels.from_image.tolist() == [True, False, False, False]
    assert labels.image.tolist() == labels.point.tolist() == [0, 2, 1, 2]
    assert labels.keep_image.tolist() == labels.keep_point.tolist() == [True, True, False, True]
    assert torch.allclose(labels.confidence, torch.tensor([0.90, 0.90, 0.60, 0.90]))


def test_point_weight_moves_a_close_call_to_the_image():
    # w = 0.9: sample 3 compares 0.86 (image) with 0.9 * 0.90 = 0.81, so the image's class 1 wins, kept at 0.86 > 0.84
    labels = pseudo_labels(PROB_IMAGE, PROB_POINT, "joint", threshold=0.84, point_weight=0.9)
    assert labels.from_image.tolist() == [True, False, False, True]
    assert labels.image.tolist() == [0, 2, 1, 1]
    # sample 1: r = 0.9 * 0.90 = 0.81 is no longer above T
    assert labels.keep_image.tolist() == [True, False, False, True]
    assert labels.confidence[1].item() == pytest.approx(0.81)


def test_own_image_point_and_random_pick_what_they_say():
    own = pseudo_labels(PROB_IMAGE, PROB_POINT, "own", threshold=0.84)
    assert own.image.tolist() == [0, 0, 0, 1] and own.point.tolist() == [1, 2, 1, 2]
    assert own.keep_image.tolist() == [True, False, False, True]
    assert own.keep_point.tolist() == [False, True, False, True]
    image = pseudo_labels(PROB_IMAGE, PROB_POINT, "image", threshold=0.84)
    assert image.image.tolist() == image.point.tolist() == [0, 0, 0, 1]
    assert image.keep_point.tolist() == [True, False, False, True] and bool(image.from_image.all())
    point = pseudo_labels(PROB_IMAGE, PROB_POINT, "point", threshold=0.84)
    assert point.point.tolist() == [1, 2, 1, 2] and not bool(point.from_image.any())
    torch.manual_seed(0)
    picks = torch.stack([pseudo_labels(PROB_IMAGE, PROB_POINT, "random", 0.0).from_image for _ in range(400)])
    assert 0.4 < picks.float().mean().item() < 0.6           # a fair coin per sample
    assert bool((picks.any(0) & ~picks.all(0)).all())          # each sample gets both modalities sometimes
    rand = pseudo_labels(PROB_IMAGE, PROB_POINT, "random", 0.0)
    expected = torch.where(rand.from_image, PROB_IMAGE.argmax(1), PROB_POINT.argmax(1))
    assert torch.equal(rand.image, expected) and torch.equal(rand.point, expected)


def test_pseudo_label_errors():
    with pytest.raises(ConfigError, match="pseudo_labels"):
        pseudo_labels(PROB_IMAGE, PROB_POINT, "both")
    with pytest.raises(BadInputError, match="one shape"):
        pseudo_labels(PROB_IMAGE, PROB_POINT[:2])


def test_masked_cross_entropy_is_the_batch_mean_over_kept_samples_and_zero_when_none():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    keep = torch.tensor([True, False, True])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 3          # (1/B) sum over kept CE
    assert masked_cross_entropy(logits, labels, keep).item() == pytest.approx(expected)
    empty = masked_cross_entropy(logits, labels, torch.zeros(3, dtype=torch.bool))
    assert torch.isfinite(empty) and empty.item() == 0.0
    empty.backward()                                                       # stays in the graph, zero gradient
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_fairness_equals_the_formula():
    prob = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    mean = prob.mean(0)                                                     # p̄ = (0.4, 0.4, 0.2)
    expected = -(math.log(0.4) * 2 + math.log(0.2)) / 3
    assert fairness_loss(prob).item() == pytest.approx(expected)
    assert fairness_loss(torch.full((5, 4), 0.25)).item() == pytest.approx(math.log(4))   # its minimum, log C
    assert mean.sum().item() == pytest.approx(1.0)


def test_mim_l1_reads_masked_pixels_only():
    target = torch.zeros(1, 3, 4, 4)
    prediction = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1                                                   # one 2x2 masked patch
    prediction[..., 2:, 2:] = 100.0                                         # a huge error where nothing is masked
    assert masked_pixel_l1(prediction, target, mask).item() == 0.0
    prediction[..., :2, :2] = 0.5
    assert masked_pixel_l1(prediction, target, mask).item() == pytest.approx(0.5)


def test_mpm_l1_reads_masked_tokens_only():
    target = torch.randn(2, 5, 4)
    prediction = target.clone()
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 3] = True
    prediction[0, 0] += 9.0                                                 # visible: ignored
    prediction[1, 3] += 2.0                                                 # masked: 2.0 on 4 channels of 8 read
    assert masked_token_l1(prediction, target, mask).item() == pytest.approx(1.0)


def test_global_local_alignment_is_the_mean_over_masked_tokens_and_pulls_only_the_tokens():
    glob = torch.tensor([[1.0, 0.0]], requires_grad=True)
    local = torch.tensor([[[0.0, 3.0], [5.0, 0.0], [0.0, -1.0]]], requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    # normalised: (0,1) is at squared distance 2 from (1,0); (1,0) at 0; the unmasked (0,-1) is ignored
    loss = global_local_alignment(glob, local, mask)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert glob.grad is None and local.grad is not None


def test_entropy_and_bias_figures():
    uniform = torch.full((4, 3), 1 / 3)
    assert kl_from_uniform(uniform).item() == pytest.approx(0.0, abs=1e-6)
    one_hot = F.one_hot(torch.tensor([0, 1]), 3).float()
    assert kl_from_uniform(one_hot).item() == pytest.approx(math.log(3))
    balanced = F.one_hot(torch.tensor([0, 1, 2]), 3).float()
    assert prediction_bias(balanced).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = F.one_hot(torch.tensor([2, 2, 2, 2]), 3).float()
    assert prediction_bias(collapsed).item() == pytest.approx(math.log(3))
    half = F.one_hot(torch.tensor([0, 0, 1, 1]), 4).float()                 # two of four classes, evenly
    assert prediction_bias(half).item() == pytest.approx(math.log(2))


def _fairness_on_ranks(ctx) -> dict:
    logits = torch.randn(2 * WORLD, 3, generator=torch.Generator().manual_seed(7))
    mine = logits[ctx.rank * 2:(ctx.rank + 1) * 2].clone().requires_grad_()
    loss = fairness_loss(mine.softmax(dim=1))
    loss.backward()
    return {"loss": loss.detach(), "grad": mine.grad}


@needs_gloo
def test_under_ddp_fairness_reads_the_global_batch_mean(tmp_path):
    results = run_ranks(tmp_path, _fairness_on_ranks)
    logits = torch.randn(2 * WORLD, 3, generator=torch.Generator().manual_seed(7)).requires_grad_()
    loss = fairness_loss(logits.softmax(dim=1))
    loss.backward()
    for rank, result in enumerate(results):
        assert_close(result["loss"], loss.detach(), rtol=1e-5, atol=1e-6)        # every rank: the global p̄
        # each rank's rows get WORLD times the global gradient, which DDP's average divides back
        assert_close(result["grad"], WORLD * logits.grad[rank * 2:(rank + 1) * 2], rtol=1e-5, atol=1e-6)
