"""Byte-identical pipeline outputs (issue "reproducibility", item 1).

No wall-clock time, host name, MLflow run id or absolute path goes into a DVC-tracked output:
they are the MLflow run's (metrics, tags) and the console's. ``validate`` finds train's run by
the sha256 of ``models/model.pt`` (:data:`occlufer.tracking.MODEL_TAG`), not by a run id in a
file. Here: the five stage functions run twice at unit-test scale under a different clock and
host name, then (slow) ``dvc repro`` of the default pipeline in a copy and in a fresh clone of
it, which must reproduce the committed ``dvc.lock`` (``git status`` clean).
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from occlufer import tracking
from occlufer.training import EpochStats
from occlufer.training.job import TIMING_METRICS, history_frame
from tests.conftest import ROOT

#: the DVC outputs of the stages (dvc.yaml's ``outs``)
OUTS = ("data/acquired", "data/occluded", "data/split", "models", "reports/validate")
TEXT = (".json", ".csv", ".md", ".yaml")


def _files(root: Path) -> dict[str, bytes]:
    """Every file under the stage outputs of ``root``, by path relative to it."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for out in OUTS for p in sorted((root / out).rglob("*")) if p.is_file()}


def _stats(epoch: int, seconds: float) -> EpochStats:
    return EpochStats(epoch=epoch, train_loss=1.5, train_acc=0.25, val_loss=1.25, val_acc=0.5,
                      val_occluded_acc=0.375, val_mixed_acc=0.4375, lr=1e-3,
                      img_per_s=1000.0 / seconds, seconds=seconds)


def test_history_csv_keeps_no_timings() -> None:
    fast = history_frame([_stats(1, 2.0), _stats(2, 3.0)]).to_csv(index=False)
    slow = history_frame([_stats(1, 20.0), _stats(2, 31.0)]).to_csv(index=False)
    assert fast == slow
    columns = set(pd.read_csv(io.StringIO(fast)).columns)
    assert not columns & set(TIMING_METRICS)
    assert {"epoch", "train/loss", "val/acc", "val_occluded/acc", "lr"} <= columns
    assert set(TIMING_METRICS) <= set(_stats(1, 2.0).metrics())  # ... which MLflow gets


def _pipeline(root: Path, params, monkeypatch: pytest.MonkeyPatch, *, slower: float,
              host: str) -> None:
    """acquire → occlude → mix_split → train → validate in ``root`` with the stages' own
    relative paths, under a clock that runs ``slower`` times as fast and host name ``host``."""
    from occlufer.stages.acquire import acquire
    from occlufer.stages.mix_split import mix_split
    from occlufer.stages.occlude import occlude
    from occlufer.stages.train import train
    from occlufer.stages.validate import validate

    real = time.perf_counter
    start = real()
    root.mkdir()
    with monkeypatch.context() as mp:
        mp.chdir(root)
        mp.setattr(time, "perf_counter", lambda: start + slower * (real() - start) + 1e4)
        mp.setattr(socket, "gethostname", lambda: host)
        acquire(params)
        occlude(params)
        mix_split(params)
        train(params)
        validate(params)


