"""Occlusion speed: offline (the occlude stage on FER2013-sized data) and online (augmentation).

    python benchmarks/occlusion_speed.py [--fer /work/shared/datasets/fer2013] [--n 32298]

Offline: 32k 48×48 faces (FER2013 JPGs when the folder exists, else synthetic faces) through
``occlude_images`` with the default mixture, 1 and 2 worker processes, and each type alone.
Online: one epoch of the real training loop (``occlufer.training.fit``) on ``--epoch-n`` faces
plus one occluded copy each (the patent's 1:1 mix), with and without fresh occlusions every
epoch (``train.augment.fresh_occlusion``; everything else equal), for the tutorial model with
the default training settings and for the FER2013 CPU recipe.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from _common import epoch_img_per_s, fer_faces, hardware, mixed_train_arrays  # noqa: E402

from occlufer.config import compose, load_params, parse_params  # noqa: E402
from occlufer.occlusion import TYPES, OcclusionSpec, occlude_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def faces(fer: Path, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    if fer.is_dir():
        return *fer_faces(sorted(fer.rglob("*.jpg"))[:n]), f"FER2013 JPGs from {fer}"
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


def online(images: np.ndarray, labels: np.ndarray, overrides: list[str], reps: int = 2,
           ) -> tuple[float, float, int]:
    """(img/s without, img/s with fresh occlusions, rows): best of ``reps``, interleaved."""
    params = parse_params(compose(overrides, ROOT / "conf"))
    data = mixed_train_arrays(images, labels, params.occlusion)
    on = replace(params.train.augment, fresh_occlusion=True)
    off = replace(params.train.augment, fresh_occlusion=False)
    without, with_ = [], []
    for _ in range(reps):  # interleaved, so that load from other processes hits both alike
        without.append(epoch_img_per_s(params, data, augment=off))
        with_.append(epoch_img_per_s(params, data, augment=on))
    return max(without), max(with_), len(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fer", type=Path, default=Path("/work/shared/datasets/fer2013"))
    ap.add_argument("--n", type=int, default=32298)
    ap.add_argument("--epoch-n", type=int, default=6000,
                    help="clean faces in the timed training epoch (plus as many occluded)")
    ap.add_argument("--per-type", action="store_true", help="also time each type alone")
    args = ap.parse_args()
    print(f"hardware: {hardware()}")
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
    recipe = ("FER2013 CPU recipe (compact width 32, batch 128, bf16 where the CPU has it, "
              "flip/affine/photometric on)")
    for what, overrides in (("seed_cnn, default train settings (batch 64, fp32)", []),
                            (recipe, ["experiment=fer2013_cpu"])):
        without, with_, rows = online(sub, sub_y, overrides)
        print(f"online, {what}: one epoch of {rows} rows, {without:,.0f} img/s without fresh "
              f"occlusions, {with_:,.0f} img/s with -> {100 * (without / with_ - 1):+.1f}% time",
              flush=True)


if __name__ == "__main__":
    main()
