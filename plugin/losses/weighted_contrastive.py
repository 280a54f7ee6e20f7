"""Contrastive alignment with similarity-weighted in-batch negatives ("No Captions, No Problem",
Sbrolli & Matteucci, Eqs. 5-6).

Z (N, N) are the logits of N paired embeddings (Z_ij = exp(s) * a_i . b_j, pair i the positive of row i).
Each negative j of anchor i is weighted by W_ij, built from a precomputed 3D-3D similarity S:

    W_ij = (N - 1) S_ij / sum_{k != i} S_ik   (i != j),     W_ii = 1,

with S_ij = 3D-Sim(i, j) for objects of the same category and a constant alpha across categories, so
the negatives of every row keep a mean weight of 1 and harder (more similar) negatives count more. The
loss of one direction is L(Z, W) = -mean_i [Z_ii - logsumexp_j(Z_ij + log W_ij)], and the symmetric
loss is 1/2 L(Z, W) + 1/2 L(Z^T, W): row i of Z^T is image i against every shape, whose negatives are
the same objects j as for shape i, so both directions take W's row i (not a column of W). With W = 1
(``weights=None``) it is CLIP's symmetric cross-entropy, exactly.

Under DDP, :func:`global_weighted_contrastive` contrasts this process's rows against the rows of every
process (:func:`.global_batch.gather_rows`), and W is the global batch's (N_global, N_global) matrix.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..errors import BadInputError
from .global_batch import gather_rows


def negative_weights(similarity: torch.Tensor, same_category: torch.Tensor, alpha: float = 0.25) -> torch.Tensor:
    """The negative weights W (N, N) of a batch (Eq. 6), row-normalised to a mean of 1 over the negatives.

    Args:
        similarity: (N, N) 3D-3D similarities S >= 0; only entries of same-category pairs are read.
        same_category: (N, N) bool, True where objects i and j are of the same category.
        alpha: S_ij of pairs of different categories (0.25 in the paper), >= 0.

    Returns:
        W (N, N) float32 on ``similarity``'s device: W_ii = 1 and W_ij = (N - 1) S_ij / sum_{k != i} S_ik.
        A row whose negatives all have S = 0 gets W = 0 there (those negatives drop out of its loss).
    """
    n = similarity.shape[0]
    if similarity.dim() != 2 or similarity.shape != (n, n) or same_category.shape != similarity.shape:
        raise BadInputError(f"negative_weights needs a square similarity (N, N) and a same-category mask of its "
                            f"shape, got {tuple(similarity.shape)} and {tuple(same_category.shape)}: pass the "
                            f"batch's N x N matrices.")
    if not alpha >= 0:
        raise BadInputError(f"The cross-category similarity alpha is {alpha}: set model.similarity.alpha to a "
                            f"number >= 0 (the paper uses 0.25).")
    eye = torch.eye(n, dtype=torch.bool, device=similarity.device)
    s = torch.where(same_category.to(similarity.device), similarity.float(),
                    torch.full_like(similarity, float(alpha), dtype=torch.float32))  # S_ij: 3D-Sim or alpha
    s = s.masked_fill(eye, 0.0)                                                     # k != i in the sum
    total = s.sum(dim=1, keepdim=True)
    w = torch.where(total > 0, (n - 1) * s / total.clamp_min(torch.finfo(s.dtype).tiny), torch.zeros_like(s))
    return w.masked_fill(eye, 1.0)                                                  # Eq. 6: W_ii = 1


def average_weights(w_a: torch.Tensor, w_b: torch.Tensor) -> torch.Tensor:
    """The ``avg`` weights (Sec. 4.1): the mean of two normalised weight matrices (not of their similarities).

    Args:
        w_a: (N, N) weights from one similarity (e.g. I2I), from :func:`negative_weights`.
        w_b: (N, N) weights from the other (e.g. (I2L)^2).
    """
    if w_a.shape != w_b.shape:
        raise BadInputError(f"average_weights needs two weight matrices of one shape, got {tuple(w_a.shape)} and "
                            f"{tuple(w_b.shape)}: build both for the same batch.")
    return (w_a + w_b) / 2


def weighted_cross_entropy(logits: torch.Tensor, weights: Optional[torch.Tensor],
                           targets: torch.Tensor) -> torch.Tensor:
    """One direction of Eq. 5: -mean_i [Z_{i,t_i} - logsumexp_j(Z_ij + log W_ij)].

    Computed as the cross-entropy of Z + log W: with W at the positive equal to 1 (log 1 = 0) that is Eq. 5,
    and with ``weights=None`` it is the plain cross-entropy of Z, bit for bit.

    Args:
        logits: (n, M) logits Z of n anchors against M candidates (float32 is used inside).
        weights: (n, M) W >= 0 with 1 at each anchor's positive, or None for W = 1.
        targets: (n,) int64 index of each anchor's positive among the M candidates.
    """
    logits = logits.float()
    if weights is not None:
        if weights.shape != logits.shape:
            raise BadInputError(f"The negative weights have shape {tuple(weights.shape)} but the logits "
                                f"{tuple(logits.shape)}: build W for the same (global) batch.")
        logits = logits + weights.to(logits).log()                        # Eq. 5: Z_ij + log W_ij
    return F.cross_entropy(logits, targets)


def weighted_contrastive(logits: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The symmetric weighted loss 1/2 L(Z, W) + 1/2 L(Z^T, W) of a square logit matrix (Eqs. 5-6).

    Args:
        logits: (N, N) Z, positives on the diagonal (rows: 3D, columns: images).
        weights: (N, N) W from :func:`negative_weights` (row i: anchor i's negatives, for both directions),
            or None for W = 1 (the ``plain`` baseline, CLIP's symmetric cross-entropy).
    """
    n = logits.shape[0]
    if logits.dim() != 2 or logits.shape[1] != n:
        raise BadInputError(f"weighted_contrastive needs square logits (N, N) with the pairs on the diagonal, got "
                            f"{tuple(logits.shape)}: pass Z = scale * a @ b.T of paired rows.")
    targets = torch.arange(n, device=logits.device)
    # Eq. 5: L = 1/2 L(Z, W) + 1/2 L(Z^T, W)
    return (weighted_cross_entropy(logits, weights, targets) + weighted_cross_entropy(logits.t(), weights, targets)) / 2


