"""Pretext models, heads and encoder feature taps (registered in OpenPoints ``MODELS``), and model EMA."""
from .backbones.feature_taps import FEATURE_TAPS, register_tap, tap_features
from .backbones.point_m2ae import PointM2AEEncoder
from .backbones.point_vit import PointViTEncoder
from .base import ParamGroup, PretextModel
from .ema import ModelEma, MomentumSchedule, build_ema
from .heads.gdpa import GatedDualPathAdapter
from .pretext.clip2point import CLIP2Point
from .pretext.clip_align import CLIPAlign
from .pretext.cross_most import CrossMoST
from .pretext.i2p_mae import I2PMAE
from .pretext.pic_at_point import PicAtPoint

__all__ = ["CLIP2Point", "CLIPAlign", "CrossMoST", "FEATURE_TAPS", "GatedDualPathAdapter", "I2PMAE", "ModelEma", "MomentumSchedule",
           "ParamGroup", "PicAtPoint", "PointM2AEEncoder", "PointViTEncoder", "PretextModel", "build_ema",
           "register_tap", "tap_features"]
