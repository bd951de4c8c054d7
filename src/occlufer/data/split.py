"""Leak-free splitting: whole groups go to one side, class proportions kept close to target."""

from __future__ import annotations

import numpy as np
import pandas as pd

from occlufer.rng import item_rng


def group_split(labels: pd.Series, groups: pd.Series, val_fraction: float,
                seed: int) -> np.ndarray:
    """Boolean array, True for rows assigned to val.

    Every group lands wholly on one side. Groups are visited in a seeded random order, largest
    first, and each goes to the side whose per-class counts it brings closer to
    ``val_fraction`` / ``1 - val_fraction`` of each class total (greedy stratification).
    """
    codes, uniques = pd.factorize(groups, sort=True)
    y = pd.factorize(labels, sort=True)[0]
    counts = np.zeros((len(uniques), y.max() + 1 if len(y) else 0), dtype=np.int64)
    np.add.at(counts, (codes, y), 1)
    target_val = val_fraction * counts.sum(axis=0)
    target_train = counts.sum(axis=0) - target_val
    rng = item_rng(seed, "group_split", "split")
    order = rng.permutation(len(uniques))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    val = np.zeros(counts.shape[1])
    train = np.zeros(counts.shape[1])
    to_val = np.zeros(len(uniques), dtype=bool)
    for g in order:
        c = counts[g]
        cost_val = np.square(val + c - target_val).sum() + np.square(train - target_train).sum()
        cost_train = np.square(val - target_val).sum() + np.square(train + c - target_train).sum()
        if cost_val < cost_train:
            val += c
            to_val[g] = True
        else:
            train += c
    return to_val[codes]
