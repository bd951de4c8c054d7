from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from occlufer.data.store import read_store
from occlufer.stages.acquire import acquire
from occlufer.stages.occlude import occlude


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_occluded_copies_cover_the_configured_area(tmp_path: Path, make_params, ratio) -> None:
    p = make_params(f"occlusion.ratio={ratio}")
    acquire(p, tmp_path / "acq")
    occlude(p, tmp_path / "acq", tmp_path / "occ")
    clean, occ = read_store(tmp_path / "acq"), read_store(tmp_path / "occ")
    assert occ.images.shape == clean.images.shape and occ.masks is not None
    frac = occ.masks.reshape(len(occ), -1).mean(axis=1)
    # one rectangle of integer sides: within 2 points of the target (and 3 pixels at 48×48)
    assert np.all(np.abs(frac - ratio) <= max(0.02, 3 / 48**2)), frac
    np.testing.assert_allclose(occ.manifest["occluded_fraction"], frac)
    # outside the mask nothing changed; inside, the fill is gray or noise
    assert np.array_equal(occ.images[~occ.masks], clean.images[~occ.masks])
    assert list(occ.manifest["src_id"]) == list(clean.manifest["id"])
    assert set(occ.manifest["fill"]) <= {"gray", "noise"}
    assert (occ.manifest["label"] == clean.manifest["label"]).all()


def test_occlusion_is_per_image_deterministic(tmp_path: Path, make_params) -> None:
    p = make_params()
    acquire(p, tmp_path / "acq")
    occlude(p, tmp_path / "acq", tmp_path / "o1")
    occlude(p, tmp_path / "acq", tmp_path / "o2")
    assert (tmp_path / "o1/images.npy").read_bytes() == (tmp_path / "o2/images.npy").read_bytes()
    assert (tmp_path / "o1/masks.npy").read_bytes() == (tmp_path / "o2/masks.npy").read_bytes()
    occlude(make_params("seed=5"), tmp_path / "acq", tmp_path / "o3")
    assert (tmp_path / "o1/masks.npy").read_bytes() != (tmp_path / "o3/masks.npy").read_bytes()


def test_only_gray_fill_gives_solid_blocks(tmp_path: Path, make_params) -> None:
    p = make_params("occlusion.fills=[gray]", "occlusion.ratio=0.3")
    acquire(p, tmp_path / "acq")
    occlude(p, tmp_path / "acq", tmp_path / "occ")
    occ = read_store(tmp_path / "occ")
    for image, mask in zip(occ.images, occ.masks, strict=True):
        assert len(np.unique(image[mask])) == 1
