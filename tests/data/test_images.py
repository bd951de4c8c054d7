"""Decoding rules: every odd file becomes a gray array or a Reject with a reason, never a crash."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occlufer.data.images import Reject, center_square, image_dimensions, load_gray


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise(size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _reject(data: bytes, **kw) -> str:
    with pytest.raises(Reject) as err:
        load_gray(data, **kw)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_zero_byte_file_is_rejected_as_empty() -> None:
    assert _reject(b"").startswith("empty:")


def test_text_file_named_jpg_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    assert _reject(path.read_bytes()).startswith("unreadable:")


def test_truncated_jpeg_is_unreadable() -> None:
    data = _bytes(Image.fromarray(_noise(128)), "JPEG", quality=95)
    assert _reject(data[: len(data) // 2]).startswith("unreadable:")


def test_gray_png_round_trips_exactly() -> None:
    a = _noise()
    assert np.array_equal(load_gray(_bytes(Image.fromarray(a), "PNG")), a)


def test_cmyk_jpeg_becomes_luma_of_its_rgb() -> None:
    red = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    out = load_gray(_bytes(red, "JPEG", quality=95))
    assert out.shape == (32, 32) and abs(int(out.mean()) - 76) <= 6  # 0.299 * 255


def test_rgba_and_la_are_composited_on_white() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (255, 0, 0, 255)          # opaque red on top
    rgba[4:] = (0, 0, 0, 0)              # transparent black below
    out = load_gray(_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert abs(int(out[:4].mean()) - 76) <= 1 and out[4:].min() == 255
    la = Image.fromarray(np.dstack([np.full((8, 8), 100, np.uint8),
                                    np.r_[np.full((4, 8), 255), np.full((4, 8), 128)]
                                    .astype(np.uint8)]), "LA")
    out = load_gray(_bytes(la, "PNG"))
    assert out[:4].max() == 100 and abs(int(out[4:].mean()) - 178) <= 1  # half 100, half white


def test_palette_png_with_and_without_transparency() -> None:
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 1 = red
    assert abs(int(load_gray(_bytes(pal, "PNG")).mean()) - 76) <= 1
    assert load_gray(_bytes(pal, "PNG", transparency=1)).min() == 255  # red is transparent


def test_16_bit_png_is_scaled_not_clipped() -> None:
    a = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    im = Image.fromarray(a)
    assert im.mode.startswith("I;16")
    out = load_gray(_bytes(im, "PNG"))
    assert out[0].tolist() == [0, 1, 128, 255]


def test_exif_orientation_is_applied_before_anything_else() -> None:
    stored = np.zeros((40, 60), np.uint8)
    stored[:, 30:] = 255                 # landscape: black left, white right
    exif = Image.Exif()
    exif[0x0112] = 6                     # display rotated 90° clockwise
    out = load_gray(_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    assert out.shape == (60, 40)         # portrait after transposing
    assert out[:25].mean() < 30 and out[35:].mean() > 225  # left column became the top row


def test_image_below_min_size_is_rejected() -> None:
    reason = _reject(_bytes(Image.fromarray(_noise(20)), "PNG"), min_size=32)
    assert reason.startswith("too_small:") and "20×20" in reason


def test_decompression_bomb_becomes_a_reject_and_big_jpegs_decode_reduced(monkeypatch) -> None:
    big = _bytes(Image.new("L", (10_000, 10_000), 128), "JPEG", quality=50)
    reason = _reject(big, draft_side=48)          # 10⁸ px > PIL's 89.5 M limit
    assert reason.startswith("too_large:") and "MAX_IMAGE_PIXELS" in reason
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2 * 10**8)  # a user who raised the limit:
    out = load_gray(big, draft_side=48)           # JPEG draft decodes at 1/8 scale, 1.5 MB
    assert out.shape == (1250, 1250) and out.dtype == np.uint8


def test_center_square_crops_the_middle_and_resizes() -> None:
    a = np.zeros((40, 80), np.uint8)
    a[:, 20:60] = 200
    out = center_square(a, 48)
    assert out.shape == (48, 48) and out.min() == 200


def test_colour_decoding_for_detectors_matches_the_gray_one() -> None:
    from occlufer.data.images import decode, load_gray_scaled

    def load_gray_bgr_scaled(data: bytes, **kw) -> tuple:
        return decode(data, color=True, **kw)

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB: the last channel in BGR
    gray, bgr, scale = load_gray_bgr_scaled(_bytes(Image.fromarray(rgb), "PNG"))
    assert bgr.shape == (40, 60, 3) and scale == 1 and (bgr[..., 2] == 200).all()
    assert (bgr[..., :2] == 0).all()
    np.testing.assert_array_equal(gray, load_gray_scaled(_bytes(Image.fromarray(rgb), "PNG"))[0])
    clear = np.zeros((20, 20, 4), np.uint8)  # transparent: white, as in the gray decoding
    assert (load_gray_bgr_scaled(_bytes(Image.fromarray(clear), "PNG"))[1] == 255).all()
    plain = _noise()
    g, b, _ = load_gray_bgr_scaled(_bytes(Image.fromarray(plain), "PNG"))
    np.testing.assert_array_equal(b, np.repeat(plain[..., None], 3, axis=2))
    np.testing.assert_array_equal(g, plain)
    big = np.random.default_rng(1).integers(0, 256, (2400, 3200, 3), dtype=np.uint8)
    data = _bytes(Image.fromarray(big), "JPEG", quality=90)  # drafted to half size
    g, b, scale = load_gray_bgr_scaled(data, draft_side=1024)
    assert scale == 2 and g.shape == b.shape[:2] == load_gray_scaled(data, draft_side=1024)[0].shape


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature, IHDR and an empty IDAT claiming ``width``×``height``: no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", 0) + b"IDAT")


@pytest.mark.parametrize(("fmt", "kwargs"), [
    ("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
    ("JPEG", {"exif": b"Exif\x00\x00" + bytes(3000)}),  # an APP1 segment before the frame
    ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("GIF", {})])
def test_dimensions_of_every_format(fmt: str, kwargs: dict) -> None:
    assert image_dimensions(_bytes(Image.new("L", (37, 21)), fmt, **kwargs)) == (37, 21)


def test_dimensions_come_from_the_header_alone() -> None:
    assert image_dimensions(_png_header(5000, 5000)) == (5000, 5000)  # no pixels needed
    assert image_dimensions(_png_header(12000, 12000)) == (12000, 12000)  # over the warning
    jpeg = _bytes(Image.new("L", (130, 7)), "JPEG")
    assert image_dimensions(jpeg[:jpeg.index(b"\xff\xda") + 12]) == (130, 7)  # scan cut short


def test_unreadable_data_has_no_dimensions() -> None:
    for data in (b"", b"hello", b"\xff\xd8\xff\xe0" + bytes(range(256)), b"GIF89a",
                 _png_header(20000, 20000)):  # over PIL's bomb limit: the decoder says why
        assert image_dimensions(data) is None
