"""Ablation of the training recipe: what each ingredient buys at the same budget.

    python benchmarks/recipe_ablation.py [--fer ../shared/datasets/fer2013] [--epochs 8]
        [--variants baseline,pair,pair_cons,pair_cons_ema] [--n 0] [--out FILE.csv]

Protocol (issue "Close the occlusion gap"): every choice is made on a validation split carved
from FER2013 Training; PublicTest is the test set, scored once per variant and never used for a
choice.

- train: FER2013 Training minus the val faces, plus one occluded copy of each (the default
  mixture, re-drawn every epoch: ``fresh_occlusion``), the FER2013 CPU recipe's settings
  (model, optimiser, schedule, augmentation, bf16 where the CPU has it) for ``--epochs`` epochs;
- val: a seeded, class-stratified 10 % of FER2013 Training and one occluded copy of each; the
  epoch kept is the best ``val_mixed/acc``;
- test: every PublicTest face clean, then every PublicTest face re-occluded by each occluder
  type at ratio 0.25 (``validate``'s robustness draw; ``mask``: the first two mask styles, as
  before the varied ones; ``mask_varied``: the four varied ones). The gap of a type is clean
  accuracy minus that accuracy on the same faces, in points.

Variants differ only in the named ``train`` keys (or the occluders or mask styles trained on,
or the model: :data:`MODELS`;
a ``teacher`` named by a variant is that variant's kept model, ``--save-dir/<variant>.pt``);
the data, seed, epochs and everything else are the same. ``--rescore`` trains nothing and
scores each variant's kept model again (e.g. on a test set added since); its rows leave
``epochs`` and ``train_faces`` empty (the model file does not say) and name the model file's
architecture. Each finished variant
appends one row to ``--out`` (CSV), so a long ablation can run variant by variant.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from _common import fer_folder, hardware, mixed_train_arrays  # noqa: E402

from occlufer.config import compose, parse_params  # noqa: E402
from occlufer.data.split import group_split  # noqa: E402
from occlufer.labels import CLASSES  # noqa: E402
from occlufer.models import build_model, load_model, save_model  # noqa: E402
from occlufer.occlusion import OcclusionSpec, occlude_images  # noqa: E402
from occlufer.training import ValArrays, fit  # noqa: E402
from occlufer.training.distill import announce, load_teacher, teacher_accuracy  # noqa: E402
from occlufer.training.loop import predict_logits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GAP_RATIO = 0.25
FIRST_MASKS = ("surgical", "scarf")  # the mask styles before the varied ones (2026-11-29)
VARIED_MASKS = ("respirator", "cloth", "bandana", "gaiter")
#: test set → (occluder, the styles it draws; None = all). ``mask`` is the first two styles, so
#: its column stays comparable with the rows measured before the varied masks existed
TEST_SETS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "block": ("block", None), "sunglasses": ("sunglasses", None), "mask": ("mask", FIRST_MASKS),
    "mask_varied": ("mask", VARIED_MASKS), "hand": ("hand", None), "hair": ("hair", None),
    "polygon": ("polygon", None), "strokes": ("strokes", None)}
TEST_TYPES = tuple(TEST_SETS)

#: name → (train overrides, occluder weights set to 0 in training, mask styles trained on
#: (None: the recipe's, all six since 2026-11-29))
VARIANTS: dict[str, tuple[dict[str, Any], tuple[str, ...], tuple[str, ...] | None]] = {
    "baseline": ({}, (), None),
    "pair": ({"pair": True}, (), None),
    "pair_cons": ({"pair": True, "consistency": 1.0}, (), None),
    "pair_cons3": ({"pair": True, "consistency": 3.0}, (), None),
    "pair_cons_t2": ({"pair": True, "consistency": 1.0, "consistency_temperature": 2.0}, (),
                     None),
    "ema": ({"ema": 0.999}, (), None),
    "pair_cons_ema": ({"pair": True, "consistency": 1.0, "ema": 0.999}, (), None),
    "cutmix": ({"mix": "cutmix"}, (), None),
    "mixup": ({"mix": "mixup"}, (), None),
    "cutmix_ema": ({"mix": "cutmix", "ema": 0.999}, (), None),
    "baseline_no_mask": ({}, ("mask",), None),
    "pair_cons_no_mask": ({"pair": True, "consistency": 1.0}, ("mask",), None),
    # the baseline of the rows before 2026-11-29: masks of the first two styles only
    "first_masks": ({}, (), FIRST_MASKS),
    # the first two mask styles held out: trained on the varied ones only
    "varied_masks": ({}, (), VARIED_MASKS),
    # distilled from the baseline's kept model (same net, data and budget: a teacher that saw
    # nothing the student does not; run `baseline` first): each face and its occluded copy
    # learn towards the teacher's output on the clean face (train.teacher / train.distill)
    "distill": ({"teacher": "baseline", "distill": 0.5}, (), None),
    "distill_t4": ({"teacher": "baseline", "distill": 0.9, "distill_temperature": 4.0}, (),
                   None),
    # the occlusion-aware head (model occ_resnet, MODELS below) with the paired loss, at the
    # CPU budget (give it --epochs for the same minutes as the baseline: it is slower per face)
    "occ_resnet_pair": ({"pair": True, "consistency": 1.0}, (), None),
}
#: variants that change the model too: ``model`` keys over the recipe's (compact, width 32)
MODELS: dict[str, dict[str, Any]] = {
    "occ_resnet_pair": {"name": "occ_resnet", "width": 32, "blocks": [1, 1, 1, 1],
                        "mask_loss": 0.5},
}


def occluded_test_sets(faces: np.ndarray, spec: OcclusionSpec, seed: int,
                       sets: tuple[str, ...] = TEST_TYPES) -> dict[str, np.ndarray]:
    """The test faces re-occluded by each test set's occluder at ``GAP_RATIO`` (``validate``'s
    draw, with the set's styles)."""
    ids = [f"test-{i}" for i in range(len(faces))]
    out = {}
    for name in sets:
        kind, styles = TEST_SETS[name]
        one = replace(spec.only(kind), ratio=(GAP_RATIO, GAP_RATIO),
                      styles=spec.styles if styles is None else ((kind, styles),))
        out[name] = occlude_images(faces, ids, seed, one, purpose="robustness").images
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fer", type=Path, default=ROOT.parent / "shared/datasets/fer2013")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--variants", default="baseline,pair,pair_cons,pair_cons_ema")
    ap.add_argument("--n", type=int, default=0, help="use only the first N training faces "
                    "(a seeded permutation; 0 = all), for a quick look")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--out", type=Path, default=ROOT / "reports/ablation/recipe_ablation.csv")
    ap.add_argument("--save-dir", type=Path, default=ROOT / "reports/ablation/models",
                    help="each variant's kept model goes to DIR/<variant>.pt (a model.pt, "
                         "for `occlufer evaluate --model` or a later test-time look)")
    ap.add_argument("--rescore", action="store_true",
                    help="train nothing: score each variant's kept model (DIR/<variant>.pt) "
                         "on the test sets, e.g. after a test set was added")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    hw = hardware()
    print(f"hardware: {hw}", flush=True)
    base = parse_params(compose(["experiment=fer2013_cpu"], ROOT / "conf"))
    images, labels = fer_folder(args.fer / "train")
    if args.n:
        keep = np.sort(np.random.default_rng(0).permutation(len(images))[:args.n])
        images, labels = images[keep], labels[keep]
    import pandas as pd

    is_val = group_split(pd.Series(labels), pd.Series(np.arange(len(labels))),
                         args.val_fraction, base.seed)
    tr_img, tr_lab = images[~is_val], labels[~is_val]
    va_img, va_lab = images[is_val], labels[is_val]
    spec = OcclusionSpec.from_cfg(base.occlusion)
    va_occ = occlude_images(va_img, [f"val-{i}" for i in range(len(va_img))], base.seed + 1,
                            spec, purpose="ablation-val")
    val = ValArrays(np.concatenate([va_img, va_occ.images]), np.r_[va_lab, va_lab],
                    np.r_[np.zeros(len(va_img), bool), np.ones(len(va_img), bool)])
    te_img, te_lab = fer_folder(args.fer / "val")
    test_sets = occluded_test_sets(te_img, spec, base.seed)
    print(f"data: {len(tr_img)} train faces (+ occluded copies), {len(va_img)} val faces "
          f"(+ copies), {len(te_img)} test faces (PublicTest); {args.epochs} epochs of the "
          "FER2013 CPU recipe's settings", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        overrides, held_out, mask_styles = VARIANTS[name]
        occlusion = base.occlusion
        if held_out:
            occlusion = replace(occlusion, types={t: (0.0 if t in held_out else w)
                                                  for t, w in occlusion.types.items()})
        if mask_styles:
            occlusion = replace(occlusion, styles={**occlusion.styles, "mask": list(mask_styles)})
        cfg = replace(base.train, epochs=args.epochs, **overrides)
        m = replace(base.model, **MODELS.get(name, {}))
        path = args.save_dir / f"{name}.pt"
        if args.rescore:  # the kept model of an earlier run, scored on today's test sets
            model, meta = load_model(path)
            best_epoch, best_score, minutes, rate = meta.get("epoch", ""), "", "", ""
            arch, epochs, faces = str(meta["name"]), "", ""  # what trained it is not known here
        else:
            data = mixed_train_arrays(tr_img, tr_lab, occlusion)
            if cfg.teacher:  # another variant's kept model
                cfg = replace(cfg, teacher=str(args.save_dir / f"{cfg.teacher}.pt"))
                teacher = load_teacher(cfg.teacher, list(CLASSES), 48)
                data.teacher = teacher.logits(data, torch.device("cpu"))
                print(announce(cfg.teacher, teacher.meta, teacher_accuracy(data.teacher, data)),
                      flush=True)
            torch.manual_seed(base.seed)
            model = build_model(m.name, num_classes=len(CLASSES), image_size=48,
                                dropout=m.dropout, width=m.width, blocks=m.blocks)
            t0 = time.perf_counter()
            result = fit(model, data, val, cfg, m, occlusion, base.seed, torch.device("cpu"))
            minutes = round((time.perf_counter() - t0) / 60, 1)
            best_epoch, best_score = result.best_epoch, round(result.best_score, 4)
            rate = round(float(np.mean([h.img_per_s for h in result.history])))
            arch, epochs, faces = m.name, args.epochs, len(tr_img)
            args.save_dir.mkdir(parents=True, exist_ok=True)
            save_model(path, model, name=m.name, classes=CLASSES, image_size=48,
                       dropout=m.dropout, arch={"width": m.width, "blocks": m.blocks},
                       tta_flip=cfg.tta_flip, epoch=result.best_epoch)

        def acc(x: np.ndarray) -> float:
            logits = predict_logits(model, x, 256, torch.device("cpu"), cfg.tta_flip)
            return float((logits.argmax(1) == te_lab).mean())

        clean = acc(te_img)
        row = {"variant": name, "epochs": epochs, "train_faces": faces,
               "held_out": "+".join(held_out) or "-",
               "mask_styles": "-" if "mask" in held_out else "+".join(
                   mask_styles or occlusion.styles["mask"]),
               **{k: v for k, v in overrides.items()},
               "model": arch, "params": sum(p.numel() for p in model.parameters()),
               "best_epoch": best_epoch, "val_mixed_acc": best_score,
               "test_clean": round(clean, 4)}
        for kind in TEST_TYPES:
            row[f"gap_{kind}"] = round(100 * (clean - acc(test_sets[kind])), 1)
        row["mean_gap_4"] = round(float(np.mean([row[f"gap_{k}"] for k in
                                                 ("block", "sunglasses", "mask", "hand")])), 2)
        row["minutes"] = minutes
        row["img_per_s"] = rate
        row["hardware"] = hw
        print(" ".join(f"{k}={v}" for k, v in row.items() if k != "hardware"), flush=True)
        fields = ["variant", "model", "params", "epochs", "train_faces", "held_out",
                  "mask_styles", "pair",
                  "consistency", "consistency_temperature", "ema", "mix", "teacher", "distill",
                  "distill_temperature", "best_epoch",
                  "val_mixed_acc", "test_clean", *[f"gap_{k}" for k in TEST_TYPES],
                  "mean_gap_4", "minutes", "img_per_s", "hardware"]
        append_row(args.out, fields, row)


def append_row(out: Path, fields: list[str], row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV ``out``; rows written with fewer columns are kept (the file is
    rewritten with the new header when variants gained a column)."""
    old: list[dict[str, str]] = []
    if out.is_file():
        with out.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames == fields:
                with out.open("a", newline="") as g:
                    csv.DictWriter(g, fieldnames=fields, extrasaction="ignore").writerow(row)
                return
            old = list(reader)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows([*old, row])


if __name__ == "__main__":
    main()
