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


# --- property tests (hypothesis) -------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 300), n_groups=st.integers(1, 120), n_cls=st.integers(1, 7),
       val=st.floats(0.1, 0.9), test=st.sampled_from([0.0, 0.0, 0.15]), seed=st.integers(0, 99),
       data=st.data())
def test_no_group_ever_straddles_sides(n, n_groups, n_cls, val, test, seed, data) -> None:
    from occlufer.data.split import group_assign

    labels = pd.Series(data.draw(st.lists(st.integers(0, n_cls - 1), min_size=n, max_size=n)))
    groups = pd.Series(data.draw(st.lists(st.integers(0, n_groups - 1), min_size=n,
                                          max_size=n))).map(lambda g: f"subject-{g}")
    side = group_assign(labels, groups, (1 - val - test, val, test) if test else (1 - val, val),
                        seed)
    assert (pd.Series(side).groupby(groups.to_numpy()).nunique() == 1).all()
    assert np.array_equal(side, group_assign(labels, groups,
                                             (1 - val - test, val, test) if test
                                             else (1 - val, val), seed))


@settings(max_examples=80, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(0, 6), st.integers(1, 40)), min_size=1,
                      max_size=7, unique_by=lambda t: t[0]),
       val=st.floats(0.1, 0.9), seed=st.integers(0, 99), data=st.data())
def test_stratified_within_one_image_per_class(sizes, val, seed, data) -> None:
    """Face + occluded copy groups (size 2), a few singletons: each class within ±1 image."""
    labels, groups = [], []
    for cls, n_faces in sizes:
        for f in range(n_faces):
            size = data.draw(st.sampled_from([2, 2, 2, 1]))
            labels += [cls] * size
            groups += [f"{cls}-{f}"] * size
    labels, groups = pd.Series(labels), pd.Series(groups)
    is_val = group_split(labels, groups, val, seed)
    per_class = pd.Series(is_val).groupby(labels).sum()
    totals = labels.value_counts()
    for cls, got in per_class.items():
        sizes_c = groups[labels == cls].value_counts()
        target = val * totals[cls]
        # reachable counts are sums of group sizes; allow the best reachable value ± 1 image
        ones, twos = int((sizes_c == 1).sum()), int((sizes_c == 2).sum())
        reachable = {a + 2 * b for a in range(ones + 1) for b in range(twos + 1)}
        best = min(abs(r - target) for r in reachable)
        assert abs(got - target) <= max(1.0, best + 1e-9), (cls, got, target, sizes_c.to_dict())


# --- strategies --------------------------------------------------------------------------------


def _stage_inputs(tmp_path: Path, p, source_split=None) -> tuple[Path, Path]:
    from occlufer.data.store import write_store
    from occlufer.stages.acquire import acquire
    from occlufer.stages.occlude import occlude

    acquire(p, tmp_path / "acq")
    if source_split is not None:
        store = read_store(tmp_path / "acq", mmap=False)
        store.manifest["source_split"] = source_split(store.manifest)
        write_store(tmp_path / "acq", store)
    occlude(p, tmp_path / "acq", tmp_path / "occ")
    return tmp_path / "acq", tmp_path / "occ"


def test_test_fraction_holds_out_a_leak_free_test_split(tmp_path: Path, make_params) -> None:
    from occlufer.stages.mix_split import mix_split

    p = make_params("split.val_fraction=0.3", "split.test_fraction=0.2",
                    "acquire.n_subjects=40")
    acq, occ = _stage_inputs(tmp_path, p)
    table = mix_split(p, acq, occ, tmp_path / "split")
    stores = {s: read_store(tmp_path / "split" / s).manifest for s in ("train", "val", "test")}
    for a in stores:
        for b in stores:
            if a < b:
                assert not set(stores[a]["group"]) & set(stores[b]["group"])
                assert not set(stores[a]["src_id"]) & set(stores[b]["src_id"])
    n = sum(len(m) for m in stores.values())
    assert abs(len(stores["test"]) / n - 0.2) < 0.08 and abs(len(stores["val"]) / n - 0.3) < 0.08
    assert {"test/clean", "test/occluded"} <= set(table.columns)
    assert table.loc["total"].sum() == n


