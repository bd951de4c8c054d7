"""``occlufer register RUN_OR_EXP --name N [--alias A]``: an existing run's logged model into the
MLflow model registry, found by run id or DVC experiment name, without training again."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from occlufer import tracking
from occlufer.cli import main
from occlufer.inference.pyfunc import log_pyfunc_model


@pytest.fixture
def runs(tmp_path: Path, make_params, tracking_store, monkeypatch) -> dict[str, str]:
    """Two runs as train leaves them, both named ``brisk-pump``: ``old`` without a logged model
    (train.log_model=false), ``new`` (the later one, which the name finds) with one."""
    from occlufer.models import build_model, save_model

    params = make_params()
    pt = tmp_path / "model.pt"
    save_model(pt, build_model("seed_cnn", num_classes=7, image_size=48), name="seed_cnn",
               classes=params.acquire.classes, image_size=48, dropout=0.0)
    ids = {}
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-pump")
    for key, log in (("old", False), ("new", True)):
        with tracking.start_run("register-test", params.to_dict()) as run:
            if log:
                log_pyfunc_model(pt)
        ids[key] = run.info.run_id
    monkeypatch.delenv("DVC_EXP_NAME")
    return ids


def _all_runs() -> int:
    client = mlflow.MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(ids))


def test_register_by_experiment_name_and_by_run_id(runs: dict[str, str], tracking_store,
                                                   capsys) -> None:
    mlflow.set_tracking_uri(tracking_store)
    before = _all_runs()
    assert main(["register", "brisk-pump", "--name", "fer-reg", "--alias", "champion"]) == 0
    line = capsys.readouterr().out.strip()
    assert f"run brisk-pump ({runs['new']})" in line and "fer-reg version 1, alias champion" in line
    assert "models:/fer-reg@champion" in line and "latest of 2 runs named brisk-pump" in line
    client = mlflow.MlflowClient(tracking_store)
    version = client.get_model_version_by_alias("fer-reg", "champion")
    assert version.run_id == runs["new"] and int(version.version) == 1
    assert version.tags["occlufer.run_name"] == "brisk-pump"
    loaded = mlflow.pyfunc.load_model("models:/fer-reg@champion")
    assert loaded.metadata.signature is not None
    # by run id: a new version of the same model; the alias stays where it was
    assert main(["register", runs["new"], "--name", "fer-reg"]) == 0
    out = capsys.readouterr().out
    assert "fer-reg version 2; load it as models:/fer-reg/2" in out and "latest" not in out
    assert client.get_model_version("fer-reg", "2").run_id == runs["new"]
    assert int(client.get_model_version_by_alias("fer-reg", "champion").version) == 1
    assert _all_runs() == before  # registered, not retrained: no new run


def test_register_errors_are_one_line_with_the_fix(runs: dict[str, str], tracking_store,
                                                   capsys) -> None:
    assert main(["register", "nope", "--name", "x"]) == 2
    assert main(["register", runs["old"], "--name", "x"]) == 2
    assert main(["register", "brisk-pump", "--name", "bad/name"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("occlufer register: error: ") for e in err), err
    assert "nope: no MLflow run with this id or name" in err[0] and "dvc exp show" in err[0]
    assert runs["old"] in err[1] and "train.log_model=true" in err[1]
    assert "cannot register" in err[2] and "'bad/name'" in err[2]
