from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from occlufer.data.store import read_store
from occlufer.stages.acquire import acquire


def test_acquire_writes_a_consistent_store(tmp_path: Path, params) -> None:
    counts = acquire(params, tmp_path / "acq")
    store = read_store(tmp_path / "acq")
    n = params.acquire.n_per_class * len(params.acquire.classes)
    assert counts == {"read": n, "kept": n, "rejected": 0}
    assert store.images.shape == (n, 48, 48) and store.images.dtype == np.uint8
    m = store.manifest
    assert list(m["label"].cat.categories) == params.acquire.classes
    assert m["label"].value_counts().eq(params.acquire.n_per_class).all()
    assert m["id"].is_unique
    assert m["group"].str.startswith("subject-").all()
    rejects = pd.read_csv(tmp_path / "acq" / "rejects.csv")
    assert list(rejects.columns) == ["path", "reason"] and len(rejects) == 0
    summary = json.loads((tmp_path / "acq" / "summary.json").read_text())
    assert summary["read"] == summary["kept"] + summary["rejected"]
    assert Image.open(tmp_path / "acq" / "preview.png").size[0] > 48


def test_acquire_is_deterministic_and_seeded(tmp_path: Path, make_params) -> None:
    acquire(make_params(), tmp_path / "a")
    acquire(make_params(), tmp_path / "b")
    acquire(make_params("seed=1"), tmp_path / "c")
    a, b, c = (np.load(tmp_path / x / "images.npy") for x in "abc")
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_acquire_honours_class_subset_and_size(tmp_path: Path, make_params) -> None:
    p = make_params("acquire.classes=[happy,sad,surprise]", "acquire.image_size=64")
    acquire(p, tmp_path / "acq")
    store = read_store(tmp_path / "acq")
    assert store.images.shape[1:] == (64, 64)
    assert set(store.manifest["label"]) == {"happy", "sad", "surprise"}