def test_keep_source_keeps_the_datasets_split(tmp_path: Path, make_params) -> None:
    from occlufer.stages.mix_split import mix_split

    p = make_params("split=keep_source", "acquire.n_subjects=20", "acquire.n_per_class=20")

    def own(m: pd.DataFrame) -> pd.Series:  # by subject, like a dataset's official split
        k = m["group"].str[-4:].astype(int) % 10
        return pd.Series(np.select([k < 6, k < 8], ["train", "val"], "test"), index=m.index)

    acq, occ = _stage_inputs(tmp_path, p, own)
    mix_split(p, acq, occ, tmp_path / "split")
    clean = read_store(acq).manifest.set_index("id")["source_split"]
    for name in ("train", "val", "test"):
        m = read_store(tmp_path / "split" / name).manifest
        assert (clean[m["src_id"]].to_numpy() == name).all()
        assert m["occluded"].sum() == (~m["occluded"]).sum()  # occluded copies inside each split
    # no val in the source: one is carved from train, by group
    def no_val(m: pd.DataFrame) -> pd.Series:
        return own(m).replace("val", "train")

    acq, occ = _stage_inputs(tmp_path / "b", p, no_val)
    mix_split(p, acq, occ, tmp_path / "b" / "split")
    val = read_store(tmp_path / "b" / "split" / "val").manifest
    train = read_store(tmp_path / "b" / "split" / "train").manifest
    assert len(val) and not set(val["group"]) & set(train["group"])
    assert (read_store(acq).manifest.set_index("id")["source_split"][val["src_id"]]
            == "train").all()


def test_keep_source_without_source_split_is_a_one_line_error(tmp_path: Path,
                                                              make_params) -> None:
    import pytest

    from occlufer.errors import OccluferError
    from occlufer.stages.mix_split import mix_split

    p = make_params("split=keep_source")
    acq, occ = _stage_inputs(tmp_path, p)
    with pytest.raises(OccluferError) as err:
        mix_split(p, acq, occ, tmp_path / "split")
    assert "\n" not in str(err.value)
    assert "source_split" in str(err.value) and "group_stratified" in str(err.value)


# --- split.source_val (issue #13: the dataset's own val as the held-out test) -------------------


def _own_train_val(m: pd.DataFrame) -> pd.Series:
    """A dataset's own split by subject: ~70% train, ~30% val, no test (like FER2013 folders)."""
    k = m["group"].str[-4:].astype(int) % 10
    return pd.Series(np.where(k < 7, "train", "val"), index=m.index)


def test_source_val_test_makes_the_own_val_the_test_split(tmp_path: Path, make_params,
                                                          capsys) -> None:
    from occlufer.stages.mix_split import mix_split

    p = make_params("split=keep_source", "split.source_val=test", "split.val_fraction=0.25",
                    "acquire.n_subjects=40", "acquire.n_per_class=20")
    acq, occ = _stage_inputs(tmp_path, p, _own_train_val)
    table = mix_split(p, acq, occ, tmp_path / "split")
    own = read_store(acq).manifest.set_index("id")["source_split"]
    stores = {s: read_store(tmp_path / "split" / s).manifest for s in ("train", "val", "test")}
    # the dataset's own val, all of it and nothing else, is the test split (with its copies)
    assert set(stores["test"]["src_id"]) == set(own[own == "val"].index)
    # val is carved from the dataset's own train, by group, at about val_fraction of it
    assert (own[stores["val"]["src_id"]].to_numpy() == "train").all()
    assert (own[stores["train"]["src_id"]].to_numpy() == "train").all()
    n_train_own = 2 * int((own == "train").sum())
    assert abs(len(stores["val"]) / n_train_own - 0.25) < 0.08
    for a in stores:
        for b in stores:
            if a < b:
                assert not set(stores[a]["group"]) & set(stores[b]["group"]), (a, b)
                assert not set(stores[a]["src_id"]) & set(stores[b]["src_id"]), (a, b)
    for m in stores.values():
        assert len(m) and m["occluded"].sum() == (~m["occluded"]).sum()
    assert table.loc["total"].sum() == sum(len(m) for m in stores.values())
    out = capsys.readouterr().out
    assert "source_val = test" in out and "held-out test split" in out
    assert "val comes from train; carved" in out


def test_source_val_val_keeps_todays_split_and_writes_an_empty_test(tmp_path: Path,
                                                                    make_params) -> None:
    from occlufer.stages.mix_split import mix_split

    p = make_params("split=keep_source", "acquire.n_subjects=20")
    assert p.split.source_val == "val"  # the conf default: today's behaviour
    acq, occ = _stage_inputs(tmp_path, p, _own_train_val)
    (tmp_path / "split" / "test").mkdir(parents=True)
    (tmp_path / "split" / "test" / "stale.txt").write_text("from an older run")
    mix_split(p, acq, occ, tmp_path / "split")
    own = read_store(acq).manifest.set_index("id")["source_split"]
    for name in ("train", "val"):
        m = read_store(tmp_path / "split" / name).manifest
        assert set(m["src_id"]) == set(own[own == name].index)
    # no test rows: still a (zero-row) store, so validate can depend on data/split/test
    test = read_store(tmp_path / "split" / "test")
    assert len(test) == 0 and test.images.shape[1:] == (48, 48)
    assert test.masks is not None and test.masks.shape == (0, 48, 48)
    assert not (tmp_path / "split" / "test" / "stale.txt").exists()


def test_group_stratified_without_test_fraction_writes_an_empty_test(split_dir: Path) -> None:
    test = read_store(split_dir / "test")
    assert len(test) == 0 and {"id", "label", "group", "occluded"} <= set(test.manifest.columns)
