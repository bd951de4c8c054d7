"""Resumable training: where a checkpoint lives, what it must match, reading and writing it.

After every epoch the train stage writes the full :class:`~occlufer.training.TrainState` to
``checkpoints/train.pt`` (beside ``models/``; not a DVC output, git-ignored), atomically. The
next run resumes from it only when its :func:`fingerprint` — the result-relevant params, the
data and the ``train.init_from`` model — is the same.
"""

from __future__ import annotations

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
from occlufer.inference.predictor import resolve_model_file
from occlufer.training.loop import TrainState

#: keys of ``train`` that do not change the result (left out of the fingerprint)
NOT_RESULT = ("workers", "num_threads", "mlflow_experiment", "log_model",
              "registered_model_name", "registered_model_alias", "rdzv_endpoint")


def checkpoint_path(out: Path) -> Path:
    """``checkpoints/train.pt`` beside the model folder ``out``."""
    return out.parent / "checkpoints" / "train.pt"


def fingerprint(params: Params, src: Path, init_file: Path | None = None,
                teacher_file: Path | None = None) -> str:
    """What a checkpoint must match to be resumed: the result-relevant params, the data and
    the content of the ``train.init_from`` and ``train.teacher`` models (``init_file``,
    ``teacher_file``: those references resolved by
    :func:`~occlufer.inference.predictor.resolve_model_file`; resolved here when not given)."""
    cfg = {k: v for k, v in asdict(params.train).items() if k not in NOT_RESULT}
    h = hashlib.sha256(json.dumps({"seed": params.seed, "model": asdict(params.model),
                                   "train": cfg, "occlusion": asdict(params.occlusion)},
                                  sort_keys=True).encode())
    for part in ("train", "val"):
        h.update((src / part / MANIFEST).read_bytes())
        h.update(str((src / part / IMAGES).stat().st_size).encode())
    if params.train.init_from is not None:
        h.update((init_file or resolve_model_file(params.train.init_from)).read_bytes())
    if params.train.teacher is not None:
        h.update((teacher_file or resolve_model_file(params.train.teacher)).read_bytes())
    return h.hexdigest()


def load_checkpoint(path: Path, print_: bool) -> tuple[TrainState | None, dict[str, Any]]:
    """The checkpoint's state and meta, or ``(None, {})`` when there is none or it is unreadable.

    Loaded with ``weights_only=True``: a checkpoint holds tensors and plain Python values only,
    so a file that needs anything else (a planted pickle that would run code) is refused.
    """
    if not path.is_file():
        return None, {}
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" on foreign files
            warnings.simplefilter("ignore")
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
