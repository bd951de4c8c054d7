"""The epoch loop: seeded batches and augmentation, schedules, early stopping, checkpoints.

:func:`fit` is deterministic on the CPU for a given seed — the batch order, every augmentation
draw and the dropout masks are derived from ``(seed, epoch, batch)`` — and it can start from a
:class:`TrainState` saved after any epoch, ending exactly where an uninterrupted run ends.
Under DDP (``torch.distributed`` initialised) each process trains on its share of the batches;
every process evaluates the whole val set, so all take the same early-stopping decision.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm import tqdm

from occlufer.config import ModelCfg, OcclusionCfg, TrainCfg
from occlufer.preprocess import to_input, tta_views
from occlufer.training.augment import (
    BatchSource,
    TrainArrays,
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
    """What one epoch measured (names match the MLflow / DVC metric keys via :meth:`metrics`)."""

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
        d = asdict(self)
        return {"train/loss": d["train_loss"], "train/acc": d["train_acc"],
                "val/loss": d["val_loss"], "val/acc": d["val_acc"],
                "val_occluded/acc": d["val_occluded_acc"], "val_mixed/acc": d["val_mixed_acc"],
                "lr": d["lr"], "train/img_per_s": d["img_per_s"],
                "train/epoch_seconds": d["seconds"],
                "train/consistency": d["train_consistency"]}


@dataclass
class ValArrays:
    """Validation rows: images, labels and which rows are occluded copies."""

    images: np.ndarray
    labels: np.ndarray
    occluded: np.ndarray


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
    # no weight decay on biases and BatchNorm weights (the usual recipe for ResNets)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


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


def eval_batch(device: torch.device, train_batch: int) -> int:
    """Faces per forward pass when scoring the val faces after each epoch: 64 on a CPU, where
    small batches stay in cache (``benchmarks/eval_batch.py``, against 256: ``seed_cnn``
    1.2-1.8×, ``compact`` 1.2-1.4× in the layouts they run in), at least 256 on a GPU. The
    matrix products block by the batch, so a logit may move in its last bits (≤ 1.5e-8 there);
    the default pipeline chose the same epoch and wrote the same ``models/`` with 64 as with
    256."""
    return 64 if device.type == "cpu" else max(256, train_batch)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int,
                   device: torch.device, tta_flip: bool = False, tta_shift: int = 0,
                   ) -> np.ndarray:
    """Logits (N×C float32) for N×H×W uint8 images, in batches, in eval mode.

    ``tta_flip`` averages the logits of each face and its mirror image (test-time flip);
    ``tta_shift`` also those of the face shifted by that many pixels
    (:func:`occlufer.preprocess.tta_views`).
    """
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(np.asarray(images[start:start + batch_size])).to(device)
        views = tta_views(x, tta_flip, tta_shift)
        logits = torch.stack([model(v).float() for v in views]).mean(0)
        out.append(logits.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 / AMX), so bf16 beats fp32."""
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(cfg: TrainCfg, device: torch.device) -> torch.dtype | None:
    """bf16 when ``train.amp`` (CUDA) or ``train.cpu_amp`` (CPU with native bf16) asks for it.

    A CPU without native bf16 would emulate it, slower than fp32: it trains in fp32 and says so.
    """
    if device.type == "cuda":
        return torch.bfloat16 if cfg.amp else None
    if device.type == "cpu" and cfg.cpu_amp:
        if cpu_native_bf16():
            return torch.bfloat16
        print("train.cpu_amp: this CPU has no native bf16 (AVX512-BF16/AMX); training in fp32",
              flush=True)
    return None


