"""The epoch loop: seeded shuffling, per-epoch validation on clean and occluded faces."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from occlufer.config import TrainCfg
from occlufer.errors import OccluferError
from occlufer.preprocess import to_input


@dataclass
class EpochStats:
    """What one epoch measured (names match the MLflow / DVC metric keys via :meth:`metrics`)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_occluded_acc: float
    lr: float
    img_per_s: float

    def metrics(self) -> dict[str, float]:
        d = asdict(self)
        return {"train/loss": d["train_loss"], "train/acc": d["train_acc"],
                "val/loss": d["val_loss"], "val/acc": d["val_acc"],
                "val_occluded/acc": d["val_occluded_acc"], "lr": d["lr"],
                "train/img_per_s": d["img_per_s"]}


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OccluferError("train.device = cuda but no CUDA device is visible; "
                            "use train.device=auto or cpu")
    return torch.device(name)


def _optimizer(model: nn.Module, cfg: TrainCfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                           weight_decay=cfg.weight_decay)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int,
                   device: torch.device, tta_flip: bool = False) -> np.ndarray:
    """Logits (N×C float32) for N×H×W uint8 images, in batches, in eval mode.

    ``tta_flip`` averages the logits of each face and its mirror image (test-time flip).
    """
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start:start + batch_size]).to(device)
        logits = model(x).float()
        if tta_flip:
            logits = (logits + model(torch.flip(x, dims=[3])).float()) / 2
        out.append(logits.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def fit(model: nn.Module, train_images: np.ndarray, train_labels: np.ndarray,
        val_images: np.ndarray, val_labels: np.ndarray, val_occluded: np.ndarray,
        cfg: TrainCfg, seed: int, device: torch.device,
        on_epoch: Callable[[EpochStats, nn.Module, torch.optim.Optimizer], None] | None = None,
        ) -> list[EpochStats]:
    """Train ``model`` for ``cfg.epochs``; ``val_occluded`` flags occluded val rows."""
    torch.manual_seed(seed)
    model.to(device)
    optimizer = _optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss()
    x_train = to_input(train_images)
    y_train = torch.as_tensor(train_labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total_loss, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
        batches = range(0, len(order), cfg.batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=None, leave=False)
        for start in bar:
            idx = order[start:start + cfg.batch_size]
            x, y = x_train[idx].to(device), y_train[idx].to(device)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
        elapsed = time.perf_counter() - t0
        val_logits = predict_logits(model, val_images, max(256, cfg.batch_size), device)
        clean = ~val_occluded
        val_loss = float(loss_fn(torch.from_numpy(val_logits[clean]),
                                 torch.as_tensor(val_labels[clean], dtype=torch.long)))
        hit = val_logits.argmax(1) == val_labels
        stats = EpochStats(
            epoch=epoch, train_loss=total_loss / seen, train_acc=correct / seen,
            val_loss=val_loss, val_acc=float(hit[clean].mean()),
            val_occluded_acc=(float(hit[val_occluded].mean()) if val_occluded.any()
                              else float("nan")),
            lr=optimizer.param_groups[0]["lr"], img_per_s=seen / elapsed)
        history.append(stats)
        print(f"epoch {epoch}/{cfg.epochs}: train loss {stats.train_loss:.4f} acc "
              f"{stats.train_acc:.3f} | val acc {stats.val_acc:.3f} occluded "
              f"{stats.val_occluded_acc:.3f} | {stats.img_per_s:.0f} img/s", flush=True)
        if on_epoch is not None:
            on_epoch(stats, model, optimizer)
    return history
