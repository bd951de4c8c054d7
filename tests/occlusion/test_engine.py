"""Occluders: realised ratio, determinism, masks, fills, albumentations parameters, augment."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from occlufer.occlusion import (
    OCCLUDERS,
    RATIO_CONTROLLED,
    TYPES,
    OcclusionAugment,
    OcclusionSpec,
    occlude_batch,
    occlude_images,
)
from occlufer.occlusion.dropouts import dropout
from occlufer.rng import item_rng

SPEC = OcclusionSpec(types=("block",), fills=("gray", "noise", "texture"))


def _faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 220, size * size).reshape(size, size)
    return np.clip(base[None] + rng.normal(0, 20, (n, size, size)), 0, 255).astype(np.uint8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(RATIO_CONTROLLED), size=st.integers(48, 112),
       ratio=st.floats(0.05, 0.6), seed=st.integers(0, 2**16))
def test_realised_ratio_within_two_points(kind: str, size: int, ratio: float, seed: int) -> None:
    images = _faces(3, size, seed)
    rngs = [item_rng(seed, f"img-{i}", "occlude") for i in range(3)]
    occ = occlude_batch(images, rngs, OcclusionSpec((kind,), (1.0,), (ratio, ratio), SPEC.fills))
    assert np.all(np.abs(occ.fractions - ratio) <= 0.02), (kind, size, ratio, occ.fractions)
    if kind != "erasing":  # the level-field occluders hit the target to half a pixel
        assert np.all(np.abs(occ.fractions - ratio) <= 0.5 / size**2 + 1e-12)
    assert np.array_equal(occ.images[~occ.masks], images[~occ.masks])
    assert occ.types == [kind] * 3


@pytest.mark.parametrize("kind", TYPES)
def test_each_type_changes_pixels_only_inside_its_mask(kind: str) -> None:
    images = _faces(12, 48)
    spec = OcclusionSpec((kind,), (1.0,), (0.2, 0.35), ("gray", "noise", "texture"))
    occ = occlude_batch(images, [item_rng(1, f"f{i}", "occlude") for i in range(12)], spec)
    assert occ.images.dtype == np.uint8 and occ.images.shape == images.shape
    assert np.array_equal(occ.images[~occ.masks], images[~occ.masks])
    assert (occ.images[occ.masks] != images[occ.masks]).mean() > 0.5  # visibly occluded
    assert np.all((occ.target_ratios >= 0.2) & (occ.target_ratios <= 0.35))
    assert np.all(occ.fractions > 0.05)
    assert all(occ.styles)
    # shapes vary per image: no two masks identical
    flat = occ.masks.reshape(12, -1)
    assert len({m.tobytes() for m in flat}) == 12


def test_ratio_range_is_drawn_per_image() -> None:
    spec = OcclusionSpec(("mask", "hair", "hand"), (1, 1, 1), (0.1, 0.5))
    images = _faces(200, 48)
    occ = occlude_batch(images, [item_rng(0, f"f{i}", "occlude") for i in range(200)], spec)
    assert 0.1 <= occ.target_ratios.min() < 0.15 and 0.45 < occ.target_ratios.max() <= 0.5
    assert np.all(np.abs(occ.fractions - occ.target_ratios) <= 0.5 / 48**2 + 1e-12)
    counts = {t: occ.types.count(t) for t in ("mask", "hair", "hand")}
    assert all(40 < c < 95 for c in counts.values()), counts  # weights 1:1:1


def test_weights_steer_the_mixture() -> None:
    spec = OcclusionSpec(("block", "sunglasses"), (0.9, 0.1), (0.2, 0.2))
    occ = occlude_batch(_faces(300, 48), [item_rng(0, f"f{i}", "o") for i in range(300)], spec)
    assert 240 < occ.types.count("block") < 295


def test_byte_identical_for_any_workers_chunks_and_order() -> None:
    spec = OcclusionSpec(TYPES[:7], (1,) * 7, (0.1, 0.4), ("gray", "noise", "texture"))
    images = _faces(300, 48, seed=3)
    ids = [f"syn-{i:06d}" for i in range(300)]
    one = occlude_images(images, ids, 7, spec, workers=1, chunk=1000)
    two = occlude_images(images, ids, 7, spec, workers=2, chunk=64)
    assert one.images.tobytes() == two.images.tobytes()
    assert one.masks.tobytes() == two.masks.tobytes()
    assert one.types == two.types and one.styles == two.styles
    perm = np.random.default_rng(0).permutation(300)
    shuffled = occlude_images(images[perm], [ids[i] for i in perm], 7, spec, workers=2, chunk=50)
    assert shuffled.images.tobytes() == one.images[perm].tobytes()
    assert shuffled.masks.tobytes() == one.masks[perm].tobytes()
    other = occlude_images(images, ids, 8, spec)
    assert other.masks.tobytes() != one.masks.tobytes()


def test_texture_fill_is_a_patch_of_another_face() -> None:
    n = 40
    images = np.repeat(np.arange(10, 10 + 5 * n, 5, dtype=np.uint8), 48 * 48).reshape(n, 48, 48)
    spec = OcclusionSpec(("block",), (1.0,), (0.3, 0.3), ("texture",))
    occ = occlude_images(images, [f"f{i}" for i in range(n)], 0, spec)
    sources = set()
    for i in range(n):
        values = np.unique(occ.images[i][occ.masks[i]])
        assert len(values) == 1 and values[0] != images[i, 0, 0]  # one other (flat) face
        sources.add(int(values[0]))
    assert len(sources) > n // 3
    assert set(occ.styles) == {"texture"}


def test_albumentations_parameters_take_effect() -> None:
    image = np.full((64, 64), 128, np.uint8)
    small = [dropout("coarse_dropout", item_rng(0, str(i), "o"), image, 0.05, "gray")[1].mean()
             for i in range(20)]
    large = [dropout("coarse_dropout", item_rng(0, str(i), "o"), image, 0.5, "gray")[1].mean()
             for i in range(20)]
    assert np.mean(small) < 0.08 and 0.3 < np.mean(large) < 0.6
    for ratio in (0.1, 0.3, 0.5):
        grid = [dropout("grid_dropout", item_rng(0, str(i), "o"), image, ratio, "gray")[1].mean()
                for i in range(20)]
        assert abs(np.mean(grid) - ratio) < 0.08, (ratio, np.mean(grid))
    out, mask = dropout("erasing", item_rng(0, "x", "o"), image, 0.3, "noise")
    assert abs(mask.mean() - 0.3) < 0.02
    assert len(np.unique(out[mask])) > 50  # fill="random": noise, not a solid value
    out, mask = dropout("erasing", item_rng(0, "x", "o"), image, 0.3, "gray")
    assert len(np.unique(out[mask])) == 1
    again = dropout("erasing", item_rng(0, "x", "o"), image, 0.3, "gray")
    assert np.array_equal(again[0], out) and np.array_equal(again[1], mask)


def test_augment_draws_fresh_reproducible_occlusions_per_epoch() -> None:
    spec = OcclusionSpec(("block", "mask", "sunglasses"), (1, 1, 1), (0.2, 0.3))
    aug = OcclusionAugment(spec, seed=0, p=0.5)
    images = _faces(64, 48)
    idx = np.arange(100, 164)
    a, ma = aug.batch(images, idx, epoch=0)
    b, mb = aug.batch(images, idx, epoch=0)
    c, mc = aug.batch(images, idx, epoch=1)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(ma, mc)
    hit = ma.reshape(64, -1).any(axis=1)
    assert 16 < hit.sum() < 48  # p = 0.5
    assert np.array_equal(a[~hit], images[~hit])
    assert np.array_equal(a[~ma], images[~ma])
    one = aug(images[0], np.random.default_rng(1))
    assert one.shape == (48, 48) and one.dtype == np.uint8 and not np.array_equal(one, images[0])


def test_spec_from_config(make_params) -> None:
    p = make_params("occlusion=block", "occlusion.ratio=[0.1,0.3]")
    spec = OcclusionSpec.from_cfg(p.occlusion)
    assert spec.types == ("block",) and spec.ratio == (0.1, 0.3)
    p = make_params("occlusion.types.block=0", "occlusion.types.hair=2")
    spec = OcclusionSpec.from_cfg(p.occlusion)
    assert "block" not in spec.types
    assert dict(zip(spec.types, spec.weights, strict=True))["hair"] == 2.0


# --------------------------------------------------------------------------- own landmarks

#: a face whose detected eyes, nose and mouth sit up and to the left of the canonical ones
OWN = np.array([[0.24, 0.24], [0.60, 0.24], [0.42, 0.40], [0.42, 0.55]])
CANONICAL = np.array([[0.32, 0.38], [0.68, 0.38], [0.5, 0.57], [0.5, 0.75]])  # conf/occlusion


def _covered(masks: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Per mask, the covered share of the 3×3 pixels around ``point`` (fractions of the side)."""
    h, w = masks.shape[1:]
    x, y = int(point[0] * w), int(point[1] * h)
    return masks[:, y - 1:y + 2, x - 1:x + 2].reshape(len(masks), -1).mean(axis=1)


