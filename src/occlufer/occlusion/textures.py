"""Procedural texture tiles for fills (knit, stripes, strands, fabric, mottled skin).

A small bank per image size is drawn once from a fixed seed and cached; an occluder picks a
tile and a random offset, so texturing costs one slice per image.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

KINDS = ("knit", "stripes", "strands", "fabric", "mottle")
TILES = 6  # tiles per kind


def _blur(x: np.ndarray, passes: int, axis: int | tuple[int, ...]) -> np.ndarray:
    axes = (axis,) if isinstance(axis, int) else axis
    for _ in range(passes):
        for a in axes:
            x = (x + np.roll(x, 1, a) + np.roll(x, -1, a)) / 3.0
    return x


@lru_cache(maxsize=8)
def bank(h: int, w: int) -> dict[str, np.ndarray]:
    """``kind -> TILES×2H×2W`` float32 tiles, zero mean, about unit amplitude."""
    rng = np.random.default_rng(20240611)
    th, tw = 2 * h, 2 * w
    y, x = np.mgrid[0:th, 0:tw].astype(np.float64)
    y, x = y / h, x / w  # one face side = 1
    out: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
    for _ in range(TILES):
        period = rng.uniform(0.05, 0.09)
        knit = np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / (1.3 * period))
        out["knit"].append(np.sign(knit) * np.abs(knit) ** 0.5)
        angle = rng.uniform(-0.6, 0.6) + rng.choice([0.0, np.pi / 2])
        along = x * np.cos(angle) + y * np.sin(angle)
        sp = rng.uniform(0.08, 0.2)
        out["stripes"].append(np.where(np.mod(along / sp, 1.0) < rng.uniform(0.3, 0.6), 1.0,
                                       -1.0))
        strands = _blur(rng.standard_normal((th, tw)), 6, 1)  # vary across, smooth downwards
        strands = _blur(strands, 2, 0)
        strands = np.repeat(strands[::3], 3, axis=0)[:th]
        out["strands"].append(strands / (strands.std() + 1e-9))
        fabric = _blur(rng.standard_normal((th, tw)), 2, (0, 1))
        out["fabric"].append(fabric / (fabric.std() + 1e-9))
        mottle = _blur(rng.standard_normal((th, tw)), 5, (0, 1))
        out["mottle"].append(mottle / (mottle.std() + 1e-9))
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


def tile(kind: str, h: int, w: int, u_tile: float, u_y: float, u_x: float) -> np.ndarray:
    """One H×W texture crop chosen by three uniforms in [0, 1)."""
    tiles = bank(h, w)[kind]
    t = min(int(u_tile * len(tiles)), len(tiles) - 1)
    oy, ox = int(u_y * h), int(u_x * w)
    return tiles[t, oy:oy + h, ox:ox + w]
