"""The FER2013 CSV: emotion codes, Usage splits, bad rows and FER+ relabelling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from occlufer.data.readers import AcquireError, read_source
from occlufer.data.store import read_store


def _rejects(got) -> dict[str, str]:
    return dict(got.rejects)


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