def _one(kind: str, ratio: float) -> OcclusionSpec:
    return OcclusionSpec((kind,), (1.0,), (ratio, ratio), ("gray",))


def test_canonical_landmarks_are_those_of_the_config(make_params) -> None:
    lm = OcclusionSpec.from_cfg(make_params().occlusion).landmarks
    assert np.array_equal(CANONICAL, [lm.left_eye, lm.right_eye, lm.nose, lm.mouth])


def test_sunglasses_and_mask_go_on_the_given_eyes_and_mouth() -> None:
    images = _faces(16, 48)

    def occlude(spec: OcclusionSpec, points: np.ndarray | None):
        rngs = [item_rng(0, f"f{i}", "occlude") for i in range(len(images))]
        return occlude_batch(images, rngs, spec, points=points)

    own = np.repeat(OWN[None], len(images), axis=0)
    glasses = _one("sunglasses", 0.12)
    canonical, placed = occlude(glasses, None), occlude(glasses, own)
    for eye in (0, 1):  # every draw (shades and band) covers the eyes it was given
        assert _covered(placed.masks, OWN[eye]).min() == 1.0
        assert _covered(placed.masks, CANONICAL[eye]).mean() < 0.25
        assert _covered(canonical.masks, CANONICAL[eye]).min() == 1.0
        assert _covered(canonical.masks, OWN[eye]).mean() < 0.25
    first = dataclasses.replace(_one("mask", 0.15), styles=(("mask", ("surgical", "scarf")),))
    canonical, placed = occlude(first, None), occlude(first, own)
    surgical = np.array(placed.styles) == "surgical"  # a scarf rises from the chin: no mouth
    assert surgical.sum() >= 5 and placed.styles == canonical.styles
    assert _covered(placed.masks[surgical], OWN[3]).min() == 1.0
    assert _covered(canonical.masks[surgical], OWN[3]).max() == 0.0
    assert _covered(canonical.masks, CANONICAL[3]).min() == 1.0
    for style in ("respirator", "cloth", "bandana", "gaiter"):  # at 0.25 every style is on it
        spec = dataclasses.replace(_one("mask", 0.25), styles=(("mask", (style,)),))
        canonical, placed = occlude(spec, None), occlude(spec, own)
        assert set(placed.styles) == {style}
        assert _covered(placed.masks, OWN[3]).min() == 1.0, style
        assert _covered(canonical.masks, CANONICAL[3]).min() == 1.0, style
        assert _covered(canonical.masks, CANONICAL[0]).max() == 0.0, style  # eyes free


