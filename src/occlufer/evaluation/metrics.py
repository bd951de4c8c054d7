"""Classification metrics (scikit-learn arithmetic) under flat ``prefix/name`` keys."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str],
                           prefix: str) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision / recall / F1 / support.

    Keys look like ``val/acc``, ``val/macro_f1``, ``val/happy/f1``.
    """
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out = {f"{prefix}/acc": float(accuracy_score(y_true, y_pred)),
           f"{prefix}/macro_f1": float(np.mean(f)),
           f"{prefix}/n": float(len(y_true))}
    for i, name in enumerate(classes):
        out[f"{prefix}/{name}/precision"] = float(p[i])
        out[f"{prefix}/{name}/recall"] = float(r[i])
        out[f"{prefix}/{name}/f1"] = float(f[i])
        out[f"{prefix}/{name}/support"] = float(s[i])
    return out


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
    fig.savefig(path)
    plt.close(fig)
