from __future__ import annotations

from dataclasses import replace
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
    drawn = {"block": set(p.occlusion.fills), **{k: set(v) for k, v in
                                                 p.occlusion.styles.items()}}
    assert set(drawn) >= {"block", "mask", "hair", "sunglasses"}
    for kind, style in drawn.items():
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


def test_faces_with_detected_keypoints_are_occluded_there(tmp_path: Path, make_params,
                                                          capsys) -> None:
    from occlufer.data.store import Store, write_store

    p = make_params("occlusion.types.block=0", "occlusion.types.polygon=0",
                    "occlusion.types.strokes=0", "occlusion.ratio=0.12",  # region occluders
                    "occlusion.keypoints=true")
    acquire(p, tmp_path / "acq")
    clean = read_store(tmp_path / "acq")
    m = clean.manifest.copy()
    given = np.arange(len(m)) % 2 == 0  # every other face: eyes, nose and mouth up and left
    own = {"left_eye": (0.24, 0.24), "right_eye": (0.60, 0.24), "nose": (0.42, 0.40),
           "mouth": (0.42, 0.55), "left_ear": (0.08, 0.35), "right_ear": (0.76, 0.35)}
    for name, (x, y) in own.items():
        m.loc[given, f"kp_{name}_x"], m.loc[given, f"kp_{name}_y"] = x, y
    write_store(tmp_path / "photos", Store(np.asarray(clean.images), m))
    occlude(p, tmp_path / "acq", tmp_path / "canonical")
    assert "detected keypoints" not in capsys.readouterr().out
    occlude(p, tmp_path / "photos", tmp_path / "own")
    assert (f"{given.sum()} of {len(m)} faces occluded at their detected keypoints"
            in capsys.readouterr().out)
    a, b = read_store(tmp_path / "canonical"), read_store(tmp_path / "own")
    off = replace(p, occlusion=replace(p.occlusion, keypoints=False))  # the default: ignored
    occlude(off, tmp_path / "photos", tmp_path / "off")
    assert "detected keypoints" not in capsys.readouterr().out
    assert np.array_equal(read_store(tmp_path / "off").images, a.images)
    assert np.array_equal(b.images[~given], a.images[~given])  # no keypoints: as before
    assert np.array_equal(b.masks[~given], a.masks[~given])
    assert (b.manifest.loc[given, "kp_mouth_y"] == np.float32(0.55)).all()  # carried along
    glasses = given & (b.manifest["occluder"] == "sunglasses").to_numpy()
    assert glasses.sum() >= 3
    for x, y in (own["left_eye"], own["right_eye"]):  # on the given eyes, not the canonical
        col, row = int(x * 48), int(y * 48)
        assert b.masks[glasses, row, col].all() and a.masks[glasses, row, col].mean() < 0.25
