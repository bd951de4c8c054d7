"""The geometric occluders: level fields and painters, vectorised over a chunk of one type.

A level field maps a :class:`~.occluder.Canvas` to ``f`` (B×H×W, low = covered first); painters
read ``f`` against ``c.thr``. Not cv2 drawings: a rasterised outline cannot give the exact
``round(ratio·H·W)`` lowest pixels of a continuous field."""

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from occlufer.occlusion.occluder import FILLS, Canvas, Field, Occluder, Points

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


def landmarks(lm: Landmarks, u: np.ndarray, given: np.ndarray | None = None) -> Points:
    """Shift all points by up to ``jitter``, scale them about the centre by 1 ± jitter.

    ``given`` (B×4×2, :data:`POINTS`, ``[x, y]``, NaN = not given): an image's own points. The
    eyes count as a pair (both, :data:`MIN_EYE_GAP` apart); brows and face width follow them."""
    j = lm.jitter
    dx, dy = (j * (2 * u[:, 0] - 1))[:, None, None], (j * (2 * u[:, 1] - 1))[:, None, None]
    s = (1 + j * (2 * u[:, 2] - 1))[:, None, None]
    canonical = np.array([lm.left_eye, lm.right_eye, lm.nose, lm.mouth], dtype=np.float64)
    given = np.full((len(u), 4, 2), np.nan) if given is None else np.asarray(given, np.float64)
    has = np.isfinite(given).all(axis=2)
    v = np.where(has[..., None], given, canonical)
    eyes = has[:, 0] & has[:, 1] & (v[:, 1, 0] - v[:, 0, 0] >= MIN_EYE_GAP)
    v[:, :2] = np.where(eyes[:, None, None], v[:, :2], canonical[:2])
    eye_y = (v[:, 0, 1] + v[:, 1, 1]) / 2
    span = lm.right_eye[0] - lm.left_eye[0]
    width = (v[:, 1, 0] - v[:, 0, 0]) / span if span > 0 else np.ones(len(v))
    brows = lm.brows + (eye_y - (lm.left_eye[1] + lm.right_eye[1]) / 2)
    raw = (*v[:, :2, 0].T, eye_y, *v[:, 2:].reshape(-1, 4).T, brows)  # lex rex ey nx ny mx my by
    pts = [0.5 + s * (p[:, None, None] - 0.5) + (dx if a == "x" else dy)
           for p, a in zip(raw, "xxyxyxyy", strict=True)]
    return Points(*(p.astype(np.float32) for p in (*pts, s * lm.face_width * width[:, None, None])))


@lru_cache(maxsize=8)
def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres as fractions of the side (1×H×W float32 x and y: twice as fast as float64)."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x[None] + 0.5) / w).astype(np.float32), ((y[None] + 0.5) / h).astype(np.float32)


