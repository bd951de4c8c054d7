"""Readers: folder layouts, labels, groups, splits, duplicates, the FER2013 CSV and FER+."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from occlufer.data.readers import AcquireError, normalise_split, read_source
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


def test_split_names_are_normalised() -> None:
    assert [normalise_split(s) for s in ("Training", "PublicTest", "PrivateTest", "valid",
                                         "test", "fold1")] == ["train", "val", "test", "val",
                                                               "test", None]


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
    import occlufer.data.readers as readers

    monkeypatch.setattr(readers, "CHUNK", 3)
    root = tmp_path / "d"
    for i in range(14):
        _png(root / ("happy", "sad")[i % 2] / f"{i:02d}.jpg", i, size=60)
    read_source(cfg(path=str(root), workers=1), tmp_path / "one")
    read_source(cfg(path=str(root), workers=2), tmp_path / "two")
    one, two = read_store(tmp_path / "one"), read_store(tmp_path / "two")
    assert one.images.tobytes() == two.images.tobytes() and one.manifest.equals(two.manifest)


# --------------------------------------------------------------------------- FER2013 CSV

def _fer_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"]).to_csv(path, index=False)


def _pixels(seed: int, n: int = 2304) -> str:
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, n)))


@pytest.fixture
def csv_cfg(make_params):
    base = make_params("acquire=fer2013_csv", "acquire.path=/unset").acquire
    return lambda **kw: dataclasses.replace(base, **kw)


def test_fer2013_csv_codes_splits_and_bad_rows(tmp_path: Path, csv_cfg) -> None:
    rows = [("0", _pixels(0), "Training"), ("6", _pixels(1), "PublicTest"),
            ("3", _pixels(2), "PrivateTest"),
            ("3", _pixels(3, 2303), "Training"),                  # wrong pixel count
            ("3", _pixels(4).replace("1", "x", 1), "Training"),   # non-numeric pixel
            ("7", _pixels(5), "Training"),                        # emotion out of range
            ("2", _pixels(6).replace(" ", " 300 ", 1)[4:], "Training"),  # pixel > 255
            ("4", _pixels(0), "Training")]                        # duplicate of row 0
    _fer_csv(tmp_path / "fer2013.csv", rows)
    got = read_source(csv_cfg(path=str(tmp_path / "fer2013.csv")), tmp_path / "out")
    store = read_store(tmp_path / "out")
    m = store.manifest
    assert list(m["label"]) == ["angry", "neutral", "happy"]
    assert list(m["source_split"]) == ["train", "val", "test"]
    assert list(m["source_path"]) == ["fer2013.csv:2", "fer2013.csv:3", "fer2013.csv:4"]
    assert m["group"].is_unique and m["id"].is_unique
    first = np.array(_pixels(0).split(), dtype=np.uint8).reshape(48, 48)
    assert np.array_equal(store.images[0], first)
    reasons = _rejects(got)
    assert "2303 pixels" in reasons["fer2013.csv:5"]
    assert "non-numeric" in reasons["fer2013.csv:6"]
    assert "emotion code '7'" in reasons["fer2013.csv:7"]
    assert "300 outside 0-255" in reasons["fer2013.csv:8"]
    assert reasons["fer2013.csv:9"].startswith("duplicate: same pixels as fer2013.csv:2")
    assert got.read == 8 and got.kept == 3


def test_ferplus_votes_relabel_by_majority(tmp_path: Path, csv_cfg) -> None:
    _fer_csv(tmp_path / "fer2013.csv", [("0", _pixels(i), "Training") for i in range(5)])
    votes = pd.DataFrame({"Usage": ["Training"] * 5, "Image name": [f"{i}.png" for i in range(5)],
                          "neutral": [8, 0, 5, 0, 0], "happiness": [2, 9, 5, 0, 0],
                          "surprise": 0, "sadness": 0, "anger": 0, "disgust": 0, "fear": 0,
                          "contempt": [0, 0, 0, 7, 0], "unknown": 0, "NF": [0, 0, 0, 0, 10]})
    votes.to_csv(tmp_path / "fer2013new.csv", index=False)
    c = csv_cfg(path=str(tmp_path / "fer2013.csv"), labels_path=str(tmp_path / "fer2013new.csv"))
    got = read_source(c, tmp_path / "out")
    assert list(got.manifest["label"]) == ["neutral", "happy"]
    reasons = [r for _, r in got.rejects]
    assert reasons[0].startswith("ferplus: votes tied") and "not_selected" in reasons[1]
    assert "not a face" in reasons[2]
    votes.iloc[:4].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(AcquireError, match="row by row"):
        read_source(dataclasses.replace(c, labels_path=str(tmp_path / "short.csv")),
                    tmp_path / "out2")


def test_not_a_fer_csv_is_one_line(tmp_path: Path, csv_cfg) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(AcquireError, match="missing column"):
        read_source(csv_cfg(path=str(tmp_path / "x.csv")), tmp_path / "out")
