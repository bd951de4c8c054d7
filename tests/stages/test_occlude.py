from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from occlufer.data.store import read_store
from occlufer.stages.acquire import acquire
from occlufer.stages.occlude import occlude


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_occluded_copies_cover_the_configured_area(tmp_path: Path, make_params, ratio) -> None:
    p = make_params(f"occlusion.ratio={ratio}")  # the default mixture (all ratio-controlled)
    acquire(p, tmp_path / "acq")
    occlude(p, tmp_path / "acq", tmp_path / "occ")
    clean, occ = read_store(tmp_path / "acq"), read_store(tmp_path / "occ")
    assert occ.images.shape == clean.images.shape and occ.masks is not None
    frac = occ.masks.reshape(len(occ), -1).mean(axis=1)
    # the k = round(ratio·H·W) lowest pixels of each occluder's field: within half a pixel
    assert np.all(np.abs(frac - ratio) <= 0.5 / 48**2 + 1e-12), frac
    np.testing.assert_allclose(occ.manifest["occluded_fraction"], frac)
    # outside the mask nothing changed; inside, the fill is gray or noise
    assert np.array_equal(occ.images[~occ.masks], clean.images[~occ.masks])
    assert list(occ.manifest["src_id"]) == list(clean.manifest["id"])
    assert (occ.manifest["label"] == clean.manifest["label"]).all()
    assert (occ.manifest["target_ratio"] == ratio).all()
    weights = {k: v for k, v in p.occlusion.types.items() if v > 0}
    assert set(occ.manifest["occluder"]) == set(weights)  # 700 faces: every type drawn
    for kind, style in {"block": {"gray", "noise", "texture"}, "mask": {"surgical", "scarf"},
                        "hair": {"hair", "hat"}, "sunglasses": {"shades", "band"}}.items():
        assert set(occ.manifest.loc[occ.manifest["occluder"] == kind, "fill"]) <= style
    assert (tmp_path / "occ" / "preview.png").is_file()


def test_range_ratio_and_patent_block_option(tmp_path: Path, make_params) -> None:
    p = make_params("occlusion=block", "occlusion.ratio=[0.1,0.4]")
    acquire(p, tmp_path / "acq")
    occ = occlude(p, tmp_path / "acq", tmp_path / "occ")
    store = read_store(tmp_path / "occ")
    m = store.manifest
    assert set(m["occluder"]) == {"block"} and set(m["fill"]) <= {"gray", "noise"}
    assert m["target_ratio"].between(0.1, 0.4).all() and m["target_ratio"].std() > 0.05
    assert (m["occluded_fraction"] - m["target_ratio"]).abs().max() <= 0.5 / 48**2 + 1e-12
    assert occ["per_type"]["block"]["count"] == len(m)


def test_occlusion_is_per_image_deterministic(tmp_path: Path, make_params) -> None:
    p = make_params()
    acquire(p, tmp_path / "acq")
    occlude(p, tmp_path / "acq", tmp_path / "o1")
    occlude(make_params("occlusion.workers=2"), tmp_path / "acq", tmp_path / "o2")
    assert (tmp_path / "o1/images.npy").read_bytes() == (tmp_path / "o2/images.npy").read_bytes()
    assert (tmp_path / "o1/masks.npy").read_bytes() == (tmp_path / "o2/masks.npy").read_bytes()
    m1, m2 = read_store(tmp_path / "o1").manifest, read_store(tmp_path / "o2").manifest
    assert m1.equals(m2)
    occlude(make_params("seed=5"), tmp_path / "acq", tmp_path / "o3")
    assert (tmp_path / "o1/masks.npy").read_bytes() != (tmp_path / "o3/masks.npy").read_bytes()


def test_only_gray_fill_gives_solid_blocks(tmp_path: Path, make_params) -> None:
    p = make_params("occlusion=block", "occlusion.fills=[gray]", "occlusion.ratio=0.3")
    acquire(p, tmp_path / "acq")
    occlude(p, tmp_path / "acq", tmp_path / "occ")
    occ = read_store(tmp_path / "occ")
    for image, mask in zip(occ.images, occ.masks, strict=True):
        assert len(np.unique(image[mask])) == 1
