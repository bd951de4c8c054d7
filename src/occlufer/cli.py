"""The ``occlufer`` command: ``compose``, ``check``, ``evaluate`` any model on labelled faces,
``predict`` on photos, folders and videos, ``export``, ``register`` and the model ``zoo``.
Without ``--model`` a command uses ``models/`` when trained here, else ``zoo:fer2013``, and
prints which on its first line."""

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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

    from occlufer.evaluation.evaluate import evaluate
    from occlufer.evaluation.inputs import load_any_model, load_faces
    from occlufer.inference.predictor import resolve_model
    from occlufer.occlusion import OcclusionSpec

    params = load_params(args.params)
    out = Path(args.out)
    choice = resolve_model(args.model)
    print(choice.line, flush=True)
    with tempfile.TemporaryDirectory(prefix="occlufer-evaluate-") as tmp:
        model, meta, source = load_any_model(choice, Path(tmp))
        data, rejects = load_faces(args.data, int(meta["image_size"]), Path(tmp))
        print(f"evaluate: {len(data.labels)} faces from {args.data}"
              + (f" ({len(rejects)} inputs not usable)" if rejects else "")
              + f"; model {meta['name']} with classes {', '.join(meta['classes'])}")
        config = {"evaluate": {"data": args.data, "model": source, "params": args.params,
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


def _checked(cast: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable:
    """An argparse ``type``: ``cast(text)`` when ``ok`` with it, else "expected ..., got ..."."""
    def parse(text: str) -> Any:
        with contextlib.suppress(ValueError):
            if ok(value := cast(text)):
                return value
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")

    return parse


_positive = _checked(int, lambda v: v >= 1, "a positive whole number")
_fraction = _checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _predict(args: argparse.Namespace) -> None:
    from occlufer.inference import photos
    from occlufer.inference.predictor import load_predictor, resolve_model
    from occlufer.inference.video import VIDEO_COLUMNS, check_annotate, is_video, predict_videos

    info = sys.stderr if args.out == "-" else sys.stdout  # stdout may carry the rows
    files = photos.find_images(args.paths)
    videos = [p for p in files if is_video(p)]  # named as files: folders give images only
    files = [p for p in files if not is_video(p)]
    if args.annotate is not None:
        if len(videos) != 1:
            raise OccluferError(f"--annotate writes one video; {len(videos)} videos given")
        check_annotate(args.annotate, videos)
    workers = args.workers or min(os.cpu_count() or 1, 8)
    choice = resolve_model(args.model)
    print(choice.line, file=info, flush=True)
    predictor = load_predictor(choice, args.device, threads=args.threads)
    if args.threads and predictor.backend == "torch":
        import torch

        torch.set_num_threads(args.threads)
    default = photos.FaceSearch()
    margin = default.margin if args.face_margin is None else args.face_margin
    search = photos.FaceSearch(detect=args.detect, size=predictor.image_size, margin=margin,
                               min_face=args.face_min_size or default.min_face,
                               detector=args.detector or default.detector)
    stream = photos.open_out(args.out)
    summary = shown = None
    try:
        writer = photos.RowWriter(stream, args.format, predictor.classes,
                                  extra=VIDEO_COLUMNS if videos else ())
        if files:
            summary = photos.predict_paths(predictor, files, writer, search=search,
                                           batch_size=args.batch_size, workers=workers,
                                           min_size=args.min_size)
        if videos:
            shown = predict_videos(predictor, videos, writer, search=search, every=args.every,
                                   smooth=args.smooth, annotate=args.annotate,
                                   batch_size=args.batch_size, min_size=args.min_size)
    finally:
        stream.close()
    where = "" if args.out == "-" else f" -> {args.out}"
    if summary is not None:
        print(f"predict: {summary.line()}{where}", file=info)
    if shown is not None:
        rate = shown.decoded / shown.seconds if shown.seconds else 0.0
        print(f"predict: {shown.line()}; {rate:.1f} frames/s{where}"
              + (f"; {shown.annotated} frames annotated -> {args.annotate}" if shown.annotated
                 else ""), file=info)
    hint = summary.hint() if summary is not None else None
    if hint:
        print(hint, file=sys.stderr)


def _export(args: argparse.Namespace) -> None:
    from occlufer.inference.predictor import resolve_model
    from occlufer.models import load_model

    choice = resolve_model(args.model)
    print(choice.line, flush=True)
    pt = choice.torch_file()
    if args.format == "pyfunc":
        from occlufer.inference.pyfunc import save_pyfunc_model

        out = save_pyfunc_model(pt, Path(args.out or "pyfunc_model"),
                                choice.line.removeprefix("model: "))
        print(f"export: {choice.ref} as an MLflow pyfunc model -> {out} (serve it: mlflow models "
              f"serve -m {out} --env-manager local)")
        return
    from occlufer.inference.export import export_onnx

    model, meta = load_model(pt)
    out = export_onnx(model, meta, args.out or "model.onnx")
    print(f"export: {meta['name']} ({len(meta['classes'])} classes, {meta['image_size']} px) "
          f"-> {out} (input uint8 N×{meta['image_size']}×{meta['image_size']}, "
          "output probabilities)")


def _zoo_list(args: argparse.Namespace) -> None:
    from occlufer import zoo

    found = zoo.names()
    if not found:
        print(f"zoo: no entries in {zoo.zoo_dir()}; publish one from a finished pipeline run "
              "with `occlufer zoo publish NAME`")
        return
    print(f"zoo: {len(found)} entries in {zoo.zoo_dir()}")
    for name in found:
        try:
            e = zoo.entry(name)
        except OccluferError as exc:  # one bad card does not hide the others
            print(f"{name}: BROKEN: {exc}")
            continue
        head, model = e.headline, e.card.get("model") or {}
        acc = (f"{head['split']} acc {head['acc']:.3f} [{head.get('ci_low', float('nan')):.3f}, "
               f"{head.get('ci_high', float('nan')):.3f}]" if "acc" in head else "no accuracy")
        mark = " (default)" if e.name == zoo.DEFAULT else ""
        print(f"{e.name}{mark}: {e.card.get('title', '')}; {model.get('arch', '?')}, "
              f"{len(e.classes)} classes, {e.image_size}×{e.image_size}; {acc}; "
              f"{e.card['file'].get('bytes', 0) / 2**20:.1f} MB "
              f"{e.card['file'].get('weights_dtype', '')}, sha256 "
              f"{str(e.card['file'].get('sha256'))[:12]}…  (occlufer zoo show {e.name})"
              + ("" if e.pt.is_file() else f"; BROKEN: {e.pt.name} is missing"))


def _zoo_show(args: argparse.Namespace) -> None:
    from occlufer import zoo

    e = zoo.entry(zoo.check_name(args.name))
    if args.json:
        print(e.json.read_text(encoding="utf-8"), end="")
        return
    if e.md.is_file():
        print(e.md.read_text(encoding="utf-8"), end="")
        return
    from occlufer.zoo.card import render

    print(render(e.card), end="")


def _zoo_publish(args: argparse.Namespace) -> None:
    from occlufer import zoo
    from occlufer.publish import publish

    card = publish(args.name, models=args.models, report=args.report, params=args.params,
                   lock=args.lock, recipe=args.recipe, conf=args.conf, title=args.title)
    e = zoo.entry(args.name)
    file = card["file"]
    print(f"zoo publish: {e.pt} ({file['bytes'] / 2**20:.2f} MB, {file['weights_dtype']}; "
          f"fp16 parity: agreement {file['fp16_parity']['argmax_agreement']}, max prob diff "
          f"{file['fp16_parity']['max_prob_diff']}), {e.json.name}, {e.md.name}")
    print(e.line())


def _zoo_refresh(args: argparse.Namespace) -> None:
    from occlufer import zoo
    from occlufer.publish import refresh

    refresh(args.name)
    e = zoo.entry(args.name)
    print(f"zoo refresh: {e.json.name}, {e.md.name} re-generated (weights and figures kept)")


def _zoo_check(args: argparse.Namespace) -> int:
    from occlufer.publish import check

    within, line = check(args.name, Path(args.report))
    print(line)
    return 0 if within else 1


def _register(args: argparse.Namespace) -> None:
    from occlufer.registry import register

    r = register(args.run, args.name, args.alias)
    at = f"@{r.alias}" if r.alias else f"/{r.version}"
    print(f"register: run {r.run_name or r.run_id} ({r.run_id}) model {r.source} -> "
          f"{r.name} version {r.version}" + (f", alias {r.alias}" if r.alias else "")
          + f"; load it as models:/{r.name}{at}" + (f" ({r.note})" if r.note else ""))


def _command(sub: Any, name: str, func: Callable, *args: str, **kw: Any) -> Any:
    """Subcommand ``name`` that runs ``func``, with the positional arguments ``args``."""
    p = sub.add_parser(name, **kw)
    for name in args:
        p.add_argument(name)
    p.set_defaults(func=func)
    return p


def _model_option(p: argparse.ArgumentParser, files: str, *flags: str) -> None:
    p.add_argument(*flags, default=None, help=f"a models/ folder, {files}, zoo:<name>, or an "
                   "MLflow model URI (runs:/<id>/model, models:/<name>@<alias>) whose artifacts "
                   "hold model.pt; default: models/ when trained here, else zoo:fer2013")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="occlufer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"occlufer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = _command(sub, "compose", _compose, help="compose conf/ (+ Hydra overrides) into "
                 "params.yaml, as `dvc exp run` does")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. occlusion.ratio=0.3")
    p.add_argument("--conf", default=CONF_DIR, help="config folder (default: conf)")
    p.add_argument("--out", default=PARAMS_FILE, help="file to write (default: params.yaml)")
    p.add_argument("--check", action="store_true",
                   help="only check that --out equals the composition; exit 2 if not")
    p = _command(sub, "check", _check, help="validate params.yaml without running anything")
    p.add_argument("params", nargs="?", default=PARAMS_FILE)
    p = _command(sub, "evaluate", _evaluate, help="score a model on any labelled faces: the "
                 "validate stage's metrics, plots and report")
    p.add_argument("--data", required=True,
                   help="an image folder (root/<class>/... or root/<split>/<class>/...) or a "
                        "stage store folder (e.g. data/split/val)")
    _model_option(p, "a model.pt file", "--model")
    p.add_argument("--out", required=True, help="folder for metrics.json, report.md, plots")
    p.add_argument("--params", default=PARAMS_FILE,
                   help="parameters for the validate, occlusion and seed settings "
                        "(default: params.yaml)")

    p = _command(sub, "predict", _predict, help="classify the faces in image files and folders, "
                 "and in video files", description="Classify the faces in image files and "
                 "folders (recursive): one row per face, or per image without a face (status "
                 "no_face), too small for a face crop (status too_small, with --no-detect) or that "
                 "cannot be read (status error). Ends with a summary line. Video files (.mp4 .avi "
                 ".mov .mkv .webm .m4v, named as files; folders give images only): one row per "
                 "face of every --every-th frame, with the columns frame, time_s and track (a "
                 "face's id across frames) and probabilities smoothed per track (--smooth); a "
                 "video that cannot be decoded, or stops early, is an error row and a line on "
                 "stderr.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders, video files")
    p.add_argument("--out", "-o", default="-", help="file to write (default: - for stdout)")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    _model_option(p, "model.pt, model.onnx", "--model", "-m")
    p.add_argument("--no-detect", dest="detect", action="store_false",
                   help="each image is one face crop (its centred square); default: detect faces")
    p.add_argument("--min-size", type=_positive, default=32,
                   help="with --no-detect, an image whose shorter side is below this many "
                        "pixels is reported as too_small, not classified (default 32, as "
                        "acquire.min_size for image folders)")
    p.add_argument("--batch-size", type=_positive, default=256)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--workers", type=int, default=0,
                   help="decoding/detection processes (default 0: one per core, at most 8)")
    p.add_argument("--threads", type=int, default=0,
                   help="inference threads (default 0: the library's default)")
    p.add_argument("--face-margin", type=float, default=None,
                   help="margin around a detected face, each side, as a fraction of its box "
                        "(default 0.2, as acquire.face_margin for photos)")
    p.add_argument("--face-min-size", type=_positive, default=None,
                   help="smallest face kept, box side in pixels (default 24, as "
                        "acquire.face_min_size for photos)")
    p.add_argument("--detector", choices=("blazeface", "blazeface_fast", "haar"), default=None,
                   help="face detector: blazeface (default, as acquire.detector for photos; "
                        "crops aligned to FER2013 geometry by eyes and mouth), blazeface_fast "
                        "(no tiles: faster, fewer small faces) or haar (OpenCV's cascade, crops "
                        "with --face-margin)")
    p.add_argument("--every", type=_positive, default=1, metavar="N",
                   help="videos: analyse every N-th frame (default 1: all)")
    p.add_argument("--smooth", type=_fraction, default=0.5, metavar="ALPHA",
                   help="videos: smooth each track's probabilities over its analysed frames, "
                        "p = ALPHA * previous + (1 - ALPHA) * this frame's; 0 is off (default "
                        "0.5)")
    p.add_argument("--annotate", default=None, metavar="OUT.mp4",
                   help="videos (one): also write the video with each face's box, track, label "
                        "and confidence drawn (.mp4 .m4v .mov .mkv .avi .webm)")

    p = _command(sub, "export", _export, help="export a model: ONNX file or MLflow pyfunc folder")
    p.add_argument("--format", choices=("onnx", "pyfunc"), default="onnx",
                   help="onnx: one file (uint8 faces in, probabilities out); pyfunc: an MLflow "
                        "model folder for `mlflow models serve -m <folder> --env-manager local`")
    _model_option(p, "model.pt", "--model", "-m")
    p.add_argument("--out", "-o", default=None,
                   help="file (onnx, default model.onnx) or new folder (pyfunc, default "
                        "pyfunc_model) to write")

    p = _command(sub, "register", _register, help="register a finished run's logged model in the "
                 "MLflow model registry, without retraining")
    p.add_argument("run", metavar="RUN_OR_EXP",
                   help="an MLflow run id, or a run name: the DVC experiment name (`dvc exp "
                        "show`) or <recipe>-<short commit> for `dvc repro` runs")
    p.add_argument("--name", required=True, help="registered model name (created if new)")
    p.add_argument("--alias", default=None, help="alias to point at the new version, e.g. "
                                                 "champion")

    zoo = sub.add_parser("zoo", help="the models shipped with occlufer and their model cards",
                         description="The model zoo: trained models inside the package, each "
                         "with a model card generated from the pipeline run that made it.")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)
    _command(zsub, "list", _zoo_list, help="the zoo's entries, one line each")
    p = _command(zsub, "show", _zoo_show, "name", help="print an entry's model card")
    p.add_argument("--json", action="store_true", help="the machine-readable card instead")
    p = _command(zsub, "publish", _zoo_publish, "name", help="make an entry (weights + generated "
                 "card) from the finished pipeline run in this folder; replaces one of the same "
                 "name")
    p.add_argument("--models", default="models", help="the trained model folder (default: models)")
    p.add_argument("--report", default="reports/validate",
                   help="the validate report folder (default: reports/validate)")
    p.add_argument("--params", default=PARAMS_FILE, help="default: params.yaml")
    p.add_argument("--lock", default="dvc.lock", help="default: dvc.lock")
    p.add_argument("--recipe", default=None,
                   help="the conf/experiment option the run used, e.g. fer2013_cpu (default: the "
                        "one whose composition equals params.yaml)")
    p.add_argument("--conf", default=CONF_DIR, help="config folder (default: conf)")
    p.add_argument("--title", default=None, help="default: from the recipe, e.g. 'FER2013 CPU "
                                                 "recipe'")
    _command(zsub, "refresh", _zoo_refresh, "name", help="re-generate an entry's card text "
             "(preprocessing, test-time views, limits, Markdown) after occlufer changed; weights "
             "and figures are kept")
    p = _command(zsub, "check", _zoo_check, "name", help="is a fresh run's clean accuracy within "
                 "the card's interval? exit 0 within, 1 outside")
    p.add_argument("--report", default="reports/validate",
                   help="the fresh run's validate report folder (default: reports/validate)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command + (f" {args.zoo_command}" if args.command == "zoo" else "")
    try:
        rc = args.func(args)
    except OccluferError as exc:
        print(f"occlufer {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's code for SIGINT
        print(f"occlufer {command}: interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
