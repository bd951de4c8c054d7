"""Occluders: functions that hide part of a face and report the exact mask they used."""

from occlufer.occlusion.block import block_mask, fill_region, occlude_block

__all__ = ["block_mask", "fill_region", "occlude_block"]
