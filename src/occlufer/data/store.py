"""The image store: uint8 ``images.npy`` (+ bit-packed ``masks.npy``), ``manifest.parquet`` (row
``i`` describes ``images[i]``; keypoints as ``kp_<name>_x/_y``) and ``checksums.json``.
Not ``numpy.lib.format.open_memmap``: it needs the row count up front and readers stream an
unknown count, so NumPy's padded header is rewritten in place on close."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occlufer.errors import OccluferError, first_line
from occlufer.hashing import file_sha256
from occlufer.jsonio import write_json

IMAGES = "images.npy"
MASKS = "masks.npy"
MANIFEST = "manifest.parquet"
CHECKSUMS = "checksums.json"
#: larger ``images.npy`` are checksummed only with ``verify=True`` / ``OCCLUFER_VERIFY_IMAGES=1``
VERIFY_IMAGES_BYTES = 256 << 20


class StoreError(OccluferError, FileNotFoundError):
    """A store folder is missing or inconsistent; the message says which and what to run."""


@dataclass
class Store:
    """Images (N×H×W uint8), their manifest, and optional occlusion masks (N×H×W bool)."""

    images: np.ndarray
    manifest: pd.DataFrame
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        images, rows = self.images, len(self.manifest)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be N×H×W uint8, got {images.shape} {images.dtype}")
        if rows != len(images):
            raise ValueError(f"manifest has {rows} rows for {len(images)} images")
        if self.masks is not None and self.masks.shape != images.shape:
            raise ValueError(f"masks {self.masks.shape} do not match images {images.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, rows: np.ndarray) -> Store:
        """Rows selected by a boolean mask or an index array (materialised in memory)."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return Store(np.asarray(self.images[idx]), self.manifest.iloc[idx].reset_index(drop=True),
                     None if self.masks is None else np.asarray(self.masks[idx]))


def keypoint_columns(names: Sequence[str]) -> list[str]:
    """The manifest columns of keypoints ``names``: ``kp_<name>_x``, ``kp_<name>_y`` each."""
    return [f"kp_{name}_{axis}" for name in names for axis in "xy"]


def manifest_keypoints(manifest: pd.DataFrame, names: Sequence[str]) -> np.ndarray | None:
    """Keypoints ``names`` (N×K×2 float64 ``[x, y]`` in crop fractions, NaN where missing), or
    None when no row has any (or the columns are missing)."""
    cols = keypoint_columns(names)
    if not set(cols) <= set(manifest.columns):
        return None
    values = manifest[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    values = values.reshape(len(manifest), len(names), 2)
    return values if np.isfinite(values).any() else None


def write_store(folder: str | Path, store: Store) -> Path:
    """Write ``store`` into ``folder`` (created; existing store files are replaced)."""
    writer = StoreWriter(folder, store.images.shape[1:])
    writer.append(store.images)
    return writer.close(store.manifest, store.masks)


class StoreWriter:
    """Stream images into ``folder/images.npy`` chunk by chunk (bounded memory, written once)."""

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
        self._file.write(np.ascontiguousarray(images).data)
        self.n += len(images)

    def close(self, manifest: pd.DataFrame, masks: np.ndarray | None = None) -> Path:
        """Finish ``images.npy``; write the masks (if any), the manifest and the checksums."""
        if len(manifest) != self.n:
            raise ValueError(f"manifest has {len(manifest)} rows for {self.n} images")
        if self._write_header() != self._header_len:  # cannot happen with NumPy's padding
            raise RuntimeError("images.npy header changed size")
        self._file.close()
        if masks is not None:
            flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))  # also for 0 rows
            np.save(self.folder / MASKS, np.packbits(flat.astype(bool), axis=1))
        else:
            (self.folder / MASKS).unlink(missing_ok=True)
        manifest.to_parquet(self.folder / MANIFEST, index=False)
        # checksums.json last: a store whose writing was cut short fails read_store's checks
        files = {name: {"bytes": (self.folder / name).stat().st_size,
                        "sha256": file_sha256(self.folder / name)}
                 for name in (IMAGES, MASKS, MANIFEST) if (self.folder / name).is_file()}
        write_json(self.folder / CHECKSUMS, {"files": files})
        return self.folder


