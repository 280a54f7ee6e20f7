"""CLIP toolkit: open_clip models loaded offline, prompt templates, cached text classifiers, zero-shot logits
(Eq. 11), the depth renderer sized for a CLIP, and the captionless 3D-3D similarities (I2I, (I2L)^2) with their
on-disk store.

Importing this package registers the open_clip model configs in ``model_configs/`` (``tiny-clip-test``:
a 1.6M-parameter CLIP with 32 px input that tests build with random weights).
"""
from pathlib import Path

import open_clip

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
TINY_CLIP = "tiny-clip-test"
if TINY_CLIP not in open_clip.list_models():
    open_clip.add_model_config(MODEL_CONFIGS)

from .encoders import (DEPTH_ENCODER_KEY, ClipModel, depth_encoder_state, encode_views, load_clip,  # noqa: E402
                       load_clip_from_cfg, load_depth_encoder, text_tower_fingerprint, trainable_visual_copy)
from .renderer import build_depth_renderer  # noqa: E402
from .similarity import i2i_similarity, i2l2_similarity, landmark_descriptors  # noqa: E402
from .similarity_store import (SimilarityStore, make_manifest, read_manifest, write_category,  # noqa: E402
                               write_manifest)
from .prompts import TEMPLATES, class_text, format_prompts, resolve_templates  # noqa: E402
from .text_features import encode_prompts, text_cache_dir, text_cache_key, text_classifier  # noqa: E402
from .zero_shot import zero_shot_logits  # noqa: E402

__all__ = ["DEPTH_ENCODER_KEY", "TEMPLATES", "TINY_CLIP", "ClipModel", "SimilarityStore", "build_depth_renderer",
           "class_text", "depth_encoder_state", "encode_prompts", "encode_views", "format_prompts", "i2i_similarity",
           "i2l2_similarity", "landmark_descriptors", "load_clip", "load_clip_from_cfg", "load_depth_encoder",
           "make_manifest", "read_manifest", "resolve_templates", "text_cache_dir", "text_cache_key",
           "text_classifier", "text_tower_fingerprint", "trainable_visual_copy", "write_category", "write_manifest",
           "zero_shot_logits"]
