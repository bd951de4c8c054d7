"""Training batches: fresh occlusions (numpy, per image) and geometry/photometry (torch, per batch).

Every random draw is derived from ``(seed, epoch, batch)`` or ``(seed, image, epoch)``, so an
epoch is reproducible whatever the number of DataLoader workers, and a run resumed from a
checkpoint sees exactly the batches an uninterrupted one would have seen.

Why not albumentations for flips and affines: its transforms are per-image Python calls. Here
the whole batch is warped with one ``affine_grid`` / ``grid_sample`` on the training device — on
a GPU that keeps the data path off the CPU, on a CPU it costs a few percent of a step — and the
occlusion masks are warped with the faces, which the occlusion-aware model needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from occlufer.config import AugmentCfg, OcclusionCfg
from occlufer.occlusion import OcclusionAugment


def batch_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (e.g. seed, epoch, batch)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


@dataclass
class TrainArrays:
    """The training rows: images, labels, which rows are occluded copies, and their sources.

    ``source[i]`` is the row of occluded row ``i``'s clean face (``-1`` for clean rows and for
    occluded rows whose clean face is not in the set); ``masks`` are the recorded occlusion masks;
    ``points`` each row's detected keypoints (N×4×2, NaN where it has none; None: no row has
    any), where fresh occlusions place the region occluders; ``teacher`` the distillation
    teacher's logits on each row's clean face (N×C; :mod:`occlufer.training.distill`).
    """

    images: np.ndarray
    labels: np.ndarray
    occluded: np.ndarray
    source: np.ndarray
    masks: np.ndarray | None = None
    points: np.ndarray | None = None
    teacher: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)


def source_rows(ids: np.ndarray, src_ids: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """For each row, the row whose ``id`` is its ``src_id`` when it is occluded, else -1."""
    where = {v: i for i, v in enumerate(ids)}
    return np.array([where.get(s, -1) if o else -1 for s, o in zip(src_ids, occluded,
                                                                  strict=True)], dtype=np.int64)


class BatchSource(torch.utils.data.Dataset):
    """Item ``b`` of an epoch's plan is one whole batch: (images uint8, labels, masks uint8).

    With ``fresh_occlusion`` an occluded row is re-drawn from its clean face with a new occluder
    every epoch (so the 1:1 clean/occluded mix of the split holds in every epoch, with a new
    sample of occlusions each time); ``occlude_clean`` occludes that fraction of clean rows too.
    """

    #: batches whose fresh occlusions are drawn together: one call per occluder type for many
    #: batches instead of one per batch (the outputs are the same: every draw is per image)
    group = 16

    def __init__(self, data: TrainArrays, plan: list[np.ndarray], epoch: int, seed: int,
                 aug: AugmentCfg, occlusion: OcclusionCfg | None) -> None:
        self.data, self.plan, self.epoch, self.seed, self.aug = data, plan, epoch, seed, aug
        self._ahead: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.fresh = self.extra = None
        points = data.points if getattr(occlusion, "keypoints", False) else None
        if occlusion is not None and aug.fresh_occlusion:
            self.fresh = OcclusionAugment(occlusion, seed, p=1.0, pool=data.images,
                                          points=points)
        if occlusion is not None and aug.occlude_clean > 0:
            self.extra = OcclusionAugment(occlusion, seed + 1, p=aug.occlude_clean,
                                          pool=data.images, points=points)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.plan[b]
        d = self.data
        images = np.asarray(d.images[idx]).copy()
        masks = (np.asarray(d.masks[idx]).copy() if d.masks is not None
                 else np.zeros(images.shape, dtype=bool))
        if self.fresh is not None:
            rows, new, new_masks = self._fresh(b)
            if len(rows):
                images[rows], masks[rows] = new, new_masks
        if self.extra is not None:
            rows = np.flatnonzero(~d.occluded[idx])
            if len(rows):
                new, new_masks = self.extra.batch(images[rows], idx[rows], self.epoch)
                images[rows], masks[rows] = new, masks[rows] | new_masks
        return (torch.from_numpy(images), torch.from_numpy(d.labels[idx]),
                torch.from_numpy(masks.view(np.uint8)))

    def _fresh(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch ``b``'s occluded rows re-drawn from their clean faces: (rows, images, masks).

        Draws them for the next :attr:`group` batches this process will be asked for (a
        DataLoader worker serves every ``num_workers``-th batch) in one call, and keeps the rest.
        """
        if b not in self._ahead:
            info = torch.utils.data.get_worker_info()
            step = info.num_workers if info is not None else 1
            d, parts = self.data, []
            for c in range(b, min(len(self.plan), b + self.group * step), step):
                rows = np.flatnonzero(d.source[self.plan[c]] >= 0)
                parts.append((c, rows, d.source[self.plan[c][rows]]))
            # keyed by the clean row: it has exactly one occluded copy in the split
            src = np.concatenate([p[2] for p in parts])
            new, new_masks = self.fresh.batch(d.images[src], src, self.epoch)
            start = 0
            for c, rows, _ in parts:
                end = start + len(rows)
                self._ahead[c] = (rows, new[start:end], new_masks[start:end])
                start = end
        return self._ahead.pop(b)


