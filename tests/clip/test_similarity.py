"""Issue 13 §2: the I2I (Eq. 2) and (I2L)^2 (Eqs. 3-4) similarities equal brute-force loops, block-wise or not."""
import math

import pytest
import torch

from plugin.clip.similarity import i2i_similarity, i2l2_similarity, landmark_descriptors


def _unit(vector):
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def _brute_i2i(emb_a, emb_b):
    """Eq. 2 with Python loops: f(mean_r e_a,r . e_b,r), f(x) = (x+1)/2, views normalised one by one."""
    out = []
    for a in emb_a.tolist():
        row = []
        for b in emb_b.tolist():
            dots = [sum(x * y for x, y in zip(_unit(va), _unit(vb))) for va, vb in zip(a, b)]
            row.append((sum(dots) / len(dots) + 1) / 2)
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


def _brute_i2l2(emb_a, emb_b, landmarks):
    """Eqs. 3-4 with Python loops: d_r[l] = e_r . t_l, g(mean_r ||d_a,r - d_b,r||), g(x) = 1/(1+x)."""
    texts = [_unit(t) for t in landmarks.tolist()]

    def descriptor(view):
        view = _unit(view)
        return [sum(x * y for x, y in zip(view, t)) for t in texts]

    out = []
    for a in emb_a.tolist():
        row = []
        for b in emb_b.tolist():
            distances = [math.sqrt(sum((x - y) ** 2 for x, y in zip(descriptor(va), descriptor(vb))))
                         for va, vb in zip(a, b)]
            row.append(1 / (1 + sum(distances) / len(distances)))
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture
def embeddings():
    """Unnormalised per-view embeddings: 5 and 4 objects, 3 views, D = 6; 5 landmarks."""
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(5, 3, 6, generator=gen) * 3, torch.randn(4, 3, 6, generator=gen) * 0.5,
            torch.randn(5, 6, generator=gen) * 2)


def test_i2i_equals_the_brute_force_formula(embeddings):
    emb_a, emb_b, _ = embeddings
    got = i2i_similarity(emb_a, emb_b)
    assert got.shape == (5, 4) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _brute_i2i(emb_a, emb_b), atol=1e-6, rtol=0)
    assert bool(((got >= 0) & (got <= 1)).all())


def test_i2l2_equals_the_brute_force_formula(embeddings):
    emb_a, emb_b, landmarks = embeddings
    desc_a, desc_b = landmark_descriptors(emb_a, landmarks), landmark_descriptors(emb_b, landmarks)
    assert desc_a.shape == (5, 3, 5)
    got = i2l2_similarity(desc_a, desc_b)
    assert got.shape == (5, 4)
    torch.testing.assert_close(got.double(), _brute_i2l2(emb_a, emb_b, landmarks), atol=1e-6, rtol=0)


def test_landmark_descriptors_are_cosines(embeddings):
    emb, _, landmarks = embeddings
    desc = landmark_descriptors(emb, landmarks)
    expected = torch.nn.functional.cosine_similarity(emb[:, :, None, :], landmarks[None, None], dim=-1)
    torch.testing.assert_close(desc, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("block", [1, 2, 3])
def test_block_wise_equals_unblocked(embeddings, block):
    emb_a, emb_b, landmarks = embeddings
    torch.testing.assert_close(i2i_similarity(emb_a, emb_b, block=block), i2i_similarity(emb_a, emb_b, block=100))
    desc_a, desc_b = landmark_descriptors(emb_a, landmarks), landmark_descriptors(emb_b, landmarks)
    torch.testing.assert_close(i2l2_similarity(desc_a, desc_b, block=block),
                               i2l2_similarity(desc_a, desc_b, block=100))


def test_self_similarity_is_one_and_symmetric(embeddings):
    emb, _, landmarks = embeddings
    i2i = i2i_similarity(emb, emb, block=2)
    desc = landmark_descriptors(emb, landmarks)
    i2l2 = i2l2_similarity(desc, desc, block=2)
    for matrix in (i2i, i2l2):
        torch.testing.assert_close(matrix.diagonal(), torch.ones(5), atol=1e-6, rtol=0)
        torch.testing.assert_close(matrix, matrix.T, atol=1e-6, rtol=0)
    # the scale of an embedding does not matter: views are normalised inside
    torch.testing.assert_close(i2i_similarity(emb * 7, emb), i2i, atol=1e-6, rtol=0)


def test_mismatched_views_are_refused(embeddings):
    emb_a, emb_b, landmarks = embeddings
    with pytest.raises(ValueError, match="same V"):
        i2i_similarity(emb_a, emb_b[:, :2])
    with pytest.raises(ValueError, match="same D"):
        landmark_descriptors(emb_a, landmarks[:, :4])
