"""Dataset readers for S100: image folders, photos (face detection) and the FER2013 CSV.

Every reader streams its faces into a :class:`~occlufer.data.store.StoreWriter` in input order
(sorted paths, CSV rows) and accounts for every input: it is a manifest row, or a reject with its
path and a reason ``"<code>: <detail>"``. Decoding rules live in :mod:`occlufer.data.images`,
face detection in :mod:`occlufer.data.faces`, label names in :mod:`occlufer.labels`.

Layouts (``acquire.path``):

- ``image_folder`` / ``photos``: ``root/<class>/**/<image>`` or ``root/<split>/<class>/**/<image>``
  where every top-level folder is a split name (train, val, test and spellings such as
  ``Training``, ``PublicTest``, ``validation``). Hidden entries (``.name``) are skipped.
- ``fer2013_csv``: ``emotion,pixels[,Usage]`` with 48×48 space-separated pixels, optionally
  relabelled by a FER+ vote CSV (``acquire.labels_path``) joined row by row.

Every manifest has the keypoint columns :data:`KEYPOINT_COLUMNS` (where the face detector put
its keypoints in the saved crop, fractions of the side): filled for photos whose detector gives
keypoints (BlazeFace), null for every other row.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from occlufer.data import faces as face_detection
from occlufer.data.detectors import KEYPOINTS
from occlufer.data.images import EXTENSIONS, Reject, center_square, load_gray, resize
from occlufer.data.store import StoreWriter, keypoint_columns
from occlufer.errors import OccluferError, ignore_interrupt
from occlufer.labels import FER2013_CODES, LABELS, canonical

if TYPE_CHECKING:  # the schema: config sits above data (it checks acquire.detector by name)
    from occlufer.config import AcquireCfg

SPLITS = {"train": "train", "training": "train",
          "val": "val", "valid": "val", "validation": "val", "publictest": "val", "dev": "val",
          "test": "test", "testing": "test", "privatetest": "test"}
# reject codes that are deliberate choices, not bad data: not counted by max_reject_fraction
EXCLUDED = frozenset({"not_selected", "unknown_label", "not_image"})
CHUNK = 512        # inputs per worker task
FER_SIDE = 48
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


class _Collector:
    """Appends kept faces to the store in input order; dedupes by pixel hash; counts."""

    def __init__(self, out: Path, cfg: AcquireCfg) -> None:
        self.writer = StoreWriter(out, (cfg.image_size, cfg.image_size))
        self.cfg = cfg
        self.cols: dict[str, list] = {k: [] for k in ("id", "label", "group", "source_path",
                                                      "source_split", "face_box")}
        self.points: list[np.ndarray] = []  # per row: the keypoint columns' values
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
        for k, (image, box, kp) in enumerate(zip(images, boxes, points, strict=True)):
            self.cols["id"].append(ident if len(images) == 1 else f"{ident}#{k}")
            self.cols["label"].append(label)
            self.cols["group"].append(group)
            self.cols["source_path"].append(path)
            self.cols["source_split"].append(split)
            self.cols["face_box"].append(box)
            self.points.append(np.asarray(kp, np.float32).reshape(-1)
                               if kp is not None and np.size(kp) == len(KEYPOINT_COLUMNS)
                               else np.full(len(KEYPOINT_COLUMNS), np.nan, np.float32))
            self._buffer.append(image)
        if len(self._buffer) >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self.writer.append(np.stack(self._buffer))
            self._buffer = []

    def finish(self, notes: dict[str, int]) -> Acquired:
        self._flush()
        cols = dict(self.cols)
        if self.cfg.source != "photos":
            cols.pop("face_box")
        manifest = pd.DataFrame(cols)
        manifest.insert(2, "source", self.cfg.source)
        manifest["label"] = pd.Categorical(manifest["label"], categories=list(self.cfg.classes))
        manifest = manifest[["id", "label", "group", "source", "source_path", "source_split",
                             *(["face_box"] if "face_box" in cols else [])]]
        points = np.array(self.points, dtype=np.float32).reshape(-1, len(KEYPOINT_COLUMNS))
        manifest = manifest.assign(**dict(zip(KEYPOINT_COLUMNS, points.T, strict=True)))
        self.writer.close(manifest)
        return Acquired(manifest, self.rejects, self.read, notes)


def _digest(gray: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(gray.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(gray).tobytes())
    return h.digest()


def _workers(cfg: AcquireCfg) -> int:
    if cfg.workers:
        return cfg.workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def existing_path(value: str | None, key: str, want_dir: bool) -> Path:
    """``acquire.<key>`` as an existing folder / file, else a one-line error naming it."""
    kind = "folder" if want_dir else "file"
    if value is None:
        raise AcquireError(f"`acquire.{key}` is not set; run with -S acquire.{key}=/abs/path")
    path = Path(value).expanduser()
    ok = path.is_dir() if want_dir else path.is_file()
    if not ok:
        what = "is not a " + kind if path.exists() else "does not exist"
        raise AcquireError(f"`acquire.{key}` = {value!r} {what} (from {Path.cwd()}); "
                           f"set -S acquire.{key}=<absolute path of the dataset {kind}>")
    return path


# --------------------------------------------------------------------------- image folders

@dataclass(frozen=True)
class _Item:
    path: str     # absolute
    rel: str      # relative to acquire.path, posix
    label: str
    split: str
    group: str


def _visible(entries: Iterator[os.DirEntry], hidden: Counter) -> list[os.DirEntry]:
    out = []
    for e in entries:
        if e.name.startswith("."):
            hidden["hidden_skipped"] += 1
        else:
            out.append(e)
    return sorted(out, key=lambda e: e.name)


def _files_under(folder: str, hidden: Counter) -> list[str]:
    """Every non-hidden file below ``folder`` (recursive, sorted)."""
    files, stack = [], [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            entries = _visible(it, hidden)
        stack.extend(sorted((e.path for e in entries if e.is_dir()), reverse=True))
        files.extend(e.path for e in entries if not e.is_dir())
    return files


def scan_folder(root: Path, cfg: AcquireCfg, collector: _Collector) -> tuple[list[_Item],
                                                                           dict[str, int]]:
    """Inputs of an image folder; rejects what cannot be an input (wrong level, extension)."""
    notes: Counter = Counter()
    with os.scandir(root) as it:
        top = _visible(it, notes)
    top_dirs = [e for e in top if e.is_dir()]
    split_layout = bool(top_dirs) and all(normalise_split(e.name) for e in top_dirs)
    splits = [(normalise_split(e.name), e) for e in top_dirs] if split_layout else [("", None)]
    class_dirs: list[tuple[str, os.DirEntry]] = []
    loose: list[str] = [e.path for e in top if not e.is_dir()]
    for split, entry in splits:
        if entry is None:
            level = top
        else:
            with os.scandir(entry.path) as it:
                level = _visible(it, notes)
            loose += [e.path for e in level if not e.is_dir()]
        class_dirs += [(split, e) for e in level if e.is_dir()]
    unknown = sorted({e.name for _, e in class_dirs if canonical(e.name) is None})
    if unknown and cfg.unknown_labels == "error":
        raise AcquireError(
            f"{root}: unknown class folder(s) {unknown}; rename them to a label "
            f"({', '.join(LABELS)}) or a known alias, or set acquire.unknown_labels=drop")
    group_re = re.compile(cfg.group_regex) if cfg.group_regex else None
    items: list[_Item] = []
    per_folder: Counter = Counter()
    for split, entry in class_dirs:
        label = canonical(entry.name)
        for path in _files_under(entry.path, notes):
            rel = Path(path).relative_to(root).as_posix()
            per_folder[label] += 1
            if Path(path).suffix.lower() not in EXTENSIONS:
                collector.reject(rel, f"not_image: extension {Path(path).suffix!r} is not one "
                                      f"of {', '.join(sorted(EXTENSIONS))}")
            elif label is None:
                collector.reject(rel, f"unknown_label: class folder {entry.name!r} "
                                      "(acquire.unknown_labels = drop)")
            elif label not in cfg.classes:
                collector.reject(rel, f"not_selected: class {label!r} is not in acquire.classes")
            else:
                m = group_re.search(Path(path).name) if group_re else None
                group = (m.group(1) if m.groups() else m.group(0)) if m else rel
                items.append(_Item(path, rel, label, split, group))
    for path in loose:
        collector.reject(Path(path).relative_to(root).as_posix(),
                         "layout: not inside a class folder (root/<class>/... or "
                         "root/<split>/<class>/...)")
    # a class folder that exists but holds no file (a class without any folder is no note:
    # the stage warns about every class left without images)
    present = {canonical(e.name) for _, e in class_dirs}
    notes.update({f"empty_class_folder/{lab}": 1 for lab in cfg.classes
                  if lab in present and per_folder[lab] == 0})
    return items, dict(notes)


@dataclass(frozen=True)
class _Spec:
    size: int
    min_size: int
    photos: bool
    faces: str
    margin: float
    min_face: int
    detector: str


def _decode(spec: _Spec, path: str,
            ) -> tuple[bytes, list[np.ndarray], list[str], list[np.ndarray | None]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise Reject(f"unreadable: {exc.strerror or exc}") from None
    if not spec.photos:
        gray = load_gray(data, min_size=spec.min_size, draft_side=spec.size)
        return _digest(gray), [center_square(gray, spec.size)], [""], [None]
    gray, _, crops = face_detection.photo_faces(data, size=spec.size, policy=spec.faces,
                                                margin=spec.margin, min_face=spec.min_face,
                                                min_size=spec.min_size, detector=spec.detector)
    return (_digest(gray), [c.image for c in crops],
            [",".join(map(str, c.box)) for c in crops], [c.crop_keypoints for c in crops])


def _decode_chunk(args: tuple[_Spec, list[str]]) -> list[tuple[bytes, list, list, list] | str]:
    spec, paths = args
    out: list = []
    for path in paths:
        try:
            out.append(_decode(spec, path))
        except Reject as exc:
            out.append(str(exc))
    return out


def _map_chunks(spec: _Spec, paths: list[str], workers: int) -> Iterator[list]:
    chunks = [(spec, paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        yield from map(_decode_chunk, chunks)
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    # workers ignore Ctrl-C; on KeyboardInterrupt in the parent, leaving `with` terminates them
    with ctx.Pool(min(workers, len(chunks)), initializer=ignore_interrupt) as pool:
        yield from pool.imap(_decode_chunk, chunks)


def read_image_folder(cfg: AcquireCfg, out: Path) -> Acquired:
    """``image_folder`` and ``photos``: decode (and detect faces) with a process pool."""
    root = existing_path(cfg.path, "path", want_dir=True)
    collector = _Collector(out, cfg)
    items, notes = scan_folder(root, cfg, collector)
    photos = cfg.source == "photos"
    spec = _Spec(cfg.image_size, cfg.min_size, photos, cfg.faces or "largest",
                 cfg.face_margin or 0.0, cfg.face_min_size or 0, cfg.detector or "haar")
    done = 0
    with tqdm(total=len(items), desc=f"acquire {cfg.source}", disable=None) as bar:
        for results in _map_chunks(spec, [it.path for it in items], _workers(cfg)):
            for item, result in zip(items[done:done + len(results)], results, strict=True):
                if isinstance(result, str):
                    collector.reject(item.rel, result)
                    continue
                digest, images, boxes, points = result
                collector.add(item.rel, digest, images, ident=item.rel, label=item.label,
                              group=item.group, split=item.split, boxes=boxes, points=points)
            done += len(results)
            bar.update(len(results))
    acquired = collector.finish(notes)
    if photos:
        acquired.notes["faces"] = len(acquired.manifest)
    return acquired


# --------------------------------------------------------------------------- FER2013 CSV

def _ferplus_labels(path: Path) -> list[str | tuple[str]]:
    """FER+ votes → per row the majority label, or a 1-tuple holding a reject reason."""
    try:
        votes = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise AcquireError(f"`acquire.labels_path` = {str(path)!r}: cannot read as CSV "
                           f"({str(exc).splitlines()[0]})") from None
    names = {c: canonical(str(c)) or str(c).strip().lower() for c in votes.columns}
    cols = [c for c, n in names.items() if n in LABELS or n in ("unknown", "nf")]
    if not any(names[c] in LABELS for c in cols):
        raise AcquireError(f"`acquire.labels_path` = {str(path)!r}: no vote columns named like "
                           f"labels ({', '.join(LABELS)}); expected a FER+ fer2013new.csv")
    counts = votes[cols].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(float)
    out: list[str | tuple[str]] = []
    top = counts.max(axis=1)
    for row, best in zip(counts, top, strict=True):
        winners = [names[cols[j]] for j in np.flatnonzero(row == best)]
        if best <= 0:
            out.append(("ferplus: no votes",))
        elif len(winners) > 1:
            out.append((f"ferplus: votes tied between {', '.join(winners)}",))
        elif winners[0] == "nf":
            out.append(("ferplus: majority says not a face (NF)",))
        elif winners[0] == "unknown":
            out.append(("ferplus: majority says unknown",))
        else:
            out.append(winners[0])
    return out


def _parse_pixel_rows(rows: list[str], n_pix: int) -> tuple[np.ndarray, np.ndarray]:
    """Space-separated decimal pixel rows → (ok mask, ok-rows × n_pix int16), vectorised.

    A row is ok when it holds exactly ``n_pix`` tokens of 1-3 digits; values above 255 are left
    for the caller to reject. No per-pixel Python: one pass of NumPy over the chunk's bytes.
    """
    n = len(rows)
    lens = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    buf = np.frombuffer(("\n".join(rows) + "\n").encode("ascii", "replace"), dtype=np.uint8)
    starts = np.r_[0, np.cumsum(lens + 1)[:-1]]
    digit = (buf >= 48) & (buf <= 57)
    space = buf == 32
    other = ~(digit | space) & (buf != 10)
    ok = (np.add.reduceat(space, starts, dtype=np.int32) == n_pix - 1) & (lens > 0)
    ok &= np.add.reduceat(other, starts, dtype=np.int32) == 0
    ends = np.flatnonzero(~digit)                      # one separator after every token
    tok_len = ends - np.r_[0, ends[:-1] + 1]
    odd = ends[(tok_len < 1) | (tok_len > 3)]          # empty or over-long tokens (rare)
    ok[np.searchsorted(starts, odd, side="right") - 1] = False
    sel = np.repeat(ok, np.add.reduceat(~digit, starts, dtype=np.int32))
    e, ln = ends[sel], tok_len[sel].astype(np.int16)
    d = buf.view(np.int8)                              # digits are < 128
    values = ((d[e - 1] - 48).astype(np.int16) + (ln >= 2) * 10 * (d[e - 2] - 48)
              + (ln >= 3) * 100 * (d[e - 3].astype(np.int16) - 48))
    return ok, values.reshape(-1, n_pix)


def _bad_pixels(text: str) -> str:
    """The reason a pixel row was not ok (slow path, rejected rows only)."""
    tokens = text.split(" ")
    if len(tokens) != FER_SIDE * FER_SIDE:
        return f"bad_row: {len(tokens)} pixels, expected {FER_SIDE * FER_SIDE} (48×48)"
    for t in tokens:
        if not (t.isascii() and t.isdigit()):
            return f"bad_row: non-numeric pixel value {t[:20]!r}"
    big = max(int(t) for t in tokens)
    if big > 255:
        return f"bad_row: pixel value {big} outside 0-255"
    return "bad_row: malformed pixel value (more than 3 digits)"


def read_fer2013_csv(cfg: AcquireCfg, out: Path) -> Acquired:
    """``fer2013_csv``: chunked ``read_csv``, pixels parsed by NumPy a chunk at a time."""
    path = existing_path(cfg.path, "path", want_dir=False)
    fer_plus = (_ferplus_labels(existing_path(cfg.labels_path, "labels_path", want_dir=False))
                if cfg.labels_path else None)
    collector = _Collector(out, cfg)
    name, n_pix, row0 = path.name, FER_SIDE * FER_SIDE, 0
    try:
        chunks = pd.read_csv(path, dtype=object, keep_default_na=False, chunksize=1024)
        for chunk in tqdm(chunks, desc="acquire fer2013_csv", disable=None):
            chunk.columns = [str(c).strip().lower() for c in chunk.columns]
            missing = {"emotion", "pixels"} - set(chunk.columns)
            if missing:
                raise AcquireError(f"{path}: missing column(s) {sorted(missing)}; expected the "
                                   "FER2013 header emotion,pixels,Usage")
            pixels = [str(v).strip() for v in chunk["pixels"]]
            good, values = _parse_pixel_rows(pixels, n_pix)
            parsed = np.zeros((len(chunk), n_pix), dtype=np.int16)
            parsed[good] = values
            in_range = parsed.max(axis=1) <= 255
            usage = chunk["usage"] if "usage" in chunk.columns else pd.Series("", chunk.index)
            for j, (emotion, use) in enumerate(zip(chunk["emotion"], usage, strict=True)):
                i = row0 + j
                where = f"{name}:{i + 2}"  # line number (header is line 1)
                code, use = str(emotion).strip(), str(use)
                if not (code.isdigit() and int(code) < len(FER2013_CODES)):
                    collector.reject(where, f"bad_row: emotion code {emotion!r} not in 0-6")
                    continue
                if not (good[j] and in_range[j]):
                    collector.reject(where, _bad_pixels(pixels[j]))
                    continue
                split = normalise_split(use) if use.strip() else ""
                if split is None:
                    collector.reject(where, f"bad_row: Usage {use!r} is not Training, "
                                            "PublicTest or PrivateTest")
                    continue
                label: str | None = FER2013_CODES[int(code)]
                if fer_plus is not None:
                    if i >= len(fer_plus):
                        raise AcquireError(f"`acquire.labels_path` has fewer rows than {path} "
                                           f"(no row for line {i + 2}); FER+ joins row by row")
                    label = fer_plus[i] if isinstance(fer_plus[i], str) else None
                    if label is None:
                        collector.reject(where, fer_plus[i][0])
                        continue
                if label not in cfg.classes:
                    collector.reject(where, f"not_selected: class {label!r} is not in "
                                            "acquire.classes")
                    continue
                gray = parsed[j].astype(np.uint8).reshape(FER_SIDE, FER_SIDE)
                ident = f"row-{i:06d}"
                collector.add(where, _digest(gray), [resize(gray, cfg.image_size)],
                              ident=ident, label=label, group=ident, split=split)
            row0 += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AcquireError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]}); "
                           "expected fer2013.csv (emotion,pixels,Usage)") from None
    if fer_plus is not None and len(fer_plus) != row0:
        raise AcquireError(f"`acquire.labels_path` has {len(fer_plus)} rows, {path} has {row0}; "
                           "FER+ labels join row by row, use the matching files")
    return collector.finish({})


def read_source(cfg: AcquireCfg, out: Path) -> Acquired:
    """Read ``cfg.source`` into the store at ``out``."""
    if cfg.source == "fer2013_csv":
        return read_fer2013_csv(cfg, out)
    if cfg.source in ("image_folder", "photos"):
        return read_image_folder(cfg, out)
    raise ValueError(f"no reader for source {cfg.source!r}")  # synthetic is drawn, not read
