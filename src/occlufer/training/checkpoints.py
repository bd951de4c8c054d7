"""Resumable training: each epoch's :class:`~occlufer.training.TrainState` goes atomically to
``checkpoints/train.pt``; the next run resumes from it when its :func:`fingerprint` is the same.
"""

import hashlib
import json
import os
import pickle
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from occlufer.config import Params
from occlufer.data.store import IMAGES, MANIFEST
from occlufer.errors import OccluferError
from occlufer.model_files import resolve_model_file
from occlufer.training.loop import TrainState

#: keys of ``train`` that do not change the result (left out of the fingerprint)
NOT_RESULT = ("workers", "num_threads", "mlflow_experiment", "log_model",
              "registered_model_name", "registered_model_alias", "rdzv_endpoint")


def checkpoint_path(out: Path) -> Path:
    """``checkpoints/train.pt`` beside the model folder ``out``."""
    return out.parent / "checkpoints" / "train.pt"


def fingerprint(params: Params, src: Path, init_file: Path | None = None,
                teacher_file: Path | None = None) -> str:
    """Hash of the result-relevant params, the data and the init_from and teacher model files."""
    cfg = {k: v for k, v in asdict(params.train).items() if k not in NOT_RESULT}
    h = hashlib.sha256(json.dumps({"seed": params.seed, "model": asdict(params.model),
                                   "train": cfg, "occlusion": asdict(params.occlusion)},
                                  sort_keys=True).encode())
    for part in ("train", "val"):
        h.update((src / part / MANIFEST).read_bytes())
        h.update(str((src / part / IMAGES).stat().st_size).encode())
    for ref, file in ((params.train.init_from, init_file), (params.train.teacher, teacher_file)):
        if ref is not None:
            h.update((file or resolve_model_file(ref)).read_bytes())
    return h.hexdigest()


def load_checkpoint(path: Path, print_: bool) -> tuple[TrainState | None, dict[str, Any]]:
    """The state and meta, ``(None, {})`` if none or unreadable; a planted pickle is refused."""
    if not path.is_file():
        return None, {}
    try:
        with warnings.catch_warnings(action="ignore"):  # "Detected pickle protocol 4", ...
            blob = torch.load(path, map_location="cpu", weights_only=True)
        return TrainState(**blob["state"]), blob["meta"]
    except pickle.UnpicklingError:
        raise OccluferError(f"{path}: refused to load, it holds more than tensors and plain "
                            f"values (it was not written by occlufer and could run code); "
                            f"delete it (`rm {path}`) and re-run `dvc repro -f -s train`") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: start over
        if print_:
            print(f"train: ignoring unreadable checkpoint {path} ({exc.__class__.__name__})")
        return None, {}


def resume(path: Path, key: str, print_: bool) -> tuple[TrainState | None, dict[str, Any]]:
    """:func:`load_checkpoint`, kept only when its fingerprint is ``key``."""
    state, meta = load_checkpoint(path, print_)
    if state is not None and meta.get("fingerprint") != key:
        if print_:
            print(f"train: {path} is from other params or data; starting afresh")
        return None, {}
    return state, meta


def save_checkpoint(path: Path, state: TrainState, meta: dict[str, Any]) -> None:
    """Write ``state`` and ``meta`` atomically: a kill never leaves half a checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save({"state": asdict(state), "meta": meta}, tmp)
    os.replace(tmp, path)
