"""Image width and height from the header: PNG and JPEG by hand, the rest through PIL."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from occlufer.data.dimensions import image_dimensions, jpeg_dimensions, png_dimensions


def _encode(width: int, height: int, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG that claims ``width``×``height`` (no pixel data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


@pytest.mark.parametrize(("fmt", "kwargs"), [
    ("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
    ("JPEG", {"exif": b"Exif\x00\x00" + bytes(3000)}),  # an APP1 segment before the frame
    ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("GIF", {})])
def test_dimensions_of_every_format(fmt: str, kwargs: dict) -> None:
    data = _encode(37, 21, fmt, **kwargs)
    assert image_dimensions(data) == (37, 21)
    by_hand = {"PNG": png_dimensions, "JPEG": jpeg_dimensions}.get(fmt)
    assert by_hand is None or by_hand(data) == (37, 21)  # not PIL's fallback


def test_hand_readers_read_only_their_format_and_the_header() -> None:
    jpeg, png = _encode(130, 7, "JPEG"), _encode(130, 7, "PNG")
    assert jpeg_dimensions(jpeg) == (130, 7) and png_dimensions(jpeg) is None
    assert png_dimensions(png) == (130, 7) and jpeg_dimensions(png) is None
    assert png_dimensions(png_header(5000, 5000)) == (5000, 5000)  # no pixels needed
    cut = jpeg[:jpeg.index(b"\xff\xc0") + 6]  # the frame header cut short
    assert jpeg_dimensions(cut) is None


def test_unreadable_data_has_no_dimensions() -> None:
    for data in (b"", b"hello", b"\xff\xd8\xff\xe0" + bytes(range(256)), b"GIF89a"):
        assert image_dimensions(data) is None
