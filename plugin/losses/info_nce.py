"""InfoNCE losses of Pic@Point (Herzog & Suwelack): local point-region/image-region and global.

Both compare L2-normalised embeddings by cosine similarity divided by a temperature ``tau``:

- local (Eqs. 1-2): each 3D region that projects into the image is an anchor; its positive is the
  image region (cell of the S x S grid) it maps to, its negatives are all S*S*m image regions of the
  mini-batch of m objects; regions outside the image are masked out;
- global (Eq. 3): each object's 3D global embedding against the m global image embeddings.
"""
from typing import Any, Tuple

import torch
import torch.nn.functional as F
from openpoints.loss.build import LOSS
from torch import nn

from ..errors import ConfigError
from .global_batch import gather_rows


def local_info_nce(point_emb: torch.Tensor, image_emb: torch.Tensor, cells: torch.Tensor,
                   inside: torch.Tensor, tau: float) -> Tuple[torch.Tensor, int]:
    """Local InfoNCE over point regions against every image region of the batch (Eqs. 1-2).

    Args:
        point_emb: (m, d, L) normalised embeddings of the L 3D regions of each object.
        image_emb: (m, d, R) normalised embeddings of the R = S*S image regions of each view.
        cells: (m, L) int64 index in [0, R) of the image region each 3D region maps to.
        inside: (m, L) bool, False for regions outside the image (excluded from the loss).
        tau: temperature.

    Returns:
        The mean loss over the regions inside the image (0 with no such region, still in the
        graph), and how many regions were used.
    """
    m, d, regions = image_emb.shape
    anchors = point_emb.transpose(1, 2)[inside]                          # (A, d)
    if anchors.shape[0] == 0:
        return point_emb.sum() * 0.0, 0
    candidates = image_emb.transpose(1, 2).reshape(m * regions, d)       # (m*R, d)
    positives = (torch.arange(m, device=cells.device).unsqueeze(1) * regions + cells)[inside]
    logits = anchors @ candidates.t() / tau
    return F.cross_entropy(logits, positives), int(anchors.shape[0])


def global_info_nce(point_emb: torch.Tensor, image_emb: torch.Tensor, tau: float) -> torch.Tensor:
    """Global InfoNCE: object i's 3D embedding against the m image embeddings, positive i (Eq. 3).

    Under DDP the image embeddings of every process are the candidates (:func:`.global_batch.gather_rows`),
    so the negatives span the global batch.

    Args:
        point_emb: (m, d) normalised global 3D embeddings.
        image_emb: (m, d) normalised global image embeddings of the same objects' views.
        tau: temperature.
    """
    candidates, first = gather_rows(image_emb)
    logits = point_emb @ candidates.t() / tau
    return F.cross_entropy(logits, first + torch.arange(point_emb.shape[0], device=point_emb.device))


SWITCHES = ("tau", "use_local", "use_global")


@LOSS.register_module()
class PointPictureInfoNCE(nn.Module):
    """L = L_lcl + L_glb of Pic@Point (Eqs. 1-3), each switchable for the paper's ablations.

    Args:
        tau: InfoNCE temperature.
        use_local: include the local loss L_lcl.
        use_global: include the global loss L_glb.
        **kwargs: nothing else is accepted: an unknown key (a mistyped ablation switch) is an error.

    Raises:
        ConfigError: an unknown argument, or both losses switched off.
    """

    def __init__(self, tau: float = 0.1, use_local: bool = True, use_global: bool = True, **kwargs: Any):
        super().__init__()
        if kwargs:
            raise ConfigError(f"Unknown PointPictureInfoNCE switch(es) {', '.join(sorted(kwargs))}: use "
                              f"{', '.join(SWITCHES)}.")
        if not (use_local or use_global):
            raise ConfigError("PointPictureInfoNCE has both losses switched off: set use_local or use_global to True.")
        self.tau, self.use_local, self.use_global = tau, use_local, use_global

    def forward(self, local_3d, local_2d, cells, inside, global_3d, global_2d):
        """Returns ``(loss, logs)`` with ``loss_local``, ``loss_global`` and ``local_regions``."""
        loss = global_3d.sum() * 0.0
        logs = {}
        if self.use_local:
            local, used = local_info_nce(local_3d, local_2d, cells, inside, self.tau)
            loss = loss + local
            logs.update(loss_local=local.item(), local_regions=used)
        if self.use_global:
            glob = global_info_nce(global_3d, global_2d, self.tau)
            loss = loss + glob
            logs["loss_global"] = glob.item()
        return loss, logs
