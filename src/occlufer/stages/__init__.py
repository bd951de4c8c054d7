"""DVC stages: each module loads ``params.yaml``, calls one library function, writes one folder.

Run one with ``python -m occlufer.stages.<stage>`` from the repository root (``dvc repro`` does).
With ``portable: true`` this package sets :data:`occlufer.kernels.PORTABLE_ENV` when it is
imported, before the stage imports NumPy or PyTorch, which read it when they load.
"""

import os
import sys
from collections.abc import Callable
from typing import Any

import yaml

from occlufer import kernels

__all__ = ["run_stage", "stage_params"]


def _pin_before_imports() -> None:
    """Under ``python -m occlufer.stages.<stage>``: the kernels ``params.yaml`` asks for, read
    without validation (:func:`stage_params` validates it, and checks the kernels again)."""
    argv = sys.orig_argv
    if "-m" not in argv[:-1] or not argv[argv.index("-m") + 1].startswith(f"{__name__}."):
        return
    try:  # "params.yaml": config.PARAMS_FILE, not imported for it (pydantic: ~0.5 s)
        with open("params.yaml", encoding="utf-8") as f:
            portable = yaml.safe_load(f)["portable"]
    except Exception:  # noqa: BLE001 - no file, bad YAML, no key: load_params says which
        return
    if portable is True:
        os.environ.update(kernels.PORTABLE_ENV)


_pin_before_imports()

from occlufer.config import Params, load_params  # noqa: E402 - after the kernels are pinned
from occlufer.errors import OccluferError  # noqa: E402


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
