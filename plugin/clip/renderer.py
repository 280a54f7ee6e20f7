"""The :class:`~plugin.render.DepthRenderer` of a ``model.render`` block, sized and normalised for a CLIP.

CLIP2Point's pre-training model, the ``zeroshot`` mode and the Gated Dual-Path Adapter all render depth
views for a CLIP image encoder; they build the renderer here, so the images always have the CLIP's
input size, mean and std.
"""
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from ..render import DepthRenderer
from ..render.depth_renderer import CLIP2POINT_ENCODING
from .encoders import ClipModel

RENDER_KEY = "model.render"


def build_depth_renderer(render_cfg: Optional[Mapping[str, Any]], clip: ClipModel,
                         views: Optional[str] = None) -> DepthRenderer:
    """The :class:`DepthRenderer` of ``model.render``, sized and normalised for ``clip``'s image encoder.

    ``image_size``, ``mean`` and ``std`` default to the CLIP's, ``encoding`` to
    :data:`~plugin.render.depth_renderer.CLIP2POINT_ENCODING` (the authors' release).

    Args:
        render_cfg: ``DepthRenderer`` keyword arguments (``image_size``, ``dilation``, ``reduction``, ...).
        clip: the CLIP whose input size, mean and std the images must have (unless set in ``render_cfg``).
        views: a view set name overriding ``render_cfg.views`` (``zeroshot.views``); None keeps it.

    Raises:
        ConfigError: an ``image_size`` other than the CLIP's, or a key or value ``DepthRenderer`` refuses.
    """
    kwargs = dict(render_cfg or {})
    kwargs.setdefault("encoding", CLIP2POINT_ENCODING)
    if views:
        kwargs["views"] = views
    size = kwargs.setdefault("image_size", clip.image_size)
    if int(size) != clip.image_size:
        raise ConfigError(f"{RENDER_KEY}.image_size is {size} but CLIP {clip.name} takes {clip.image_size} px images: "
                          f"set {RENDER_KEY}.image_size to {clip.image_size} or remove it.")
    kwargs.setdefault("mean", clip.image_mean)
    kwargs.setdefault("std", clip.image_std)
    try:
        return DepthRenderer(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Bad {RENDER_KEY} ({err}): fix that key (DepthRenderer takes image_size, dilation, "
                          f"reduction, views, distance, fov_deg, encoding, background, normalise, "
                          f"near_bright).") from None
