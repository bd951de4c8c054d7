"""Score a model on labelled faces: the one function behind ``validate`` and ``occlufer
evaluate``. Writes ``metrics.json``, ``detail.json``, per-row predictions, DVC plot data
(``robustness.csv``, ``reliability_*.csv``), PNG plots and ``report.md``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from occlufer.config import ValidateCfg
from occlufer.data.store import Store
from occlufer.evaluation import plots
from occlufer.evaluation.calibration import expected_calibration_error, reliability
from occlufer.evaluation.metrics import bootstrap_ci, classification_metrics
from occlufer.evaluation.report import write_report
from occlufer.evaluation.robustness import gap_metrics, robustness_curves, stratified_subset
from occlufer.headline import write_metrics
from occlufer.occlusion import OcclusionSpec

#: the evaluation groups with a confusion matrix, reliability curve and ECE
GROUPS = ("val", "val_occluded")


@dataclass
class EvalSet:
    """Faces to score: images, class names, ids, and which rows are occluded (by what)."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    occluded: np.ndarray
    occluder: np.ndarray
    source: str

    @classmethod
    def from_store(cls, store: Store, source: str) -> EvalSet:
        """From an image store; rows without an ``occluded`` column count as clean."""
        m = store.manifest
        n = len(m)
        occluded = (m["occluded"].to_numpy(dtype=bool) if "occluded" in m
                    else np.zeros(n, dtype=bool))
        occluder = (m["occluder"].fillna("").astype(str).to_numpy() if "occluder" in m
                    else np.full(n, "", dtype=object))
        return cls(store.images, m["label"].astype(str).to_numpy(), m["id"].astype(str).tolist(),
                   occluded, np.where(occluded, occluder, ""), source)


def _ci(metrics: dict[str, float], key: str, scores: np.ndarray, cfg: ValidateCfg,
        seed: int) -> None:
    low, high = bootstrap_ci(scores, cfg.bootstrap, seed, key, cfg.ci_level)
    metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"] = float(low), float(high)


