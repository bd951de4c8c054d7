"""albumentations 2.x dropouts as occluders, seeded from the image's own generator.

The mask comes from albumentations itself (``mask`` zeros in, ``fill_mask=1``), so it is
exactly the dropped pixels. How the ratio is met:

- ``erasing`` (``A.Erasing``): ``scale=(r, r)`` asks for exactly ``r`` of the area; the rectangle
  is rounded to whole pixels (within 2 points at 48×48 and above).
- ``grid_dropout`` (``A.GridDropout``): holes of ``ratio=sqrt(r)`` of each grid unit side, i.e.
  ``r`` of each unit's area; partial units at the border make it approximate.
- ``coarse_dropout`` (``A.CoarseDropout``): 2-6 square-ish holes sized so that their summed area
  is ``r``; overlaps make the realised fraction lower (approximate).

They have no level field: albumentations paints each image and reports its own mask. Their
style is the image's fill (``texture`` becomes ``gray``: albumentations has no texture fill).
"""

from __future__ import annotations

import math
import os
from functools import partial

import numpy as np

from occlufer.occlusion.occluder import Canvas, Occluder

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _fill(u: float, fill: str) -> int | str:
    return "random" if fill == "noise" else int(u * 255)


def dropout(kind: str, rng: np.random.Generator, image: np.ndarray, ratio: float,
            fill: str) -> tuple[np.ndarray, np.ndarray]:
    """One image through the albumentations transform; returns (image, mask)."""
    import albumentations as A

    h, w = image.shape
    u = rng.random(4)
    value = _fill(u[0], fill)
    if ratio <= 0:
        return image.copy(), np.zeros((h, w), dtype=bool)
    if kind == "erasing":
        # aspects for which a rectangle of this area fits (albumentations 2.0.8 fails with a
        # TypeError when none of its 10 tries fits)
        lo, hi = max(0.5, min(1.0, 1.15 * ratio)), min(2.0, max(1.0, 1 / (1.15 * ratio)))
        t = A.Erasing(scale=(ratio, ratio), ratio=(lo, hi), fill=value, fill_mask=1, p=1.0)
    elif kind == "grid_dropout":
        unit = int(round(min(h, w) * (0.2 + 0.15 * u[1])))
        t = A.GridDropout(ratio=min(0.99, math.sqrt(ratio)), unit_size_range=(unit, unit + 1),
                          random_offset=True, fill=value, fill_mask=1, p=1.0)
    elif kind == "coarse_dropout":
        n = 2 + int(u[1] * 5)
        side = min(0.95, math.sqrt(ratio / n) * 1.1)  # a little larger to make up for overlaps
        t = A.CoarseDropout(num_holes_range=(n, n), hole_height_range=(side * 0.8, side),
                            hole_width_range=(side * 0.8, side), fill=value, fill_mask=1, p=1.0)
    else:
        raise ValueError(f"unknown dropout {kind!r}")
    t.set_random_seed(int(rng.integers(2**31 - 1)))
    out = t(image=image, mask=np.zeros((h, w), dtype=np.uint8))
    return np.asarray(out["image"], dtype=np.uint8).reshape(h, w), out["mask"].astype(bool)


def paint(kind: str, c: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """(images, masks): each image of ``c`` through :func:`dropout` with its own generator."""
    out, masks = np.empty_like(c.images), np.empty(c.images.shape, dtype=bool)
    for i, (fill, rng) in enumerate(zip(c.fills, c.rngs, strict=True)):
        fill = fill if fill != "texture" else "gray"  # albumentations has no texture fill
        out[i], masks[i] = dropout(kind, rng, c.images[i], c.ratios[i], fill)
    return out, masks


#: the albumentations dropouts, in the order previews show them (see :mod:`.registry`)
OCCLUDERS: tuple[Occluder, ...] = tuple(
    Occluder(kind, ("gray", "noise"), ratio, None, partial(paint, kind))
    for kind, ratio in (("coarse_dropout", "approximate"), ("grid_dropout", "approximate"),
                        ("erasing", "close")))
