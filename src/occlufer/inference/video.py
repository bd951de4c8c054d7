"""``occlufer predict`` on video files: every N-th frame → one row per face, tracked and smoothed.

Frames are decoded by OpenCV's FFmpeg backend and searched as photos are; a file that cannot be
decoded, or stops early, ends in an ``error`` row and one line on stderr. Not supervision's
ByteTrack (removed after 0.30; it and ``trackers`` need opencv-python) nor norfair (numpy<2).
"""

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from occlufer.data.detectors import Box, greedy_matches, quiet_stderr
from occlufer.data.images import Reject
from occlufer.errors import OccluferError
from occlufer.inference import photos
from occlufer.inference.photos import OK, Analysed, FaceSearch, RowWriter, Summary, row
from occlufer.inference.predictor import Predictor

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
#: the columns a video row adds to a photo row (after ``path``)
VIDEO_COLUMNS = ("frame", "time_s", "track")
#: ``--smooth``: weight of the past in the moving average (0: off); 0.5 halves a one-frame
#: flicker and follows a lasting change within about three sampled frames
SMOOTH = 0.5
#: a face continues a track it overlaps by IoU ≥ 0.3; a track unseen for 5 sampled frames ends
TRACK_IOU, TRACK_MAX_MISSED = 0.3, 5
FRAMES_IN_MEMORY = 32  # with ``annotate``: decoded frames waiting for their labels, at most
#: the writer's codec by the annotated file's suffix (what OpenCV's FFmpeg build can encode)
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG",
          ".webm": "VP80"}
PALETTE = ((0, 200, 255), (255, 120, 0), (80, 220, 80), (200, 80, 255), (0, 80, 255),
           (255, 220, 0), (160, 160, 255), (255, 0, 160))  # box colours (BGR) by track id

Mark = tuple[Box, int, str, float]  # box, track, label, confidence


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class VideoReader:
    """A video file's frames, frame rate and frame count; opening raises ``Reject`` (why)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise Reject(f"unreadable: {exc.strerror or exc}") from None
        if not head:
            raise Reject("empty: 0 bytes")
        with quiet_stderr():  # FFmpeg logs why it failed on its own lines ("moov atom ...")
            self.cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            self.cap.release()
            raise Reject("unreadable: not a video OpenCV can decode (damaged, cut short, or "
                         "another kind of file)")
        fps, count = self.cap.get(cv2.CAP_PROP_FPS), self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.fps = float(fps) if np.isfinite(fps) and 0 < fps < 1000 else 0.0
        self.frame_count = int(count) if np.isfinite(count) and count > 0 else 0
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.decoded = 0

    def time_s(self, index: int) -> float | None:
        """Seconds from the start of frame ``index`` (None when the file has no frame rate)."""
        return round(index / self.fps, 3) if self.fps else None

    def frames(self, every: int = 1, all_frames: bool = False,
               ) -> Iterator[tuple[int, np.ndarray | None, bool]]:
        """(index, BGR image, sampled) per frame; unsampled: image None unless ``all_frames``."""
        while True:
            index = self.decoded
            sampled = index % every == 0
            with quiet_stderr():  # FFmpeg logs each damaged packet
                ok, image = self.cap.read() if sampled or all_frames else (self.cap.grab(), None)
            if not ok:
                return
            self.decoded += 1
            yield index, image, sampled

    def stopped_early(self) -> str | None:
        """Why decoding ended before the declared frame count (±1%, ≥ 2 frames), or None."""
        if self.decoded == 0:
            return "unreadable: no frame could be decoded"
        if self.frame_count and self.decoded + max(2, self.frame_count // 100) < self.frame_count:
            return (f"truncated: decoding stopped after {self.decoded} of {self.frame_count} "
                    "frames (the file is cut short or damaged)")
        return None

    def close(self) -> None:
        self.cap.release()


analyse_frame = photos.analyse  # a decoded BGR frame → face crops


class IouTracker:
    """Greedy IoU tracking: boxes continue the live tracks they overlap most (IoU ≥
    ``threshold``, best pairs first), the others start new tracks (ids 0, 1, ...)."""

    def __init__(self, threshold: float = TRACK_IOU, max_missed: int = TRACK_MAX_MISSED) -> None:
        self.threshold, self.max_missed = threshold, max_missed
        self.live: dict[int, tuple[Box, int]] = {}  # id → (last box, sampled frames missed)
        self.next_id = 0

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Track ids of one sampled frame's ``boxes`` (no boxes: every track missed it)."""
        tids = sorted(self.live)
        corners = [[(x, y, x + w, y + h) for x, y, w, h in bs]
                   for bs in ([self.live[t][0] for t in tids], boxes)]
        ids: list[int | None] = [None] * len(boxes)
        for i, j in greedy_matches(*corners, self.threshold):
            ids[j] = tids[i]
        for j, tid in enumerate(ids):
            if tid is None:
                ids[j], self.next_id = self.next_id, self.next_id + 1
        live = {tid: (box, missed + 1) for tid, (box, missed) in self.live.items()
                if tid not in ids and missed < self.max_missed}
        live.update({tid: (tuple(b), 0) for tid, b in zip(ids, boxes, strict=True)})  # type: ignore[misc]
        self.live = live
        return ids  # type: ignore[return-value]


