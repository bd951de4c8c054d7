"""What an occluder is: a name, its styles, how well it meets the ratio, a level field, a painter.

The engine renders a chunk of images of one type as a :class:`Canvas` (the images and each
image's draws). An occluder with a level field (the geometric ones, :mod:`.shapes`) turns it into
a :class:`Field`; the engine covers the ``round(ratio·H·W)`` lowest pixels and the painter colours
them. An occluder without one (the albumentations dropouts, :mod:`.dropouts`) paints the images
and reports its own masks. :mod:`.registry` lists every occluder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from occlufer.occlusion.shapes import Points

#: the plain fills of ``occlusion.fills``: a solid gray, uniform noise, a patch of another face
FILLS: tuple[str, ...] = ("gray", "noise", "texture")


@dataclass(frozen=True)
class Field:
    """A level field ``f`` (B×H×W, low = covered first) and what its painter reads besides."""

    f: np.ndarray
    extra: np.ndarray | None = None  # e.g. which pixels are lenses, the top edge of a mask


@dataclass(frozen=True)
class Canvas:
    """A chunk of images of one occluder type with each image's draws.

    All that a level field or a painter reads; the engine adds ``field`` and its thresholds
    ``thr`` (the masks are ``field.f <= thr``) before painting.
    """

    images: np.ndarray                   # B×H×W uint8 faces
    u: np.ndarray                        # B×K uniforms, each row from the image's generator
    ratios: np.ndarray                   # B target ratios
    fills: list[str]                     # B plain fills (see FILLS)
    rngs: list[np.random.Generator]      # the images' generators (noise, albumentations)
    style: np.ndarray | None             # B int: each image's style, an index into the
    #                                      occluder's ``styles`` (None: styles from the fills)
    aspect: tuple[float, float]          # block width/height range
    pool: np.ndarray | None              # faces that texture fills cut patches from
    own: np.ndarray                      # B: each image's rank in ``order`` (-1: not in pool)
    order: np.ndarray | None             # pool positions in canonical order (None: as stored)
    pts: Points | None = None            # jittered landmarks (level-field occluders)
    x: np.ndarray | None = None          # 1×H×W pixel centres, fractions of the side
    y: np.ndarray | None = None
    field: Field | None = None
    thr: np.ndarray | None = None

    @property
    def first(self) -> np.ndarray | None:
        """B bool: which images draw the occluder's first style (None without drawn styles)."""
        return None if self.style is None else self.style == 0

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return self.images.shape[1], self.images.shape[2]


@dataclass(frozen=True)
class Occluder:
    """One occluder type.

    ``styles`` are what it reports per image (the manifest's ``fill``): with ``style_draw =
    (column, weights)`` one style per image, drawn by ``u[:, column]`` with one weight per
    style, among the styles a spec allows (``occlusion.styles``; the engine renders chunks of
    one style and hands the painter ``canvas.style``); otherwise the image's fill when it is one
    of ``styles``, else the first. ``ratio`` says how the target is met:
    ``exact`` to half a pixel (every occluder with a level field), ``close`` within 2 points,
    or ``approximate``. ``level_field(canvas)`` returns a :class:`Field`; ``paint(canvas)``
    returns the covered pixels' values (B×H×W, rounded and clipped by the engine), or, without
    a level field, ``(images, masks)`` as uint8 and bool.
    """

    name: str
    styles: tuple[str, ...]
    ratio: Literal["exact", "close", "approximate"]
    level_field: Callable[[Canvas], Field] | None
    paint: Callable[[Canvas], Any]
    style_draw: tuple[int, tuple[float, ...]] | None = None

    @property
    def exact_ratio(self) -> bool:
        """Whether the realised ratio equals the target to half a pixel."""
        return self.ratio == "exact"

    def style_index(self, u: np.ndarray, allowed: Sequence[str] | None = None,
                    ) -> np.ndarray | None:
        """Per image (rows of ``u``), the index of its style in ``styles``; None without drawn
        styles. ``allowed`` (default: all) keeps the others out; the weights of the allowed
        ones are renormalised, so two styles of weights 0.3 and 0.2 split 0.6 / 0.4."""
        if self.style_draw is None:
            return None
        column, weights = self.style_draw
        w = np.array([wt if allowed is None or s in allowed else 0.0
                      for s, wt in zip(self.styles, weights, strict=True)], dtype=np.float64)
        if not w.sum() > 0:
            raise ValueError(f"{self.name}: none of the styles {list(allowed or ())} is one of "
                             f"{list(self.styles)}")
        cum = np.cumsum(w / w.sum())
        return np.minimum(np.searchsorted(cum, u[:, column], side="right"), len(w) - 1)

    def style_names(self, c: Canvas) -> list[str]:
        """The style each image of ``c`` reports."""
        if c.style is not None:
            return np.asarray(self.styles, dtype=object)[c.style].tolist()
        return [fill if fill in self.styles else self.styles[0] for fill in c.fills]
