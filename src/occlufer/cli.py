"""The ``occlufer`` command: helpers around the pipeline (``compose``, ``check``, ``evaluate``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from occlufer import __version__
from occlufer.config import CONF_DIR, PARAMS_FILE, compose, dump_params, load_params, parse_params
from occlufer.errors import OccluferError


def _compose(args: argparse.Namespace) -> None:
    data = compose(args.overrides, args.conf)
    parse_params(data, f"{args.conf}/ composed with {list(args.overrides)}")
    if args.check:
        current = load_params(args.out).to_dict()
        if current != parse_params(data).to_dict():
            raise OccluferError(f"{args.out} differs from composing {args.conf}/; "
                                "run `occlufer compose` and commit the result")
        print(f"{args.out} matches {args.conf}/")
        return
    dump_params(data, args.out)
    print(f"wrote {args.out} from {args.conf}/" + (f" with {args.overrides}" if args.overrides
                                                   else ""))


def _check(args: argparse.Namespace) -> None:
    load_params(args.params)
    print(f"{args.params}: ok")


def _evaluate(args: argparse.Namespace) -> None:
    """Score any model on any labelled faces, with the very function the validate stage uses."""
    import tempfile
    from pathlib import Path

    from occlufer.evaluation.evaluate import evaluate
    from occlufer.evaluation.inputs import load_any_model, load_faces
    from occlufer.occlusion import OcclusionSpec

    params = load_params(args.params)
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="occlufer-evaluate-") as tmp:
        model, meta, source = load_any_model(args.model, Path(tmp))
        data, rejects = load_faces(args.data, int(meta["image_size"]), Path(tmp))
        print(f"evaluate: {len(data.labels)} faces from {args.data}"
              + (f" ({len(rejects)} inputs not usable)" if rejects else "")
              + f"; model {meta['name']} with classes {', '.join(meta['classes'])}")
        config = {"evaluate": {"data": args.data, "model": args.model, "params": args.params,
                               "unusable_inputs": len(rejects)},
                  "model": {k: v for k, v in meta.items() if k != "state_dict"},
                  **{k: v for k, v in params.to_dict().items()
                     if k in ("seed", "occlusion", "validate")}}
        metrics = evaluate(model, meta, data, params.validate,
                           OcclusionSpec.from_cfg(params.occlusion), params.seed, out,
                           config=config, model_source=source)
    if rejects:
        import csv

        with open(out / "rejects.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("path", "reason"), *rejects])
    excluded = metrics.get("excluded/n", 0)
    if excluded:
        per = ", ".join(f"{k.split('/')[1]} {int(v)}" for k, v in sorted(metrics.items())
                        if k.startswith("excluded/") and k.count("/") == 2)
        print(f"evaluate: {int(excluded)} faces of classes the model lacks ({per}) are "
              "excluded from the metrics")
    print(f"evaluate: val/acc {metrics.get('val/acc', float('nan')):.4f} "
          f"[{metrics.get('val/acc_ci_low', float('nan')):.3f}, "
          f"{metrics.get('val/acc_ci_high', float('nan')):.3f}] on "
          f"{int(metrics.get('val/n', 0))} clean faces, robustness/mean_auc "
          f"{metrics.get('robustness/mean_auc', float('nan')):.3f} -> {out}/report.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="occlufer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"occlufer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compose", help="compose conf/ (+ Hydra overrides) into params.yaml, "
                                       "as `dvc exp run` does")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. occlusion.ratio=0.3")
    p.add_argument("--conf", default=CONF_DIR, help="config folder (default: conf)")
    p.add_argument("--out", default=PARAMS_FILE, help="file to write (default: params.yaml)")
    p.add_argument("--check", action="store_true",
                   help="only check that --out equals the composition; exit 2 if not")
    p.set_defaults(func=_compose)
    p = sub.add_parser("check", help="validate params.yaml without running anything")
    p.add_argument("params", nargs="?", default=PARAMS_FILE)
    p.set_defaults(func=_check)
    p = sub.add_parser("evaluate", help="score a model on any labelled faces: the validate "
                                        "stage's metrics, plots and report")
    p.add_argument("--data", required=True,
                   help="an image folder (root/<class>/... or root/<split>/<class>/...) or a "
                        "stage store folder (e.g. data/split/val)")
    p.add_argument("--model", required=True,
                   help="a models/ folder, a model.pt file, or an MLflow model URI "
                        "(runs:/<id>/model, models:/<name>@<alias>) whose artifacts hold "
                        "model.pt")
    p.add_argument("--out", required=True, help="folder for metrics.json, report.md, plots")
    p.add_argument("--params", default=PARAMS_FILE,
                   help="parameters for the validate, occlusion and seed settings "
                        "(default: params.yaml)")
    p.set_defaults(func=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except OccluferError as exc:
        print(f"occlufer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
