"""The epoch loop: deterministic on the CPU for a seed, resumable from any epoch's state; under
DDP all processes evaluate all of val. Warm-up + cosine stays a ``LambdaLR``: ``SequentialLR``
differs in the last bits (4e-16 of the LR) and cannot warm up over a fractional number of steps.
"""

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from occlufer.config import ModelCfg, OcclusionCfg, TrainCfg
from occlufer.models import predict_logits
from occlufer.preprocess import to_input
from occlufer.training.augment import (
    BatchSource,
    TrainArrays,
    ValArrays,
    batch_seed,
    epoch_plan,
    mix_batch,
    paired_plan,
    pairs_in,
    ramped,
    warp,
)
from occlufer.training.distill import distill_loss, soft_targets


@dataclass
class EpochStats:
    """What one epoch measured (:meth:`metrics`: the MLflow / DVC metric keys)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_occluded_acc: float
    val_mixed_acc: float
    lr: float
    img_per_s: float
    seconds: float = 0.0
    train_consistency: float = 0.0

    def metrics(self) -> dict[str, float]:
        return {"train/loss": self.train_loss, "train/acc": self.train_acc,
                "val/loss": self.val_loss, "val/acc": self.val_acc,
                "val_occluded/acc": self.val_occluded_acc, "val_mixed/acc": self.val_mixed_acc,
                "lr": self.lr, "train/img_per_s": self.img_per_s,
                "train/epoch_seconds": self.seconds, "train/consistency": self.train_consistency}


@dataclass
class TrainState:
    """Everything needed to continue training after ``epoch`` (a checkpoint's content)."""

    epoch: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    best_model: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return bool(self.extra.get("stopped", False))


@dataclass
class FitResult:
    history: list[EpochStats]
    best_epoch: int
    best_score: float


def _optimizer(model: nn.Module, cfg: TrainCfg) -> torch.optim.Optimizer:
    """``train.optimizer``; no weight decay on biases and BatchNorm weights (as for ResNets)."""
    groups = [{"params": [p for p in model.parameters() if (p.ndim > 1) == decay],
               "weight_decay": cfg.weight_decay if decay else 0.0} for decay in (True, False)]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer](groups, lr=cfg.lr)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainCfg, steps_per_epoch: int,
               ) -> torch.optim.lr_scheduler.LRScheduler:
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total,
                                                   pct_start=0.25, cycle_momentum=False)
    warm = cfg.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if warm > 0 and step < warm:
            return (step + 1) / warm
        if cfg.schedule == "cosine":
            progress = min(1.0, (step - warm) / max(1.0, total - warm))
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def weight_ema(model: nn.Module, decay: float) -> AveragedModel:
    """EMA of weights and BatchNorm statistics, decay ``min(decay, (1 + t) / (10 + t))``."""

    def update(ema: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor) -> None:
        if ema[0].is_floating_point():
            get_ema_multi_avg_fn(min(decay, (1 + int(n)) / (10 + int(n))))(ema, current, n)
        else:
            for e, c in zip(ema, current, strict=True):
                e.copy_(c)

    ema = AveragedModel(model, multi_avg_fn=update, use_buffers=True).eval()
    ema.update_parameters(model)  # the first update copies: update t then sees n = t
    return ema


def ema_state(ema: AveragedModel) -> dict[str, Any]:
    return {"model": ema.module.state_dict(), "updates": int(ema.n_averaged) - 1}


def load_ema(ema: AveragedModel, state: dict[str, Any]) -> None:
    ema.module.load_state_dict(state["model"])
    ema.n_averaged.fill_(int(state["updates"]) + 1)


