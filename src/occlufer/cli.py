"""The ``occlufer`` command: helpers around the pipeline (``compose``, ``check``)."""

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
