"""Every occluder, in one place, in the order a mixture draws them (part of the results).

A new one also needs a key in ``conf/occlusion/_common.yaml`` and ``conf/validate/default.yaml``."""

from occlufer.occlusion import dropouts, shapes
from occlufer.occlusion.occluder import Occluder

OCCLUDERS: dict[str, Occluder] = {o.name: o for o in (*shapes.OCCLUDERS, *dropouts.OCCLUDERS)}
TYPES: tuple[str, ...] = tuple(OCCLUDERS)
#: the occluders that draw one of several styles (``occlusion.styles``), with their styles
DRAWN_STYLES = {k: o.styles for k, o in OCCLUDERS.items() if o.style_draw is not None}
#: types whose realised ratio meets the target (to half a pixel, or within 2 points)
RATIO_CONTROLLED = tuple(k for k, o in OCCLUDERS.items() if o.ratio != "approximate")
