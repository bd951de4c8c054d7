from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from occlufer import tracking
from occlufer.models import load_model
from occlufer.stages.train import train
from occlufer.stages.validate import validate
from tests.conftest import weights_sha256


def _all_metrics(folder: Path) -> dict[str, float]:
    """A report folder's metrics: the headline (metrics.json) and the detail (detail.json)."""
    head = json.loads((folder / "metrics.json").read_text())
    detail = json.loads((folder / "detail.json").read_text())
    assert not set(head) & set(detail)  # each metric in one file
    return {**detail, **head}


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
    run_id = tracking.find_model_run(models / "model.pt").info.run_id
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
    assert weights_sha256(tmp_path / "m1/model.pt") == weights_sha256(tmp_path / "m2/model.pt")
    train(make_params("train.log_model=false", "seed=1"), split_dir, tmp_path / "m3")
    assert weights_sha256(tmp_path / "m1/model.pt") != weights_sha256(tmp_path / "m3/model.pt")


def test_validate_metrics_files_and_same_mlflow_run(trained, split_dir: Path, tmp_path: Path,
                                                    tracking_store) -> None:
    params, _, models = trained
    out = tmp_path / "reports"
    metrics = validate(params, split_dir / "val", models, out)
    on_disk = _all_metrics(out)
    assert on_disk == pytest.approx(metrics, nan_ok=True)
    for prefix in ("val", "val_occluded"):
        assert 0.0 <= on_disk[f"{prefix}/acc"] <= 1.0
        assert 0.0 <= on_disk[f"{prefix}/macro_f1"] <= 1.0
        assert (on_disk[f"{prefix}/acc_ci_low"] <= on_disk[f"{prefix}/acc"]
                <= on_disk[f"{prefix}/acc_ci_high"])
        assert 0.0 <= on_disk[f"{prefix}/ece"] <= 1.0
        for name in params.acquire.classes:
            assert f"{prefix}/{name}/f1" in on_disk
        preds = pd.read_csv(out / f"predictions_{prefix}.csv")
        assert list(preds.columns) == ["actual", "predicted"]
        assert len(preds) == on_disk[f"{prefix}/n"]
        assert set(preds["actual"]) <= set(params.acquire.classes)
        assert (out / f"confusion_{prefix}.png").stat().st_size > 1000
        rel = pd.read_csv(out / f"reliability_{prefix}.csv")
        assert rel["count"].sum() == on_disk[f"{prefix}/n"]
        assert rel["accuracy"].between(0, 1).all() and rel["confidence"].between(0, 1).all()
    # per occluder type of the occluded val faces, with their own intervals
    val = pd.read_parquet(split_dir / "val" / "manifest.parquet")
    counts = val[val.occluded].occluder.value_counts()
    for kind, count in counts.items():
        key = f"val_occluded/occluder/{kind}"
        assert on_disk[f"{key}/n"] == count
        low, acc, high = (on_disk[f"{key}/{s}"] for s in ("acc_ci_low", "acc", "acc_ci_high"))
        assert low <= acc <= high
    assert sum(on_disk[f"val_occluded/occluder/{k}/n"] for k in counts.index) == on_disk[
        "val_occluded/n"]
    # robustness curves: every configured type, starting at the clean accuracy
    curves = pd.read_csv(out / "robustness.csv")
    assert list(curves.columns) == ["ratio", *params.validate.robustness_types]
    assert list(curves["ratio"]) == params.validate.robustness_ratios
    assert on_disk["robustness/n"] == on_disk["val/n"]  # below robustness_max_faces
    assert np.allclose(curves.iloc[0, 1:].to_numpy(float), on_disk["val/acc"])
    for kind in params.validate.robustness_types:
        assert 0.0 <= on_disk[f"robustness/{kind}/auc"] <= 1.0
    assert on_disk["robustness/mean_auc"] == pytest.approx(np.mean(
        [on_disk[f"robustness/{k}/auc"] for k in params.validate.robustness_types]))
    assert (on_disk["robustness/mean_auc_ci_low"] <= on_disk["robustness/mean_auc"]
            <= on_disk["robustness/mean_auc_ci_high"])
    assert on_disk["excluded/n"] == 0
    for png in ("robustness.png", "reliability.png", "mistakes.png", "training.png"):
        assert (out / png).stat().st_size > 1000, png
    report = (out / "report.md").read_text()
    assert "| clean |" in report and "| occluded (all) |" in report
    assert f"{on_disk['val/acc']:.3f}" in report and f"{on_disk['val/acc_ci_low']:.3f}" in report
    for png in ("robustness.png", "reliability.png", "mistakes.png", "confusion_val.png"):
        assert f"]({png})" in report
    assert "occlusion:" in report and "validate:" in report  # the configuration
    # accuracy agrees with the per-row predictions
    preds = pd.read_csv(out / "predictions_val.csv")
    assert on_disk["val/acc"] == pytest.approx((preds.actual == preds.predicted).mean())
    run_id = tracking.find_model_run(models / "model.pt").info.run_id
    mlflow.set_tracking_uri(tracking_store)
    run = mlflow.get_run(run_id)
    for key in ("val/acc", "val_occluded/acc", "val/acc_ci_low", "val/ece",
                "robustness/mean_auc", "robustness/block/gap"):
        assert run.data.metrics[key] == pytest.approx(on_disk[key]), key
    # the detail is an artifact, not MLflow metrics (val/<class>/... were never logged by train)
    assert "robustness/block/auc" not in run.data.metrics
    assert not any(k.startswith("val/angry/") for k in run.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "validate")}
    assert {"validate/metrics.json", "validate/detail.json", "validate/report.md",
            "validate/robustness.png", "validate/mistakes.png"} <= artifacts


