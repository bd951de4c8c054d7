from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from occlufer.data.split import group_split
from occlufer.data.store import read_store


def test_mix_is_one_to_one_and_leak_free(split_dir: Path) -> None:
    train, val = read_store(split_dir / "train"), read_store(split_dir / "val")
    for store in (train, val):
        m = store.manifest
        # every clean face is accompanied by its occluded copy on the same side (1:1)
        assert m["occluded"].sum() == (~m["occluded"]).sum()
        assert set(m.loc[m["occluded"], "src_id"]) == set(m.loc[~m["occluded"], "src_id"])
        assert store.masks is not None
        assert not store.masks[~m["occluded"].to_numpy()].any()
        assert store.masks[m["occluded"].to_numpy()].reshape(len(store.masks[m["occluded"]]),
                                                             -1).any(axis=1).all()
    assert not set(train.manifest["group"]) & set(val.manifest["group"])
    assert not set(train.manifest["src_id"]) & set(val.manifest["src_id"])
    table = pd.read_csv(split_dir / "summary.csv", index_col=0)
    assert table.loc["total"].sum() == len(train) + len(val)


def test_images_follow_their_manifest_rows(split_dir: Path, tmp_path: Path) -> None:
    clean = read_store(tmp_path / "data" / "acquired")
    by_id = dict(zip(clean.manifest["id"], range(len(clean)), strict=True))
    val = read_store(split_dir / "val")
    for i, row in val.manifest[~val.manifest["occluded"]].iterrows():
        assert np.array_equal(val.images[i], clean.images[by_id[row["id"]]])


def test_group_split_properties() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(50, 400))
        labels = pd.Series(rng.choice(list("abcdefg"), size=n))
        groups = pd.Series(rng.integers(0, max(2, n // int(rng.integers(1, 6))), size=n))
        frac = float(rng.uniform(0.2, 0.8))
        is_val = group_split(labels, groups, frac, seed=trial)
        assert not set(groups[is_val]) & set(groups[~is_val])  # no group on both sides
        assert abs(is_val.mean() - frac) < 0.15
        again = group_split(labels, groups, frac, seed=trial)
        assert np.array_equal(is_val, again)


def test_singleton_groups_stratify_closely() -> None:
    labels = pd.Series(np.repeat(list("abcdefg"), 100))
    groups = pd.Series(np.arange(700))
    is_val = group_split(labels, groups, 0.5, seed=3)
    per_class = pd.Series(is_val).groupby(labels).sum()
    assert (per_class - 50).abs().max() <= 1
