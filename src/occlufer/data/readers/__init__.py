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

Modules: :mod:`.collect` (what both readers share: :class:`Acquired`, the collector that
streams into the store, split names, :class:`AcquireError`), :mod:`.image_folder` and
:mod:`.fer2013_csv` (one per source); :func:`read_source` picks the reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from occlufer.data.readers.collect import (
    EXCLUDED,
    KEYPOINT_COLUMNS,
    Acquired,
    AcquireError,
    no_keypoints,
    normalise_split,
)
from occlufer.data.readers.fer2013_csv import read_fer2013_csv
from occlufer.data.readers.image_folder import read_image_folder

if TYPE_CHECKING:  # the schema: config sits above data (it checks acquire.detector by name)
    from occlufer.config import AcquireCfg

__all__ = ["EXCLUDED", "KEYPOINT_COLUMNS", "AcquireError", "Acquired", "no_keypoints",
           "normalise_split", "read_fer2013_csv", "read_image_folder", "read_source"]


def read_source(cfg: AcquireCfg, out: Path) -> Acquired:
    """Read ``cfg.source`` into the store at ``out``."""
    if cfg.source == "fer2013_csv":
        return read_fer2013_csv(cfg, out)
    if cfg.source in ("image_folder", "photos"):
        return read_image_folder(cfg, out)
    raise ValueError(f"no reader for source {cfg.source!r}")  # synthetic is drawn, not read
