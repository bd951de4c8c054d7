"""Training batches: seeded plans, DDP sharding, fresh occlusions, the torch warp."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from occlufer.config import Params
from occlufer.training.augment import (
    BatchSource,
    TrainArrays,
    epoch_plan,
    ramped,
    source_rows,
    warp,
)


def _data(n: int = 40, size: int = 48) -> TrainArrays:
    rng = np.random.default_rng(0)
    clean = rng.integers(60, 200, (n // 2, size, size), dtype=np.uint8)
    images = np.concatenate([clean, clean])  # rows n/2.. are "occluded copies" of 0..n/2
    ids = np.array([f"f{i}" for i in range(n // 2)] + [f"f{i}#occ" for i in range(n // 2)])
    src = np.array([f"f{i}" for i in range(n // 2)] * 2)
    occluded = np.arange(n) >= n // 2
    return TrainArrays(images=images, labels=np.arange(n) % 7, occluded=occluded,
                       source=source_rows(ids, src, occluded),
                       masks=np.zeros(images.shape, dtype=bool))


def test_source_rows_point_at_the_clean_face() -> None:
    d = _data()
    assert (d.source[:20] == -1).all() and (d.source[20:] == np.arange(20)).all()


def test_epoch_plan_is_a_seeded_permutation_and_shards_evenly() -> None:
    one = epoch_plan(103, 10, seed=0, epoch=1)
    assert sorted(np.concatenate(one)) == list(range(103))
    assert [b.tolist() for b in one] == [b.tolist() for b in epoch_plan(103, 10, 0, 1)]
    assert [b.tolist() for b in one] != [b.tolist() for b in epoch_plan(103, 10, 0, 2)]
    shards = [epoch_plan(103, 10, 0, 1, rank=r, world=3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    rows = np.concatenate([np.concatenate(s) for s in shards])
    assert len(set(rows.tolist())) == len(rows)  # no row on two ranks


def test_fresh_occlusion_redraws_occluded_rows_every_epoch(params: Params) -> None:
    d = _data()
    aug = replace(params.train.augment, fresh_occlusion=True)
    plan = [np.arange(len(d))]
    e1 = BatchSource(d, plan, 1, 0, aug, params.occlusion)[0]
    e1_again = BatchSource(d, plan, 1, 0, aug, params.occlusion)[0]
    e2 = BatchSource(d, plan, 2, 0, aug, params.occlusion)[0]
    images1, labels1, masks1 = (t.numpy() for t in e1)
    assert np.array_equal(images1, e1_again[0].numpy())  # reproducible
    assert np.array_equal(images1[:20], d.images[:20])   # clean rows untouched
    assert np.array_equal(labels1, d.labels)
    occ = masks1[20:].astype(bool)
    assert occ.reshape(20, -1).any(1).all()              # every occluded row has a mask
    assert not masks1[:20].any()
    changed = images1[20:] != d.images[20:]
    assert (changed <= occ).all()                        # pixels change only under the mask
    assert not np.array_equal(images1[20:], e2[0].numpy()[20:])  # new draw next epoch


def test_same_batches_with_and_without_workers(params: Params) -> None:
    d = _data()
    aug = replace(params.train.augment, fresh_occlusion=True, occlude_clean=0.5)
    src = BatchSource(d, epoch_plan(len(d), 8, 0, 1), 1, 0, aug, params.occlusion)
    direct = [src[b][0].numpy() for b in range(len(src))]
    loader = torch.utils.data.DataLoader(src, batch_size=None, num_workers=2)
    via_workers = [b[0].numpy() for b in loader]
    assert all(np.array_equal(a, b) for a, b in zip(direct, via_workers, strict=True))


def test_fresh_occlusions_drawn_ahead_equal_batch_by_batch(params: Params) -> None:
    d = _data(60)
    aug = replace(params.train.augment, fresh_occlusion=True)
    plan = epoch_plan(len(d), 4, 0, 2)
    ahead = BatchSource(d, plan, 2, 0, aug, params.occlusion)
    single = BatchSource(d, plan, 2, 0, aug, params.occlusion)
    single.group = 1
    for b in (0, 1, 7, 2, 14, 13, 3):  # out of order too: a missing batch starts a new group
        for a, c in zip(ahead[b], single[b], strict=True):
            assert torch.equal(a, c)
    first = ahead[4]
    assert not torch.equal(first[0], torch.from_numpy(d.images[plan[4]]))  # really re-drawn


def test_warp_flip_mirrors_faces_and_masks(params: Params) -> None:
    aug = replace(params.train.augment, flip=1.0, rotate=0.0, scale=[1.0, 1.0], translate=0.0,
                  brightness=0.0, contrast=0.0)
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    m = torch.zeros(3, 1, 48, 48)
    m[..., :10] = 1
    x2, m2 = warp(x, m, aug, seed=0)
    assert torch.allclose(x2, torch.flip(x, dims=[3]), atol=1e-5)
    assert torch.equal(m2, torch.flip(m, dims=[3]))


def test_warp_is_seeded_and_keeps_range(params: Params) -> None:
    aug = replace(params.train.augment, flip=0.5, rotate=15.0, scale=[0.8, 1.2], translate=0.1,
                  brightness=0.3, contrast=0.3)
    x = torch.rand(16, 1, 48, 48) * 2 - 1
    m = (torch.rand(16, 1, 48, 48) > 0.5).float()
    a, ma = warp(x, m, aug, seed=5)
    b, mb = warp(x, m, aug, seed=5)
    c, _ = warp(x, m, aug, seed=6)
    assert torch.equal(a, b) and torch.equal(ma, mb) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert set(torch.unique(ma).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("field,value", [("rotate", 10.0), ("brightness", 0.2)])
def test_warp_identity_when_off(params: Params, field: str, value: float) -> None:
    off = replace(params.train.augment, flip=0.0, rotate=0.0, scale=[1.0, 1.0], translate=0.0,
                  brightness=0.0, contrast=0.0)
    x = torch.rand(4, 1, 48, 48) * 2 - 1
    m = torch.zeros(4, 1, 48, 48)
    assert torch.equal(warp(x, m, off, 0)[0], x)
    assert not torch.equal(warp(x, m, replace(off, **{field: value}), 0)[0], x)


def test_augmentation_warmup_ramps_geometry_and_photometry_only(params: Params) -> None:
    full = replace(params.train.augment, flip=0.5, rotate=12.0, scale=[0.8, 1.2], translate=0.1,
                   brightness=0.2, contrast=0.4, fresh_occlusion=True, warmup_epochs=4)
    first, mid, done = ramped(full, 1), ramped(full, 3), ramped(full, 5)
    assert (first.rotate, first.scale, first.translate, first.brightness, first.contrast) == (
        0.0, [1.0, 1.0], 0.0, 0.0, 0.0)
    assert mid.rotate == pytest.approx(6.0) and mid.scale == pytest.approx([0.9, 1.1])
    assert mid.translate == pytest.approx(0.05) and mid.contrast == pytest.approx(0.2)
    assert done == full and ramped(replace(full, warmup_epochs=0), 1) == replace(
        full, warmup_epochs=0)
    for a in (first, mid, done):  # flips and fresh occlusions are never ramped
        assert a.flip == 0.5 and a.fresh_occlusion
    x = torch.rand(6, 1, 48, 48) * 2 - 1
    m = torch.zeros(6, 1, 48, 48)
    warped, _ = warp(x, m, replace(first, flip=0.0), seed=3)
    assert torch.equal(warped, x)  # epoch 1 of the warm-up leaves the faces as they are
