"""``occlufer predict`` on video files: every N-th frame → one row per face, tracked and smoothed.

A video (recognised by its suffix, :data:`VIDEO_EXTENSIONS`) is decoded by OpenCV's FFmpeg
backend. Every ``every``-th frame is searched for faces exactly as a photo is (the same
:class:`~occlufer.inference.photos.FaceSearch`: detector, alignment, margin, smallest face), its
faces are classified in batches, and each face gets a ``track`` id from a greedy IoU tracker
(:class:`IouTracker`), so that one person is one id across frames. The probabilities written
are smoothed over time per track by an exponential moving average (:class:`Smoother`): single
frames flicker between neighbouring expressions, a person's expression changes slower than
that. Rows are those of photos plus ``frame`` (index in the file), ``time_s`` and ``track``;
a sampled frame without a face is a ``no_face`` row.

A file that cannot be opened as a video (damaged, cut short before its index, not a video) is
one ``error`` row and a one-line message on stderr; one whose decoding stops before the frame
count its header declares keeps the rows of the frames decoded and ends with an ``error`` row
(``truncated``). As for photos, such rows do not stop the run or change its exit code: the
summary counts them. FFmpeg's own log lines about damaged packets are silenced (they would
repeat per packet); the row says what happened.

``annotate``: the video re-written with every face's box, track id, label and confidence
drawn; every frame is kept (frames between two sampled ones show the last sampled boxes), at
the input's frame rate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from occlufer.data import faces as face_detection
from occlufer.data.detectors import greedy_matches, quiet_stderr
from occlufer.data.images import Reject
from occlufer.errors import OccluferError, first_line
from occlufer.inference.photos import (
    CROP_MIN_SIZE,
    ERROR,
    NO_DETAILS,
    NO_FACE,
    OK,
    TOO_SMALL,
    Analysed,
    FaceSearch,
    RowWriter,
    centre_face,
    min_size_rule,
    rejected,
)
from occlufer.inference.predictor import Predictor

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
#: the columns a video row adds to a photo row (after ``path``)
VIDEO_COLUMNS = ("frame", "time_s", "track")
#: ``--smooth``: weight of the past in the moving average (0: no smoothing). 0.5 halves a
#: one-frame flicker and follows a lasting change within about three sampled frames.
SMOOTH = 0.5
#: a face continues a track when its box overlaps the track's last box by at least this IoU;
#: a track not seen for more than TRACK_MAX_MISSED sampled frames ends (a face seen again
#: later starts a new one)
TRACK_IOU = 0.3
TRACK_MAX_MISSED = 5
#: with ``annotate``, decoded frames wait in memory for their faces' labels: at most this many
FRAMES_IN_MEMORY = 32
#: the writer's codec by the annotated file's suffix (what OpenCV's FFmpeg build can encode)
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG",
          ".webm": "VP80"}
#: box colours (BGR) by track id
PALETTE = ((0, 200, 255), (255, 120, 0), (80, 220, 80), (200, 80, 255), (0, 80, 255),
           (255, 220, 0), (160, 160, 255), (255, 0, 160))

Box = tuple[int, int, int, int]


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class Unreadable(Exception):  # noqa: N818 (a verdict on a file, like images.Reject)
    """The file cannot be used as a video; ``str(exc)`` is the row's ``error``."""


