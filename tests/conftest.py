"""Shared fixtures: tiny parameters and tiny stage outputs built in tmp_path."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from occlufer.config import Params, compose, parse_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


#: unit-test scale: a few dozen faces, two short epochs (the end-to-end test uses plain smoke)
TINY = ("experiment=smoke", "acquire.n_per_class=12", "acquire.n_subjects=8", "train.epochs=2",
        "train.batch_size=16")


def weights_sha256(model_file: Path) -> str:
    """SHA-256 over a saved model's weights (names and bytes, in order): equal = same bits."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, tensor in torch.load(model_file, weights_only=True)["state_dict"].items():
        h.update(name.encode() + tensor.numpy().tobytes())
    return h.hexdigest()


@pytest.fixture
def make_params() -> Callable[..., Params]:
    """Compose ``conf/`` at unit-test scale (:data:`TINY`) plus extra Hydra overrides."""

    def make(*overrides: str) -> Params:
        return parse_params(compose([*TINY, *overrides], CONF))

    return make


@pytest.fixture
def params(make_params: Callable[..., Params]) -> Params:
    return make_params()


@pytest.fixture(scope="session")
def _empty_tracking_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow SQLite store (creating the tables takes seconds)."""
    import mlflow

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   _empty_tracking_db: Path) -> str:
    """A private SQLite MLflow store for one test (a copy of the empty one)."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_tracking_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def split_dir(tmp_path: Path, params: Params) -> Path:
    """acquire → occlude → mix_split on the smoke parameters, in tmp_path/data."""
    from occlufer.stages.acquire import acquire
    from occlufer.stages.mix_split import mix_split
    from occlufer.stages.occlude import occlude

    data = tmp_path / "data"
    acquire(params, data / "acquired")
    occlude(params, data / "acquired", data / "occluded")
    mix_split(params, data / "acquired", data / "occluded", data / "split")
    return data / "split"
