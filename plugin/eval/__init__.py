"""Downstream evaluation of frozen encoders: pooling of per-point features, a cached feature store and a
linear SVM probe (scikit-learn), and zero-shot classification from view and text features."""
from .feature_cache import load_features, save_features
from .linear_svm import fit_linear_svm, linear_probe, score
from .pooling import parse_pooling, pool_features
from .zero_shot import per_class_accuracy, topk_accuracy, zero_shot_logits, zero_shot_metrics

__all__ = ["fit_linear_svm", "linear_probe", "score", "parse_pooling", "pool_features", "load_features",
           "save_features", "per_class_accuracy", "topk_accuracy", "zero_shot_logits", "zero_shot_metrics"]
