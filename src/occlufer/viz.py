"""Small image grids for previews (PIL only, no plotting backend)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw


def image_grid(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str] = (),
               scale: int = 2, pad: int = 2, label_width: int = 70) -> Image.Image:
    """Grayscale uint8 tiles laid out row by row, each row optionally labelled on the left."""
    tiles = [t for row in rows for t in row]
    if not tiles:
        raise ValueError("image_grid needs at least one image")
    th, tw = (s * scale for s in tiles[0].shape[:2])
    ncols = max(len(r) for r in rows)
    left = label_width if row_labels else 0
    canvas = Image.new("L", (left + ncols * (tw + pad) + pad, len(rows) * (th + pad) + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = pad + r * (th + pad)
        if r < len(row_labels):
            draw.text((4, y + th // 2 - 5), str(row_labels[r]), fill=0)
        for c, tile in enumerate(row):
            img = Image.fromarray(np.asarray(tile, dtype=np.uint8)).resize((tw, th), Image.NEAREST)
            canvas.paste(img, (left + pad + c * (tw + pad), y))
    return canvas
