"""Calibration of the top-label confidence: reliability table and expected calibration error.

A model that says "90 %" should be right 90 % of the time. Faces are put into ``bins``
equal-width bins of their top-class probability; per bin, scikit-learn's
:func:`~sklearn.calibration.calibration_curve` gives the accuracy and the mean confidence. The
ECE is the face-weighted mean gap ``|accuracy - confidence|`` over the bins.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int) -> pd.DataFrame:
    """One row per non-empty bin: ``lower``, ``upper``, ``confidence``, ``accuracy``, ``count``."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    hit = np.asarray(correct, dtype=bool)
    cols = ["lower", "upper", "confidence", "accuracy", "count"]
    if len(conf) == 0:
        return pd.DataFrame(columns=cols)
    acc, mean_conf = calibration_curve(hit.astype(int), conf, n_bins=bins, strategy="uniform",
                                       pos_label=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], conf)  # the binning rule of calibration_curve
    count = np.bincount(ids, minlength=bins)
    nonzero = np.flatnonzero(count)
    return pd.DataFrame({"lower": edges[nonzero], "upper": edges[nonzero + 1],
                         "confidence": mean_conf, "accuracy": acc,
                         "count": count[nonzero]})[cols]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """Face-weighted mean ``|accuracy - confidence|`` over equal-width bins (NaN if empty)."""
    table = reliability(confidence, correct, bins)
    if table.empty:
        return float("nan")
    w = table["count"].to_numpy(dtype=np.float64)
    gap = np.abs(table["accuracy"].to_numpy() - table["confidence"].to_numpy())
    return float((w * gap).sum() / w.sum())
