"""Test-time averaging: what each set of views buys a trained model, on FER2013 PublicTest.

    python benchmarks/tta_ablation.py MODEL.pt [MODEL.pt ...] [--fer ../shared/datasets/fer2013]
        [--views none,flip,flip+shift1,flip+shift2] [--types block,sunglasses,mask,hand]

Scores each model (a ``model.pt``: ``models/model.pt``, ``zoo:fer2013``, an experiment's
model) on every PublicTest face, clean and re-occluded by each type at ratio 0.25 (the draw of
``validate``; ``--types`` from ``_common.TEST_SETS``, e.g. ``mask_varied``), once per set of
views: ``none`` (the face), ``flip`` (and its mirror), ``flip+shiftN`` (and the four shifts by
N pixels, 10 views; ``shiftN`` without the mirrors: 5).
Nothing is trained, so the views are the only difference; faces/s is this machine's
inference speed with those views (batch 256).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from _common import GAP_RATIO, ROOT, fer_folder, hardware, occluded_test_sets  # noqa: E402

from occlufer.config import compose, parse_params  # noqa: E402
from occlufer.inference.predictor import resolve_model  # noqa: E402
from occlufer.models import load_model  # noqa: E402
from occlufer.occlusion import OcclusionSpec  # noqa: E402
from occlufer.training.loop import predict_logits  # noqa: E402


def parse_views(name: str) -> tuple[bool, int]:
    """``none`` / ``flip`` / ``shiftN`` / ``flip+shiftN`` → (flip, shift)."""
    flip, shift = False, 0
    for part in name.split("+"):
        if part == "flip":
            flip = True
        elif part.startswith("shift") and part[5:].isdigit():
            shift = int(part[5:])
        elif part != "none":
            raise SystemExit(f"--views: unknown view set {name!r}; use none, flip, shiftN or "
                             "flip+shiftN")
    return flip, shift


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--fer", type=Path, default=ROOT.parent / "shared/datasets/fer2013")
    ap.add_argument("--views", default="none,flip,flip+shift1,flip+shift2")
    ap.add_argument("--types", default="block,sunglasses,mask,hand")
    args = ap.parse_args()
    views = [(v, *parse_views(v)) for v in args.views.split(",")]
    types = tuple(args.types.split(","))
    print(f"hardware: {hardware()}", flush=True)
    base = parse_params(compose(["experiment=fer2013_cpu"], ROOT / "conf"))
    faces, labels = fer_folder(args.fer / "val")
    sets = {"clean": faces, **occluded_test_sets(faces, OcclusionSpec.from_cfg(base.occlusion),
                                                 base.seed, types)}
    print(f"{len(faces)} PublicTest faces; gaps at ratio {GAP_RATIO}, in points below clean\n")
    print("| model | views | test clean | " + " | ".join(types) + " | mean gap | faces/s |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in types) + " | --- | --- |")
    device = torch.device("cpu")
    for ref in args.models:
        model, _ = load_model(resolve_model(ref).torch_file(), map_location="cpu")
        model = model.to(memory_format=torch.channels_last).eval()
        for name, flip, shift in views:
            t0 = time.perf_counter()
            acc = {k: float((predict_logits(model, x, 256, device, flip, shift).argmax(1)
                             == labels).mean()) for k, x in sets.items()}
            speed = len(faces) * len(sets) / (time.perf_counter() - t0)
            gaps = [100 * (acc["clean"] - acc[t]) for t in types]
            print(f"| {ref} | {name} | {acc['clean']:.4f} | "
                  + " | ".join(f"{g:.1f}" for g in gaps)
                  + f" | {np.mean(gaps):.2f} | {speed:.0f} |", flush=True)


if __name__ == "__main__":
    main()
