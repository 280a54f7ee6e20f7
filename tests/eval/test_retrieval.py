"""Retrieval figures (plugin/eval/retrieval.py): hand-computed ranks with ties, a brute-force reference, the
release's batch protocol on a constructed case, many images per shape (Pix3D), and the cumulative match curve
of plugin/vis/retrieval_plots.py."""
import math

import numpy as np
import pytest
import torch

from plugin.errors import BadInputError, ConfigError
from plugin.eval import batch_gallery, cross_modal_retrieval, retrieval_metrics
from plugin.eval.retrieval import query_outcomes
from plugin.vis.retrieval_plots import cumulative_match

# 3 queries x 4 gallery items; query 1 has a tie (items 1 and 2 at 0.8), only item 2 relevant
SIMILARITY = torch.tensor([[0.9, 0.5, 0.7, 0.1],
                           [0.2, 0.8, 0.8, 0.3],
                           [0.4, 0.3, 0.2, 0.1]])
RELEVANT = torch.tensor([[0, 1, 0, 0],
                         [0, 0, 1, 1],
                         [1, 0, 0, 1]], dtype=torch.bool)


def test_hand_computed_ranks_and_average_precision():
    # q0 order 0,2,1,3: relevant at 3 -> AP 1/3. q1: the tie ranks irrelevant item 1 first (against the query):
    # order 1,2,3,0, relevant at 2 and 3 -> AP (1/2 + 2/3)/2 = 7/12. q2 order 0,1,2,3: relevant at 1, 4 -> AP
    # (1 + 2/4)/2 = 3/4
    outcomes = query_outcomes(SIMILARITY, RELEVANT)
    assert outcomes.rank.tolist() == [3, 2, 1]
    assert torch.allclose(outcomes.average_precision, torch.tensor([1 / 3, 7 / 12, 3 / 4], dtype=torch.float64))
    figures = retrieval_metrics(SIMILARITY, RELEVANT, ks=(1, 2, 5))
    assert figures["top1"] == pytest.approx(100 / 3) and figures["top2"] == pytest.approx(200 / 3)
    assert figures["top5"] == pytest.approx(100.0)  # k above the gallery size: every query has its item
    assert figures["map"] == pytest.approx(100 * (1 / 3 + 7 / 12 + 3 / 4) / 3)  # 55.56


def test_ties_count_against_the_query():
    equal = torch.zeros(2, 5)
    relevant = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    outcomes = query_outcomes(equal, relevant)
    assert outcomes.rank.tolist() == [5, 4]  # a collapsed model: every relevant item behind every irrelevant one
    assert torch.allclose(outcomes.average_precision, torch.tensor([1 / 5, (1 / 4 + 2 / 5) / 2], dtype=torch.float64))


def _brute_force(similarity, relevant):
    """Rank and AP per query by sorting (score desc, relevant last among equals) in plain Python."""
    ranks, aps = [], []
    for scores, rel in zip(similarity.tolist(), relevant.tolist()):
        order = sorted(range(len(scores)), key=lambda g: (-scores[g], rel[g]))
        hits = [rel[g] for g in order]
        ranks.append(hits.index(True) + 1)
        found = [sum(hits[:p + 1]) / (p + 1) for p, h in enumerate(hits) if h]
        aps.append(sum(found) / len(found))
    return ranks, aps


def test_equals_a_brute_force_ranking_with_many_ties():
    generator = torch.Generator().manual_seed(0)
    similarity = torch.randint(0, 4, (40, 30), generator=generator).float() / 3  # four levels: ties everywhere
    relevant = torch.rand(40, 30, generator=generator) < 0.15
    relevant[torch.arange(40), torch.randint(0, 30, (40,), generator=generator)] = True
    ranks, aps = _brute_force(similarity, relevant)
    outcomes = query_outcomes(similarity, relevant)
    assert outcomes.rank.tolist() == ranks
    assert torch.allclose(outcomes.average_precision, torch.tensor(aps, dtype=torch.float64))
    figures = retrieval_metrics(similarity, relevant, ks=(1, 5))
    assert figures["top5"] == pytest.approx(100 * sum(r <= 5 for r in ranks) / 40)
    assert figures["map"] == pytest.approx(100 * sum(aps) / 40)


def test_invariant_to_the_gallery_order():
    generator = torch.Generator().manual_seed(1)
    similarity, relevant = torch.randn(10, 12, generator=generator), torch.rand(10, 12, generator=generator) < 0.3
    relevant[:, 0] = True
    permutation = torch.randperm(12, generator=generator)
    assert retrieval_metrics(similarity, relevant) == pytest.approx(
        retrieval_metrics(similarity[:, permutation], relevant[:, permutation]))


def test_refuses_queries_without_relevant_items_and_non_finite_scores():
    with pytest.raises(BadInputError, match="1 retrieval queries have no relevant item"):
        retrieval_metrics(SIMILARITY, RELEVANT & torch.tensor([[False], [True], [True]]))
    with pytest.raises(BadInputError, match="NaN or infinite"):
        retrieval_metrics(SIMILARITY.masked_fill(RELEVANT, math.nan), RELEVANT)
    with pytest.raises(BadInputError, match="same shape"):
        retrieval_metrics(SIMILARITY, RELEVANT[:, :3])


def test_batch_gallery_is_a_seeded_partition():
    batches = batch_gallery(300, 128, seed=0)
    assert [len(b) for b in batches] == [128, 128, 44]  # the remainder is kept, nothing dropped
    assert sorted(torch.cat(batches).tolist()) == list(range(300))
    assert all(torch.equal(a, b) for a, b in zip(batches, batch_gallery(300, 128, seed=0)))
    assert not torch.equal(torch.cat(batches), torch.cat(batch_gallery(300, 128, seed=1)))
    assert not torch.equal(torch.cat(batches), torch.arange(300))  # shuffled
    with pytest.raises(ConfigError, match="retrieval.batch_size is 0"):
        batch_gallery(10, 0)


