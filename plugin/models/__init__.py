"""Pretext models, heads and encoder feature taps (registered in OpenPoints ``MODELS``)."""
from .base import ParamGroup, PretextModel
from .pretext.clip2point import CLIP2Point
from .backbones.feature_taps import FEATURE_TAPS, register_tap, tap_features
from .heads.gdpa import GatedDualPathAdapter
from .pretext.pic_at_point import PicAtPoint

__all__ = ["CLIP2Point", "FEATURE_TAPS", "GatedDualPathAdapter", "ParamGroup", "PicAtPoint", "PretextModel",
           "register_tap", "tap_features"]
