"""Dataset readers (image folders, photos, the FER2013 CSV): each streams its faces into a store
in input order and accounts for every input as a manifest row or a ``"<code>: <detail>"`` reject."""

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
