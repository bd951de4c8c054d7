"""What an occluder is: a name, its styles, how well it meets the ratio, a level field, a painter.

The engine covers the ``round(ratio·H·W)`` lowest pixels of the :data:`Field` (:mod:`.shapes`)
and the painter colours them; without a field (:mod:`.dropouts`) it paints and masks itself."""

from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

#: the plain fills of ``occlusion.fills``: a solid gray, uniform noise, a patch of another face
FILLS: tuple[str, ...] = ("gray", "noise", "texture")
#: a level field ``f`` (B×H×W, low = covered first) and what its painter reads besides
Field = tuple[np.ndarray, np.ndarray | None]
#: per-image landmarks after jitter, B×1×1 each: eyes' x and y, nose, mouth, brows, face width
Points = namedtuple("Points", "lex rex ey nx ny mx my by fw")


@dataclass(frozen=True)
class Canvas:
    """A chunk of images of one type with each image's draws (``f``..``thr``: for painters)."""

    images: np.ndarray                   # B×H×W uint8 faces
    u: np.ndarray                        # B×K uniforms, each row from the image's generator
    ratios: np.ndarray                   # B target ratios
    fills: list[str]                     # B plain fills (see FILLS)
    rngs: list[np.random.Generator]      # the images' generators (noise, albumentations)
    style: np.ndarray | None             # B style indices into ``styles`` (None: from fills)
    aspect: tuple[float, float]          # block width/height range
    pool: np.ndarray | None              # faces that texture fills cut patches from
    own: np.ndarray                      # B: each image's rank in ``order`` (-1: not in pool)
    order: np.ndarray | None             # pool positions in canonical order (None: as stored)
    pts: Points | None = None            # jittered landmarks
    x: np.ndarray | None = None          # 1×H×W pixel centres, fractions of the side
    y: np.ndarray | None = None
    f: np.ndarray | None = None          # the level field
    extra: np.ndarray | None = None      # what its painter reads besides
    thr: np.ndarray | None = None

    @property
    def first(self) -> np.ndarray | None:
        """B bool: which images draw the occluder's first style (None without drawn styles)."""
        return None if self.style is None else self.style == 0


@dataclass(frozen=True)
class Occluder:
    """One occluder type. ``style_draw = (column, weights)``: styles drawn by ``u[:, column]``
    (else the fill if a style, else the first); without a level field ``paint`` also masks."""

    name: str
    styles: tuple[str, ...]
    level_field: Callable[[Canvas], Field] | None
    paint: Callable[[Canvas], Any]
    style_draw: tuple[int, tuple[float, ...]] | None = None
    ratio: Literal["exact", "close", "approximate"] = "exact"  # half a pixel, 2 points, or not

    def style_index(self, u: np.ndarray, allowed: Sequence[str] | None = None) -> np.ndarray | None:
        """Each row's style index among the ``allowed`` ones (None without drawn styles)."""
        if self.style_draw is None:
            return None
        column, weights = self.style_draw
        w = np.array([wt if allowed is None or s in allowed else 0.0
                      for s, wt in zip(self.styles, weights, strict=True)], dtype=np.float64)
        cum = np.cumsum(w / w.sum())
        return np.minimum(np.searchsorted(cum, u[:, column], side="right"), len(w) - 1)

    def style_names(self, c: Canvas) -> list[str]:
        """The style each image of ``c`` reports."""
        if c.style is not None:
            return np.asarray(self.styles, dtype=object)[c.style].tolist()
        return [fill if fill in self.styles else self.styles[0] for fill in c.fills]
