"""Procedural, deterministic grayscale faces (the default dataset): one subject per image shows
an expression as action cues in both the eye/brow and the mouth band, drawn in face units (side 1,
origin at the centre, y down) on a 4x canvas. Image ``i`` draws from ``default_rng([seed, i, 1])``,
subject ``s`` from ``[seed, s, 2]``."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from occlufer.labels import CLASSES
from occlufer.viz import image_grid

_SS = 4  # supersampling factor
_PURPOSE_IMAGE = 1
_PURPOSE_IDENTITY = 2

# Action cues at full intensity in face units (dy < 0 is up): brow dy (brow_in/out, arch), pinch,
# eye openness - 1, lip corner dy, jaw drop (open), lip lift, mouth width - 1, press, wrinkle,
# cheek, forehead/furrow lines, tilt, asym; grin / teeth: chance the mouth opens / teeth show.
_CUES: dict[str, dict[str, float]] = {
    "angry": dict(brow_in=0.075, brow_out=-0.02, pinch=0.03, eye=-0.45, corner=0.015,
                  press=1.0, width=-0.15, furrow=1.0),
    "disgust": dict(brow_in=0.045, brow_out=0.015, pinch=0.012, eye=-0.35, corner=0.02,
                    lift=0.04, asym=1.0, wrinkle=1.0, teeth=0.6),
    "fear": dict(brow_in=-0.075, brow_out=-0.025, pinch=0.025, eye=0.75, corner=0.02,
                 open=0.04, width=0.3, forehead=0.7, teeth=0.4),
    "happy": dict(eye=-0.4, corner=-0.11, width=0.2, cheek=1.0, open=0.05, grin=0.6, teeth=1.0),
    "neutral": {},
    "sad": dict(brow_in=-0.07, brow_out=0.035, eye=-0.3, tilt=0.015, corner=0.075, width=-0.1),
    "surprise": dict(brow_in=-0.085, brow_out=-0.075, arch=0.035, eye=0.8, open=0.14,
                     width=-0.35, forehead=1.0, teeth=0.3),
}
# Per-image jitter (std) of each continuous cue, independent of intensity.
_JITTER = dict(brow_in=0.01, brow_out=0.008, arch=0.006, pinch=0.005, eye=0.12, corner=0.01,
               open=0.006, lift=0.004, width=0.06, tilt=0.004)
_CUE_KEYS = ("brow_in", "brow_out", "arch", "pinch", "eye", "corner", "open", "lift", "width",
             "press", "wrinkle", "cheek", "forehead", "furrow", "tilt", "asym")
_JITTER_STD = np.array([_JITTER.get(k, 0.0) for k in _CUE_KEYS])

# Precomputed sampling of the shapes.
_COS, _SIN = np.cos(np.arange(32) * np.pi / 16), np.sin(np.arange(32) * np.pi / 16)
_HALF_COS, _HALF_SIN = np.cos(np.linspace(0.0, np.pi, 9)), np.sin(np.linspace(0.0, np.pi, 9))
_ARC = np.linspace(0.15, 0.85, 6) * np.pi  # cheek creases
_ARC_COS, _ARC_SIN = np.cos(_ARC), np.sin(_ARC)
_Q = np.linspace(0.0, 1.0, 7)  # brow parameter and its quadratic Lagrange weights
_Q0, _Q1, _Q2 = (1 - _Q) * (1 - 2 * _Q), 4 * _Q * (1 - _Q), _Q * (2 * _Q - 1)
_HAIR_X = np.linspace(-1.0, 1.0, 25)
_FH_X = np.linspace(-0.12, 0.12, 7)  # forehead lines
_FH_Y = 0.02 * (1.0 - (_FH_X / 0.12) ** 2)
_WR_X, _WR_Y = np.array([-0.028, 0.0, 0.028]), np.array([0.004, 0.0, 0.004])  # nose creases
_M = np.linspace(-1.0, 1.0, 11)  # mouth abscissa in half-widths
_G = np.sqrt(1.0 - _M**2)  # elliptic opening profile


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and variability of a synthetic expression dataset."""

    n_per_class: int = 300
    n_subjects: int = 60  # identities; each image belongs to one subject
    size: int = 48  # output side in pixels
    intensity: tuple[float, float] = (0.35, 1.0)  # expression intensity range
    noise: float = 0.04  # std of additive pixel noise in [0,1] units (per-image scaled randomly)

    def __post_init__(self) -> None:
        lo, hi = self.intensity
        if self.n_per_class < 0 or self.n_subjects < 1 or self.size < 16:
            raise ValueError(f"invalid SyntheticSpec sizes: {self}")
        if not 0.0 <= lo <= hi or self.noise < 0.0:
            raise ValueError(f"invalid SyntheticSpec intensity/noise: {self}")


