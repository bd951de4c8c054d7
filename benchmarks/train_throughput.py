"""Training and inference throughput per model, and what the real training loop achieves.

    python benchmarks/train_throughput.py [--models compact,resnet] [--seconds 5] [--loop-n 8000]

1. Ceiling: forward+backward+SGD step on a random batch already in memory (no data path), and
   batched inference (eval, no grad), for each model in ``conf/model/`` with its own settings.
   On CUDA: bf16 autocast + channels_last, as ``train.amp`` does.
2. Loop: one epoch of :func:`occlufer.training.fit` on ``--loop-n`` synthetic faces plus their
   occluded copies, once without augmentation and once with the FER2013 recipe's augmentation
   (flip, affine, brightness/contrast and fresh occlusions every epoch): the loop's img/s
   against the ceiling, and what augmentation costs.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from _common import epoch_img_per_s, hardware, mixed_train_arrays  # noqa: E402

from occlufer.config import compose, parse_params  # noqa: E402
from occlufer.models import MODELS, build_model  # noqa: E402
from occlufer.training.loop import cpu_native_bf16  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def model_params(name: str):
    """Parameters with ``conf/model/<name>.yaml`` (the model's own width, blocks, dropout)."""
    return parse_params(compose([f"model={name}"], ROOT / "conf"))


def _timed(step, batch: int, seconds: float) -> float:
    for _ in range(2):
        step()
    sync()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        n += batch
    sync()
    return n / (time.perf_counter() - t0)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def ceiling(name: str, device: torch.device, batch: int, seconds: float, bf16: bool,
            ) -> tuple[float, float, int]:
    """(train img/s, inference img/s, parameters) for model ``name`` with its conf defaults.

    ``bf16``: autocast + channels_last, as ``train.amp`` (CUDA) / ``train.cpu_amp`` (CPU) do.
    """
    p = model_params(name)
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, image_size=48, dropout=p.model.dropout,
                        width=p.model.width, blocks=p.model.blocks).to(device)
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, 1, 48, 48, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 7, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()

    model.train()
    train_rate = _timed(train_step, batch, seconds)
    model.eval()
    xi = torch.randn(batch * 2, 1, 48, 48, device=device).contiguous(memory_format=fmt)

    @torch.no_grad()
    def infer_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(xi)

    infer_rate = _timed(infer_step, batch * 2, seconds)
    return train_rate, infer_rate, sum(q.numel() for q in model.parameters())


def loop_epoch(name: str, n: int, augment: bool, device: torch.device, batch: int,
               workers: int, bf16: bool) -> float:
    """img/s of one real training epoch on n synthetic faces + n occluded copies."""
    from occlufer.data.synthetic import SyntheticSpec, generate

    recipe = parse_params(compose(["experiment=fer2013_cpu"], ROOT / "conf"))
    recipe = replace(recipe, model=model_params(name).model)  # the model's own conf settings
    images, labels, _ = generate(SyntheticSpec(n_per_class=n // 7 + 1, n_subjects=60, size=48,
                                               intensity=(0.35, 1.0), noise=0.04), 0)
    data = mixed_train_arrays(images[:n], labels[:n], recipe.occlusion)
    aug = recipe.train.augment if augment else replace(
        recipe.train.augment, flip=0.0, rotate=0.0, scale=[1.0, 1.0], translate=0.0, brightness=0.0,
        contrast=0.0, fresh_occlusion=False, occlude_clean=0.0)
    return epoch_img_per_s(recipe, data, device.type, batch_size=batch, augment=aug,
                           workers=workers, amp=bf16, cpu_amp=bf16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(sorted(MODELS)))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--loop-n", type=int, default=8000, help="clean faces in the loop epoch")
    ap.add_argument("--loop-models", default="compact", help="models for the loop epoch")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers in the loop")
    args = ap.parse_args()
    print(f"hardware: {hardware()}")
    modes = [(torch.device("cpu"), False)] + ([(torch.device("cpu"), True)]
                                              if cpu_native_bf16() else [])
    if torch.cuda.is_available():
        modes.append((torch.device("cuda"), True))
    for device, bf16 in modes:
        batch = 128 if device.type == "cpu" else 512
        how = "bf16 autocast + channels_last" if bf16 else "fp32"
        print(f"\n{device.type}, {how}: ceiling (random batch of {batch} in memory, SGD step; "
              f"inference batch {2 * batch})")
        for name in args.models.split(","):
            tr, inf, npar = ceiling(name, device, batch, args.seconds, bf16)
            print(f"  {name:11s} {npar / 1e6:5.2f}M params  train {tr:9,.0f} img/s  "
                  f"inference {inf:10,.0f} img/s", flush=True)
        for name in filter(None, args.loop_models.split(",")):
            plain = loop_epoch(name, args.loop_n, False, device, batch, args.workers, bf16)
            aug = loop_epoch(name, args.loop_n, True, device, batch, args.workers, bf16)
            print(f"  loop {name}: one epoch of {2 * args.loop_n} faces, batch {batch}, "
                  f"{args.workers} workers: {plain:,.0f} img/s plain, {aug:,.0f} img/s with "
                  f"the recipe's augmentation ({100 * (plain / aug - 1):+.1f}% time)",
                  flush=True)


if __name__ == "__main__":
    main()
