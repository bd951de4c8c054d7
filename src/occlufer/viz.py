"""Small image grids for previews (PIL only, no plotting backend)."""

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

_LINE = 11  # pixels per caption line (PIL's default bitmap font)


def image_grid(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str] = (),
               scale: int = 2, pad: int = 2, label_width: int = 70,
               captions: Sequence[Sequence[str]] = ()) -> Image.Image:
    """Grayscale uint8 tiles laid out row by row, each row optionally labelled on the left.

    ``captions[r][c]`` (optional, ``\\n`` for more lines) is written under tile ``c`` of row
    ``r``.
    """
    tiles = [t for row in rows for t in row]
    if not tiles:
        raise ValueError("image_grid needs at least one image")
    th, tw = (s * scale for s in tiles[0].shape[:2])
    ncols = max(len(r) for r in rows)
    left = label_width if row_labels else 0
    lines = max((c.count("\n") + 1 for row in captions for c in row), default=0)
    ch = lines * _LINE + (2 if lines else 0)
    canvas = Image.new("L", (left + ncols * (tw + pad) + pad,
                             len(rows) * (th + ch + pad) + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = pad + r * (th + ch + pad)
        if r < len(row_labels):
            draw.text((4, y + th // 2 - 5), str(row_labels[r]), fill=0)
        for c, tile in enumerate(row):
            img = Image.fromarray(np.asarray(tile, dtype=np.uint8)).resize((tw, th), Image.NEAREST)
            x = left + pad + c * (tw + pad)
            canvas.paste(img, (x, y))
            if r < len(captions) and c < len(captions[r]):
                draw.multiline_text((x + 1, y + th + 1), captions[r][c], fill=0, spacing=1)
    return canvas
