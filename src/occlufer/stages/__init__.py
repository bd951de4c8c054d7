"""DVC stages: each module loads ``params.yaml``, calls one library function, writes one folder.

Run one with ``python -m occlufer.stages.<stage>`` from the repository root (``dvc repro`` does).
Each reads its parameters with :func:`stage_params`, which with ``portable: true`` re-executes
the stage once with the portable kernels (:mod:`occlufer.kernels`) before any work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from occlufer import kernels

__all__ = ["run_stage", "stage_params", "write_json"]


def _pin_before_imports() -> None:
    """Under ``python -m occlufer.stages.<stage>`` with ``portable: true`` in params.yaml:
    re-execute now, before the stage module imports PyTorch and MLflow (seconds each), rather
    than from :func:`stage_params` after them. The file is read without validation here;
    :func:`stage_params` validates it (and re-executes itself if this did not)."""
    argv = sys.orig_argv
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    if not module.startswith(f"{__name__}.") or kernels.pinned():
        return
    try:  # "params.yaml": config.PARAMS_FILE, not imported for it (pandas, pydantic: ~0.5 s)
        portable = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))["portable"]
    except Exception:  # noqa: BLE001 - no file, bad YAML, no key: load_params says which
        return
    if portable is True:
        kernels.reexec()


_pin_before_imports()

from occlufer.config import Params, load_params  # noqa: E402 - after the re-exec
from occlufer.errors import OccluferError  # noqa: E402
from occlufer.jsonio import write_json  # noqa: E402 - re-exported: its home is occlufer.jsonio


def stage_params() -> Params:
    """``params.yaml``, validated, in a process that computes with the kernels it asks for."""
    params = load_params()
    kernels.use(params.portable)
    return params


def run_stage(name: str, work: Callable[[], Any]) -> None:
    """Run a stage; expected failures print one line and exit 2, Ctrl-C exits 130."""
    try:
        work()
    except OccluferError as exc:
        print(f"occlufer {name}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"occlufer {name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
