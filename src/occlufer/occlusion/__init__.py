"""Occluders: hide part of a face and report the exact mask, type and style used.

Every occluder draws its shape as a *level field* ``f`` over the image (low = covered first):
the mask is the ``k = round(ratio·H·W)`` pixels with the lowest ``f`` (ties broken by pixel
index), so the realised fraction equals the target to half a pixel whatever the shape, and the
shape grows or shrinks plausibly with the ratio (a mask rises from the chin, hair falls from the
forehead, sunglasses' lenses widen around the eyes). The albumentations dropouts are the
exception (see :mod:`occlufer.occlusion.dropouts`). :mod:`occlufer.occlusion.registry` lists
them all, each an :class:`~occlufer.occlusion.occluder.Occluder` (name, styles, how well it
meets the ratio, level field, painter).

Entry points: :func:`occlude_images` (a whole store, deterministic per image id) and
:class:`OcclusionAugment` (training-time augmentation).
"""

from occlufer.occlusion.engine import (
    Occlusion,
    OcclusionAugment,
    OcclusionSpec,
    occlude_batch,
    occlude_images,
)
from occlufer.occlusion.registry import OCCLUDERS, RATIO_CONTROLLED, TYPES

__all__ = ["OCCLUDERS", "RATIO_CONTROLLED", "TYPES", "Occlusion", "OcclusionAugment",
           "OcclusionSpec", "occlude_batch", "occlude_images"]
