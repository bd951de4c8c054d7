"""Faults of the train stage end in one line (issue #17): the real checkpoint loads with
``weights_only=True`` (a planted pickle is refused: tests/training/test_checkpoints.py), a
dead or read-only MLflow store stops the stage before training, and a killed run is marked
KILLED when the next one starts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import occlufer.stages.train as train_stage
from occlufer.config import dump_params
from occlufer.training import TrainState, checkpoints
from tests.faults import one_line, read_only
from tests.servers import free_port


@pytest.mark.parametrize("overrides", [
    (),
    ("train.optimizer=sgd", "train.schedule=onecycle", "train.ema=0.9", "train.pair=true",
     "train.consistency=0.5", "train.augment.fresh_occlusion=true"),
])
def test_a_real_checkpoint_loads_with_weights_only(tmp_path: Path, split_dir: Path, make_params,
                                                   tracking_store, monkeypatch,
                                                   overrides: tuple[str, ...]) -> None:
    params = make_params("train.epochs=2", "train.log_model=false", *overrides)
    out = tmp_path / "models"
    ckpt = checkpoints.checkpoint_path(out)
    kept = tmp_path / "kept.pt"
    real_fit = train_stage.fit

    def fit_and_keep(*args, **kwargs):  # the stage deletes its checkpoint when it finishes
        result = real_fit(*args, **kwargs)
        shutil.copyfile(ckpt, kept)
        return result

    monkeypatch.setattr(train_stage, "fit", fit_and_keep)
    train_stage.train(params, split_dir, out)
    assert not ckpt.exists()
    blob = torch.load(kept, map_location="cpu", weights_only=True)  # raises if not plain
    assert blob["state"]["epoch"] == 2
    state, meta = checkpoints.load_checkpoint(kept, print_=False)
    assert isinstance(state, TrainState) and state.epoch == 2
    assert meta["fingerprint"] == checkpoints.fingerprint(params, split_dir)


def _workdir(tmp_path: Path, split_dir: Path, params) -> Path:
    work = tmp_path / "work"
    shutil.copytree(split_dir, work / "data" / "split")
    dump_params(params.to_dict(), work / "params.yaml")
    return work


def _train(work: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "occlufer.stages.train"], cwd=work,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_dead_tracking_server_stops_the_stage_in_one_line(tmp_path: Path, split_dir: Path,
                                                           params) -> None:
    work = _workdir(tmp_path, split_dir, params)
    uri = f"http://127.0.0.1:{free_port()}"
    proc = _train(work, MLFLOW_TRACKING_URI=uri)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    line = one_line(err)
    assert line.startswith("occlufer train: error: ") and uri in line
    assert not (work / "models" / "model.pt").exists()
    assert not (work / "checkpoints" / "train.pt").exists()  # stopped before the first epoch


def test_a_read_only_store_stops_the_stage_in_one_line(tmp_path: Path, split_dir: Path, params,
                                                       tracking_store: str) -> None:
    work = _workdir(tmp_path, split_dir, params)
    with read_only(Path(tracking_store.removeprefix("sqlite:///"))) as db:
        proc = _train(work)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert str(db) in one_line(err) and "cannot be written" in err
    assert not (work / "checkpoints" / "train.pt").exists()


@pytest.mark.slow
def test_a_killed_run_is_marked_killed_when_the_next_starts(tmp_path: Path, split_dir: Path,
                                                            make_params,
                                                            tracking_store: str) -> None:
    import mlflow

    work = _workdir(tmp_path, split_dir, make_params("train.epochs=3", "train.log_model=false"))
    proc = _train(work)
    ckpt = work / "checkpoints" / "train.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists():  # written atomically after epoch 1
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    client = mlflow.MlflowClient(tracking_store)
    (killed,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert killed.info.status == "RUNNING"

    # a params change: the checkpoint is not resumed, the new run is a fresh one
    dump_params(make_params("train.epochs=2", "train.log_model=false").to_dict(),
                work / "params.yaml")
    proc = _train(work)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"MLflow run {killed.info.run_id} was left RUNNING" in out
    runs = {r.info.run_id: r.info.status for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()])}
    assert runs.pop(killed.info.run_id) == "KILLED"
    assert list(runs.values()) == ["FINISHED"]
    assert not (work / "checkpoints" / "train.mlflow_run.json").exists()
