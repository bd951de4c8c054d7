"""``image_folder`` and ``photos``: ``root/<class>/**/<image>`` or
``root/<split>/<class>/**/<image>``.

The folder is scanned first (sorted, hidden entries skipped); then a process pool decodes the
images (and, for photos, detects the faces) :data:`CHUNK` files per task, in input order.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from occlufer.data import faces as face_detection
from occlufer.data.images import EXTENSIONS, Reject, center_square, load_gray
from occlufer.data.readers.collect import (
    Acquired,
    AcquireError,
    _Collector,
    _digest,
    _workers,
    existing_path,
    normalise_split,
)
from occlufer.errors import ignore_interrupt
from occlufer.labels import LABELS, canonical

if TYPE_CHECKING:  # the schema: config sits above data (it checks acquire.detector by name)
    from occlufer.config import AcquireCfg

CHUNK = 512        # inputs per worker task


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
