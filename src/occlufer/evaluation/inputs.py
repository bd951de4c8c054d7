"""What ``occlufer evaluate`` scores: a model (folder, file, zoo entry or MLflow URI) and
labelled faces (an image folder or a stage's image store), read with the pipeline's own
rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occlufer.data.store import read_store
from occlufer.errors import OccluferError
from occlufer.evaluation.evaluate import EvalSet
from occlufer.inference.predictor import ModelChoice, resolve_model


def load_any_model(ref: str | ModelChoice | None, tmp: Path | None = None,
                   ) -> tuple[Any, dict[str, Any], str]:
    """(model in eval mode, metadata, where it came from) for anything ``--model`` takes
    (:func:`occlufer.inference.predictor.resolve_model`: a ``models/`` folder, a ``model.pt``
    file, ``zoo:<name>``, an MLflow URI whose artifacts hold a ``model.pt``; ``None``: the
    trained ``models/`` or else the zoo's default model)."""
    from occlufer.models import load_model

    choice = ref if isinstance(ref, ModelChoice) else resolve_model(ref)
    model, meta = load_model(choice.torch_file())
    return model, meta, choice.ref


def _image_folder_cfg(path: Path, image_size: int):  # noqa: ANN202 - AcquireCfg
    from occlufer.config import AcquireCfg
    from occlufer.labels import LABELS

    return AcquireCfg(source="image_folder", path=str(path), labels_path=None,
                      image_size=image_size, classes=list(LABELS), unknown_labels="drop",
                      group_regex=None, min_size=1, max_reject_fraction=1.0, dedupe=False,
                      workers=0, faces=None, face_margin=None, face_min_size=None,
                      detector=None, n_per_class=None, n_subjects=None, intensity=None, noise=None)


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
