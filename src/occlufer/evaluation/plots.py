"""PNG plots for the report and MLflow (DVC renders its own from the CSV files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from occlufer.viz import image_grid


def _plt():  # noqa: ANN202 - matplotlib.pyplot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def robustness_png(table: pd.DataFrame, auc: Mapping[str, float], path: Path) -> None:
    """Accuracy against occluded ratio, one line per occluder type (area in the legend)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for col in table.columns.drop("ratio"):
        ax.plot(table["ratio"], table[col], marker="o", ms=3,
                label=f"{col} (auc {auc.get(col, np.nan):.3f})")
    ax.set_xlabel("occluded fraction of the face")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title("Robustness: clean val faces re-occluded")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reliability_png(tables: Mapping[str, pd.DataFrame], ece: Mapping[str, float],
                    path: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per bin (diagonal = calibrated)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    for name, t in tables.items():
        if len(t):
            ax.plot(t["confidence"], t["accuracy"], marker="o", ms=4,
                    label=f"{name} (ECE {ece.get(name, np.nan):.3f})")
    ax.set_xlabel("confidence (top-class probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Reliability diagram")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def training_png(history: pd.DataFrame, path: Path) -> None:
    """Loss and accuracy per epoch from ``models/history.csv``."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    for col in ("train/loss", "val/loss"):
        if col in history:
            a.plot(history["epoch"], history[col], marker="o", ms=3, label=col)
    for col in ("train/acc", "val/acc", "val_occluded/acc"):
        if col in history:
            b.plot(history["epoch"], history[col], marker="o", ms=3, label=col)
    for ax, name in ((a, "loss"), (b, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def mistakes_png(images: Sequence[np.ndarray], captions: Sequence[str], path: Path,
                 per_row: int = 8) -> None:
    """The given faces in rows of ``per_row``, each captioned (true / predicted / confidence)."""
    rows = [list(images[i:i + per_row]) for i in range(0, len(images), per_row)]
    caps = [list(captions[i:i + per_row]) for i in range(0, len(captions), per_row)]
    scale = max(1, round(96 / images[0].shape[0]))
    image_grid(rows, captions=caps, scale=scale, pad=4).save(path)
