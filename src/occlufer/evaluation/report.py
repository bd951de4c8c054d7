"""``report.md``: the page to share — headline table with intervals, plots, configuration."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from occlufer.headline import fmt as _f


def _row(metrics: Mapping[str, float], prefix: str, label: str) -> str:
    m = metrics.get
    ci = f"[{_f(m(f'{prefix}/acc_ci_low'))}, {_f(m(f'{prefix}/acc_ci_high'))}]"
    return (f"| {label} | {int(m(f'{prefix}/n', 0))} | **{_f(m(f'{prefix}/acc'))}** | {ci} | "
            f"{_f(m(f'{prefix}/macro_f1'))} | {_f(m(f'{prefix}/ece'))} |")


def write_report(out: Path, metrics: Mapping[str, float], *, classes: Sequence[str],
                 curves: pd.DataFrame | None, auc: Mapping[str, float],
                 config: Mapping[str, Any], data_source: str, model_source: str) -> Path:
    """Write ``out/report.md`` (images linked relative to it) and return its path."""
    level = config.get("validate", {}).get("ci_level", 0.95) if config else 0.95
    lines = ["# Validation report", "",
             f"Model: `{model_source}` · data: `{data_source}`.",
             "", "## Headline", "",
             f"Accuracy with its {level:.0%} bootstrap interval over faces; ECE = expected "
             "calibration error (0 = confidence matches accuracy).", "",
             "| faces | n | accuracy | interval | macro-F1 | ECE |",
             "| --- | ---: | ---: | --- | ---: | ---: |"]
    lines += [_row(metrics, prefix, label) for prefix, label in
              (("val", "clean"), ("val_occluded", "occluded (all)")) if f"{prefix}/n" in metrics]
    lines += [_row(metrics, f"val_occluded/occluder/{kind}", f"occluded: {kind}") for kind in
              sorted({k.split("/")[2] for k in metrics
                      if k.startswith("val_occluded/occluder/") and k.endswith("/acc")})]
    if "val/occlusion_drop" in metrics:
        lines += ["", f"Occlusion drop (clean − occluded accuracy): "
                      f"**{_f(metrics['val/occlusion_drop'])}**."]
    if metrics.get("excluded/n", 0) > 0:
        per = ", ".join(f"{k.split('/')[1]}: {int(v)}" for k, v in sorted(metrics.items())
                        if k.startswith("excluded/") and k.count("/") == 2)
        lines += ["", f"**{int(metrics['excluded/n'])} faces excluded** — their class is not "
                      f"one the model knows ({per}); they are left out of every metric above, "
                      "not counted as errors."]
    if curves is not None:
        ratios = list(curves["ratio"])
        lines += ["", "## Robustness", "",
                  f"The {int(metrics['robustness/n'])} clean faces re-occluded by each type at "
                  "each ratio (fraction of the face covered); accuracy per ratio and the "
                  "normalised area under the curve (mean accuracy over the range, higher = more "
                  "robust).", "",
                  "| occluder | " + " | ".join(f"{r:g}" for r in ratios) + " | area |",
                  "| --- | " + " | ".join("---:" for _ in ratios) + " | ---: |"]
        for kind in curves.columns.drop("ratio"):
            lines.append(f"| {kind} | " + " | ".join(_f(v) for v in curves[kind])
                         + f" | **{_f(auc[kind])}** |")
        lines += ["", f"Mean area **{_f(metrics['robustness/mean_auc'])}** "
                      f"[{_f(metrics['robustness/mean_auc_ci_low'])}, "
                      f"{_f(metrics['robustness/mean_auc_ci_high'])}].", "",
                  "![robustness curves](robustness.png)"]
        gaps = [f"{kind} {_f(metrics[f'robustness/{kind}/gap'])}"
                for kind in curves.columns.drop("ratio") if f"robustness/{kind}/gap" in metrics]
        if gaps:
            at = (config or {}).get("validate", {}).get("gap_ratio")
            lines += ["", f"Gap at ratio {_f(at, 2)} (clean accuracy − accuracy of the same faces "
                          f"re-occluded): {', '.join(gaps)}."]
    lines += ["", "## Calibration", "", "![reliability diagram](reliability.png)",
              "", "## Confusion matrices", ""]
    lines += [f"![confusion {g}](confusion_{g}.png)" for g in ("val", "val_occluded")
              if (out / f"confusion_{g}.png").is_file()]
    lines += ["", "## Per class", "", "| class | clean precision | clean recall | clean F1 | "
              "occluded F1 | support (clean) |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    g = metrics.get
    lines += [f"| {c} | {_f(g(f'val/{c}/precision'))} | {_f(g(f'val/{c}/recall'))} | "
              f"{_f(g(f'val/{c}/f1'))} | {_f(g(f'val_occluded/{c}/f1'))} | "
              f"{int(g(f'val/{c}/support', 0))} |" for c in classes]
    if (out / "mistakes.png").is_file():
        lines += ["", "## Most confident mistakes", "",
                  "Caption: true class, `>` predicted class and its probability, occluder.", "",
                  "![most confident mistakes](mistakes.png)"]
    if (out / "training.png").is_file():
        lines += ["", "## Training", "", "![training curves](training.png)"]
    lines += ["", "## Files", "",
              "`metrics.json`: the headline figures (DVC's metrics file, the MLflow run's "
              "metrics); `detail.json`: every other metric (per class, per occluder, "
              "robustness per type, counts) under the same flat keys."]
    lines += ["", "## Configuration", "", "```yaml",
              yaml.safe_dump(dict(config), sort_keys=False).rstrip(), "```", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return out / "report.md"
