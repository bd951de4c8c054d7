"""The one place that talks to MLflow.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo>/mlflow.db``. One MLflow
run per pipeline execution: ``train`` opens it and tags it with the sha256 of the ``model.pt`` it
wrote (:data:`MODEL_TAG`, :func:`tag_model`); ``validate`` finds that run by the content of
``models/model.pt`` (:func:`find_model_run`) and logs into it. No run id, time or host is kept in
the DVC outputs (they are byte-identical between executions): per-execution values (epoch
seconds, img/s, host, hardware) are the run's metrics and tags.

Faults stop a stage with one line before any work: an ``http(s)`` server that does not answer
within :data:`PROBE_TIMEOUT` seconds (:func:`check_server`, once per process; MLflow's own client
would retry for minutes), a SQLite store that cannot be written (:func:`check_writable`), a run
that cannot be started, and (validate) a model that no run of the store logged
(:func:`check_run`). A run whose stage was killed stays ``RUNNING`` in MLflow; :func:`start_run`
marks it ``KILLED`` when the next run of that stage starts (``active_file``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from occlufer.errors import OccluferError, first_line
from occlufer.hashing import file_sha256

#: the tag with the sha256 of the ``model.pt`` a train run wrote: how validate (and ``occlufer
#: zoo publish``) find the run of a model, by content, without a run id in the DVC outputs
MODEL_TAG = "occlufer.model_sha256"
#: the machine a train run ran on (per execution: MLflow tags only, never DVC outputs)
HOST_TAG = "occlufer.host"
HARDWARE_TAG = "occlufer.hardware"  # JSON of occlufer.hardware.hardware()
KERNELS_TAG = "occlufer.kernels"  # portable or this CPU's kernels (occlufer.kernels)
#: the tag MLflow shows as a run's description
NOTE_TAG = "mlflow.note.content"
#: seconds an http(s) tracking server gets to answer :func:`check_server`
PROBE_TIMEOUT = 5.0
_answered: set[str] = set()  # servers that answered the probe in this process
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


def tracking_uri(start: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store in the repository root (of
    ``start``, default the working directory)."""
    return (os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{repo_root(start) / 'mlflow.db'}")


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

    uri = tracking_uri()
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    return mlflow


def check_server(uri: str | None = None, timeout: float = PROBE_TIMEOUT) -> None:
    """Stop with one line unless an ``http(s)://`` tracking server answers a GET of ``/health``
    within ``timeout`` seconds (any HTTP answer counts, even 401 or 404; a TLS handshake too).

    Checked once per process and URI. Other stores (``sqlite:``, ...) are not probed here.
    """
    uri = uri or tracking_uri()
    if not uri.startswith(("http://", "https://")) or uri in _answered:
        return
    import ssl
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()  # noqa: S310
    except urllib.error.HTTPError:
        pass  # it answered
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if not isinstance(reason, ssl.SSLError):  # a certificate problem: MLflow's to judge
            raise OccluferError(
                f"MLflow tracking server {uri} is not reachable "
                f"({first_line(reason) if isinstance(reason, BaseException) else reason}; "
                f"waited up to {timeout:g} s); start it, or point MLFLOW_TRACKING_URI at a "
                "running server (unset it for the local SQLite store mlflow.db)") from None
    _answered.add(uri)


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(uri[len(prefix):].split("?", 1)[0]) if uri.startswith(prefix) else None


def check_writable(uri: str | None = None) -> None:
    """Stop with one line when a SQLite store exists but cannot be written (a read-only file,
    folder or disk): checked by creating a table inside a transaction that is rolled back, so
    the database is not changed. A store that does not exist yet is left to MLflow to create.
    """
    uri = uri or tracking_uri()
    db = _sqlite_path(uri)
    if db is None or not db.is_file():
        return
    import sqlite3

    con = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("CREATE TABLE _occlufer_write_probe (x INTEGER)")
    except sqlite3.DatabaseError as exc:  # OperationalError for read-only, locked, ...
        text = str(exc)
        if "locked" not in text and "busy" not in text:  # locked: another run is writing
            fix = (f"make it and its folder writable (`chmod u+w {db} {db.parent}`)"
                   if "readonly" in text or "read-only" in text
                   else "restore it from a backup")
            raise OccluferError(f"MLflow store {db} cannot be written ({first_line(exc)}); "
                                f"{fix}, or point MLFLOW_TRACKING_URI at another store") from None
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()


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


def run_name_for(params: Mapping[str, Any]) -> str:
    """A new run's name: the DVC experiment's (``DVC_EXP_NAME``, which ``dvc exp run`` sets),
    else ``<recipe>-<short commit>`` (``dvc repro``; :func:`occlufer.recipe.recipe_name`)."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    from occlufer.recipe import recipe_name

    root = repo_root()
    commit = _git_commit(root)
    recipe = recipe_name(params, root / "conf")
    return f"{recipe}-{commit[:7]}" if commit else recipe


def describe(params: Mapping[str, Any], result: str | None = None) -> str:
    """The run description (MLflow's ``mlflow.note.content``, Markdown): recipe, DVC
    experiment, commit, then ``result`` (validate's headline) or a note that it is to come."""
    from occlufer.recipe import DEFAULT, recipe_name

    root = repo_root()
    recipe = recipe_name(params, root / "conf")
    where = (f"conf/experiment/{recipe}.yaml" if recipe != DEFAULT else "conf/config.yaml")
    head = [f"Recipe `{recipe}` ({where})"]
    if os.environ.get("DVC_EXP_NAME"):
        head.append(f"DVC experiment `{os.environ['DVC_EXP_NAME']}`")
    commit = os.environ.get("DVC_EXP_BASELINE_REV") or _git_commit(root)
    if commit:
        head.append(("baseline" if os.environ.get("DVC_EXP_BASELINE_REV") else "commit")
                    + f" `{commit[:7]}`")
    body = result or "Training; the validate stage adds the headline result here."
    return (" · ".join(head) + "\n\n" + body + "\n\nFull report: artifact `validate/report.md`"
            " (all metrics: `validate/detail.json`).")


def set_description(text: str) -> None:
    """Set the active run's description (shown on its page in the MLflow UI)."""
    _mlflow().set_tag(NOTE_TAG, text)


@contextmanager
def start_run(experiment: str, params: Mapping[str, Any], run_name: str | None = None,
              run_id: str | None = None, *, active_file: Path | None = None) -> Iterator[Any]:
    """Open the pipeline's MLflow run: experiment, flattened params and tags.

    ``run_id`` re-opens that run instead (training resumed from a checkpoint) when the store
    still has it; otherwise a new run is started. A store that cannot be reached or written,
    or a run that cannot be started, stops here with one line (:class:`OccluferError`).

    ``active_file`` (outside the DVC outputs, e.g. beside the checkpoint) holds the open run's
    id until the run ends. A run still named there when the next one starts was abandoned (its
    process was killed): unless it is the ``run_id`` being resumed, it is marked ``KILLED`` if
    MLflow still has it ``RUNNING``.
    """
    mlflow = _mlflow()
    check_writable()
    try:
        run = _open_run(mlflow, experiment, params, run_name, run_id, active_file)
    except OccluferError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise OccluferError(f"cannot start an MLflow run in {tracking_uri()}: "
                            f"{first_line(exc)}; check MLFLOW_TRACKING_URI and that the store "
                            "is writable") from None
    try:
        if active_file is not None:
            active_file.parent.mkdir(parents=True, exist_ok=True)
            active_file.write_text(json.dumps({"run_id": run.info.run_id,
                                               "tracking_uri": tracking_uri()}) + "\n",
                                   encoding="utf-8")
        with run:  # ends the run FINISHED, or FAILED on an exception
            yield run
    finally:
        if active_file is not None:
            active_file.unlink(missing_ok=True)


def _open_run(mlflow: Any, experiment: str, params: Mapping[str, Any], run_name: str | None,
              run_id: str | None, active_file: Path | None) -> Any:
    """:func:`start_run` up to the open run (MLflow's ``ActiveRun``)."""
    if run_id is not None:
        try:
            mlflow.MlflowClient().get_run(run_id)
        except Exception:  # noqa: BLE001 - the store was reset or points elsewhere
            run_id = None
    if active_file is not None:
        end_abandoned(active_file, keep=run_id)
    if run_id is not None:
        return mlflow.start_run(run_id=run_id)
    try:
        _set_experiment(mlflow, experiment)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise OccluferError(f"cannot reach MLflow tracking store {tracking_uri()}: "
                            f"{first_line(exc)}; check MLFLOW_TRACKING_URI") from None
    run = mlflow.start_run(run_name=run_name or run_name_for(params))
    try:
        mlflow.set_tags({**run_tags(), NOTE_TAG: describe(params)})
        mlflow.log_params({k: str(v) if isinstance(v, list) else v
                           for k, v in flatten(params).items()})
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow.end_run("FAILED")
        raise
    return run


def end_abandoned(active_file: Path, keep: str | None = None) -> str | None:
    """Mark the run named in ``active_file`` ``KILLED`` when MLflow still has it ``RUNNING``
    (its stage was killed before it could end the run); returns its id if so.

    Left alone: ``keep`` (the run being resumed), a run of another tracking store, a run that
    has ended or is gone.
    """
    try:
        ref = json.loads(active_file.read_text(encoding="utf-8"))
        run_id, uri = str(ref["run_id"]), ref.get("tracking_uri")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if run_id == keep or uri != tracking_uri():
        return None
    client = _mlflow().MlflowClient()
    try:
        if client.get_run(run_id).info.status != "RUNNING":
            return None
    except Exception:  # noqa: BLE001 - not in this store (any more)
        return None
    client.set_terminated(run_id, "KILLED")
    print(f"MLflow run {run_id} was left RUNNING by a stage that was killed (recorded in "
          f"{active_file}); marked it KILLED")
    return run_id


def tag_model(model_file: Path) -> str:
    """Tag the active run with ``model_file``'s sha256 (:data:`MODEL_TAG`); returns it."""
    digest = file_sha256(model_file)
    _mlflow().set_tag(MODEL_TAG, digest)
    return digest


def execution_tags() -> dict[str, str]:
    """Where this execution runs: host name, hardware and kernels (:data:`HOST_TAG`,
    :data:`HARDWARE_TAG`, :data:`KERNELS_TAG`), tags of the run, never part of a DVC output."""
    import socket

    from occlufer import kernels
    from occlufer.hardware import hardware

    return {HOST_TAG: socket.gethostname(), HARDWARE_TAG: json.dumps(hardware(), sort_keys=True),
            KERNELS_TAG: kernels.describe()}


def set_tags(tags: Mapping[str, str]) -> None:
    """Set tags on the active run."""
    _mlflow().set_tags(dict(tags))


def _model_runs(client: Any, digest: str, max_results: int = 1) -> list[Any]:
    """Runs (newest first) of any active experiment tagged with ``digest`` (:data:`MODEL_TAG`)."""
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    return list(client.search_runs(ids, f"tags.`{MODEL_TAG}` = '{digest}'",
                                   order_by=["attributes.start_time DESC"],
                                   max_results=max_results))


def find_model_run(model_file: Path, uri: str | None = None) -> Any | None:
    """The newest MLflow run that logged ``model_file`` (tagged with its sha256 by train), in the
    store ``uri`` (default :func:`tracking_uri`); None when there is none, or when that SQLite
    store does not exist (it is not created). Several runs can hold the same bytes (the
    pipeline is reproducible: ``dvc repro -f`` trains the same model again): the newest wins."""
    import mlflow

    uri = uri or tracking_uri()
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():
        return None
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    check_server(uri)
    runs = _model_runs(mlflow.MlflowClient(uri), file_sha256(model_file))
    return runs[0] if runs else None


def check_run(model_file: Path) -> str:
    """The id of the MLflow run that logged ``model_file`` (:func:`find_model_run`), once the
    store is reachable and writable; one line with the fix otherwise (validate calls this
    before it evaluates, so a missing run costs no evaluation time)."""
    fix = "re-create it with `dvc repro -f -s train validate`"
    elsewhere = "(or point MLFLOW_TRACKING_URI at the store that has it)"
    try:
        digest = file_sha256(model_file)
    except OSError as exc:
        raise OccluferError(f"{model_file}: cannot read the model ({first_line(exc)}); "
                            f"{fix}") from None
    mlflow = _mlflow()
    uri = tracking_uri()
    what = f"no MLflow run in {uri} logged this model (tag {MODEL_TAG} {digest[:12]}...)"
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():  # (MLflow would create an empty one)
        raise OccluferError(f"{model_file}: {what}, the store {db} does not exist; {fix} "
                            f"{elsewhere}")
    try:
        runs = _model_runs(mlflow.MlflowClient(), digest)
    except Exception as exc:  # noqa: BLE001 - a broken store or server
        raise OccluferError(f"{model_file}: the MLflow runs of {uri} cannot be searched "
                            f"({first_line(exc)}); {fix} {elsewhere}") from None
    if not runs:
        raise OccluferError(f"{model_file}: {what}; {fix} {elsewhere}")
    check_writable()
    return str(runs[0].info.run_id)


@contextmanager
def resume_run(model_file: Path) -> Iterator[Any]:
    """Re-open the run that logged ``model_file`` (validate logs into train's run)."""
    run_id = check_run(model_file)
    mlflow = _mlflow()
    try:
        run = mlflow.start_run(run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise OccluferError(f"cannot re-open MLflow run {run_id} in {tracking_uri()}: "
                            f"{first_line(exc)}; check that the store is writable") from None
    with run:
        yield run


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
