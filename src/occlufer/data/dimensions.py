"""An image's width and height from its header, without decoding a pixel.

PNG (the ``IHDR`` chunk) and JPEG (the first start-of-frame marker) are read by hand; other
formats (and files these readers cannot follow) go through PIL's lazy ``Image.open``, which
also parses the header only. Used to refuse images that are too large before decoding them
and to tell face crops from photos.
"""

from __future__ import annotations

import io
import struct
import warnings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic; not DHT C4,
#: JPG C8, DAC CC)
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def png_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, or None when ``data`` is not one (or is cut short)."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG as stored (before any EXIF rotation), or None when ``data``
    is not one or has no frame header before its scan data."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None  # not at a marker: a broken file
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if length < 2:
            return None
        if marker in _SOF:
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, a JPEG or (through PIL's lazy open) any
    other format PIL reads; None when they cannot be told without decoding."""
    found = png_dimensions(data) or jpeg_dimensions(data)
    if found is not None:
        return found
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:  # reads the header, decodes nothing
                width, height = im.size
    except Exception:  # noqa: BLE001 - unreadable or a decompression bomb: the decoder says
        return None
    return int(width), int(height)
