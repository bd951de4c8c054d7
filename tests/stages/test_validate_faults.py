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


def _models(folder: Path, params, run_id: str) -> None:
    folder.mkdir(parents=True)
    classes = list(params.acquire.classes)
    model = build_model(params.model.name, num_classes=len(classes), image_size=48,
                        dropout=params.model.dropout, width=params.model.width,
                        blocks=params.model.blocks)
    save_model(folder / "model.pt", model, name=params.model.name, classes=classes,
               image_size=48, dropout=params.model.dropout, epoch=1)
    (folder / tracking.RUN_FILE).write_text(f'{{"run_id": "{run_id}"}}\n')


def test_a_deleted_store_stops_validate_before_it_evaluates(tmp_path: Path, split_dir: Path,
                                                            params, tracking_store: str) -> None:
    with mlflow.start_run(experiment_id="0") as run:  # the run train opened ...
        pass
    work = tmp_path / "work"
    shutil.copytree(split_dir, work / "data" / "split")
    dump_params(params.to_dict(), work / "params.yaml")
    _models(work / "models", params, run.info.run_id)
    Path(tracking_store.removeprefix("sqlite:///")).unlink()  # ... and the store is deleted
    proc = subprocess.run([sys.executable, "-m", "occlufer.stages.validate"], cwd=work,
                          env=dict(os.environ), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith("occlufer validate: error: models/mlflow_run.json: MLflow run "
                           f"{run.info.run_id} is not in ")
    assert "dvc repro -f -s train validate" in line
    assert not (work / "reports").exists()  # nothing was evaluated
    assert not Path(tracking_store.removeprefix("sqlite:///")).exists()  # nor an empty store made


def test_a_run_missing_from_an_existing_store_is_one_line(tmp_path: Path,
                                                          tracking_store) -> None:
    (tmp_path / tracking.RUN_FILE).write_text('{"run_id": "%s"}\n' % ("0" * 32))
    with pytest.raises(OccluferError) as err:
        tracking.check_run(tmp_path / tracking.RUN_FILE)
    text = str(err.value)
    assert "\n" not in text and f"MLflow run {'0' * 32} is not in sqlite:" in text
    assert "dvc repro -f -s train validate" in text


def test_a_run_file_without_a_run_id_is_one_line(tmp_path: Path, tracking_store) -> None:
    (tmp_path / tracking.RUN_FILE).write_text("{}\n")
    with pytest.raises(OccluferError, match=r"no MLflow run id here .*dvc repro -f -s train "
                                            r"validate"):
        tracking.check_run(tmp_path / tracking.RUN_FILE)