def _tone(v: float) -> int:
    return int(min(255.0, max(0.0, v)))


class _Painter:
    """Collects face-unit shapes, then draws them through one pose affine on a 4x canvas."""

    def __init__(self) -> None:
        self.ops: list[tuple[int, float, float]] = []  # (n points, tone, line width or 0)
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []

    def line(self, x: np.ndarray, y: np.ndarray, tone: float, width: float) -> None:
        """A polyline ``width`` face units thick (0: a filled polygon)."""
        self.ops.append((len(x), tone, width))
        self.xs.append(x)
        self.ys.append(y)

    def poly(self, x: np.ndarray, y: np.ndarray, tone: float) -> None:
        self.line(x, y, tone, 0.0)

    def band(self, x: np.ndarray, y0: np.ndarray, y1: np.ndarray, tone: float) -> None:
        """Fill between the curves ``y0`` and ``y1`` sampled at the same abscissae ``x``."""
        self.poly(np.concatenate([x, x[::-1]]), np.concatenate([y0, y1[::-1]]), tone)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, tone: float) -> None:
        self.poly(cx + rx * _COS, cy + ry * _SIN, tone)

    def render(self, size: int, bg: float, shift: np.ndarray, angle: float,
               scale: float) -> Image.Image:
        """Rotate by ``angle`` (rad), scale and shift (frame units) all shapes and draw them."""
        px = size * _SS
        c, s = np.cos(angle) * scale * px, np.sin(angle) * scale * px
        x, y = np.concatenate(self.xs), np.concatenate(self.ys)
        pts = np.column_stack([x * c - y * s + (shift[0] + 0.5) * px,
                               x * s + y * c + (shift[1] + 0.5) * px]).ravel().tolist()
        img = Image.new("L", (px, px), _tone(bg))
        draw = ImageDraw.Draw(img)
        start = 0
        for n, tone, width in self.ops:
            xy, start = pts[start:start + 2 * n], start + 2 * n
            if width > 0:
                draw.line(xy, fill=_tone(tone), width=max(1, round(width * scale * px)))
            else:
                draw.polygon(xy, fill=_tone(tone))
        return img


def _identity(seed: int, subject: int) -> dict[str, float]:
    """Draw subject ``subject``'s appearance (geometry and tones, all floats)."""
    r = np.random.default_rng([seed, subject, _PURPOSE_IDENTITY])
    skin = r.uniform(95, 200)
    dark_hair = r.random() < 0.7
    hair = r.uniform(15, 70) if dark_hair else r.uniform(140, 210)
    return dict(
        skin=skin, bg=np.clip(skin + r.choice([-1, 1]) * r.uniform(30, 110), 10, 245),
        a=r.uniform(0.35, 0.41), b=r.uniform(0.40, 0.45), jaw=r.uniform(0.05, 0.25),
        cy=r.uniform(0.05, 0.08), hair_style=float(r.choice(3, p=[0.12, 0.5, 0.38])),
        hair=hair, hairline=r.uniform(-0.28, -0.22),
        fringe=r.uniform(-0.23, -0.18) if r.random() < 0.3 else 0.0, jag=r.uniform(0.0, 0.02),
        ey=r.uniform(-0.10, -0.05), ex=r.uniform(0.15, 0.18), ew=r.uniform(0.072, 0.088),
        eh=r.uniform(0.028, 0.036), iris=r.uniform(20, 90), sclera=r.uniform(190, 240),
        brow_gap=r.uniform(0.06, 0.085), brow_th=r.uniform(0.028, 0.042),
        brow=min(skin - r.uniform(60, 110), hair + 20) if dark_hair else skin - r.uniform(55, 95),
        nose_len=r.uniform(0.16, 0.21), nose_w=r.uniform(0.035, 0.05),
        mouth_gap=r.uniform(0.09, 0.12), mouth_w=r.uniform(0.12, 0.155),
        lip_th=r.uniform(0.012, 0.02), lip=skin - r.uniform(25, 60),
        rest_corner=r.normal(0, 0.006), rest_brow=r.normal(0, 0.006),
        neck=skin - r.uniform(15, 40),
    )


def _cues(rng: np.random.Generator, expression: str, intensity: float) -> dict[str, float]:
    """Per-image cue values: intensity-scaled expression deltas plus jitter."""
    base = _CUES[expression]
    jitter = (rng.standard_normal(len(_CUE_KEYS)) * _JITTER_STD).tolist()
    cue = {k: intensity * base.get(k, 0.0) + j for k, j in zip(_CUE_KEYS, jitter, strict=True)}
    if rng.random() >= base.get("grin", 1.0):
        cue["open"] = 0.0
    cue["teeth"] = float(rng.random() < base.get("teeth", 0.0) * intensity)
    return cue