def read_store(folder: str | Path, *, mmap: bool = True, verify: bool | None = None) -> Store:
    """Read a store (images memory-mapped), checking sizes, rows and ``checksums.json`` first (the
    images' sha256 when ``verify``; None: up to :data:`VERIFY_IMAGES_BYTES`); raises StoreError."""
    folder = Path(folder)
    for name in (IMAGES, MANIFEST):
        if not (folder / name).is_file():
            raise StoreError(f"{folder / name}: missing; run the stage that writes {folder} "
                             "first (`dvc repro`)")
    sums = _read_checksums(folder)
    if verify is None:
        verify = ((folder / IMAGES).stat().st_size <= VERIFY_IMAGES_BYTES
                  or os.environ.get("OCCLUFER_VERIFY_IMAGES") == "1")
    shape = _check_npy(folder / IMAGES, sums.get(IMAGES), verify)
    data = (folder / MANIFEST).read_bytes()
    _check_sum(folder / MANIFEST, sums.get(MANIFEST), len(data),
               lambda _: hashlib.sha256(data).hexdigest())
    try:
        manifest = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise StoreError(f"{folder / MANIFEST}: not a readable Parquet file "
                         f"({first_line(exc)}); {restore_hint(folder)}") from None
    if len(manifest) != shape[0]:
        raise StoreError(f"{folder / MANIFEST}: {len(manifest)} rows for {shape[0]} images in "
                         f"{IMAGES}; {restore_hint(folder)}")
    images = np.load(folder / IMAGES, mmap_mode="r" if mmap else None)
    masks = None
    if (folder / MASKS).is_file():
        _check_npy(folder / MASKS, sums.get(MASKS), True)
        bits = np.unpackbits(np.load(folder / MASKS), axis=1, count=int(np.prod(images.shape[1:])))
        masks = bits.astype(bool).reshape(len(bits), *images.shape[1:])
    try:
        return Store(images, manifest, masks)
    except ValueError as exc:
        raise StoreError(f"{folder}: {exc}; {restore_hint(folder)}") from None


def _read_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    path = folder / CHECKSUMS
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not isinstance(files, dict):
            raise TypeError(type(files).__name__)
        return files
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: unreadable ({first_line(exc)}); "
                         f"{restore_hint(folder)}") from None


def _check_sum(path: Path, want: dict[str, Any] | None, size: int,
               sha256: Callable[[Path], str] | None) -> None:
    """``path``'s size (and ``sha256(path)``, if given) against its checksums.json entry."""
    if want is None:
        return
    if size != want.get("bytes"):
        raise StoreError(f"{path}: {size} bytes, but {CHECKSUMS} says {want.get('bytes')} "
                         f"(truncated, half-written or replaced); {restore_hint(path.parent)}")
    if sha256 is not None and sha256(path) != want.get("sha256"):
        raise StoreError(f"{path}: content differs from its sha256 in {CHECKSUMS} (changed or "
                         f"damaged after the stage wrote it); {restore_hint(path.parent)}")


def _check_npy(path: Path, want: dict[str, Any] | None, verify: bool) -> tuple[int, ...]:
    """The shape in an ``.npy`` header, once the file's size matches it (and checksums.json)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}[version]
            shape, _, dtype = read(f)
            offset = f.tell()
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise StoreError(f"{path}: not a NumPy array file ({first_line(exc)}); "
                         f"{restore_hint(path.parent)}") from None
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if size != expected:
        raise StoreError(f"{path}: {size} bytes, but its header ({shape} {dtype}) needs "
                         f"{expected} (truncated or half-written); {restore_hint(path.parent)}")
    _check_sum(path, want, size, file_sha256 if verify else None)
    return tuple(shape)


def restore_hint(folder: str | Path) -> str:
    """How to get ``folder`` back: checkout / repro of the ``dvc.yaml`` stage whose outs hold it."""
    import yaml

    folder = Path(folder).resolve()
    root = next((r for r in (folder, *folder.parents) if (r / "dvc.yaml").is_file()), None)
    try:  # no dvc.yaml (root None) or an odd one: the generic hint
        stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
        for stage, spec in stages.items():
            for out in spec.get("outs", []):
                out = next(iter(out)) if isinstance(out, dict) else str(out)
                path = (root / out).resolve()
                if folder == path or path in folder.parents:
                    return (f"restore it with `dvc checkout {out}` or rebuild it with "
                            f"`dvc repro -f -s {stage}`")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        pass
    return ("restore it with `dvc checkout` or rebuild it by re-running the stage that wrote "
            "it (`dvc repro -f -s <stage>`)")