def test_mask_styles_vary_and_the_first_two_draw_as_before() -> None:
    """Leaving a style out renormalises the others' weights over the same uniform (surgical
    0.3 and scarf 0.2 of six become 0.6 and 0.4: the split of the releases before the varied
    styles), and an image that draws the same style either way is drawn the same. The varied
    styles differ in height (nose coverage) and some wear ear loops: pixels covered beside the
    face, outside the mask's body."""
    images = _faces(400, 48, seed=2)
    rngs = [item_rng(5, f"f{i}", "occlude") for i in range(len(images))]
    every = occlude_batch(images, rngs, _one("mask", 0.25))
    assert set(every.styles) == set(OCCLUDERS["mask"].styles)
    rngs = [item_rng(5, f"f{i}", "occlude") for i in range(len(images))]
    first = occlude_batch(images, rngs, dataclasses.replace(
        _one("mask", 0.25), styles=(("mask", ("surgical", "scarf")),)))
    assert set(first.styles) == {"surgical", "scarf"}
    styles, kept = np.array(every.styles), np.array(first.styles)
    assert np.all(kept[styles == "surgical"] == "surgical")  # u < 0.3 lies in u < 0.6
    same = styles == kept
    assert same.sum() > 100 and np.array_equal(every.images[same], first.images[same])
    assert 0.5 < (kept == "surgical").mean() < 0.7
    varied = ~np.isin(styles, ["surgical", "scarf"])
    tops = np.argmax(every.masks[:, :, 18:30].any(axis=2), axis=1)  # first covered row, centre
    assert np.ptp(tops[varied]) >= 6  # px: some reach over the nose, some stay under it
    loops = every.masks[:, 14:21, :4].any(axis=(1, 2)) | every.masks[:, 14:21, -4:].any(
        axis=(1, 2))  # covered beside the cheeks, above the mouth: ear loops
    assert loops[np.isin(styles, ["respirator", "cloth"])].mean() > 0.2
    assert not loops[np.isin(styles, ["surgical", "scarf", "bandana", "gaiter"])].any()


