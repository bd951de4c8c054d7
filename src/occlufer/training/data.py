"""The split stores as the arrays :func:`~occlufer.training.fit` trains and selects on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from occlufer.data.store import Store, manifest_keypoints
from occlufer.occlusion.shapes import POINTS
from occlufer.training.augment import TrainArrays, source_rows
from occlufer.training.loop import ValArrays


def label_codes(manifest: pd.DataFrame) -> np.ndarray:
    """Class indices of the (categorical) label column."""
    return manifest["label"].cat.codes.to_numpy(dtype=np.int64)


def train_arrays(store: Store) -> TrainArrays:
    """Images, labels, occluded flags, each occluded row's clean source row, masks and the
    detected keypoints (where fresh occlusions place the region occluders)."""
    m = store.manifest
    occluded = m["occluded"].to_numpy(dtype=bool)
    src = m["src_id"].to_numpy() if "src_id" in m.columns else m["id"].to_numpy()
    return TrainArrays(images=store.images, labels=label_codes(m), occluded=occluded,
                       source=source_rows(m["id"].to_numpy(), src, occluded), masks=store.masks,
                       points=manifest_keypoints(m, POINTS))


def val_arrays(store: Store) -> ValArrays:
    """Images, labels and occluded flags of the val store."""
    m = store.manifest
    return ValArrays(store.images, label_codes(m), m["occluded"].to_numpy(dtype=bool))
