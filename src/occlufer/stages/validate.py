"""S500 validate: score ``models/model.pt`` on clean and occluded val faces.

Writes ``reports/validate/`` — ``metrics.json`` (flat ``val/acc``-style keys, DVC metrics),
per-row predictions for DVC's confusion plots and confusion-matrix PNGs — and logs the same
metrics and files to the MLflow run that ``train`` opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from occlufer import tracking
from occlufer.config import Params, load_params
from occlufer.data.store import read_store
from occlufer.errors import OccluferError
from occlufer.evaluation import classification_metrics, confusion_png
from occlufer.models import load_model
from occlufer.stages import run_stage, write_json
from occlufer.training import predict_logits

DATA = Path("data/split/val")
MODELS = Path("models")
OUT = Path("reports/validate")


def validate(params: Params, data: Path = DATA, models: Path = MODELS,
             out: Path = OUT) -> dict[str, float]:
    """Evaluate and write the report folder; returns the metrics."""
    store = read_store(data)
    model, meta = load_model(models / "model.pt")
    classes = meta["classes"]
    data_classes = list(store.manifest["label"].cat.categories)
    if data_classes != classes:
        raise OccluferError(f"{data}: classes {data_classes} differ from the model's {classes}; "
                            "retrain with `dvc repro`")
    logits = predict_logits(model, store.images, params.validate.batch_size, torch.device("cpu"))
    y_true = store.manifest["label"].cat.codes.to_numpy(dtype=np.int64)
    y_pred = logits.argmax(axis=1)
    occluded = store.manifest["occluded"].to_numpy(dtype=bool)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    for prefix, rows in (("val", ~occluded), ("val_occluded", occluded)):
        if not rows.any():
            continue
        metrics.update(classification_metrics(y_true[rows], y_pred[rows], classes, prefix))
        pd.DataFrame({"actual": np.asarray(classes)[y_true[rows]],
                      "predicted": np.asarray(classes)[y_pred[rows]]}).to_csv(
            out / f"predictions_{prefix}.csv", index=False)
        confusion_png(y_true[rows], y_pred[rows], classes, f"{prefix} (n={int(rows.sum())})",
                      out / f"confusion_{prefix}.png")
    if "val/acc" in metrics and "val_occluded/acc" in metrics:
        metrics["val/occlusion_drop"] = metrics["val/acc"] - metrics["val_occluded/acc"]
    write_json(out / "metrics.json", metrics)
    with tracking.resume_run(models / tracking.RUN_FILE):
        tracking.log_metrics(metrics)
        tracking.log_artifacts(out, "validate")
    print(f"validate: val/acc {metrics.get('val/acc', float('nan')):.4f}, "
          f"val_occluded/acc {metrics.get('val_occluded/acc', float('nan')):.4f} -> {out}")
    return metrics


def main() -> None:
    run_stage("validate", lambda: validate(load_params()))


if __name__ == "__main__":
    main()
