"""Zero-shot classification logits from multi-view image features and CLIP text features (CLIP2Point, Eq. 11).

Each of the V views of a shape is scored against every class by cosine similarity; the shape's
logits are the mean over its views. Accuracies of the logits are in :mod:`plugin.eval.metrics`.
"""
import torch
import torch.nn.functional as F

from ..errors import BadInputError


def zero_shot_logits(view_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Logits (B, C): cosine similarity of each view to each class, averaged over the views.

    Args:
        view_features: (B, V, D) per-view image features, or (B, D) for a single view; normalised here.
        text_features: (C, D) class embeddings; normalised here.
    """
    if view_features.dim() == 2:
        view_features = view_features.unsqueeze(1)
    if view_features.dim() != 3 or text_features.dim() != 2 or view_features.shape[-1] != text_features.shape[-1]:
        raise BadInputError(f"Zero-shot needs view features (B,V,D) and text features (C,D) of the same D, got "
                            f"{tuple(view_features.shape)} and {tuple(text_features.shape)}: encode views and text "
                            f"with the same CLIP.")
    views = F.normalize(view_features.float(), dim=-1)
    text = F.normalize(text_features.float().to(views.device), dim=-1)
    # CLIP2Point Eq. 11: logits = (1/V) sum_v  f_v W_t^T, with f_v and W_t L2-normalised
    return torch.einsum("bvd,cd->bvc", views, text).mean(dim=1)
