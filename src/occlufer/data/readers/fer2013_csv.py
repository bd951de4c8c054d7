"""``fer2013_csv``: ``emotion,pixels[,Usage]`` rows of 48×48 pixels, read in chunks; a FER+
vote CSV (``acquire.labels_path``) optionally relabels it, joined row by row."""

from __future__ import annotations

import re
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from occlufer.data.images import resize
from occlufer.data.readers import collect
from occlufer.data.readers.collect import AcquireError
from occlufer.labels import FER2013_CODES, LABELS, canonical

if TYPE_CHECKING:  # the schema: config sits above data (it checks acquire.detector by name)
    from occlufer.config import AcquireCfg

FER_SIDE = 48


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
    special = {"nf": "ferplus: majority says not a face (NF)",
               "unknown": "ferplus: majority says unknown"}
    out: list[str | tuple[str]] = []
    for row, best in zip(counts, counts.max(axis=1), strict=True):
        winners = [names[cols[j]] for j in np.flatnonzero(row == best)]
        if best <= 0:
            out.append(("ferplus: no votes",))
        elif len(winners) > 1:
            out.append((f"ferplus: votes tied between {', '.join(winners)}",))
        else:
            out.append((special[winners[0]],) if winners[0] in special else winners[0])
    return out


def _parse_pixel_rows(rows: list[str], n_pix: int) -> tuple[np.ndarray, np.ndarray]:
    """(ok mask, rows × n_pix int16): ok rows are ``n_pix`` space-separated values 0-255."""
    pattern = re.compile(rf"\d{{1,3}}(?: \d{{1,3}}){{{n_pix - 1}}}", re.ASCII)
    ok = np.fromiter((pattern.fullmatch(r) is not None for r in rows), bool, len(rows))
    parsed = np.zeros((len(rows), n_pix), dtype=np.int16)  # bad rows stay 0
    text = " ".join(compress(rows, ok))  # NumPy's C parser reads them all at once
    parsed[ok] = np.fromstring(text, dtype=np.int16, sep=" ").reshape(-1, n_pix) if text else 0
    return ok & (parsed.max(axis=1) <= 255), parsed


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


def read_fer2013_csv(cfg: AcquireCfg, out: Path) -> collect.Acquired:
    """``fer2013_csv``: chunked ``read_csv``, pixels parsed by NumPy a chunk at a time."""
    path = collect.existing_path(cfg.path, "path", want_dir=False)
    fer_plus = (_ferplus_labels(collect.existing_path(cfg.labels_path, "labels_path", False))
                if cfg.labels_path else None)
    collector = collect.Collector(out, cfg)
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
            good, parsed = _parse_pixel_rows(pixels, n_pix)
            usage = chunk["usage"] if "usage" in chunk.columns else pd.Series("", chunk.index)
            for j, (emotion, use) in enumerate(zip(chunk["emotion"], usage, strict=True)):
                i = row0 + j
                where = f"{name}:{i + 2}"  # line number (header is line 1)
                code, use = str(emotion).strip(), str(use)
                if not (code.isdigit() and int(code) < len(FER2013_CODES)):
                    collector.reject(where, f"bad_row: emotion code {emotion!r} not in 0-6")
                    continue
                if not good[j]:
                    collector.reject(where, _bad_pixels(pixels[j]))
                    continue
                split = collect.normalise_split(use) if use.strip() else ""
                if split is None:
                    collector.reject(where, f"bad_row: Usage {use!r} is not Training, "
                                            "PublicTest or PrivateTest")
                    continue
                label = FER2013_CODES[int(code)]
                if fer_plus is not None:
                    if i >= len(fer_plus):
                        raise AcquireError(f"`acquire.labels_path` has fewer rows than {path} "
                                           f"(no row for line {i + 2}); FER+ joins row by row")
                    label = fer_plus[i]
                if isinstance(label, tuple):  # FER+ says why not
                    collector.reject(where, label[0])
                    continue
                if label not in cfg.classes:
                    collector.reject(where, f"not_selected: class {label!r} is not in "
                                            "acquire.classes")
                    continue
                gray = parsed[j].astype(np.uint8).reshape(FER_SIDE, FER_SIDE)
                ident = f"row-{i:06d}"
                collector.add(where, collect.pixel_digest(gray), [resize(gray, cfg.image_size)],
                              ident=ident, label=label, group=ident, split=split)
            row0 += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AcquireError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]}); "
                           "expected fer2013.csv (emotion,pixels,Usage)") from None
    if fer_plus is not None and len(fer_plus) != row0:
        raise AcquireError(f"`acquire.labels_path` has {len(fer_plus)} rows, {path} has {row0}; "
                           "FER+ labels join row by row, use the matching files")
    return collector.finish({})
