"""``occlufer predict``: image files and folders → one row per face (or per failed image).

Files are decoded and searched as acquire does (:mod:`occlufer.data.faces`). An unusable file is
an ``error`` row, a photo without a face ``no_face``, without detection one below ``min_size``
``too_small``.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from occlufer.data import faces as face_detection
from occlufer.data.detectors import DEFAULT as DEFAULT_DETECTOR
from occlufer.data.detectors import KEYPOINTS
from occlufer.data.faces import FACE_MARGIN, FACE_MIN_SIZE
from occlufer.data.images import (
    EXTENSIONS,
    Reject,
    center_square,
    image_dimensions,
    load_gray_scaled,
)
from occlufer.errors import OccluferError, first_line, ignore_interrupt
from occlufer.inference.predictor import Predictor

#: without detection, the smallest shorter side of a face crop: acquire's ``min_size`` of the
#: ``image_folder`` source (conf/acquire/image_folder.yaml; a test keeps them equal)
CROP_MIN_SIZE = 32
OK, NO_FACE, ERROR, TOO_SMALL = "ok", "no_face", "error", "too_small"
#: a face crop (for the hint to pass --no-detect): sides at most this, width / height within
CROP_MAX_SIDE, CROP_ASPECT = 128, (0.8, 1.25)
CROP_HINT = "these look like face crops: add --no-detect"


@dataclass(frozen=True)
class FaceSearch:
    """How faces are taken from a photo: all faces ``detector`` finds, or the whole image."""

    detect: bool = True
    size: int = 48
    margin: float = FACE_MARGIN
    min_face: int = FACE_MIN_SIZE
    detector: str = DEFAULT_DETECTOR  # occlufer.data.detectors.DETECTORS


@dataclass
class Analysed:
    """One image's face crops, boxes, scores, keypoints and file → crop transforms, or why none."""

    crops: np.ndarray  # F×S×S uint8
    boxes: list[tuple[int, int, int, int]]
    status: str = OK
    error: str = ""
    scores: list[float] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)

    def face(self, i: int, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
        """Face ``i``'s row fields, labelled by its probabilities ``probs`` (None: unknown)."""
        top = int(probs.argmax())
        points = self.keypoints[i] if i < len(self.keypoints) else ()
        m = self.transforms[i] if i < len(self.transforms) else None
        return {"face": i, "box": list(self.boxes[i]), "label": classes[top],
                "confidence": float(probs[top]), "status": OK,
                "probabilities": dict(zip(classes, probs.tolist(), strict=True)),
                "score": self.scores[i] if i < len(self.scores) else None,
                "keypoints": ({n: [round(float(v), 1) for v in p]
                               for n, p in zip(KEYPOINTS, points, strict=True)}
                              if len(points) else None),
                "transform": None if m is None else [[float(f"{v:.6g}") for v in r] for r in m]}


def row(path: str | Path, video: dict[str, Any] | None = None, **rest: Any) -> dict[str, Any]:
    """A result row: ``rest`` over a failed image's fields (``video``: its columns, first)."""
    return {"path": str(path), **(video or {}), "face": None, "box": None, "label": None,
            "confidence": None, "status": ERROR, "error": "", "probabilities": None,
            "score": None, "keypoints": None, "transform": None, **rest}


def failed(size: int, status: str, error: str = "") -> Analysed:
    """An image or frame without face crops, and why."""
    return Analysed(np.zeros((0, size, size), np.uint8), [], status, error)


def analyse(source: bytes | np.ndarray, search: FaceSearch) -> Analysed:
    """File bytes or a decoded BGR video frame → face crops; never raises for bad input (the
    status says what happened)."""
    size, frame = search.size, isinstance(source, np.ndarray)
    how = {"size": size, "policy": "all", "margin": search.margin, "min_face": search.min_face,
           "detector": search.detector}
    try:
        gray = cv2.cvtColor(source, cv2.COLOR_BGR2GRAY) if frame else None
        if search.detect and frame:
            found, scale = face_detection.face_crops(
                gray, **how, image=None if search.detector == "haar" else source), 1.0
        elif search.detect:
            _, scale, found = face_detection.photo_faces(source, **how)
        else:  # the centred square of the (upright) picture is the face
            gray, scale = (gray, 1.0) if frame else load_gray_scaled(source, draft_side=size)
            h, w = (int(round(v * scale)) for v in gray.shape)
            side = min(h, w)
            box = ((w - side) // 2, (h - side) // 2, side, side)
            return Analysed(center_square(gray, size)[None], [box],
                            transforms=[face_detection.crop_transform(box, 0.0, size)])
        to_file = np.array([1 / scale, 1 / scale, 1.0])  # transforms from the file's pixels
        return Analysed(np.stack([c.image for c in found]),
                        [tuple(int(round(v * scale)) for v in c.box) for c in found],  # type: ignore[misc]
                        scores=[round(c.face.score, 4) for c in found],
                        keypoints=[c.face.keypoints * scale for c in found],
                        transforms=[c.transform * to_file for c in found])
    except OccluferError:  # the detector cannot run (not installed): stop with one line
        raise
    except Reject as exc:
        no_face = str(exc).split(":", 1)[0] == NO_FACE
        return failed(size, NO_FACE) if no_face else failed(size, ERROR, str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file or frame must not stop the run
        why = first_line(exc) if frame else str(exc)
        return failed(size, ERROR, f"failed: {type(exc).__name__}: {why}"[:300])


def _analyse_file(args: tuple[str, FaceSearch]) -> Analysed:
    path, search = args
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return failed(search.size, ERROR, f"unreadable: {exc.strerror or exc}")
    return analyse(data, search)


def min_size_rule(found: Analysed, search: FaceSearch, min_size: int) -> Analysed:
    """Without detection, an image whose shorter side is below ``min_size`` is ``too_small``."""
    if search.detect or found.status != OK or not found.boxes:
        return found
    side = found.boxes[0][2]  # the centred square: the image's shorter side, in its pixels
    if side >= min_size:
        return found
    return Analysed(found.crops[:0], [], TOO_SMALL,
                    f"too_small: shorter side {side} px < {min_size} (acquire.min_size)")


def looks_like_crop(width: int, height: int) -> bool:
    """A small, nearly square image: a face crop rather than a photo."""
    low, high = CROP_ASPECT
    return max(width, height) <= CROP_MAX_SIDE and height > 0 and low <= width / height <= high


def _file_looks_like_crop(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            found = image_dimensions(f.read(1 << 16))  # a crop's header is in its first bytes
    except OSError:
        return False
    return found is not None and looks_like_crop(*found)


def find_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and images in folders (recursively, sorted, hidden entries skipped)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = []
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                inside += [Path(dirpath) / n for n in filenames
                           if not n.startswith(".") and Path(n).suffix.lower() in EXTENSIONS]
            found += sorted(inside)
        elif path.exists():
            found.append(path)
        else:
            raise OccluferError(f"{raw}: no such file or folder; pass image files or folders")
    if not found:
        raise OccluferError(f"no images in {', '.join(map(str, paths))} (looked for "
                            f"{', '.join(sorted(EXTENSIONS))}, recursively)")
    return found


def _analysed(files: list[Path], search: FaceSearch, workers: int) -> Iterator[Analysed]:
    jobs = [(str(p), search) for p in files]
    if workers <= 1 or len(jobs) < 16:
        yield from map(_analyse_file, jobs)
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(workers, initializer=ignore_interrupt) as pool:
        yield from pool.imap(_analyse_file, jobs, chunksize=4)


def classified(predictor: Predictor, found: Iterable[tuple[Any, Analysed | None]],
               batch_size: int, limit: int) -> Iterator[tuple[Any, Analysed | None, list]]:
    """Each ``(item, analysed or None)`` with its faces' probabilities, in order; classified
    whenever ``batch_size`` crops or ``limit`` items wait."""
    pending: list[tuple[Any, Analysed | None]] = []
    queued = 0
    for item, a in found:
        pending.append((item, a))
        queued += 0 if a is None else len(a.crops)
        if queued >= batch_size or len(pending) >= limit:
            yield from _with_probs(predictor, pending, batch_size)
            pending, queued = [], 0
    yield from _with_probs(predictor, pending, batch_size)


def _with_probs(predictor: Predictor, pending: list[tuple[Any, Analysed | None]],
                batch_size: int) -> Iterator[tuple[Any, Analysed | None, list]]:
    crops = [a.crops for _, a in pending if a is not None and len(a.crops)]
    probs = iter(predictor.predict_proba(np.concatenate(crops), batch_size) if crops else ())
    for item, a in pending:
        yield item, a, [next(probs) for _ in range(0 if a is None else len(a.crops))]


@dataclass
class Summary:
    """Counts of a run on images, or on videos (``videos`` > 0) and their sampled frames."""

    images: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0       # failed images or frames, unreadable / truncated videos
    too_small: int = 0
    crop_like: int = 0    # images without a face found that look like face crops
    videos: int = 0
    frames: int = 0       # sampled frames analysed
    decoded: int = 0      # frames decoded, sampled or not
    tracks: int = 0
    annotated: int = 0    # frames written to the annotated video
    seconds: float = 0.0  # wall time of the videos, for frames/s

    def line(self) -> str:
        small = f", {self.too_small} too small" if self.too_small else ""
        if self.videos:
            return (f"{self.videos} videos, {self.frames} frames analysed of {self.decoded}, "
                    f"{self.faces} faces in {self.tracks} tracks, {self.errors} errors "
                    f"({self.no_face} frames without a face{small})")
        return (f"{self.images} images, {self.faces} faces, {self.errors} errors "
                f"({self.no_face} without a face{small})")

    def hint(self) -> str | None:
        """Advice when most images had no face found and look like face crops."""
        if self.crop_like * 2 <= self.images:
            return None
        return (f"predict: no face found in {self.crop_like} of {self.images} images, small "
                f"and square (≤ {CROP_MAX_SIDE} px): {CROP_HINT}")

    def failed(self, status: str) -> None:
        """Counts an image or frame without face crops by its ``status``."""
        self.no_face += status == NO_FACE
        self.errors += status == ERROR
        self.too_small += status == TOO_SMALL

    def add(self, other: Summary) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class RowWriter:
    """CSV (flat; ``extra``: more columns after ``path``, from the rows) or JSON lines."""

    def __init__(self, stream: IO[str], fmt: str, classes: Sequence[str],
                 extra: Sequence[str] = ()) -> None:
        self.stream, self.fmt, self.classes, self.extra = stream, fmt, list(classes), list(extra)
        self.csv: Any = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(["path", *self.extra, "face", "x", "y", "w", "h", "label",
                               "confidence", "status", "error", "score",
                               *(f"{n}_{a}" for n in KEYPOINTS for a in "xy"), "transform",
                               *self.classes])

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        box, probs, conf = row["box"] or [""] * 4, row["probabilities"] or {}, row["confidence"]
        points, m = row.get("keypoints") or {}, row.get("transform")
        self.csv.writerow([row["path"], *(row.get(c) for c in self.extra), row["face"], *box,
                           row["label"], "" if conf is None else f"{conf:.6f}", row["status"],
                           row["error"], row.get("score"),  # csv writes None as ""
                           *(points[n][i] if n in points else "" for n in KEYPOINTS
                             for i in (0, 1)),
                           "" if m is None else " ".join(f"{v:g}" for r in m for v in r),
                           *(f"{probs[c]:.6f}" if c in probs else "" for c in self.classes)])


def predict_paths(predictor: Predictor, files: Iterable[Path], writer: RowWriter, *,
                  search: FaceSearch, batch_size: int = 256, workers: int = 1,
                  progress: bool | None = None, min_size: int = CROP_MIN_SIZE) -> Summary:
    """One row per face / failed image of ``files``, in order (``workers`` > 1: in parallel)."""
    from tqdm import tqdm

    files = list(files)
    summary = Summary()
    disable = None if progress is None else not progress  # None: a bar only on a terminal
    bar = tqdm(zip(files, _analysed(files, search, workers), strict=True), total=len(files),
               desc="predict", unit="img", disable=disable, file=sys.stderr)
    found = ((path, min_size_rule(a, search, min_size)) for path, a in bar)
    for path, a, probs in classified(predictor, found, batch_size, 4 * batch_size):
        summary.images += 1
        if a.status != OK:
            summary.failed(a.status)
            if a.status == NO_FACE and search.detect and _file_looks_like_crop(path):
                summary.crop_like += 1
            writer.write(row(path, status=a.status, error=a.error))
        for i, p in enumerate(probs):
            writer.write(row(path, **a.face(i, p, predictor.classes)))
        summary.faces += len(probs)
    return summary


def open_out(out: str) -> IO[str]:
    """``-`` is stdout (left open); otherwise a new file (its folder is created)."""
    if out == "-":
        return _Unclosed(sys.stdout)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8", newline="")


class _Unclosed(io.TextIOBase):
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text)

    def close(self) -> None:
        self._stream.flush()
