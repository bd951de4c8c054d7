"""The patent's random block (S200): a rectangle of random aspect and position.

The rectangle covers ``ratio`` of the image area (to the nearest pixel where the aspect allows),
and is filled with a solid gray level or with uniform noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FILLS = ("gray", "noise")


def block_mask(rng: np.random.Generator, shape: tuple[int, int], ratio: float,
               aspect: Sequence[float] = (0.5, 2.0)) -> np.ndarray:
    """A boolean H×W mask with one rectangle of area ≈ ``ratio``·H·W at a random place.

    ``aspect`` (width / height) is drawn log-uniformly from ``[min, max]`` and clipped so the
    rectangle fits.
    """
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    area = round(ratio * h * w)
    if area <= 0:
        return mask
    lo, hi = math.log(aspect[0]), math.log(aspect[1])
    a = math.exp(rng.uniform(lo, hi)) if hi > lo else aspect[0]
    bh = min(h, max(1, round(math.sqrt(area / a))))
    bw = min(w, max(1, round(area / bh)))
    bh = min(h, max(1, round(area / bw)))  # re-fit the height after clipping the width
    top = int(rng.integers(0, h - bh + 1))
    left = int(rng.integers(0, w - bw + 1))
    mask[top:top + bh, left:left + bw] = True
    return mask


def fill_region(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
                fill: str) -> np.ndarray:
    """A copy of ``image`` with ``mask`` filled by a random gray level or uniform noise."""
    out = image.copy()
    if fill == "gray":
        out[mask] = rng.integers(0, 256, dtype=np.uint8)
    elif fill == "noise":
        out[mask] = rng.integers(0, 256, size=int(mask.sum()), dtype=np.uint8)
    else:
        raise ValueError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    return out


def occlude_block(rng: np.random.Generator, image: np.ndarray, ratio: float,
                  fills: Sequence[str] = FILLS, aspect: Sequence[float] = (0.5, 2.0),
                  ) -> tuple[np.ndarray, np.ndarray, str]:
    """Occlude one H×W uint8 image; returns (occluded image, mask, fill used)."""
    mask = block_mask(rng, image.shape, ratio, aspect)
    fill = str(fills[int(rng.integers(len(fills)))])
    return fill_region(rng, image, mask, fill), mask, fill
