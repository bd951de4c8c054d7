"""Leak-free splitting: whole groups go to one side, class proportions kept close to target."""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from occlufer.rng import item_rng


def group_assign(labels: pd.Series, groups: pd.Series, fractions: Sequence[float],
                 seed: int) -> np.ndarray:
    """Side index per row; whole groups, largest first (seeded ties), go where they most cut
    the squared distance of class counts from ``fractions``; then single groups move."""
    frac = np.asarray(fractions, dtype=np.float64)
    codes, uniques = pd.factorize(groups, sort=True)
    y = pd.factorize(labels, sort=True)[0]
    n_cls = int(y.max()) + 1 if len(y) else 0
    counts = np.zeros((len(uniques), n_cls), dtype=np.float64)
    np.add.at(counts, (codes, y), 1)
    target = frac[:, None] * counts.sum(axis=0)[None, :]  # sides × classes
    rng = item_rng(seed, "group_split", "split")
    order = rng.permutation(len(uniques))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    cur = np.zeros_like(target)
    side = np.zeros(len(uniques), dtype=np.int64)
    for g in order:
        c = counts[g]
        # increase of sum((cur - target)^2) when adding c to each side
        delta = (c * c).sum() + 2 * ((cur - target) @ c)
        s = int(np.argmin(delta))
        side[g] = s
        cur[s] += c
    for _ in range(4):  # local search: move one group if it lowers the total squared error
        moved = False
        for g in order:
            c, s = counts[g], side[g]
            removal = (c * c).sum() - 2 * ((cur[s] - target[s]) @ c)
            gain = (c * c).sum() + 2 * ((cur - target) @ c)
            gain[s] = np.inf
            t = int(np.argmin(gain))
            if gain[t] + removal < -1e-9:
                cur[s] -= c
                cur[t] += c
                side[g] = t
                moved = True
        if not moved:
            break
    return side[codes]


def group_split(labels: pd.Series, groups: pd.Series, val_fraction: float,
                seed: int) -> np.ndarray:
    """Boolean array, True for rows assigned to val (two-way :func:`group_assign`)."""
    return group_assign(labels, groups, (1.0 - val_fraction, val_fraction), seed) == 1
