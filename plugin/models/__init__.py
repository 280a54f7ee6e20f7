"""Pretext models, heads and encoder feature taps (registered in OpenPoints ``MODELS``)."""
from .feature_taps import FEATURE_TAPS, register_tap, tap_features
from .pic_at_point import PicAtPoint

__all__ = ["FEATURE_TAPS", "PicAtPoint", "register_tap", "tap_features"]
