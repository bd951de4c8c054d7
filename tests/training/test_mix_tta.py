"""Batch mixing (mixup / CutMix) and test-time views (flip, shifts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from occlufer.config import ConfigError
from occlufer.models import build_model, predict_logits, save_model
from occlufer.preprocess import WithViews, to_input, tta_views
from occlufer.training import TrainState
from occlufer.training.augment import mix_batch
from tests.training.test_loop import _run, _same_weights


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 48, 48, generator=g) * 2 - 1, torch.zeros(n, 1, 48, 48)


def test_cutmix_pastes_one_rectangle_and_lam_is_the_share_kept() -> None:
    x, m = _batch()
    m[3] = 1.0  # face 3 is fully occluded: its mask travels with its pixels
    mixed = next(r for s in range(50)
                 if (r := mix_batch(x, m, "cutmix", 1.0, 1.0, seed=s)).lam < 0.9)
    assert mixed.perm is not None and sorted(mixed.perm.tolist()) == list(range(8))
    for i in range(8):
        j = int(mixed.perm[i])
        changed = mixed.x[i] != x[i]
        if j == i:
            assert not changed.any()
            continue
        own = (1 - changed.float().mean()).item()
        assert own == pytest.approx(mixed.lam, abs=1e-6)  # the pasted area is 1 - lam
        ys, xs = torch.nonzero(changed[0], as_tuple=True)
        box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        assert changed[0][box].all()  # one rectangle
        assert torch.equal(mixed.x[i, 0][box], x[j, 0][box])
        assert torch.equal(mixed.masks[i, 0][box], m[j, 0][box])
    again = next(r for s in range(50) if (r := mix_batch(x, m, "cutmix", 1.0, 1.0, s)).lam < 0.9)
    assert torch.equal(mixed.x, again.x)  # drawn from the seed alone


def test_mixup_blends_whole_faces_and_prob_zero_or_none_leave_the_batch() -> None:
    x, m = _batch()
    mixed = mix_batch(x, m, "mixup", 1.0, 0.4, seed=3)
    assert mixed.perm is not None and 0 < mixed.lam < 1
    assert torch.allclose(mixed.x, mixed.lam * x + (1 - mixed.lam) * x[mixed.perm])
    for mode, prob in (("cutmix", 0.0), ("none", 1.0)):
        same = mix_batch(x, m, mode, prob, 1.0, seed=3)
        assert same.perm is None and same.lam == 1.0 and same.x is x
    # about half of the batches are mixed at prob 0.5
    share = np.mean([mix_batch(x, m, "cutmix", 0.5, 1.0, s).perm is not None
                     for s in range(400)])
    assert 0.4 < share < 0.6


def test_mixing_is_refused_with_paired_batches(make_params) -> None:
    with pytest.raises(ConfigError, match=r"train\.mix"):
        make_params("train.pair=true", "train.mix=cutmix")
    with pytest.raises(ConfigError, match=r"train\.mix"):
        make_params("train.mix=blend")


def test_cutmix_training_is_deterministic_resumes_and_differs(make_params, split_dir) -> None:
    base = ("model=compact", "model.width=8", "train.epochs=2")
    params = make_params(*base, "train.mix=cutmix", "train.mix_prob=1.0")
    states: list[TrainState] = []
    full, _ = _run(params, split_dir, states=states)
    assert _same_weights(full, _run(params, split_dir)[0])
    assert _same_weights(full, _run(params, split_dir, state=states[0])[0])
    assert not _same_weights(full, _run(make_params(*base), split_dir)[0])


def test_tta_views_shift_by_whole_pixels_with_replicated_edges() -> None:
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    assert len(tta_views(x)) == 1 and len(tta_views(x, flip=True)) == 2
    views = tta_views(x, flip=True, shift=1)
    assert len(views) == 10
    up = views[1]  # content moved down by one row: row 0 repeats the edge
    assert torch.equal(up[..., 1:, :], x[..., :-1, :]) and torch.equal(up[..., 0, :], x[..., 0, :])
    left = views[3]
    assert torch.equal(left[..., :, 1:], x[..., :, :-1])
    assert torch.equal(views[5], torch.flip(x, dims=[3]))


def test_predictors_and_predict_logits_average_the_same_views(tmp_path: Path) -> None:
    from occlufer.inference.predictor import torch_predictor

    torch.manual_seed(0)
    model = build_model("compact", num_classes=7, image_size=48, dropout=0.0, width=8).eval()
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    logits = predict_logits(model, faces, 4, torch.device("cpu"), tta_flip=True, tta_shift=2)
    plain = predict_logits(model, faces, 4, torch.device("cpu"))
    assert not np.allclose(logits, plain, atol=1e-4)
    with torch.no_grad():
        wrapped = WithViews(model, True, 2)(to_input(faces)).numpy()
    np.testing.assert_allclose(wrapped, logits, atol=1e-5)
    save_model(tmp_path / "model.pt", model, name="compact", classes=[str(i) for i in range(7)],
               image_size=48, dropout=0.0, arch={"width": 8}, tta_flip=True, tta_shift=2)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    np.testing.assert_allclose(torch_predictor(tmp_path / "model.pt").predict_proba(faces),
                               probs, atol=1e-4)
    bare = torch_predictor(tmp_path / "model.pt", tta=False).predict_proba(faces)
    np.testing.assert_allclose(bare, torch.softmax(torch.from_numpy(plain), 1).numpy(),
                               atol=1e-4)


def test_an_onnx_export_carries_the_models_test_time_views(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from occlufer.inference.export import export_onnx
    from occlufer.inference.predictor import onnx_predictor, torch_predictor
    from occlufer.models import load_model

    torch.manual_seed(1)
    model = build_model("compact", num_classes=7, image_size=48, dropout=0.0, width=8).eval()
    save_model(tmp_path / "model.pt", model, name="compact", classes=[str(i) for i in range(7)],
               image_size=48, dropout=0.0, arch={"width": 8}, tta_flip=True, tta_shift=1)
    export_onnx(*load_model(tmp_path / "model.pt"), tmp_path / "m.onnx")
    faces = np.random.default_rng(1).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(onnx_predictor(tmp_path / "m.onnx").predict_proba(faces),
                               torch_predictor(tmp_path / "model.pt").predict_proba(faces),
                               atol=1e-4)


@pytest.mark.parametrize("name", ["seed_cnn", "compact"])
def test_logits_do_not_depend_on_the_batch_size(name: str) -> None:
    """The val pass scores 64 faces at a time on a CPU (``loop.eval_batch``), validate
    ``validate.batch_size``: the batch size may change the speed and a logit's last bits (the
    matrix products block by the batch), not which face gets which logits."""
    from occlufer.training.loop import eval_batch

    torch.manual_seed(0)
    model = build_model(name, num_classes=7, image_size=48)
    faces = np.random.default_rng(0).integers(0, 256, (150, 48, 48), dtype=np.uint8)
    cpu = torch.device("cpu")
    ref = predict_logits(model, faces, 256, cpu, tta_flip=True)
    assert np.abs(ref - ref[::-1]).min(axis=1).max() > 1e-4  # rows differ: a mix-up would show
    for batch in (eval_batch(cpu, 64), 7):
        got = predict_logits(model, faces, batch, cpu, tta_flip=True)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert eval_batch(cpu, 512) == 64 and eval_batch(torch.device("cuda"), 512) == 512