def _draw_head(p: _Painter, d: dict[str, float], c: dict[str, float]) -> None:
    a, b, cy, skin, style = d["a"], d["b"], d["cy"], d["skin"], d["hair_style"]
    if style > 0:  # hair volume behind the head; long hair reaches the bottom
        p.ellipse(0.0, cy - 0.04, a * 1.14, b * 1.04, d["hair"])
        if style == 2:
            p.poly(np.array([-1.14, 1.14, 1.05, -1.05]) * a, np.array([cy, cy, 0.6, 0.6]),
                   d["hair"])
    p.poly(np.array([-1.1, -0.3, 0.3, 1.1]) * a, np.array([0.6, 0.3, 0.3, 0.6]), d["neck"])
    if style < 2:
        for sgn in (-1, 1):
            p.ellipse(sgn * a * 0.98, d["ey"] + 0.03, 0.045, 0.08, skin - 12)
    y = cy + _SIN * np.where(_SIN > 0, b + 0.5 * max(c["open"], 0.0), b)
    p.poly(a * _COS * (1.0 - d["jaw"] * np.maximum(_SIN, 0.0) ** 2), y, skin)


def _draw_hair_top(p: _Painter, d: dict[str, float]) -> None:
    if d["hair_style"] == 0:
        return
    a = d["a"] * 1.03
    xs = _HAIR_X * a
    arc = d["cy"] - d["b"] * 1.02 * np.sqrt(1.0 - _HAIR_X**2)
    edge = (d["fringe"] + d["jag"] * np.abs(np.sin(xs * 60.0)) + 0.25 * _HAIR_X**4
            if d["fringe"] else d["hairline"] + 0.2 * _HAIR_X**2)
    p.band(xs, arc, np.clip(edge, arc, d["cy"] - 0.02), d["hair"])


def _draw_eyes_brows(p: _Painter, d: dict[str, float], c: dict[str, float]) -> None:
    ex, ey, ew, eh, skin = d["ex"], d["ey"], d["ew"], d["eh"], d["skin"]
    o = max(0.15, 1.0 + c["eye"])
    hu, hl = eh * o, eh * (0.7 + 0.3 * o) * (1.0 - 0.35 * c["cheek"])
    by = ey - d["brow_gap"]
    for sgn in (-1, 1):
        cx = sgn * ex
        xs = cx + ew * _HALF_COS
        tilt = (c["tilt"] + 0.3 * d["rest_brow"]) * sgn * _HALF_COS
        top, bot = ey - hu * _HALF_SIN + tilt, ey + hl * _HALF_SIN + tilt
        p.band(xs, top, bot, d["sclera"])
        r = eh * 0.95
        iy0, iy1 = max(ey - hu, ey - r), min(ey + hl, ey + r)
        p.ellipse(cx, (iy0 + iy1) / 2, r * 0.9, max(iy1 - iy0, 0.002) / 2, d["iris"])
        p.line(xs, top, d["brow"] - 20, 0.016)
        p.line(xs, bot, skin - 35, 0.005)
        if c["cheek"] > 0.1:
            p.line(cx + 1.1 * ew * _ARC_COS, ey + 1.7 * eh + 0.02 * _ARC_SIN,
                   skin - 60 * c["cheek"], 0.01)
        # brow: quadratic through inner, middle and outer points, thicker at the inner end
        x0, y0 = sgn * (ex - 0.85 * ew - c["pinch"]), by + c["brow_in"] + d["rest_brow"]
        x2, y2 = sgn * (ex + 1.25 * ew), by + c["brow_out"] - d["rest_brow"]
        x1, y1 = sgn * (ex + 0.2 * ew), (y0 + y2) / 2 - 0.012 - c["arch"]
        bx = x0 * _Q0 + x1 * _Q1 + x2 * _Q2
        bm = y0 * _Q0 + y1 * _Q1 + y2 * _Q2
        th = d["brow_th"] * (0.55 - 0.25 * _Q)
        p.band(bx, bm - th, bm + th, d["brow"])
    if c["forehead"] > 0.15:
        for k in range(2):
            p.line(_FH_X, by - 0.05 - 0.035 * k - _FH_Y, skin - 35 * c["forehead"], 0.007)
    if c["furrow"] > 0.15:
        for sgn in (-1, 1):
            p.line(np.array([sgn * 0.012, sgn * 0.018]), np.array([by, by + 0.05]),
                   skin - 45 * c["furrow"], 0.007)


