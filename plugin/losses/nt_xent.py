"""NT-Xent and the σ-balanced image-depth loss of CLIP2Point (Huang et al.).

CLIP2Point contrasts two depth maps of one object rendered at different camera distances
(intra-modality, L_intra) and the mean of their features against the CLIP feature of the
object's RGB view (cross-modality, L_cross), both with SimCLR's NT-Xent; the two terms are
balanced by a learnable σ. The cross-only ablation (Sec. 5.6) contrasts one depth map, rendered
at the original camera distance, with the RGB view.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from openpoints.loss.build import LOSS
from torch import nn

from ..errors import BadInputError, ConfigError
from .global_batch import gather_rows


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.7, tau_key: str = "tau") -> torch.Tensor:
    """Symmetric normalised-temperature cross-entropy of paired features (Eqs. 5-6, supp. Eqs. 15-18).

    With z = [a; b] (2B rows, each L2-normalised here), s_ij = z_i . z_j / tau and p(i) the index of
    row i's pair (i + B or i - B)::

        l_i = -log( exp(s_{i,p(i)}) / sum_{k != i} exp(s_ik) ),      L = 1/(2B) sum_i l_i

    so each of the 2B samples has one positive (its pair) and 2B - 2 negatives (every other sample of
    both modalities). The definition is symmetric in ``a`` and ``b``. Under DDP the k run over the rows
    of every process (:func:`.global_batch.gather_rows`): B is the global batch.

    Args:
        a: (B, D) features of the first view/modality (normalised inside; B >= 1).
        b: (B, D) features paired row by row with ``a``.
        tau: temperature, > 0.
        tau_key: the config key that set ``tau``, named in the error for a bad value.

    Returns:
        The scalar mean loss.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise BadInputError(f"nt_xent needs two (B, D) feature tensors of one shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}: pass paired features row by row.")
    if not tau > 0:
        raise ConfigError(f"nt_xent temperature is {tau}: set {tau_key} to a positive number (the paper uses 0.7).")
    (all_a, first), (all_b, _) = gather_rows(a), gather_rows(b)
    total = all_a.shape[0]                                            # the global batch
    rows = F.normalize(torch.cat([a, b], dim=0), dim=1)               # this process's 2B rows
    z = F.normalize(torch.cat([all_a, all_b], dim=0), dim=1)
    logits = rows @ z.t() / tau
    index = first + torch.arange(a.shape[0], device=z.device)         # this process's rows among all
    own = torch.cat([index, index + total])
    logits[torch.arange(len(own), device=z.device), own] = float("-inf")  # k != i in the denominator
    return F.cross_entropy(logits, torch.cat([index + total, index]))


@LOSS.register_module()
class SigmaBalancedLoss(nn.Module):
    """CLIP2Point's image-depth loss L = L_intra / σ² + L_cross + log(σ + 1) (Eq. 7).

    σ is kept positive by learning its logarithm: ``log_sigma`` (shape (1,)) is the parameter and
    σ = exp(log_sigma), so dL/d(log σ) = σ dL/dσ. With ``cross_only`` (the ablation of Sec. 5.6) the
    loss is L_cross of one depth map against the RGB view, and σ is neither used nor trained.

    Args:
        tau: NT-Xent temperature (0.7 in the supplement).
        cross_only: use only the cross-modality term, on a single depth map.
        init_sigma: initial σ, > 0.
        tau_key: the config key that sets ``tau``, named in errors (e.g. ``model.tau``).
        init_sigma_key: the config key that sets ``init_sigma``, named in errors.
    """

    def __init__(self, tau: float = 0.7, cross_only: bool = False, init_sigma: float = 1.0, tau_key: str = "tau",
                 init_sigma_key: str = "init_sigma", **kwargs):
        super().__init__()
        if not init_sigma > 0:
            raise ConfigError(f"init_sigma is {init_sigma}: set {init_sigma_key} to a positive number, e.g. 1.0.")
        if not tau > 0:
            raise ConfigError(f"tau is {tau}: set {tau_key} to a positive number (the paper uses 0.7).")
        self.tau, self.cross_only, self.tau_key = float(tau), bool(cross_only), tau_key
        # shape (1,): OpenPoints' optimizer factory keeps 1-d parameters out of weight decay
        self.log_sigma = nn.Parameter(torch.tensor([float(init_sigma)]).log(), requires_grad=not cross_only)

    @property
    def sigma(self) -> torch.Tensor:
        """σ = exp(log_sigma), a 0-dim tensor in the graph."""
        return self.log_sigma.exp()[0]

    def combine(self, l_intra: torch.Tensor, l_cross: torch.Tensor) -> torch.Tensor:
        """The total loss from the two NT-Xent terms, Eq. 7."""
        sigma = self.sigma
        return l_intra / sigma ** 2 + l_cross + torch.log(sigma + 1)  # Eq. 7: L_intra/σ² + L_cross + log(σ+1)

    def forward(self, depth_1: torch.Tensor, depth_2: Optional[torch.Tensor],
                image: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Loss of the depth feature batches and the image features of the same objects.

        Args:
            depth_1: (B, D) features of the depth maps rendered at distance d1 (with ``cross_only``: the
                single depth map at the original distance).
            depth_2: (B, D) features of the depth maps rendered at distance d2; L_cross uses the mean of
                the two (each L2-normalised first). None with ``cross_only``.
            image: (B, D) features of the RGB views.

        Returns:
            ``(loss, logs)`` with ``l_intra``, ``l_cross`` and ``sigma`` (``l_cross`` alone with ``cross_only``).
        """
        if self.cross_only:
            if depth_2 is not None:
                raise BadInputError("The cross_only loss takes one depth map per object: pass depth_2=None.")
            l_cross = nt_xent(depth_1, image, self.tau, self.tau_key)    # Sec. 5.6: L_cross of one depth map
            return l_cross, {"l_cross": l_cross.item()}
        if depth_2 is None:
            raise BadInputError("The σ-balanced loss needs the second depth map's features: pass depth_2, or "
                                "set cross_only for the single-map ablation.")
        l_intra = nt_xent(depth_1, depth_2, self.tau, self.tau_key)     # L_intra, Eqs. 5-6
        depth = (F.normalize(depth_1, dim=1) + F.normalize(depth_2, dim=1)) / 2
        l_cross = nt_xent(depth, image, self.tau, self.tau_key)         # L_cross on the mean depth feature
        loss = self.combine(l_intra, l_cross)
        return loss, {"l_intra": l_intra.item(), "l_cross": l_cross.item(), "sigma": self.sigma.item()}
