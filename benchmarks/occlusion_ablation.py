"""Ablation: what the occlusion-aware head (``occ_resnet``) buys over the plain ``resnet``.

    python benchmarks/occlusion_ablation.py [--fer ../shared/datasets/fer2013] [--n 8000]
        [--epochs 10] [--width 16] [--blocks 1,1,1,1]

Same data, same budget: the three models share the trunk (``model.width``, ``model.blocks``),
the training settings of the FER2013 CPU recipe (AdamW + cosine, label smoothing, flip/affine/
photometric augmentation with its warm-up, fresh occlusions every epoch, bf16 where the CPU has
it), the seed and the epochs; only the head differs:

- ``resnet``: global average pooling;
- ``occ_resnet``, ``mask_loss=0``: region attention learnt from the labels alone;
- ``occ_resnet``, ``mask_loss=0.5``: region attention supervised by the occlusion masks.

Train: ``--n`` FER2013 Training faces (a seeded, class-stratified subset) plus one occluded
copy each (the default mixture); val: every PublicTest face plus one occluded copy each. Prints
clean and occluded val accuracy, and the accuracy per occluder type, for each model.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from _common import fer_folder, hardware, mixed_train_arrays  # noqa: E402

from occlufer.config import compose, parse_params  # noqa: E402
from occlufer.labels import CLASSES  # noqa: E402
from occlufer.models import build_model  # noqa: E402
from occlufer.occlusion import OcclusionSpec, occlude_images  # noqa: E402
from occlufer.training import ValArrays, fit  # noqa: E402
from occlufer.training.loop import predict_logits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]



def stratified(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A seeded subset of about ``n`` rows with the class proportions of ``labels``."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:round(n * np.mean(labels == c))]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fer", type=Path, default=ROOT.parent / "shared/datasets/fer2013")
    ap.add_argument("--n", type=int, default=8000, help="clean training faces")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--blocks", default="1,1,1,1")
    args = ap.parse_args()
    print(f"hardware: {hardware()}")
    blocks = [int(b) for b in args.blocks.split(",")]
    base = parse_params(compose(["experiment=fer2013_cpu"], ROOT / "conf"))
    train_cfg = replace(base.train, epochs=args.epochs)
    images, labels = fer_folder(args.fer / "train")
    pick = stratified(labels, args.n)
    data = mixed_train_arrays(images[pick], labels[pick], base.occlusion)
    val_images, val_labels = fer_folder(args.fer / "val")
    spec = OcclusionSpec.from_cfg(base.occlusion)
    occ = occlude_images(val_images, [f"val-{i}" for i in range(len(val_images))], base.seed + 1,
                         spec, purpose="ablation-val")
    val = ValArrays(np.concatenate([val_images, occ.images]), np.r_[val_labels, val_labels],
                    np.r_[np.zeros(len(val_images), bool), np.ones(len(val_images), bool)])
    kinds = np.asarray(occ.types)
    print(f"data: {len(data)} train rows ({len(pick)} FER2013 Training faces + occluded copies), "
          f"{len(val.images)} val rows (PublicTest + occluded copies); trunk width {args.width}, "
          f"blocks {blocks}; {args.epochs} epochs of the FER2013 CPU recipe's settings")
    header = f"{'model':28s} {'clean':>6s} {'occl.':>6s} " + " ".join(
        f"{k[:10]:>10s}" for k in spec.types) + "   minutes"
    rows = []
    for name, mask_loss in (("resnet", 0.0), ("occ_resnet", 0.0), ("occ_resnet", 0.5)):
        model_cfg = replace(base.model, name=name, width=args.width, blocks=blocks,
                            mask_loss=mask_loss)
        torch.manual_seed(base.seed)
        model = build_model(name, num_classes=len(CLASSES), image_size=48,
                            dropout=model_cfg.dropout, width=args.width, blocks=blocks)
        t0 = time.perf_counter()
        fit(model, data, val, train_cfg, model_cfg, base.occlusion, base.seed,
            torch.device("cpu"))
        minutes = (time.perf_counter() - t0) / 60
        hit = predict_logits(model, val.images, 256, torch.device("cpu"),
                             train_cfg.tta_flip).argmax(1) == val.labels
        clean, occluded = hit[~val.occluded], hit[val.occluded]
        per = [occluded[kinds == k].mean() for k in spec.types]
        label = f"{name} (mask_loss {mask_loss})" if name == "occ_resnet" else name
        rows.append(f"{label:28s} {clean.mean():6.3f} {occluded.mean():6.3f} "
                    + " ".join(f"{a:10.3f}" for a in per) + f"   {minutes:7.1f}")
        print(rows[-1], flush=True)
    print("\nselected epoch by val_mixed/acc; accuracy on val (clean PublicTest faces, their "
          "occluded copies, and those copies by occluder type)")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
