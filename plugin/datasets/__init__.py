"""Classification datasets, registered in OpenPoints' ``DATASETS`` registry on import, the replacements of
upstream classes included (``ModelNet40Ply2048`` never downloads, ``ScanObjectNNHardest`` samples on CPU)."""
from .modelnet40 import MODELNET40_CLASSES, ModelNet40NormalResampled, ModelNet40Ply2048
from .rendered_views import RenderedViews
from .scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN

__all__ = ["MODELNET40_CLASSES", "SCANOBJECTNN_CLASSES", "ModelNet40NormalResampled", "ModelNet40Ply2048",
           "RenderedViews", "ScanObjectNN"]