class VideoReader:
    """Frames of a video file, with its frame rate and declared frame count.

    Opening raises :class:`Unreadable`. After iterating :meth:`frames`, :meth:`stopped_early`
    says whether decoding ended before the declared frame count (a file cut short or damaged).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise Unreadable(f"unreadable: {exc.strerror or exc}") from None
        if not head:
            raise Unreadable("empty: 0 bytes")
        with quiet_stderr():  # FFmpeg logs why it failed on its own lines ("moov atom ...")
            self.cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            self.cap.release()
            raise Unreadable("unreadable: not a video OpenCV can decode (damaged, cut short, or "
                             "another kind of file)")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if np.isfinite(fps) and 0 < fps < 1000 else 0.0
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if np.isfinite(count) and count > 0 else 0
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.decoded = 0

    def time_s(self, index: int) -> float | None:
        """Seconds from the start of frame ``index`` (None when the file has no frame rate)."""
        return round(index / self.fps, 3) if self.fps else None

    def frames(self, every: int = 1, all_frames: bool = False,
               ) -> Iterator[tuple[int, np.ndarray | None, bool]]:
        """(index, BGR image, sampled) for each frame; frames between samples are skipped
        without conversion (image None) unless ``all_frames``."""
        while True:
            index = self.decoded
            sampled = index % every == 0
            with quiet_stderr():  # FFmpeg logs each damaged packet
                if sampled or all_frames:
                    ok, image = self.cap.read()
                else:
                    ok, image = self.cap.grab(), None
            if not ok:
                return
            self.decoded += 1
            yield index, image, sampled

    def stopped_early(self) -> str | None:
        """Why decoding ended before the frames the header declares, or None. Containers that
        only estimate their frame count (from duration × rate) may be off by a frame or two:
        that is no error."""
        if self.decoded == 0:
            return "unreadable: no frame could be decoded"
        if self.frame_count and self.decoded + max(2, self.frame_count // 100) < self.frame_count:
            return (f"truncated: decoding stopped after {self.decoded} of {self.frame_count} "
                    "frames (the file is cut short or damaged)")
        return None

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def analyse_frame(bgr: np.ndarray, search: FaceSearch) -> Analysed:
    """A decoded frame → face crops, as :func:`~occlufer.inference.photos.analyse` does for a
    photo file (boxes in the frame's pixels); never raises for bad input."""
    size = search.size
    empty = np.zeros((0, size, size), np.uint8)
    try:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if search.detect:
            found = face_detection.face_crops(
                gray, size=size, policy="all", margin=search.margin, min_face=search.min_face,
                detector=search.detector, image=None if search.detector == "haar" else bgr)
            return Analysed(np.stack([c.image for c in found]),
                            [tuple(int(v) for v in c.box) for c in found],  # type: ignore[misc]
                            scores=[round(c.face.score, 4) for c in found],
                            keypoints=[c.face.keypoints for c in found],
                            transforms=[c.transform for c in found])
        return centre_face(gray, size, *gray.shape)
    except OccluferError:  # the detector cannot run (not installed): stop with one line
        raise
    except Reject as exc:
        return rejected(exc, size)
    except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the run
        return Analysed(empty, [], ERROR, f"failed: {type(exc).__name__}: {first_line(exc)}")


def _corners(box: Box) -> tuple[int, int, int, int]:
    """(x, y, w, h) → (x1, y1, x2, y2)."""
    x, y, w, h = box
    return x, y, x + w, y + h


class IouTracker:
    """Greedy IoU tracking: each frame's boxes continue the live tracks they overlap most
    (best pairs first, each track and box used once, IoU ≥ ``threshold``); the others start
    new tracks (ids 0, 1, ...). Enough for faces that move a little between sampled frames;
    faces that cross or vanish for long get new ids."""

    def __init__(self, threshold: float = TRACK_IOU, max_missed: int = TRACK_MAX_MISSED) -> None:
        self.threshold, self.max_missed = threshold, max_missed
        self.live: dict[int, tuple[Box, int]] = {}  # id → (last box, sampled frames missed)
        self.next_id = 0

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Track ids of one sampled frame's ``boxes`` (no boxes: every track missed it)."""
        tids = sorted(self.live)
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for i, j in greedy_matches([_corners(self.live[t][0]) for t in tids],
                                   [_corners(b) for b in boxes], self.threshold):
            ids[j] = tids[i]
            used.add(tids[i])
        for j, tid in enumerate(ids):
            if tid is None:
                ids[j], self.next_id = self.next_id, self.next_id + 1
        live = {tid: (box, missed + 1) for tid, (box, missed) in self.live.items()
                if tid not in used and missed < self.max_missed}
        live.update({tid: (tuple(b), 0) for tid, b in zip(ids, boxes, strict=True)})  # type: ignore[misc]
        self.live = live
        return ids  # type: ignore[return-value]


class Smoother:
    """Per track, ``s_t = alpha · s_(t-1) + (1 - alpha) · p_t`` over its sampled frames (the
    first frame of a track is its own probabilities); ``alpha`` 0 leaves them as they are."""

    def __init__(self, alpha: float = SMOOTH) -> None:
        if not 0 <= alpha < 1:
            raise OccluferError(f"smoothing {alpha} is not in [0, 1): 0 is off, 0.5 the "
                                "default, values near 1 follow changes slowly")
        self.alpha = alpha
        self.state: dict[int, np.ndarray] = {}

    def __call__(self, track: int, probs: np.ndarray) -> np.ndarray:
        prev = self.state.get(track)
        out = probs if prev is None else self.alpha * prev + (1 - self.alpha) * probs
        self.state[track] = out
        return out


def check_annotate(path: str | Path, inputs: Sequence[Path] = ()) -> Path:
    """An ``--annotate`` file OpenCV can write (by its suffix) that is none of the inputs."""
    out = Path(path)
    if out.suffix.lower() not in FOURCC:
        raise OccluferError(f"--annotate {out}: cannot write a {out.suffix or 'suffix-less'} "
                            f"video; use one of {', '.join(sorted(FOURCC))}")
    if any(out.resolve() == Path(p).resolve() for p in inputs):
        raise OccluferError(f"--annotate {out} is an input video; choose another file")
    return out


Mark = tuple[Box, int, str, float]  # box, track, label, confidence


class Annotator:
    """Writes frames with their faces drawn (OpenCV ``VideoWriter``, opened at the first
    frame, whose size it takes)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps = check_annotate(path), fps or 25.0
        self.writer: Any = None
        self.frames = 0

    def write(self, image: np.ndarray, marks: Sequence[Mark]) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = image.shape[:2]
            with quiet_stderr():  # FFmpeg notes codec tag fallbacks on stderr
                self.writer = cv2.VideoWriter(
                    str(self.path), cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()]),
                    self.fps, (w, h))
            if not self.writer.isOpened():
                raise OccluferError(f"--annotate {self.path}: OpenCV cannot write this video "
                                    "file (folder not writable?)")
        self.writer.write(draw(image, marks))
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def draw(image: np.ndarray, marks: Sequence[Mark]) -> np.ndarray:
    """``image`` with each face's box and ``<track> <label> <confidence>`` above it."""
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    scale = max(0.35, min(h, w) / 960)
    for (x, y, bw, bh), track, label, conf in marks:
        colour = PALETTE[track % len(PALETTE)]
        cv2.rectangle(out, (x, y), (x + bw, y + bh), colour, thick)
        text = f"{track} {label} {conf:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        top = y - th - base - 2 if y - th - base - 2 >= 0 else y + bh  # above, else below
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 2), colour, cv2.FILLED)
        cv2.putText(out, text, (x + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), thick, cv2.LINE_AA)
    return out


