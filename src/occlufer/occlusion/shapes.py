"""The geometric occluders: level fields and painters, vectorised over a chunk of one type.

Every level field takes a :class:`~occlufer.occlusion.occluder.Canvas` (``c.u``: B×K uniforms,
one row per image, drawn from the image's own generator; ``c.pts``: the per-image landmarks)
and returns a field ``f`` (B×H×W, low = covered first). :func:`threshold` turns fields into
masks of exactly ``round(ratio·H·W)`` pixels; the painters then colour the covered pixels, using
``f`` relative to the threshold ``c.thr`` for edges and shading. :data:`OCCLUDERS` (at the end)
declares each occluder with its styles.

Columns of ``u``: 0-2 landmark jitter (see :func:`landmarks`), 3.. type-specific.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from occlufer.occlusion import textures
from occlufer.occlusion.occluder import FILLS, Canvas, Field, Occluder

BIG = 1e6  # "never covered first" (finite, so ranks stay well defined)
N_UNIFORMS = 40
_ANGLES = 256  # radial profile resolution


#: the points an image may give for itself (``given`` of :func:`landmarks`), in this order
POINTS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth")
MIN_EYE_GAP = 0.05  # given eyes closer than this (or swapped): the canonical eyes are used


@dataclass(frozen=True)
class Landmarks:
    """Canonical points of an aligned crop, fractions of the side (see ``LandmarksCfg``)."""

    left_eye: tuple[float, float] = (0.32, 0.38)
    right_eye: tuple[float, float] = (0.68, 0.38)
    nose: tuple[float, float] = (0.5, 0.57)
    mouth: tuple[float, float] = (0.5, 0.75)
    brows: float = 0.29
    face_width: float = 0.74
    jitter: float = 0.03


@dataclass
class Points:
    """Per-image landmarks after jitter: each attribute is a B×1×1 array."""

    lex: np.ndarray
    rex: np.ndarray
    ey: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    mx: np.ndarray
    my: np.ndarray
    by: np.ndarray
    fw: np.ndarray


def landmarks(lm: Landmarks, u: np.ndarray, given: np.ndarray | None = None) -> Points:
    """Shift all points by up to ``jitter`` and scale them about the centre by 1 ± jitter.

    ``given`` (B×4×2, :data:`POINTS` order, ``[x, y]`` fractions of the side, NaN = not given):
    an image's own points, e.g. a photo's detected keypoints, in place of the canonical ones
    before the jitter. The eyes count as a pair (both given, left of right by at least
    :data:`MIN_EYE_GAP`); the brows move with them and the face width scales with their
    distance. A row that gives no point comes out exactly as without ``given``. Its shape is
    checked where points enter the engine (:func:`~occlufer.occlusion.engine.occlude_batch`).
    """
    j = lm.jitter
    dx, dy = (j * (2 * u[:, 0] - 1))[:, None, None], (j * (2 * u[:, 1] - 1))[:, None, None]
    s = (1 + j * (2 * u[:, 2] - 1))[:, None, None]

    def px(v: float | np.ndarray) -> np.ndarray:
        return 0.5 + s * (v - 0.5) + dx

    def py(v: float | np.ndarray) -> np.ndarray:
        return 0.5 + s * (v - 0.5) + dy

    ey = (lm.left_eye[1] + lm.right_eye[1]) / 2
    pts = [px(lm.left_eye[0]), px(lm.right_eye[0]), py(ey), px(lm.nose[0]), py(lm.nose[1]),
           px(lm.mouth[0]), py(lm.mouth[1]), py(lm.brows), s * lm.face_width]
    own = None if given is None else _own_points(lm, np.asarray(given, dtype=np.float64))
    if own is not None:
        rows, (lex, rex, eye_y, nx, ny, mx, my, by, width) = own
        mine = [px(lex), px(rex), py(eye_y), px(nx), py(ny), px(mx), py(my), py(by),
                s * lm.face_width * width]
        pts = [np.where(rows, m, p) for m, p in zip(mine, pts, strict=True)]
    return Points(*(p.astype(np.float32) for p in pts))


def _own_points(lm: Landmarks, given: np.ndarray,
                ) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """(rows that give a point, B×1×1 each; their points before the jitter, B×1×1 each: eye
    x left and right, eye y, nose x y, mouth x y, brows y, face width relative to the
    canonical), canonical where a row gives none; None when no row gives any."""
    has = np.isfinite(given).all(axis=2)
    if not has.any():
        return None
    canonical = np.array([lm.left_eye, lm.right_eye, lm.nose, lm.mouth], dtype=np.float64)
    v = np.where(has[..., None], given, canonical)
    eyes = has[:, 0] & has[:, 1] & (v[:, 1, 0] - v[:, 0, 0] >= MIN_EYE_GAP)
    v[:, :2] = np.where(eyes[:, None, None], v[:, :2], canonical[:2])
    eye_y = (v[:, 0, 1] + v[:, 1, 1]) / 2
    span = lm.right_eye[0] - lm.left_eye[0]
    width = (v[:, 1, 0] - v[:, 0, 0]) / span if span > 0 else np.ones(len(v))
    by = lm.brows + (eye_y - (lm.left_eye[1] + lm.right_eye[1]) / 2)
    cols = [v[:, 0, 0], v[:, 1, 0], eye_y, v[:, 2, 0], v[:, 2, 1], v[:, 3, 0], v[:, 3, 1], by,
            width]
    return has.any(axis=1)[:, None, None], [c[:, None, None] for c in cols]


@lru_cache(maxsize=8)
def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres as fractions of the side (1×H×W float32 x and y).

    Fields are float32: twice as fast as float64 on these cache-sized batches.
    """
    y, x = np.mgrid[0:h, 0:w]
    return ((x[None] + 0.5) / w).astype(np.float32), ((y[None] + 0.5) / h).astype(np.float32)


