"""The epoch loop: resume equals an uninterrupted run, early stopping, best epoch, schedules."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from occlufer.config import Params
from occlufer.data.store import read_store
from occlufer.models import build_model
from occlufer.training import TrainState, ValArrays, fit
from occlufer.training.augment import label_codes, train_arrays
from occlufer.training.loop import _scheduler


def _arrays(split_dir):
    tr, va = read_store(split_dir / "train"), read_store(split_dir / "val")
    val = ValArrays(va.images, label_codes(va.manifest),
                    va.manifest["occluded"].to_numpy(dtype=bool))
    return train_arrays(tr), val


def _run(params: Params, split_dir, state: TrainState | None = None, states: list | None = None):
    torch.manual_seed(params.seed)
    model = build_model(params.model.name, num_classes=7, image_size=48,
                        dropout=params.model.dropout, width=params.model.width,
                        blocks=params.model.blocks)
    train, val = _arrays(split_dir)

    def keep(stats, st):
        if states is not None:
            states.append(copy.deepcopy(st))

    result = fit(model, train, val, params.train, params.model, params.occlusion, params.seed,
                 torch.device("cpu"), state=state, on_epoch=keep)
    return model, result


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


AUGMENTED = ("model=occ_resnet", "model.width=8", "model.blocks=[1,1]", "train.epochs=3",
             "train.augment.fresh_occlusion=true", "train.augment.flip=0.5",
             "train.augment.rotate=10", "train.augment.brightness=0.2", "train.schedule=cosine",
             "train.warmup_epochs=0.5", "train.optimizer=sgd", "train.lr=0.05",
             "train.label_smoothing=0.1", "model.dropout=0.2")


def test_resuming_from_any_epoch_ends_like_an_uninterrupted_run(make_params, split_dir) -> None:
    params = make_params(*AUGMENTED)
    states: list[TrainState] = []
    full, full_result = _run(params, split_dir, states=states)
    assert [s.epoch for s in states] == [1, 2, 3]
    resumed, result = _run(params, split_dir, state=states[0])
    assert _same_weights(full, resumed)
    assert [h.val_mixed_acc for h in result.history] == [
        h.val_mixed_acc for h in full_result.history]
    assert [h.train_loss for h in result.history] == [h.train_loss for h in full_result.history]
    assert result.best_epoch == full_result.best_epoch


def test_model_ends_with_the_best_epochs_weights(make_params, split_dir) -> None:
    params = make_params("train.epochs=3")
    states: list[TrainState] = []
    model, result = _run(params, split_dir, states=states)
    scores = [h.val_mixed_acc for h in result.history]
    assert result.best_epoch == int(np.argmax(scores)) + 1
    best = states[-1].best_model
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)


def test_early_stopping_stops_after_patience(make_params, split_dir) -> None:
    # a learning rate of ~0 never improves after epoch 1: stops after 1 + patience epochs
    params = make_params("train.epochs=6", "train.early_stopping=2", "train.lr=1e-12",
                         "train.monitor=val/acc")
    states: list[TrainState] = []
    _, result = _run(params, split_dir, states=states)
    assert len(result.history) == 3 and states[-1].stopped
    # resuming a stopped run trains nothing more
    _, again = _run(params, split_dir, state=states[-1])
    assert len(again.history) == 3


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
def test_schedules_peak_at_lr_and_cosine_decays(params: Params, schedule: str) -> None:
    cfg = replace(params.train, lr=0.1, schedule=schedule, epochs=4, warmup_epochs=1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = _scheduler(opt, cfg, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(0.1, rel=1e-3)
    assert lrs[0] < 0.1                        # warm-up (onecycle: its own)
    if schedule != "constant":
        assert lrs[-1] < 0.01                  # decays to ~0
    else:
        assert lrs[-1] == pytest.approx(0.1)


def test_cpu_amp_trains_in_bf16_where_the_cpu_has_it(make_params, split_dir, monkeypatch,
                                                      capsys) -> None:
    from occlufer.training.loop import autocast_dtype, cpu_native_bf16

    params = make_params("model=compact", "model.width=8", "train.epochs=1",
                         "train.cpu_amp=true", "portable=false")
    cpu = torch.device("cpu")
    assert autocast_dtype(replace(params.train, cpu_amp=False), cpu) is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert autocast_dtype(params.train, cpu) is None  # emulated bf16 would be slower than fp32
    assert "no native bf16" in capsys.readouterr().out
    monkeypatch.undo()
    if not cpu_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16/AMX)")
    assert autocast_dtype(params.train, cpu) == torch.bfloat16
    a, result = _run(params, split_dir)
    b, _ = _run(params, split_dir)
    fp32, _ = _run(replace(params, train=replace(params.train, cpu_amp=False)), split_dir)
    assert _same_weights(a, b)  # bf16 on the CPU is deterministic too
    assert not _same_weights(a, fp32)  # and really ran in bf16
    assert np.isfinite(result.history[0].train_loss)


def test_every_monitor_names_an_epoch_statistic() -> None:
    """``train.monitor`` choices (config.MONITORS) are read from EpochStats by "/" -> "_"."""
    import dataclasses

    from occlufer.config import MONITORS
    from occlufer.training import EpochStats
    from occlufer.training.loop import Selection

    fields = {f.name for f in dataclasses.fields(EpochStats)}
    for monitor in MONITORS:
        assert monitor.replace("/", "_") in fields, monitor
        stats = EpochStats(1, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.0, 0.0)
        sel = Selection(monitor)
        sel.update(stats, torch.nn.Linear(1, 1))
        assert sel.best_score == getattr(stats, monitor.replace("/", "_"))