def _confused_case(seed):
    """4 objects in two batches of 2; each image is nearer (0.8) the shape of an object of the OTHER batch than
    its own shape (0.6), and each shape is that nearest shape of exactly one image."""
    (a0, a1), (b0, b1) = [b.tolist() for b in batch_gallery(4, 2, seed)]
    confuser = {a0: b0, a1: b1, b0: a1, b1: a0}
    shapes = torch.eye(4)
    images = torch.stack([0.6 * shapes[i] + 0.8 * shapes[confuser[i]] for i in range(4)])
    return images, shapes


@pytest.mark.parametrize("seed", [0, 3])
def test_batch_protocol_only_ranks_the_own_batch(seed):
    images, shapes = _confused_case(seed)
    labels = torch.tensor([0, 0, 1, 1])
    full, ranks = cross_modal_retrieval(images, shapes, torch.arange(4), labels, labels)
    # full gallery: the confuser (0.8) ranks before the own shape (0.6) for every image and every shape
    assert full["i2s_top1"] == 0.0 and full["s2i_top1"] == 0.0
    assert full["i2s_top5"] == 100.0
    assert full["i2s_map"] == pytest.approx(50.0) and full["s2i_map"] == pytest.approx(50.0)
    assert ranks["i2s"].tolist() == [2, 2, 2, 2] and ranks["s2i"].tolist() == [2, 2, 2, 2]
    batch, ranks = cross_modal_retrieval(images, shapes, torch.arange(4), labels, labels, gallery="batch",
                                         batch_size=2, seed=seed)
    # the confuser lies in the other batch: within its batch every query finds its own item first
    assert batch["i2s_top1"] == 100.0 and batch["s2i_top1"] == 100.0 and batch["i2s_map"] == pytest.approx(100.0)
    assert batch["queries_i2s"] == 4 and batch["queries_s2i"] == 4 and ranks["i2s"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ConfigError, match="retrieval.gallery is 'batches'"):
        cross_modal_retrieval(images, shapes, torch.arange(4), labels, labels, gallery="batches")


def test_batch_protocol_equals_each_batch_ranked_alone():
    generator = torch.Generator().manual_seed(2)
    images, shapes = torch.randn(37, 6, generator=generator), torch.randn(37, 6, generator=generator)
    labels = torch.randint(0, 3, (37,), generator=generator)
    figures, ranks = cross_modal_retrieval(images, shapes, torch.arange(37), labels, labels, gallery="batch",
                                           batch_size=8, seed=5)
    expected = torch.zeros(37, dtype=torch.long)
    unit_images, unit_shapes = (torch.nn.functional.normalize(t, dim=1) for t in (images, shapes))
    for rows in batch_gallery(37, 8, seed=5):
        cosine = unit_images[rows] @ unit_shapes[rows].T
        expected[rows] = query_outcomes(cosine, torch.eye(len(rows), dtype=torch.bool)).rank
    assert torch.equal(ranks["i2s"], expected)  # in sample order
    assert figures["i2s_top1"] == pytest.approx(100 * float((expected == 1).double().mean()))


def test_many_images_per_shape():
    # Pix3D-like: images 0 and 1 show shape 0, image 2 shows shape 1; image 1 lies nearer shape 1 (0.8 > 0.6)
    shapes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    images = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    figures, ranks = cross_modal_retrieval(images, shapes, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]),
                                           torch.tensor([0, 1]))
    assert ranks["i2s"].tolist() == [1, 2, 1] and ranks["s2i"].tolist() == [1, 1]
    assert figures["i2s_top1"] == pytest.approx(200 / 3) and figures["i2s_map"] == pytest.approx(100 * 2.5 / 3)
    # shape 0 ranks images 0 (1.0), 1 (0.6), 2 (0.0): both relevant images first -> AP 1
    assert figures["s2i_top1"] == 100.0 and figures["s2i_map"] == pytest.approx(100.0)
    assert figures["i2s_category_top1"] == pytest.approx(200 / 3) and figures["s2i_category_top1"] == 100.0
    assert figures["queries_i2s"] == 3 and figures["queries_s2i"] == 2


def test_category_top1_counts_the_label_of_the_first_item():
    # image 0's best shape is shape 1, another object of the same category: wrong object, right category
    shapes = torch.eye(3)
    images = torch.tensor([[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([4, 4, 7])
    figures, _ = cross_modal_retrieval(images, shapes, torch.arange(3), labels, labels)
    assert figures["i2s_top1"] == pytest.approx(200 / 3) and figures["i2s_category_top1"] == 100.0


def test_refuses_inconsistent_inputs():
    with pytest.raises(BadInputError, match="shape_of indexes 2 shapes"):
        cross_modal_retrieval(torch.eye(3), torch.eye(3)[:2], torch.tensor([0, 1, 2]), torch.zeros(3),
                              torch.zeros(2))
    with pytest.raises(BadInputError, match="Retrieval needs images"):
        cross_modal_retrieval(torch.eye(3), torch.eye(4), torch.arange(3), torch.zeros(3), torch.zeros(4))


def test_cumulative_match_counts_ranks():  # the curve mode=retrieval draws from its ranks
    assert cumulative_match(np.array([1, 3, 3, 2])).tolist() == pytest.approx([25.0, 50.0, 100.0])
    with pytest.raises(BadInputError, match="1-based ranks"):
        cumulative_match(np.array([0, 1]))
