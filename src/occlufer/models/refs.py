"""Model references for training: the ``model.pt`` behind a reference string.

``train.init_from`` takes the same references as ``--model`` (a ``model.pt`` or a folder holding
one, an MLflow ``runs:/`` / ``models:/`` URI, ``zoo:NAME``); they are resolved in one place,
:func:`occlufer.inference.predictor.resolve_model`. A leaf module: it imports that only when a
reference is resolved, so any module may import it.
"""

from __future__ import annotations

from pathlib import Path


def resolve_model_file(ref: str) -> Path:
    """The local ``model.pt`` (written by :func:`occlufer.models.save_model`) behind ``ref``.

    Raises :class:`~occlufer.errors.OccluferError` (one line) when there is none, or when
    ``ref`` is an ONNX file (no PyTorch weights).
    """
    from occlufer.inference.predictor import resolve_model

    return resolve_model(str(ref)).torch_file()
