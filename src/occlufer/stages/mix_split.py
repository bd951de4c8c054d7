"""S300 mix_split: clean and occluded copies mixed 1:1, split into ``data/split/{train,val,test}``.

``split.strategy``: ``group_stratified`` (by subject, stratified by class: a face and its occluded
copy land together) or ``keep_source`` (the dataset's ``source_split``; see :func:`_keep_source`).
``test`` is always written (zero rows when there is none): ``validate`` depends on it."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from occlufer.config import Params
from occlufer.data.split import group_assign, group_split
from occlufer.data.store import Store, read_store, write_store
from occlufer.errors import OccluferError
from occlufer.stages import run_stage, stage_params

CLEAN = Path("data/acquired")
OCCLUDED = Path("data/occluded")
OUT = Path("data/split")
SPLITS = ("train", "val", "test")


def mix(clean: Store, occluded: Store) -> Store:
    """Clean and occluded copies of the same faces, 1:1, with an ``occluded`` flag."""
    left = clean.manifest.assign(src_id=clean.manifest["id"], occluded=False, occluder="none",
                                 fill="none", target_ratio=0.0, occluded_fraction=0.0)
    right = occluded.manifest.assign(occluded=True)
    if sorted(right["src_id"]) != sorted(left["src_id"]):
        raise OccluferError(f"{OCCLUDED} does not hold one copy of each face in {CLEAN}; "
                            "re-run both stages with `dvc repro --force occlude`")
    manifest = pd.concat([left, right[left.columns]], ignore_index=True)
    images = np.concatenate([np.asarray(clean.images), np.asarray(occluded.images)])
    blank = np.zeros(clean.images.shape, dtype=bool)
    masks = blank if occluded.masks is None else occluded.masks
    return Store(images, manifest, np.concatenate([blank, masks]))


def _keep_source(m: pd.DataFrame, val_fraction: float, seed: int,
                 source_val: str = "val") -> np.ndarray:
    """The source's split per row (``source_val="test"``: val -> test; no val: carved by group)."""
    if "source_split" not in m.columns or (m["source_split"].fillna("") == "").all():
        raise OccluferError("split.strategy = keep_source needs the dataset's own split in the "
                            f"`source_split` column of {CLEAN}, but it is empty (e.g. synthetic "
                            "faces); use split.strategy=group_stratified")
    split = m["source_split"].fillna("").astype(str).to_numpy().copy()
    bad = sorted(set(split) - set(SPLITS))
    if bad:
        raise OccluferError(f"split.strategy = keep_source: {int(np.isin(split, bad).sum())} "
                            f"rows of {CLEAN} have source_split {bad}; allowed: train, val, test "
                            "(fix the reader or use split.strategy=group_stratified)")
    own_val = split == "val"
    if source_val == "test":
        own_test = int((split == "test").sum())
        split[own_val] = "test"
        print(f"mix_split: split.source_val = test: the source's own val ({int(own_val.sum())} "
              "images" + (f", with its own test: {own_test}" if own_test else "") + ") is the "
              "held-out test split (data/split/test: never read by train, reported by validate)")
    if not (split == "val").any():
        rows = np.flatnonzero(split == "train")
        is_val = group_split(m["label"].iloc[rows], m["group"].iloc[rows], val_fraction, seed)
        split[rows[is_val]] = "val"
        why = ("val comes from train" if source_val == "test" and own_val.any()
               else "the source has no val split")
        print(f"mix_split: {why}; carved {int(is_val.sum())} images (val_fraction "
              f"{val_fraction}) from its train by group")
    shared = m.assign(split=split).groupby("group")["split"].nunique()
    if (shared > 1).any():
        print(f"mix_split: warning: {int((shared > 1).sum())} groups appear in more than one "
              "source split (the dataset's own split is kept as it is)")
    return split


def mix_split(params: Params, clean_dir: Path = CLEAN, occluded_dir: Path = OCCLUDED,
              out: Path = OUT) -> pd.DataFrame:
    """Write the train / val (/ test) stores; returns the class × split × copy table."""
    cfg = params.split
    mixed = mix(read_store(clean_dir), read_store(occluded_dir))
    m = mixed.manifest
    if cfg.strategy == "keep_source":
        split = _keep_source(m, cfg.val_fraction, params.seed, cfg.source_val)
    else:
        fractions = (1.0 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction,
                     cfg.test_fraction)
        split = np.asarray(SPLITS)[group_assign(m["label"], m["group"], fractions, params.seed)]
    m["split"] = split
    for name in ("train", "val"):
        if not (split == name).any():
            raise OccluferError(f"split.val_fraction = {cfg.val_fraction} (strategy {cfg.strategy})"
                                f" leaves no {name} images ({m['group'].nunique()} groups); use "
                                "more faces or another fraction")
    for name in SPLITS:  # test too, with zero rows when there is none (a validate dependency)
        if (out / name).exists():
            shutil.rmtree(out / name)
        write_store(out / name, mixed.subset(split == name))
    table = summary_table(m)
    table.to_csv(out / "summary.csv")
    sizes = " / ".join(f"{int((split == s).sum())} {s}" for s in SPLITS if (split == s).any())
    print(f"mix_split: {sizes} faces (strategy {cfg.strategy}, val_fraction "
          f"{cfg.val_fraction}) -> {out}")
    print(table.to_string())
    return table


def summary_table(m: pd.DataFrame) -> pd.DataFrame:
    """Counts per class (rows, plus ``total``) × split/copy (``train/clean``, ...)."""
    present = [s for s in SPLITS if (m["split"] == s).any()]
    table = (m.assign(copy=np.where(m["occluded"], "occluded", "clean"),
                      split=pd.Categorical(m["split"], categories=present))
             .pivot_table(index="label", columns=["split", "copy"], values="id",
                          aggfunc="count", fill_value=0, observed=False))
    table.columns = [f"{s}/{c}" for s, c in table.columns]
    table.loc["total"] = table.sum()
    return table.astype(int)


if __name__ == "__main__":
    run_stage("mix_split", lambda: mix_split(stage_params()))
