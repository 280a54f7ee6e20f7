"""Classification and cross-modal datasets, registered in OpenPoints' ``DATASETS`` registry on import, the
replacements of upstream classes included (``ModelNet40Ply2048`` never downloads, ``ScanObjectNNHardest``
samples on CPU)."""
from .clip_triplets import ClipTriplets
from .cross_modal_pairs import CrossModalPairs, DepthPairs
from .modelnet40 import MODELNET40_CLASSES, ModelNet40NormalResampled, ModelNet40Ply2048
from .pix3d import Pix3D
from .rendered_views import RenderedViews
from .scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN

__all__ = ["ClipTriplets", "CrossModalPairs", "DepthPairs", "MODELNET40_CLASSES", "SCANOBJECTNN_CLASSES",
           "ModelNet40NormalResampled", "ModelNet40Ply2048", "Pix3D", "RenderedViews", "ScanObjectNN"]
