"""``occlufer predict``: image files and folders → one row per face (or per failed image).

Every file is decoded by the pipeline's rules (:mod:`occlufer.data.images`: any format PIL
reads, EXIF orientation, colour modes, transparency) and, with detection, searched for faces
by acquire's photo code (:func:`occlufer.data.faces.photo_faces`: BlazeFace by default, crops
aligned to FER2013 geometry; each face row records the detector's score, keypoints and the
photo → crop transform). A
file that cannot be used becomes a row with status ``error`` and the reason; a photo without a
face a row with status ``no_face``; without detection, an image whose shorter side is below
acquire's ``min_size`` a row with status ``too_small``. When most images have no face found
and are small square images, the run ends with a hint to pass ``--no-detect``. Nothing stops
the run but bad arguments.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from occlufer.data import faces as face_detection
from occlufer.data.detectors import DEFAULT as DEFAULT_DETECTOR
from occlufer.data.detectors import KEYPOINTS
from occlufer.data.faces import FACE_MARGIN, FACE_MIN_SIZE
from occlufer.data.images import EXTENSIONS, Reject, center_square, load_gray_scaled
from occlufer.errors import OccluferError, ignore_interrupt
from occlufer.inference.predictor import Predictor, top_labels

#: without detection, an image whose shorter side is below this is no face crop: acquire's
#: ``min_size`` of the ``image_folder`` source (conf/acquire/image_folder.yaml; a test keeps
#: them equal)
CROP_MIN_SIZE = 32
OK, NO_FACE, ERROR, TOO_SMALL = "ok", "no_face", "error", "too_small"
#: a face crop by its size (for the hint to pass --no-detect): at most this many pixels on
#: each side, width / height within these bounds
CROP_MAX_SIDE, CROP_ASPECT = 128, (0.8, 1.25)
CROP_HINT = "these look like face crops: add --no-detect"


@dataclass(frozen=True)
class FaceSearch:
    """How faces are taken from a photo: detected (all faces, by ``detector``: aligned crops,
    or with a margin for haar) or the whole image."""

    detect: bool = True
    size: int = 48
    margin: float = FACE_MARGIN
    min_face: int = FACE_MIN_SIZE
    detector: str = DEFAULT_DETECTOR  # occlufer.data.detectors.DETECTORS


@dataclass
class Analysed:
    """One image: its face crops and boxes (in the file's pixel coordinates), or why none;
    with detection also per face the detector's score, its keypoints (K×2, 0×2 for haar) and
    the 2×3 transform from the file's pixels to the crop's (continuous coordinates)."""

    crops: np.ndarray  # F×S×S uint8
    boxes: list[tuple[int, int, int, int]]
    status: str = OK
    error: str = ""
    scores: list[float] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)

    def details(self, i: int) -> dict[str, Any]:
        """Face ``i``'s ``score``, ``keypoints`` (name → [x, y]) and ``transform`` for a row;
        None where not known."""
        score = self.scores[i] if i < len(self.scores) else None
        points = self.keypoints[i] if i < len(self.keypoints) else np.zeros((0, 2))
        m = self.transforms[i] if i < len(self.transforms) else None
        return {"score": score,
                "keypoints": ({n: [round(float(v), 1) for v in p]
                               for n, p in zip(KEYPOINTS, points, strict=True)}
                              if len(points) else None),
                "transform": None if m is None else [[float(f"{v:.6g}") for v in r] for r in m]}


NO_DETAILS: dict[str, Any] = {"score": None, "keypoints": None, "transform": None}


def centre_face(gray: np.ndarray, size: int, h: int, w: int) -> Analysed:
    """Without detection: the centred square of an ``h``×``w`` picture is the face."""
    side = min(h, w)
    box = ((w - side) // 2, (h - side) // 2, side, side)
    return Analysed(center_square(gray, size)[None], [box],
                    transforms=[face_detection.crop_transform(box, 0.0, size)])


def rejected(exc: Reject, size: int) -> Analysed:
    """A picture without a usable face: ``no_face`` (no message) or ``error`` (the reason)."""
    no_face = str(exc).split(":", 1)[0] == "no_face"
    return Analysed(np.zeros((0, size, size), np.uint8), [], NO_FACE if no_face else ERROR,
                    "" if no_face else str(exc))


def analyse(data: bytes, search: FaceSearch) -> Analysed:
    """File bytes → face crops; never raises for bad input (the status says what happened)."""
    size = search.size
    empty = np.zeros((0, size, size), np.uint8)
    try:
        if search.detect:
            _, scale, found = face_detection.photo_faces(
                data, size=size, policy="all", margin=search.margin, min_face=search.min_face,
                detector=search.detector)
            boxes = [tuple(int(round(v * scale)) for v in c.box) for c in found]
            to_file = np.array([1 / scale, 1 / scale, 1.0])  # transforms from the file's pixels
            return Analysed(np.stack([c.image for c in found]), boxes,  # type: ignore[arg-type]
                            scores=[round(c.face.score, 4) for c in found],
                            keypoints=[c.face.keypoints * scale for c in found],
                            transforms=[c.transform * to_file for c in found])
        gray, scale = load_gray_scaled(data, draft_side=size)
        h, w = (int(round(v * scale)) for v in gray.shape)  # the file's upright size
        return centre_face(gray, size, h, w)
    except OccluferError:  # the detector cannot run (not installed): stop with one line
        raise
    except Reject as exc:
        return rejected(exc, size)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the run
        return Analysed(empty, [], ERROR, f"failed: {type(exc).__name__}: {exc}"[:300])


def _analyse_file(args: tuple[str, FaceSearch]) -> Analysed:
    path, search = args
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return Analysed(np.zeros((0, search.size, search.size), np.uint8), [], ERROR,
                        f"unreadable: {exc.strerror or exc}")
    return analyse(data, search)


def min_size_rule(found: Analysed, search: FaceSearch, min_size: int) -> Analysed:
    """Without detection, an image whose shorter side is below ``min_size`` is not classified
    but reported ``too_small`` (acquire's ``min_size`` rule); anything else is left as it is."""
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
    from occlufer.data.dimensions import image_dimensions

    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)  # a crop's header is in its first bytes
    except OSError:
        return False
    found = image_dimensions(head)
    return found is not None and looks_like_crop(*found)


def find_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and images (by extension) inside folders, recursively, sorted; hidden
    entries in folders are skipped. A path that does not exist is an error."""
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


@dataclass
class Summary:
    images: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    too_small: int = 0
    crop_like: int = 0  # images without a face found that look like face crops
    rows: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        small = f", {self.too_small} too small" if self.too_small else ""
        return (f"{self.images} images, {self.faces} faces, {self.errors} errors "
                f"({self.no_face} without a face{small})")

    def hint(self) -> str | None:
        """Advice for the end of the run: most images had no face found and look like face
        crops (small, nearly square), so detection was the wrong choice."""
        if self.crop_like * 2 <= self.images:
            return None
        return (f"predict: no face found in {self.crop_like} of {self.images} images, small "
                f"and square (≤ {CROP_MAX_SIDE} px): {CROP_HINT}")


class RowWriter:
    """CSV (flat: box x, y, w, h and one column per class) or JSON lines (nested).

    ``extra``: more CSV columns after ``path``, taken from the rows' keys of those names
    (empty where a row lacks one): the video columns (frame, time_s, track), so that a run
    over photos and videos is one table."""

    def __init__(self, stream: IO[str], fmt: str, classes: Sequence[str],
                 extra: Sequence[str] = ()) -> None:
        self.stream, self.fmt, self.classes = stream, fmt, list(classes)
        self.extra = list(extra)
        self.csv: Any = None
        if fmt == "csv":
            self.csv = csv.writer(stream, lineterminator="\n")
            points = [f"{n}_{a}" for n in KEYPOINTS for a in "xy"]
            self.csv.writerow(["path", *self.extra, "face", "x", "y", "w", "h", "label",
                               "confidence", "status", "error", "score", *points, "transform",
                               *self.classes])

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        box = row["box"] or ["", "", "", ""]
        probs = row["probabilities"] or {}
        conf = row["confidence"]
        score, points, m = row.get("score"), row.get("keypoints") or {}, row.get("transform")
        extra = ("" if row.get(c) is None else row[c] for c in self.extra)
        self.csv.writerow([row["path"], *extra, "" if row["face"] is None else row["face"], *box,
                           row["label"] or "", "" if conf is None else f"{conf:.6f}",
                           row["status"], row["error"], "" if score is None else score,
                           *(points[n][i] if n in points else "" for n in KEYPOINTS
                             for i in (0, 1)),
                           "" if m is None else " ".join(f"{v:g}" for r in m for v in r),
                           *(f"{probs[c]:.6f}" if c in probs else "" for c in self.classes)])


def predict_paths(predictor: Predictor, files: Iterable[Path], writer: RowWriter, *,
                  search: FaceSearch, batch_size: int = 256, workers: int = 1,
                  progress: bool | None = None, min_size: int = CROP_MIN_SIZE) -> Summary:
    """Analyse ``files`` (in parallel when ``workers`` > 1), classify their faces in batches
    of about ``batch_size`` and write one row per face / failed image, in file order.
    Without detection, images with a side below ``min_size`` are rows ``too_small``
    (:func:`min_size_rule`); with it, the summary counts the images without a face that look
    like face crops (:meth:`Summary.hint`)."""
    from tqdm import tqdm

    files = list(files)
    summary = Summary()
    pending: list[tuple[Path, Analysed]] = []
    queued = 0

    def flush() -> None:
        nonlocal queued
        crops = [a.crops for _, a in pending if len(a.crops)]
        probs = predictor.predict_proba(np.concatenate(crops), batch_size) if crops else None
        labels, conf = top_labels(probs, predictor.classes) if probs is not None else ([], [])
        k = 0
        for path, a in pending:
            summary.images += 1
            if a.status != OK:
                summary.no_face += a.status == NO_FACE
                summary.errors += a.status == ERROR
                summary.too_small += a.status == TOO_SMALL
                if a.status == NO_FACE and search.detect and _file_looks_like_crop(path):
                    summary.crop_like += 1
                writer.write({"path": str(path), "face": None, "box": None, "label": None,
                              "confidence": None, "status": a.status, "error": a.error,
                              "probabilities": None, **NO_DETAILS})
                continue
            for i, box in enumerate(a.boxes):
                writer.write({"path": str(path), "face": i, "box": list(box),
                              "label": labels[k], "confidence": float(conf[k]),
                              "status": OK, "error": "",
                              "probabilities": {c: float(p) for c, p in
                                                zip(predictor.classes, probs[k], strict=True)},
                              **a.details(i)})
                k += 1
                summary.faces += 1
        pending.clear()
        queued = 0

    disable = None if progress is None else not progress  # None: a bar only on a terminal
    with tqdm(total=len(files), desc="predict", unit="img", disable=disable,
              file=sys.stderr) as bar:
        for path, found in zip(files, _analysed(files, search, workers), strict=True):
            analysed = min_size_rule(found, search, min_size)
            pending.append((path, analysed))
            queued += len(analysed.crops)
            if queued >= batch_size or len(pending) >= 4 * batch_size:
                flush()
            bar.update(1)
        flush()
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
