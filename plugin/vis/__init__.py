"""Figures of runs: Pic@Point correspondence maps (:mod:`.correspondence_maps`, which embed with a model) and
2D embeddings of frozen-encoder features (:mod:`.embedding_plots`); drawn by ``tools/visualize.py``."""
