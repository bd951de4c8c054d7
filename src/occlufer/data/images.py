"""Decoding of every image entering the pipeline: upright 8-bit gray (EXIF applied, transparency
on white, 16-bit scaled) or :class:`Reject`; PIL's bomb guard rejects; JPEGs decode at draft scale.
PIL, not cv2.imdecode: its lazy header read serves the guard, the draft, the size check and
:func:`image_dimensions`."""

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
    """File bytes → H×W uint8 gray; JPEGs decode at 1/2-1/8 scale keeping ``draft_side`` px."""
    return decode(data, min_size=min_size, draft_side=draft_side)[0]


def load_gray_scaled(data: bytes, *, min_size: int = 1, draft_side: int | None = None,
                     ) -> tuple[np.ndarray, float]:
    """:func:`load_gray` and the scale: file pixels per decoded pixel (>1 after a JPEG draft)."""
    gray, _, scale = decode(data, min_size=min_size, draft_side=draft_side)
    return gray, scale


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone; None when PIL cannot read it (or a bomb)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Exception:  # noqa: BLE001 - unreadable or a decompression bomb
            return None


def decode(data: bytes, *, min_size: int = 1, draft_side: int | None = None, color: bool = False,
           ) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(gray, H×W×3 BGR when ``color`` else None, scale) as :func:`load_gray_scaled`."""
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


def _on_white(im: Image.Image) -> Image.Image | None:
    """``im`` composited onto white (RGBA) when it has transparency, else None."""
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P"
                                                          and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return None


def _to_l(im: Image.Image) -> np.ndarray:
    """Any PIL mode → uint8 luma; transparent pixels count as white."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.int64).clip(0, 65535)
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    if mode == "F":
        return np.asarray(im, dtype=np.float32).clip(0, 255).round().astype(np.uint8)
    white = _on_white(im)
    if white is not None:
        return np.asarray(white.convert("L"), dtype=np.uint8)
    if mode in ("1", "L", "P", "RGB"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    return np.asarray(im.convert("RGB").convert("L"), dtype=np.uint8)  # CMYK, YCbCr, LAB, HSV


def _to_bgr(im: Image.Image, gray: np.ndarray) -> np.ndarray:
    """Any PIL mode → H×W×3 uint8 BGR; single-channel modes repeat ``gray`` (their luma)."""
    if im.mode in ("1", "L", "I", "F") or im.mode.startswith("I;16"):
        return np.repeat(gray[..., None], 3, axis=2)
    im = _on_white(im) or im
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
