"""Fine-tuning vs training from scratch on a few labelled faces per class.

    python benchmarks/finetune.py [--init zoo:fer2013 | --init path/to/model.pt]
        [--fer ../shared/datasets/fer2013] [--per-class 100,500] [--epochs 12]
        [--freeze-epochs 2] [--select-per-class 50] [--device auto]

For each size in ``--per-class``: a seeded, class-stratified subset of FER2013 Training with that
many faces per class (fewer where a class has fewer; the subsets are nested), plus one occluded
copy of each face (the default mixture), trained twice at the same budget: from the ``--init``
model (its trunk, and its head when it has the same classes; trunk frozen for the first
``--freeze-epochs`` epochs) and from scratch (same architecture, seed, epochs and settings:
those of ``conf/experiment/finetune_folder.yaml``, the one-command fine-tuning recipe). The
architecture is the ``--init`` model's. The epoch is selected by ``val_mixed/acc`` on
``--select-per-class`` other Training faces per class (and their occluded copies); the table
reports accuracy on FER2013 PublicTest (``val/``), clean and with one occluded copy per face,
and the ``--init`` model as it is (no training) when it has the same classes.

Caveat: ``zoo:fer2013`` was trained on all of FER2013 Training, so on FER2013 its rows are an
optimistic bound, not transfer to new faces; for that, pass ``--fer`` another dataset in the
same layout (``train/<class>/*.jpg``, ``val/<class>/*.jpg``) or an ``--init`` model trained
elsewhere.
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
from occlufer.devices import resolve_device  # noqa: E402
from occlufer.errors import OccluferError  # noqa: E402
from occlufer.inference.predictor import resolve_model_file  # noqa: E402
from occlufer.labels import CLASSES  # noqa: E402
from occlufer.models import build_model, load_model  # noqa: E402
from occlufer.occlusion import OcclusionSpec, occlude_images  # noqa: E402
from occlufer.training import ValArrays, fit  # noqa: E402
from occlufer.training.init import load_init, read_saved, trunk_freezer  # noqa: E402
from occlufer.training.loop import predict_logits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]



def picks(labels: np.ndarray, sizes: list[int], select: int, seed: int = 0,
          ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Nested per-class subsets of each size, and a disjoint selection set (``select``/class)."""
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(np.flatnonzero(labels == c)) for c in range(len(CLASSES))]
    chosen = np.sort(np.concatenate([p[:select] for p in perms]))
    subsets = {n: np.sort(np.concatenate([p[select:select + n] for p in perms])) for n in sizes}
    return subsets, chosen


def with_occluded(images: np.ndarray, labels: np.ndarray, occlusion, seed: int,
                  purpose: str) -> ValArrays:
    """Each face plus one occluded copy (the configured mixture), seeded per face."""
    spec = OcclusionSpec.from_cfg(occlusion)
    occ = occlude_images(images, [f"{purpose}-{i}" for i in range(len(images))], seed, spec,
                         purpose=purpose)
    return ValArrays(np.concatenate([images, occ.images]), np.r_[labels, labels],
                     np.r_[np.zeros(len(images), bool), np.ones(len(images), bool)])


