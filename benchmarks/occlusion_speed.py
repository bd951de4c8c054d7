"""Occlusion speed: offline (the occlude stage on FER2013-sized data) and online (augmentation).

    python benchmarks/occlusion_speed.py [--fer /work/shared/datasets/fer2013] [--n 32298]

Offline: 32k 48×48 faces (FER2013 JPGs when the folder exists, else synthetic faces) through
``occlude_images`` with the default mixture, 1 and 2 worker processes, and each type alone.
Online: one seed_cnn training epoch (batch 64, CPU) with and without ``OcclusionAugment``
(p = 0.5, the patent's 1:1 clean/occluded mix) applied to every batch.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from occlufer.config import load_params  # noqa: E402
from occlufer.occlusion import TYPES, OcclusionAugment, OcclusionSpec, occlude_images  # noqa: E402
from occlufer.preprocess import to_input  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def faces(fer: Path, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if fer.is_dir():
        from PIL import Image

        files = sorted(fer.rglob("*.jpg"))[:n]
        classes = sorted({f.parent.name for f in files})
        images = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
        labels = np.array([classes.index(f.parent.name) for f in files])
        return images, labels, f"FER2013 JPGs from {fer}"
    from occlufer.data.synthetic import SyntheticSpec, generate

    images, labels, _ = generate(SyntheticSpec(n_per_class=n // 7 + 1, n_subjects=60, size=48,
                                               intensity=(0.35, 1.0), noise=0.04), 0)
    return images[:n], labels[:n], "synthetic faces"


def offline(images: np.ndarray, spec: OcclusionSpec, workers: int, reps: int = 2,
            ) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) — best of ``reps``."""
    ids = [f"img-{i:06d}" for i in range(len(images))]
    best, best_cpu = np.inf, np.inf
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        occlude_images(images, ids, 0, spec, workers=workers)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return len(images) / best, len(images) / best_cpu


def epoch(images: np.ndarray, labels: np.ndarray, aug: OcclusionAugment | None,
          batch: int = 64) -> tuple[float, float]:
    """(epoch seconds, seconds of it spent in the augmentation)."""
    from occlufer.models import build_model

    torch.manual_seed(0)
    model = build_model("seed_cnn", num_classes=7, image_size=48, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    y = torch.as_tensor(labels, dtype=torch.long)
    order = np.random.default_rng(0).permutation(len(images))
    t0, in_aug = time.perf_counter(), 0.0
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        x = images[idx]
        if aug is not None:
            ta = time.perf_counter()
            x, _ = aug.batch(x, idx, epoch=0)
            in_aug += time.perf_counter() - ta
        opt.zero_grad()
        loss = loss_fn(model(to_input(x)), y[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, in_aug


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fer", type=Path, default=Path("/work/shared/datasets/fer2013"))
    ap.add_argument("--n", type=int, default=32298)
    ap.add_argument("--epoch-n", type=int, default=8000, help="faces per timed training epoch")
    ap.add_argument("--per-type", action="store_true", help="also time each type alone")
    args = ap.parse_args()
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
               platform.processor())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"hardware: {cores} cores, {cpu}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    images, labels, what = faces(args.fer, args.n)
    print(f"data: {len(images)} {images.shape[1]}x{images.shape[2]} {what}")
    spec = OcclusionSpec.from_cfg(load_params(ROOT / "params.yaml").occlusion)
    print(f"default mixture: {dict(zip(spec.types, spec.weights, strict=True))}, "
          f"ratio {spec.ratio}")
    for workers in (1, 2):
        wall, cpu = offline(images, spec, workers)
        extra = f" ({cpu:,.0f} per CPU second)" if workers == 1 else ""
        print(f"offline, default mixture, {workers} worker(s): {wall:,.0f} images/s{extra}")
    print(f"offline, patent block only, 2 workers: {offline(images, spec.only('block'), 2)[0]:,.0f}"
          " images/s")
    if args.per_type:
        sub = images[:4000]
        for kind in TYPES:
            print(f"  {kind:15s} 1 worker: {offline(sub, spec.only(kind), 1, 1)[0]:,.0f} images/s")
    sub, sub_y = images[:args.epoch_n], labels[:args.epoch_n]
    aug = OcclusionAugment(spec, seed=0, p=0.5, pool=sub)
    epoch(sub[:512], sub_y[:512], None)  # warm-up
    plain, with_aug, share = [], [], []
    for _ in range(3):  # interleaved, so that load from other processes hits both alike
        plain.append(epoch(sub, sub_y, None)[0])
        total, in_aug = epoch(sub, sub_y, aug)
        with_aug.append(total)
        share.append(in_aug / (total - in_aug))
    p, a = min(plain), min(with_aug)
    print(f"online, seed_cnn epoch of {len(sub)} faces, batch 64, CPU: {p:.2f} s without, "
          f"{a:.2f} s with OcclusionAugment(p=0.5) -> {100 * (a / p - 1):+.1f}% time; "
          f"augmentation itself = {100 * min(share):.1f}% of the rest of the epoch")


if __name__ == "__main__":
    main()
