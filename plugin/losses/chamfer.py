"""Chamfer reconstruction losses of Point-MAE and I2P-MAE, over the native ``chamfer_distance``.

For B pairs of clouds a (B, N, 3) and b (B, M, 3), with the squared nearest-neighbour distances
``d_ab[i, n] = min_m |a[i, n] - b[i, m]|^2`` and ``d_ba[i, m] = min_n |b[i, m] - a[i, n]|^2``::

    chamfer_l2(a, b) = mean_i mean_n d_ab[i, n] + mean_i mean_m d_ba[i, m]
    chamfer_l1(a, b) = (mean_i mean_n sqrt(d_ab[i, n]) + mean_i mean_m sqrt(d_ba[i, m])) / 2

that is, each direction is averaged over the points of each cloud and then over the batch (with
N and M fixed, the same as ``torch.mean`` over the (B, N) and (B, M) tensors), and the two
directions are summed (L2, Point-MAE's ``ChamferDistanceL2``, the reconstruction loss of I2P-MAE)
or averaged (L1, Point-MAE's ``ChamferDistanceL1``). The L2 form uses squared distances, no square
root. Gradients flow through the distances to both clouds; nearest-neighbour ties go to the lowest
index (:func:`pointnet2_ops.ops.chamfer_distance`).
"""
import torch

from ..ops import chamfer_distance


def _directions(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The (B, N) and (B, M) squared nearest-neighbour distances of ``a`` to ``b`` and back."""
    dist_ab, _, dist_ba, _ = chamfer_distance(a.contiguous(), b.contiguous())
    return dist_ab, dist_ba


def _sqrt(d: torch.Tensor) -> torch.Tensor:
    """``sqrt(d)`` for d >= 0 whose gradient at 0 is 0, not NaN (coinciding points)."""
    positive = d > 0
    return torch.where(positive, torch.where(positive, d, 1).sqrt(), 0)


def chamfer_l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Chamfer distance, mean(d_ab) + mean(d_ba) (Point-MAE ``ChamferDistanceL2``).

    Args:
        a: (B, N, 3) points, e.g. the reconstructed patches (float16/bfloat16 computed in float32).
        b: (B, M, 3) points, e.g. the ground-truth patches; M may differ from N.

    Returns:
        The scalar loss in the distances' dtype (float64 if either input is, else float32).
    """
    dist_ab, dist_ba = _directions(a, b)
    return dist_ab.mean() + dist_ba.mean()


def chamfer_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean Chamfer distance, (mean(sqrt d_ab) + mean(sqrt d_ba)) / 2 (Point-MAE ``ChamferDistanceL1``).

    Unlike Point-MAE's, the gradient of a point lying exactly on its nearest neighbour is 0, not NaN.

    Args:
        a: (B, N, 3) points.
        b: (B, M, 3) points; M may differ from N.

    Returns:
        The scalar loss in the distances' dtype (float64 if either input is, else float32).
    """
    dist_ab, dist_ba = _directions(a, b)
    return (_sqrt(dist_ab).mean() + _sqrt(dist_ba).mean()) / 2
