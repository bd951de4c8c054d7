"""Robustness curves: accuracy as the clean faces are re-occluded by more and more of each type.
A face keeps its occluder (``item_rng(seed, face id, "robustness")``) as the ratio grows. A curve
is summarised by its normalised area, one ratio by its gap (clean accuracy minus accuracy there).
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
    """Sorted row indices: all rows, or ``max_faces`` of them in the class proportions (quotas
    rounded by largest remainder, filled by a seeded permutation per class)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_faces:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * max_faces / n
    quota = np.floor(exact).astype(int)
    quota[np.argsort(-(exact - quota), kind="stable")[: max_faces - quota.sum()]] += 1
    rng = item_rng(seed, "subset", PURPOSE)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q]
                                   for c, q in zip(classes, quota, strict=True)]))


def trapezoid_weights(ratios: Sequence[float]) -> np.ndarray:
    """Weights w with ``w @ acc == auc(ratios, acc) / (max - min)`` (the normalised area)."""
    r = np.asarray(ratios, dtype=np.float64)
    d = np.diff(r) / 2
    return (np.r_[d, 0.0] + np.r_[0.0, d]) / (r[-1] - r[0])


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
    """Per type ``<prefix>/<type>/acc_at_gap`` (accuracy at ``ratio``) and ``/gap`` (the clean
    accuracy of the same faces, ``clean_correct`` per row of ``curves.correct``, minus it)."""
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
    """Which predictions are right with ``images`` occluded by each type at each ratio;
    ``clean_pred`` (predictions on the clean faces) saves the pass at ratio 0."""
    images = np.asarray(images)
    y_true = np.asarray(y_true)
    ids = [str(i) for i in ids]
    n_workers = resolve_workers(workers, len(images))
    clean = None
    if types and 0 in ratios:  # ratio 0: the clean faces, predicted once for every type
        clean = np.asarray(clean_pred if clean_pred is not None else predict(images)) == y_true

    def correct(kind: str, r: float) -> np.ndarray:
        if r == 0:
            return clean
        one = dataclasses.replace(spec.only(kind), ratio=(float(r), float(r)))
        occ = occlude_images(images, ids, seed, one, purpose=PURPOSE, workers=n_workers)
        return predict(occ.images) == y_true

    return Curves([float(r) for r in ratios],
                  {kind: np.stack([correct(kind, r) for r in ratios], axis=1) for kind in types})
