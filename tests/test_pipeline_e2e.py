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
import pandas as pd
import pytest
import yaml

from occlufer import tracking
from tests.conftest import ROOT
from tests.offline_page import check_offline_page

BIN = Path(sys.executable).parent


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_EXP_NAME", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _copy_repo(dst: Path, experiment: str | None = "smoke") -> Path:
    """This working tree (tracked and untracked files, not the ignored ones) as a fresh git
    repository with one commit, selecting ``experiment`` in conf/config.yaml (None: the
    default pipeline)."""
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
    if experiment is not None:
        config.write_text(text.replace("- experiment: null", f"- experiment: {experiment}"))
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
    head = json.loads((repo / "reports/validate/metrics.json").read_text())  # DVC's metrics
    detail = json.loads((repo / "reports/validate/detail.json").read_text())
    assert len(head) <= 30 and not set(head) & set(detail)
    metrics = {**detail, **head}
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
    for key, value in head.items():  # DVC and MLflow agree on every headline metric
        assert run.data.metrics[key] == pytest.approx(value), key
    assert "val/happy/f1" not in run.data.metrics  # the detail is an artifact only
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert run.info.run_name == f"smoke-{sha[:7]}"  # dvc repro: <recipe>-<short commit>
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("Recipe `smoke`") and f"**{head['val/acc']:.3f}**" in note
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
    listed = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    assert sorted(plots) == sorted(listed)  # images only: they render offline
    for image in listed:
        assert plots[image][0]["type"] == "image" and Path(plots[image][0]["url"]).is_file()
    _run(["dvc", "plots", "show", "-o", "dvc_plots"], repo)
    page = check_offline_page(repo / "dvc_plots" / "index.html")
    assert page.ok and page.images == len(listed), page.problems
    # the data behind the plots
    history = pd.read_csv(repo / "models/history.csv")
    assert list(history["epoch"]) == list(range(1, epochs + 1))
    preds = pd.read_csv(repo / "reports/validate/predictions_val.csv")
    assert len(preds) == metrics["val/n"]
    params = yaml.safe_load((repo / "params.yaml").read_text())["validate"]
    types, ratios = params["robustness_types"], params["robustness_ratios"]
    robustness = pd.read_csv(repo / "reports/validate/robustness.csv")
    assert len(robustness) == len(ratios)
    assert {float(r) for r in robustness["ratio"]} == set(ratios)
    assert set(types) <= set(robustness.columns)  # one column (curve) per occluder
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
    assert new[0].data.tags.get("dvc.exp_name") == name == new[0].info.run_name
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
    run_id = tracking.find_model_run(repo / "models/model.pt",
                                     f"sqlite:///{repo / 'mlflow.db'}").info.run_id
    out = repo / "eval_mlflow"
    _run([str(BIN / "occlufer"), "evaluate", "--data", "data/split/val", "--model",
          f"runs:/{run_id}/model", "--out", str(out)], repo)
    staged = json.loads((repo / "reports/validate/metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(staged)
