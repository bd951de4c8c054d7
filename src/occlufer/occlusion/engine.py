"""Draw and apply occlusions: each image's decisions come only from its own generator, in a
fixed order, so results are byte-identical whatever the batch size, workers or order; images
of one type are rendered together (vectorised numpy)."""

import multiprocessing as mp
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from occlufer.errors import ignore_interrupt
from occlufer.occlusion import shapes
from occlufer.occlusion.occluder import FILLS, Canvas
from occlufer.occlusion.registry import DRAWN_STYLES, OCCLUDERS, TYPES
from occlufer.occlusion.shapes import Landmarks
from occlufer.rng import item_rng

_CHUNK_PIXELS = 96 * 48 * 48  # pixels rendered together: float32 temporaries stay in cache
_PARALLEL_MIN = 8000  # below this many images one process is faster than starting workers


@dataclass(frozen=True)
class OcclusionSpec:
    """What to draw; ``styles``: ``(type, styles)`` pairs restricting a type's styles."""

    types: tuple[str, ...] = ("block",)
    weights: tuple[float, ...] = (1.0,)
    ratio: tuple[float, float] = (0.25, 0.25)
    fills: tuple[str, ...] = ("gray", "noise")
    aspect: tuple[float, float] = (0.5, 2.0)
    landmarks: Landmarks = field(default_factory=Landmarks)
    styles: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.types) - set(OCCLUDERS)
        if unknown or not self.types or len(self.types) != len(self.weights):
            raise ValueError(f"bad occluder types {self.types} / weights {self.weights}")
        if set(self.fills) - set(FILLS) or not self.fills:
            raise ValueError(f"bad fills {self.fills}; choose from {FILLS}")
        for kind, styles in self.styles:
            if not styles or set(styles) - set(DRAWN_STYLES.get(kind, ())):
                raise ValueError(f"bad styles {list(styles)} for {kind!r}; drawn styles: "
                                 f"{DRAWN_STYLES}")

    @classmethod
    def from_cfg(cls, cfg) -> "OcclusionSpec":  # noqa: ANN001 - occlufer.config.OcclusionCfg
        """From the ``occlusion`` section of ``params.yaml`` (types with weight 0 dropped)."""
        types = [t for t in TYPES if cfg.types.get(t, 0.0) > 0]
        ratio = cfg.ratio if isinstance(cfg.ratio, list) else [cfg.ratio, cfg.ratio]
        lm = cfg.landmarks
        return cls(types=tuple(types), weights=tuple(float(cfg.types[t]) for t in types),
                   ratio=(float(ratio[0]), float(ratio[1])), fills=tuple(cfg.fills),
                   aspect=(float(cfg.aspect[0]), float(cfg.aspect[1])),
                   landmarks=Landmarks(tuple(lm.left_eye), tuple(lm.right_eye), tuple(lm.nose),
                                       tuple(lm.mouth), lm.brows, lm.face_width, lm.jitter),
                   styles=tuple((k, tuple(v)) for k, v in cfg.styles.items()))

    def only(self, kind: str) -> "OcclusionSpec":
        """The same spec restricted to one type."""
        return replace(self, types=(kind,), weights=(1.0,))


@dataclass
class Occlusion:
    """Occluded images with, per image, the mask, type, style and target ratio."""

    images: np.ndarray
    masks: np.ndarray
    types: list[str]
    styles: list[str]
    target_ratios: np.ndarray

    @property
    def fractions(self) -> np.ndarray:
        """The realised covered fraction of each image."""
        return self.masks.reshape(len(self.masks), -1).mean(axis=1)


