"""Contrastive losses (registered in OpenPoints ``LOSS``)."""
from .info_nce import PointPictureInfoNCE, global_info_nce, local_info_nce

__all__ = ["PointPictureInfoNCE", "local_info_nce", "global_info_nce"]
