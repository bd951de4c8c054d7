"""Face detection for ordinary photos: OpenCV's bundled Haar cascade (no download at run time).

:func:`face_crops` finds frontal faces in a grayscale photo, applies the policy for photos with
several faces, and returns square crops (box grown by a margin on each side, edge pixels
replicated where it leaves the photo) resized to the store's image size. :func:`photo_faces`
decodes a photo file first; acquire's ``photos`` reader, ``occlufer predict`` and the served
model all go through it.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from occlufer.data.images import Reject, load_gray_scaled, resize

CASCADE = "haarcascade_frontalface_default.xml"
Box = tuple[int, int, int, int]  # x, y, w, h
PHOTO_SIDE = 1024  # photos: JPEG draft keeps at least this many pixels on the shorter side


@cache
def _cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + CASCADE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():  # a broken OpenCV install, not bad input
        raise RuntimeError(f"cannot load the face detector {path}")
    return cascade


def detect(gray: np.ndarray, min_face: int) -> list[Box]:
    """Frontal face boxes, largest first."""
    found = _cascade().detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1,
                                        minNeighbors=5, minSize=(min_face, min_face))
    boxes = [tuple(int(v) for v in b) for b in found]
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[1], b[0]))  # type: ignore[return-value]


def choose(boxes: list[Box], policy: str) -> list[Box]:
    """Apply ``acquire.faces`` (largest / all / skip); raises :class:`Reject` for no usable face."""
    if not boxes:
        raise Reject("no_face: no face found")
    if len(boxes) == 1 or policy == "all":
        return boxes
    if policy == "largest":
        return boxes[:1]
    raise Reject(f"several_faces: {len(boxes)} faces found (acquire.faces = skip)")


def crop(gray: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    """The square around ``box`` grown by ``margin`` × its side on each side, size×size."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    H, W = gray.shape  # noqa: N806
    pad = max(0, -left, -top, left + side - W, top + side - H)
    if pad:
        gray = np.pad(gray, pad, mode="edge")
        left, top = left + pad, top + pad
    return resize(gray[top:top + side, left:left + side], size)


def face_crops(gray: np.ndarray, *, size: int, policy: str, margin: float,
               min_face: int) -> list[tuple[np.ndarray, Box]]:
    """Crops (size×size) of the faces to keep, with their boxes in ``gray``'s coordinates."""
    return [(crop(gray, b, margin, size), b) for b in choose(detect(gray, min_face), policy)]


def photo_faces(data: bytes, *, size: int, policy: str, margin: float, min_face: int,
                min_size: int = 1) -> tuple[np.ndarray, float, list[tuple[np.ndarray, Box]]]:
    """Photo file bytes → (grayscale photo, scale, face crops with their boxes).

    The photo is decoded by :func:`~occlufer.data.images.load_gray_scaled` (JPEGs at reduced
    scale down to :data:`PHOTO_SIDE`); boxes are in the decoded photo's coordinates, ``scale``
    times them gives the file's. Raises :class:`Reject` (``unreadable``, ``no_face``, ...).
    """
    gray, scale = load_gray_scaled(data, min_size=min_size, draft_side=PHOTO_SIDE)
    return gray, scale, face_crops(gray, size=size, policy=policy, margin=margin,
                                   min_face=min_face)