class WeightEma:
    """An exponential moving average of a model's weights (and BatchNorm statistics).

    ``decay`` is warmed up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so the
    average does not hold on to the random initialisation. Integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs(model)

    def _pairs(self, model: nn.Module) -> None:
        mine, theirs = self.model.state_dict(), model.state_dict(keep_vars=True)
        floats = [k for k, v in mine.items() if v.dtype.is_floating_point]
        self._float = ([mine[k] for k in floats], [theirs[k].detach() for k in floats])
        self._other = [(v, theirs[k]) for k, v in mine.items() if not v.dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._float[0], self._float[1], 1.0 - d)
        for mine, theirs in self._other:
            mine.copy_(theirs)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def consistency_loss(logits: torch.Tensor, pairs: int, temperature: float) -> torch.Tensor:
    """KL(p_clean || p_occluded) over the batch's ``pairs`` (rows ``0..k-1`` clean, ``k..2k-1``
    their occluded twins), clean side detached, both softened by ``temperature`` (× T²)."""
    t = temperature
    clean = F.log_softmax(logits[:pairs].detach().float() / t, dim=1)
    occluded = F.log_softmax(logits[pairs:2 * pairs].float() / t, dim=1)
    return F.kl_div(occluded, clean, log_target=True, reduction="batchmean") * (t * t)


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    _, world = _world()
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def evaluate(model: nn.Module, val: ValArrays, batch_size: int, device: torch.device,
             tta_flip: bool, label_smoothing: float = 0.0) -> dict[str, float]:
    """Clean, occluded and mixed val accuracy plus the clean val loss."""
    logits = predict_logits(model, val.images, batch_size, device, tta_flip)
    if len(logits) == 0:
        nan = float("nan")
        return {"val_loss": nan, "val_acc": nan, "val_occluded_acc": nan, "val_mixed_acc": nan}
    hit = logits.argmax(1) == val.labels
    clean, occ = ~val.occluded, val.occluded
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    val_loss = (float(loss_fn(torch.from_numpy(logits[clean]),
                              torch.as_tensor(val.labels[clean], dtype=torch.long)))
                if clean.any() else float("nan"))
    return {"val_loss": val_loss,
            "val_acc": float(hit[clean].mean()) if clean.any() else float("nan"),
            "val_occluded_acc": float(hit[occ].mean()) if occ.any() else float("nan"),
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


def batches(train: TrainArrays, cfg: TrainCfg, seed: int, epoch: int, rank: int = 0,
            world: int = 1) -> list[np.ndarray]:
    """The epoch's batches of row indices (this process's share; pairs with ``train.pair``)."""
    if cfg.pair:
        return paired_plan(train.source, cfg.batch_size, seed, epoch, rank, world)
    return epoch_plan(len(train), cfg.batch_size, seed, epoch, rank, world)


@dataclass
class Stepper:
    """What every optimisation step of a fit uses (:func:`train_one_epoch`)."""

    net: nn.Module          # the model, or its DDP wrapper
    model: nn.Module        # the model itself (its ``aux_loss``)
    train: TrainArrays
    cfg: TrainCfg
    occlusion: OcclusionCfg | None
    seed: int
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    mask_weight: float
    amp: torch.dtype | None
    ema: WeightEma | None
    rank: int = 0
    world: int = 1



@dataclass
class EpochTotals:
    """One epoch's training sums over all processes."""

    loss: float
    correct: int
    seen: int
    consistency: float


def train_one_epoch(s: Stepper, epoch: int) -> EpochTotals:
    """One pass over the epoch's plan: fresh occlusions and augmentation drawn from
    ``(seed, epoch, batch)``, forward, loss (+ distillation, mask and consistency terms), step,
    EMA."""
    cfg, train, seed, rank, world, device = s.cfg, s.train, s.seed, s.rank, s.world, s.device
    torch.manual_seed(batch_seed(seed, epoch, rank, 1))  # dropout draws
    plan = batches(train, cfg, seed, epoch, rank, world)
    aug = ramped(cfg.augment, epoch)
    source = BatchSource(train, plan, epoch, seed, aug, s.occlusion)
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        source, batch_size=None, shuffle=False, num_workers=cfg.workers,
        pin_memory=cuda, persistent_workers=False,
        prefetch_factor=4 if cfg.workers else None)
    # summed on the device: a .item() per step would make every step wait for the GPU
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.int64, device=device)
    cons_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
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
        if s.amp is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        s.optimizer.zero_grad(set_to_none=True)
        ctx = (torch.autocast(device.type, dtype=s.amp) if s.amp is not None
               else contextlib.nullcontext())
        with ctx:
            logits = s.net(x)
            loss = s.loss_fn(logits.float(), y)
            if mixed.perm is not None:
                loss = (mixed.lam * loss
                        + (1 - mixed.lam) * s.loss_fn(logits.float(), y[mixed.perm]))
            if soft is not None:
                t = cfg.distill_temperature
                target = soft_targets(soft, t, mixed.perm, mixed.lam)
                loss = ((1 - cfg.distill) * loss
                        + cfg.distill * distill_loss(logits, target, t))
            if s.mask_weight > 0:
                loss = loss + s.mask_weight * s.model.aux_loss(m.squeeze(1))
            if pairs and cfg.consistency > 0:
                cons = consistency_loss(logits, pairs, cfg.consistency_temperature)
                loss = loss + cfg.consistency * cons
                cons_sum += cons.detach().double() * len(y)
        loss.backward()
        s.optimizer.step()
        s.scheduler.step()
        if s.ema is not None:
            s.ema.update()
        loss_sum += loss.detach().double() * len(y)
        hits += (logits.argmax(1) == y).sum()
        seen += len(y)
    total_loss, correct, seen, cons_total = _all_sum(
        [float(loss_sum), int(hits), seen, float(cons_sum)], device)
    return EpochTotals(total_loss, int(correct), int(seen), cons_total)


