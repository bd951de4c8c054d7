"""S500 validate: score ``models/model.pt`` on the clean and occluded val (and test) faces.

Writes ``reports/validate/`` with :func:`occlufer.evaluation.evaluate.evaluate` —
``metrics.json`` (the headline, flat ``val/acc``-style keys: DVC's metrics file),
``detail.json`` (every other metric: a DVC output, not a metric; see
:mod:`occlufer.evaluation.headline`), ``report.md``, per-row predictions, robustness and
reliability tables (DVC plots) and PNG plots — and logs the headline metrics, the whole folder
and a run description with the headline to the MLflow run that ``train`` opened, found by the
sha256 of ``models/model.pt`` (:func:`occlufer.tracking.find_model_run`: no run id is kept in
the DVC outputs, which stay byte-identical between executions).

When ``data/split/test`` has rows (the held-out test split: train never reads it), the model is
scored on it too, the same way, into ``reports/validate/test/``; its metrics join the val ones
under renamed keys (:func:`as_test_metrics`: ``val/`` → ``test/``, ``val_occluded/`` →
``test_occluded/``, ``robustness/`` → ``test_robustness/``, ``excluded/`` → ``test_excluded/``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from occlufer import tracking
from occlufer.config import Params
from occlufer.data.store import MANIFEST, read_store
from occlufer.evaluation.evaluate import EvalSet, evaluate
from occlufer.evaluation.headline import split_metrics, summary_markdown, write_metrics
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
    """An evaluation's metrics renamed for the test split (:data:`TEST_PREFIXES`; a key with
    none of those prefixes gets ``test_`` in front, so it can never shadow a val key)."""
    renamed = {}
    for key, value in metrics.items():
        old = next((p for p in TEST_PREFIXES if key.startswith(p)), None)
        renamed[f"test_{key}" if old is None else TEST_PREFIXES[old] + key[len(old):]] = value
    return renamed


def summary_line(metrics: dict[str, float], out: Path, gap_ratio: float) -> str:
    """The one line validate prints: val, then test and its gaps per occluder when scored."""
    g = metrics.get
    nan = float("nan")
    line = (f"validate: val/acc {g('val/acc', nan):.4f} "
            f"[{g('val/acc_ci_low', nan):.3f}, {g('val/acc_ci_high', nan):.3f}], "
            f"val_occluded/acc {g('val_occluded/acc', nan):.4f}, "
            f"val/ece {g('val/ece', nan):.3f}, "
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
    """Evaluate and write the report folder; returns the metrics.

    ``test`` (default: ``test`` beside ``data``) is scored too when it is a store with rows.
    The MLflow run it logs into (the one that logged ``models/model.pt``) is checked first
    (:func:`~occlufer.tracking.check_run`).
    """
    tracking.check_run(models / "model.pt")  # before evaluating, not after
    store = read_store(data)
    model, meta = load_model(models / "model.pt")
    spec = OcclusionSpec.from_cfg(params.occlusion)
    metrics = evaluate(model, meta, EvalSet.from_store(store, str(data)), params.validate,
                       spec, params.seed, out, history=models / "history.csv",
                       config=params.to_dict(), model_source=str(models / "model.pt"))
    test = data.parent / TEST_DIR if test is None else test
    if (out / TEST_DIR).exists():
        shutil.rmtree(out / TEST_DIR)
    test_store = read_store(test) if (test / MANIFEST).is_file() else None
    if test_store is not None and len(test_store):
        scored = evaluate(model, meta, EvalSet.from_store(test_store, str(test)),
                          params.validate, spec, params.seed, out / TEST_DIR,
                          config=params.to_dict(), model_source=str(models / "model.pt"))
        metrics.update(as_test_metrics(scored))
        write_metrics(out, metrics)  # DVC's metrics file (+ detail.json): val and test together
    # train logged per-epoch val/acc etc. at steps 1..E into the same run; one step later, these
    # (the selected model's) are the run's latest values, the ones MLflow shows as columns
    history = models / "history.csv"
    step = int(pd.read_csv(history)["epoch"].max()) + 1 if history.is_file() else None
    with tracking.resume_run(models / "model.pt"):
        tracking.log_metrics(split_metrics(metrics)[0], step=step)  # the headline; detail.json
        tracking.log_artifacts(out, "validate")                     # is in the artifacts
        tracking.set_description(tracking.describe(
            params.to_dict(), summary_markdown(metrics, params.validate.gap_ratio)))
    print(summary_line(metrics, out, params.validate.gap_ratio))
    return metrics


def main() -> None:
    run_stage("validate", lambda: validate(stage_params()))


if __name__ == "__main__":
    main()
