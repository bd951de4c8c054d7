"""``image_folder`` and ``photos``: ``root/[<split>/]<class>/**/<image>``, scanned sorted without
hidden entries, then decoded (and faces detected) by a process pool, :data:`CHUNK` files a task."""

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
from occlufer.data.readers import collect
from occlufer.data.readers.collect import AcquireError
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


def _visible(folder: str | Path, hidden: Counter) -> list[os.DirEntry]:
    """The entries of ``folder`` by name; hidden ones are only counted."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    hidden.update("hidden_skipped" for e in entries if e.name.startswith("."))
    return [e for e in entries if not e.name.startswith(".")]


def _files_under(folder: str, hidden: Counter) -> list[str]:
    """Every non-hidden file below ``folder`` (recursive, sorted)."""
    files, stack = [], [folder]
    while stack:
        entries = _visible(stack.pop(), hidden)
        stack.extend(reversed([e.path for e in entries if e.is_dir()]))
        files.extend(e.path for e in entries if not e.is_dir())
    return files


def scan_folder(root: Path, cfg: AcquireCfg,
                collector: collect.Collector) -> tuple[list[_Item], dict[str, int]]:
    """Inputs of an image folder; rejects what cannot be an input (wrong level, extension)."""
    notes: Counter = Counter()
    top = _visible(root, notes)
    top_dirs = [e for e in top if e.is_dir()]
    split_layout = bool(top_dirs) and all(collect.normalise_split(e.name) for e in top_dirs)
    levels = ([(collect.normalise_split(e.name), _visible(e.path, notes)) for e in top_dirs]
              if split_layout else [("", top)])
    loose = [e.path for e in top if not e.is_dir()]
    if split_layout:
        loose += [e.path for _, level in levels for e in level if not e.is_dir()]
    class_dirs = [(split, e) for split, level in levels for e in level if e.is_dir()]
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
    # an existing class folder without files (the stage warns about classes without images)
    present = {canonical(e.name) for _, e in class_dirs}
    notes.update({f"empty_class_folder/{lab}": 1 for lab in cfg.classes
                  if lab in present and per_folder[lab] == 0})
    return items, dict(notes)


def _decode(cfg: AcquireCfg, path: str,
            ) -> tuple[bytes, list[np.ndarray], list[str], list[np.ndarray | None]] | str:
    """One input's (pixel digest, crops, boxes, keypoints), or its reject reason."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    size = cfg.image_size
    try:
        if cfg.source != "photos":
            gray = load_gray(data, min_size=cfg.min_size, draft_side=size)
            return collect.pixel_digest(gray), [center_square(gray, size)], [""], [None]
        gray, _, crops = face_detection.photo_faces(
            data, size=size, policy=cfg.faces, margin=cfg.face_margin,
            min_face=cfg.face_min_size, min_size=cfg.min_size, detector=cfg.detector)
    except Reject as exc:
        return str(exc)
    return (collect.pixel_digest(gray), [c.image for c in crops],
            [",".join(map(str, c.box)) for c in crops], [c.crop_keypoints for c in crops])


def _decode_chunk(args: tuple[AcquireCfg, list[str]]) -> list[tuple[bytes, list, list, list] | str]:
    spec, paths = args
    return [_decode(spec, path) for path in paths]


def _map_chunks(spec: AcquireCfg, paths: list[str], workers: int) -> Iterator[list]:
    chunks = [(spec, paths[i:i + CHUNK]) for i in range(0, len(paths), CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        yield from map(_decode_chunk, chunks)
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    # workers ignore Ctrl-C; on KeyboardInterrupt in the parent, leaving `with` terminates them
    with ctx.Pool(min(workers, len(chunks)), initializer=ignore_interrupt) as pool:
        yield from pool.imap(_decode_chunk, chunks)


def read_image_folder(cfg: AcquireCfg, out: Path) -> collect.Acquired:
    """``image_folder`` and ``photos``: decode (and detect faces) with a process pool."""
    root = collect.existing_path(cfg.path, "path", want_dir=True)
    collector = collect.Collector(out, cfg)
    items, notes = scan_folder(root, cfg, collector)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers, done = cfg.workers or cores or 1, 0  # acquire.workers 0: every core we may use
    with tqdm(total=len(items), desc=f"acquire {cfg.source}", disable=None) as bar:
        for results in _map_chunks(cfg, [it.path for it in items], workers):
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
    if cfg.source == "photos":
        acquired.notes["faces"] = len(acquired.manifest)
    return acquired
