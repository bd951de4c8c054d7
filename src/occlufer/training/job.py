"""A train run: the (initialised) model, ``models/`` (``model.pt`` and ``history.csv``,
byte-identical between executions on one machine), what it tells the console and MLflow.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from occlufer import tracking
from occlufer.config import Params
from occlufer.models import build_model, save_model
from occlufer.training.init import init_model
from occlufer.training.loop import EpochStats, FitResult, TrainState

#: per-epoch metrics that vary per execution: logged to MLflow, left out of ``history.csv``
TIMING_METRICS = ("train/img_per_s", "train/epoch_seconds")


@dataclass
class TrainJob:
    """The model to fit and what :func:`write_outputs` records about it."""

    model: nn.Module
    classes: list[str]
    image_size: int
    arch: dict[str, Any]
    before_epoch: Callable[[int], None] | None  # the trunk freezer of ``train.init_from``

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def prepare(params: Params, classes: Sequence[str], image_size: int,
            init_file: Path | None = None, *, print_: bool = True) -> TrainJob:
    """``model.name`` seeded, then loaded from ``train.init_from`` (``init_file``) if set."""
    arch = {"width": params.model.width, "blocks": params.model.blocks}
    torch.manual_seed(params.seed)
    model = build_model(params.model.name, num_classes=len(classes), image_size=image_size,
                        dropout=params.model.dropout, **arch)
    return TrainJob(model, list(classes), image_size, arch,
                    init_model(model, params, list(classes), image_size, init_file, print_=print_))


def history_frame(history: list[EpochStats]) -> pd.DataFrame:
    """``history.csv``: one row per epoch, every metric but the :data:`TIMING_METRICS`."""
    return pd.DataFrame([{"epoch": h.epoch, **{k: v for k, v in h.metrics().items()
                                               if k not in TIMING_METRICS}} for h in history])


def write_outputs(out: Path, job: TrainJob, params: Params, result: FitResult, *,
                  teacher: dict[str, Any] | None = None) -> Path:
    """``out/model.pt`` (with the ``teacher``'s ``distill.provenance``) and ``history.csv``."""
    cfg = params.train
    job.model.cpu().eval()
    out.mkdir(parents=True, exist_ok=True)
    save_model(out / "model.pt", job.model, name=params.model.name, classes=job.classes,
               image_size=job.image_size, dropout=params.model.dropout, arch=job.arch,
               tta_flip=cfg.tta_flip, tta_shift=cfg.tta_shift, epoch=result.best_epoch,
               **({"teacher": teacher} if teacher else {}))
    history_frame(result.history).to_csv(out / "history.csv", index=False)
    return out / "model.pt"


def announce(params: Params, job: TrainJob, n_train: int, n_val: int, device: torch.device,
             state: TrainState | None, ckpt: Path) -> None:
    """One console line: model, data, device (processes under DDP), resumed epoch."""
    dist = torch.distributed
    ddp = dist.is_available() and dist.is_initialized()
    print(f"train: {params.model.name} ({job.parameters / 1e6:.2f}M parameters) on {n_train} "
          f"faces ({n_val} val), {len(job.classes)} classes, device {device}"
          + (f", {dist.get_world_size()} processes" if ddp else "")
          + (f"; resuming after epoch {state.epoch} from {ckpt}" if state else ""))


def log_inputs(src: Path) -> None:
    """The occlusion preview and split summary beside ``src`` as artifacts, acquire's counts."""
    for path in (src.parent / "occluded" / "preview.png", src / "summary.csv"):
        if path.is_file():
            tracking.log_artifact(path, "data")
    acquire_summary = src.parent / "acquired" / "summary.json"
    if acquire_summary.is_file():
        counts = json.loads(acquire_summary.read_text(encoding="utf-8"))
        tracking.log_metrics({f"acquire/{k}": counts[k] for k in ("read", "kept", "rejected")})


def log_result(result: FitResult) -> float:
    """Log the selected epoch's metrics and the training seconds (all epochs); returns them."""
    best = next(h for h in result.history if h.epoch == result.best_epoch)
    seconds = sum(h.seconds for h in result.history)
    tracking.log_metrics({"best/epoch": best.epoch, "best/val/acc": best.val_acc,
                          "best/val_occluded/acc": best.val_occluded_acc,
                          "best/val_mixed/acc": best.val_mixed_acc, "train/seconds": seconds})
    return seconds
