"""Captionless 3D-3D similarities from the image embeddings of rendered views (No Captions, No Problem, Sec. 3.2).

Objects a and b are each seen from the same V views r; e_a,r is the L2-normalised image embedding of
view r of a.

- I2I (Eq. 2): Sim(a, b) = f(mean_r e_a,r . e_b,r), f(x) = (x + 1) / 2, in [0, 1].
- (I2L)^2 (Eqs. 3-4): a view's descriptor over L landmark texts t_l of the category is
  d_r[l] = e_r . t_l; Sim(a, b) = g(mean_r ||d_a,r - d_b,r||_2), g(x) = 1 / (1 + x), in (0, 1].

Both work ``block`` rows of ``a`` at a time (and ``block`` rows of ``b`` for (I2L)^2), so the memory
used beyond the inputs and the (Na, Nb) result stays bounded.
"""
import torch
import torch.nn.functional as F

DEFAULT_BLOCK = 256


def _check_views(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.dim() != 3 or b.dim() != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{what} must be (Na,V,D) and (Nb,V,D) with the same V and D, not {tuple(a.shape)} and "
                         f"{tuple(b.shape)}.")


def i2i_similarity(emb_a: torch.Tensor, emb_b: torch.Tensor, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """I2I similarity (Na, Nb) of two sets of objects from their per-view image embeddings (Eq. 2).

    Args:
        emb_a: (Na,V,D) embeddings of V views per object (normalised here, per view).
        emb_b: (Nb,V,D) embeddings of the same V views.
        block: rows of ``emb_a`` per matrix product.

    Returns:
        (Na, Nb) float32 similarities in [0, 1].
    """
    _check_views(emb_a, emb_b, "I2I embeddings")
    views = emb_a.shape[1]
    flat_b = F.normalize(emb_b.float(), dim=-1).flatten(1)  # (Nb, V*D)
    out = torch.empty(emb_a.shape[0], emb_b.shape[0], dtype=torch.float32, device=emb_a.device)
    for start in range(0, emb_a.shape[0], block):
        flat_a = F.normalize(emb_a[start:start + block].float(), dim=-1).flatten(1)
        # Eq. 2: f(mean_r e_a,r . e_b,r), f(x) = (x+1)/2; the sum over r of dot products is one dot product of (V*D)
        out[start:start + block] = (flat_a @ flat_b.T / views + 1) / 2
    return out


def landmark_descriptors(emb: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Per-view landmark descriptors (N, V, L): d_r[l] = e_r . t_l, both L2-normalised (Eq. 3).

    Args:
        emb: (N,V,D) per-view image embeddings.
        landmarks: (L,D) text embeddings of the category's landmark descriptions.
    """
    if emb.dim() != 3 or landmarks.dim() != 2 or emb.shape[-1] != landmarks.shape[-1]:
        raise ValueError(f"Landmark descriptors need (N,V,D) embeddings and (L,D) landmarks of the same D, not "
                         f"{tuple(emb.shape)} and {tuple(landmarks.shape)}.")
    return F.normalize(emb.float(), dim=-1) @ F.normalize(landmarks.float(), dim=-1).T


def i2l2_similarity(desc_a: torch.Tensor, desc_b: torch.Tensor, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """(I2L)^2 similarity (Na, Nb) from per-view landmark descriptors (Eq. 4).

    Args:
        desc_a: (Na,V,L) descriptors (:func:`landmark_descriptors`).
        desc_b: (Nb,V,L) descriptors of the same views and landmarks.
        block: rows of ``desc_a`` and of ``desc_b`` per distance tile (memory V x block x block).

    Returns:
        (Na, Nb) float32 similarities in (0, 1].
    """
    _check_views(desc_a, desc_b, "(I2L)^2 descriptors")
    per_view_b = desc_b.float().transpose(0, 1)  # (V, Nb, L)
    out = torch.empty(desc_a.shape[0], desc_b.shape[0], dtype=torch.float32, device=desc_a.device)
    for start in range(0, desc_a.shape[0], block):
        per_view_a = desc_a[start:start + block].float().transpose(0, 1)  # (V, blk, L)
        for start_b in range(0, desc_b.shape[0], block):
            # exact differences (not the matrix-product expansion), so identical descriptors are at distance 0
            distance = torch.cdist(per_view_a, per_view_b[:, start_b:start_b + block],
                                   compute_mode="donot_use_mm_for_euclid_dist")
            # Eq. 4: g(mean_r ||d_a,r - d_b,r||_2), g(x) = 1/(1+x)
            out[start:start + block, start_b:start_b + block] = 1 / (1 + distance.mean(0))
    return out
