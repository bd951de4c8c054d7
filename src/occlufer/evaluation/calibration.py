"""Calibration of the top-label confidence: reliability table (scikit-learn's
:func:`~sklearn.calibration.calibration_curve` over equal-width bins) and expected calibration
error (the face-weighted mean ``|accuracy - confidence|`` over the bins)."""

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int) -> pd.DataFrame:
    """One row per non-empty bin: ``lower``, ``upper``, ``confidence``, ``accuracy``, ``count``."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    cols = ["lower", "upper", "confidence", "accuracy", "count"]
    if len(conf) == 0:
        return pd.DataFrame(columns=cols)
    acc, mean_conf = calibration_curve(np.asarray(correct, dtype=bool).astype(int), conf,
                                       n_bins=bins, strategy="uniform", pos_label=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    count = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=bins)  # its binning
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