def _image_folder(root: Path, store_dir: Path, labels: dict[str, str]) -> dict[str, int]:
    """Write the clean faces of a store as PNGs into root/<folder>/, relabelled by ``labels``."""
    from PIL import Image

    from occlufer.data.store import read_store

    store = read_store(store_dir)
    counts: dict[str, int] = {}
    for i, row in store.manifest.iterrows():
        folder = labels.get(str(row["label"]))
        if folder is None or row["occluded"]:
            continue
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(store.images[i])).resize((64, 64)).save(
            root / folder / f"{i}.png")
        counts[folder] = counts.get(folder, 0) + 1
    return counts


def test_evaluate_an_image_folder_with_another_class_set(trained, split_dir: Path,
                                                         tmp_path: Path, capsys) -> None:
    from occlufer.cli import main

    params, _, models = trained
    # CK+-like: 'contempt' (here: the disgust faces) which the model lacks, no 'disgust'
    # folder, 'anger' / 'happiness' spellings, and a class folder no label matches
    names = {"angry": "anger", "happy": "happiness", "sad": "sad", "fear": "fear",
             "neutral": "neutral", "surprise": "surprise", "disgust": "contempt"}
    counts = _image_folder(tmp_path / "ck", split_dir / "val", names)
    (tmp_path / "ck" / "joy").mkdir()
    moved = sorted((tmp_path / "ck" / "happiness").iterdir())[0]
    moved.rename(tmp_path / "ck" / "joy" / moved.name)
    counts["happiness"] -= 1
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(tmp_path / "ck"), "--model", str(models),
                 "--out", str(out), "--params", str(params_file)]) == 0
    m = _all_metrics(out)
    assert m["excluded/n"] == counts["contempt"] == m["excluded/contempt/n"]
    assert m["val/n"] == sum(counts.values()) - counts["contempt"]
    assert m["val/disgust/support"] == 0
    assert m["val/angry/support"] == counts["anger"]
    assert m["val/acc_ci_low"] <= m["val/acc"] <= m["val/acc_ci_high"]
    assert "val_occluded/acc" not in m  # an image folder has only clean faces
    assert m["robustness/n"] == m["val/n"]
    report = (out / "report.md").read_text()
    assert "faces excluded" in report and "contempt" in report
    rejects = (out / "rejects.csv").read_text()
    assert f"joy/{moved.name}" in rejects and "unknown_label" in rejects
    capsys.readouterr()
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--model", str(models),
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["evaluate", "--data", str(tmp_path), "--model", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o")]) == 2
    # train logged no model.pt: an MLflow URI without one says so
    run_id = tracking.find_model_run(models / "model.pt").info.run_id
    assert main(["evaluate", "--data", str(tmp_path), "--model", f"runs:/{run_id}/model",
                 "--out", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 3 and all(line.startswith("occlufer evaluate: error:") for line in err)
    assert "--data" in err[0] and "--model" in err[1] and "runs:/" in err[2]


def test_validate_without_the_run_says_how_to_fix(trained, split_dir: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    from occlufer.errors import OccluferError

    params, _, models = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(OccluferError, match="dvc repro -f -s train validate"):
        validate(params, split_dir / "val", models, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()  # checked before evaluating


def test_train_registers_the_model_under_name_and_alias(tmp_path: Path, split_dir: Path,
                                                        make_params, tracking_store) -> None:
    params = make_params("train.epochs=1", "train.registered_model_name=fer-unit",
                         "train.registered_model_alias=champion")
    train(params, split_dir, tmp_path / "models")
    client = mlflow.MlflowClient(tracking_store)
    version = client.get_model_version_by_alias("fer-unit", "champion")
    run_id = tracking.find_model_run(tmp_path / "models/model.pt").info.run_id
    assert int(version.version) == 1 and version.run_id == run_id
    loaded = mlflow.pyfunc.load_model("models:/fer-unit@champion")
    assert loaded.metadata.signature is not None


def test_validate_is_deterministic_and_evaluate_on_its_store_agrees(
        trained, split_dir: Path, tmp_path: Path, tracking_store) -> None:
    from occlufer.cli import main

    params, _, models = trained
    staged = validate(params, split_dir / "val", models, tmp_path / "stage")
    again = validate(params, split_dir / "val", models, tmp_path / "again")
    assert again == pytest.approx(staged, nan_ok=True)
    csv = "robustness.csv"
    assert (tmp_path / "stage" / csv).read_text() == (tmp_path / "again" / csv).read_text()
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    assert main(["evaluate", "--data", str(split_dir / "val"), "--model",
                 str(models / "model.pt"), "--out", str(tmp_path / "cli"),
                 "--params", str(params_file)]) == 0
    assert _all_metrics(tmp_path / "cli") == pytest.approx(staged, nan_ok=True)
