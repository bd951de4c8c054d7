"""The streamed store writer produces an ordinary store; readers check what they open."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import occlufer.data.store as store_module
from occlufer.data.store import (
    CHECKSUMS,
    IMAGES,
    MANIFEST,
    Store,
    StoreError,
    StoreWriter,
    read_store,
    write_store,
)


def test_store_writer_streams_chunks_into_one_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 256, (k, 8, 8), dtype=np.uint8) for k in (3, 0, 5, 1)]
    writer = StoreWriter(tmp_path, (8, 8))
    for c in chunks:
        writer.append(c)
    with pytest.raises(ValueError):
        writer.append(np.zeros((1, 9, 8), np.uint8))
    writer.close(pd.DataFrame({"id": [str(i) for i in range(9)]}))
    store = read_store(tmp_path)
    assert np.array_equal(np.load(tmp_path / "images.npy"), np.concatenate(chunks))
    assert store.images.shape == (9, 8, 8) and len(store.manifest) == 9


# --- every reader checks the files it opens (issue #17) ---------------------------------------

DVC_YAML = "stages:\n  acquire:\n    cmd: x\n    outs:\n      - data/acquired\n  mix_split:\n" \
           "    cmd: y\n    outs:\n      - data/split\n"


def _store(n: int = 40, masks: bool = False) -> Store:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
    manifest = pd.DataFrame({"id": [f"f{i:04d}" for i in range(n)],
                             "label": pd.Categorical(rng.choice(["happy", "sad"], n))})
    return Store(images, manifest, images > 128 if masks else None)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    return tmp_path


def _error(folder: Path, **kwargs) -> str:
    with pytest.raises(StoreError) as err:
        read_store(folder, **kwargs)
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_writers_add_checksums_and_leave_the_other_bytes_as_they_were(tmp_path: Path) -> None:
    store = _store(masks=True)
    write_store(tmp_path / "a", store)
    np.save(tmp_path / "plain.npy", store.images)
    store.manifest.to_parquet(tmp_path / "plain.parquet", index=False)
    assert (tmp_path / "a" / IMAGES).read_bytes() == (tmp_path / "plain.npy").read_bytes()
    assert (tmp_path / "a" / MANIFEST).read_bytes() == (tmp_path / "plain.parquet").read_bytes()
    sums = json.loads((tmp_path / "a" / CHECKSUMS).read_text())["files"]
    assert set(sums) == {IMAGES, MANIFEST, "masks.npy"}
    assert sums[MANIFEST]["sha256"] == hashlib.sha256(
        (tmp_path / "a" / MANIFEST).read_bytes()).hexdigest()
    assert sums[IMAGES]["bytes"] == (tmp_path / "a" / IMAGES).stat().st_size
    writer = StoreWriter(tmp_path / "b", (16, 16))
    writer.append(store.images)
    writer.close(store.manifest)
    assert json.loads((tmp_path / "b" / CHECKSUMS).read_text())["files"][IMAGES] == sums[IMAGES]
    back = read_store(tmp_path / "a")
    assert np.array_equal(back.images, store.images) and np.array_equal(back.masks, store.masks)


def test_a_truncated_images_npy_names_the_file_and_the_stage(repo: Path) -> None:
    folder = write_store(repo / "data" / "acquired", _store())
    path = folder / IMAGES
    path.write_bytes(path.read_bytes()[:-100])
    (folder / CHECKSUMS).unlink()  # the header alone tells
    text = _error(folder)
    assert text.startswith(f"{path}: ") and "truncated" in text
    assert "`dvc repro -f -s acquire`" in text and "`dvc checkout data/acquired`" in text


def test_a_half_written_manifest_names_the_file_and_the_stage(repo: Path) -> None:
    folder = write_store(repo / "data" / "split" / "train", _store())
    path = folder / MANIFEST
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    text = _error(folder)
    assert text.startswith(f"{path}: ") and "bytes, but checksums.json says" in text
    assert "`dvc repro -f -s mix_split`" in text and "`dvc checkout data/split`" in text
    (folder / CHECKSUMS).unlink()  # without the record, Parquet itself refuses it
    text = _error(folder)
    assert text.startswith(f"{path}: not a readable Parquet file") and "mix_split" in text


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at:at + 4] = bytes(b ^ 0xFF for b in data[at:at + 4])
    path.write_bytes(bytes(data))


def test_a_four_byte_flip_in_the_manifest_is_caught(repo: Path) -> None:
    folder = write_store(repo / "data" / "split" / "val", _store())
    path = folder / MANIFEST
    _flip(path, path.stat().st_size // 2)
    text = _error(folder)
    assert text.startswith(f"{path}: content differs from its sha256") and "mix_split" in text


def test_images_are_checksummed_when_small_or_asked(repo: Path, monkeypatch) -> None:
    folder = write_store(repo / "data" / "acquired", _store())
    _flip(folder / IMAGES, (folder / IMAGES).stat().st_size - 50)
    assert "content differs" in _error(folder)  # small: always
    assert len(read_store(folder, verify=False)) == 40  # the size still matches
    monkeypatch.setattr(store_module, "VERIFY_IMAGES_BYTES", 100)
    assert len(read_store(folder)) == 40  # large: sizes only ...
    monkeypatch.setenv("OCCLUFER_VERIFY_IMAGES", "1")
    assert "content differs" in _error(folder)  # ... unless asked
    assert "content differs" in _error(folder, verify=True)


def test_rows_of_manifest_and_images_must_agree(tmp_path: Path) -> None:
    folder = write_store(tmp_path / "s", _store())
    _store(n=39).manifest.to_parquet(folder / MANIFEST, index=False)
    (folder / CHECKSUMS).unlink()
    text = _error(folder)
    assert "39 rows for 40 images" in text and "dvc repro -f -s <stage>" in text


def test_a_store_without_checksums_still_reads(tmp_path: Path) -> None:
    folder = write_store(tmp_path / "s", _store())
    (folder / CHECKSUMS).unlink()
    assert len(read_store(folder)) == 40


def test_a_stage_reading_a_truncated_store_prints_one_line(tmp_path: Path, params) -> None:
    from occlufer.config import dump_params
    from occlufer.stages.acquire import acquire
    from tests.conftest import ROOT
    from tests.faults import one_line

    shutil.copyfile(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    dump_params(params.to_dict(), tmp_path / "params.yaml")
    acquire(params, tmp_path / "data" / "acquired")
    path = tmp_path / "data" / "acquired" / IMAGES
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    proc = subprocess.run([sys.executable, "-m", "occlufer.stages.occlude"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert line.startswith("occlufer occlude: error: data/acquired/images.npy: ")
    assert line.endswith("rebuild it with `dvc repro -f -s acquire`")


def test_keypoint_columns_round_trip_with_nulls(tmp_path: Path) -> None:
    from occlufer.data.store import keypoint_columns, manifest_keypoints

    cols = keypoint_columns(["left_eye", "mouth"])
    assert cols == ["kp_left_eye_x", "kp_left_eye_y", "kp_mouth_x", "kp_mouth_y"]
    values = np.full((3, 4), np.nan, np.float32)
    values[1] = [0.3, 0.4, 0.5, 0.75]
    m = pd.DataFrame({"id": ["a", "b", "c"], **dict(zip(cols, values.T, strict=True))})
    write_store(tmp_path / "s", Store(np.zeros((3, 4, 4), np.uint8), m))
    back = read_store(tmp_path / "s").manifest
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "s" / MANIFEST).column("kp_mouth_y").null_count == 2
    points = manifest_keypoints(back, ["left_eye", "mouth"])
    assert points.shape == (3, 2, 2) and np.isnan(points[[0, 2]]).all()
    np.testing.assert_allclose(points[1], [[0.3, 0.4], [0.5, 0.75]], rtol=1e-6)
    assert manifest_keypoints(back.iloc[[0, 2]], ["left_eye", "mouth"]) is None  # all null
    assert manifest_keypoints(back.drop(columns=cols[:1]), ["left_eye", "mouth"]) is None
