"""Pure-PyTorch reference implementations of the kernel-level ops.

Signatures and semantics match the compiled kernels in ``pointnet2_ops._C`` exactly (see
:mod:`pointnet2_ops.ops` for the documented contract); inputs are assumed already validated:
contiguous float32/float64 tensors of one dtype and int32/int64 indices. Squared distances are
evaluated as ``(dx*dx + dy*dy) + dz*dz``, the order the kernels use, so index results (FPS,
ball query, three_nn, knn, chamfer_distance) agree bit for bit. Everything is vectorised over
points; only FPS loops, over its sequential sampling steps. The rasteriser resolves each pixel with
``scatter_reduce`` (amin) on 64-bit keys ``depth bits << 32 | point index``; the weighted
and summing splatters sum with ``scatter_add`` in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FPS_INIT = 1e10  # initial running min distance, as in the CUDA kernels
_CHAMFER_BLOCK = 1 << 22  # most entries of the (B, rows, M) distances chamfer_distance holds


def _pairwise_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Squared distances (B, M, N) between a (B, M, 3) and b (B, N, 3), kernel evaluation order."""
    diff = a.unsqueeze(2) - b.unsqueeze(1)
    dx, dy, dz = diff.unbind(-1)
    return dx * dx + dy * dy + dz * dz


def _expand_index(idx: Tensor, channels: int) -> Tensor:
    """(B, ...) indices -> (B, C, prod(...)) int64, ready for gather/scatter along dim 2."""
    flat = idx.reshape(idx.shape[0], 1, -1).long()
    return flat.expand(-1, channels, -1)


def furthest_point_sample(xyz: Tensor, npoint: int) -> Tensor:
    """Furthest point sampling; see :func:`pointnet2_ops.ops.furthest_point_sample`."""
    b, n, _ = xyz.shape
    xs, ys, zs = xyz.unbind(-1)
    min_d = torch.full((b, n), _FPS_INIT, dtype=xyz.dtype, device=xyz.device)
    out = torch.zeros(b, npoint, dtype=torch.long, device=xyz.device)
    last = torch.zeros(b, 1, dtype=torch.long, device=xyz.device)
    for j in range(1, npoint):
        dx = xs - xs.gather(1, last)
        dy = ys - ys.gather(1, last)
        dz = zs - zs.gather(1, last)
        d = dx * dx + dy * dy + dz * dz
        # Like the kernels' `d < old ? d : old`: a NaN distance leaves min_d unchanged.
        min_d = torch.where(d < min_d, d, min_d)
        last = min_d.argmax(dim=1, keepdim=True)  # first (lowest) index on ties
        out[:, j] = last.squeeze(1)
    return out.int()


def gather_points(features: Tensor, idx: Tensor) -> Tensor:
    """Gather (B, C, N) features at (B, M) indices -> (B, C, M)."""
    return features.gather(2, _expand_index(idx, features.shape[1]))


def gather_points_backward(grad_out: Tensor, idx: Tensor, n: int) -> Tensor:
    """Scatter-add (B, C, M) gradients back to (B, C, N)."""
    b, c, _ = grad_out.shape
    grad = grad_out.new_zeros(b, c, n)
    return grad.scatter_add_(2, _expand_index(idx, c), grad_out)


def ball_query(radius: float, nsample: int, xyz: Tensor, new_xyz: Tensor) -> Tensor:
    """Ball query; see :func:`pointnet2_ops.ops.ball_query`."""
    r = torch.tensor(radius, dtype=xyz.dtype)
    inside = _pairwise_sq_dist(new_xyz, xyz) < r * r  # (B, M, N)
    rank = inside.cumsum(-1, dtype=torch.int32)  # 1-based rank of each hit in index order
    keep = inside & (rank <= nsample)
    # Scatter each kept hit's index into its slot; everything else lands in a spare slot.
    slot = torch.where(keep, rank - 1, nsample).long()
    n = xyz.shape[1]
    point_ids = torch.arange(n, dtype=torch.int32, device=xyz.device).expand_as(slot)
    slots = torch.zeros(*slot.shape[:2], nsample + 1, dtype=torch.int32, device=xyz.device)
    slots.scatter_(-1, slot, point_ids)
    hits = rank[..., -1:].clamp(max=nsample)  # (B, M, 1)
    filled = torch.arange(nsample, device=xyz.device) < hits
    # Pad with the first hit (slot 0 stays 0 when there is no hit at all).
    return torch.where(filled, slots[..., :nsample], slots[..., :1])


def group_points(features: Tensor, idx: Tensor) -> Tensor:
    """Group (B, C, N) features by (B, M, K) indices -> (B, C, M, K)."""
    b, c, _ = features.shape
    grouped = features.gather(2, _expand_index(idx, c))
    return grouped.view(b, c, *idx.shape[1:])


