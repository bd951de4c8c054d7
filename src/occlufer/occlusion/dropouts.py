"""albumentations 2.x dropouts as occluders, seeded from the image's own generator.

The mask is albumentations' own; ``erasing`` meets the ratio within 2 points, the others
approximately (overlapping holes). ``texture`` fills become ``gray`` (albumentations has none)."""

import math
import os
from functools import partial

import numpy as np

from occlufer.occlusion.occluder import Canvas, Occluder

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def dropout(kind: str, rng: np.random.Generator, image: np.ndarray, ratio: float,
            fill: str) -> tuple[np.ndarray, np.ndarray]:
    """One image through the albumentations transform; returns (image, mask)."""
    import albumentations as A

    h, w = image.shape
    u = rng.random(4)
    value = "random" if fill == "noise" else int(u[0] * 255)
    if ratio <= 0:
        return image.copy(), np.zeros((h, w), dtype=bool)
    if kind == "erasing":
        # aspects at which a rectangle of this area fits (else albumentations 2.0.8 fails)
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
    pairs = [dropout(kind, *a) for a in zip(c.rngs, c.images, c.ratios, c.fills, strict=True)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


OCCLUDERS: tuple[Occluder, ...] = tuple(
    Occluder(kind, ("gray", "noise"), None, partial(paint, kind), ratio=ratio)
    for kind, ratio in (("coarse_dropout", "approximate"), ("grid_dropout", "approximate"),
                        ("erasing", "close")))
