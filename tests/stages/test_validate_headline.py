"""validate's two metric files (issue #16): metrics.json (DVC's metrics, MLflow's metrics) holds
the headline, detail.json (a DVC output, an MLflow artifact) the rest; the run's description."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from occlufer import tracking
from occlufer.recipe import flat_keys
from occlufer.stages.validate import validate
from tests.stages.test_validate_test_split import untrained  # noqa: F401 - the fixture

MUST = ("val/acc", "val/acc_ci_low", "val/acc_ci_high", "val_occluded/acc",
        "val_occluded/acc_ci_low", "val_occluded/acc_ci_high", "val/ece", "val/macro_f1",
        "robustness/mean_auc", "test/acc", "test/acc_ci_low", "test/acc_ci_high", "test/ece",
        "test/macro_f1", "test_occluded/acc", "test_robustness/mean_auc",
        "test_robustness/block/gap", "test_robustness/hand/gap")


def test_validate_writes_the_headline_and_the_detail(untrained, tmp_path: Path,  # noqa: F811
                                                     tracking_store) -> None:
    params, split, models = untrained
    out = tmp_path / "reports"
    metrics = validate(params, split / "val", models, out)
    head = json.loads((out / "metrics.json").read_text())
    detail = json.loads((out / "detail.json").read_text())
    # the headline: few numbers (flattened as DVC does), accuracy first, the gaps included
    assert len(flat_keys(head)) <= 30
    assert list(head)[:5] == ["val/acc", "val_occluded/acc", "val/ece", "val/macro_f1",
                              "robustness/mean_auc"]
    for key in MUST:
        assert key in head, key
    assert head["val/acc_ci_low"] <= head["val/acc"] <= head["val/acc_ci_high"]
    # the detail: per class, per occluder in the data, per robustness type, counts
    for c in params.acquire.classes:
        for key in (f"val/{c}/f1", f"val/{c}/precision", f"val_occluded/{c}/recall",
                    f"test/{c}/support"):
            assert key in detail, key
    kinds = pd.read_parquet(split / "val" / "manifest.parquet").query("occluded")["occluder"]
    for kind in set(kinds):
        assert f"val_occluded/occluder/{kind}/acc" in detail
    for key in ("robustness/block/auc", "robustness/hand/acc_at_gap", "robustness/block/gap",
                "val/n", "test_robustness/block/auc", "excluded/n"):
        assert key in detail, key
    # each metric in exactly one file, all of them
    assert not set(head) & set(detail)
    assert {**detail, **head} == pytest.approx(metrics, nan_ok=True)
    # MLflow: the headline as metrics (this bare run has no train metrics), detail as artifact
    run_id = tracking.find_model_run(models / "model.pt").info.run_id
    mlflow.set_tracking_uri(tracking_store)
    run = mlflow.get_run(run_id)
    assert set(run.data.metrics) == {k for k, v in head.items() if math.isfinite(v)}
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "validate")}
    assert {"validate/metrics.json", "validate/detail.json", "validate/report.md"} <= logged
    # the run's description: recipe, then the headline of both splits
    note = run.data.tags[tracking.NOTE_TAG]
    assert note.startswith("Recipe `")
    assert f"**val**: accuracy **{head['val/acc']:.3f}** [{head['val/acc_ci_low']:.3f}, " in note
    assert f"**test**: accuracy **{head['test/acc']:.3f}**" in note
    assert f"block {100 * head['test_robustness/block/gap']:.1f}" in note
    assert "validate/report.md" in note
    assert "`detail.json`" in (out / "report.md").read_text()
