"""S500 validate: score ``models/model.pt`` on the clean and occluded val faces.

Writes ``reports/validate/`` with :func:`occlufer.evaluation.evaluate.evaluate` —
``metrics.json`` (flat ``val/acc``-style keys, DVC metrics), ``report.md``, per-row predictions,
robustness and reliability tables (DVC plots) and PNG plots — and logs the same metrics and the
whole folder to the MLflow run that ``train`` opened.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from occlufer import tracking
from occlufer.config import Params, load_params
from occlufer.data.store import read_store
from occlufer.evaluation.evaluate import EvalSet, evaluate
from occlufer.models import load_model
from occlufer.occlusion import OcclusionSpec
from occlufer.stages import run_stage

DATA = Path("data/split/val")
MODELS = Path("models")
OUT = Path("reports/validate")


def validate(params: Params, data: Path = DATA, models: Path = MODELS,
             out: Path = OUT) -> dict[str, float]:
    """Evaluate and write the report folder; returns the metrics."""
    store = read_store(data)
    model, meta = load_model(models / "model.pt")
    metrics = evaluate(model, meta, EvalSet.from_store(store, str(data)), params.validate,
                       OcclusionSpec.from_cfg(params.occlusion), params.seed, out,
                       history=models / "history.csv", config=params.to_dict(),
                       model_source=str(models / "model.pt"))
    # train logged per-epoch val/acc etc. at steps 1..E into the same run; one step later, these
    # (the selected model's) are the run's latest values, the ones MLflow shows as columns
    history = models / "history.csv"
    step = int(pd.read_csv(history)["epoch"].max()) + 1 if history.is_file() else None
    with tracking.resume_run(models / tracking.RUN_FILE):
        tracking.log_metrics(metrics, step=step)
        tracking.log_artifacts(out, "validate")
    print(f"validate: val/acc {metrics.get('val/acc', float('nan')):.4f} "
          f"[{metrics.get('val/acc_ci_low', float('nan')):.3f}, "
          f"{metrics.get('val/acc_ci_high', float('nan')):.3f}], "
          f"val_occluded/acc {metrics.get('val_occluded/acc', float('nan')):.4f}, "
          f"val/ece {metrics.get('val/ece', float('nan')):.3f}, "
          f"robustness/mean_auc {metrics.get('robustness/mean_auc', float('nan')):.3f} "
          f"-> {out}")
    return metrics


def main() -> None:
    run_stage("validate", lambda: validate(load_params()))


if __name__ == "__main__":
    main()
