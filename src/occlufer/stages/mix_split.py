"""S300 mix_split: clean and occluded copies mixed 1:1, split into ``data/split/{train,val}``.

The split is by ``group`` (the subject, else the source image), so a face, its occluded copy and
every other image of the same subject land on the same side; class proportions are stratified.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from occlufer.config import Params, load_params
from occlufer.data.split import group_split
from occlufer.data.store import Store, read_store, write_store
from occlufer.errors import OccluferError
from occlufer.stages import run_stage

CLEAN = Path("data/acquired")
OCCLUDED = Path("data/occluded")
OUT = Path("data/split")


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
    clean_masks = np.zeros(clean.images.shape, dtype=bool)
    masks = np.concatenate([clean_masks, occluded.masks if occluded.masks is not None
                            else clean_masks])
    return Store(images, manifest, masks)


def mix_split(params: Params, clean_dir: Path = CLEAN, occluded_dir: Path = OCCLUDED,
              out: Path = OUT) -> pd.DataFrame:
    """Write the train and val stores; returns the class × split × clean/occluded table."""
    mixed = mix(read_store(clean_dir), read_store(occluded_dir))
    is_val = group_split(mixed.manifest["label"], mixed.manifest["group"],
                         params.split.val_fraction, params.seed)
    mixed.manifest["split"] = np.where(is_val, "val", "train")
    for name, rows in (("train", ~is_val), ("val", is_val)):
        if not rows.any():
            raise OccluferError(f"split.val_fraction = {params.split.val_fraction} leaves no "
                                f"{name} images ({mixed.manifest['group'].nunique()} groups); "
                                "use more faces or another fraction")
        write_store(out / name, mixed.subset(rows))
    table = (mixed.manifest.assign(copy=np.where(mixed.manifest["occluded"], "occluded", "clean"))
             .pivot_table(index="label", columns=["split", "copy"], values="id",
                          aggfunc="count", fill_value=0, observed=False))
    table.columns = [f"{s}/{c}" for s, c in table.columns]
    table.loc["total"] = table.sum()
    table.to_csv(out / "summary.csv")
    print(f"mix_split: {int((~is_val).sum())} train / {int(is_val.sum())} val faces "
          f"(val_fraction {params.split.val_fraction}) -> {out}")
    print(table.to_string())
    return table


def main() -> None:
    run_stage("mix_split", lambda: mix_split(load_params()))


if __name__ == "__main__":
    main()
