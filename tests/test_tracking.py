from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from occlufer import tracking
from occlufer.errors import OccluferError
from occlufer.recipe import flat_keys
from tests.faults import read_only
from tests.servers import free_port


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


def test_flat_keys() -> None:
    assert flat_keys({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {
        "a.b": 1, "a.c.d": [1, 2], "e": "x"}


# --- faults: one line, before any work (issue #17) ---------------------------------------------

def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text, text
    return text


def test_a_closed_port_is_one_line_within_ten_seconds(monkeypatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t0 = time.monotonic()
    with pytest.raises(OccluferError) as err, tracking.start_run("x", {"a": 1}):
        pytest.fail("the run must not start")
    assert time.monotonic() - t0 < 10
    text = _one_line(err)
    assert uri in text and "MLFLOW_TRACKING_URI" in text


def test_a_server_that_never_answers_times_out(monkeypatch) -> None:
    with socket.socket() as listener:  # connections complete in the kernel, nobody reads
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(OccluferError) as err:
            tracking.check_server(uri, timeout=1.0)
        assert time.monotonic() - t0 < 5
        assert "is not reachable" in _one_line(err) and "waited up to 1 s" in str(err.value)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")  # MLflow's own setting counts
        with pytest.raises(OccluferError, match="timed out; waited up to 2 s"):
            tracking.check_server(uri)


def test_any_http_answer_counts_as_reachable_once_per_process() -> None:
    asked = []

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            asked.append(self.path)
            self.send_error(503)  # an answer, though MLflow's client would retry it

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_port}"
        tracking.check_server(uri, timeout=5)
        tracking.check_server(uri, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["/health"]  # one request: no retry, and not again in this process


@pytest.fixture
def read_only_db(tracking_store: str) -> Iterator[Path]:
    """The test's SQLite store, unwritable."""
    with read_only(Path(tracking_store.removeprefix("sqlite:///"))) as db:
        yield db


def test_a_read_only_store_is_one_line_before_the_run(read_only_db: Path) -> None:
    before = read_only_db.read_bytes()
    with pytest.raises(OccluferError) as err, tracking.start_run("x", {"a": 1}):
        pytest.fail("the run must not start")
    text = _one_line(err)
    assert str(read_only_db) in text and "cannot be written" in text and "chmod" in text
    assert read_only_db.read_bytes() == before


def test_the_write_check_leaves_a_writable_store_unchanged(tracking_store: str) -> None:
    db = Path(tracking_store.removeprefix("sqlite:///"))
    before = db.read_bytes()
    tracking.check_writable()
    assert db.read_bytes() == before


def _start_and_get_killed(active: Path) -> str:
    """A process that opens a run with ``active_file`` and dies by SIGKILL; the run's id."""
    code = ("import os, sys\nfrom pathlib import Path\nfrom occlufer import tracking\n"
            "cm = tracking.start_run('occlufer-test', {'a': 1}, active_file=Path(sys.argv[1]))\n"
            "run = cm.__enter__()\nprint(run.info.run_id, flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(active)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr
    return proc.stdout.split()[-1]


def test_an_abandoned_run_is_killed_when_the_next_starts(tmp_path: Path,
                                                         tracking_store: str) -> None:
    import mlflow

    active = tmp_path / "checkpoints" / "train.mlflow_run.json"
    old = _start_and_get_killed(active)
    client = mlflow.MlflowClient(tracking_store)
    assert client.get_run(old).info.status == "RUNNING" and active.is_file()
    with tracking.start_run("occlufer-test", {"a": 2}, active_file=active) as run:
        assert client.get_run(old).info.status == "KILLED"
        assert json.loads(active.read_text())["run_id"] == run.info.run_id != old
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert not active.exists()


def test_the_resumed_run_is_not_killed(tmp_path: Path, tracking_store: str) -> None:
    import mlflow

    active = tmp_path / "train.mlflow_run.json"
    old = _start_and_get_killed(active)
    with tracking.start_run("occlufer-test", {"a": 1}, run_id=old, active_file=active) as run:
        assert run.info.run_id == old
    assert mlflow.MlflowClient(tracking_store).get_run(old).info.status == "FINISHED"


def test_a_failed_start_ends_no_run_running(tracking_store: str, monkeypatch) -> None:
    import mlflow

    def broken() -> dict:
        raise RuntimeError("disk full\nmore detail")

    monkeypatch.setattr(tracking, "run_tags", broken)
    with pytest.raises(OccluferError) as err, tracking.start_run("x", {"a": 1}):
        pytest.fail("the run must not start")
    assert "disk full" in _one_line(err)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert runs and all(r.info.status == "FAILED" for r in runs)
    assert mlflow.active_run() is None


def test_check_run_finds_the_newest_run_that_logged_the_model(tmp_path: Path,
                                                              tracking_store) -> None:
    import mlflow

    model = tmp_path / "model.pt"
    model.write_bytes(b"the weights")
    with pytest.raises(OccluferError) as err:  # no run has logged it (yet)
        tracking.check_run(model)
    text = _one_line(err)
    assert tracking.file_sha256(model)[:12] in text and "no MLflow run in" in text
    assert "dvc repro -f -s train validate" in text
    ids = []
    for _ in range(2):  # `dvc repro -f` trains the same bytes again: the newest run wins
        with tracking.start_run("occlufer-test", {"a": 1}) as run:
            tracking.tag_model(model)
        ids.append(run.info.run_id)
    with tracking.start_run("occlufer-test", {"a": 2}):
        mlflow.set_tag(tracking.MODEL_TAG, "f" * 64)  # another model's run
    assert tracking.check_run(model) == ids[-1]
    assert tracking.find_model_run(model).info.run_id == ids[-1]
    got = mlflow.MlflowClient(tracking_store).get_run(ids[-1]).data.tags
    assert got[tracking.MODEL_TAG] == tracking.file_sha256(model)
    with tracking.resume_run(model) as run:
        assert run.info.run_id == ids[-1]
    elsewhere = tmp_path / "none.db"  # a store that does not exist is not created
    assert tracking.find_model_run(model, f"sqlite:///{elsewhere}") is None
    assert not elsewhere.exists()


def test_execution_tags_name_the_host_and_the_hardware() -> None:
    import socket

    tags = tracking.execution_tags()
    assert tags[tracking.HOST_TAG] == socket.gethostname()
    hw = json.loads(tags[tracking.HARDWARE_TAG])
    assert hw["cores"] >= 1 and hw["cpu"]


def test_a_store_that_is_no_database_is_one_line(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not SQLite" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with pytest.raises(OccluferError) as err:
        tracking.check_writable()
    assert str(db) in _one_line(err) and "restore it" in str(err.value)
