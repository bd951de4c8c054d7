"""validate checks its MLflow run before evaluating (issue #17: faults end in one line)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from occlufer import tracking
from occlufer.config import dump_params
from occlufer.errors import OccluferError
from occlufer.models import build_model, save_model
from tests.faults import one_line


def _models(folder: Path, params) -> Path:
    folder.mkdir(parents=True)
    classes = list(params.acquire.classes)
    model = build_model(params.model.name, num_classes=len(classes), image_size=48,
                        dropout=params.model.dropout, width=params.model.width,
                        blocks=params.model.blocks)
    save_model(folder / "model.pt", model, name=params.model.name, classes=classes,
               image_size=48, dropout=params.model.dropout, epoch=1)
    return folder / "model.pt"


def test_a_deleted_store_stops_validate_before_it_evaluates(tmp_path: Path, split_dir: Path,
                                                            params, tracking_store: str) -> None:
    work = tmp_path / "work"
    shutil.copytree(split_dir, work / "data" / "split")
    dump_params(params.to_dict(), work / "params.yaml")
    pt = _models(work / "models", params)
    mlflow.set_tracking_uri(tracking_store)
    with mlflow.start_run(experiment_id="0") as run:  # the run train opened ...
        digest = tracking.tag_model(pt)
    assert tracking.find_model_run(pt).info.run_id == run.info.run_id
    Path(tracking_store.removeprefix("sqlite:///")).unlink()  # ... and the store is deleted
    proc = subprocess.run([sys.executable, "-m", "occlufer.stages.validate"], cwd=work,
                          env=dict(os.environ), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("occlufer validate: error: models/model.pt: no MLflow run in "
                           f"{tracking_store} logged this model ")
    assert digest[:12] in line and "does not exist" in line
    assert "dvc repro -f -s train validate" in line
    assert not (work / "reports").exists()  # nothing was evaluated
    assert not Path(tracking_store.removeprefix("sqlite:///")).exists()  # nor an empty store made


def test_a_model_no_run_logged_is_one_line(tmp_path: Path, params, tracking_store) -> None:
    pt = _models(tmp_path / "models", params)
    mlflow.set_tracking_uri(tracking_store)
    with mlflow.start_run(experiment_id="0"):  # a run, but of another model
        mlflow.set_tag(tracking.MODEL_TAG, "0" * 64)
    assert tracking.find_model_run(pt) is None
    with pytest.raises(OccluferError) as err:
        tracking.check_run(pt)
    text = str(err.value)
    assert "\n" not in text and f"no MLflow run in {tracking_store} logged this model" in text
    assert tracking.file_sha256(pt)[:12] in text and "dvc repro -f -s train validate" in text


def test_a_missing_model_file_is_one_line(tmp_path: Path, tracking_store) -> None:
    with pytest.raises(OccluferError, match=r"model.pt: cannot read the model .*dvc repro -f -s "
                                            r"train validate"):
        tracking.check_run(tmp_path / "model.pt")
