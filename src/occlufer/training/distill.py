"""Distillation from a clean teacher (``train.teacher``, ``train.distill``).

Every occluded training row has its clean source face (:attr:`TrainArrays.source`). The teacher,
any trained model for the same classes and image size (``zoo:NAME``, a ``model.pt`` or an
MLflow ``runs:/`` / ``models:/`` URI), scores each *clean* face once before training, with its
own test-time views; every row — the clean face and its occluded copies — then learns towards
the teacher's distribution on the clean face: ordinary distillation on clean rows, and
privileged-information distillation on occluded rows (the student sees the occluded face, the
target comes from what the teacher saw on the clean one). The loss of a batch is

    (1 - distill) · CE(student, label) + distill · T² · KL(p_teacher^T ‖ p_student^T)

with ``T = train.distill_temperature`` (:func:`distill_loss`). The teacher's logits are computed
once (one forward pass over the clean faces), so the cost per epoch is that of the student
alone; its architecture may differ from the student's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from occlufer.errors import OccluferError
from occlufer.hashing import file_sha256
from occlufer.inference.predictor import resolve_model_file
from occlufer.training.augment import TrainArrays

KEY = "train.teacher"


class Teacher(NamedTuple):
    """A loaded teacher: the model (eval mode), its saved metadata, the column of each of the
    student's classes in its output, the reference it was given by and the file it names."""

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
    """The teacher for ``classes`` (:class:`Teacher`). A teacher of other classes or another
    image size stops with one line."""
    from occlufer.models import model_from
    from occlufer.training.init import read_saved

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
    """For each row, the row of its clean face: the source of an occluded copy, else itself
    (a clean face, or a copy whose clean face is not in the set)."""
    return np.where(train.source >= 0, train.source, np.arange(len(train)))


def teacher_logits(teacher: nn.Module, train: TrainArrays, columns: np.ndarray,
                   device: torch.device, *, tta_flip: bool = True,
                   batch_size: int = 256) -> np.ndarray:
    """N×C float32: per training row, the teacher's logits on the row's clean face
    (:func:`clean_rows`), columns in the student's class order. Each face is scored once."""
    from occlufer.training.loop import predict_logits  # loop imports this module

    rows = clean_rows(train)
    faces, inverse = np.unique(rows, return_inverse=True)
    teacher.to(device)
    logits = predict_logits(teacher, train.images[faces], batch_size, device, tta_flip)
    return np.ascontiguousarray(logits[:, columns][inverse], dtype=np.float32)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                 ) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), mean over the batch. ``teacher``
    may also be a batch of probabilities' logs mixed beforehand (:func:`soft_targets`)."""
    t = temperature
    return F.kl_div(F.log_softmax(student.float() / t, dim=1), teacher, log_target=True,
                    reduction="batchmean") * (t * t)


def soft_targets(teacher: torch.Tensor, temperature: float, perm: torch.Tensor | None = None,
                 lam: float = 1.0) -> torch.Tensor:
    """Log-probabilities of the teacher's softened distribution; for a mixed batch (mixup /
    CutMix with partner ``perm`` and own share ``lam``) the same mixture of the two faces'."""
    logp = F.log_softmax(teacher.float() / temperature, dim=1)
    if perm is None:
        return logp
    return torch.log(lam * logp.exp() + (1 - lam) * logp[perm].exp()).clamp_min(-100.0)


def teacher_accuracy(logits: np.ndarray, train: TrainArrays) -> float:
    """The teacher's accuracy on the clean training faces (NaN when there are none): how much
    of the labels it agrees with — near 1 it adds little beyond them."""
    clean = ~train.occluded
    if not clean.any():
        return float("nan")
    return float((logits[clean].argmax(1) == train.labels[clean]).mean())


def provenance(ref: str, path: Path, meta: dict, accuracy: float, weight: float,
               temperature: float) -> dict[str, Any]:
    """What a student's ``model.pt`` records about its teacher (``teacher`` in the metadata;
    the zoo card shows it): the reference as given, the file's sha256 — the reference alone
    does not pin the teacher, ``zoo:NAME`` changes when the zoo is republished —, the teacher's
    architecture and epoch, its accuracy on the clean training faces, the weight and T."""
    return {"ref": ref, "sha256": file_sha256(path), "arch": str(meta["name"]),
            "epoch": meta.get("epoch"), "train_acc": round(float(accuracy), 4),
            "distill": float(weight), "temperature": float(temperature)}


def announce(ref: str, meta: dict, accuracy: float) -> str:
    """One line for the console: the teacher, and its accuracy on the clean training faces."""
    return (f"train: distilling from {ref} ({meta['name']}, epoch {meta.get('epoch', '?')}): "
            f"its accuracy on the clean training faces {accuracy:.3f}")