class Smoother:
    """Per track, ``s_t = alpha · s_(t-1) + (1 - alpha) · p_t`` (first frame: ``p_0``)."""

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


class Annotator:
    """Writes frames with their faces drawn (an OpenCV ``VideoWriter`` sized by the first)."""

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


def _row(path: Path, frame: int | None, time_s: float | None, **rest: Any) -> dict[str, Any]:
    return row(path, {"frame": frame, "time_s": time_s, "track": None}, **rest)


def predict_video(predictor: Predictor, path: str | Path, writer: RowWriter, *,
                  search: FaceSearch, every: int = 1, smooth: float = SMOOTH,
                  annotate: str | Path | None = None, batch_size: int = 256,
                  progress: bool | None = None,
                  min_size: int = photos.CROP_MIN_SIZE) -> Summary:
    """Rows (``writer`` made with ``extra=VIDEO_COLUMNS``) of every ``every``-th frame: one per
    face (tracked, smoothed by ``smooth``) or frame without one; ``annotate``: a drawn copy."""
    from tqdm import tqdm

    path = Path(path)
    summary = Summary(videos=1)
    start = time.perf_counter()
    smoother = Smoother(smooth)

    def problem(bad: dict[str, Any]) -> None:
        writer.write(bad)
        summary.errors += 1
        print(f"predict: {path}: {bad['error']}", file=sys.stderr, flush=True)

    try:
        reader = VideoReader(path)
    except Reject as exc:
        problem(_row(path, None, None, error=str(exc)))
        summary.seconds = time.perf_counter() - start
        return summary
    tracker = IouTracker()
    drawer = Annotator(annotate, reader.fps) if annotate is not None else None
    disable = None if progress is None else not progress  # None: a bar only on a terminal
    frames = tqdm(reader.frames(every, all_frames=drawer is not None), desc=path.name,
                  total=reader.frame_count or None, unit="frame", disable=disable, file=sys.stderr)

    def sampled() -> Iterator[tuple[tuple[int, list[int], np.ndarray | None], Analysed | None]]:
        """((index, tracks, image to draw), analysed; None for a frame between two samples)."""
        for index, image, is_sampled in frames:
            if is_sampled:
                found = photos.min_size_rule(analyse_frame(image, search), search, min_size)
                tracks = tracker.update(found.boxes if found.status == OK else [])
                yield (index, tracks, image if drawer is not None else None), found
            elif drawer is not None:  # drawn with the last sampled frame's faces
                yield (index, [], image), None

    limit = FRAMES_IN_MEMORY if drawer is not None else 4 * batch_size
    held: list[Mark] = []  # what the annotated frames between two samples show
    try:
        with closing(reader):
            for (index, tracks, image), a, probs in photos.classified(predictor, sampled(),
                                                                       batch_size, limit):
                if a is not None:
                    held = []
                    summary.frames += 1
                    at = (path, index, reader.time_s(index))
                    if a.status != OK:
                        summary.failed(a.status)
                        writer.write(_row(*at, status=a.status, error=a.error))
                    for i, (track, p) in enumerate(zip(tracks, probs, strict=True)):
                        face = a.face(i, smoother(track, p.astype(np.float64)), predictor.classes)
                        writer.write(_row(*at, track=track, **face))
                        held.append((a.boxes[i], track, face["label"], face["confidence"]))
                    summary.faces += len(probs)
                if drawer is not None and image is not None:
                    drawer.write(image, held)
        summary.decoded = reader.decoded
        summary.tracks = tracker.next_id
        stopped = reader.stopped_early()
    finally:
        if drawer is not None:
            drawer.close()
            summary.annotated = drawer.frames
    if stopped:
        n = reader.decoded or None
        problem(_row(path, n, reader.time_s(n) if n else None, error=stopped))
    summary.seconds = time.perf_counter() - start
    return summary


def predict_videos(predictor: Predictor, files: Sequence[Path], writer: RowWriter, *,
                   annotate: str | Path | None = None, **options: Any) -> Summary:
    """:func:`predict_video` (keyword ``options``) of each file (``annotate``: one file only)."""
    if annotate is not None and len(files) != 1:
        raise OccluferError(f"--annotate writes one video; {len(files)} videos given")
    total = Summary()
    for path in files:
        total.add(predict_video(predictor, path, writer, annotate=annotate, **options))
    return total
