"""The losses of Cross-MoST (Dharmasiri et al., "Cross-Modal Self-Training: Aligning Images and Pointclouds to learn
Classification without Labels"): joint pseudo-labels, the masked classification loss, the fairness regulariser, and
the masked-modelling and global-local alignment terms it takes from MUST (Li et al., ICLR 2023).

Every function works on one process's rows; the fairness term averages the class marginal over the global batch.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import BadInputError, ConfigError
from .global_batch import gather_rows

SOURCES = ("joint", "own", "image", "point", "random")


class PseudoLabels(NamedTuple):
    """What the teacher gives the student for one batch (B samples).

    ``image``/``point``: the label each branch learns; ``keep_image``/``keep_point``: whether it counts; ``from_image``:
    whether the label was taken from the image prediction (``joint``/``random``/``image``; for ``own``: the image
    branch's); ``confidence``: the confidence r_b behind the label (``own``: the image branch's).
    """

    image: torch.Tensor        # (B,) int64
    point: torch.Tensor        # (B,) int64
    keep_image: torch.Tensor   # (B,) bool
    keep_point: torch.Tensor   # (B,) bool
    from_image: torch.Tensor   # (B,) bool
    confidence: torch.Tensor   # (B,) float


def pseudo_labels(prob_image: torch.Tensor, prob_point: torch.Tensor, source: str = "joint",
                  threshold: float = 0.84, point_weight: float = 1.0) -> PseudoLabels:
    """Pseudo-labels of a batch from the teacher's softmax of both branches (weak inputs, no masks).

    ``joint`` (the paper): r_b = max(s_img, w * s_pcl), the label of the more confident modality for both branches,
    kept where r_b > T. ``own``: each branch its own label, kept where its own confidence > T (MUST on each branch,
    the baseline self-training). ``image``/``point``: both branches learn the label of that modality, kept where its
    confidence > T. ``random``: a fair coin per sample picks the modality (Tab. 2's random choice).

    Args:
        prob_image: (B, C) teacher softmax of the image branch.
        prob_point: (B, C) teacher softmax of the point branch.
        source: one of :data:`SOURCES`.
        threshold: T; a label counts where its confidence exceeds it.
        point_weight: w, the weight of the point confidence in the ``joint`` comparison (1 in the paper, 0.9 in the
            release for ModelNet).
    """
    if source not in SOURCES:
        raise ConfigError(f"model.pseudo_labels is '{source}': set it to one of {', '.join(SOURCES)}.")
    if prob_image.shape != prob_point.shape or prob_image.dim() != 2:
        raise BadInputError(f"The teacher's image and point probabilities must be two (B, C) tensors of one shape, got "
                            f"{tuple(prob_image.shape)} and {tuple(prob_point.shape)}.")
    s_img, y_img = prob_image.max(dim=1)
    s_pcl, y_pcl = prob_point.max(dim=1)
    if source == "own":
        keep_img, keep_pcl = s_img > threshold, s_pcl > threshold
        return PseudoLabels(y_img, y_pcl, keep_img, keep_pcl, torch.ones_like(keep_img), s_img)
    if source == "joint":
        from_image = s_img >= point_weight * s_pcl            # r_b = max(s_img, w s_pcl); ties go to the image
    elif source == "random":
        from_image = torch.rand(s_img.shape, device=s_img.device) < 0.5
    else:
        from_image = torch.full_like(s_img, source == "image", dtype=torch.bool)
    # the threshold compares r_b, the confidence of the modality taken (weighted by w for the point in joint)
    weighted = point_weight * s_pcl if source == "joint" else s_pcl
    confidence = torch.where(from_image, s_img, weighted)
    label = torch.where(from_image, y_img, y_pcl)
    keep = confidence > threshold
    return PseudoLabels(label, label, keep, keep, from_image, confidence)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Eq. 2: (1/B) sum_b 1[r_b > T] CE(logits_b, y_b); zero (in the graph, never NaN) when nothing is kept.

    The mean runs over the whole batch, as FixMatch and MUST, so a batch with few confident samples weighs less.

    Args:
        logits: (B, C) student logits on strong, masked inputs.
        labels: (B,) pseudo-labels.
        keep: (B,) bool, which labels count.
    """
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (losses * keep.float()).sum() / max(logits.shape[0], 1)


def fairness_loss(prob: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for one branch: -(1/C) sum_c log p̄_c, p̄ the batch-mean softmax over the global batch under DDP.

    Args:
        prob: (B, C) student softmax of one branch on this process's samples.
    """
    everything, _ = gather_rows(prob.float())     # gradient-aware: each rank's rows get the global gradient
    mean = everything.mean(dim=0)
    return -torch.log(mean.clamp_min(1e-12)).mean()


def masked_pixel_l1(prediction: torch.Tensor, target: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """MIM: the mean L1 error over the masked pixels only (SimMIM, MUST); zero when no pixel is masked.

    Args:
        prediction: (B, 3, H, W) decoded pixels.
        target: (B, 3, H, W) normalised input pixels.
        pixel_mask: (B, 1, H, W) bool or 0/1, 1 where the patch was masked.
    """
    weight = pixel_mask.float().expand_as(prediction)
    return ((prediction.float() - target.float()).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def masked_token_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MPM: the mean L1 error between predicted and original token embeddings over the masked tokens.

    Args:
        prediction: (B, G, C) decoded tokens.
        target: (B, G, C) the tokens' original embeddings (before masking), without gradient.
        mask: (B, G) bool, True where the token was masked.
    """
    weight = mask.float()[..., None].expand_as(prediction)
    return ((prediction.float() - target.float()).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def global_local_alignment(global_embedding: torch.Tensor, local_embeddings: torch.Tensor,
                           mask: torch.Tensor) -> torch.Tensor:
    """MUST's global-local alignment: mean over masked tokens of || x̃ - f(x̃_m) ||^2, both L2-normalised.

    The global embedding x̃ is the target (no gradient): the masked tokens' projections move towards it.

    Args:
        global_embedding: (B, D) the branch's global embedding f(x).
        local_embeddings: (B, L, D) the branch's projection f of every token output.
        mask: (B, L) bool, True at the masked tokens.
    """
    target = F.normalize(global_embedding.detach().float(), dim=-1)[:, None]
    distance = (F.normalize(local_embeddings.float(), dim=-1) - target).square().sum(-1)
    weight = mask.float()
    return (distance * weight).sum() / weight.sum().clamp_min(1.0)


def kl_from_uniform(prob: torch.Tensor) -> torch.Tensor:
    """Prediction entropy of the paper's Fig. 3: the mean over samples of KL(p || uniform) = log C - H(p).

    Args:
        prob: (B, C) softmax.
    """
    prob = prob.float()
    entropy = -(prob * torch.log(prob.clamp_min(1e-12))).sum(dim=1)
    return (torch.log(torch.tensor(float(prob.shape[1]))) - entropy).mean()


def prediction_bias(prob: torch.Tensor) -> torch.Tensor:
    """Bias of Fig. 3: KL(histogram of the argmax predictions || uniform).

    Args:
        prob: (B, C) softmax (or logits: only the argmax is read).
    """
    counts = torch.bincount(prob.argmax(dim=1), minlength=prob.shape[1]).float()
    hist = counts / counts.sum().clamp_min(1.0)
    nonzero = hist > 0
    return (hist[nonzero] * torch.log(hist[nonzero] * prob.shape[1])).sum()
