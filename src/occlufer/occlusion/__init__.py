"""Occluders: hide part of a face and report the exact mask, type and style used.

:func:`occlude_images` (a store, per image id), :class:`OcclusionAugment`, :mod:`.registry`."""

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
