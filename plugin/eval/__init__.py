"""Downstream evaluation of frozen encoders: pooling of per-point features, a cached feature store, a linear
SVM probe (scikit-learn), seeded K-per-class, N-way K-shot and held-out splits, and one implementation of OA,
mAcc and top-k accuracy; cross-modal retrieval figures (top-k and mAP of ranked galleries, full or batch protocol)."""
from .feature_cache import load_features, save_features
from .linear_svm import fit_linear_svm, linear_probe, score
from .metrics import accuracy, logit_metrics, mean_class_accuracy, per_class_accuracy, topk_accuracy
from .pooling import parse_pooling, pool_features
from .retrieval import batch_gallery, check_protocol, cross_modal_retrieval, retrieval_metrics
from .splits import draw_nway_kshot, draw_per_class, holdout_indices, remap_labels

__all__ = ["accuracy", "batch_gallery", "check_protocol", "cross_modal_retrieval", "draw_nway_kshot",
           "draw_per_class", "fit_linear_svm", "holdout_indices", "linear_probe", "load_features", "logit_metrics",
           "mean_class_accuracy", "parse_pooling", "per_class_accuracy", "pool_features", "remap_labels",
           "retrieval_metrics", "save_features", "score", "topk_accuracy"]
