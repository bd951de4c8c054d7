"""Image folders: layouts, labels, groups, splits, duplicates, rejects and the decoding pool."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occlufer.data.readers import AcquireError, read_source
from occlufer.data.store import read_store


def _png(path: Path, seed: int, size: int = 48) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return a


@pytest.fixture
def cfg(make_params):
    """image_folder defaults (one worker: tests stay in-process), path set by each test."""
    base = make_params("acquire=image_folder", "acquire.path=/unset").acquire
    return lambda **kw: dataclasses.replace(base, **{"workers": 1, **kw})


def _rejects(got) -> dict[str, str]:
    return dict(got.rejects)



def test_class_folders_with_aliases_groups_and_store(tmp_path: Path, cfg) -> None:
    root = tmp_path / "ck"
    a = _png(root / "anger" / "S010_004_00000017.png", 1)
    _png(root / "Happiness" / "S010_006_00000015.png", 2)
    _png(root / "happy" / "sub" / "S011_001_00000009.png", 3)
    _png(root / "contempt" / "S012_001_00000001.png", 4)
    c = cfg(path=str(root), group_regex=r"^(S\d+)_",
            classes=["angry", "happy", "sad", "contempt"])
    got = read_source(c, tmp_path / "out")
    store = read_store(tmp_path / "out")
    m = store.manifest
    assert got.read == 4 and got.kept == 4 and not got.rejects
    assert list(m["label"].cat.categories) == ["angry", "happy", "sad", "contempt"]
    assert m.set_index("id")["label"].to_dict() == {
        "Happiness/S010_006_00000015.png": "happy", "anger/S010_004_00000017.png": "angry",
        "contempt/S012_001_00000001.png": "contempt",
        "happy/sub/S011_001_00000009.png": "happy"}
    assert sorted(m["group"]) == ["S010", "S010", "S011", "S012"]
    assert (m["source_split"] == "").all() and (m["source"] == "image_folder").all()
    row = m.index[m["id"] == "anger/S010_004_00000017.png"][0]
    assert np.array_equal(store.images[row], a)  # 48×48 kept byte for byte
    assert got.notes == {}  # sad has no folder at all: not an empty folder


def test_only_existing_empty_class_folders_are_noted(tmp_path: Path, cfg) -> None:
    root = tmp_path / "few"
    _png(root / "happy" / "a.png", 1)
    (root / "fear").mkdir()
    (root / "sad" / "deeper").mkdir(parents=True)  # folders but no file
    got = read_source(cfg(path=str(root)), tmp_path / "out")
    assert got.kept == 1
    assert got.notes == {"empty_class_folder/fear": 1, "empty_class_folder/sad": 1}
    split = tmp_path / "split"  # train/fear is empty, val/fear is not: fear has images
    _png(split / "val" / "fear" / "b.png", 3)
    (split / "train" / "fear").mkdir(parents=True)
    (split / "train" / "angry").mkdir()
    got = read_source(cfg(path=str(split)), tmp_path / "out2")
    assert got.notes == {"empty_class_folder/angry": 1}


def test_split_level_is_kept_and_groups_default_to_the_image(tmp_path: Path, cfg) -> None:
    root = tmp_path / "fer"
    for i, split in enumerate(("Training", "PublicTest", "PrivateTest")):
        _png(root / split / "fear" / f"{i}.png", i)
    got = read_source(cfg(path=str(root), image_size=64), tmp_path / "out")
    m = got.manifest
    assert dict(zip(m["id"], m["source_split"], strict=True)) == {
        "PrivateTest/fear/2.png": "test", "PublicTest/fear/1.png": "val",
        "Training/fear/0.png": "train"}
    assert list(m["group"]) == list(m["id"])
    assert read_store(tmp_path / "out").images.shape == (3, 64, 64)


def test_bad_files_are_rejected_with_reasons_and_nothing_is_lost(tmp_path: Path, cfg) -> None:
    root = tmp_path / "data set é"   # space and non-ASCII in every path component
    a = _png(root / "sad" / "été 1.png", 1)
    (root / "sad" / "été 2.png").write_bytes((root / "sad" / "été 1.png").read_bytes())
    (root / "sad" / "empty.jpg").write_bytes(b"")
    (root / "sad" / "text.jpg").write_text("hello")
    (root / "sad" / "notes.txt").write_text("hello")
    _png(root / "sad" / "tiny.png", 2, size=16)
    _png(root / "loose.png", 3)
    _png(root / "happy" / "ok.png", 4)
    (root / "angry").mkdir()
    (root / ".cache").mkdir()
    _png(root / ".cache" / "x.png", 5)
    got = read_source(cfg(path=str(root)), tmp_path / "out")
    reasons = {p: r.split(":")[0] for p, r in got.rejects}
    assert reasons == {"sad/été 2.png": "duplicate", "sad/empty.jpg": "empty",
                       "sad/text.jpg": "unreadable", "sad/notes.txt": "not_image",
                       "sad/tiny.png": "too_small", "loose.png": "layout"}
    assert "same pixels as sad/été 1.png" in _rejects(got)["sad/été 2.png"]
    assert got.read == 8 and got.kept == 2 and got.read == got.kept + len(got.rejects)
    assert got.notes["hidden_skipped"] == 1 and got.notes["empty_class_folder/angry"] == 1
    store = read_store(tmp_path / "out")
    assert np.array_equal(store.images[list(store.manifest["id"]).index("sad/été 1.png")], a)


def test_duplicates_can_be_kept_together_in_one_group(tmp_path: Path, cfg) -> None:
    root = tmp_path / "d"
    _png(root / "train" / "sad" / "a.png", 1)
    _png(root / "val" / "happy" / "b.png", 1)   # same pixels, other split and label
    got = read_source(cfg(path=str(root), dedupe=False), tmp_path / "out")
    assert got.kept == 2 and got.manifest["group"].nunique() == 1


def test_unknown_class_folder_is_an_error_naming_it_unless_dropped(tmp_path: Path, cfg) -> None:
    root = tmp_path / "d"
    _png(root / "happy" / "a.png", 1)
    _png(root / "joyful" / "b.png", 2)
    _png(root / "7" / "c.png", 3)
    with pytest.raises(AcquireError) as err:
        read_source(cfg(path=str(root)), tmp_path / "out")
    assert "['7', 'joyful']" in str(err.value) and "unknown_labels=drop" in str(err.value)
    got = read_source(cfg(path=str(root), unknown_labels="drop"), tmp_path / "out2")
    assert got.kept == 1 and {r.split(":")[0] for _, r in got.rejects} == {"unknown_label"}


def test_known_labels_outside_the_class_set_are_reported_not_kept(tmp_path: Path, cfg) -> None:
    root = tmp_path / "d"
    _png(root / "happy" / "a.png", 1)
    _png(root / "contempt" / "b.png", 2)
    got = read_source(cfg(path=str(root)), tmp_path / "out")
    assert got.kept == 1 and _rejects(got)["contempt/b.png"].startswith("not_selected:")


@pytest.mark.parametrize("key", ["path"])
def test_missing_path_is_one_line_naming_the_key(tmp_path: Path, cfg, key: str) -> None:
    with pytest.raises(AcquireError) as err:
        read_source(cfg(path=str(tmp_path / "nope")), tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and "`acquire.path`" in message and "nope" in message


def test_pool_and_in_process_give_identical_stores(tmp_path: Path, cfg, monkeypatch) -> None:
    import occlufer.data.readers.image_folder as image_folder

    monkeypatch.setattr(image_folder, "CHUNK", 3)
    root = tmp_path / "d"
    for i in range(14):
        _png(root / ("happy", "sad")[i % 2] / f"{i:02d}.jpg", i, size=60)
    read_source(cfg(path=str(root), workers=1), tmp_path / "one")
    read_source(cfg(path=str(root), workers=2), tmp_path / "two")
    one, two = read_store(tmp_path / "one"), read_store(tmp_path / "two")
    assert one.images.tobytes() == two.images.tobytes() and one.manifest.equals(two.manifest)
