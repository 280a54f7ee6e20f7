"""The similarity-weighted contrastive loss (Eqs. 5-6) against hand computations, brute-force weights and the
plain symmetric cross-entropy, on one process and over a two-process global batch."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from plugin.errors import BadInputError
from plugin.losses import (average_weights, global_weighted_contrastive, negative_weights, weighted_contrastive,
                           weighted_cross_entropy)
from tests.engine.ddp import WORLD, needs_gloo, run_ranks

Z = torch.tensor([[2.0, 0.0, 1.0],
                  [0.5, 1.0, 0.0],
                  [1.0, -1.0, 3.0]])
W = torch.tensor([[1.0, 1.5, 0.5],
                  [0.4, 1.0, 1.6],
                  [1.2, 0.8, 1.0]])


def test_weighted_loss_equals_a_hand_computation_on_3x3_in_both_directions():
    e, log = math.exp, math.log
    # L(Z, W): row i of Z (3D i against every image), weights W's row i
    forward = -((2.0 - log(1.0 * e(2.0) + 1.5 * e(0.0) + 0.5 * e(1.0)))
                + (1.0 - log(0.4 * e(0.5) + 1.0 * e(1.0) + 1.6 * e(0.0)))
                + (3.0 - log(1.2 * e(1.0) + 0.8 * e(-1.0) + 1.0 * e(3.0)))) / 3
    # L(Z^T, W): row i of Z^T (image i against every shape = column i of Z), the same objects' weights W's row i
    backward = -((2.0 - log(1.0 * e(2.0) + 1.5 * e(0.5) + 0.5 * e(1.0)))
                 + (1.0 - log(0.4 * e(0.0) + 1.0 * e(1.0) + 1.6 * e(-1.0)))
                 + (3.0 - log(1.2 * e(1.0) + 0.8 * e(0.0) + 1.0 * e(3.0)))) / 3
    targets = torch.arange(3)
    assert float(weighted_cross_entropy(Z, W, targets)) == pytest.approx(forward, rel=1e-6)
    assert float(weighted_cross_entropy(Z.t(), W, targets)) == pytest.approx(backward, rel=1e-6)
    assert float(weighted_contrastive(Z, W)) == pytest.approx((forward + backward) / 2, rel=1e-6)
    # the image direction takes W's rows, not its columns (W is row-normalised, so not symmetric)
    assert float(weighted_cross_entropy(Z.t(), W.t(), targets)) != pytest.approx(backward, rel=1e-3)


def _brute_force_weights(similarity, categories, alpha):
    n = len(categories)
    s = [[float(similarity[i][j]) if categories[i] == categories[j] else alpha for j in range(n)] for i in range(n)]
    w = [[0.0] * n for _ in range(n)]
    for i in range(n):
        total = sum(s[i][k] for k in range(n) if k != i)
        for j in range(n):
            w[i][j] = 1.0 if i == j else (n - 1) * s[i][j] / total
    return torch.tensor(w)


def test_negative_weights_equal_a_brute_force_construction():
    generator = torch.Generator().manual_seed(0)
    similarity = torch.rand(7, 7, generator=generator) * 0.9 + 0.1
    categories = [0, 1, 0, 2, 1, 0, 0]
    same = torch.tensor(categories).unsqueeze(1) == torch.tensor(categories).unsqueeze(0)
    for alpha in (0.25, 0.6):
        w = negative_weights(similarity, same, alpha)
        assert_close(w, _brute_force_weights(similarity, categories, alpha), rtol=1e-6, atol=1e-7)
        assert torch.equal(w.diagonal(), torch.ones(7))
        off = w.masked_fill(torch.eye(7, dtype=torch.bool), 0.0)
        assert_close(off.sum(dim=1) / 6, torch.ones(7))            # N - 1 normalisation: mean negative weight 1
    # object 3 is alone in its category: all its negatives weigh alpha, i.e. 1 after normalisation
    assert_close(negative_weights(similarity, same, 0.25)[3], torch.ones(7))
    # the same-category entries of S are read, the others are not
    assert torch.equal(negative_weights(similarity.masked_fill(~same, 123.0), same, 0.25),
                       negative_weights(similarity, same, 0.25))


def test_unit_weights_give_the_plain_loss_exactly():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(1)) * 5
    plain = weighted_contrastive(logits)
    assert torch.equal(weighted_contrastive(logits, torch.ones(6, 6)), plain)
    targets = torch.arange(6)
    assert torch.equal(plain, (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2)
    # hardneg weights of a batch whose similarities all equal alpha are exactly 1
    same = torch.tensor([0, 0, 1, 1, 1, 2]).unsqueeze(1) == torch.tensor([0, 0, 1, 1, 1, 2]).unsqueeze(0)
    ones = negative_weights(torch.full((6, 6), 0.25), same, 0.25)
    assert torch.equal(ones, torch.ones(6, 6))
    assert torch.equal(weighted_contrastive(logits, ones), plain)


def test_avg_averages_the_normalised_weights_not_the_similarities():
    generator = torch.Generator().manual_seed(2)
    s_i2i, s_i2l2 = torch.rand(5, 5, generator=generator), torch.rand(5, 5, generator=generator) * 0.2
    same = torch.ones(5, 5, dtype=torch.bool)
    w_i2i, w_i2l2 = negative_weights(s_i2i, same), negative_weights(s_i2l2, same)
    w = average_weights(w_i2i, w_i2l2)
    assert_close(w, (w_i2i + w_i2l2) / 2)
    assert not torch.allclose(w, negative_weights((s_i2i + s_i2l2) / 2, same), atol=1e-3)  # a different rule
    assert torch.equal(w.diagonal(), torch.ones(5))
    with pytest.raises(BadInputError, match="same batch"):
        average_weights(w_i2i, w_i2l2[:4, :4])


def test_a_harder_negative_weighs_more_in_the_loss_and_its_gradient():
    # row 0: negative 1 (W 1.5) and negative 2 (W 0.5); with equal logits the heavier one gets the larger push
    equal = torch.zeros(3, 3).fill_diagonal_(1.0).requires_grad_()
    weighted_cross_entropy(equal, W, torch.arange(3)).backward()
    assert float(equal.grad[0, 1]) == pytest.approx(3 * float(equal.grad[0, 2]), rel=1e-6)
    heavier = W.clone()
    heavier[0, 1] *= 2                                        # a negative of row 0 made twice as hard
    assert float(weighted_contrastive(Z, heavier)) > float(weighted_contrastive(Z, W))


def test_zero_similarity_rows_drop_their_negatives_and_bad_input_is_refused():
    same = torch.ones(3, 3, dtype=torch.bool)
    w = negative_weights(torch.zeros(3, 3), same, 0.25)
    assert torch.equal(w, torch.eye(3))                      # every negative has S = 0: only the positive is left
    assert float(weighted_cross_entropy(Z, w, torch.arange(3))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(BadInputError, match="model.similarity.alpha"):
        negative_weights(torch.ones(3, 3), same, -0.1)
    with pytest.raises(BadInputError, match="square similarity"):
        negative_weights(torch.ones(3, 4), same, 0.25)
    with pytest.raises(BadInputError, match="same \\(global\\) batch"):
        weighted_contrastive(Z, torch.ones(2, 2))
    with pytest.raises(BadInputError, match="square logits"):
        weighted_contrastive(torch.ones(2, 3))
    with pytest.raises(BadInputError, match="paired embeddings"):
        global_weighted_contrastive(torch.ones(3, 4), torch.ones(2, 4), torch.tensor(1.0))


def test_global_loss_of_one_process_is_the_loss_of_its_logits_and_trains_the_scale():
    generator = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(5, 8, generator=generator), dim=1)
    b = F.normalize(torch.randn(5, 8, generator=generator), dim=1)
    w = negative_weights(torch.rand(5, 5, generator=generator), torch.ones(5, 5, dtype=torch.bool))
    scale = torch.tensor(14.0, requires_grad=True)
    loss = global_weighted_contrastive(a, b, scale, w)
    assert_close(loss, weighted_contrastive(scale * a @ b.t(), w))
    loss.backward()
    assert scale.grad is not None and float(scale.grad) != 0.0
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):          # the logits stay float32 under autocast
        mixed = global_weighted_contrastive(a, b, torch.tensor(100.0), w)
    assert_close(mixed, weighted_contrastive(100.0 * a @ b.t(), w), rtol=1e-6, atol=1e-6)


# ---- two processes: the negatives span the global batch, W is the global batch's ----

N_LOCAL, DIM = 3, 4


def _global_batch():
    generator = torch.Generator().manual_seed(4)
    a = F.normalize(torch.randn(WORLD * N_LOCAL, DIM, generator=generator), dim=1)
    b = F.normalize(torch.randn(WORLD * N_LOCAL, DIM, generator=generator), dim=1)
    categories = torch.tensor([0, 1, 0, 0, 1, 1])
    w = negative_weights(torch.rand(6, 6, generator=generator), categories.unsqueeze(1) == categories.unsqueeze(0))
    return a, b, w


def _weighted_on_ranks(ctx) -> dict:
    a, b, w = _global_batch()
    mine = slice(ctx.rank * N_LOCAL, (ctx.rank + 1) * N_LOCAL)
    a_local, b_local = a[mine].clone().requires_grad_(), b[mine].clone().requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    loss = global_weighted_contrastive(a_local, b_local, scale, w)
    loss.backward()
    return {"loss": loss.detach(), "a_grad": a_local.grad, "b_grad": b_local.grad, "scale_grad": scale.grad}


@needs_gloo
def test_under_ddp_the_mean_of_the_ranks_losses_is_the_global_batch_loss(tmp_path):
    results = run_ranks(tmp_path, _weighted_on_ranks)
    a, b, w = _global_batch()
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    loss = weighted_contrastive(scale * a @ b.t(), w)
    loss.backward()
    assert_close(sum(r["loss"] for r in results) / WORLD, loss.detach(), rtol=1e-5, atol=1e-6)
    assert_close(sum(r["scale_grad"] for r in results) / WORLD, scale.grad, rtol=1e-5, atol=1e-6)
    for rank, result in enumerate(results):
        mine = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        # each rank's rows get WORLD times the global loss's gradient, which DDP's average divides back
        assert_close(result["a_grad"], WORLD * a.grad[mine], rtol=1e-5, atol=1e-6)
        assert_close(result["b_grad"], WORLD * b.grad[mine], rtol=1e-5, atol=1e-6)