def _draw_nose_mouth(p: _Painter, d: dict[str, float], c: dict[str, float]) -> None:
    skin, nw = d["skin"], d["nose_w"] * (1.0 + 0.25 * c["wrinkle"])
    yn = d["ey"] + d["nose_len"] - 0.015 * c["wrinkle"]
    if c["wrinkle"] > 0.15:
        for k in range(3):
            p.line(_WR_X, d["ey"] + 0.02 + 0.022 * k + _WR_Y, skin - 55 * c["wrinkle"], 0.008)
    p.line(nw * _WR_X / 0.028, yn - 3.0 * _WR_Y + 0.012, skin - 30, 0.01)
    for sgn in (-1, 1):
        p.ellipse(sgn * nw * 0.55, yn, 0.016, 0.009, skin - 70)
    ym = yn + d["mouth_gap"]
    hw = d["mouth_w"] * max(0.4, 1.0 + c["width"])
    fold = c["cheek"] + 0.8 * c["wrinkle"]
    if fold > 0.15:
        for sgn in (-1, 1):
            p.line(sgn * np.array([nw + 0.01, nw + 0.035, hw + 0.03]),
                   np.array([yn - 0.01, ym - 0.04, ym + 0.015]), skin - 40 * fold, 0.009)
    x = _M * hw
    base = ym + (c["corner"] + d["rest_corner"]) * _M**2 + 0.012 * c["asym"] * _M
    top = base - max(c["lift"], 0.0) * _G * (1.0 + 0.8 * c["asym"] * _M)
    bot = base + max(c["open"], 0.0) * _G
    th = d["lip_th"] * max(0.1, 1.0 - 0.85 * c["press"]) * _G
    p.band(x, top - th, bot + 1.3 * th, d["lip"])
    if (bot - top).max() > 0.008:
        p.band(x, top, bot, 35)
        if c["teeth"]:
            p.band(x, top, top + np.minimum(bot - top, 0.022 * _G), 225)
    else:
        p.line(x, base, d["lip"] - 50, 0.018)


def render_face(rng: np.random.Generator, identity: dict[str, float], expression: str,
                intensity: float, size: int, *, noise: float = 0.04) -> np.ndarray:
    """One size×size uint8 face of ``identity`` showing ``expression``; ``rng`` draws the rest."""
    if expression not in _CUES:
        raise ValueError(f"unknown expression {expression!r}; expected one of {CLASSES}")
    cue = _cues(rng, expression, intensity)
    shift = rng.uniform(-0.0625, 0.0625, 2)
    p = _Painter()
    _draw_head(p, identity, cue)
    _draw_eyes_brows(p, identity, cue)
    _draw_nose_mouth(p, identity, cue)
    _draw_hair_top(p, identity)
    img = p.render(size, identity["bg"], shift, np.deg2rad(rng.uniform(-10, 10)),
                   rng.uniform(0.92, 1.08)).reduce(_SS)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.7) * size / 48))
    # lighting: contrast about mid-gray, brightness, a linear gradient, then sensor noise
    contrast, ang = rng.uniform(0.75, 1.2), rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    amp = 255.0 * rng.uniform(0.0, 0.15)
    offset = 255.0 * (0.5 - 0.5 * contrast + rng.uniform(-0.1, 0.1)) + 0.5
    arr = np.asarray(img, dtype=np.float32) * contrast + (offset + amp * math.cos(ang) * ramp)
    arr += amp * math.sin(ang) * ramp[:, None]
    std = 255.0 * noise * rng.uniform(0.25, 1.25)
    arr += rng.standard_normal((size, size), dtype=np.float32) * std
    return np.clip(arr, 0.0, 255.0, out=arr).astype(np.uint8)


def generate(spec: SyntheticSpec, seed: int,
             classes: Sequence[str] = CLASSES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N×size×size uint8), labels (``i % len(classes)``) and subject ids (N int64)."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in _CUES]
    if unknown:
        raise ValueError(f"unknown class names {unknown}; expected names from {CLASSES}")
    if not classes:
        raise ValueError("classes must not be empty")
    n = spec.n_per_class * len(classes)
    images = np.empty((n, spec.size, spec.size), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % len(classes)
    subjects = np.empty(n, dtype=np.int64)
    identities: dict[int, dict[str, float]] = {}
    for i in range(n):
        rng = np.random.default_rng([seed, i, _PURPOSE_IMAGE])
        subjects[i] = s = int(rng.integers(spec.n_subjects))
        if s not in identities:
            identities[s] = _identity(seed, s)
        intensity = rng.uniform(*spec.intensity)
        images[i] = render_face(rng, identities[s], classes[labels[i]], intensity, spec.size,
                                noise=spec.noise)
    return images, labels, subjects


def preview_grid(images: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                 per_class: int = 8, scale: int = 2) -> Image.Image:
    """One row per class (name at left) with its first ``per_class`` examples."""
    rows = [[images[i] for i in np.flatnonzero(np.asarray(labels) == r)[:per_class]]
            for r in range(len(classes))]
    return image_grid(rows, list(classes), scale=scale)