def _draws(rngs: Sequence[np.random.Generator], spec: OcclusionSpec,
           ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Types, ratios, fills and the shape uniforms: one call to each image's generator."""
    k = 3 + shapes.N_UNIFORMS
    head = np.stack([rng.random(k) for rng in rngs]) if len(rngs) else np.zeros((0, k))
    w = np.asarray(spec.weights, dtype=np.float64)
    pick = np.minimum(np.searchsorted(np.cumsum(w / w.sum()), head[:, 0], side="right"),
                      len(w) - 1)
    lo, hi = spec.ratio
    ratios = np.full(len(head), lo, dtype=np.float64) if hi <= lo else lo + (hi - lo) * head[:, 1]
    fill = np.minimum((head[:, 2] * len(spec.fills)).astype(np.int64), len(spec.fills) - 1)
    return (np.asarray(spec.types, dtype=object)[pick], ratios, [spec.fills[i] for i in fill],
            head[:, 3:])


def occlude_batch(images: np.ndarray, rngs: Sequence[np.random.Generator], spec: OcclusionSpec,
                  pool: np.ndarray | None = None, pool_index: np.ndarray | None = None,
                  pool_order: np.ndarray | None = None, points: np.ndarray | None = None,
                  ) -> Occlusion:
    """Occlude N×H×W uint8 ``images``, image ``i`` drawing only from ``rngs[i]``.

    ``pool``: the faces texture fills cut from (default: ``images``), image ``i`` at rank
    ``pool_index[i]`` of ``pool_order``; ``points``: N×4×2 landmarks (:func:`.shapes.landmarks`)."""
    images = np.asarray(images)
    n = len(images)
    points = _checked_points(points, n)
    if pool is None:
        pool, pool_index = images, np.arange(n)
    own = np.full(n, -1) if pool_index is None else np.asarray(pool_index)
    kinds, ratios, fills, u = _draws(rngs, spec)
    out, masks = np.empty_like(images), np.zeros(images.shape, dtype=bool)
    styles = np.full(n, "", dtype=object)
    chunk = max(4, _CHUNK_PIXELS // max(1, images.shape[1] * images.shape[2]))
    x, y = shapes.grid(*images.shape[1:])
    for kind in dict.fromkeys(kinds):
        occluder = OCCLUDERS[kind]
        rows = np.flatnonzero(kinds == kind)
        style = occluder.style_index(u[rows], dict(spec.styles).get(kind))
        if style is not None:  # one style per chunk (stable: the order is kept)
            order = np.argsort(style, kind="stable")
            rows, style = rows[order], style[order]
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            given = None if points is None else points[part]
            its = None if style is None else style[start:start + chunk]
            c = Canvas(images[part], u[part], ratios[part], [fills[i] for i in part],
                       [rngs[i] for i in part], its, spec.aspect, pool, own[part], pool_order,
                       shapes.landmarks(spec.landmarks, u[part], given), x, y)
            styles[part] = occluder.style_names(c)
            if occluder.level_field is None:  # it paints and masks by itself (the dropouts)
                out[part], masks[part] = occluder.paint(c)
                continue
            f, extra = occluder.level_field(c)  # then the exact masks, then the painter
            masks[part], thr = shapes.threshold(f, c.ratios)
            paint = np.rint(occluder.paint(replace(c, f=f, extra=extra, thr=thr)))
            out[part] = np.where(masks[part], np.clip(paint, 0, 255).astype(np.uint8), c.images)
    return Occlusion(out, masks, kinds.tolist(), styles.tolist(), ratios.astype(np.float64))


def _checked_points(points: np.ndarray | None, n: int) -> np.ndarray | None:
    """``points`` as N×4×2 float64, or a one-line ValueError."""
    if points is None:
        return None
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (n, len(shapes.POINTS), 2):
        raise ValueError(f"points must be N×{len(shapes.POINTS)}×2 ({', '.join(shapes.POINTS)};"
                         f" x, y as fractions of the side) for {n} images, got {points.shape}")
    return points


_STATE: dict = {}


def _work(bounds: tuple[int, int]) -> tuple[list[str], list[str], np.ndarray]:
    """Occlude rows ``lo:hi`` into the shared output arrays; returns the per-row records."""
    (lo, hi), st = bounds, _STATE
    rngs = [item_rng(st["seed"], i, st["purpose"]) for i in st["ids"][lo:hi]]
    occ = occlude_batch(np.asarray(st["images"][lo:hi]), rngs, st["spec"], pool=st["images"],
                        pool_index=st["rank"][lo:hi], pool_order=st["order"],
                        points=None if st["points"] is None else st["points"][lo:hi])
    st["out"][lo:hi], st["masks"][lo:hi] = occ.images, occ.masks
    return occ.types, occ.styles, occ.target_ratios


def _shared(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An array in anonymous shared memory (forked workers write into it, no pickling)."""
    n = int(np.prod(shape))
    buf = mp.RawArray("b", max(1, n * np.dtype(dtype).itemsize))
    return np.frombuffer(buf, dtype=dtype, count=n).reshape(shape)


def resolve_workers(workers: int, n: int) -> int:
    """0 = automatic: one per available core (at most 2) on large inputs, else 1."""
    if workers or n < _PARALLEL_MIN:
        return workers or 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, cores or 1))


def occlude_images(images: np.ndarray, ids: Sequence[str], seed: int, spec: OcclusionSpec,
                   purpose: str = "occlude", workers: int = 1, chunk: int = 2048,
                   points: np.ndarray | None = None) -> Occlusion:
    """Occlude a whole store, image ``i`` with ``item_rng(seed, ids[i], purpose)``: the same for
    any ``workers`` (forked, writing into shared arrays), ``chunk`` or order of the store."""
    n = len(images)
    points = _checked_points(points, n)
    bounds = [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]
    ids = [str(i) for i in ids]
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable") if n else np.zeros(0, int)
    rank = np.argsort(order)  # each image's rank by id
    parallel = workers > 1 and len(bounds) > 1 and "fork" in mp.get_all_start_methods()
    make = _shared if parallel else np.empty
    _STATE.update(images=images, ids=ids, seed=seed, spec=spec, purpose=purpose, order=order,
                  rank=rank, points=points, out=make(images.shape, np.uint8),
                  masks=make(images.shape, bool))
    try:
        if parallel:
            with mp.get_context("fork").Pool(workers, initializer=ignore_interrupt) as p:
                parts = p.map(_work, bounds)
        else:
            parts = [_work(b) for b in bounds]
        out, masks = np.array(_STATE["out"]), np.array(_STATE["masks"])
    finally:
        _STATE.clear()
    types, styles, ratios = zip(*parts, strict=True) if parts else ((), (), [np.zeros(0)])
    return Occlusion(out, masks, sum(types, []), sum(styles, []), np.concatenate(ratios))


class OcclusionAugment:
    """The stage's occluders as a training-time augmentation: ``batch`` draws fresh occlusions
    per epoch, ``aug(image, rng)`` one; ``pool`` (default: the batch) supplies texture patches."""

    def __init__(self, cfg, seed: int, p: float = 1.0,  # noqa: ANN001 - OcclusionCfg or Spec
                 pool: np.ndarray | None = None, points: np.ndarray | None = None) -> None:
        self.spec = cfg if isinstance(cfg, OcclusionSpec) else OcclusionSpec.from_cfg(cfg)
        self.seed, self.p, self.pool = seed, p, pool
        self.points = None if points is None else _checked_points(points, len(points))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return occlude_batch(np.asarray(image)[None], [rng], self.spec, pool=self.pool).images[0]

    def batch(self, images: np.ndarray, indices: Sequence[int], epoch: int = 0,
              ) -> tuple[np.ndarray, np.ndarray]:
        """(images, masks): each row occluded with probability ``p``, drawing from
        ``item_rng(seed, f"{indices[i]}@{epoch}", "augment")``, at ``points[indices[i]]``."""
        images = np.asarray(images)
        rngs = [item_rng(self.seed, f"{int(i)}@{epoch}", "augment") for i in indices]
        chosen = np.array([r.random() < self.p for r in rngs], dtype=bool)
        out, masks = images.copy(), np.zeros(images.shape, dtype=bool)
        if chosen.any():
            rows = np.flatnonzero(chosen)
            idx = np.asarray(indices, dtype=np.int64)[rows]
            pool, own = (images, rows) if self.pool is None else (self.pool, idx)
            given = None if self.points is None else self.points[idx]
            occ = occlude_batch(images[rows], [rngs[i] for i in rows], self.spec, pool=pool,
                                pool_index=own, points=given)
            out[rows], masks[rows] = occ.images, occ.masks
        return out, masks