def global_weighted_contrastive(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor,
                                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`weighted_contrastive` of Z = scale * a @ b^T over the global batch (Eqs. 5-6).

    This process's rows of ``a`` are contrasted against every process's ``b`` and its rows of ``b`` against
    every process's ``a`` (:func:`.global_batch.gather_rows`, gradient-aware), each direction a mean over this
    process's rows; DDP's gradient average then gives the step of the whole global batch. Without DDP it is
    exactly ``weighted_contrastive(scale * a @ b.T, weights)``. The logits are float32 under autocast too (at a scale of
    100, bf16 logits would be off by up to 0.5).

    Args:
        a: (n, D) L2-normalised embeddings of this process (e.g. 3D).
        b: (n, D) L2-normalised embeddings paired row by row with ``a`` (e.g. images, or category texts).
        scale: the logit scale exp(s) (a 0-dim tensor, in the graph when it trains).
        weights: (N, N) W of the global batch of N = n x world size rows, in rank order, or None for W = 1.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise BadInputError(f"The contrastive loss needs two (n, D) embedding tensors of one shape, got "
                            f"{tuple(a.shape)} and {tuple(b.shape)}: pass paired embeddings row by row.")
    (all_a, first), (all_b, _) = gather_rows(a), gather_rows(b)
    n = a.shape[0]
    targets = first + torch.arange(n, device=a.device)                  # this process's pairs among all rows
    rows = None if weights is None else weights[first:first + n]        # W's rows of this process's anchors
    with torch.autocast(device_type=a.device.type, enabled=False):      # logits up to 100 need float32
        a_to_b = scale.float() * a.float() @ all_b.float().t()           # rows of Z
        b_to_a = scale.float() * b.float() @ all_a.float().t()           # rows of Z^T
    # Eq. 5: L = 1/2 L(Z, W) + 1/2 L(Z^T, W)
    return (weighted_cross_entropy(a_to_b, rows, targets) + weighted_cross_entropy(b_to_a, rows, targets)) / 2
