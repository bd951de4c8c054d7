"""Classification metrics (scikit-learn arithmetic) under flat ``prefix/name`` keys, and
bootstrap confidence intervals over faces."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from occlufer.rng import item_rng

_BOOT_CHUNK = 8_000_000  # resample counts held at once (bootstraps × faces)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str],
                           prefix: str) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision / recall / F1 / support.

    Keys look like ``val/acc``, ``val/macro_f1``, ``val/happy/f1``. Macro-F1 averages the
    classes present in ``y_true`` (a class the data lack would otherwise count as F1 = 0).
    """
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = s > 0
    out = {f"{prefix}/acc": float(accuracy_score(y_true, y_pred)) if len(y_true) else np.nan,
           f"{prefix}/macro_f1": float(np.mean(f[present])) if present.any() else np.nan,
           f"{prefix}/n": float(len(y_true))}
    for i, name in enumerate(classes):
        out[f"{prefix}/{name}/precision"] = float(p[i])
        out[f"{prefix}/{name}/recall"] = float(r[i])
        out[f"{prefix}/{name}/f1"] = float(f[i])
        out[f"{prefix}/{name}/support"] = float(s[i])
    return out


def bootstrap_ci(scores: np.ndarray, n_boot: int, seed: int, name: str, level: float = 0.95,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean of ``scores`` over faces (rows).

    ``scores`` is (n,) — e.g. 1.0 for a correct prediction — or (n, k) for k statistics that
    are means over the same faces (resampled together). Each resample draws n faces with
    replacement (multinomial counts, vectorised); the generator comes from ``(seed, name,
    "bootstrap")``, so an interval is reproducible and independent of the others. Returns
    (low, high), each of shape ``scores.shape[1:]``; NaN when there are no faces.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    tail = scores.shape[1:]
    if n == 0:
        return np.full(tail, np.nan), np.full(tail, np.nan)
    flat = scores.reshape(n, -1)
    rng = item_rng(seed, name, "bootstrap")
    step = max(1, _BOOT_CHUNK // n)
    means = []
    for start in range(0, n_boot, step):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(step, n_boot - start))
        means.append(counts @ flat / n)
    stats = np.concatenate(means)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    return low.reshape(tail), high.reshape(tail)


def confusion_png(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], title: str,
                  path: Path) -> None:
    """A row-normalised confusion matrix with counts, as a PNG (for MLflow and reports)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    from occlufer.evaluation.plots import save_figure

    save_figure(fig, path)  # no matplotlib version or date inside: same bytes for the same data
    plt.close(fig)
