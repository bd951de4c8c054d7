"""Distillation (``train.teacher``, ``train.distill``): the teacher scores each row's *clean*
face once; every row, clean or occluded, learns towards it:
``(1 - distill) · CE(student, label) + distill · T² · KL(p_teacher^T ‖ p_student^T)``.
"""

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from occlufer.errors import OccluferError
from occlufer.hashing import file_sha256
from occlufer.model_files import resolve_model_file
from occlufer.models import model_from, predict_logits
from occlufer.training.augment import TrainArrays
from occlufer.training.init import read_saved

KEY = "train.teacher"


class Teacher(NamedTuple):
    """A loaded teacher; ``columns``: each of the student's classes' column in its output."""

    model: nn.Module
    meta: dict[str, Any]
    columns: np.ndarray
    ref: str
    path: Path

    def logits(self, train: TrainArrays, device: torch.device) -> np.ndarray:
        """:func:`teacher_logits` with the test-time flip the teacher was saved with."""
        return teacher_logits(self.model, train, self.columns, device,
                              tta_flip=bool(self.meta.get("tta_flip", False)))

    def provenance(self, accuracy: float, weight: float, temperature: float) -> dict[str, Any]:
        """:func:`provenance` of this teacher."""
        return provenance(self.ref, self.path, self.meta, accuracy, weight, temperature)


def load_teacher(ref: str, classes: list[str], image_size: int) -> Teacher:
    """The teacher for ``classes``; one of other classes or another size stops with one line."""
    path = resolve_model_file(ref)
    meta = read_saved(ref, path, KEY)
    saved = [str(c) for c in meta["classes"]]
    if sorted(saved) != sorted(classes):
        raise OccluferError(f"{KEY} {ref} predicts the classes {saved}, the data has {classes}; "
                            f"a teacher must know the same classes (order may differ): give "
                            f"another teacher or set train.distill=0 train.teacher=null")
    if int(meta["image_size"]) != image_size:
        raise OccluferError(f"{KEY} {ref} takes {meta['image_size']}×{meta['image_size']} "
                            f"faces, the data has {image_size}×{image_size}; give a teacher "
                            f"of that size or set acquire.image_size={meta['image_size']}")
    model, meta = model_from(meta)
    return Teacher(model, meta, np.array([saved.index(c) for c in classes]), ref, path)


def clean_rows(train: TrainArrays) -> np.ndarray:
    """For each row, the row of its clean face: an occluded copy's source, else itself."""
    return np.where(train.source >= 0, train.source, np.arange(len(train)))


def teacher_logits(teacher: nn.Module, train: TrainArrays, columns: np.ndarray,
                   device: torch.device, *, tta_flip: bool = True,
                   batch_size: int = 256) -> np.ndarray:
    """N×C float32: per row, the teacher's logits on its clean face, in the student's order."""
    rows = clean_rows(train)
    faces, inverse = np.unique(rows, return_inverse=True)
    teacher.to(device)
    logits = predict_logits(teacher, train.images[faces], batch_size, device, tta_flip)
    return np.ascontiguousarray(logits[:, columns][inverse], dtype=np.float32)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                 ) -> torch.Tensor:
    """T² · KL(p_teacher ‖ softmax(student/T)); ``teacher``: :func:`soft_targets`."""
    t = temperature
    return F.kl_div(F.log_softmax(student.float() / t, dim=1), teacher, log_target=True,
                    reduction="batchmean") * (t * t)


def soft_targets(teacher: torch.Tensor, temperature: float, perm: torch.Tensor | None = None,
                 lam: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the softened teacher (a mixed batch: mixed alike)."""
    logp = F.log_softmax(teacher.float() / temperature, dim=1)
    if perm is None:
        return logp
    return torch.log(lam * logp.exp() + (1 - lam) * logp[perm].exp()).clamp_min(-100.0)


def teacher_accuracy(logits: np.ndarray, train: TrainArrays) -> float:
    """The teacher's accuracy on the clean training faces (NaN when there are none)."""
    clean = ~train.occluded
    if not clean.any():
        return float("nan")
    return float((logits[clean].argmax(1) == train.labels[clean]).mean())


def provenance(ref: str, path: Path, meta: dict, accuracy: float, weight: float,
               temperature: float) -> dict[str, Any]:
    """What a student's ``model.pt`` records of its teacher (sha256: ``zoo:NAME`` does not pin)."""
    return {"ref": ref, "sha256": file_sha256(path), "arch": str(meta["name"]),
            "epoch": meta.get("epoch"), "train_acc": round(float(accuracy), 4),
            "distill": float(weight), "temperature": float(temperature)}


def announce(ref: str, meta: dict, accuracy: float) -> str:
    """One line for the console: the teacher, and its accuracy on the clean training faces."""
    return (f"train: distilling from {ref} ({meta['name']}, epoch {meta.get('epoch', '?')}): "
            f"its accuracy on the clean training faces {accuracy:.3f}")
