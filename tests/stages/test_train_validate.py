from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from occlufer.models import load_model
from occlufer.stages.train import train
from occlufer.stages.validate import validate


def _weights_hash(path: Path) -> str:
    state = torch.load(path, weights_only=True)["state_dict"]
    h = hashlib.sha256()
    for name, tensor in state.items():
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


@pytest.fixture
def trained(tmp_path: Path, split_dir: Path, make_params, tracking_store) -> tuple:
    params = make_params("train.epochs=2", "train.log_model=false")
    history = train(params, split_dir, tmp_path / "models")
    return params, history, tmp_path / "models"


def test_train_writes_model_history_and_mlflow_run(trained, tracking_store) -> None:
    params, history, models = trained
    assert [h.epoch for h in history] == [1, 2]
    model, meta = load_model(models / "model.pt")
    assert meta["classes"] == params.acquire.classes and meta["image_size"] == 48
    assert model(torch.zeros(3, 1, 48, 48)).shape == (3, len(meta["classes"]))
    hist = pd.read_csv(models / "history.csv")
    assert list(hist["epoch"]) == [1, 2]
    assert {"train/loss", "train/acc", "val/acc", "val_occluded/acc", "val/loss"} <= set(hist)
    best = int(hist.loc[hist["val_mixed/acc"].idxmax(), "epoch"])
    assert meta["epoch"] == best and meta["tta_flip"] is False
    assert not (models.parent / "checkpoints" / "train.pt").exists()  # removed once finished
    run_id = json.loads((models / "mlflow_run.json").read_text())["run_id"]
    mlflow.set_tracking_uri(tracking_store)
    run = mlflow.get_run(run_id)
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.name"] == "seed_cnn"
    assert run.data.params["occlusion.ratio"] == str(params.occlusion.ratio)
    steps = mlflow.MlflowClient().get_metric_history(run_id, "val/acc")
    assert [m.step for m in steps] == [1, 2]
    assert run.data.metrics["best/epoch"] == best
    assert run.data.metrics["best/val_mixed/acc"] == pytest.approx(hist["val_mixed/acc"].max())
    assert "git.commit" in run.data.tags or "mlflow.source.git.commit" in run.data.tags
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "data")}
    assert {"data/preview.png", "data/summary.csv"} <= logged
    n = params.acquire.n_per_class * len(params.acquire.classes)
    assert run.data.metrics["acquire/read"] == n and run.data.metrics["acquire/rejected"] == 0


def test_training_is_deterministic_on_cpu(tmp_path: Path, split_dir: Path, make_params,
                                          tracking_store) -> None:
    params = make_params("train.log_model=false")
    train(params, split_dir, tmp_path / "m1")
    train(params, split_dir, tmp_path / "m2")
    assert _weights_hash(tmp_path / "m1/model.pt") == _weights_hash(tmp_path / "m2/model.pt")
    train(make_params("train.log_model=false", "seed=1"), split_dir, tmp_path / "m3")
    assert _weights_hash(tmp_path / "m1/model.pt") != _weights_hash(tmp_path / "m3/model.pt")


def test_validate_metrics_files_and_same_mlflow_run(trained, split_dir: Path, tmp_path: Path,
                                                    tracking_store) -> None:
    params, _, models = trained
    out = tmp_path / "reports"
    metrics = validate(params, split_dir / "val", models, out)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == pytest.approx(metrics)
    for prefix in ("val", "val_occluded"):
        assert 0.0 <= on_disk[f"{prefix}/acc"] <= 1.0
        assert 0.0 <= on_disk[f"{prefix}/macro_f1"] <= 1.0
        for name in params.acquire.classes:
            assert f"{prefix}/{name}/f1" in on_disk
        preds = pd.read_csv(out / f"predictions_{prefix}.csv")
        assert list(preds.columns) == ["actual", "predicted"]
        assert len(preds) == on_disk[f"{prefix}/n"]
        assert set(preds["actual"]) <= set(params.acquire.classes)
        assert (out / f"confusion_{prefix}.png").stat().st_size > 1000
    # accuracy agrees with the per-row predictions
    preds = pd.read_csv(out / "predictions_val.csv")
    assert on_disk["val/acc"] == pytest.approx((preds.actual == preds.predicted).mean())
    run_id = json.loads((models / "mlflow_run.json").read_text())["run_id"]
    mlflow.set_tracking_uri(tracking_store)
    run = mlflow.get_run(run_id)
    assert run.data.metrics["val/acc"] == pytest.approx(on_disk["val/acc"])
    assert run.data.metrics["val_occluded/acc"] == pytest.approx(on_disk["val_occluded/acc"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "validate")}
    assert "validate/metrics.json" in artifacts


def test_validate_without_the_run_says_how_to_fix(trained, split_dir: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    from occlufer.errors import OccluferError

    params, _, models = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(OccluferError, match="dvc repro --force train"):
        validate(params, split_dir / "val", models, tmp_path / "reports")


def test_train_registers_the_model_under_name_and_alias(tmp_path: Path, split_dir: Path,
                                                        make_params, tracking_store) -> None:
    params = make_params("train.epochs=1", "train.registered_model_name=fer-unit",
                         "train.registered_model_alias=champion")
    train(params, split_dir, tmp_path / "models")
    client = mlflow.MlflowClient(tracking_store)
    version = client.get_model_version_by_alias("fer-unit", "champion")
    run_id = json.loads((tmp_path / "models/mlflow_run.json").read_text())["run_id"]
    assert int(version.version) == 1 and version.run_id == run_id
    loaded = mlflow.pyfunc.load_model("models:/fer-unit@champion")
    assert loaded.metadata.signature is not None
