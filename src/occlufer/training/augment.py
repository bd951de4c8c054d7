"""Training batches: fresh occlusions, warps, mixing, each draw seeded (the same for any workers).
Not albumentations: its per-image calls would not warp the occlusion masks with the faces on the
training device. Not torchvision's ``CutMix`` / timm's ``Mixup``: they refuse or ignore masks.
"""

import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812

from occlufer.config import AugmentCfg, OcclusionCfg
from occlufer.data.store import Store, manifest_keypoints
from occlufer.occlusion import OcclusionAugment
from occlufer.occlusion.shapes import POINTS


def batch_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (e.g. seed, epoch, batch)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


@dataclass
class ValArrays:
    """Validation rows: images, labels and which rows are occluded copies."""

    images: np.ndarray
    labels: np.ndarray
    occluded: np.ndarray


@dataclass
class TrainArrays(ValArrays):
    """Training rows; ``source[i]``: occluded row ``i``'s clean row (-1: none); ``points``:
    N×4×2 keypoints for fresh region occluders; ``teacher``: N×C logits (:mod:`.distill`)."""

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


def label_codes(manifest: pd.DataFrame) -> np.ndarray:
    """Class indices of the (categorical) label column."""
    return manifest["label"].cat.codes.to_numpy(dtype=np.int64)


def train_arrays(store: Store) -> TrainArrays:
    """The train store's rows, each occluded row's clean source row, masks and keypoints."""
    m = store.manifest
    occluded = m["occluded"].to_numpy(dtype=bool)
    src = m["src_id"].to_numpy() if "src_id" in m.columns else m["id"].to_numpy()
    return TrainArrays(images=store.images, labels=label_codes(m), occluded=occluded,
                       source=source_rows(m["id"].to_numpy(), src, occluded), masks=store.masks,
                       points=manifest_keypoints(m, POINTS))


def val_arrays(store: Store) -> ValArrays:
    """Images, labels and occluded flags of the val store."""
    m = store.manifest
    return ValArrays(store.images, label_codes(m), m["occluded"].to_numpy(dtype=bool))


class BatchSource(torch.utils.data.Dataset):
    """Item ``b`` is batch ``b`` of the plan: (images uint8, labels, masks uint8). With
    ``fresh_occlusion`` each occluded row is re-drawn from its clean face every epoch;
    ``occlude_clean`` occludes that fraction of clean rows too."""

    group = 16  #: batches whose fresh occlusions are drawn in one call (same draws: per image)

    def __init__(self, data: TrainArrays, plan: list[np.ndarray], epoch: int, seed: int,
                 aug: AugmentCfg, occlusion: OcclusionCfg | None) -> None:
        self.data, self.plan, self.epoch, self.seed, self.aug = data, plan, epoch, seed, aug
        self._ahead: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        points = data.points if getattr(occlusion, "keypoints", False) else None
        make = partial(OcclusionAugment, occlusion, pool=data.images, points=points)
        on = occlusion is not None
        self.fresh = make(seed, p=1.0) if on and aug.fresh_occlusion else None
        self.extra = make(seed + 1, p=aug.occlude_clean) if on and aug.occlude_clean > 0 else None

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
        """Batch ``b``'s occluded rows re-drawn (with the next :attr:`group` this worker serves)."""
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
            cuts = np.cumsum([len(p[1]) for p in parts])[:-1]
            for (c, rows, _), im, mk in zip(parts, np.split(new, cuts), np.split(new_masks, cuts),
                                            strict=True):
                self._ahead[c] = (rows, im, mk)
        return self._ahead.pop(b)


def _deal(batches: list[np.ndarray], rank: int, world: int) -> list[np.ndarray]:
    """Batch ``b`` goes to rank ``b % world``, the last few dropped so all ranks get as many."""
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
    """:func:`epoch_plan` of ``k = batch_size // 2`` clean rows then their occluded twins (rows
    without a partner fill batches of their own)."""
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
    """``aug`` for ``epoch``: warps but flip grow from none to full over ``aug.warmup_epochs``."""
    if aug.warmup_epochs <= 0 or epoch - 1 >= aug.warmup_epochs:
        return aug
    f = (epoch - 1) / aug.warmup_epochs
    lo, hi = aug.scale
    return replace(aug, rotate=aug.rotate * f, scale=[1 + (lo - 1) * f, 1 + (hi - 1) * f],
                   translate=aug.translate * f, brightness=aug.brightness * f,
                   contrast=aug.contrast * f)


def warp(x: torch.Tensor, masks: torch.Tensor, aug: AugmentCfg, seed: int, pairs: int = 0,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, rotation, zoom, shift, brightness, contrast of N×1×H×W faces and masks alike;
    with ``pairs = k`` rows ``k..2k-1`` get the draws of rows ``0..k-1``."""
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
    """``lam`` of each face, ``1 - lam`` of face ``perm[i]``: loss lam·CE(y)+(1-lam)·CE(y[perm])."""

    x: torch.Tensor
    masks: torch.Tensor
    perm: torch.Tensor | None  # None: the batch was not mixed
    lam: float


def mix_batch(x: torch.Tensor, masks: torch.Tensor, mode: str, prob: float, alpha: float,
              seed: int) -> Mixed:
    """With probability ``prob``, ``mixup`` (blend, ``lam ~ Beta(alpha, alpha)``) or ``cutmix``
    (paste a rectangle of area ``1 - lam`` and its mask) the batch with a permutation of itself."""
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