def test_two_executions_write_the_same_bytes(tmp_path: Path, make_params, tracking_store: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    params = make_params("train.log_model=false", "validate.robustness_types=[block,hand]",
                         "validate.bootstrap=100", "validate.device=cpu")
    a, b = tmp_path / "a", tmp_path / "b"
    _pipeline(a, params, monkeypatch, slower=1.0, host="occlufer-host-a")
    _pipeline(b, params, monkeypatch, slower=7.0, host="occlufer-host-b")  # same store
    files_a, files_b = _files(a), _files(b)
    assert "models/model.pt" in files_a and "reports/validate/metrics.json" in files_a
    assert sorted(files_a) == sorted(files_b)
    differ = [name for name in files_a if files_a[name] != files_b[name]]
    assert not differ, f"not byte-identical between executions: {differ}"
    assert not (a / "models" / "mlflow_run.json").exists()
    # the per-execution values are MLflow's: one run per execution, both tagged with the model
    runs = mlflow.MlflowClient(tracking_store).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(tracking_store).search_experiments()],
        order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    digest = tracking.file_sha256(a / "models" / "model.pt")
    assert [r.data.tags[tracking.MODEL_TAG] for r in runs] == [digest, digest]
    assert [r.data.tags[tracking.HOST_TAG] for r in runs] == ["occlufer-host-a",
                                                              "occlufer-host-b"]
    assert all(json.loads(r.data.tags[tracking.HARDWARE_TAG])["cores"] >= 1 for r in runs)
    seconds = [r.data.metrics["train/seconds"] for r in runs]
    assert seconds[1] > seconds[0] > 0  # the slower clock
    for r in runs:  # validate logged into its own execution's run (the newest with the model)
        assert "val/acc" in r.data.metrics and "train/img_per_s" in r.data.metrics
    assert tracking.find_model_run(b / "models" / "model.pt").info.run_id == runs[1].info.run_id
    # nothing of the execution in the text outputs: run ids, hosts, the working folder
    needles = [r.info.run_id for r in runs] + ["occlufer-host-a", str(tmp_path)]
    for name, data in files_a.items():
        if name.endswith(TEXT):
            text = data.decode("utf-8")
            assert not [n for n in needles if n in text], name
    summary = json.loads(files_a["data/acquired/summary.json"])
    assert "seconds" not in summary


# ---------------------------------------------------------------- the real thing (slow)
def _lock_outs(repo: Path) -> dict[str, list[tuple[str, str]]]:
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: [(o["path"], o["md5"]) for o in stage.get("outs", [])]
            for name, stage in stages.items()}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_default_pipeline_reproduces_dvc_lock_in_a_fresh_clone(tmp_path: Path) -> None:
    """``dvc repro`` of the default pipeline in a copy of this tree, ``dvc.lock`` committed
    there; then ``dvc repro`` in a fresh clone of that (no DVC cache, no MLflow store, no
    outputs) on the same machine: every stage's outs hash the same and ``git status`` is clean.
    With ``portable: true`` they also hash as the repository's committed ``dvc.lock`` says,
    which was written on whatever CPU the last commit of it ran on (docs/reproducibility.md).
    """
    from tests.test_pipeline_e2e import _copy_repo, _run

    first = _copy_repo(tmp_path / "first", experiment=None)
    _run(["dvc", "repro"], first, timeout=3600)
    _git(first, "add", "-A")
    _git(first, "commit", "-qm", "dvc.lock of the default pipeline", "--allow-empty")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(first), str(clone)], check=True,
                   capture_output=True)
    assert not (clone / "models").exists() and not (clone / "mlflow.db").exists()
    _run(["dvc", "repro"], clone, timeout=3600)
    want, got = _lock_outs(first), _lock_outs(clone)
    stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert sorted(want) == sorted(got) == sorted(stages)
    differ = {s: (want[s], got[s]) for s in stages if want[s] != got[s]}
    assert not differ, f"stage outs differ between two executions: {differ}"
    committed = _lock_outs(ROOT)
    assert yaml.safe_load((first / "params.yaml").read_text())["portable"] is True
    moved = {s: (committed[s], got[s]) for s in stages if committed[s] != got[s]}
    assert not moved, ("stage outs differ from the committed dvc.lock (portable: true should "
                       "give the same bits on any x86-64 CPU; or dvc.lock is stale: run "
                       f"`dvc repro` and commit it): {moved}")
    assert _git(clone, "status", "--porcelain") == ""
    # each execution has its own MLflow run, found by the model's content
    for repo in (first, clone):
        run = tracking.find_model_run(repo / "models" / "model.pt",
                                      f"sqlite:///{repo / 'mlflow.db'}")
        assert run is not None and "val/acc" in run.data.metrics
