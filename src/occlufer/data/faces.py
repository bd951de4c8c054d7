"""Faces in photos: detection (:mod:`occlufer.data.detectors`), the several-faces policy and
one size×size crop per face (aligned with keypoints, else the box plus margin, edges replicated)."""

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from occlufer.data import detectors
from occlufer.data.detectors import Box, Face
from occlufer.data.images import Reject, decode, resize

PHOTO_SIDE = 1024  # photos: JPEG draft keeps at least this many pixels on the shorter side
#: face search of conf/acquire/photos.yaml (a test keeps them equal), predict and serving
FACE_MARGIN = 0.2
FACE_MIN_SIZE = 24
T = TypeVar("T")


@dataclass(frozen=True)
class FaceCrop:
    """One face kept: its crop and how it was made, in the searched photo's pixels."""

    image: np.ndarray       # size×size uint8
    face: Face              # box, score, keypoints
    transform: np.ndarray   # 2×3: photo → crop coordinates (continuous, x then y)

    @property
    def box(self) -> Box:
        return self.face.box

    @property
    def crop_keypoints(self) -> np.ndarray:
        """The detector's keypoints in this crop (K×2 fractions of its side; 0×2 for Haar)."""
        points = np.asarray(self.face.keypoints, dtype=np.float64).reshape(-1, 2)
        return (points @ self.transform[:, :2].T + self.transform[:, 2]) / self.image.shape[1]


def detect(gray: np.ndarray, min_face: int) -> list[Box]:
    """Frontal face boxes of the Haar cascade, largest first."""
    return [f.box for f in detectors.get_detector("haar").detect(gray, min_face)]


def choose(boxes: list[T], policy: str) -> list[T]:
    """Apply ``acquire.faces`` (largest / all / skip) to faces sorted largest first, or Reject."""
    if not boxes:
        raise Reject("no_face: no face found")
    if len(boxes) == 1 or policy == "all":
        return boxes
    if policy == "largest":
        return boxes[:1]
    raise Reject(f"several_faces: {len(boxes)} faces found (acquire.faces = skip)")


def _square(box: Box, margin: float) -> tuple[int, int, int]:
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop(gray: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    """The square around ``box`` grown by ``margin`` × its side on each side, size×size."""
    left, top, side = _square(box, margin)
    H, W = gray.shape  # noqa: N806
    pad = max(0, -left, -top, left + side - W, top + side - H)
    if pad:
        gray = np.pad(gray, pad, mode="edge")
        left, top = left + pad, top + pad
    return resize(gray[top:top + side, left:left + side], size)


def crop_transform(box: Box, margin: float, size: int) -> np.ndarray:
    """The 2×3 transform of :func:`crop` (photo → crop coordinates, as :func:`face_crop`'s)."""
    left, top, side = _square(box, margin)
    k = size / side
    return np.array([[k, 0.0, -left * k], [0.0, k, -top * k]])


def face_crop(gray: np.ndarray, face: Face, *, size: int, margin: float) -> FaceCrop:
    """``face`` aligned to FER2013 geometry when it has keypoints, else its box with margin."""
    transform = detectors.alignment(face, size)
    if transform is None:
        return FaceCrop(crop(gray, face.box, margin, size), face,
                        crop_transform(face.box, margin, size))
    return FaceCrop(detectors.warp(gray, transform, size), face, transform)


def face_crops(gray: np.ndarray, *, size: int, policy: str, margin: float, min_face: int,
               detector: str = detectors.DEFAULT, image: np.ndarray | None = None,
               ) -> list[FaceCrop]:
    """Crops of the faces to keep; ``image``: the photo in BGR for the detector, if any."""
    found = detectors.get_detector(detector).detect(gray if image is None else image, min_face)
    return [face_crop(gray, f, size=size, margin=margin) for f in choose(found, policy)]


def photo_faces(data: bytes, *, size: int, policy: str, margin: float, min_face: int,
                min_size: int = 1, detector: str = detectors.DEFAULT,
                ) -> tuple[np.ndarray, float, list[FaceCrop]]:
    """Photo bytes → (gray photo, file pixels per photo pixel, face crops), or Reject."""
    detectors.get_detector(detector)  # an unknown name fails before decoding
    gray, image, scale = decode(data, min_size=min_size, draft_side=PHOTO_SIDE,
                                color=detector != "haar")
    return gray, scale, face_crops(gray, size=size, policy=policy, margin=margin,
                                   min_face=min_face, detector=detector, image=image)
