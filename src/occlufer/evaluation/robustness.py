"""Robustness curves: accuracy as the clean faces are re-occluded by more and more of each type.

For every occluder type and ratio, each face is occluded with the occlusion library, its shape,
colours and texture drawn from ``item_rng(seed, face id, "robustness")``. The same generator is
used at every ratio, so a face keeps its occluder and only the covered fraction grows (the
level-field occluders cover nested regions). Ratio 0 is the clean face itself.

A curve is summarised by its normalised area, ``auc = area under accuracy(ratio) / (ratio
range)``: the mean accuracy over the range, in [0, 1], higher = more robust. A single point is
summarised by its gap (:func:`gap_metrics`): the clean accuracy of the same faces minus their
accuracy re-occluded at one ratio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import auc as area_under

from occlufer.occlusion import OcclusionSpec, occlude_images
from occlufer.occlusion.engine import resolve_workers
from occlufer.rng import item_rng

PURPOSE = "robustness"


def stratified_subset(labels: np.ndarray, max_faces: int, seed: int) -> np.ndarray:
    """Sorted row indices: all rows, or ``max_faces`` of them in the class proportions.

    Per class, the quota is rounded by largest remainder and filled with a seeded permutation.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_faces:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * max_faces / n
    quota = np.floor(exact).astype(int)
    quota[np.argsort(-(exact - quota), kind="stable")[: max_faces - quota.sum()]] += 1
    rng = item_rng(seed, "subset", PURPOSE)
    rows = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota,
                                                                              strict=True)]
    return np.sort(np.concatenate(rows))


def trapezoid_weights(ratios: Sequence[float]) -> np.ndarray:
    """Weights w with ``w @ acc == auc(ratios, acc) / (max - min)`` (the normalised area)."""
    r = np.asarray(ratios, dtype=np.float64)
    w = np.zeros(len(r))
    d = np.diff(r) / 2
    w[:-1] += d
    w[1:] += d
    return w / (r[-1] - r[0])


@dataclasses.dataclass
class Curves:
    """Per-face correctness ``correct[type]`` (faces × ratios) and the summary table."""

    ratios: list[float]
    correct: dict[str, np.ndarray]

    def table(self) -> pd.DataFrame:
        """Wide: a ``ratio`` column, then one accuracy column per occluder type."""
        return pd.DataFrame({"ratio": self.ratios,
                             **{t: c.mean(axis=0) for t, c in self.correct.items()}})

    def auc(self) -> dict[str, float]:
        """Normalised area under each type's curve (scikit-learn's trapezoidal ``auc``)."""
        span = self.ratios[-1] - self.ratios[0]
        return {t: float(area_under(self.ratios, c.mean(axis=0)) / span)
                for t, c in self.correct.items()}

    def face_scores(self) -> np.ndarray:
        """Faces × types: each face's contribution to each area (the mean over faces is auc)."""
        w = trapezoid_weights(self.ratios)
        return np.stack([c.astype(np.float64) @ w for c in self.correct.values()], axis=1)

    def without(self, ratio: float) -> Curves:
        """The same curves less the column at ``ratio``."""
        keep = [i for i, r in enumerate(self.ratios) if r != float(ratio)]
        return Curves([self.ratios[i] for i in keep],
                      {t: c[:, keep] for t, c in self.correct.items()})


def gap_metrics(curves: Curves, clean_correct: np.ndarray, ratio: float,
                prefix: str = "robustness") -> dict[str, float]:
    """Per type, accuracy at ``ratio`` and the gap to the clean accuracy of the same faces.

    ``clean_correct`` is per face (the rows of ``curves.correct``) whether the unoccluded face
    was classified right. Keys ``<prefix>/<type>/acc_at_gap`` and ``<prefix>/<type>/gap`` (clean
    accuracy minus that accuracy, in accuracy units: 0.05 = 5 points).
    """
    col = curves.ratios.index(float(ratio))
    clean_correct = np.asarray(clean_correct, dtype=bool)
    clean = float(clean_correct.mean())
    out: dict[str, float] = {}
    for kind, correct in curves.correct.items():
        if len(correct) != len(clean_correct):
            raise ValueError(f"{kind}: {len(correct)} faces in the curves, "
                             f"{len(clean_correct)} clean results")
        acc = float(correct[:, col].mean())
        out[f"{prefix}/{kind}/acc_at_gap"] = acc
        out[f"{prefix}/{kind}/gap"] = clean - acc
    return out


def robustness_curves(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                      ids: Sequence[str], y_true: np.ndarray, spec: OcclusionSpec, seed: int,
                      types: Sequence[str], ratios: Sequence[float], workers: int = 0,
                      clean_pred: np.ndarray | None = None) -> Curves:
    """Occlude ``images`` by each type at each ratio and record which predictions are right.

    ``predict`` maps N×H×W uint8 faces to N predicted class indices; ``clean_pred`` (the
    predictions on the unoccluded faces, when already known) saves one pass at ratio 0.
    """
    images = np.asarray(images)
    y_true = np.asarray(y_true)
    ids = [str(i) for i in ids]
    n_workers = resolve_workers(workers, len(images))
    cache: dict[float, np.ndarray] = {}
    correct: dict[str, np.ndarray] = {}
    for kind in types:
        cols = []
        for r in ratios:
            if r == 0:
                if 0.0 not in cache:
                    pred = clean_pred if clean_pred is not None else predict(images)
                    cache[0.0] = np.asarray(pred) == y_true
                cols.append(cache[0.0])
                continue
            one = dataclasses.replace(spec.only(kind), ratio=(float(r), float(r)))
            occ = occlude_images(images, ids, seed, one, purpose=PURPOSE, workers=n_workers)
            cols.append(predict(occ.images) == y_true)
        correct[kind] = np.stack(cols, axis=1)
    return Curves([float(r) for r in ratios], correct)
