"""Paired training: clean faces beside their occluded twins, the consistency loss, weight EMA."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from occlufer.config import ConfigError, Params
from occlufer.training import TrainState
from occlufer.training.augment import paired_plan, pairs_in, twin_rows, warp
from occlufer.training.loop import consistency_loss, ema_state, load_ema, weight_ema
from tests.training.test_augment import _data
from tests.training.test_loop import _run, _same_weights


def test_twin_rows_invert_source() -> None:
    d = _data()
    twin = twin_rows(d.source)
    assert (twin[:20] == np.arange(20, 40)).all() and (twin[20:] == -1).all()


def test_paired_plan_puts_each_face_beside_its_twin_and_keeps_every_row() -> None:
    d = _data(40)
    # two extra rows without a partner: a clean face without a copy, a copy without its face
    source = np.r_[d.source, -1, -1]
    plan = paired_plan(source, 8, seed=0, epoch=1)
    rows = np.concatenate(plan)
    assert sorted(rows.tolist()) == list(range(42))  # every row once, none lost
    paired = [b for b in plan if pairs_in(b, source)]
    assert sum(len(b) for b in paired) == 40
    for b in paired:
        k = pairs_in(b, source)
        assert (source[b[k:]] == b[:k]).all() and (source[b[:k]] == -1).all()
    assert [b.tolist() for b in plan] == [b.tolist() for b in paired_plan(source, 8, 0, 1)]
    assert [b.tolist() for b in plan] != [b.tolist() for b in paired_plan(source, 8, 0, 2)]
    shards = [paired_plan(source, 8, 0, 1, rank=r, world=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1])


def test_pairs_in_rejects_a_batch_that_is_not_paired() -> None:
    d = _data()
    assert pairs_in(np.r_[0, 1, 20, 21], d.source) == 2
    assert pairs_in(np.r_[0, 1, 21, 20], d.source) == 0   # twins in the wrong order
    assert pairs_in(np.r_[0, 1, 20], d.source) == 0
    assert pairs_in(np.arange(4), d.source) == 0


def test_paired_warp_gives_a_face_and_its_twin_the_same_draw(params: Params) -> None:
    aug = replace(params.train.augment, flip=0.5, rotate=15, scale=[0.9, 1.1], translate=0.1,
                  brightness=0.2, contrast=0.3)
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    batch = torch.cat([x, x, torch.rand(1, 1, 48, 48)])  # 3 faces, their twins, one single
    m = torch.zeros(7, 1, 48, 48)
    out, _ = warp(batch, m, aug, seed=5, pairs=3)
    assert torch.allclose(out[:3], out[3:6])
    unpaired, _ = warp(batch, m, aug, seed=5)
    assert not torch.allclose(unpaired[:3], unpaired[3:6])
    assert torch.equal(unpaired[:3], out[:3])  # pairing copies draws, it draws nothing else


def test_consistency_loss_is_zero_for_equal_twins_and_only_pulls_the_occluded_side() -> None:
    clean = torch.randn(4, 7)
    logits = torch.cat([clean, clean]).requires_grad_()
    assert float(consistency_loss(logits, 4, 1.0).detach()) == pytest.approx(0.0, abs=1e-6)
    logits = torch.cat([clean, torch.randn(4, 7)]).requires_grad_()
    loss = consistency_loss(logits, 4, 2.0)
    assert float(loss.detach()) > 0
    loss.backward()
    assert torch.count_nonzero(logits.grad[:4]) == 0   # clean side detached
    assert torch.count_nonzero(logits.grad[4:]) > 0


def test_consistency_needs_pairs_and_pairs_exclude_occlude_clean(make_params) -> None:
    with pytest.raises(ConfigError, match="train.pair=true"):
        make_params("train.consistency=1")
    with pytest.raises(ConfigError, match="occlude_clean"):
        make_params("train.pair=true", "train.augment.occlude_clean=0.5")


def test_weight_ema_averages_and_copies_integer_buffers() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = weight_ema(model, decay=0.5)
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(4, 2))  # BN statistics and num_batches_tracked move
    ema.update_parameters(model)  # warmed-up decay after one update: min(0.5, 2/11)
    d = 2 / 11
    w = ema.module.state_dict()
    assert torch.allclose(w["0.weight"], d * before["0.weight"] + (1 - d) * model[0].weight)
    assert torch.allclose(w["1.running_mean"],
                          d * before["1.running_mean"] + (1 - d) * model[1].running_mean)
    assert torch.equal(w["1.num_batches_tracked"], model[1].num_batches_tracked)
    assert ema_state(ema)["updates"] == 1
    again = weight_ema(model, decay=0.5)
    load_ema(again, ema_state(ema))
    ema.update_parameters(model)
    again.update_parameters(model)  # the restored count gives the same decay: min(0.5, 3/12)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(),
                                                 again.module.state_dict().values(), strict=True))


PAIRED = ("model=compact", "model.width=8", "train.epochs=3", "train.pair=true",
          "train.consistency=1", "train.ema=0.9", "train.augment.fresh_occlusion=true",
          "train.augment.flip=0.5", "train.augment.rotate=10")


def test_paired_ema_training_is_deterministic_and_resumes_exactly(make_params,
                                                                  split_dir) -> None:
    params = make_params(*PAIRED)
    states: list[TrainState] = []
    full, result = _run(params, split_dir, states=states)
    assert all(h.train_consistency > 0 for h in result.history)
    again, _ = _run(params, split_dir)
    assert _same_weights(full, again)
    resumed, _ = _run(params, split_dir, state=states[0])
    assert _same_weights(full, resumed)
    # the kept weights are the EMA's, not the raw model's
    assert not all(torch.equal(states[-1].model[k], states[-1].extra["ema"]["model"][k])
                   for k in states[-1].model)
    plain, _ = _run(make_params("model=compact", "model.width=8", "train.epochs=3"), split_dir)
    assert not _same_weights(full, plain)
