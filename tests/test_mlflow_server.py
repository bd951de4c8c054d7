"""train + validate against a real ``mlflow server`` on 127.0.0.1 (slow: the server boots)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow
import pytest

from occlufer import tracking
from tests.servers import free_port, running

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
           f"sqlite:///{tmp_path / 'server.db'}", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    with running(cmd, f"{url}/health", tmp_path / "server.log", cwd=tmp_path, env=env,
                 timeout=90):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url


def test_train_and_validate_log_to_a_real_server(server: str, split_dir: Path, tmp_path: Path,
                                                 params) -> None:
    from occlufer.stages.train import train
    from occlufer.stages.validate import validate

    train(params, split_dir, tmp_path / "models")
    metrics = validate(params, split_dir / "val", tmp_path / "models", tmp_path / "reports")
    run_id = tracking.find_model_run(tmp_path / "models/model.pt").info.run_id
    mlflow.set_tracking_uri(server)
    run = mlflow.get_run(run_id)
    assert run.data.metrics["val/acc"] == pytest.approx(metrics["val/acc"])
    assert run.data.params["model.name"] == "seed_cnn"
    logged = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         output_format="list")
    assert [m.source_run_id for m in logged] == [run_id]
    model = mlflow.pyfunc.load_model(f"models:/{logged[0].model_id}")
    import numpy as np
    import pandas as pd

    out = model.predict(pd.DataFrame({"pixels": [np.zeros((48, 48), int).tolist()] * 3}))
    assert len(out) == 3 and list(out["status"]) == ["ok"] * 3
    assert out[params.acquire.classes].to_numpy(float).sum(axis=1) == pytest.approx([1.0] * 3)
