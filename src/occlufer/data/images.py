"""Decoding and conversion rules for every image file that enters the pipeline — in one place.

:func:`load_gray` turns file bytes into one 8-bit grayscale array, or raises :class:`Reject`
with a short reason (``"<code>: <detail>"``) that the caller writes to ``rejects.csv``:

- the format is sniffed from the content (a text file named ``.jpg`` is ``unreadable``);
- PIL's decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``) rejects, never crashes;
- JPEGs are decoded at reduced scale (``Image.draft``) when that still leaves ``min_side``
  pixels on the shorter side, so a 8000×6000 photo costs a few MB, not hundreds;
- the EXIF orientation is applied (``ImageOps.exif_transpose``) before anything else looks;
- transparent images (RGBA, LA, PA, palette with transparency) are composited onto white;
- CMYK, palette, RGB and the rest go through RGB to luma (ITU-R 601-2, PIL's ``L``);
- 16-bit images (``I;16*``, ``I``) are scaled from 0..65535 to 0..255 (not clipped);
- images whose shorter side is below ``min_size`` are rejected (``too_small``).

PIL decodes (cv2.imdecode is faster per file, but PIL reads the header lazily, which the bomb
guard, the draft and the size check need before any pixel is decoded).
"""

from __future__ import annotations

import io
import struct
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from occlufer.errors import first_line

EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


class Reject(Exception):  # noqa: N818 (a verdict, not a failure of the program)
    """This input cannot be used; ``str(exc)`` is ``"<code>: <detail>"`` for rejects.csv."""


def load_gray(data: bytes, *, min_size: int = 1, draft_side: int | None = None) -> np.ndarray:
    """File bytes → H×W uint8 grayscale, upright; see the module docstring for the rules.

    ``draft_side``: JPEGs may be decoded at 1/2, 1/4 or 1/8 scale as long as the shorter side
    keeps at least this many pixels (None: full scale).
    """
    return load_gray_scaled(data, min_size=min_size, draft_side=draft_side)[0]


def load_gray_scaled(data: bytes, *, min_size: int = 1, draft_side: int | None = None,
                     ) -> tuple[np.ndarray, float]:
    """:func:`load_gray`, plus the scale: full-resolution pixels per decoded pixel (1 unless
    the JPEG draft reduced it), to map coordinates in the result back to the file's image."""
    gray, _, factor = _decode(data, min_size, draft_side, color=False)
    return gray, factor


def load_gray_bgr_scaled(data: bytes, *, min_size: int = 1, draft_side: int | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`load_gray_scaled`, plus the image in colour (H×W×3 uint8, BGR as OpenCV's; gray
    sources give three equal channels, transparency is white) for detectors that use colour."""
    gray, bgr, factor = _decode(data, min_size, draft_side, color=True)
    assert bgr is not None
    return gray, bgr, factor


def _decode(data: bytes, min_size: int, draft_side: int | None, color: bool,
            ) -> tuple[np.ndarray, np.ndarray | None, float]:
    if not data:
        raise Reject("empty: 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if min(w, h) < min_size:
                raise Reject(f"too_small: {w}×{h} < acquire.min_size {min_size}")
            jpeg = im.format == "JPEG"
            if jpeg and draft_side is not None and min(w, h) >= 2 * draft_side:
                scale = min(w, h) // draft_side
                luma = im.mode in ("L", "RGB", "YCbCr")  # JPEG can decode straight to L / RGB
                im.draft(("RGB" if color else "L") if luma else im.mode,
                         (max(1, w // scale), max(1, h // scale)))
            factor = w / im.size[0]
            if not jpeg or "exif" in im.info:  # a JPEG's EXIF comes before its pixels
                im = ImageOps.exif_transpose(im)
            gray = _to_l(im)  # decodes
            return gray, _to_bgr(im, gray) if color else None, factor
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Reject(f"too_large: {first_line(exc, limit=None)} (PIL decompression-bomb guard, "
                         f"Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS})") from None
        except UnidentifiedImageError:
            raise Reject("unreadable: not a recognised image format") from None
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
            raise Reject(f"unreadable: {first_line(exc, limit=None)}") from None


def _to_l(im: Image.Image) -> np.ndarray:
    """Any PIL mode → uint8 luma; transparent pixels count as white."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.int64).clip(0, 65535)
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    if mode == "F":
        return np.asarray(im, dtype=np.float32).clip(0, 255).round().astype(np.uint8)
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.uint8)
    if mode in ("1", "P", "RGB"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    return np.asarray(im.convert("RGB").convert("L"), dtype=np.uint8)  # CMYK, YCbCr, LAB, HSV


def _to_bgr(im: Image.Image, gray: np.ndarray) -> np.ndarray:
    """Any PIL mode → H×W×3 uint8 BGR; single-channel modes repeat ``gray`` (their luma)."""
    mode = im.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8)[..., ::-1])


def resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Square H×W → size×size (area averaging when shrinking, cubic when enlarging)."""
    if gray.shape == (size, size):
        return gray
    interp = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(gray, (size, size), interpolation=interp)


def center_square(gray: np.ndarray, size: int) -> np.ndarray:
    """The centred square of a (face) image, resized to size×size."""
    h, w = gray.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize(gray[top:top + side, left:left + side], size)