def test_rows_without_points_are_occluded_exactly_as_before() -> None:
    spec = OcclusionSpec(TYPES, (1,) * len(TYPES), (0.1, 0.4), ("gray", "noise", "texture"))
    images = _faces(60, 48, seed=4)
    ids = [f"f{i:03d}" for i in range(len(images))]
    points = np.full((len(images), 4, 2), np.nan)
    points[::3] = OWN
    points[1::6, 2:] = OWN[2:]  # nose and mouth only: the canonical eyes
    given = np.isfinite(points).all(axis=2).any(axis=1)
    before = occlude_images(images, ids, 3, spec, chunk=16)
    after = occlude_images(images, ids, 3, spec, chunk=16, points=points)
    assert np.array_equal(after.images[~given], before.images[~given])
    assert np.array_equal(after.masks[~given], before.masks[~given])
    assert after.types == before.types and after.styles == before.styles
    region = np.isin(after.types, ["sunglasses", "mask", "hand", "hair"])
    assert not np.array_equal(after.masks[given & region], before.masks[given & region])
    nothing = occlude_images(images, ids, 3, spec, chunk=16,
                             points=np.full((len(images), 4, 2), np.nan))
    assert nothing.images.tobytes() == before.images.tobytes()
    aug = OcclusionAugment(spec, seed=2, p=0.8)
    placed = OcclusionAugment(spec, seed=2, p=0.8, points=points)
    rows = np.arange(len(images))[::-1]  # points are looked up by index
    (a, ma), (b, mb) = aug.batch(images, rows), placed.batch(images, rows)
    own = given[rows]
    assert np.array_equal(a[~own], b[~own]) and np.array_equal(ma[~own], mb[~own])
    assert not np.array_equal(ma[own], mb[own])


def test_bad_points_are_one_line() -> None:
    with pytest.raises(ValueError, match=r"points must be N×4×2 \(left_eye, right_eye, nose, "
                                         r"mouth; x, y as fractions of the side\) for 2 images, "
                                         r"got \(2, 2\)"):
        occlude_batch(_faces(2, 48), [np.random.default_rng(i) for i in range(2)],
                      _one("mask", 0.2), points=np.zeros((2, 2)))
