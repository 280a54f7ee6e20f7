"""Pretext models, one module per method (each follows :mod:`plugin.models.base`)."""
