"""The one place that talks to MLflow.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo>/mlflow.db``. One MLflow
run per pipeline execution: ``train`` opens it and records its id in ``models/mlflow_run.json``;
``validate`` logs into the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from occlufer.errors import OccluferError

RUN_FILE = "mlflow_run.json"
_EXP_TMP = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def repo_root(start: Path | None = None) -> Path:
    """The project root: the nearest folder with ``dvc.yaml`` or ``.git``.

    Queued DVC experiments run in a copy under ``<root>/.dvc/tmp/exps/``; they resolve to the
    original ``<root>`` so that every run lands in the same tracking store.
    """
    here = (start or Path.cwd()).resolve()
    text = str(here) + os.sep
    if _EXP_TMP in text:
        return Path(text.split(_EXP_TMP)[0])
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() or (folder / ".git").exists():
            return folder
    return here


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store in the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def artifact_root(uri: str) -> Path | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a SQLite store.

    MLflow's own default is relative to the working directory, which for queued DVC
    experiments is a temporary copy that is deleted afterwards. Servers decide for themselves
    (None).
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    return Path(uri[len(prefix):]).resolve().parent / "mlartifacts"


def _set_experiment(mlflow: Any, name: str) -> None:
    """Select experiment ``name``, creating it first (see :func:`artifact_root`)."""
    root = artifact_root(tracking_uri())
    if root is not None and mlflow.get_experiment_by_name(name) is None:
        with contextlib.suppress(Exception):  # a parallel run may have created it first
            mlflow.create_experiment(name, artifact_location=root.as_uri())
    mlflow.set_experiment(name)


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` → ``{"train.lr": 1e-3}`` (lists become strings)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _data_hashes(root: Path) -> dict[str, str]:
    """``data.<out>.md5`` tags for the stage outputs recorded in ``dvc.lock``."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    import yaml

    tags = {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if str(out.get("path", "")).startswith("data") and "md5" in out:
                tags[f"data.{out['path']}.md5"] = out["md5"]
    return tags


def run_tags() -> dict[str, str]:
    """Tags for a new run: git commit, DVC experiment name, data hashes from dvc.lock."""
    root = repo_root()
    tags = {"occlufer.stage": "train"}
    commit = _git_commit(root)
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    tags.update(_data_hashes(root))
    return tags


@contextmanager
def start_run(experiment: str, params: Mapping[str, Any], run_name: str | None = None,
              run_id: str | None = None) -> Iterator[Any]:
    """Open the pipeline's MLflow run: experiment, flattened params and tags.

    ``run_id`` re-opens that run instead (training resumed from a checkpoint) when the store
    still has it; otherwise a new run is started.
    """
    mlflow = _mlflow()
    if run_id is not None:
        try:
            mlflow.MlflowClient().get_run(run_id)
        except Exception:  # noqa: BLE001 - the store was reset or points elsewhere
            run_id = None
    if run_id is not None:
        with mlflow.start_run(run_id=run_id) as run:
            yield run
        return
    try:
        _set_experiment(mlflow, experiment)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise OccluferError(f"cannot reach MLflow tracking store {tracking_uri()}: "
                            f"{str(exc).splitlines()[0]}; check MLFLOW_TRACKING_URI") from None
    name = run_name or os.environ.get("DVC_EXP_NAME")
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags(run_tags())
        mlflow.log_params({k: str(v) if isinstance(v, list) else v
                           for k, v in flatten(params).items()})
        yield run


@contextmanager
def resume_run(run_file: Path) -> Iterator[Any]:
    """Re-open the run that ``train`` recorded in ``run_file`` (validate logs into it)."""
    mlflow = _mlflow()
    ref = json.loads(run_file.read_text(encoding="utf-8"))
    client = mlflow.MlflowClient()
    try:
        client.get_run(ref["run_id"])
    except Exception:  # noqa: BLE001 - the store was reset or points elsewhere
        raise OccluferError(f"{run_file}: MLflow run {ref['run_id']} is not in {tracking_uri()}; "
                            "re-run training with `dvc repro --force train`") from None
    with mlflow.start_run(run_id=ref["run_id"]) as run:
        yield run


def write_run_ref(run: Any, folder: Path) -> Path:
    """Record the run id (and where it lives) for the stages after train."""
    path = folder / RUN_FILE
    path.write_text(json.dumps({"run_id": run.info.run_id,
                                "experiment_id": run.info.experiment_id}, indent=2) + "\n",
                    encoding="utf-8")
    return path


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite metrics to the active run."""
    import math

    mlflow = _mlflow()
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))},
                       step=step)


def log_artifacts(folder: Path, artifact_path: str | None = None) -> None:
    """Upload a folder's files to the active run."""
    _mlflow().log_artifacts(str(folder), artifact_path=artifact_path)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Upload one file to the active run."""
    _mlflow().log_artifact(str(path), artifact_path=artifact_path)


def log_pyfunc_model(model_dir_or_pt: Path, registered_model_name: str | None = None,
                     alias: str | None = None) -> Any:
    """Log ``model.pt`` (or ``<folder>/model.pt``) as the occlufer pyfunc model under artifact
    path ``model`` of the active run; register it as ``registered_model_name`` (and point
    ``alias`` at the new version) when given. Returns MLflow's ModelInfo. The model's arguments
    are :func:`occlufer.inference.pyfunc.pyfunc_model_kwargs` (shared with
    :func:`~occlufer.inference.pyfunc.save_pyfunc_model`, which writes a local folder)."""
    from occlufer.inference.pyfunc import pyfunc_model_kwargs

    pt = Path(model_dir_or_pt)
    pt = pt / "model.pt" if pt.is_dir() else pt
    mlflow = _mlflow()
    active = mlflow.active_run()
    source = f"{pt}" + (f" (MLflow run {active.info.run_id})" if active else "")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hints.*")  # the signature is explicit
        info = mlflow.pyfunc.log_model(name="model", registered_model_name=registered_model_name,
                                       **pyfunc_model_kwargs(pt, source))
    if registered_model_name and alias:
        mlflow.MlflowClient().set_registered_model_alias(
            registered_model_name, alias, str(info.registered_model_version))
    return info


def download_model(uri: str) -> Path:
    """A logged MLflow model (``models:/<name>@<alias>``, ``runs:/<id>/model``, ...) as a local
    folder (MLflow's download cache)."""
    mlflow = _mlflow()
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI or store
        raise OccluferError(f"{uri}: cannot load this MLflow model from {tracking_uri()} "
                            f"({str(exc).splitlines()[0][:200]}); check the name/alias and "
                            "MLFLOW_TRACKING_URI") from None