def fit(model: nn.Module, train: TrainArrays, val: ValArrays, cfg: TrainCfg,
        model_cfg: ModelCfg, occlusion: OcclusionCfg | None, seed: int, device: torch.device,
        *, state: TrainState | None = None,
        on_epoch: Callable[[EpochStats, TrainState], None] | None = None,
        before_epoch: Callable[[int], None] | None = None) -> FitResult:
    """Train ``model`` (in place; it ends holding the best epoch's weights).

    ``state`` resumes after its epoch; ``on_epoch(stats, state)`` runs after every epoch with
    the state to checkpoint; ``before_epoch(epoch)`` runs at the start of every epoch, after the
    model is put in training mode (e.g. :func:`occlufer.training.init.trunk_freezer`; it must
    depend on the epoch alone, so that a resumed run does the same). Stops early after
    ``cfg.early_stopping`` epochs without a better ``cfg.monitor`` (:class:`Selection`).
    """
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
    ema = WeightEma(model, cfg.ema) if cfg.ema > 0 else None
    optimizer = _optimizer(model, cfg)
    steps_per_epoch = len(batches(train, cfg, seed, 1, rank, world))
    s = Stepper(net=net, model=model, train=train, cfg=cfg, occlusion=occlusion, seed=seed,
                device=device, optimizer=optimizer,
                scheduler=_scheduler(optimizer, cfg, steps_per_epoch),
                loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
                mask_weight=model_cfg.mask_loss if hasattr(model, "aux_loss") else 0.0,
                amp=amp, ema=ema, rank=rank, world=world)
    kept = ema.model if ema is not None else model  # what is evaluated, selected and saved

    history: list[EpochStats] = []
    sel, start = Selection(cfg.monitor, cfg.early_stopping), 1
    if state is not None:
        model.load_state_dict(state.model)
        s.optimizer.load_state_dict(state.optimizer)
        s.scheduler.load_state_dict(state.scheduler)
        history = [EpochStats(**h) for h in state.history]
        sel.best_epoch, sel.best_score, sel.best_model = (state.best_epoch, state.best_score,
                                                          state.best_model)
        sel.bad, start = state.extra.get("bad_epochs", 0), state.epoch + 1
        if ema is not None:
            ema.load(state.extra["ema"])
        if state.stopped:
            start = cfg.epochs + 1

    for epoch in range(start, cfg.epochs + 1):
        net.train()
        if before_epoch is not None:
            before_epoch(epoch)
        t0 = time.perf_counter()
        tot = train_one_epoch(s, epoch)
        elapsed = time.perf_counter() - t0
        v = evaluate(kept, val, eval_batch(device, cfg.batch_size), device, cfg.tta_flip,
                     cfg.label_smoothing)
        stats = EpochStats(epoch=epoch, train_loss=tot.loss / max(tot.seen, 1),
                           train_acc=tot.correct / max(tot.seen, 1),
                           lr=s.scheduler.get_last_lr()[0], img_per_s=tot.seen / elapsed,
                           seconds=time.perf_counter() - t0,
                           train_consistency=tot.consistency / max(tot.seen, 1), **v)
        history.append(stats)
        sel.update(stats, kept)
        if rank == 0:
            print(f"epoch {epoch}/{cfg.epochs}: train loss {stats.train_loss:.4f} acc "
                  f"{stats.train_acc:.3f} | val acc {stats.val_acc:.3f} occluded "
                  f"{stats.val_occluded_acc:.3f} | {stats.img_per_s:.0f} img/s"
                  + (" *" if sel.best_epoch == epoch else ""), flush=True)
        if on_epoch is not None:
            on_epoch(stats, TrainState(
                epoch=epoch, model=model.state_dict(), optimizer=s.optimizer.state_dict(),
                scheduler=s.scheduler.state_dict(), history=[asdict(h) for h in history],
                best_epoch=sel.best_epoch, best_score=sel.best_score,
                best_model=sel.best_model,
                extra={"bad_epochs": sel.bad, "stopped": sel.stop,
                       **({"ema": ema.state()} if ema is not None else {})}))
        if sel.stop:
            if rank == 0:
                print(f"early stopping: no better {cfg.monitor} for {sel.bad} epochs "
                      f"(best {sel.best_score:.4f} at epoch {sel.best_epoch})", flush=True)
            break
    if sel.best_model is not None:
        model.load_state_dict(sel.best_model)
    return FitResult(history=history, best_epoch=sel.best_epoch, best_score=sel.best_score)
