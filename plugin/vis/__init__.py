"""Figures of runs: Pic@Point correspondence maps (:mod:`.correspondence_maps`, which embed with a model) and
2D embeddings of frozen-encoder features (:mod:`.embedding_plots`), I2P-MAE masking figures (:mod:`.masking_maps`),
drawn by ``tools/visualize.py``; training curves of runs (:mod:`.training_curves`) and Cross-MoST's self-training
curves (:mod:`.self_training_curves`), drawn by the training loop and ``tools/visualize.py``."""
from .self_training_curves import plot_self_training

__all__ = ["plot_self_training"]
