"""The one place that talks to MLflow (``MLFLOW_TRACKING_URI``, else ``<repo>/mlflow.db``).

One run per pipeline execution: ``train`` opens it and tags it with its ``model.pt``'s sha256
(:data:`MODEL_TAG`); ``validate`` finds it by that tag. Faults stop a stage with one line first.
"""

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from occlufer.errors import OccluferError, first_line
from occlufer.hashing import file_sha256
from occlufer.recipe import DEFAULT, flat_keys, recipe_name

#: sha256 of a train run's ``model.pt``: how validate and ``zoo publish`` find a model's run
MODEL_TAG = "occlufer.model_sha256"
HOST_TAG = "occlufer.host"  # the machine a train run ran on (MLflow tags only)
HARDWARE_TAG = "occlufer.hardware"  # JSON of occlufer.hardware.hardware()
KERNELS_TAG = "occlufer.kernels"  # portable or this CPU's kernels (occlufer.kernels)
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
#: seconds a server gets to answer :func:`check_server` unless MLFLOW_HTTP_REQUEST_TIMEOUT is set
PROBE_TIMEOUT = 5.0
_answered: set[str] = set()  # servers that answered the probe in this process
_EXP_TMP = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep
_SQLITE = "sqlite:///"


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder with ``dvc.yaml`` or ``.git`` (a queued DVC experiment's: ``<root>``)."""
    here = (start or Path.cwd()).resolve()
    text = str(here) + os.sep
    if _EXP_TMP in text:
        return Path(text.split(_EXP_TMP)[0])
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() or (folder / ".git").exists():
            return folder
    return here


def tracking_uri(start: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store in the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"{_SQLITE}{repo_root(start) / 'mlflow.db'}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len(_SQLITE):].split("?", 1)[0]) if uri.startswith(_SQLITE) else None


def artifact_root(uri: str) -> Path | None:
    """``mlartifacts/`` beside a SQLite store (not a queued experiment's copy); None: a server."""
    db = _sqlite_path(uri)
    return None if db is None else db.resolve().parent / "mlartifacts"


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = tracking_uri()
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    return mlflow


def check_server(uri: str | None = None, timeout: float | None = None) -> None:
    """Stop with one line unless an ``http(s)://`` server answers ``GET /health`` (any answer;
    once per process and URI), without MLflow's minutes of retries unless its env vars ask."""
    uri = uri or tracking_uri()
    if not uri.startswith(("http://", "https://")) or uri in _answered:
        return
    import ssl

    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES as RETRIES
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT as TIMEOUT
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    timeout = timeout or (TIMEOUT.get() if TIMEOUT.defined else PROBE_TIMEOUT)
    try:
        http_request(MlflowHostCreds(uri), "/health", "GET", timeout=timeout, retry_codes=(),
                     max_retries=RETRIES.get() if RETRIES.defined else 0, raise_on_status=False)
    except Exception as exc:  # noqa: BLE001 - MLflow wraps the cause; the last one says it
        while (inner := exc.__cause__ or exc.__context__) is not None:
            exc = inner
        if not isinstance(exc, ssl.SSLError):  # a certificate problem: MLflow's to judge
            raise OccluferError(
                f"MLflow tracking server {uri} is not reachable ({first_line(exc)}; waited up "
                f"to {timeout:g} s); start it, or point MLFLOW_TRACKING_URI at a running server "
                "(unset it for the local SQLite store mlflow.db)") from None
    _answered.add(uri)


def check_writable(uri: str | None = None) -> None:
    """Stop with one line when an existing SQLite store cannot be written (rolled-back probe)."""
    db = _sqlite_path(uri or tracking_uri())
    if db is None or not db.is_file():
        return  # a store that does not exist yet is MLflow's to create
    import sqlite3

    con = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("CREATE TABLE _occlufer_write_probe (x INTEGER)")
    except sqlite3.DatabaseError as exc:  # OperationalError for read-only, locked, ...
        text = str(exc)
        if "locked" not in text and "busy" not in text:  # locked: another run is writing
            fix = (f"make it and its folder writable (`chmod u+w {db} {db.parent}`)"
                   if "readonly" in text or "read-only" in text else "restore it from a backup")
            raise OccluferError(f"MLflow store {db} cannot be written ({first_line(exc)}); "
                                f"{fix}, or point MLFLOW_TRACKING_URI at another store") from None
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()


def _git_commit(root: Path) -> str | None:
    from mlflow.utils.git_utils import get_git_commit

    return get_git_commit(str(root))


def run_tags() -> dict[str, str]:
    """Tags for a new run: git commit, DVC experiment, ``data.<out>.md5`` from dvc.lock."""
    root = repo_root()
    tags = {"occlufer.stage": "train"}
    commit = _git_commit(root)
    if commit:
        tags["mlflow.source.git.commit"] = tags["git.commit"] = commit
    for var, tag in (("DVC_EXP_NAME", "dvc.exp_name"),
                     ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev")):
        if os.environ.get(var):
            tags[tag] = os.environ[var]
    if (root / "dvc.lock").is_file():
        import yaml

        lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8")) or {}
        for stage in lock.get("stages", {}).values():
            for out in stage.get("outs", []):
                if str(out.get("path", "")).startswith("data") and "md5" in out:
                    tags[f"data.{out['path']}.md5"] = out["md5"]
    return tags


def run_name_for(params: Mapping[str, Any]) -> str:
    """A new run's name: ``DVC_EXP_NAME``, else ``<recipe>-<short commit>`` (``dvc repro``)."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    root = repo_root()
    commit = _git_commit(root)
    recipe = recipe_name(params, root / "conf")
    return f"{recipe}-{commit[:7]}" if commit else recipe


def describe(params: Mapping[str, Any], result: str | None = None) -> str:
    """The run description (Markdown): recipe, experiment, commit, then ``result`` (or a note)."""
    root = repo_root()
    recipe = recipe_name(params, root / "conf")
    where = f"conf/experiment/{recipe}.yaml" if recipe != DEFAULT else "conf/config.yaml"
    head = [f"Recipe `{recipe}` ({where})"]
    if os.environ.get("DVC_EXP_NAME"):
        head.append(f"DVC experiment `{os.environ['DVC_EXP_NAME']}`")
    baseline = os.environ.get("DVC_EXP_BASELINE_REV")
    commit = baseline or _git_commit(root)
    if commit:
        head.append(f"{'baseline' if baseline else 'commit'} `{commit[:7]}`")
    body = result or "Training; the validate stage adds the headline result here."
    return (" · ".join(head) + "\n\n" + body + "\n\nFull report: artifact `validate/report.md`"
            " (all metrics: `validate/detail.json`).")


def set_description(text: str) -> None:
    """Set the active run's description (shown on its page in the MLflow UI)."""
    _mlflow().set_tag(NOTE_TAG, text)


def _fault(what: str, exc: Exception, fix: str) -> OccluferError:
    return OccluferError(f"{what} {tracking_uri()}: {first_line(exc)}; {fix}")


@contextmanager
def start_run(experiment: str, params: Mapping[str, Any], run_name: str | None = None,
              run_id: str | None = None, *, active_file: Path | None = None) -> Iterator[Any]:
    """Open the pipeline's run with its params and tags, or re-open ``run_id`` if the store has
    it; ``active_file`` holds the open run's id, so an abandoned one is marked ``KILLED``."""
    mlflow = _mlflow()
    check_writable()
    try:
        run = _open_run(mlflow, experiment, params, run_name, run_id, active_file)
    except OccluferError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise _fault("cannot start an MLflow run in", exc, "check MLFLOW_TRACKING_URI and that "
                     "the store is writable") from None
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
        root = artifact_root(tracking_uri())
        if root is not None and mlflow.get_experiment_by_name(experiment) is None:
            with contextlib.suppress(Exception):  # a parallel run may have created it first
                mlflow.create_experiment(experiment, artifact_location=root.as_uri())
        mlflow.set_experiment(experiment)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise _fault("cannot reach MLflow tracking store", exc, "check MLFLOW_TRACKING_URI"
                     ) from None
    run = mlflow.start_run(run_name=run_name or run_name_for(params))
    try:
        mlflow.set_tags({**run_tags(), NOTE_TAG: describe(params)})
        mlflow.log_params({k: str(v) if isinstance(v, list) else v
                           for k, v in flat_keys(params).items()})
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow.end_run("FAILED")
        raise
    return run


def end_abandoned(active_file: Path, keep: str | None = None) -> str | None:
    """Mark the run named in ``active_file`` (unless ``keep``) ``KILLED`` if still RUNNING."""
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
    """Host name, hardware and kernels of this execution: run tags, never DVC outputs."""
    import socket

    from occlufer import kernels
    from occlufer.hardware import hardware

    return {HOST_TAG: socket.gethostname(), HARDWARE_TAG: json.dumps(hardware(), sort_keys=True),
            KERNELS_TAG: kernels.describe()}


def set_tags(tags: Mapping[str, str]) -> None:
    """Set tags on the active run."""
    _mlflow().set_tags(dict(tags))


def _model_runs(client: Any, digest: str) -> list[Any]:
    """The newest run of any active experiment tagged with ``digest`` (:data:`MODEL_TAG`)."""
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, f"tags.`{MODEL_TAG}` = '{digest}'", max_results=1,
                                   order_by=["attributes.start_time DESC"])) if ids else []


def find_model_run(model_file: Path, uri: str | None = None) -> Any | None:
    """The newest run in ``uri`` that logged ``model_file``; None if none or no SQLite store."""
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
    """The id of the run that logged ``model_file`` in a reachable, writable store, or one line."""
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
    try:
        run = _mlflow().start_run(run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad store
        raise _fault(f"cannot re-open MLflow run {run_id} in", exc,
                     "check that the store is writable") from None
    with run:
        yield run


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite metrics to the active run."""
    import math

    _mlflow().log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))},
                          step=step)


def log_artifacts(folder: Path, artifact_path: str | None = None) -> None:
    """Upload a folder's files to the active run."""
    _mlflow().log_artifacts(str(folder), artifact_path=artifact_path)


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Upload one file to the active run."""
    _mlflow().log_artifact(str(path), artifact_path=artifact_path)


def download_model(uri: str) -> Path:
    """A logged MLflow model (``models:/...``, ``runs:/...``) as a local folder."""
    mlflow = _mlflow()
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI or store
        raise OccluferError(f"{uri}: cannot load this MLflow model from {tracking_uri()} "
                            f"({str(exc).splitlines()[0][:200]}); check the name/alias and "
                            "MLFLOW_TRACKING_URI") from None
