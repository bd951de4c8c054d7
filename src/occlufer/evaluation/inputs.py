"""What ``occlufer evaluate`` scores: a model (folder, file or MLflow URI) and labelled faces
(an image folder or a stage's image store), read with the pipeline's own rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occlufer.data.store import read_store
from occlufer.errors import OccluferError
from occlufer.evaluation.evaluate import EvalSet

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def load_any_model(ref: str, tmp: Path) -> tuple[Any, dict[str, Any], str]:
    """(model in eval mode, metadata, where it came from) for a ``models/`` folder, a
    ``model.pt`` file, or an MLflow URI whose artifacts hold a ``model.pt``."""
    from occlufer.models import load_model

    if ref.startswith(MLFLOW_SCHEMES):
        from occlufer import tracking

        folder = tracking.download_model(ref)
        found = sorted(folder.rglob("model.pt"))
        if not found:
            raise OccluferError(f"{ref}: the MLflow model has no model.pt among its artifacts "
                                "(it was logged in another format); evaluate a models/ folder "
                                "or model.pt file instead")
        path = found[0]
    else:
        path = Path(ref)
        if path.is_dir():
            path = path / "model.pt"
        if not path.is_file():
            raise OccluferError(f"--model {ref}: no model.pt there; give a models/ folder, a "
                                "model.pt file or an MLflow URI (runs:/<id>/model, "
                                "models:/<name>@<alias>)")
    model, meta = load_model(path)
    return model, meta, ref


def _image_folder_cfg(path: Path, image_size: int):  # noqa: ANN202 - AcquireCfg
    from occlufer.config import AcquireCfg
    from occlufer.labels import LABELS

    return AcquireCfg(source="image_folder", path=str(path), labels_path=None,
                      image_size=image_size, classes=list(LABELS), unknown_labels="drop",
                      group_regex=None, min_size=1, max_reject_fraction=1.0, dedupe=False,
                      workers=0, faces=None, face_margin=None, face_min_size=None,
                      n_per_class=None, n_subjects=None, intensity=None, noise=None)


def load_faces(ref: str, image_size: int, tmp: Path) -> tuple[EvalSet, list[tuple[str, str]]]:
    """Labelled faces from a store folder (``images.npy`` + ``manifest.parquet``) or an image
    folder (``root/<class>/...`` or ``root/<split>/<class>/...``, decoded by acquire's reader).

    Images are brought to ``image_size`` (the model's). Returns the set and the inputs that
    could not be used (path, reason), e.g. unreadable files or unknown class folders.
    """
    from occlufer.data.images import resize
    from occlufer.data.readers import read_image_folder

    path = Path(ref)
    if not path.is_dir():
        raise OccluferError(f"--data {ref}: not a folder; give an image folder (class "
                            "subfolders) or a stage store such as data/split/val")
    if (path / "images.npy").is_file() and (path / "manifest.parquet").is_file():
        store, rejects = read_store(path), []
    else:
        acquired = read_image_folder(_image_folder_cfg(path, image_size), tmp / "faces")
        if acquired.manifest.empty:
            raise OccluferError(f"--data {ref}: no labelled images found (layout "
                                "root/<class>/<image>, class folders named after the labels)")
        store, rejects = read_store(tmp / "faces"), acquired.rejects
    data = EvalSet.from_store(store, ref)
    if data.images.shape[1:] != (image_size, image_size):
        data.images = np.stack([resize(np.asarray(im), image_size) for im in data.images])
    return data, rejects