@dataclass
class VideoSummary:
    videos: int = 0
    frames: int = 0       # sampled frames analysed
    decoded: int = 0      # frames decoded, sampled or not
    faces: int = 0
    tracks: int = 0
    no_face: int = 0      # sampled frames without a face
    too_small: int = 0
    errors: int = 0       # unreadable / truncated videos, frames that failed
    annotated: int = 0    # frames written to the annotated video
    seconds: float = 0.0  # wall time of the videos, for frames/s
    problems: list[str] = field(default_factory=list)  # the one-line messages printed

    def line(self) -> str:
        small = f", {self.too_small} too small" if self.too_small else ""
        return (f"{self.videos} videos, {self.frames} frames analysed of {self.decoded}, "
                f"{self.faces} faces in {self.tracks} tracks, {self.errors} errors "
                f"({self.no_face} frames without a face{small})")

    def add(self, other: VideoSummary) -> None:
        for name in ("videos", "frames", "decoded", "faces", "tracks", "no_face", "too_small",
                     "errors", "annotated", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems


@dataclass
class _Pending:
    """A decoded frame waiting for its faces' probabilities: sampled (``found`` set, with
    ``tracks``) or, for the annotated video only, one in between (``found`` None)."""

    index: int
    time_s: float | None
    found: Analysed | None
    tracks: list[int]
    image: np.ndarray | None


def _row(path: Path, frame: int | None, time_s: float | None, **rest: Any) -> dict[str, Any]:
    base = {"path": str(path), "frame": frame, "time_s": time_s, "track": None, "face": None,
            "box": None, "label": None, "confidence": None, "status": ERROR, "error": "",
            "probabilities": None, **NO_DETAILS}
    return {**base, **rest}


def predict_video(predictor: Predictor, path: str | Path, writer: RowWriter, *,
                  search: FaceSearch, every: int = 1, smooth: float = SMOOTH,
                  annotate: str | Path | None = None, batch_size: int = 256,
                  progress: bool | None = None, min_size: int = CROP_MIN_SIZE) -> VideoSummary:
    """Rows (through ``writer``, made with ``extra=VIDEO_COLUMNS``) for every ``every``-th
    frame of the video at ``path``: one per face (track id, probabilities smoothed per track
    by ``smooth``) or per frame without one; an unreadable or truncated file is an ``error``
    row and a line on stderr. ``annotate``: also write the video with the faces drawn."""
    from tqdm import tqdm

    path = Path(path)
    summary = VideoSummary(videos=1)
    start = time.perf_counter()
    smoother = Smoother(smooth)

    def problem(row: dict[str, Any]) -> None:
        writer.write(row)
        summary.errors += 1
        line = f"predict: {path}: {row['error']}"
        summary.problems.append(line)
        print(line, file=sys.stderr, flush=True)

    try:
        reader = VideoReader(path)
    except Unreadable as exc:
        problem(_row(path, None, None, error=str(exc)))
        summary.seconds = time.perf_counter() - start
        return summary
    tracker = IouTracker()
    drawer = Annotator(annotate, reader.fps) if annotate is not None else None
    pending: list[_Pending] = []
    queued = 0
    held: list[Mark] = []  # what the annotated frames between two samples show

    def flush() -> None:
        nonlocal queued, held
        crops = [p.found.crops for p in pending if p.found is not None and len(p.found.crops)]
        probs = predictor.predict_proba(np.concatenate(crops), batch_size) if crops else None
        k = 0
        for p in pending:
            a = p.found
            if a is not None:
                held = []
                summary.frames += 1
                if a.status != OK:
                    summary.no_face += a.status == NO_FACE
                    summary.too_small += a.status == TOO_SMALL
                    summary.errors += a.status == ERROR
                    writer.write(_row(path, p.index, p.time_s, status=a.status, error=a.error))
                for i, (box, track) in enumerate(zip(a.boxes, p.tracks, strict=True)):
                    assert probs is not None
                    smoothed = smoother(track, probs[k].astype(np.float64))
                    top = int(smoothed.argmax())
                    label, conf = predictor.classes[top], float(smoothed[top])
                    writer.write(_row(path, p.index, p.time_s, track=track, face=i,
                                      box=list(box), label=label, confidence=conf, status=OK,
                                      probabilities={c: float(v) for c, v in
                                                     zip(predictor.classes, smoothed,
                                                         strict=True)},
                                      **a.details(i)))
                    held.append((box, track, label, conf))
                    k += 1
                    summary.faces += 1
            if drawer is not None and p.image is not None:
                drawer.write(p.image, held)
        pending.clear()
        queued = 0

    limit = FRAMES_IN_MEMORY if drawer is not None else 4 * batch_size
    disable = None if progress is None else not progress  # None: a bar only on a terminal
    try:
        with reader, tqdm(total=reader.frame_count or None, desc=path.name, unit="frame",
                          disable=disable, file=sys.stderr) as bar:
            for index, image, sampled in reader.frames(every, all_frames=drawer is not None):
                if sampled:
                    assert image is not None
                    found = min_size_rule(analyse_frame(image, search), search, min_size)
                    tracks = tracker.update(found.boxes if found.status == OK else [])
                    pending.append(_Pending(index, reader.time_s(index), found, tracks,
                                            image if drawer is not None else None))
                    queued += len(found.crops)
                elif drawer is not None:  # drawn with the last sampled frame's faces
                    pending.append(_Pending(index, None, None, [], image))
                if queued >= batch_size or len(pending) >= limit:
                    flush()
                bar.update(1)
            flush()
        summary.decoded = reader.decoded
        summary.tracks = tracker.next_id
        stopped = reader.stopped_early()
    finally:
        if drawer is not None:
            drawer.close()
            summary.annotated = drawer.frames
    if stopped:
        problem(_row(path, reader.decoded if reader.decoded else None,
                     reader.time_s(reader.decoded) if reader.decoded else None, error=stopped))
    summary.seconds = time.perf_counter() - start
    return summary


def predict_videos(predictor: Predictor, files: Sequence[Path], writer: RowWriter, *,
                   search: FaceSearch, every: int = 1, smooth: float = SMOOTH,
                   annotate: str | Path | None = None, batch_size: int = 256,
                   progress: bool | None = None, min_size: int = CROP_MIN_SIZE) -> VideoSummary:
    """:func:`predict_video` for each file in turn (``annotate``: one file only)."""
    if annotate is not None and len(files) != 1:
        raise OccluferError(f"--annotate writes one video; {len(files)} videos given")
    total = VideoSummary()
    for path in files:
        total.add(predict_video(predictor, path, writer, search=search, every=every,
                                smooth=smooth, annotate=annotate, batch_size=batch_size,
                                progress=progress, min_size=min_size))
    return total
