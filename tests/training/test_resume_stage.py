"""Kill the train stage after its first epoch; the next run resumes and ends like a clean run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from occlufer.config import dump_params
from tests.conftest import weights_sha256


def _workdir(root: Path, split_dir: Path, params) -> Path:
    root.mkdir()
    shutil.copytree(split_dir, root / "data" / "split")
    dump_params(params.to_dict(), root / "params.yaml")
    return root


def _train(cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "occlufer.stages.train"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_training_resumes_to_the_same_model(tmp_path: Path, split_dir: Path,
                                                   make_params, tracking_store) -> None:
    params = make_params("train.epochs=3", "train.log_model=false",
                         "train.augment.fresh_occlusion=true", "train.augment.flip=0.5")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    clean = _workdir(tmp_path / "clean", split_dir, params)
    proc = _train(clean, env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out

    killed = _workdir(tmp_path / "killed", split_dir, params)
    proc = _train(killed, env)
    ckpt = killed / "checkpoints" / "train.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists():  # written atomically after epoch 1
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "models" / "model.pt").exists()

    proc = _train(killed, env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "resuming after epoch" in out
    assert weights_sha256(killed / "models/model.pt") == weights_sha256(clean / "models/model.pt")
    # no timings in history.csv (they are MLflow's): the resumed run's file is the same bytes
    a = pd.read_csv(clean / "models/history.csv")
    assert not {"train/img_per_s", "train/epoch_seconds"} & set(a.columns)
    assert ((killed / "models/history.csv").read_bytes()
            == (clean / "models/history.csv").read_bytes())
    assert (killed / "models/model.pt").read_bytes() == (clean / "models/model.pt").read_bytes()
    assert not ckpt.exists()


def test_changed_params_do_not_resume(tmp_path: Path, split_dir: Path, make_params,
                                      tracking_store) -> None:
    from occlufer.training.checkpoints import checkpoint_path, fingerprint

    params = make_params("train.epochs=3")
    other = make_params("train.epochs=3", "train.lr=0.01")
    same_but_logging = make_params("train.epochs=3", "train.log_model=false")
    assert fingerprint(params, split_dir) != fingerprint(other, split_dir)
    assert fingerprint(params, split_dir) == fingerprint(same_but_logging, split_dir)
    assert checkpoint_path(tmp_path / "models") == tmp_path / "checkpoints" / "train.pt"


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_one_model(tmp_path: Path, split_dir: Path, make_params,
                                               tracking_store) -> None:
    """train.devices=2 on CPU: torchrun + gloo; rank 0 alone writes outputs and logs one run."""
    import mlflow

    params = make_params("train.epochs=2", "train.devices=2", "train.device=cpu",
                         "train.log_model=false")
    work = _workdir(tmp_path / "ddp", split_dir, params)
    proc = subprocess.run([sys.executable, "-m", "occlufer.stages.train"], cwd=work,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "launching 2 processes" in proc.stdout and "2 processes" in proc.stdout
    hist = pd.read_csv(work / "models/history.csv")
    assert list(hist["epoch"]) == [1, 2]
    assert hist["val/acc"].between(0, 1).all() and (hist["train/loss"] > 0).all()
    assert (work / "models/model.pt").is_file()
    mlflow.set_tracking_uri(tracking_store)
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) == 1  # only rank 0 logged