def threshold(f: np.ndarray, ratios: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of each field's ``round(ratio·H·W)`` lowest pixels (ties: pixel order), thresholds."""
    b, h, w = f.shape
    flat = f.reshape(b, -1).astype(np.float64) + np.arange(h * w, dtype=np.float64) * 1e-10
    k = np.clip(np.rint(np.asarray(ratios) * h * w).astype(np.int64), 0, h * w)
    kk = np.maximum(k - 1, 0)
    one_k = b and (k == k[0]).all()  # one ratio for the batch: a partition is enough
    ordered = np.partition(flat, int(kk[0]), axis=1) if one_k else np.sort(flat, axis=1)
    thr = np.where(k > 0, ordered[np.arange(b), kk], flat.min(axis=1) - 1.0)
    return (flat <= thr[:, None]).reshape(b, h, w), thr


def _c(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return (x if x.dtype == bool else x.astype(np.float32))[:, None, None]


def _pick(flag: np.ndarray, first: Callable, second: Callable) -> np.ndarray | tuple:
    """``where(flag, first(), second())`` per image (tuples too), computing the branches in use."""
    flag = np.asarray(flag, dtype=bool)
    if flag.all() or not flag.any():
        return first() if flag.all() else second()
    a, b = first(), second()
    if isinstance(a, tuple):
        return tuple(np.where(flag.reshape(-1, *[1] * (p.ndim - 1)), p, q)
                     for p, q in zip(a, b, strict=True))
    return np.where(_c(flag), a, b)


def _lerp(a: float, b: float, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t


def _rotate(x: np.ndarray, y: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(angle), np.sin(angle)
    return c * x + s * y, -s * x + c * y


def _blur(x: np.ndarray, passes: int, axes: tuple[int, ...]) -> np.ndarray:
    for _ in range(passes):
        for a in axes:
            x = (x + np.roll(x, 1, a) + np.roll(x, -1, a)) / 3.0
    return x


@lru_cache(maxsize=8)
def texture_bank(h: int, w: int) -> dict[str, np.ndarray]:
    """``kind -> 6×2H×2W`` float32 procedural tiles, zero mean, about unit amplitude, fixed seed."""
    rng = np.random.default_rng(20240611)
    th, tw = 2 * h, 2 * w
    y, x = np.mgrid[0:th, 0:tw].astype(np.float64)
    y, x = y / h, x / w  # one face side = 1
    out: dict[str, list] = {k: [] for k in ("knit", "stripes", "strands", "fabric", "mottle")}
    for _ in range(6):
        period = rng.uniform(0.05, 0.09)
        knit = np.sin(2 * np.pi * x / period) * np.sin(2 * np.pi * y / (1.3 * period))
        out["knit"].append(np.sign(knit) * np.abs(knit) ** 0.5)
        angle = rng.uniform(-0.6, 0.6) + rng.choice([0.0, np.pi / 2])
        along = x * np.cos(angle) + y * np.sin(angle)
        sp, duty = rng.uniform(0.08, 0.2), rng.uniform(0.3, 0.6)
        out["stripes"].append(np.where(np.mod(along / sp, 1.0) < duty, 1.0, -1.0))
        strands = _blur(_blur(rng.standard_normal((th, tw)), 6, (1,)), 2, (0,))  # smooth downwards
        strands = np.repeat(strands[::3], 3, axis=0)[:th]
        fabric = _blur(rng.standard_normal((th, tw)), 2, (0, 1))
        mottle = _blur(rng.standard_normal((th, tw)), 5, (0, 1))
        for k, v in (("strands", strands), ("fabric", fabric), ("mottle", mottle)):
            out[k].append(v / (v.std() + 1e-9))
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


def _tiles(c: Canvas, kinds: str | tuple[str, str, str], col: int) -> np.ndarray:
    """Per image a tile crop by ``u[:, col:col+3]`` (three ``kinds``: by ``u[:, col]`` first)."""
    h, w = c.images.shape[1:]
    crops = []
    for r in c.u:
        kind = kinds if isinstance(kinds, str) else kinds[min(int(r[col] * 3), 2)]
        ut, uy, ux = r[col:col + 3] if isinstance(kinds, str) else r[col + 1:col + 4]
        tiles = texture_bank(h, w)[kind]
        t, oy, ox = min(int(ut * len(tiles)), len(tiles) - 1), int(uy * h), int(ux * w)
        crops.append(tiles[t, oy:oy + h, ox:ox + w])
    return np.stack(crops)


def _gauge(x: np.ndarray, y: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """``r / R(θ)`` for radial profiles ``R`` (B×A): the star-shaped set's own scale."""
    r = np.hypot(x, y)
    idx = (np.arctan2(y, x) * np.float32(_ANGLES / (2 * np.pi))).astype(np.int32) % _ANGLES
    return r / np.take_along_axis(profiles, idx.reshape(len(profiles), -1), 1).reshape(r.shape)


def block_field(c: Canvas) -> Field:
    """A rectangle of log-uniform aspect (width/height) grown about a random centre."""
    u, x, y, aspect = c.u, c.x, c.y, c.aspect
    cx, cy = _c(_lerp(0.15, 0.85, u[:, 3])), _c(_lerp(0.15, 0.85, u[:, 4]))
    a = _c(np.exp(_lerp(math.log(aspect[0]), math.log(aspect[1]), u[:, 5])))
    return np.maximum(np.abs(x - cx) / np.sqrt(a), np.abs(y - cy) * np.sqrt(a)), None


def sunglasses_field(c: Canvas) -> Field:
    """Two superellipse lenses with a bridge and temples (``extra``: the lens pixels), or a band."""
    u, pts, x, y, shades = c.u, c.pts, c.x, c.y, c.first
    xm, half = (pts.lex + pts.rex) / 2, (pts.rex - pts.lex) / 2
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
    band = np.abs(dy) + 0.008 * np.sin(2 * np.pi * (x * _c(_lerp(1.0, 2.5, u[:, 8])) + _c(u[:, 9])))
    return np.where(_c(shades), glasses, band), (lens <= glasses) & _c(shades)


def sunglasses_paint(c: Canvas) -> np.ndarray:
    """Tinted lenses with a glare streak in a frame, or a fabric band."""
    u, f, thr, is_lens, x, y, pts = c.u, c.f, c.thr, c.extra, c.x, c.y, c.pts

    def glasses() -> np.ndarray:
        rel = f / _c(np.maximum(thr, 1e-9))  # 0 at the centre, 1 at the edge
        tint, frame = _c(_lerp(12, 70, u[:, 10] ** 1.5)), _c(_lerp(5, 45, u[:, 11]))
        grad = (y - pts.ey) * 220 * _c(_lerp(0.3, 1.0, u[:, 12]))  # darker at the top
        streak = np.abs((x - pts.lex) + (y - pts.ey) - 0.05 * _c(u[:, 13])) % 0.36
        glare = np.where((streak < 0.025) & (rel < 0.75), _c(_lerp(25, 70, u[:, 14])), 0.0)
        return np.where(is_lens & (rel < _c(_lerp(0.78, 0.9, u[:, 15]))), tint + grad + glare,
                        frame)

    tone = _c(np.where(u[:, 16] < 0.6, _lerp(10, 60, u[:, 17]), _lerp(60, 220, u[:, 17])))
    return _pick(c.first, glasses, lambda: tone + 10 * _tiles(c, "fabric", 18))  # or a band


MASK_STYLES: tuple[str, ...] = ("surgical", "scarf", "respirator", "cloth", "bandana", "gaiter")
MASK_WEIGHTS: tuple[float, ...] = (0.3, 0.2, 0.15, 0.15, 0.1, 0.1)
_CLASSIC = 2  # styles before this index: the first mask styles, drawn exactly as before
_STRAP = 0.022  # half width of an ear loop (fraction of the side: about 1 px at 48 px)


def _mask(classic: Callable, varied: Callable) -> Callable[[Canvas], Any]:
    """A mask field or painter: styles 0-1 drawn by ``classic``, the others by ``varied``."""
    return lambda c: _pick(c.style < _CLASSIC, lambda: classic(c), lambda: varied(c))


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


def _varied_mask(c: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Respirator, cloth mask, bandana or gaiter; 3 in 4 respirators and cloth masks have loops."""
    u, pts, x, y, style = c.u, c.pts, c.x, c.y, c.style
    kind = _c(style)
    cx = pts.nx + _c((u[:, 19] - 0.5) * 0.05)  # the nose, shifted by up to 2.5% of the side
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
    # ear loops: covered together once the mask reaches their anchor (the ratio stays exact)
    b, h, w = f.shape
    anchor_y = pts.ny + _c(_lerp(0.0, 0.08, u[:, 28]))
    ear_y = pts.ey + _c(_lerp(-0.02, 0.08, u[:, 27]))
    strap = np.zeros(f.shape, dtype=bool)
    level = np.full((b, 1, 1), -BIG, dtype=np.float32)
    rows = np.arange(b)
    for side in (-1.0, 1.0):  # a segment from (ax, anchor_y) towards the ear
        ax = cx + side * 0.92 * hw
        dx, dy = cx + side * (hw + 0.25) - ax, ear_y - anchor_y
        t = np.clip(((x - ax) * dx + (y - anchor_y) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
        strap |= np.hypot(x - ax - t * dx, y - anchor_y - t * dy) < _STRAP
        ix = np.clip((ax[:, 0, 0] * w).astype(int), 0, w - 1)
        iy = np.clip((anchor_y[:, 0, 0] * h).astype(int), 0, h - 1)
        level = np.maximum(level, f[rows, iy, ix][:, None, None])
    strap &= _c((u[:, 26] < 0.75) & np.isin(style, (2, 3))) & (f > level)
    f = np.where(strap, level, f)
    return f, np.stack([top.astype(np.float32), strap.astype(np.float32)], axis=1)


def _classic_paint(c: Canvas) -> np.ndarray:
    """A shaded, pleated surgical mask, or a knit / striped / fabric scarf."""
    u, thr, top, x, y, pts = c.u, c.thr, c.extra[:, 0], c.x, c.y, c.pts
    depth = y - (top - _c(thr))  # distance below the top edge

    def surgical_paint() -> np.ndarray:
        tone_s = _c(np.where(u[:, 10] < 0.75, _lerp(165, 245, u[:, 11]), _lerp(25, 80, u[:, 11])))
        shade = 1 - 0.3 * ((x - pts.nx) / (0.5 * pts.fw)) ** 2
        pleat = np.mod(depth, _c(_lerp(0.075, 0.1, u[:, 12])))
        pleats = np.where((pleat < 0.016) & (depth > 0.04), -22.0, 0.0)
        edge = np.where(depth < 0.018, -15.0, 0.0)
        return tone_s * shade + pleats + edge

    def scarf_paint() -> np.ndarray:
        tex = _tiles(c, ("knit", "stripes", "fabric"), 13)
        return (_c(_lerp(30, 220, u[:, 17])) + _c(_lerp(12, 35, u[:, 18])) * tex
                + np.where(depth < 0.02, -18.0, 0.0))

    return _pick(c.first, surgical_paint, scarf_paint)


def _varied_paint(c: Canvas) -> np.ndarray:
    """Light or dark fabric, plain or patterned, with the style's folds, seam or hem."""
    u, thr, x, y, pts = c.u, c.thr, c.x, c.y, c.pts
    top, strap = c.extra[:, 0], c.extra[:, 1] > 0.5
    kind = _c(c.style)
    depth = y - (top - _c(thr))
    dxn = x - (pts.nx + _c((u[:, 19] - 0.5) * 0.05))  # as in _varied_mask
    tone = _c(np.where(u[:, 29] < 0.55, _lerp(170, 250, u[:, 33]), _lerp(20, 160, u[:, 33])))
    shade = 1 - _c(_lerp(0.1, 0.35, u[:, 31])) * (dxn / (0.5 * pts.fw)) ** 2
    tex = _tiles(c, ("fabric", "stripes", "knit"), 34)
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


def _bar(theta: np.ndarray, direction: float, half_width: float, length: float) -> np.ndarray:
    """Radial profile of a bar from the origin along ``direction``: constant width, flat end."""
    d = np.angle(np.exp(1j * (theta - direction)))
    along, across = np.cos(d), np.abs(np.sin(d))
    end = length / np.maximum(along, 1e-9)
    return np.where(along > 0, np.minimum(half_width / np.maximum(across, 1e-9), end), 0.0)


@lru_cache(maxsize=1)
def hand_profiles() -> np.ndarray:
    """Eight hands' radial profiles: finger and thumb bars on a palm, the forearm to the edge."""
    theta = (np.arange(_ANGLES) + 0.5) * 2 * np.pi / _ANGLES  # y down: -pi/2 is "up"
    out = []
    for spread, side, length in itertools.product((0.17, 0.25), (-1, 1), (0.9, 1.1)):
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
    cx, cy = _c(ax + (u[:, 5] - 0.5) * 0.08), _c(ay + (u[:, 6] - 0.5) * 0.08 + 0.04)
    angle = np.where(u[:, 7] < 0.25, np.where(u[:, 8] < 0.5, -1, 1) * np.pi / 2, 0.0)
    angle = _c(angle + (u[:, 9] - 0.5) * 0.9)
    lx, ly = _rotate(x - cx, y - cy, angle)
    stretch = _c(_lerp(0.85, 1.15, u[:, 10]))
    variant = np.minimum((u[:, 11] * 8).astype(int), 7)
    return _gauge(lx * stretch, ly / stretch, hand_profiles()[variant]), None


def hand_paint(c: Canvas) -> np.ndarray:
    """Skin (a tone near the face's own cheeks, lit from the centre) or a gloved texture."""
    u, images = c.u, c.images
    h, w = c.images.shape[1:]
    rel = c.f / _c(np.maximum(c.thr, 1e-9))

    def skin_paint() -> np.ndarray:
        cheeks = images[:, int(0.55 * h):int(0.7 * h), int(0.2 * w):int(0.8 * w)]
        own = np.median(cheeks.reshape(len(images), -1), axis=1)
        tone = np.where(u[:, 13] < 0.7, own + (u[:, 14] - 0.5) * 40, _lerp(70, 210, u[:, 14]))
        tone = _c(np.clip(tone, 45, 225))
        return (tone * (1.12 - 0.3 * rel**2) + 6 * _tiles(c, "mottle", 15)
                + np.where(rel > 0.93, -25.0, 0.0))

    def glove() -> np.ndarray:
        tex = _tiles(c, ("knit", "fabric", "stripes"), 18)
        return _c(_lerp(20, 230, u[:, 22])) + _c(_lerp(10, 30, u[:, 23])) * tex - 20 * rel**2

    return _pick(c.first, skin_paint, glove)


def hair_field(c: Canvas) -> Field:
    """A fringe with strands and longer sides (u3 < 0.65), else a hat with a brim."""
    u, pts, x, y, hair = c.u, c.pts, c.x, c.y, c.first
    side = np.abs(2 * (x - pts.nx))
    scallop = 0.05 * np.abs(np.sin(np.pi * (x * _c(_lerp(5, 11, u[:, 4])) + _c(u[:, 5])))) ** 0.7
    part = _c((u[:, 6] - 0.5) * 0.06) * (x - 0.5)
    edge_h = (pts.by - 0.04 + _c(_lerp(0.2, 0.6, u[:, 7])) * side**3 + scallop + part)
    edge_t = (pts.by - 0.03 + _c(_lerp(-0.06, 0.06, u[:, 8])) * (x - 0.5)
              + _c(_lerp(0.0, 0.15, u[:, 9])) * (x - 0.5) ** 2)
    return y - np.where(_c(hair), edge_h, edge_t), None


def hair_paint(c: Canvas) -> np.ndarray:
    """Strands of one tone, or a fabric hat with a brim."""
    u = c.u
    depth = _c(c.thr) - c.f  # distance above the lower edge

    def hair_paint() -> np.ndarray:
        tone_h = _c(np.where(u[:, 10] < 0.7, _lerp(10, 70, u[:, 11]), _lerp(90, 200, u[:, 11])))
        return (tone_h + _c(_lerp(18, 35, u[:, 15])) * _tiles(c, "strands", 12)
                + np.where(depth < 0.02, -8.0, 0))

    def hat_paint() -> np.ndarray:
        brim = np.where(depth < _c(_lerp(0.05, 0.09, u[:, 20])), _c(_lerp(-45, 30, u[:, 21])),
                        0.0)
        return (_c(_lerp(15, 235, u[:, 16])) + 7 * _tiles(c, "fabric", 17) + brim
                + np.where(depth < 0.012, -25.0, 0.0))

    return _pick(c.first, hair_paint, hat_paint)


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
        a1, r1 = np.roll(ang, -1), np.roll(rad, -1)  # straight edges to the next, in polar form
        a1 = np.where(a1 <= ang, a1 + 2 * np.pi, a1)
        inside = np.mod(theta[None, :] - ang[:, None], 2 * np.pi) <= (a1 - ang)[:, None]
        p0 = np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)
        d = np.stack([r1 * np.cos(a1), r1 * np.sin(a1)], 1) - p0
        den = np.cos(theta)[None] * d[:, 1:2] - np.sin(theta)[None] * d[:, 0:1]
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
    return _gauge(lx * stretch, ly / stretch, profiles), None


def strokes_field(c: Canvas) -> Field:
    """One to three thick quadratic strokes across the face (distance to their centre lines)."""
    u, x, y = c.u, c.x, c.y
    f = np.full((len(u), *x.shape[1:]), BIG, dtype=np.float32)
    n = 2 + (u[:, 3] < 0.5).astype(int)
    s = np.linspace(0, 1, 7)[:, None]
    for k in range(int(n.max())):
        cols = u[:, 4 + 6 * k:10 + 6 * k]
        p0, p1, p2 = cols[:, 0:2], cols[:, 2:4] * 1.2 - 0.1, cols[:, 4:6]
        curve = (1 - s) ** 2 * p0[:, None] + 2 * s * (1 - s) * p1[:, None] + s**2 * p2[:, None]
        active = _c(n > k)
        for j in range(6):
            a, d = curve[:, j], curve[:, j + 1] - curve[:, j]
            inv = _c(1.0 / (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + 1e-12))
            px, py, dx, dy = x - _c(a[:, 0]), y - _c(a[:, 1]), _c(d[:, 0]), _c(d[:, 1])
            t = np.clip((px * dx + py * dy) * inv, 0, 1)
            d2 = np.square(px - t * dx) + np.square(py - t * dy)  # squared: same ranks
            f = np.where(active, np.minimum(f, d2), f)
    return f, None


def strokes_paint(c: Canvas) -> np.ndarray:
    """One marker colour per image, light grain."""
    tone = np.where(c.u[:, 24] < 0.6, c.u[:, 25] * 60, 150 + c.u[:, 25] * 105)
    return tone[:, None, None] + 6 * (c.y - 0.5)


def fill_paint(c: Canvas) -> np.ndarray:
    """The plain fills: a gray level, uniform noise, or a shifted patch of *another* pool face
    (rank ``j != own`` in ``c.order``; noise when the pool has fewer than two)."""
    (h, w), n = c.images.shape[1:], 0 if c.pool is None else len(c.pool)
    out = np.empty(c.images.shape, dtype=np.float64)
    for i, (fill, rng, u) in enumerate(zip(c.fills, c.rngs, c.u, strict=True)):
        if fill == "gray":
            out[i] = int(u[29] * 256)
        elif fill == "noise" or n < 2:
            out[i] = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        else:
            j = int(u[30] * (n - 1))
            j = min(j + 1 if 0 <= c.own[i] <= j else j, n - 1)  # never its own face
            pos = int(c.order[j]) if c.order is not None else j
            dy, dx = int((u[31] - 0.5) * h * 0.6), int((u[32] - 0.5) * w * 0.6)
            out[i] = np.roll(np.asarray(c.pool[pos]), (dy, dx), axis=(0, 1))
    return out


OCCLUDERS: tuple[Occluder, ...] = (
    Occluder("block", FILLS, block_field, fill_paint),
    Occluder("sunglasses", ("shades", "band"), sunglasses_field, sunglasses_paint,
             (3, (0.75, 0.25))),
    Occluder("mask", MASK_STYLES, _mask(_classic_mask, _varied_mask),
             _mask(_classic_paint, _varied_paint), (3, MASK_WEIGHTS)),
    Occluder("hand", ("skin", "glove"), hand_field, hand_paint, (12, (0.75, 0.25))),
    Occluder("hair", ("hair", "hat"), hair_field, hair_paint, (3, (0.65, 0.35))),
    Occluder("polygon", FILLS, polygon_field, fill_paint),
    Occluder("strokes", ("marker",), strokes_field, strokes_paint),
)
