"""Headline metrics vs. detail. ``metrics.json`` (DVC's and MLflow's metrics) holds the headline
in display order: per split (val, then test) clean/occluded accuracy, ECE, macro-F1, mean AUC,
intervals; then each occluder's gap of the last split. ``detail.json`` holds the rest.
"""

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HEADLINE_FILE = "metrics.json"
DETAIL_FILE = "detail.json"
#: (clean, occluded, robustness) key prefixes of each split, val first
SPLITS = (("val", "val_occluded", "robustness"), ("test", "test_occluded", "test_robustness"))


def _core(clean: str, occluded: str, rob: str) -> list[str]:
    return [f"{clean}/acc", f"{occluded}/acc", f"{clean}/ece", f"{clean}/macro_f1",
            f"{rob}/mean_auc", f"{clean}/acc_ci_low", f"{clean}/acc_ci_high",
            f"{occluded}/acc_ci_low", f"{occluded}/acc_ci_high"]


def _gaps(metrics: Mapping[str, Any], rob: str) -> list[str]:
    return sorted(k for k in metrics
                  if k.startswith(f"{rob}/") and k.endswith("/gap") and k.count("/") == 2)


def headline_keys(metrics: Mapping[str, Any]) -> list[str]:
    """The headline keys present in ``metrics``, most important first."""
    keys = [k for split in SPLITS for k in _core(*split) if k in metrics]
    gaps = [g for g in (_gaps(metrics, rob) for _, _, rob in SPLITS) if g]
    return keys + (gaps[-1] if gaps else [])


def split_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headline in display order, detail sorted by key): every key in exactly one."""
    head = {k: metrics[k] for k in headline_keys(metrics)}
    return head, {k: metrics[k] for k in sorted(metrics) if k not in head}


def write_metrics(out: Path, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``out/metrics.json`` (the headline) and ``out/detail.json``; returns the headline."""
    head, detail = split_metrics(metrics)
    (out / HEADLINE_FILE).write_text(json.dumps(head, indent=2) + "\n", encoding="utf-8")
    (out / DETAIL_FILE).write_text(json.dumps(detail, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")
    return head


def fmt(x: Any, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; ``–`` for None or NaN."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def summary_markdown(metrics: Mapping[str, Any], gap_ratio: float | None = None) -> str:
    """The headline as a few Markdown lines (the MLflow run description), one per split."""
    g, f = metrics.get, fmt
    lines = []
    for clean, occluded, rob in SPLITS:
        if f"{clean}/acc" not in metrics:
            continue
        line = (f"**{clean}**: accuracy **{f(g(f'{clean}/acc'))}** "
                f"[{f(g(f'{clean}/acc_ci_low'))}, {f(g(f'{clean}/acc_ci_high'))}]")
        if f"{occluded}/acc" in metrics:
            line += (f", occluded {f(g(f'{occluded}/acc'))} [{f(g(f'{occluded}/acc_ci_low'))}"
                     f", {f(g(f'{occluded}/acc_ci_high'))}]")
        line += f", macro-F1 {f(g(f'{clean}/macro_f1'))}, ECE {f(g(f'{clean}/ece'))}"
        if f"{rob}/mean_auc" in metrics:
            line += f", robustness mean AUC {f(g(f'{rob}/mean_auc'))}"
        gaps = ", ".join(f"{k.split('/')[1]} {100 * metrics[k]:.1f}" for k in _gaps(metrics, rob))
        if gaps:
            line += f"; gap at{f' {gap_ratio:g}' if gap_ratio is not None else ''} (points): {gaps}"
        lines.append(line + ".")
    return "\n\n".join(lines)