def accuracy(model, data: ValArrays, device: torch.device, tta_flip: bool) -> tuple[float, float]:
    hit = predict_logits(model, data.images, 256, device, tta_flip).argmax(1) == data.labels
    return float(hit[~data.occluded].mean()), float(hit[data.occluded].mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", default="zoo:fer2013",
                    help="zoo:NAME, a model.pt path or an MLflow runs:/ or models:/ URI")
    ap.add_argument("--fer", type=Path, default=ROOT.parent / "shared/datasets/fer2013")
    ap.add_argument("--per-class", default="100,500", help="training faces per class, sizes")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs of each run (default: the finetune_folder recipe's)")
    ap.add_argument("--freeze-epochs", type=int, default=None,
                    help="frozen-trunk epochs when fine-tuning (default: the recipe's)")
    ap.add_argument("--select-per-class", type=int, default=50,
                    help="other Training faces per class that select the epoch")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = ap.parse_args()
    sizes = [int(n) for n in args.per_class.split(",")]
    try:
        pt = resolve_model_file(args.init)
        meta = read_saved(args.init, pt)
    except OccluferError as exc:
        raise SystemExit(f"--init: {exc}") from None
    base = parse_params(compose(["experiment=finetune_folder", f"acquire.path={args.fer}"],
                                ROOT / "conf"))
    arch = meta.get("arch") or {}
    model_cfg = replace(base.model, name=meta["name"], width=arch.get("width"),
                        blocks=arch.get("blocks"), dropout=float(meta["dropout"]))
    cfg = replace(base.train, init_from=args.init,
                  epochs=args.epochs if args.epochs is not None else base.train.epochs,
                  freeze_epochs=(args.freeze_epochs if args.freeze_epochs is not None
                                 else base.train.freeze_epochs))
    size = int(meta["image_size"])
    device = resolve_device(args.device)
    print(f"hardware: {hardware()}")

    images, labels = fer_folder(args.fer / "train", size)
    subsets, chosen = picks(labels, sizes, args.select_per_class, base.seed)
    select = with_occluded(images[chosen], labels[chosen], base.occlusion, base.seed + 2,
                           "finetune-select")
    test_images, test_labels = fer_folder(args.fer / "val", size)
    test = with_occluded(test_images, test_labels, base.occlusion, base.seed + 1,
                         "finetune-test")
    print(f"model: {meta['name']} {arch} from {args.init} ({pt}), classes {meta['classes']}; "
          f"{cfg.epochs} epochs (fine-tuning: trunk frozen for {cfg.freeze_epochs}), "
          f"lr {cfg.lr}, {cfg.optimizer}, {cfg.schedule}; selection: {len(chosen)} other "
          f"Training faces + occluded copies; test: {len(test_images)} PublicTest faces + "
          f"occluded copies", flush=True)

    rows = []
    if sorted(meta["classes"]) == sorted(CLASSES):
        as_is, _ = load_model(pt)
        order = [list(meta["classes"]).index(c) for c in CLASSES]
        hit = predict_logits(as_is.to(device), test.images, 256, device, cfg.tta_flip)
        hit = hit[:, order].argmax(1) == test.labels
        rows.append(("0", f"{args.init} as is", float(hit[~test.occluded].mean()),
                     float(hit[test.occluded].mean()), 0.0))
    for n in sizes:
        pick = subsets[n]
        data = mixed_train_arrays(images[pick], labels[pick], base.occlusion)
        for label, init in ((f"fine-tuned from {args.init}", True), ("from scratch", False)):
            torch.manual_seed(base.seed)
            model = build_model(model_cfg.name, num_classes=len(CLASSES), image_size=size,
                                dropout=model_cfg.dropout, **arch)
            run_cfg = cfg if init else replace(cfg, init_from=None, freeze_epochs=0)
            hook = None
            if init:
                load_init(model, args.init, name=model_cfg.name, classes=CLASSES,
                          image_size=size, arch=arch, path=pt)
                hook = trunk_freezer(model, run_cfg.freeze_epochs)
            t0 = time.perf_counter()
            fit(model, data, select, run_cfg, model_cfg, base.occlusion, base.seed, device,
                before_epoch=hook)
            minutes = (time.perf_counter() - t0) / 60
            clean, occluded = accuracy(model, test, device, run_cfg.tta_flip)
            rows.append((str(n), label, clean, occluded, minutes))
            print(f"{n}/class {label}: clean {clean:.3f} occluded {occluded:.3f} "
                  f"({minutes:.1f} min)", flush=True)

    print(f"\nhardware: {hardware()}\n")
    print("| train faces/class | model | PublicTest clean acc | PublicTest occluded acc | "
          "train minutes |")
    print("|---:|---|---:|---:|---:|")
    for n, label, clean, occluded, minutes in rows:
        print(f"| {n} | {label} | {clean:.3f} | {occluded:.3f} | {minutes:.1f} |")
    print(f"\n(faces/class: the requested size; a class with fewer faces, e.g. disgust, gives "
          f"all of its; + one occluded copy each; epoch selected by val_mixed/acc on "
          f"{args.select_per_class} other Training faces/class)")


if __name__ == "__main__":
    main()
