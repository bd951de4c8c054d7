"""The CUDA paths (marker ``gpu``): bf16 autocast + channels_last training, CUDA inference
against the CPU, an NCCL process group. Skipped with a reason on a machine without a CUDA
device; on one, run them with ``python -m pytest -m gpu``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from occlufer.models import build_model
from occlufer.training import distributed as dist
from occlufer.training import fit, predict_logits
from occlufer.training.loop import _all_sum, autocast_dtype
from tests.servers import free_port
from tests.training.test_loop import _arrays

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA device (none visible to torch)")]
CUDA = torch.device("cuda")


def _model(params):
    torch.manual_seed(params.seed)
    return build_model(params.model.name, num_classes=7, image_size=48,
                       dropout=params.model.dropout, width=params.model.width,
                       blocks=params.model.blocks)


def test_training_on_cuda_uses_bf16_and_channels_last(make_params, split_dir) -> None:
    params = make_params("model=occ_resnet", "model.width=8", "model.blocks=[1,1]",
                         "train.epochs=2", "train.device=cuda", "train.amp=true", "portable=false",
                         "train.augment.fresh_occlusion=true", "train.pair=true",
                         "train.consistency=1")
    assert autocast_dtype(params.train, CUDA) is torch.bfloat16
    model = _model(params)
    train, val = _arrays(split_dir)
    result = fit(model, train, val, params.train, params.model, params.occlusion, params.seed,
                 CUDA)
    assert [h.epoch for h in result.history] == [1, 2]
    assert all(math.isfinite(h.train_loss) and 0 <= h.val_acc <= 1 for h in result.history)
    conv = next(p for p in model.parameters() if p.ndim == 4)
    assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)


def test_cuda_inference_matches_the_cpu(make_params) -> None:
    params = make_params("model.width=8")
    model = _model(params).eval()
    images = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    cpu = predict_logits(model, images, 32, torch.device("cpu"), tta_flip=True)
    gpu = predict_logits(model.to(CUDA), images, 32, CUDA, tta_flip=True)
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)


def test_an_nccl_process_group_sums_across_processes(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    device = dist.setup("cuda")
    try:
        assert torch.distributed.get_backend() == "nccl" and device.type == "cuda"
        assert _all_sum([1.0, 2.0], device) == [1.0, 2.0]  # world 1: returned as they are
        t = torch.ones(3, device=device)
        torch.distributed.all_reduce(t)
        assert t.tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.teardown()
