"""validate on the held-out test split (issue #13): report folder, renamed keys, MLflow, print."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from occlufer import tracking
from occlufer.data.store import read_store
from occlufer.stages.validate import as_test_metrics


def test_as_test_metrics_renames_every_prefix() -> None:
    val = {"val/acc": 0.5, "val/occlusion_drop": 0.1, "val_occluded/acc": 0.4,
           "val_occluded/occluder/hand/acc": 0.3, "robustness/block/gap": 0.2,
           "robustness/mean_auc": 0.45, "excluded/n": 2.0, "excluded/contempt/n": 2.0}
    assert as_test_metrics(val) == {
        "test/acc": 0.5, "test/occlusion_drop": 0.1, "test_occluded/acc": 0.4,
        "test_occluded/occluder/hand/acc": 0.3, "test_robustness/block/gap": 0.2,
        "test_robustness/mean_auc": 0.45, "test_excluded/n": 2.0,
        "test_excluded/contempt/n": 2.0}
    assert as_test_metrics({"other/x": 1.0}) == {"test_other/x": 1.0}  # never shadows a val key


@pytest.fixture
def untrained(tmp_path: Path, make_params, tracking_store):
    """Split data with a test split, an untrained model and the MLflow run train would open."""
    import mlflow

    from occlufer.models import build_model, save_model
    from occlufer.stages.acquire import acquire
    from occlufer.stages.mix_split import mix_split
    from occlufer.stages.occlude import occlude
    from occlufer.tracking import tag_model

    params = make_params("acquire.n_subjects=20", "split.val_fraction=0.3",
                         "split.test_fraction=0.2", "validate.robustness_types=[block,hand]",
                         "validate.bootstrap=100", "validate.device=cpu")
    data = tmp_path / "data"
    acquire(params, data / "acquired")
    occlude(params, data / "acquired", data / "occluded")
    mix_split(params, data / "acquired", data / "occluded", data / "split")
    models = tmp_path / "models"
    models.mkdir()
    model = build_model("seed_cnn", num_classes=7, image_size=48)
    save_model(models / "model.pt", model, name="seed_cnn", classes=params.acquire.classes,
               image_size=48, dropout=0.0)
    mlflow.set_tracking_uri(tracking_store)
    # by id: an experiment another test set active (in another store) must not be reused
    experiment = mlflow.MlflowClient(tracking_store).create_experiment("validate-test-split")
    with mlflow.start_run(experiment_id=experiment):
        tag_model(models / "model.pt")  # as train does
    return params, data / "split", models


def test_validate_scores_the_test_split_too(untrained, tmp_path: Path, capsys) -> None:
    import mlflow

    from occlufer.stages.validate import validate

    params, split, models = untrained
    out = tmp_path / "reports"
    metrics = validate(params, split / "val", models, out)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    test = {**json.loads((out / "test" / "detail.json").read_text()),
            **json.loads((out / "test" / "metrics.json").read_text())}
    assert test["val/n"] > 0 and (out / "test" / "report.md").is_file()
    assert (out / "test" / "robustness.csv").is_file()
    assert f"data: `{split / 'test'}`" in (out / "test" / "report.md").read_text()
    # every test metric, renamed, next to the untouched val metrics, in metrics.json (the
    # headline) or detail.json (the rest) too
    assert {k: metrics[k] for k in as_test_metrics(test)} == as_test_metrics(test)
    on_disk = {**json.loads((out / "detail.json").read_text()),
               **json.loads((out / "metrics.json").read_text())}
    assert on_disk == pytest.approx(metrics, nan_ok=True)
    for key in ("test/acc", "test_occluded/acc", "test_robustness/block/gap",
                "test_robustness/hand/acc_at_gap", "test_excluded/n", "robustness/block/gap"):
        assert key in metrics, key
    # the test metrics are the test split's, not the val split's
    def ids(folder: Path) -> set[str]:
        return set(pd.read_csv(folder / "predictions.csv")["id"].astype(str))

    assert ids(out / "test") == set(read_store(split / "test").manifest["id"].astype(str))
    assert ids(out) == set(read_store(split / "val").manifest["id"].astype(str))
    assert metrics["test/n"] == test["val/n"] != metrics["val/n"]
    # val metrics as without a test split
    alone = validate(params, split / "val", models, tmp_path / "alone", test=tmp_path / "none")
    assert not any(k.startswith(("test/", "test_")) for k in alone)
    assert alone == pytest.approx({k: v for k, v in metrics.items()
                                   if not k.startswith(("test/", "test_"))}, nan_ok=True)
    assert not (tmp_path / "alone" / "test").exists()
    # MLflow: the test metrics and the test report folder
    run_id = tracking.find_model_run(models / "model.pt").info.run_id
    run = mlflow.get_run(run_id)
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert run.data.metrics["test_robustness/block/gap"] == pytest.approx(
        metrics["test_robustness/block/gap"])
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "validate/test")}
    assert "validate/test/metrics.json" in logged
    # the one line: test accuracy with its interval, occluded accuracy, gaps in points
    assert f"test/acc {metrics['test/acc']:.4f} [{metrics['test/acc_ci_low']:.3f}, " in line
    assert f"test_occluded/acc {metrics['test_occluded/acc']:.4f}" in line
    assert (f"test gap at 0.25 (points) block {100 * metrics['test_robustness/block/gap']:.1f}, "
            f"hand {100 * metrics['test_robustness/hand/gap']:.1f}") in line


def test_validate_skips_an_empty_test_split(untrained, tmp_path: Path, make_params) -> None:
    from occlufer.stages.mix_split import mix_split
    from occlufer.stages.validate import validate

    params, split, models = untrained
    no_test = make_params("acquire.n_subjects=20", "split.val_fraction=0.3",
                          "validate.robustness_types=[block]", "validate.bootstrap=100")
    data = split.parent
    mix_split(no_test, data / "acquired", data / "occluded", tmp_path / "split2")
    out = tmp_path / "reports"
    (out / "test").mkdir(parents=True)  # stale, from a run that had a test split
    metrics = validate(no_test, tmp_path / "split2" / "val", models, out)
    assert not any(k.startswith(("test/", "test_")) for k in metrics)
    assert not (out / "test").exists()