def eval_batch(device: torch.device, train_batch: int) -> int:
    """Val faces per forward pass: 64 on a CPU (faster in cache, ``benchmarks/eval_batch.py``),
    at least 256 on a GPU."""
    return 64 if device.type == "cpu" else max(256, train_batch)


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX), so bf16 beats fp32."""
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(cfg: TrainCfg, device: torch.device) -> torch.dtype | None:
    """bf16 for ``train.amp`` (CUDA) or ``train.cpu_amp`` (only where the CPU has it natively)."""
    if device.type == "cuda":
        return torch.bfloat16 if cfg.amp else None
    if device.type == "cpu" and cfg.cpu_amp:
        if cpu_native_bf16():
            return torch.bfloat16
        print("train.cpu_amp: this CPU has no native bf16 (AVX512-BF16/AMX); training in fp32",
              flush=True)
    return None


def consistency_loss(logits: torch.Tensor, pairs: int, temperature: float) -> torch.Tensor:
    """T² · KL(p_clean ‖ p_occluded) of rows ``0..k-1`` (clean, detached) and ``k..2k-1``."""
    t = temperature
    clean = F.log_softmax(logits[:pairs].detach().float() / t, dim=1)
    occluded = F.log_softmax(logits[pairs:2 * pairs].float() / t, dim=1)
    return F.kl_div(occluded, clean, log_target=True, reduction="batchmean") * (t * t)


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if _world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def evaluate(model: nn.Module, val: ValArrays, batch_size: int, device: torch.device,
             tta_flip: bool, label_smoothing: float = 0.0) -> dict[str, float]:
    """Clean, occluded and mixed val accuracy plus the clean val loss."""
    logits = predict_logits(model, val.images, batch_size, device, tta_flip)
    nan, clean = float("nan"), ~val.occluded
    if len(logits) == 0:
        return dict.fromkeys(("val_loss", "val_acc", "val_occluded_acc", "val_mixed_acc"), nan)
    hit = logits.argmax(1) == val.labels
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    val_loss = (float(loss_fn(torch.from_numpy(logits[clean]),
                              torch.as_tensor(val.labels[clean], dtype=torch.long)))
                if clean.any() else nan)
    return {"val_loss": val_loss, "val_acc": float(hit[clean].mean()) if clean.any() else nan,
            "val_occluded_acc": float(hit[~clean].mean()) if (~clean).any() else nan,
            "val_mixed_acc": float(hit.mean())}


@dataclass
class Selection:
    """The best epoch by ``monitor`` (higher is better; its weights kept) and early stopping
    after ``patience`` epochs without a better one (0: never)."""

    monitor: str
    patience: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    best_model: dict[str, Any] | None = None
    bad: int = 0

    def update(self, stats: EpochStats, model: nn.Module) -> None:
        score = getattr(stats, self.monitor.replace("/", "_"))  # config.MONITORS
        if score > self.best_score:
            self.best_epoch, self.best_score, self.bad = stats.epoch, score, 0
            self.best_model = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1

    @property
    def stop(self) -> bool:
        return self.patience > 0 and self.bad >= self.patience


def fit(model: nn.Module, train: TrainArrays, val: ValArrays, cfg: TrainCfg,
        model_cfg: ModelCfg, occlusion: OcclusionCfg | None, seed: int, device: torch.device,
        *, state: TrainState | None = None,
        on_epoch: Callable[[EpochStats, TrainState], None] | None = None,
        before_epoch: Callable[[int], None] | None = None) -> FitResult:
    """Train ``model`` in place to the best epoch's weights (the EMA's with ``train.ema``).

    ``state`` resumes after its epoch; ``on_epoch(stats, state)`` gets the state to checkpoint;
    ``before_epoch(epoch)`` runs in training mode (e.g. ``init.trunk_freezer``; epoch alone)."""
    rank, world = _world()
    if cfg.distill > 0 and (train.teacher is None or len(train.teacher) != len(train)):
        raise ValueError("train.distill > 0 needs the teacher's logits for every training row "
                         "(TrainArrays.teacher; occlufer.training.distill.teacher_logits)")
    cuda = device.type == "cuda"
    amp = autocast_dtype(cfg, device)
    model.to(device)
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
    if amp is not None:
        model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(  # a hook may freeze parameters
            model, device_ids=[device.index] if cuda else None,
            find_unused_parameters=before_epoch is not None)
    ema = weight_ema(model, cfg.ema) if cfg.ema > 0 else None
    kept = ema.module if ema is not None else model  # what is evaluated, selected and saved
    planner = (partial(paired_plan, train.source) if cfg.pair else partial(epoch_plan, len(train)))
    optimizer = _optimizer(model, cfg)
    scheduler = _scheduler(optimizer, cfg, len(planner(cfg.batch_size, seed, 1, rank, world)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    mask_weight = model_cfg.mask_loss if hasattr(model, "aux_loss") else 0.0

    def train_one_epoch(epoch: int) -> tuple[float, int, int, float]:
        """Loss, hits, rows and consistency summed over all processes."""
        torch.manual_seed(batch_seed(seed, epoch, rank, 1))  # dropout draws
        plan = planner(cfg.batch_size, seed, epoch, rank, world)
        aug = ramped(cfg.augment, epoch)
        loader = torch.utils.data.DataLoader(
            BatchSource(train, plan, epoch, seed, aug, occlusion), batch_size=None,
            shuffle=False, num_workers=cfg.workers, pin_memory=cuda, persistent_workers=False,
            prefetch_factor=4 if cfg.workers else None)
        # summed on the device (a .item() per step would wait for the GPU): loss, hits, consistency
        sums, seen = torch.zeros(3, dtype=torch.float64, device=device), 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", disable=None, leave=False)
        for b, (images, labels, masks) in enumerate(bar):
            x = to_input(images.to(device, non_blocking=True))
            y = labels.to(device, non_blocking=True)
            m = masks.to(device, non_blocking=True).float().unsqueeze(1)
            pairs = pairs_in(plan[b], train.source) if cfg.pair else 0
            soft = (torch.from_numpy(train.teacher[plan[b]]).to(device, non_blocking=True)
                    if cfg.distill > 0 else None)
            x, m = warp(x, m, aug, batch_seed(seed, epoch, b * world + rank, 2), pairs)
            mixed = mix_batch(x, m, cfg.mix, cfg.mix_prob, cfg.mix_alpha,
                              batch_seed(seed, epoch, b * world + rank, 3))
            x, m = mixed.x, mixed.masks
            if amp is not None:
                x = x.contiguous(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = net(x)
                loss = loss_fn(logits.float(), y)
                if mixed.perm is not None:
                    loss = (mixed.lam * loss
                            + (1 - mixed.lam) * loss_fn(logits.float(), y[mixed.perm]))
                if soft is not None:
                    t = cfg.distill_temperature
                    target = soft_targets(soft, t, mixed.perm, mixed.lam)
                    loss = ((1 - cfg.distill) * loss
                            + cfg.distill * distill_loss(logits, target, t))
                if mask_weight > 0:
                    loss = loss + mask_weight * model.aux_loss(m.squeeze(1))
                if pairs and cfg.consistency > 0:
                    cons = consistency_loss(logits, pairs, cfg.consistency_temperature)
                    loss = loss + cfg.consistency * cons
                    sums[2] += cons.detach().double() * len(y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            sums[0] += loss.detach().double() * len(y)
            sums[1] += (logits.argmax(1) == y).sum()
            seen += len(y)
        total, correct, cons_total, seen = _all_sum([*sums.tolist(), seen], device)
        return total, int(correct), int(seen), cons_total

    history: list[EpochStats] = []
    sel, start = Selection(cfg.monitor, cfg.early_stopping), 1
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        history = [EpochStats(**h) for h in state.history]
        sel = Selection(cfg.monitor, cfg.early_stopping, state.best_epoch, state.best_score,
                        state.best_model, state.extra.get("bad_epochs", 0))
        start = cfg.epochs + 1 if state.stopped else state.epoch + 1
        if ema is not None:
            load_ema(ema, state.extra["ema"])

    for epoch in range(start, cfg.epochs + 1):
        net.train()
        if before_epoch is not None:
            before_epoch(epoch)
        t0 = time.perf_counter()
        loss, correct, seen, cons = train_one_epoch(epoch)
        elapsed = time.perf_counter() - t0
        v = evaluate(kept, val, eval_batch(device, cfg.batch_size), device, cfg.tta_flip,
                     cfg.label_smoothing)
        n = max(seen, 1)
        stats = EpochStats(epoch=epoch, train_loss=loss / n, train_acc=correct / n,
                           lr=scheduler.get_last_lr()[0], img_per_s=seen / elapsed,
                           seconds=time.perf_counter() - t0, train_consistency=cons / n, **v)
        history.append(stats)
        sel.update(stats, kept)
        if rank == 0:
            print(f"epoch {epoch}/{cfg.epochs}: train loss {stats.train_loss:.4f} acc "
                  f"{stats.train_acc:.3f} | val acc {stats.val_acc:.3f} occluded "
                  f"{stats.val_occluded_acc:.3f} | {stats.img_per_s:.0f} img/s"
                  + (" *" if sel.best_epoch == epoch else ""), flush=True)
        if on_epoch is not None:
            on_epoch(stats, TrainState(
                epoch=epoch, model=model.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), history=[asdict(h) for h in history],
                best_epoch=sel.best_epoch, best_score=sel.best_score, best_model=sel.best_model,
                extra={"bad_epochs": sel.bad, "stopped": sel.stop,
                       **({"ema": ema_state(ema)} if ema is not None else {})}))
        if sel.stop:
            if rank == 0:
                print(f"early stopping: no better {cfg.monitor} for {sel.bad} epochs "
                      f"(best {sel.best_score:.4f} at epoch {sel.best_epoch})", flush=True)
            break
    if sel.best_model is not None:
        model.load_state_dict(sel.best_model)
    return FitResult(history=history, best_epoch=sel.best_epoch, best_score=sel.best_score)