def threshold(f: np.ndarray, ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the ``round(ratio·H·W)`` lowest pixels of each field, and each threshold.

    Ranking is in float64 with a tie-break of 1e-10 per pixel index, so pixels with equal
    field values are taken in index order and every mask has exactly k pixels.
    """
    b, h, w = f.shape
    flat = (f.astype(np.float64) + _tie(h, w)).reshape(b, -1)
    k = np.clip(np.rint(np.asarray(ratios) * h * w).astype(np.int64), 0, h * w)
    kk = np.maximum(k - 1, 0)
    if b and (k == k[0]).all():  # one ratio for the batch: a partition is enough
        ordered = np.partition(flat, int(kk[0]), axis=1)
    else:
        ordered = np.sort(flat, axis=1)
    thr = np.where(k > 0, ordered[np.arange(b), kk], flat.min(axis=1) - 1.0)
    return (flat <= thr[:, None]).reshape(b, h, w), thr


@lru_cache(maxsize=8)
def _tie(h: int, w: int) -> np.ndarray:
    return (np.arange(h * w, dtype=np.float64) * 1e-10).reshape(1, h, w)


def _c(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return (x if x.dtype == bool else x.astype(np.float32))[:, None, None]


def _pick(flag: np.ndarray, first: Callable[[], np.ndarray],
          second: Callable[[], np.ndarray]) -> np.ndarray:
    """``where(flag, first(), second())`` per image, computing only the branches in use.

    The engine renders chunks of one style, so usually only one branch is computed.
    """
    flag = np.asarray(flag, dtype=bool)
    if flag.all():
        return np.asarray(first())
    if not flag.any():
        return np.asarray(second())
    return np.where(_c(flag), first(), second())


def _lerp(a: float, b: float, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t


def _rotate(x: np.ndarray, y: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _gauge(x: np.ndarray, y: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """``r / R(θ)`` for radial profiles ``R`` (B×A): the star-shaped set's own scale."""
    r = np.hypot(x, y)
    idx = (np.arctan2(y, x) * np.float32(_ANGLES / (2 * np.pi))).astype(np.int32) % _ANGLES
    return r / np.take_along_axis(profiles, idx.reshape(len(profiles), -1), axis=1).reshape(
        r.shape)


# --- block -------------------------------------------------------------------------------------

def block_field(c: Canvas) -> Field:
    """A rectangle of log-uniform aspect (width/height) grown about a random centre."""
    u, x, y, aspect = c.u, c.x, c.y, c.aspect
    cx, cy = _c(_lerp(0.15, 0.85, u[:, 3])), _c(_lerp(0.15, 0.85, u[:, 4]))
    a = _c(np.exp(_lerp(math.log(aspect[0]), math.log(aspect[1]), u[:, 5])))
    return Field(np.maximum(np.abs(x - cx) / np.sqrt(a), np.abs(y - cy) * np.sqrt(a)))


# --- sunglasses / eye band ---------------------------------------------------------------------

def sunglasses_field(c: Canvas) -> Field:
    """Two superellipse lenses on the eyes with a bridge and temples (u3 < 0.75), else a band.

    The field's ``extra``: which pixels belong to a lens (vs. frame parts).
    """
    u, pts, x, y, shades = c.u, c.pts, c.x, c.y, c.first
    xm = (pts.lex + pts.rex) / 2
    half = (pts.rex - pts.lex) / 2
    tilt = _c((u[:, 4] - 0.5) * 0.12)
    dx, dy = _rotate(x - xm, y - pts.ey - 0.01, tilt)
    rx = half * _c(_lerp(0.62, 0.82, u[:, 5]))
    ry = rx * _c(_lerp(0.6, 0.85, u[:, 6]))
    lx = np.abs(np.abs(dx) - half)  # distance to the nearer lens centre, in x
    a2, b2 = np.square(lx / rx), np.square(dy / ry)
    square = _c(u[:, 7] < 0.5)  # rounded-square lenses (superellipse, exponent 4) or ellipses
    lens = np.where(square, np.sqrt(np.sqrt(a2 * a2 + b2 * b2)), np.sqrt(a2 + b2))
    bridge = np.maximum(np.abs(dx) / half, np.abs(dy + 0.35 * ry) / (0.16 * ry))
    temple = np.where(np.abs(dx) > half, np.abs(dy + 0.25 * ry) / (0.14 * ry), BIG)
    glasses = np.minimum(lens, np.minimum(bridge, temple))
    # eye band: a slightly tilted strip with a gentle wave at its edges
    wave = 0.008 * np.sin(2 * np.pi * (x * _c(_lerp(1.0, 2.5, u[:, 8])) + _c(u[:, 9])))
    band = np.abs(dy) + wave
    return Field(np.where(_c(shades), glasses, band), (lens <= glasses) & _c(shades))


def sunglasses_paint(c: Canvas) -> np.ndarray:
    """Tinted lenses with a glare streak in a frame, or a fabric band."""
    u, f, thr, is_lens, x, y, pts = c.u, c.field.f, c.thr, c.field.extra, c.x, c.y, c.pts
    h, w = c.size

    def glasses() -> np.ndarray:
        rel = f / _c(np.maximum(thr, 1e-9))  # 0 at the centre, 1 at the edge
        tint = _c(_lerp(12, 70, u[:, 10] ** 1.5))
        frame = _c(_lerp(5, 45, u[:, 11]))
        # lens: darker at the top, lighter below, with a diagonal glare streak
        grad = (y - pts.ey) * 220 * _c(_lerp(0.3, 1.0, u[:, 12]))
        streak = np.abs((x - pts.lex) + (y - pts.ey) - 0.05 * _c(u[:, 13])) % 0.36
        glare = np.where((streak < 0.025) & (rel < 0.75), _c(_lerp(25, 70, u[:, 14])), 0.0)
        lens = tint + grad + glare
        return np.where(is_lens & (rel < _c(_lerp(0.78, 0.9, u[:, 15]))), lens, frame)

    def band() -> np.ndarray:
        tone = _c(np.where(u[:, 16] < 0.6, _lerp(10, 60, u[:, 17]), _lerp(60, 220, u[:, 17])))
        return tone + 10 * np.stack([textures.tile("fabric", h, w, *u[i, 18:21])
                                     for i in range(len(u))])

    return _pick(c.first, glasses, band)


# --- mask / scarf ------------------------------------------------------------------------------

#: the mask family: the two first styles as they were first drawn (a surgical mask over the
#: nose tip, a scarf), then four that vary shape, height and nose coverage, fabric and straps
MASK_STYLES: tuple[str, ...] = ("surgical", "scarf", "respirator", "cloth", "bandana", "gaiter")
MASK_WEIGHTS: tuple[float, ...] = (0.3, 0.2, 0.15, 0.15, 0.1, 0.1)
_CLASSIC = 2  # styles before this index: the first mask styles, drawn exactly as before
_STRAP = 0.022  # half width of an ear loop (fraction of the side: about 1 px at 48 px)


def mask_field(c: Canvas) -> Field:
    """One of :data:`MASK_STYLES` over nose, mouth and chin.

    The field's ``extra``: B×2×H×W, the top edge ``top(x)`` and which pixels are ear loops.
    """
    classic = c.style < _CLASSIC
    if classic.all() or not classic.any():
        return Field(*(_classic_mask(c) if classic.all() else _varied_mask(c)))
    (f1, e1), (f2, e2) = _classic_mask(c), _varied_mask(c)
    return Field(np.where(_c(classic), f1, f2), np.where(classic[:, None, None, None], e1, e2))


def _classic_mask(c: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Surgical mask: curved top over the nose tip; scarf: wavy, full width."""
    u, pts, x, y, surgical = c.u, c.pts, c.x, c.y, c.first
    cx = pts.nx + _c((u[:, 4] - 0.5) * 0.04)
    dxn = x - cx
    top_s = (pts.ny + 0.02 + _c(_lerp(0.5, 1.1, u[:, 5])) * dxn**2
             - 0.03 * np.exp(-((dxn / 0.09) ** 2)))
    side_s = 3.0 * (np.abs(dxn) - pts.fw * 0.5 * _c(_lerp(0.8, 0.95, u[:, 6])))
    side_s = np.maximum(side_s, 1.5 * (np.hypot(dxn, 1.5 * (y - pts.my)) - 0.33))  # round chin
    wave = 0.015 * np.sin(2 * np.pi * (x * _c(_lerp(1.0, 2.0, u[:, 7])) + _c(u[:, 8])))
    top_c = pts.ny + 0.04 + _c((u[:, 9] - 0.5) * 0.12) * dxn + wave
    side_c = 0.4 * (np.abs(dxn) - 0.5)
    top = np.where(_c(surgical), top_s, top_c)
    f = np.maximum(top - y, np.where(_c(surgical), side_s, side_c))
    return f, np.stack([top, np.zeros_like(top)], axis=1)


def _segment(x: np.ndarray, y: np.ndarray, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray,
             by: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the segment from ``(ax, ay)`` to ``(bx, by)`` (B×1×1 each)."""
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(x - ax - t * dx, y - ay - t * dy)


def _varied_centre(c: Canvas) -> np.ndarray:
    """The varied masks' centre line: the nose, shifted by up to 2.5% of the side."""
    return c.pts.nx + _c((c.u[:, 19] - 0.5) * 0.05)


def _varied_mask(c: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Respirator, cloth mask, bandana or neck gaiter, of varied width and chin line.

    The covered area is the target ratio, so a narrow mask or a low chin line rises over the
    nose bridge and a wide one stays under the nose: the nose coverage varies with them.
    Respirators and cloth masks have ear loops (three in four) up towards the ears.
    """
    u, pts, x, y, style = c.u, c.pts, c.x, c.y, c.style
    kind = _c(style)
    cx = _varied_centre(c)
    dxn = x - cx
    adx = np.abs(dxn)
    hw = pts.fw * 0.5 * _c(_lerp(0.72, 1.0, u[:, 20]))  # half width
    hw = np.where(kind == 4, 1.2 * hw, np.where(kind == 5, 1.25 * hw, hw))  # bandana, gaiter
    chin = pts.my + _c(_lerp(0.07, 0.2, u[:, 21]))  # the lower edge under the chin
    k1, k2 = _c(u[:, 22]), _c(u[:, 23])
    tilt = _c((u[:, 24] - 0.5) * 0.12) * dxn
    roll = 0.012 * np.sin(2 * np.pi * (x * _lerp(1.0, 2.0, k2) + _c(u[:, 25])))
    top = np.select(
        [kind == 2, kind == 3, kind == 4],
        [pts.ny + _lerp(0.25, 0.6, k1) * adx,  # respirator: folded to a peak on the nose
         pts.ny + _lerp(0.3, 0.9, k1) * dxn**2 - 0.03 * np.exp(-((dxn / 0.08) ** 2)),  # contour
         pts.ny + tilt],  # bandana: a straight folded edge
        pts.ny + tilt + roll)  # gaiter: a rolled edge
    bottom = np.select(
        [kind == 4, kind == 5],
        [chin + 0.12 - _lerp(0.5, 1.1, k2) * adx,  # bandana: a point below the chin
         chin + 0.05 + 0 * top],  # gaiter: straight along the jaw
        chin - _lerp(0.3, 1.0, k2) * dxn**2)  # respirator, cloth: rounded under the chin
    f = np.maximum(np.maximum(top - y, 4.0 * (adx - hw)), 4.0 * (y - bottom)).astype(np.float32)
    # ear loops: from the mask's sides up towards the ears; covered together once the mask
    # reaches their anchor (so they count towards the ratio and the ratio stays exact)
    b, h, w = f.shape
    anchor_y = pts.ny + _c(_lerp(0.0, 0.08, u[:, 28]))
    ear_y = pts.ey + _c(_lerp(-0.02, 0.08, u[:, 27]))
    strap = np.zeros(f.shape, dtype=bool)
    level = np.full((b, 1, 1), -BIG, dtype=np.float32)
    rows = np.arange(b)
    for side in (-1.0, 1.0):
        ax = cx + side * 0.92 * hw
        strap |= _segment(x, y, ax, anchor_y, cx + side * (hw + 0.25), ear_y) < _STRAP
        ix = np.clip((ax[:, 0, 0] * w).astype(int), 0, w - 1)
        iy = np.clip((anchor_y[:, 0, 0] * h).astype(int), 0, h - 1)
        level = np.maximum(level, f[rows, iy, ix][:, None, None])
    strap &= _c((u[:, 26] < 0.75) & np.isin(style, (2, 3))) & (f > level)
    f = np.where(strap, level, f)
    return f, np.stack([top.astype(np.float32), strap.astype(np.float32)], axis=1)


def mask_paint(c: Canvas) -> np.ndarray:
    """A shaded, pleated surgical mask, a knit / striped / fabric scarf, or a varied mask."""
    return _pick(c.style < _CLASSIC, lambda: _classic_paint(c), lambda: _varied_paint(c))


def _classic_paint(c: Canvas) -> np.ndarray:
    u, thr, top, x, y, pts = c.u, c.thr, c.field.extra[:, 0], c.x, c.y, c.pts
    h, w = c.size
    depth = y - (top - _c(thr))  # distance below the top edge

    def surgical_paint() -> np.ndarray:
        light = u[:, 10] < 0.75
        tone_s = _c(np.where(light, _lerp(165, 245, u[:, 11]), _lerp(25, 80, u[:, 11])))
        shade = 1 - 0.3 * ((x - pts.nx) / (0.5 * pts.fw)) ** 2
        pleat = np.mod(depth, _c(_lerp(0.075, 0.1, u[:, 12])))
        pleats = np.where((pleat < 0.016) & (depth > 0.04), -22.0, 0.0)
        edge = np.where(depth < 0.018, -15.0, 0.0)
        return tone_s * shade + pleats + edge

    def scarf_paint() -> np.ndarray:
        kinds = ("knit", "stripes", "fabric")
        kind = [kinds[min(int(v * 3), 2)] for v in u[:, 13]]
        tex = np.stack([textures.tile(kind[i], h, w, *u[i, 14:17]) for i in range(len(u))])
        tone_c = _c(_lerp(30, 220, u[:, 17]))
        amp = _c(_lerp(12, 35, u[:, 18]))
        return tone_c + amp * tex + np.where(depth < 0.02, -18.0, 0.0)

    return _pick(c.first, surgical_paint, scarf_paint)


def _varied_paint(c: Canvas) -> np.ndarray:
    """Light or dark fabric, plain or patterned, with the style's folds, seam or hem."""
    u, thr, x, y, pts = c.u, c.thr, c.x, c.y, c.pts
    top, strap = c.field.extra[:, 0], c.field.extra[:, 1] > 0.5
    kind = _c(c.style)
    h, w = c.size
    depth = y - (top - _c(thr))
    dxn = x - _varied_centre(c)
    tone = _c(np.where(u[:, 29] < 0.55, _lerp(170, 250, u[:, 33]), _lerp(20, 160, u[:, 33])))
    shade = 1 - _c(_lerp(0.1, 0.35, u[:, 31])) * (dxn / (0.5 * pts.fw)) ** 2
    kinds = ("fabric", "stripes", "knit")
    tex = np.stack([textures.tile(kinds[min(int(u[i, 34] * 3), 2)], h, w, *u[i, 35:38])
                    for i in range(len(u))])
    amp = np.select([kind == 2, kind == 4], [np.full_like(kind, 3.0, dtype=np.float32),
                                             _c(_lerp(25, 45, u[:, 32]))],
                    _c(_lerp(0, 35, u[:, 32])))
    period = _c(_lerp(0.07, 0.12, u[:, 38]))
    marks = np.select(
        [kind == 2, kind == 3, kind == 4],
        [np.where(np.abs(dxn) < 0.012, -20.0, 0.0),  # the respirator's vertical fold
         np.where(np.abs(dxn) < 0.01, -14.0, 0.0),  # the cloth mask's seam
         np.where(np.mod(depth + 0.5 * np.abs(dxn), period) < 0.02, -12.0, 0.0)],  # folds
        10.0 * np.sin(2 * np.pi * depth / period))  # the gaiter's soft rings
    hem = np.where(depth < 0.02, np.where(kind == 5, 12.0, -15.0), 0.0)
    loop = _c(np.where(u[:, 30] < 0.5, _lerp(215, 250, u[:, 39]), _lerp(15, 60, u[:, 39])))
    return np.where(strap, loop, tone * shade + amp * tex + marks + hem)


# --- hand --------------------------------------------------------------------------------------

def _bar(theta: np.ndarray, direction: float, half_width: float, length: float) -> np.ndarray:
    """Radial profile of a bar from the origin along ``direction``: constant width, flat end.

    (An angular sector would widen with the distance: a wedge, not a finger or a forearm.)
    """
    d = np.angle(np.exp(1j * (theta - direction)))
    along, across = np.cos(d), np.abs(np.sin(d))
    side = half_width / np.maximum(across, 1e-9)
    end = length / np.maximum(along, 1e-9)
    return np.where(along > 0, np.minimum(side, end), 0.0)


@lru_cache(maxsize=1)
def hand_profiles() -> np.ndarray:
    """Radial profiles of a few hand silhouettes (fingers up, palm at the origin, wrist below).

    Eight variants: fingers together or spread, thumb left or right, long or short fingers.
    Fingers, thumb and forearm are bars of constant width; the palm is an ellipse.
    """
    theta = (np.arange(_ANGLES) + 0.5) * 2 * np.pi / _ANGLES  # y down: -pi/2 is "up"
    out = []
    for spread in (0.17, 0.25):
        for side in (-1, 1):
            for length in (0.9, 1.1):
                r = 1 / np.sqrt((np.cos(theta) / 0.48) ** 2 + (np.sin(theta) / 0.55) ** 2)
                for k, rel_len in enumerate((0.88, 1.0, 0.96, 0.78)):
                    centre = -np.pi / 2 + (k - 1.5) * spread
                    r = np.maximum(r, _bar(theta, centre, 0.095, 1.35 * length * rel_len))
                r = np.maximum(r, _bar(theta, -np.pi / 2 + side * 1.2, 0.12, 0.95))  # thumb
                r = np.maximum(r, _bar(theta, np.pi / 2, 0.36, 3.0))  # forearm to the edge
                out.append(r)
    return np.stack(out).astype(np.float32)


def hand_field(c: Canvas) -> Field:
    """A hand over the mouth, nose, an eye or a cheek, coming from below or from a side."""
    u, pts, x, y = c.u, c.pts, c.x, c.y
    where = u[:, 3]
    ax = np.select([where < 0.4, where < 0.55, where < 0.7, where < 0.85],
                   [pts.mx[:, 0, 0], pts.nx[:, 0, 0], pts.lex[:, 0, 0], pts.rex[:, 0, 0]],
                   pts.nx[:, 0, 0] + np.where(u[:, 4] < 0.5, -1, 1) * 0.22)
    ay = np.select([where < 0.4, where < 0.55, where < 0.85],
                   [pts.my[:, 0, 0], pts.ny[:, 0, 0], pts.ey[:, 0, 0]], pts.ny[:, 0, 0] + 0.06)
    cx = _c(ax + (u[:, 5] - 0.5) * 0.08)
    cy = _c(ay + (u[:, 6] - 0.5) * 0.08 + 0.04)
    from_side = u[:, 7] < 0.25
    angle = np.where(from_side, np.where(u[:, 8] < 0.5, -1, 1) * np.pi / 2, 0.0)
    angle = _c(angle + (u[:, 9] - 0.5) * 0.9)
    lx, ly = _rotate(x - cx, y - cy, angle)
    stretch = _c(_lerp(0.85, 1.15, u[:, 10]))
    variant = np.minimum((u[:, 11] * 8).astype(int), 7)
    return Field(_gauge(lx * stretch, ly / stretch, hand_profiles()[variant]))


def hand_paint(c: Canvas) -> np.ndarray:
    """Skin (a tone near the face's own cheeks, lit from the centre) or a gloved texture."""
    u, images = c.u, c.images
    h, w = c.size
    rel = c.field.f / _c(np.maximum(c.thr, 1e-9))

    def skin_paint() -> np.ndarray:
        cheeks = images[:, int(0.55 * h):int(0.7 * h), int(0.2 * w):int(0.8 * w)]
        own = np.median(cheeks.reshape(len(images), -1), axis=1)
        tone = np.where(u[:, 13] < 0.7, own + (u[:, 14] - 0.5) * 40, _lerp(70, 210, u[:, 14]))
        tone = _c(np.clip(tone, 45, 225))
        mottle = np.stack([textures.tile("mottle", h, w, *u[i, 15:18]) for i in range(len(u))])
        return tone * (1.12 - 0.3 * rel**2) + 6 * mottle + np.where(rel > 0.93, -25.0, 0.0)

    def glove() -> np.ndarray:
        kinds = ("knit", "fabric", "stripes")
        tex = np.stack([textures.tile(kinds[min(int(u[i, 18] * 3), 2)], h, w, *u[i, 19:22])
                        for i in range(len(u))])
        return _c(_lerp(20, 230, u[:, 22])) + _c(_lerp(10, 30, u[:, 23])) * tex - 20 * rel**2

    return _pick(c.first, skin_paint, glove)


# --- hair / hat --------------------------------------------------------------------------------

def hair_field(c: Canvas) -> Field:
    """A fringe with strands and longer sides (u3 < 0.65), else a hat with a brim."""
    u, pts, x, y, hair = c.u, c.pts, c.x, c.y, c.first
    side = np.abs(2 * (x - pts.nx))
    n = _c(_lerp(5, 11, u[:, 4]))
    scallop = 0.05 * np.abs(np.sin(np.pi * (x * n + _c(u[:, 5])))) ** 0.7
    part = _c((u[:, 6] - 0.5) * 0.06) * (x - 0.5)
    edge_h = (pts.by - 0.04 + _c(_lerp(0.2, 0.6, u[:, 7])) * side**3 + scallop + part)
    edge_t = (pts.by - 0.03 + _c(_lerp(-0.06, 0.06, u[:, 8])) * (x - 0.5)
              + _c(_lerp(0.0, 0.15, u[:, 9])) * (x - 0.5) ** 2)
    return Field(y - np.where(_c(hair), edge_h, edge_t))


def hair_paint(c: Canvas) -> np.ndarray:
    """Strands of one tone, or a fabric hat with a brim."""
    u = c.u
    h, w = c.size
    depth = _c(c.thr) - c.field.f  # distance above the lower edge

    def hair_paint() -> np.ndarray:
        dark = u[:, 10] < 0.7
        tone_h = _c(np.where(dark, _lerp(10, 70, u[:, 11]), _lerp(90, 200, u[:, 11])))
        strands = np.stack([textures.tile("strands", h, w, *u[i, 12:15])
                            for i in range(len(u))])
        return (tone_h + _c(_lerp(18, 35, u[:, 15])) * strands
                + np.where(depth < 0.02, -8.0, 0))

    def hat_paint() -> np.ndarray:
        tone_t = _c(_lerp(15, 235, u[:, 16]))
        fabric = np.stack([textures.tile("fabric", h, w, *u[i, 17:20]) for i in range(len(u))])
        brim = np.where(depth < _c(_lerp(0.05, 0.09, u[:, 20])), _c(_lerp(-45, 30, u[:, 21])),
                        0.0)
        return tone_t + 7 * fabric + brim + np.where(depth < 0.012, -25.0, 0.0)

    return _pick(c.first, hair_paint, hat_paint)


# --- polygon -----------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def polygon_profiles(count: int = 512) -> np.ndarray:
    """Radial profiles of ``count`` random star-shaped polygons (3-8 vertices), drawn once."""
    rng = np.random.default_rng(7)
    theta = (np.arange(_ANGLES) + 0.5) * 2 * np.pi / _ANGLES
    profiles = np.empty((count, _ANGLES))
    for i in range(count):
        n = int(rng.integers(3, 9))
        ang = np.sort(rng.random(n)) * 2 * np.pi
        rad = _lerp(0.45, 1.0, rng.random(n))
        # straight edges between consecutive vertices, in polar form
        a0, r0 = ang, rad
        a1, r1 = np.roll(ang, -1), np.roll(rad, -1)
        a1 = np.where(a1 <= a0, a1 + 2 * np.pi, a1)
        t = np.mod(theta[None, :] - a0[:, None], 2 * np.pi)
        span = (a1 - a0)[:, None]
        inside = t <= span
        p0 = np.stack([r0 * np.cos(a0), r0 * np.sin(a0)], 1)
        p1 = np.stack([r1 * np.cos(a1), r1 * np.sin(a1)], 1)
        d = p1 - p0
        dirx, diry = np.cos(theta)[None], np.sin(theta)[None]
        den = dirx * d[:, 1:2] - diry * d[:, 0:1]
        num = p0[:, 0:1] * d[:, 1:2] - p0[:, 1:2] * d[:, 0:1]
        r = np.where(inside & (np.abs(den) > 1e-12), num / np.where(den == 0, 1, den), np.inf)
        profiles[i] = np.min(np.where(r > 0, r, np.inf), axis=0)
    return np.where(np.isfinite(profiles), profiles, 0.45).astype(np.float32)


def polygon_field(c: Canvas) -> Field:
    """A random star-shaped polygon (3-8 vertices, from a bank) about a random centre."""
    u, x, y = c.u, c.x, c.y
    bank = polygon_profiles()
    profiles = bank[np.minimum((u[:, 3] * len(bank)).astype(int), len(bank) - 1)]
    stretch = _c(_lerp(0.7, 1.4, u[:, 4]))
    cx, cy = _c(_lerp(0.2, 0.8, u[:, 20])), _c(_lerp(0.2, 0.8, u[:, 21]))
    lx, ly = _rotate(x - cx, y - cy, _c(u[:, 22] * 2 * np.pi))
    return Field(_gauge(lx * stretch, ly / stretch, profiles))


# --- strokes -----------------------------------------------------------------------------------

def strokes_field(c: Canvas) -> Field:
    """One to three thick quadratic strokes across the face (distance to their centre lines)."""
    u, x, y = c.u, c.x, c.y
    b = len(u)
    f = np.full((b, *x.shape[1:]), BIG, dtype=np.float32)
    n = 2 + (u[:, 3] < 0.5).astype(int)
    s = np.linspace(0, 1, 7)[:, None]
    for k in range(int(n.max())):
        cols = u[:, 4 + 6 * k:10 + 6 * k]
        p0, p1, p2 = cols[:, 0:2], cols[:, 2:4] * 1.2 - 0.1, cols[:, 4:6]
        curve = ((1 - s) ** 2)[None] * p0[:, None] + (2 * s * (1 - s))[None] * p1[:, None] \
            + (s**2)[None] * p2[:, None]  # B×9×2
        active = _c(n > k)
        for j in range(6):
            a, c = curve[:, j], curve[:, j + 1]
            ax, ay = _c(a[:, 0]), _c(a[:, 1])
            dx, dy = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
            inv = _c(1.0 / (dx * dx + dy * dy + 1e-12))
            dx, dy = _c(dx), _c(dy)
            px, py = x - ax, y - ay
            t = np.clip((px * dx + py * dy) * inv, 0, 1)
            d2 = np.square(px - t * dx) + np.square(py - t * dy)  # squared: same ranks
            f = np.where(active, np.minimum(f, d2), f)
    return Field(f)


def strokes_paint(c: Canvas) -> np.ndarray:
    """One marker colour per image, light grain."""
    u = c.u
    tone = np.where(u[:, 24] < 0.6, u[:, 25] * 60, 150 + u[:, 25] * 105)
    return tone[:, None, None] + 6 * (c.y - 0.5)


# --- plain fills (block, polygon) --------------------------------------------------------------

def _texture(c: Canvas, i: int) -> np.ndarray:
    """A patch of *another* face of the pool, shifted by a random offset.

    The face is picked by rank ``j != own`` in ``c.order`` (pool positions sorted by image id,
    when given), so the choice does not depend on the order of the store.
    """
    h, w = c.size
    pool, own, order, u = c.pool, int(c.own[i]), c.order, c.u[i]
    if pool is None or len(pool) < 2:
        return c.rngs[i].integers(0, 256, size=(h, w), dtype=np.uint8)
    n = len(pool)
    j = int(u[30] * (n - 1))
    if 0 <= own <= j:
        j += 1
    j = min(j, n - 1)
    pos = int(order[j]) if order is not None else j
    dy, dx = int((u[31] - 0.5) * h * 0.6), int((u[32] - 0.5) * w * 0.6)
    return np.roll(np.asarray(pool[pos]), (dy, dx), axis=(0, 1))


def fill_paint(c: Canvas) -> np.ndarray:
    """Per-image paint for the plain fills: gray level, uniform noise, texture from a face."""
    out = np.empty(c.images.shape, dtype=np.float64)
    for i, (fill, rng) in enumerate(zip(c.fills, c.rngs, strict=True)):
        if fill == "gray":
            out[i] = int(c.u[i, 29] * 256)
        elif fill == "noise":
            out[i] = rng.integers(0, 256, size=c.images.shape[1:], dtype=np.uint8)
        else:
            out[i] = _texture(c, i)
    return out


#: the geometric occluders, in the order previews show them (see :mod:`.registry`)
OCCLUDERS: tuple[Occluder, ...] = (
    Occluder("block", FILLS, "exact", block_field, fill_paint),
    Occluder("sunglasses", ("shades", "band"), "exact", sunglasses_field, sunglasses_paint,
             style_draw=(3, (0.75, 0.25))),
    Occluder("mask", MASK_STYLES, "exact", mask_field, mask_paint,
             style_draw=(3, MASK_WEIGHTS)),
    Occluder("hand", ("skin", "glove"), "exact", hand_field, hand_paint,
             style_draw=(12, (0.75, 0.25))),
    Occluder("hair", ("hair", "hat"), "exact", hair_field, hair_paint,
             style_draw=(3, (0.65, 0.35))),
    Occluder("polygon", FILLS, "exact", polygon_field, fill_paint),
    Occluder("strokes", ("marker",), "exact", strokes_field, strokes_paint),
)
