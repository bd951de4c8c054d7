"""``occlufer predict``: image files and folders → one row per face (or per failed image).

Every file is decoded by the pipeline's rules (:mod:`occlufer.data.images`: any format PIL
reads, EXIF orientation, colour modes, transparency) and, with detection, searched for faces
by acquire's photo code (:func:`occlufer.data.faces.photo_faces`, Haar cascade, margin). A
file that cannot be used becomes a row with status ``error`` and the reason; a photo without a
face a row with status ``no_face``. Nothing stops the run but bad arguments.
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
from occlufer.data.images import EXTENSIONS, Reject, center_square, load_gray_scaled
from occlufer.errors import OccluferError
from occlufer.inference.predictor import Predictor, top_labels

#: the face search of acquire's ``photos`` source (conf/acquire/photos.yaml; a test keeps them
#: equal): margin on each side as a fraction of the box, smallest face in pixels
FACE_MARGIN = 0.2
FACE_MIN_SIZE = 40
OK, NO_FACE, ERROR = "ok", "no_face", "error"


@dataclass(frozen=True)
class FaceSearch:
    """How faces are taken from a photo: detected (all faces, with a margin) or the whole image."""

    detect: bool = True
    size: int = 48
    margin: float = FACE_MARGIN
    min_face: int = FACE_MIN_SIZE


@dataclass
class Analysed:
    """One image: its face crops and boxes (in the file's pixel coordinates), or why none."""

    crops: np.ndarray  # F×S×S uint8
    boxes: list[tuple[int, int, int, int]]
    status: str = OK
    error: str = ""


def analyse(data: bytes, search: FaceSearch) -> Analysed:
    """File bytes → face crops; never raises for bad input (the status says what happened)."""
    size = search.size
    empty = np.zeros((0, size, size), np.uint8)
    try:
        if search.detect:
            _, scale, found = face_detection.photo_faces(
                data, size=size, policy="all", margin=search.margin, min_face=search.min_face)
            boxes = [tuple(int(round(v * scale)) for v in box) for _, box in found]
            return Analysed(np.stack([c for c, _ in found]), boxes)  # type: ignore[arg-type]
        gray, scale = load_gray_scaled(data, draft_side=size)
        h, w = (int(round(v * scale)) for v in gray.shape)  # the file's upright size
        side = min(h, w)
        return Analysed(center_square(gray, size)[None],
                        [((w - side) // 2, (h - side) // 2, side, side)])
    except Reject as exc:
        code = str(exc).split(":", 1)[0]
        return Analysed(empty, [], NO_FACE if code == "no_face" else ERROR,
                        "" if code == "no_face" else str(exc))
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
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_analyse_file, jobs, chunksize=4)


@dataclass
class Summary:
    images: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.images} images, {self.faces} faces, {self.errors} errors "
                f"({self.no_face} without a face)")


class RowWriter:
    """CSV (flat: box x, y, w, h and one column per class) or JSON lines (nested)."""

    def __init__(self, stream: IO[str], fmt: str, classes: Sequence[str]) -> None:
        self.stream, self.fmt, self.classes = stream, fmt, list(classes)
        self.csv: Any = None
        if fmt == "csv":
            self.csv = csv.writer(stream, lineterminator="\n")
            self.csv.writerow(["path", "face", "x", "y", "w", "h", "label", "confidence",
                               "status", "error", *self.classes])

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        box = row["box"] or ["", "", "", ""]
        probs = row["probabilities"] or {}
        conf = row["confidence"]
        self.csv.writerow([row["path"], "" if row["face"] is None else row["face"], *box,
                           row["label"] or "", "" if conf is None else f"{conf:.6f}",
                           row["status"], row["error"],
                           *(f"{probs[c]:.6f}" if c in probs else "" for c in self.classes)])


def predict_paths(predictor: Predictor, files: Iterable[Path], writer: RowWriter, *,
                  search: FaceSearch, batch_size: int = 256, workers: int = 1,
                  progress: bool | None = None) -> Summary:
    """Analyse ``files`` (in parallel when ``workers`` > 1), classify their faces in batches
    of about ``batch_size`` and write one row per face / failed image, in file order."""
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
                writer.write({"path": str(path), "face": None, "box": None, "label": None,
                              "confidence": None, "status": a.status, "error": a.error,
                              "probabilities": None})
                continue
            for i, box in enumerate(a.boxes):
                writer.write({"path": str(path), "face": i, "box": list(box),
                              "label": labels[k], "confidence": float(conf[k]),
                              "status": OK, "error": "",
                              "probabilities": {c: float(p) for c, p in
                                                zip(predictor.classes, probs[k], strict=True)}})
                k += 1
                summary.faces += 1
        pending.clear()
        queued = 0

    disable = None if progress is None else not progress  # None: a bar only on a terminal
    with tqdm(total=len(files), desc="predict", unit="img", disable=disable,
              file=sys.stderr) as bar:
        for path, analysed in zip(files, _analysed(files, search, workers), strict=True):
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
