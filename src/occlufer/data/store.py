"""The image store: one memory-mappable uint8 array plus a Parquet manifest per stage output.

Row ``i`` of ``manifest.parquet`` describes ``images.npy[i]`` (and ``masks.npy[i]`` where a stage
records occlusion masks, bit-packed per row). Many small image files make DVC and data loading
slow; one array per output scales to hundreds of thousands of faces.

Manifests of acquired faces carry, per keypoint of the face detector, the columns
``kp_<name>_x`` and ``kp_<name>_y`` (:func:`keypoint_columns`): where the detector put it in
the saved crop, as fractions of the crop's side; null where a face has none (synthetic faces,
crop folders, FER2013, Haar detections). :func:`manifest_keypoints` reads them back.

Writers add ``checksums.json`` (size and sha256 of each file); :func:`read_store` checks what it
opens against it and stops with one line naming the file and the command that restores it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occlufer.errors import OccluferError, first_line
from occlufer.hashing import file_sha256

IMAGES = "images.npy"
MASKS = "masks.npy"
MANIFEST = "manifest.parquet"
CHECKSUMS = "checksums.json"
#: ``images.npy`` up to this size is checksummed on every read (~0.1 s per 64 MiB); larger ones
#: only with ``read_store(..., verify=True)`` or ``OCCLUFER_VERIFY_IMAGES=1``
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


def keypoint_columns(names: Sequence[str]) -> list[str]:
    """The manifest columns of keypoints ``names``: ``kp_<name>_x``, ``kp_<name>_y`` each."""
    return [f"kp_{name}_{axis}" for name in names for axis in "xy"]


def manifest_keypoints(manifest: pd.DataFrame, names: Sequence[str]) -> np.ndarray | None:
    """Keypoints ``names`` of every row (N×K×2 float64 ``[x, y]``, fractions of the crop side,
    NaN where a row has none), or None when no row has any (or the columns are missing)."""
    cols = keypoint_columns(names)
    if not set(cols) <= set(manifest.columns):
        return None
    values = manifest[cols].to_numpy(dtype=np.float64, na_value=np.nan)
    values = values.reshape(len(manifest), len(names), 2)
    return values if np.isfinite(values).any() else None


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
    write_checksums(folder)
    return folder


def write_checksums(folder: Path) -> Path:
    """Record size and sha256 of the store's files in ``folder/checksums.json`` (written last,
    so a store whose writing was cut short fails :func:`read_store`'s checks)."""
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
             for name in (IMAGES, MASKS, MANIFEST) if (folder / name).is_file()}
    path = folder / CHECKSUMS
    path.write_text(json.dumps({"files": files}, indent=2, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path


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
        write_checksums(self.folder)
        return self.folder


def read_store(folder: str | Path, *, mmap: bool = True, verify: bool | None = None) -> Store:
    """Read a store written by :func:`write_store` (images memory-mapped by default).

    Every file opened is checked first, and a bad one stops with one line (:class:`StoreError`)
    naming it and how to get it back (:func:`restore_hint`): ``.npy`` sizes against their
    headers, the manifest's rows against the images, and, against ``checksums.json``, the size
    of every file and the sha256 of the manifest and masks (always: they are small) and of
    ``images.npy`` when ``verify`` is True, or when it is None (the default) and the file is at
    most :data:`VERIFY_IMAGES_BYTES` or ``OCCLUFER_VERIFY_IMAGES=1`` is set. A store without
    ``checksums.json`` (written before it existed) gets the other checks only.
    """
    folder = Path(folder)
    for name in (IMAGES, MANIFEST):
        if not (folder / name).is_file():
            raise StoreError(f"{folder / name}: missing; run the stage that writes {folder} "
                             "first (`dvc repro`)")
    sums = _read_checksums(folder)
    big = (folder / IMAGES).stat().st_size > VERIFY_IMAGES_BYTES
    if verify is None:
        verify = not big or os.environ.get("OCCLUFER_VERIFY_IMAGES") == "1"
    shape = _check_npy(folder / IMAGES, sums.get(IMAGES), verify)
    data = (folder / MANIFEST).read_bytes()
    _check_sum(folder / MANIFEST, sums.get(MANIFEST), len(data), hashlib.sha256(data))
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
        masks = unpack_masks(np.load(folder / MASKS), images.shape[1:])
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


def _check_sum(path: Path, want: dict[str, Any] | None, size: int, digest: Any | None) -> None:
    """``path``'s size (and sha256, when ``digest`` is given) against its checksums.json entry."""
    if want is None:
        return
    if size != want.get("bytes"):
        raise StoreError(f"{path}: {size} bytes, but {CHECKSUMS} says {want.get('bytes')} "
                         f"(truncated, half-written or replaced); {restore_hint(path.parent)}")
    if digest is not None and digest.hexdigest() != want.get("sha256"):
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
    if want is not None:
        digest = None
        if verify:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256")
        _check_sum(path, want, size, digest)
    return tuple(shape)


def restore_hint(folder: str | Path) -> str:
    """How to get a stage output back: ``dvc checkout <out>`` (from the DVC cache) or
    ``dvc repro -f -s <stage>`` (rebuilt), the stage found in the nearest ``dvc.yaml`` whose
    ``outs`` hold ``folder``; a generic hint when there is none."""
    folder = Path(folder).resolve()
    for root in (folder, *folder.parents):
        if (root / "dvc.yaml").is_file():
            found = _stage_of(root, folder)
            if found:
                stage, out = found
                return (f"restore it with `dvc checkout {out}` or rebuild it with "
                        f"`dvc repro -f -s {stage}`")
            break
    return ("restore it with `dvc checkout` or rebuild it by re-running the stage that wrote "
            "it (`dvc repro -f -s <stage>`)")


def _stage_of(root: Path, folder: Path) -> tuple[str, str] | None:
    import yaml

    try:
        stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
        for name, stage in stages.items():
            for out in stage.get("outs", []):
                out = next(iter(out)) if isinstance(out, dict) else str(out)
                if folder == (root / out).resolve() or (root / out).resolve() in folder.parents:
                    return name, out
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    return None


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """N×H×W bool → N×ceil(H·W/8) uint8."""
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))  # also for zero rows
    return np.packbits(flat.astype(bool), axis=1)


def unpack_masks(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack_masks`."""
    h, w = shape
    return np.unpackbits(packed, axis=1, count=h * w).astype(bool).reshape(len(packed), h, w)