def _deal(batches: list[np.ndarray], rank: int, world: int) -> list[np.ndarray]:
    """Batch ``b`` goes to rank ``b % world``; every rank gets the same number of batches (the
    last few are dropped when they do not divide evenly)."""
    if world > 1:
        batches = batches[:len(batches) - len(batches) % world]
    return batches[rank::world]


def epoch_plan(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
               world: int = 1) -> list[np.ndarray]:
    """This process's batches of an epoch: a seeded permutation cut into batches."""
    order = np.random.default_rng([seed, epoch, 7]).permutation(n)
    return _deal([order[i:i + batch_size] for i in range(0, n, batch_size)], rank, world)


def twin_rows(source: np.ndarray) -> np.ndarray:
    """For each row, the occluded row made from it (``-1`` when it has none)."""
    twin = np.full(len(source), -1, dtype=np.int64)
    occ = np.flatnonzero(source >= 0)
    twin[source[occ]] = occ
    return twin


def paired_plan(source: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int = 0,
                world: int = 1) -> list[np.ndarray]:
    """Like :func:`epoch_plan`, but a batch is ``k`` clean rows followed by their ``k`` occluded
    twins (``k = batch_size // 2``), so the loss can compare each occluded face with its clean
    source. Rows without a partner (a clean face without an occluded copy in the set, or an
    occluded copy whose source is not in it) are not dropped: they fill batches of their own.
    Every row is seen once per epoch, as in :func:`epoch_plan`.
    """
    rng = np.random.default_rng([seed, epoch, 11])
    twin = twin_rows(source)
    clean = np.flatnonzero(twin >= 0)
    single = np.flatnonzero((twin < 0) & (source < 0))
    k = max(1, batch_size // 2)
    order = rng.permutation(clean)
    batches = [np.concatenate([c, twin[c]]) for c in
               (order[i:i + k] for i in range(0, len(order), k))]
    rest = rng.permutation(single)
    batches += [rest[i:i + batch_size] for i in range(0, len(rest), batch_size)]
    batches = [batches[i] for i in rng.permutation(len(batches))]
    return _deal(batches, rank, world)


def pairs_in(batch: np.ndarray, source: np.ndarray) -> int:
    """``k`` when ``batch`` is ``k`` clean rows followed by their ``k`` occluded twins, else 0."""
    k = len(batch) // 2
    if k == 0 or len(batch) != 2 * k:
        return 0
    return k if np.array_equal(source[batch[k:]], batch[:k]) else 0


def ramped(aug: AugmentCfg, epoch: int) -> AugmentCfg:
    """``aug`` for ``epoch`` (1-based) under ``aug.warmup_epochs``: the geometric and photometric
    strengths grow linearly from none in epoch 1 to full after the warm-up; flip and occlusions
    are not ramped.

    Strong geometric augmentation from the first step keeps a network from scratch near the
    class prior for epochs on FER2013; a few epochs of warm-up let it find features first.
    """
    if aug.warmup_epochs <= 0 or epoch - 1 >= aug.warmup_epochs:
        return aug
    f = (epoch - 1) / aug.warmup_epochs
    lo, hi = aug.scale
    return replace(aug, rotate=aug.rotate * f, scale=[1 + (lo - 1) * f, 1 + (hi - 1) * f],
                   translate=aug.translate * f, brightness=aug.brightness * f,
                   contrast=aug.contrast * f)


def warp(x: torch.Tensor, masks: torch.Tensor, aug: AugmentCfg, seed: int, pairs: int = 0,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, rotation, zoom, shift, brightness and contrast for a normalised batch.

    ``x``: N×1×H×W in [-1, 1]; ``masks``: N×1×H×W float (warped with the faces). With
    ``pairs = k``, rows ``k .. 2k-1`` get the draws of rows ``0 .. k-1`` (a face and its occluded
    twin are warped alike); the draws themselves do not depend on ``pairs``.
    """
    n = len(x)
    if n == 0:
        return x, masks
    g = torch.Generator().manual_seed(seed)

    def tie(t: torch.Tensor) -> torch.Tensor:
        if pairs:
            t[pairs:2 * pairs] = t[:pairs]
        return t

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return tie(lo + (hi - lo) * torch.rand(n, generator=g))

    flip = tie(torch.where(torch.rand(n, generator=g) < aug.flip, -1.0, 1.0))
    angle = uniform(-aug.rotate, aug.rotate) * math.pi / 180
    lo, hi = aug.scale
    zoom = torch.exp(uniform(math.log(lo), math.log(hi)))
    tx, ty = (uniform(-aug.translate, aug.translate) * 2 for _ in range(2))
    geometric = aug.flip > 0 or aug.rotate > 0 or lo != 1 or hi != 1 or aug.translate > 0
    if geometric:
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                             torch.stack([sin * flip, cos, ty], 1)], 1).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros",
                              align_corners=False)
    if aug.brightness > 0 or aug.contrast > 0:
        shift = (uniform(-aug.brightness, aug.brightness) * 2).to(x.device, x.dtype)
        gain = uniform(1 - aug.contrast, 1 + aug.contrast).to(x.device, x.dtype)
        mean = x.mean((1, 2, 3), keepdim=True)
        x = ((x - mean) * gain.view(-1, 1, 1, 1) + mean + shift.view(-1, 1, 1, 1)).clamp(-1, 1)
    return x, masks


@dataclass(frozen=True)
class Mixed:
    """A mixed batch: ``x`` holds ``lam`` of each face and ``1 - lam`` of face ``perm[i]``
    (blended, or pasted as a rectangle); its loss is ``lam·CE(y) + (1-lam)·CE(y[perm])``."""

    x: torch.Tensor
    masks: torch.Tensor
    perm: torch.Tensor | None  # None: the batch was not mixed
    lam: float


def mix_batch(x: torch.Tensor, masks: torch.Tensor, mode: str, prob: float, alpha: float,
              seed: int) -> Mixed:
    """Mixup or CutMix of a normalised N×1×H×W batch, drawn from ``seed`` alone.

    With probability ``prob`` the batch is mixed with a permutation of itself: ``mixup`` blends
    whole faces with weight ``lam ~ Beta(alpha, alpha)``; ``cutmix`` pastes a rectangle of area
    ``1 - lam`` from the partner face (and its occlusion mask), then ``lam`` is the share of the
    face that is its own. ``mode="none"``, ``prob=0`` or a batch of one leave it as it is.
    """
    n = len(x)
    rng = np.random.default_rng(seed)
    if mode == "none" or n < 2 or rng.random() >= prob:
        return Mixed(x, masks, None, 1.0)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(n)).to(x.device)
    if mode == "mixup":
        return Mixed(lam * x + (1 - lam) * x[perm], lam * masks + (1 - lam) * masks[perm],
                     perm, lam)
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = round(h * cut), round(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + (ch + 1) // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + (cw + 1) // 2, w)
    x, masks = x.clone(), masks.clone()
    x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    masks[..., y0:y1, x0:x1] = masks[perm][..., y0:y1, x0:x1]
    return Mixed(x, masks, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w))
