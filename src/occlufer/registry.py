"""``occlufer register``: put a finished run's logged model into the MLflow model registry.

A run is named by its id or its name: the DVC experiment's, or ``<recipe>-<short commit>``
(:func:`occlufer.tracking.run_name_for`).
"""

import re
from dataclasses import dataclass
from typing import Any

from occlufer import tracking
from occlufer.errors import OccluferError, first_line

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MODEL_NAME = "model"  # the artifact name train logs the pyfunc model under


@dataclass
class Registered:
    """What :func:`register` did."""

    name: str
    version: str
    alias: str | None
    run_id: str
    run_name: str
    source: str
    note: str = ""  # e.g. that several runs had that name


def find_run(ref: str) -> tuple[Any, str]:
    """(run, note): the run with id ``ref``, else the latest run named ``ref`` (run name or
    ``dvc.exp_name`` tag) in any experiment of the tracking store."""
    mlflow = tracking._mlflow()
    client = mlflow.MlflowClient()
    if _RUN_ID.match(ref):
        try:
            return client.get_run(ref), ""
        except Exception:  # noqa: BLE001 - not an id of this store: try it as a name
            pass
    if "'" in ref or not ref.strip():
        raise OccluferError(f"{ref!r}: not a run id or name (quotes are not allowed)")
    ids = [e.experiment_id for e in client.search_experiments()]
    runs: list[Any] = []
    for where in (f"attributes.run_name = '{ref}'", f"tags.`dvc.exp_name` = '{ref}'"):
        runs = client.search_runs(ids, where, order_by=["attributes.start_time DESC"],
                                  max_results=50) if ids else []
        if runs:
            break
    if not runs:
        raise OccluferError(f"{ref}: no MLflow run with this id or name in "
                            f"{tracking.tracking_uri()}; give a run id (train prints it, so "
                            "does the MLflow UI) or a DVC experiment name (`dvc exp show`), "
                            "and check MLFLOW_TRACKING_URI")
    note = (f"the latest of {len(runs)} runs named {ref} (started "
            f"{_when(runs[0])}); pass a run id to choose another" if len(runs) > 1 else "")
    return runs[0], note


def _when(run: Any) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M")


def model_source(run: Any) -> str:
    """The URI of the model that train logged in ``run`` (``models:/<model id>`` for MLflow 3
    logged models, ``runs:/<id>/model`` for a model stored among the run's artifacts)."""
    client = tracking._mlflow().MlflowClient()
    outputs = getattr(getattr(run, "outputs", None), "model_outputs", None) or []
    for out in sorted(outputs, key=lambda o: o.step or 0, reverse=True):
        try:
            if client.get_logged_model(out.model_id).name == MODEL_NAME:
                return f"models:/{out.model_id}"
        except Exception:  # noqa: BLE001 - deleted or unreadable: look further
            continue
    try:
        listed = {a.path for a in client.list_artifacts(run.info.run_id, MODEL_NAME)}
    except Exception:  # noqa: BLE001 - no artifact store for this run
        listed = set()
    if f"{MODEL_NAME}/MLmodel" in listed:
        return f"runs:/{run.info.run_id}/{MODEL_NAME}"
    raise OccluferError(f"MLflow run {run.info.run_id} ({run.info.run_name}) has no logged "
                        "model (it was trained with train.log_model=false); re-run training "
                        "with train.log_model=true")


def register(ref: str, name: str, alias: str | None = None) -> Registered:
    """Register the model logged by run ``ref`` (id or name) as a new version of ``name``
    (created if need be) and point ``alias`` at that version when given."""
    import contextlib
    import io
    import logging

    run, note = find_run(ref)
    source = model_source(run)
    mlflow = tracking._mlflow()
    tags = {"occlufer.run_name": run.info.run_name or "", "occlufer.run_id": run.info.run_id}
    quiet = logging.getLogger("mlflow.tracking._model_registry.fluent")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # MLflow's "Successfully registered ...": we say it in one
    try:                           # line (it prints to stderr, hence the redirect too)
        with contextlib.redirect_stderr(io.StringIO()):
            version = mlflow.register_model(source, name, tags=tags)
        if alias:
            mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version.version))
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types (bad name, store)
        raise OccluferError(f"cannot register {source} as {name!r}"
                            + (f" with alias {alias!r}" if alias else "")
                            + f" in {tracking.tracking_uri()}: {first_line(exc)}"
                            ) from None
    finally:
        quiet.setLevel(level)
    return Registered(name, str(version.version), alias, run.info.run_id,
                      run.info.run_name or "", source, note)
