"""Face detection for ordinary photos: OpenCV's bundled Haar cascade (no download at run time).

:func:`face_crops` finds frontal faces in a grayscale photo, applies the policy for photos with
several faces, and returns square crops (box grown by a margin on each side, edge pixels
replicated where it leaves the photo) resized to the store's image size.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from occlufer.data.images import Reject, resize

CASCADE = "haarcascade_frontalface_default.xml"
Box = tuple[int, int, int, int]  # x, y, w, h


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