def group_points_backward(grad_out: Tensor, idx: Tensor, n: int) -> Tensor:
    """Scatter-add (B, C, M, K) gradients back to (B, C, N)."""
    b, c = grad_out.shape[:2]
    grad = grad_out.new_zeros(b, c, n)
    return grad.scatter_add_(2, _expand_index(idx, c), grad_out.reshape(b, c, -1))


def three_nn(unknown: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
    """Three nearest known points; see :func:`pointnet2_ops.ops.three_nn` (squared distances)."""
    d = _pairwise_sq_dist(unknown, known)  # (B, n, m)
    # A stable ascending sort reproduces the kernels' strict-`<` cascade (ties: lower index).
    dist2, idx = d.sort(dim=-1, stable=True)
    dist2, idx = dist2[..., :3], idx[..., :3].int()
    missing = 3 - dist2.shape[-1]  # m < 3: unfilled slots hold +inf and index 0
    if missing > 0:
        dist2 = torch.nn.functional.pad(dist2, (0, missing), value=float("inf"))
        idx = torch.nn.functional.pad(idx, (0, missing), value=0)
    return dist2, idx


def three_interpolate(features: Tensor, idx: Tensor, weight: Tensor) -> Tensor:
    """Weighted sum of three (B, C, m) features per (B, n, 3) indices/weights -> (B, C, n)."""
    b, c, _ = features.shape
    n = idx.shape[1]
    picked = features.gather(2, _expand_index(idx, c)).view(b, c, n, 3)
    w = weight.unsqueeze(1)  # (B, 1, n, 3)
    p0, p1, p2 = picked.unbind(-1)
    w0, w1, w2 = w.unbind(-1)
    return w0 * p0 + w1 * p1 + w2 * p2


def three_interpolate_backward(grad_out: Tensor, idx: Tensor, weight: Tensor, m: int) -> Tensor:
    """Scatter-add (B, C, n) gradients times weights back to (B, C, m)."""
    b, c, _ = grad_out.shape
    contrib = grad_out.unsqueeze(-1) * weight.unsqueeze(1)  # (B, C, n, 3)
    grad = grad_out.new_zeros(b, c, m)
    return grad.scatter_add_(2, _expand_index(idx, c), contrib.reshape(b, c, -1))


def knn(query: Tensor, support: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest support points per query; see :func:`pointnet2_ops.ops.knn` (squared)."""
    d = _pairwise_sq_dist(query, support)  # (B, M, N)
    dist2, idx = d.sort(dim=-1, stable=True)  # ties: lower index first
    return dist2[..., :k].contiguous(), idx[..., :k].int()


def chamfer_distance(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest neighbours both ways; see :func:`pointnet2_ops.ops.chamfer_distance`.

    Rows of ``a`` are taken in blocks of at most ``_CHAMFER_BLOCK`` distances. Each block gives
    ``a``'s nearest points directly and a candidate for ``b``'s, kept only when strictly closer
    than those of earlier blocks (so ties keep the lowest index). ``|b - a|^2`` equals
    ``|a - b|^2`` bit for bit, so one distance matrix serves both directions.
    """
    batch, n, _ = a.shape
    m = b.shape[1]
    rows = max(1, _CHAMFER_BLOCK // (batch * m))
    dist_ab, idx_ab = [], []
    dist_ba = torch.full((batch, m), float("inf"), dtype=a.dtype, device=a.device)
    idx_ba = torch.zeros(batch, m, dtype=torch.long, device=a.device)
    for start in range(0, n, rows):
        d = _pairwise_sq_dist(a[:, start:start + rows], b)  # (B, rows, M)
        d = torch.where(d.isnan(), float("inf"), d)  # NaN distances are never nearest
        d_min, d_arg = d.min(dim=2)  # first (lowest) index on ties; 0 when all are +inf
        dist_ab.append(d_min)
        idx_ab.append(d_arg)
        col_min, col_arg = d.min(dim=1)
        closer = col_min < dist_ba
        dist_ba = torch.where(closer, col_min, dist_ba)
        idx_ba = torch.where(closer, col_arg + start, idx_ba)
    return torch.cat(dist_ab, 1), torch.cat(idx_ab, 1), dist_ba, idx_ba


def _covered(coord: Tensor, footprint: int, size: int) -> tuple[Tensor, Tensor]:
    """Pixels (B, N, footprint) along one axis covered by each point, and which lie in [0, size)."""
    first = coord.floor() - (footprint - 1) // 2
    pix = first.unsqueeze(-1) + torch.arange(footprint, dtype=coord.dtype, device=coord.device)
    valid = (pix >= 0) & (pix < size)  # False for NaN/infinite coordinates
    return torch.where(valid, pix, 0).long(), valid


def _footprint_targets(
    pixels: Tensor, height: int, width: int, footprint: int, any_sign: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Flat pixel targets of every point's footprint, and the points' float32 depths.

    Returns ``(target, ok, depth)``: (B, N, f, f) pixel indices ``row * width + col`` (entries
    outside the image or of invisible points point at the spare slot ``height * width``), the
    matching (B, N, f, f) validity mask, and the (B, N) depths rounded to float32. Points draw
    when their rounded depth is positive and finite, or with ``any_sign`` finite.
    """
    col, row, depth = pixels.unbind(-1)
    depth = depth.float()  # depths compare as float32, like the kernels
    visible = depth.isfinite() if any_sign else (depth > 0) & (depth < float("inf"))
    cols, col_ok = _covered(col, footprint, width)
    rows, row_ok = _covered(row, footprint, height)
    target = rows.unsqueeze(-1) * width + cols.unsqueeze(-2)  # (B, N, f, f)
    ok = visible[..., None, None] & row_ok.unsqueeze(-1) & col_ok.unsqueeze(-2)
    spare = height * width  # uncovered entries land in a spare slot past the image
    return torch.where(ok, target, spare), ok, depth


def rasterize_points(
    pixels: Tensor, height: int, width: int, footprint: int
) -> tuple[Tensor, Tensor]:
    """Z-buffer splatting; see :func:`pointnet2_ops.ops.rasterize_points`."""
    b, n, _ = pixels.shape
    target, _, depth = _footprint_targets(pixels, height, width, footprint)
    target = target.reshape(b, -1)
    # Positive float32 depths order like their bit patterns, so the key orders (depth, index).
    point_ids = torch.arange(n, device=pixels.device)
    keys = (depth.view(torch.int32).long() << 32) | point_ids
    keys = keys[..., None, None].expand(-1, -1, footprint, footprint).reshape(b, -1)
    empty = torch.iinfo(torch.int64).max
    spare = height * width
    best = torch.full((b, spare + 1), empty, dtype=torch.int64, device=pixels.device)
    best.scatter_reduce_(1, target, keys, reduce="amin")
    best = best[:, :spare].view(b, height, width)
    hit = best != empty
    zbuf = (best >> 32).int().view(torch.float32)
    zbuf = torch.where(hit, zbuf, float("inf"))
    index = torch.where(hit, best & 0xFFFFFFFF, -1)
    return zbuf, index


def splat_weighted_depth(
    pixels: Tensor, height: int, width: int, footprint: int
) -> tuple[Tensor, Tensor]:
    """Inverse-depth-weighted splatting; see :func:`pointnet2_ops.ops.splat_weighted_depth`."""
    b = pixels.shape[0]
    _, index = rasterize_points(pixels, height, width, footprint)
    target, ok, depth = _footprint_targets(pixels, height, width, footprint)
    z = depth.double()[..., None, None].expand_as(ok)
    w = torch.where(ok, 1 / z, 0)  # w_i = 1 / z_i (CLIP2Point Eq. 8); 0 for invisible entries
    spare = height * width
    sums = pixels.new_zeros(2, b, spare + 1, dtype=torch.float64)
    sums[0].scatter_add_(1, target.reshape(b, -1), (w * torch.where(ok, z, 0)).reshape(b, -1))
    sums[1].scatter_add_(1, target.reshape(b, -1), w.reshape(b, -1))
    num, den = sums[:, :, :spare].view(2, b, height, width)
    value = torch.where(index >= 0, (num / den).float(), float("inf"))
    return value, index


def splat_sum_depth(
    pixels: Tensor, height: int, width: int, footprint: int
) -> tuple[Tensor, Tensor]:
    """Summing splatting; see :func:`pointnet2_ops.ops.splat_sum_depth`."""
    b = pixels.shape[0]
    target, ok, depth = _footprint_targets(pixels, height, width, footprint, any_sign=True)
    z = torch.where(ok, depth.double()[..., None, None], 0)  # NaN/inf depths never reach a sum
    spare = height * width
    sums = pixels.new_zeros(b, spare + 1, dtype=torch.float64)
    sums.scatter_add_(1, target.reshape(b, -1), z.reshape(b, -1))
    count = torch.zeros(b, spare + 1, dtype=torch.int64, device=pixels.device)
    count.scatter_add_(1, target.reshape(b, -1), ok.long().reshape(b, -1))
    value = sums[:, :spare].view(b, height, width).float()
    return value, count[:, :spare].view(b, height, width)
