"""Pretext models, heads and encoder feature taps (registered in OpenPoints ``MODELS``)."""
from .feature_taps import FEATURE_TAPS, register_tap, tap_features

__all__ = ["FEATURE_TAPS", "register_tap", "tap_features"]
