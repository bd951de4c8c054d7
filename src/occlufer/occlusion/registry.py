"""Every occluder, in one place: :data:`OCCLUDERS` (name -> :class:`.occluder.Occluder`).

The engine draws and renders through it; ``occlusion.types`` and ``validate.robustness_types``
(:mod:`occlufer.config`), the preview and the robustness curves take their names from it; and
``tests/occlusion/test_registry.py`` checks the lists in ``conf/`` and ``dvc.yaml`` against it.

Adding an occluder: its level field, painter and :class:`.occluder.Occluder` entry in
:mod:`.shapes` (a module of its own goes into the tuple below), then its key in
``conf/occlusion/_common.yaml`` and ``conf/validate/default.yaml`` (the test names what is
missing). The order is part of the results: a mixture draws its types in this order, so
moving one changes which occluder an image gets (a new one, weight 0 in the existing configs,
changes nothing).
"""

from __future__ import annotations

from occlufer.occlusion import dropouts, shapes
from occlufer.occlusion.occluder import Occluder

OCCLUDERS: dict[str, Occluder] = {o.name: o for o in (*shapes.OCCLUDERS, *dropouts.OCCLUDERS)}
#: every occluder type, in the order previews show them
TYPES: tuple[str, ...] = tuple(OCCLUDERS)
#: the occluders that draw one of several styles (``occlusion.styles``), with their styles
DRAWN_STYLES: dict[str, tuple[str, ...]] = {k: o.styles for k, o in OCCLUDERS.items()
                                            if o.style_draw is not None}
#: types whose realised ratio meets the target (to half a pixel, or within 2 points)
RATIO_CONTROLLED: tuple[str, ...] = tuple(k for k, o in OCCLUDERS.items()
                                          if o.ratio != "approximate")
