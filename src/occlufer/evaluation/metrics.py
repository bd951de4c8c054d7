"""Classification metrics (scikit-learn's) under flat ``prefix/name`` keys, and bootstrap
confidence intervals over faces."""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from occlufer.rng import item_rng

_BOOT_CHUNK = 8_000_000  # resample counts held at once (bootstraps × faces)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str],
                           prefix: str) -> dict[str, float]:
    """``<prefix>/acc``, ``/macro_f1`` (over the classes present in ``y_true``), ``/n`` and
    per class ``<prefix>/<class>/{precision,recall,f1,support}``."""
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(classes))),
                                                 zero_division=0)
    present = s > 0
    out = {f"{prefix}/acc": float(accuracy_score(y_true, y_pred)) if len(y_true) else np.nan,
           f"{prefix}/macro_f1": float(np.mean(f[present])) if present.any() else np.nan,
           f"{prefix}/n": float(len(y_true))}
    for i, name in enumerate(classes):
        for key, values in (("precision", p), ("recall", r), ("f1", f), ("support", s)):
            out[f"{prefix}/{name}/{key}"] = float(values[i])
    return out


def bootstrap_ci(scores: np.ndarray, n_boot: int, seed: int, name: str, level: float = 0.95,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval (low, high) of the mean of ``scores`` (n,) or (n, k) over
    rows, resampled by ``item_rng(seed, name, "bootstrap")``; NaN when there are no faces."""
    scores = np.asarray(scores, dtype=np.float64)
    n, tail = len(scores), scores.shape[1:]
    if n == 0:
        return np.full(tail, np.nan), np.full(tail, np.nan)
    flat = scores.reshape(n, -1)
    rng = item_rng(seed, name, "bootstrap")
    step = max(1, _BOOT_CHUNK // n)
    stats = np.concatenate([
        rng.multinomial(n, np.full(n, 1.0 / n), size=min(step, n_boot - start)) @ flat / n
        for start in range(0, n_boot, step)])
    alpha = (1.0 - level) / 2
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    return low.reshape(tail), high.reshape(tail)
