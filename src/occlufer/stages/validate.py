"""S500 validate: score ``models/model.pt`` on the clean and occluded val (and test) faces.

Writes ``reports/validate/`` (metrics, report, predictions, DVC plots) and logs them to train's
MLflow run (found by the model's SHA-256). A ``data/split/test`` with rows is scored into
``reports/validate/test/`` too, its metrics renamed by :func:`as_test_metrics`."""

import shutil
from pathlib import Path

import pandas as pd

from occlufer import tracking
from occlufer.config import Params
from occlufer.data.store import MANIFEST, read_store
from occlufer.evaluation.evaluate import EvalSet, evaluate
from occlufer.headline import split_metrics, summary_markdown, write_metrics
from occlufer.models import load_model
from occlufer.occlusion import OcclusionSpec
from occlufer.stages import run_stage, stage_params

DATA = Path("data/split/val")
MODELS = Path("models")
OUT = Path("reports/validate")
TEST_DIR = "test"
#: metric key prefixes of an evaluation and what they become for the test split
TEST_PREFIXES = {"val/": "test/", "val_occluded/": "test_occluded/",
                 "robustness/": "test_robustness/", "excluded/": "test_excluded/"}


def as_test_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics renamed for the test split (:data:`TEST_PREFIXES`, else a ``test_`` prefix)."""
    renamed = {}
    for key, value in metrics.items():
        old = next((p for p in TEST_PREFIXES if key.startswith(p)), None)
        renamed[f"test_{key}" if old is None else TEST_PREFIXES[old] + key[len(old):]] = value
    return renamed


def summary_line(metrics: dict[str, float], out: Path, gap_ratio: float) -> str:
    """The one line validate prints: val, then test and its gaps per occluder when scored."""
    g, nan = metrics.get, float("nan")
    line = (f"validate: val/acc {g('val/acc', nan):.4f} "
            f"[{g('val/acc_ci_low', nan):.3f}, {g('val/acc_ci_high', nan):.3f}], "
            f"val_occluded/acc {g('val_occluded/acc', nan):.4f}, val/ece {g('val/ece', nan):.3f}, "
            f"robustness/mean_auc {g('robustness/mean_auc', nan):.3f}")
    if "test/acc" in metrics:
        gaps = ", ".join(f"{k.split('/')[1]} {100 * v:.1f}" for k, v in sorted(metrics.items())
                         if k.startswith("test_robustness/") and k.endswith("/gap"))
        line += (f"; test/acc {g('test/acc'):.4f} "
                 f"[{g('test/acc_ci_low', nan):.3f}, {g('test/acc_ci_high', nan):.3f}], "
                 f"test_occluded/acc {g('test_occluded/acc', nan):.4f}"
                 + (f", test gap at {gap_ratio:g} (points) {gaps}" if gaps else ""))
    return f"{line} -> {out}"


def validate(params: Params, data: Path = DATA, models: Path = MODELS,
             out: Path = OUT, test: Path | None = None) -> dict[str, float]:
    """Evaluate into ``out``; ``test`` (default: beside ``data``) too if it has rows."""
    model_file, history = models / "model.pt", models / "history.csv"
    tracking.check_run(model_file)  # before evaluating, not after
    store = read_store(data)
    model, meta = load_model(model_file)
    spec = OcclusionSpec.from_cfg(params.occlusion)
    metrics = evaluate(model, meta, EvalSet.from_store(store, str(data)), params.validate,
                       spec, params.seed, out, history=history, config=params.to_dict(),
                       model_source=str(model_file))
    test = data.parent / TEST_DIR if test is None else test
    if (out / TEST_DIR).exists():
        shutil.rmtree(out / TEST_DIR)
    test_store = read_store(test) if (test / MANIFEST).is_file() else None
    if test_store is not None and len(test_store):
        scored = evaluate(model, meta, EvalSet.from_store(test_store, str(test)),
                          params.validate, spec, params.seed, out / TEST_DIR,
                          config=params.to_dict(), model_source=str(model_file))
        metrics.update(as_test_metrics(scored))
        write_metrics(out, metrics)  # DVC's metrics file (+ detail.json): val and test together
    # one step after train's per-epoch values: these are the ones MLflow shows as columns
    step = int(pd.read_csv(history)["epoch"].max()) + 1 if history.is_file() else None
    with tracking.resume_run(model_file):
        tracking.log_metrics(split_metrics(metrics)[0], step=step)  # the headline; detail.json
        tracking.log_artifacts(out, "validate")                     # is in the artifacts
        tracking.set_description(tracking.describe(
            params.to_dict(), summary_markdown(metrics, params.validate.gap_ratio)))
    print(summary_line(metrics, out, params.validate.gap_ratio))
    return metrics


if __name__ == "__main__":
    run_stage("validate", lambda: validate(stage_params()))
