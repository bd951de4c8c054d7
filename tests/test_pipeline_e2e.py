"""The real thing: ``dvc repro`` and ``dvc exp run`` in a copy of this repository.

The copy selects the ``smoke`` experiment in ``conf/config.yaml`` so that the exact user
commands (``dvc repro``, ``dvc exp run -S occlusion.ratio=0.4``) run in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_EXP_NAME", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _copy_repo(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    config = dst / "conf" / "config.yaml"
    text = config.read_text()
    assert "- experiment: null" in text
    config.write_text(text.replace("- experiment: null", "- experiment: smoke"))
    _run([str(BIN / "occlufer"), "compose"], dst)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def _runs(repo: Path):
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["occlufer"], output_format="list")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = _copy_repo(tmp_path_factory.mktemp("e2e") / "occlufer")
    _run(["dvc", "repro"], repo)
    return repo


def test_repro_writes_metrics_plots_and_mlflow_run(repo: Path) -> None:
    metrics = json.loads((repo / "reports/validate/metrics.json").read_text())
    for key in ("val/acc", "val/macro_f1", "val_occluded/acc", "val_occluded/macro_f1",
                "val/happy/f1", "val_occluded/surprise/recall", "val/acc_ci_low",
                "val/acc_ci_high", "val/ece", "val_occluded/ece", "val/occlusion_drop",
                "val_occluded/occluder/block/acc", "robustness/block/auc",
                "robustness/erasing/auc", "robustness/mean_auc", "robustness/n"):
        assert key in metrics, key
    assert metrics["val/acc"] > 1 / 7 + 0.1, "the smoke model should beat chance clearly"
    assert metrics["val/acc_ci_low"] < metrics["val/acc"] < metrics["val/acc_ci_high"]
    runs = _runs(repo)
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["acquire.source"] == "synthetic"
    for key, value in metrics.items():  # DVC and MLflow agree on every metric
        assert run.data.metrics[key] == pytest.approx(value), key
    assert "train/loss" in run.data.metrics
    summary = json.loads((repo / "data/acquired/summary.json").read_text())
    for key in ("read", "kept", "rejected"):
        assert run.data.metrics[f"acquire/{key}"] == summary[key]
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                         output_format="list")
    assert [m.source_run_id for m in models] == [run.info.run_id]
    assert (repo / "mlartifacts").is_dir() and not (repo / "mlruns").exists()
    shown = json.loads(_run(["dvc", "plots", "show", "--json", "--split"], repo))
    assert not shown.get("errors"), shown.get("errors")
    plots = shown["data"]
    epochs = int(run.data.params["train.epochs"])
    rows = {name: plots[name][0]["anchor_definitions"]["<DVC_METRIC_DATA>"]
            for name in ("loss", "accuracy", "confusion_val", "confusion_val_occluded",
                         "robustness", "reliability")}
    assert len(rows["loss"]) == 2 * epochs and len(rows["accuracy"]) == 3 * epochs
    assert len(rows["confusion_val"]) == metrics["val/n"]
    assert len(rows["confusion_val_occluded"]) == metrics["val_occluded/n"]
    params = yaml.safe_load((repo / "params.yaml").read_text())["validate"]
    types, ratios = params["robustness_types"], params["robustness_ratios"]
    assert len(rows["robustness"]) == len(types) * len(ratios)  # one line per occluder
    assert {float(r["ratio"]) for r in rows["robustness"]} == set(ratios)
    assert {r["field"] for r in rows["robustness"]} == set(types)
    assert {r["filename"] for r in rows["reliability"]} == {
        "reliability_val.csv", "reliability_val_occluded.csv"}
    assert all(0 <= float(r["accuracy"]) <= 1 for r in rows["reliability"])
    for image in ("data/acquired/preview.png", "data/occluded/preview.png",
                  "reports/validate/mistakes.png"):
        assert Path(plots[image][0]["url"]).is_file()
    client = mlflow.MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "data")}
    assert {"data/preview.png", "data/summary.csv"} <= artifacts
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "validate")}
    on_disk = {f"validate/{p.name}" for p in (repo / "reports/validate").iterdir()}
    assert on_disk <= logged  # the whole report folder, the same files as in DVC
    assert {"validate/report.md", "validate/robustness.csv", "validate/mistakes.png"} <= logged
    report = (repo / "reports/validate/report.md").read_text()
    assert f"{metrics['val/acc']:.3f}" in report and "](robustness.png)" in report


def test_second_repro_runs_nothing(repo: Path) -> None:
    out = _run(["dvc", "repro"], repo)
    assert "Running stage" not in out
    assert "up to date" in _run(["dvc", "status"], repo)
    assert len(_runs(repo)) == 1


def test_exp_run_with_override_is_a_new_experiment_and_mlflow_run(repo: Path) -> None:
    _run(["dvc", "exp", "run", "-S", "occlusion.ratio=0.4"], repo)
    show = json.loads(_run(["dvc", "exp", "show", "--json"], repo))
    exps = [e for rev in show for e in (rev.get("experiments") or [])]
    found = []
    for exp in exps:
        for ref in exp["revs"]:
            data = ref["data"]
            ratio = data["params"]["params.yaml"]["data"]["occlusion"]["ratio"]
            metrics = data["metrics"]["reports/validate/metrics.json"]["data"]
            found.append((ref.get("name"), ratio, metrics["val_occluded/acc"]))
    assert any(ratio == 0.4 for _, ratio, _ in found), found
    runs = _runs(repo)
    assert len(runs) == 2
    new = [r for r in runs if r.data.params["occlusion.ratio"] == "0.4"]
    assert len(new) == 1
    name = next(n for n, ratio, _ in found if ratio == 0.4)
    assert new[0].data.tags.get("dvc.exp_name") == name
    assert "val_occluded/acc" in new[0].data.metrics


@pytest.mark.slow
def test_queued_sweep_tracks_into_the_repository_store(repo: Path) -> None:
    before = len(_runs(repo))
    _run(["dvc", "exp", "run", "--queue", "-S", "occlusion.ratio=0.1,0.3"], repo)
    _run(["dvc", "exp", "run", "--run-all", "-j", "1"], repo, timeout=900)
    runs = _runs(repo)
    assert len(runs) == before + 2
    ratios = sorted(r.data.params["occlusion.ratio"] for r in runs[: len(runs) - before])
    assert ratios == ["0.1", "0.3"]
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))


def test_evaluate_the_logged_mlflow_model_gives_validates_metrics(repo: Path) -> None:
    run_id = json.loads((repo / "models/mlflow_run.json").read_text())["run_id"]
    out = repo / "eval_mlflow"
    _run([str(BIN / "occlufer"), "evaluate", "--data", "data/split/val", "--model",
          f"runs:/{run_id}/model", "--out", str(out)], repo)
    staged = json.loads((repo / "reports/validate/metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(staged)
