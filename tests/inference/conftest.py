"""Fixtures for using a model: an untrained model.pt and a folder of awkward photos."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: synthetic face #1 of generate(SyntheticSpec(n_per_class=3, size=160), seed 0): the Haar
#: cascade finds it when pasted at FACE_AT into a plain 400×300 photo (deterministic)
FACE_INDEX, FACE_AT, FACE_SIDE = 1, (120, 60), 160


def face_photo(rgb: bool = True) -> np.ndarray:
    """A 300×400 gray (or RGB) 'photo' with one synthetic face the detector finds."""
    from occlufer.data.synthetic import SyntheticSpec, generate

    face = generate(SyntheticSpec(n_per_class=3, size=FACE_SIDE), 0)[0][FACE_INDEX]
    photo = np.full((300, 400), 120, np.uint8)
    x, y = FACE_AT
    photo[y:y + FACE_SIDE, x:x + FACE_SIDE] = face
    return np.repeat(photo[..., None], 3, axis=2) if rgb else photo


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture(scope="session")
def model_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/model.pt of an untrained seed_cnn (fixed seed), 7 canonical classes."""
    import torch

    from occlufer.labels import CLASSES
    from occlufer.models import build_model, save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    model = build_model("seed_cnn", num_classes=len(CLASSES), image_size=48)
    save_model(folder / "model.pt", model, name="seed_cnn", classes=CLASSES, image_size=48,
               dropout=0.0)
    return folder / "model.pt"


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """good.jpg (a face), plain.png (no face), corrupt.jpg, alpha.png (transparent RGBA),
    turned.jpg (EXIF orientation 6: stored 160×120, upright 120×160), sub/deeper/face.webp,
    notes.txt (skipped: not an image extension) and .hidden.jpg (skipped)."""
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "good.jpg").write_bytes(encode(face_photo(), "JPEG", quality=95))
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    (root / "plain.png").write_bytes(encode(gradient))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (root / "alpha.png").write_bytes(encode(np.zeros((100, 100, 4), np.uint8)))
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = np.zeros((120, 160), np.uint8)
    turned[:, :80] = 255  # left half white when stored: the top half once upright
    (root / "turned.jpg").write_bytes(encode(turned, "JPEG", exif=exif, quality=95))
    (root / "sub" / "deeper" / "face.webp").write_bytes(encode(face_photo(), "WEBP",
                                                               lossless=True))
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"junk")
    return root