def evaluate(model: Any, meta: Mapping[str, Any], data: EvalSet, cfg: ValidateCfg,
             spec: OcclusionSpec, seed: int, out: Path, *, history: Path | None = None,
             config: Mapping[str, Any] | None = None, model_source: str = "") -> dict[str, float]:
    """Score ``model`` on ``data``, write the report folder ``out``; returns all the metrics:
    per group (``val``, ``val_occluded``, per occluder) metrics, intervals and ECE, then
    ``robustness/...`` and ``excluded/...`` (rows of a class the model lacks, left out)."""
    import torch

    from occlufer.devices import resolve_device
    from occlufer.models import predict_logits

    t0 = time.perf_counter()
    classes = list(meta["classes"])
    index = {c: i for i, c in enumerate(classes)}
    y_all = np.array([index.get(str(lab), -1) for lab in data.labels], dtype=np.int64)
    known = y_all >= 0
    device = resolve_device(cfg.device)
    tta, shift = bool(meta.get("tta_flip", False)), int(meta.get("tta_shift", 0))
    # ~50 passes: NHWC is 1.5-2× faster through oneDNN (benchmarks/eval_batch.py)
    fast = torch.channels_last if torch.backends.mkldnn.enabled else torch.contiguous_format
    model = model.to(device=device, memory_format=fast)

    def logits_of(images: np.ndarray) -> np.ndarray:
        return predict_logits(model, images, cfg.batch_size, device, tta_flip=tta,
                              tta_shift=shift)

    rows = np.flatnonzero(known)
    images = np.asarray(data.images[rows]) if len(rows) < len(data.images) else data.images
    y, ids = y_all[rows], np.asarray(data.ids, dtype=object)[rows]
    occluded, occluder = data.occluded[rows], data.occluder[rows]
    logits = logits_of(images) if len(rows) else np.zeros((0, len(classes)), np.float32)
    prob = softmax(logits.astype(np.float64), axis=1)
    pred = prob.argmax(axis=1)
    conf = prob.max(axis=1) if len(prob) else np.zeros(0)
    hit = pred == y
    out.mkdir(parents=True, exist_ok=True)

    metrics: dict[str, float] = {"excluded/n": float((~known).sum())}
    for name, count in pd.Series(data.labels[~known]).value_counts().sort_index().items():
        metrics[f"excluded/{name}/n"] = float(count)
    groups = {"val": ~occluded, "val_occluded": occluded}
    for kind in sorted(set(occluder[occluded])):
        groups[f"val_occluded/occluder/{kind}"] = occluded & (occluder == kind)
    names = np.asarray(classes)
    rel_tables: dict[str, pd.DataFrame] = {}
    for prefix, sel in groups.items():
        if not sel.any():
            continue
        metrics.update(classification_metrics(y[sel], pred[sel], classes, prefix))
        _ci(metrics, f"{prefix}/acc", hit[sel], cfg, seed)
        if prefix in GROUPS:
            metrics[f"{prefix}/ece"] = expected_calibration_error(conf[sel], hit[sel],
                                                                  cfg.ece_bins)
            rel_tables[prefix] = reliability(conf[sel], hit[sel], cfg.ece_bins)
            rel_tables[prefix].to_csv(out / f"reliability_{prefix}.csv", index=False)
            pd.DataFrame({"actual": names[y[sel]], "predicted": names[pred[sel]]}).to_csv(
                out / f"predictions_{prefix}.csv", index=False)
            plots.confusion_png(y[sel], pred[sel], classes, f"{prefix} (n={int(sel.sum())})",
                                out / f"confusion_{prefix}.png")
    if "val/acc" in metrics and "val_occluded/acc" in metrics:
        metrics["val/occlusion_drop"] = metrics["val/acc"] - metrics["val_occluded/acc"]
    pd.DataFrame({"id": ids, "label": names[y], "predicted": names[pred], "confidence": conf,
                  "occluded": occluded, "occluder": occluder}).to_csv(out / "predictions.csv",
                                                                      index=False)

    curves_table = None
    auc: dict[str, float] = {}
    clean = np.flatnonzero(~occluded)
    if len(clean) and cfg.robustness_types:
        sub = clean[stratified_subset(y[clean], cfg.robustness_max_faces, seed)]
        ratios = [float(r) for r in cfg.robustness_ratios]
        extra = float(cfg.gap_ratio) not in ratios
        curves = robustness_curves(lambda im: logits_of(im).argmax(axis=1), images[sub],
                                   ids[sub], y[sub], spec, seed, cfg.robustness_types,
                                   ratios + [float(cfg.gap_ratio)] if extra else ratios,
                                   clean_pred=pred[sub])
        metrics.update(gap_metrics(curves, hit[sub], cfg.gap_ratio))
        if extra:
            curves = curves.without(cfg.gap_ratio)
        curves_table = curves.table()
        curves_table.to_csv(out / "robustness.csv", index=False)
        auc = curves.auc()
        metrics["robustness/n"] = float(len(sub))
        for kind, value in auc.items():
            metrics[f"robustness/{kind}/auc"] = value
        metrics["robustness/mean_auc"] = float(np.mean(list(auc.values())))
        _ci(metrics, "robustness/mean_auc", curves.face_scores().mean(axis=1), cfg, seed)
        plots.robustness_png(curves_table, auc, out / "robustness.png")

    if rel_tables:
        plots.reliability_png(rel_tables, {g: metrics[f"{g}/ece"] for g in rel_tables},
                              out / "reliability.png")
    wrong = np.flatnonzero(~hit)
    top = wrong[np.argsort(-conf[wrong], kind="stable")][: cfg.mistakes]
    if len(top):
        caps = [f"{names[y[i]]}\n>{names[pred[i]]} {conf[i]:.2f}"
                + ("\n" + occluder[i] if occluded[i] else "") for i in top]
        plots.mistakes_png([np.asarray(images[i]) for i in top], caps, out / "mistakes.png")
    if history is not None and history.is_file():
        plots.training_png(pd.read_csv(history), out / "training.png")
    write_metrics(out, metrics)
    write_report(out, metrics, classes=classes, curves=curves_table, auc=auc,
                 config=config or {}, data_source=data.source, model_source=model_source)
    print(f"evaluate: {len(rows)} faces scored, {int(metrics.get('robustness/n', 0))} "
          f"re-occluded for the robustness curves, in {time.perf_counter() - t0:.1f} s")
    return metrics
