"""Model references: where the ``model.pt`` behind a reference string lives.

One entry point, :func:`resolve_model_file`, for everything that takes a trained model by
reference (``train.init_from`` today):

- a ``model.pt`` file, or a folder holding one (``models/``);
- an MLflow model URI (``runs:/<id>/model``, ``models:/<name>@<alias>``, ``models:/<name>/<v>``):
  the occlufer pyfunc model logged by ``train`` keeps ``model.pt`` among its artifacts;
- ``zoo:NAME``: a model of the model zoo, via ``occlufer.zoo.model_path(NAME)``.

A leaf module: everything it uses is imported when a reference is resolved, so any module may
import it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from occlufer.errors import OccluferError

ZOO_SCHEME = "zoo:"


def resolve_model_file(ref: str) -> Path:
    """The local ``model.pt`` (written by :func:`occlufer.models.save_model`) behind ``ref``.

    Raises :class:`OccluferError` (one line) when there is none.
    """
    ref = str(ref)
    if ref.startswith(ZOO_SCHEME):
        return _zoo_file(ref[len(ZOO_SCHEME):])
    from occlufer.inference.predictor import MODEL_FILE, is_mlflow_uri

    if is_mlflow_uri(ref):
        from occlufer import tracking

        found = sorted(tracking.download_model(ref).glob(f"artifacts/**/{MODEL_FILE}"))
        if not found:
            raise OccluferError(f"{ref}: not an occlufer MLflow model (no artifacts/"
                                f"{MODEL_FILE}); models logged by `train` since the pyfunc "
                                "model are")
        return found[0]
    path = Path(ref)
    pt = path / MODEL_FILE if path.is_dir() else path
    if not pt.is_file():
        raise OccluferError(f"{pt}: no model file; give a model.pt, a folder holding one, an "
                            "MLflow runs:/ or models:/ URI, or zoo:NAME")
    return pt


def _zoo_file(name: str) -> Path:
    try:
        model_path = importlib.import_module("occlufer.zoo").model_path
    except ModuleNotFoundError as exc:
        if exc.name != "occlufer.zoo":  # the zoo is there, something it imports is not
            raise
        model_path = None
    except AttributeError:  # a zoo without model_path (yet)
        model_path = None
    if model_path is None:
        raise OccluferError(f"{ZOO_SCHEME}{name}: the model zoo has no entry {name!r} (this "
                            "installation has no model zoo); give a model.pt path or an MLflow "
                            "URI instead")
    return Path(model_path(name))
