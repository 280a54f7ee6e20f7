"""Contrastive losses (registered in OpenPoints ``LOSS``), the similarity-weighted contrastive loss and the Chamfer
reconstruction losses."""
from .chamfer import chamfer_l1, chamfer_l2
from .info_nce import PointPictureInfoNCE, global_info_nce, local_info_nce
from .nt_xent import SigmaBalancedLoss, nt_xent
from .weighted_contrastive import (average_weights, global_weighted_contrastive, negative_weights,
                                   weighted_contrastive, weighted_cross_entropy)

__all__ = ["PointPictureInfoNCE", "SigmaBalancedLoss", "local_info_nce", "global_info_nce", "nt_xent",
           "chamfer_l1", "chamfer_l2", "average_weights", "global_weighted_contrastive", "negative_weights",
           "weighted_contrastive", "weighted_cross_entropy"]
