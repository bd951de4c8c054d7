"""PNG plots for the report, MLflow and ``dvc plots show`` (embedded as ``<img>``: no network).
The PNGs are DVC outputs, so byte-reproducible: matplotlib's default style whatever the user's
``matplotlibrc``, and no version or date in the file (:func:`save_figure`).
"""

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from occlufer.viz import image_grid


def _plt():  # noqa: ANN202 - matplotlib.pyplot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG without matplotlib's version (the varying metadata)."""
    fig.savefig(path, format="png", metadata={"Software": None})


@contextmanager
def _figure(path: Path, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``(figure, axes)`` drawn under matplotlib's default style, then saved to ``path``."""
    plt = _plt()
    with plt.style.context("default"):
        fig, axes = plt.subplots(**subplots)
        try:
            yield fig, axes
            fig.tight_layout()
            save_figure(fig, path)
        finally:
            plt.close(fig)


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:  # none when every series was missing
        ax.legend(**kwargs)


def confusion_png(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], title: str,
                  path: Path) -> None:
    """A row-normalised confusion matrix with counts."""
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    with _figure(path, figsize=(6, 5), dpi=100) as (_, ax):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="predicted", ylabel="actual", title=title)
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")


def robustness_png(table: pd.DataFrame, auc: Mapping[str, float], path: Path) -> None:
    """Accuracy against occluded ratio, one line per occluder type (area in the legend)."""
    with _figure(path, figsize=(7, 4.5), dpi=100) as (_, ax):
        for col in table.columns.drop("ratio"):
            ax.plot(table["ratio"], table[col], marker="o", ms=3,
                    label=f"{col} (auc {auc.get(col, np.nan):.3f})")
        ax.set(xlabel="occluded fraction of the face", ylabel="accuracy", ylim=(0, 1),
               title="Robustness: clean val faces re-occluded")
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7, loc="lower left", ncol=2)


def reliability_png(tables: Mapping[str, pd.DataFrame], ece: Mapping[str, float],
                    path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin (diagonal = calibrated)."""
    with _figure(path, figsize=(5, 5), dpi=100) as (_, ax):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
        for name, t in tables.items():
            if len(t):
                ax.plot(t["confidence"], t["accuracy"], marker="o", ms=4,
                        label=f"{name} (ECE {ece.get(name, np.nan):.3f})")
        ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1),
               ylim=(0, 1))
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=8, loc="upper left")
        ax.set_title("Reliability diagram")


def training_png(history: pd.DataFrame, path: Path) -> None:
    """Loss and accuracy per epoch from ``models/history.csv`` (train, clean and occluded val)."""
    from matplotlib.ticker import MaxNLocator

    with _figure(path, ncols=2, figsize=(9, 3.5), dpi=100) as (_, (a, b)):
        for ax, name, cols in ((a, "loss", ("train/loss", "val/loss")),
                               (b, "accuracy", ("train/acc", "val/acc", "val_occluded/acc"))):
            for col in cols:
                if col in history and history[col].notna().any():
                    ax.plot(history["epoch"], history[col], marker="o", ms=3, label=col)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(name)
            ax.grid(alpha=0.3)
            _legend(ax, fontsize=8)


def mistakes_png(images: Sequence[np.ndarray], captions: Sequence[str], path: Path,
                 per_row: int = 8) -> None:
    """The given faces in rows of ``per_row``, each captioned (true / predicted / confidence)."""
    rows = [list(images[i:i + per_row]) for i in range(0, len(images), per_row)]
    caps = [list(captions[i:i + per_row]) for i in range(0, len(captions), per_row)]
    scale = max(1, round(96 / images[0].shape[0]))
    image_grid(rows, captions=caps, scale=scale, pad=4).save(path)
