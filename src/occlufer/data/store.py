"""The image store: one memory-mappable uint8 array plus a Parquet manifest per stage output.

Row ``i`` of ``manifest.parquet`` describes ``images.npy[i]`` (and ``masks.npy[i]`` where a stage
records occlusion masks, bit-packed per row). Many small image files make DVC and data loading
slow; one array per output scales to hundreds of thousands of faces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from occlufer.errors import OccluferError

IMAGES = "images.npy"
MASKS = "masks.npy"
MANIFEST = "manifest.parquet"


class StoreError(OccluferError, FileNotFoundError):
    """A store folder is missing or inconsistent; the message says which and what to run."""


@dataclass
class Store:
    """Images (N×H×W uint8), their manifest, and optional occlusion masks (N×H×W bool)."""

    images: np.ndarray
    manifest: pd.DataFrame
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be N×H×W uint8, got {self.images.shape} "
                             f"{self.images.dtype}")
        if len(self.manifest) != len(self.images):
            raise ValueError(f"manifest has {len(self.manifest)} rows for "
                             f"{len(self.images)} images")
        if self.masks is not None and self.masks.shape != self.images.shape:
            raise ValueError(f"masks {self.masks.shape} do not match images {self.images.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, rows: np.ndarray) -> Store:
        """Rows selected by a boolean mask or an index array (materialised in memory)."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return Store(np.asarray(self.images[idx]), self.manifest.iloc[idx].reset_index(drop=True),
                     None if self.masks is None else np.asarray(self.masks[idx]))


def write_store(folder: str | Path, store: Store) -> Path:
    """Write ``store`` into ``folder`` (created; existing store files are replaced)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / IMAGES, np.ascontiguousarray(store.images))
    if store.masks is not None:
        np.save(folder / MASKS, pack_masks(store.masks))
    elif (folder / MASKS).exists():
        (folder / MASKS).unlink()
    store.manifest.to_parquet(folder / MANIFEST, index=False)
    return folder


class StoreWriter:
    """Stream images into ``folder/images.npy`` chunk by chunk: memory stays bounded.

    The ``.npy`` header is written first with room for any row count (NumPy pads it for growth
    of the first axis) and rewritten in place by :meth:`close`, so the data are written once and
    the result is an ordinary ``images.npy`` that :func:`read_store` memory-maps.
    """

    def __init__(self, folder: str | Path, shape: tuple[int, int]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shape = tuple(shape)
        self.n = 0
        self._file = open(self.folder / IMAGES, "wb")  # noqa: SIM115 (closed in close())
        self._header_len = self._write_header()

    def _write_header(self) -> int:
        self._file.seek(0)
        np.lib.format.write_array_header_1_0(
            self._file, {"descr": "|u1", "fortran_order": False, "shape": (self.n, *self.shape)})
        return self._file.tell()

    def append(self, images: np.ndarray) -> None:
        """Add rows (k×H×W uint8) at the end."""
        if images.dtype != np.uint8 or images.shape[1:] != self.shape:
            raise ValueError(f"expected k×{self.shape} uint8, got {images.shape} {images.dtype}")
        self._file.write(np.ascontiguousarray(images).tobytes())
        self.n += len(images)

    def close(self, manifest: pd.DataFrame) -> Path:
        """Finish ``images.npy`` and write the manifest (one row per appended image)."""
        if len(manifest) != self.n:
            raise ValueError(f"manifest has {len(manifest)} rows for {self.n} images")
        end = self._file.tell()
        if self._write_header() != self._header_len:  # cannot happen with NumPy's padding
            raise RuntimeError("images.npy header changed size")
        self._file.seek(end)
        self._file.close()
        if (self.folder / MASKS).exists():
            (self.folder / MASKS).unlink()
        manifest.to_parquet(self.folder / MANIFEST, index=False)
        return self.folder


def read_store(folder: str | Path, *, mmap: bool = True) -> Store:
    """Read a store written by :func:`write_store` (images memory-mapped by default)."""
    folder = Path(folder)
    for name in (IMAGES, MANIFEST):
        if not (folder / name).is_file():
            raise StoreError(f"{folder / name}: missing; run the stage that writes {folder} "
                             "first (`dvc repro`)")
    images = np.load(folder / IMAGES, mmap_mode="r" if mmap else None)
    manifest = pd.read_parquet(folder / MANIFEST)
    masks = None
    if (folder / MASKS).is_file():
        masks = unpack_masks(np.load(folder / MASKS), images.shape[1:])
    return Store(images, manifest, masks)


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """N×H×W bool → N×ceil(H·W/8) uint8."""
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))  # also for zero rows
    return np.packbits(flat.astype(bool), axis=1)


def unpack_masks(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack_masks`."""
    h, w = shape
    return np.unpackbits(packed, axis=1, count=h * w).astype(bool).reshape(len(packed), h, w)
