"""S400 train: fit ``model.name`` on ``data/split/train``, track it in MLflow, write ``models/``.

Outputs: ``model.pt`` (weights + classes + size), ``checkpoint.pt`` (last epoch, with the
optimizer), ``history.csv`` (one row per epoch, DVC plots) and ``mlflow_run.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from occlufer import tracking
from occlufer.config import Params, load_params
from occlufer.data.store import read_store
from occlufer.models import build_model, save_model
from occlufer.stages import run_stage
from occlufer.training import EpochStats, fit, resolve_device

SRC = Path("data/split")
OUT = Path("models")


def label_codes(manifest: pd.DataFrame) -> np.ndarray:
    """Class indices of the (categorical) label column."""
    return manifest["label"].cat.codes.to_numpy(dtype=np.int64)


def train(params: Params, src: Path = SRC, out: Path = OUT) -> list[EpochStats]:
    """Train, log to MLflow, and write the model folder; returns the per-epoch history.

    Besides ``src`` (``data/split``), the run records what the model was trained on from the
    sibling stage folders: the occlusion preview and split summary as artifacts, and acquire's
    counts as ``acquire/read``, ``acquire/kept``, ``acquire/rejected``.
    """
    cfg = params.train
    train_store, val_store = read_store(src / "train"), read_store(src / "val")
    classes = list(train_store.manifest["label"].cat.categories)
    image_size = int(train_store.images.shape[1])
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(params.seed)
    model = build_model(params.model.name, num_classes=len(classes), image_size=image_size,
                        dropout=params.model.dropout)
    out.mkdir(parents=True, exist_ok=True)
    print(f"train: {params.model.name} on {len(train_store)} faces ({len(val_store)} val), "
          f"{len(classes)} classes, device {device}")

    def on_epoch(stats: EpochStats, net: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        tracking.log_metrics(stats.metrics(), step=stats.epoch)
        torch.save({"epoch": stats.epoch, "model": net.state_dict(),
                    "optimizer": opt.state_dict()}, out / "checkpoint.pt")

    with tracking.start_run(cfg.mlflow_experiment, params.to_dict()) as run:
        tracking.write_run_ref(run, out)
        for path in (src.parent / "occluded" / "preview.png", src / "summary.csv"):
            if path.is_file():
                tracking.log_artifact(path, "data")
        acquire_summary = src.parent / "acquired" / "summary.json"
        if acquire_summary.is_file():
            counts = json.loads(acquire_summary.read_text(encoding="utf-8"))
            tracking.log_metrics({f"acquire/{k}": counts[k] for k in ("read", "kept", "rejected")})
        history = fit(model, train_store.images, label_codes(train_store.manifest),
                      val_store.images, label_codes(val_store.manifest),
                      val_store.manifest["occluded"].to_numpy(dtype=bool),
                      cfg, params.seed, device, on_epoch=on_epoch)
        model.cpu().eval()
        save_model(out / "model.pt", model, name=params.model.name, classes=classes,
                   image_size=image_size, dropout=params.model.dropout)
        pd.DataFrame([{"epoch": h.epoch, **h.metrics()} for h in history]).to_csv(
            out / "history.csv", index=False)
        if cfg.log_model:  # the pyfunc model: preprocessing + classes, servable by MLflow
            tracking.log_pyfunc_model(out / "model.pt")
        print(f"train: done, MLflow run {run.info.run_id} -> {out}")
    return history


def main() -> None:
    run_stage("train", lambda: train(load_params()))


if __name__ == "__main__":
    main()
