"""What the dataset readers share: the result, the collector that streams kept faces into the
store (deduped by pixel hash), split names, the keypoint columns and :class:`AcquireError`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from occlufer.data.detectors import KEYPOINTS
from occlufer.data.store import StoreWriter, keypoint_columns
from occlufer.errors import OccluferError

if TYPE_CHECKING:  # the schema: config sits above data (it checks acquire.detector by name)
    from occlufer.config import AcquireCfg

SPLITS = {"train": "train", "training": "train",
          "val": "val", "valid": "val", "validation": "val", "publictest": "val", "dev": "val",
          "test": "test", "testing": "test", "privatetest": "test"}
# reject codes that are deliberate choices, not bad data: not counted by max_reject_fraction
EXCLUDED = frozenset({"not_selected", "unknown_label", "not_image"})
#: manifest columns of the detector's keypoints in the crop (``kp_left_eye_x``, ...)
KEYPOINT_COLUMNS = keypoint_columns(KEYPOINTS)


def no_keypoints(n: int) -> dict[str, np.ndarray]:
    """The keypoint columns of ``n`` rows without keypoints (all null)."""
    return {c: np.full(n, np.nan, dtype=np.float32) for c in KEYPOINT_COLUMNS}


class AcquireError(OccluferError):
    """The dataset cannot be read as configured (one line: what, where, how to fix)."""


def normalise_split(name: str) -> str | None:
    """train / val / test for a dataset's split name (folder or Usage value), else None."""
    return SPLITS.get(name.strip().lower().replace("_", "").replace("-", ""))


@dataclass
class Acquired:
    """What a reader produced: the manifest of ``out`` and every input it could not use."""

    manifest: pd.DataFrame
    rejects: list[tuple[str, str]]
    read: int
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return self.read - len(self.rejects)


class Collector:
    """Appends kept faces to the store in input order; dedupes by pixel hash; counts."""

    def __init__(self, out: Path, cfg: AcquireCfg) -> None:
        self.writer = StoreWriter(out, (cfg.image_size, cfg.image_size))
        self.cfg = cfg
        self.rows: list[tuple] = []  # id, label, group, path, split, box, keypoint values
        self.rejects: list[tuple[str, str]] = []
        self.seen: dict[bytes, tuple[str, str]] = {}
        self.read = 0
        self._buffer: list[np.ndarray] = []

    def reject(self, path: str, reason: str) -> None:
        self.read += 1
        self.rejects.append((path, reason))

    def add(self, path: str, digest: bytes, images: Sequence[np.ndarray], *, ident: str,
            label: str, group: str, split: str, boxes: Sequence[str] = ("",),
            points: Sequence[np.ndarray | None] = (None,)) -> None:
        self.read += 1
        first = self.seen.get(digest)
        if first is not None:
            if self.cfg.dedupe:
                self.rejects.append((path, f"duplicate: same pixels as {first[0]}"))
                return
            group = first[1]  # kept, but on the same side of every split as its twin
        else:
            self.seen[digest] = (path, group)
        n_kp = len(KEYPOINT_COLUMNS)
        for k, (image, box, kp) in enumerate(zip(images, boxes, points, strict=True)):
            kp = (np.asarray(kp, np.float32).reshape(-1) if kp is not None and np.size(kp) == n_kp
                  else np.full(n_kp, np.nan, np.float32))
            self.rows.append((ident if len(images) == 1 else f"{ident}#{k}", label, group, path,
                              split, box, kp))
            self._buffer.append(image)
        if len(self._buffer) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self.writer.append(np.stack(self._buffer))
            self._buffer = []

    def finish(self, notes: dict[str, int]) -> Acquired:
        self._flush()
        columns = [list(c) for c in zip(*self.rows, strict=True)] or [[]] * 7
        ids, labels, groups, paths, splits, boxes, points = columns
        points = np.array(points, dtype=np.float32).reshape(-1, len(KEYPOINT_COLUMNS))
        manifest = pd.DataFrame({
            "id": ids, "label": pd.Categorical(labels, categories=list(self.cfg.classes)),
            "group": groups, "source": self.cfg.source, "source_path": paths,
            "source_split": splits, **({"face_box": boxes} if self.cfg.source == "photos" else {}),
            **dict(zip(KEYPOINT_COLUMNS, points.T, strict=True))})
        self.writer.close(manifest)
        return Acquired(manifest, self.rejects, self.read, notes)


def pixel_digest(gray: np.ndarray) -> bytes:
    """16-byte BLAKE2b of the shape and pixels (the dedupe key)."""
    shape = np.asarray(gray.shape, dtype=np.int64).tobytes()
    return hashlib.blake2b(shape + np.ascontiguousarray(gray).tobytes(), digest_size=16).digest()


def existing_path(value: str | None, key: str, want_dir: bool) -> Path:
    """``acquire.<key>`` as an existing folder / file, else a one-line error naming it."""
    kind = "folder" if want_dir else "file"
    if value is None:
        raise AcquireError(f"`acquire.{key}` is not set; run with -S acquire.{key}=/abs/path")
    path = Path(value).expanduser()
    if not (path.is_dir() if want_dir else path.is_file()):
        what = "is not a " + kind if path.exists() else "does not exist"
        raise AcquireError(f"`acquire.{key}` = {value!r} {what} (from {Path.cwd()}); "
                           f"set -S acquire.{key}=<absolute path of the dataset {kind}>")
    return path
