from __future__ import annotations

from pathlib import Path

from occlufer import tracking


def test_repo_root_of_a_queued_dvc_experiment_is_the_original_repo(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    queued = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc123"
    queued.mkdir(parents=True)
    (queued / "dvc.yaml").write_text("stages: {}\n")
    assert tracking.repo_root(queued) == tmp_path
    assert tracking.repo_root(queued / "src") == tmp_path
    assert tracking.repo_root(tmp_path / "sub") == tmp_path


def test_default_uri_is_sqlite_in_repo(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


def test_sqlite_stores_keep_artifacts_beside_the_database(tmp_path: Path) -> None:
    assert tracking.artifact_root(f"sqlite:///{tmp_path}/x/mlflow.db") == tmp_path / "x/mlartifacts"
    assert tracking.artifact_root("http://127.0.0.1:5000") is None


def test_flatten() -> None:
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {
        "a.b": 1, "a.c.d": [1, 2], "e": "x"}
