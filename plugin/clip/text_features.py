"""CLIP text classifiers: one L2-normalised embedding per class, averaged over a prompt ensemble, cached on disk.

The cache file name is a digest of the model name, a fingerprint of the text tower's weights, the
class names and the templates, so a different checkpoint, random initialisation, class list or
template set never reads stale features. Each file is a record of the fingerprinted cache
(:mod:`plugin.io.file_cache`), written atomically with the user's umask. The
cache folder is ``zeroshot.text_cache`` (``model.text_cache`` for the adapter) when set, else
``<root_dir>/cache/text_features`` (:func:`text_cache_dir`), so a run writes nothing outside
``root_dir`` unless told to. A cache that cannot be written is skipped with a warning.
"""
import logging
import os
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..io import fingerprint, read_record, write_optional, write_record
from .encoders import ClipModel
from .prompts import check_templates, format_prompts

LOGGER = logging.getLogger("plugin")
CACHE_VERSION = 1
DEFAULT_CACHE_DIR = os.path.join("cache", "text_features")  # under root_dir


def text_cache_dir(setting: Optional[str], root_dir: str) -> str:
    """The folder of cached text classifiers: ``setting`` if set, else ``<root_dir>/cache/text_features``.

    Args:
        setting: the configured folder (``zeroshot.text_cache`` or ``model.text_cache``), or None.
        root_dir: the run's ``root_dir``.
    """
    return str(setting) if setting else os.path.join(root_dir, DEFAULT_CACHE_DIR)


def text_cache_key(clip: ClipModel, class_names: Sequence[str], templates: Sequence[str]) -> str:
    """Digest of everything the text classifier depends on.

    Args:
        clip: the loaded CLIP (its name and text-tower fingerprint enter the key).
        class_names: the class names, in label order.
        templates: the prompt templates.
    """
    return fingerprint({"version": CACHE_VERSION, "model": clip.name, "text_tower": clip.text_fingerprint(),
                        "classes": list(class_names), "templates": list(templates)}, sort_keys=False)[:24]


@torch.no_grad()
def encode_prompts(clip: ClipModel, prompts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings (T, D) of ``prompts``, in batches.

    Args:
        clip: the loaded CLIP.
        prompts: the sentences.
        batch_size: prompts per forward pass.
    """
    device, chunks = clip.device, []
    for start in range(0, len(prompts), batch_size):
        tokens = clip.tokenizer(list(prompts[start:start + batch_size])).to(device)
        chunks.append(F.normalize(clip.model.encode_text(tokens).float(), dim=-1))
    return torch.cat(chunks)


@torch.no_grad()
def text_classifier(clip: ClipModel, class_names: Sequence[str], templates: Sequence[str],
                    cache_dir: Optional[str] = None, batch_size: int = 256) -> torch.Tensor:
    """Text features (C, D), L2-normalised, on the model's device: the class embeddings of a prompt ensemble.

    Per class: normalise each template's embedding, average over templates, normalise again (CLIP's
    prompt ensembling).

    Args:
        clip: the loaded CLIP.
        class_names: C names in label order (underscores become spaces in the prompts).
        templates: prompt templates with one ``{}`` each.
        cache_dir: folder of cached classifiers; None: no cache.
        batch_size: prompts per forward pass.
    """
    templates = check_templates(templates, "the templates")
    class_names = [str(name) for name in class_names]
    path = key = None
    if cache_dir:
        key = text_cache_key(clip, class_names, templates)
        path = os.path.join(cache_dir, f"clip_text_{key}.pt")
        cached = read_record(path, key, key_field="key")
        if cached is not None and torch.is_tensor(cached.get("features")):
            LOGGER.info(f"text features: reusing {path}")
            return cached["features"].to(clip.device)
    prompts = [prompt for name in class_names for prompt in format_prompts(name, templates)]
    per_prompt = encode_prompts(clip, prompts, batch_size).view(len(class_names), len(templates), -1)
    features = F.normalize(per_prompt.mean(dim=1), dim=-1)
    if path:
        record = {"features": features.cpu(), "model": clip.name, "weights": clip.weights, "classes": class_names,
                  "templates": templates}
        if write_optional(lambda: write_record(path, record, key, "text_cache", key_field="key"),
                          f"text features {path}"):
            LOGGER.info(f"text features: {len(class_names)} classes x {len(templates)} templates -> {path}")
    return features
