"""The occluder registry is the one list: conf/, dvc.yaml and docs/data.md agree with it, and each
occluder reports the styles and meets the ratio it declares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from occlufer.occlusion import OCCLUDERS, RATIO_CONTROLLED, TYPES, OcclusionSpec, occlude_batch
from occlufer.occlusion.occluder import FILLS
from occlufer.occlusion.shapes import N_UNIFORMS, Landmarks
from occlufer.rng import item_rng

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def test_names_and_derived_lists() -> None:
    assert all(k == o.name for k, o in OCCLUDERS.items())
    assert tuple(OCCLUDERS) == TYPES
    assert tuple(k for k, o in OCCLUDERS.items() if o.ratio != "approximate") == RATIO_CONTROLLED
    for occ in OCCLUDERS.values():
        assert occ.ratio in ("exact", "close", "approximate")
        assert (occ.ratio == "exact") == (occ.level_field is not None), occ.name
        if occ.style_draw is not None:  # a column of the draws and one weight per style
            column, weights = occ.style_draw
            assert 3 <= column < N_UNIFORMS and len(weights) == len(occ.styles), occ.name
            assert min(weights) > 0 and abs(sum(weights) - 1) < 1e-12, occ.name


def test_conf_lists_every_occluder() -> None:
    common = _yaml(CONF / "occlusion" / "_common.yaml")
    assert list(common["types"]) == list(TYPES), (
        "conf/occlusion/_common.yaml `types` must list every occluder of "
        "occlufer.occlusion.registry, in its order, with weight 0.0")
    assert set(common["fills"]) <= set(FILLS)
    for option in sorted((CONF / "occlusion").glob("*.yaml")):
        unknown = set(_yaml(option).get("types", {})) - set(TYPES)
        assert not unknown, f"{option.name}: unknown occluders {sorted(unknown)}"
    validate = _yaml(CONF / "validate" / "default.yaml")
    assert list(validate["robustness_types"]) == list(TYPES), (
        "conf/validate/default.yaml `robustness_types` must list every occluder of "
        "occlufer.occlusion.registry, in its order")


def test_landmark_defaults_match_conf() -> None:
    lm = _yaml(CONF / "occlusion" / "_common.yaml")["landmarks"]
    assert Landmarks(**{k: tuple(v) if isinstance(v, list) else v for k, v in lm.items()}) == \
        Landmarks()


def test_dvc_yaml_tracks_the_whole_occlusion_package() -> None:
    """dvc.yaml names no occluder (nothing to keep in step): the stages that occlude depend on
    the whole package, so a new occluder's module is a dependency without an edit."""
    dvc = _yaml(ROOT / "dvc.yaml")

    def strings(node: object) -> list[str]:
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in (str(k), *strings(v))]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [str(node)]

    assert not set(strings(dvc)) & set(TYPES)
    for name, stage in dvc["stages"].items():
        if "occlusion" in stage.get("params", []):
            assert "src/occlufer/occlusion" in stage["deps"], name


def test_docs_table_has_every_occluder() -> None:
    text = (ROOT / "docs" / "data.md").read_text()
    missing = [k for k in TYPES if f"| `{k}` |" not in text]
    assert not missing, f"docs/data.md's occluder table lacks {missing}"


@pytest.mark.parametrize("kind", TYPES)
def test_styles_are_the_declared_ones(kind: str) -> None:
    occ = OCCLUDERS[kind]
    images = np.random.default_rng(0).integers(30, 220, (48, 48, 48), dtype=np.uint8)
    spec = dataclasses.replace(OcclusionSpec().only(kind), ratio=(0.2, 0.2), fills=FILLS)
    out = occlude_batch(images, [item_rng(2, f"f{i}", "styles") for i in range(48)], spec)
    assert set(out.styles) <= set(occ.styles)
    if occ.style_draw is not None:  # every style drawn
        assert set(out.styles) == set(occ.styles)
    if occ.ratio == "exact":
        assert np.all(np.abs(out.fractions - 0.2) <= 0.5 / 48**2 + 1e-12)
