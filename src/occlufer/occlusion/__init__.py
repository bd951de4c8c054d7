"""Occluders: hide part of a face and report the exact mask, type and style used.

Every occluder draws its shape as a *level field* ``f`` over the image (low = covered first):
the mask is the ``k = round(ratio·H·W)`` pixels with the lowest ``f`` (ties broken by pixel
index), so the realised fraction equals the target to half a pixel whatever the shape, and the
shape grows or shrinks plausibly with the ratio (a mask rises from the chin, hair falls from the
forehead, sunglasses' lenses widen around the eyes). The albumentations dropouts are the
exception (see :mod:`occlufer.occlusion.dropouts`).

Entry points: :func:`occlude_images` (a whole store, deterministic per image id) and
:class:`OcclusionAugment` (training-time augmentation).
"""

#: every occluder type, in the order previews show them
TYPES: tuple[str, ...] = ("block", "sunglasses", "mask", "hand", "hair", "polygon", "strokes",
                          "coarse_dropout", "grid_dropout", "erasing")
#: types whose realised ratio equals the target to half a pixel
RATIO_CONTROLLED: tuple[str, ...] = ("block", "sunglasses", "mask", "hand", "hair", "polygon",
                                     "strokes", "erasing")

from occlufer.occlusion.engine import (  # noqa: E402
                          Occlusion,
                          OcclusionAugment,
                          OcclusionSpec,
                          occlude_batch,
                          occlude_images,
)

__all__ = ["RATIO_CONTROLLED", "TYPES", "Occlusion", "OcclusionAugment", "OcclusionSpec",
           "occlude_batch", "occlude_images"]
