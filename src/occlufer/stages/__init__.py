"""DVC stages: each module loads ``params.yaml``, calls one library function, writes one folder.

Run one with ``python -m occlufer.stages.<stage>`` from the repository root (``dvc repro`` does).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from occlufer.errors import OccluferError
from occlufer.jsonio import write_json  # re-exported: its home is occlufer.jsonio

__all__ = ["run_stage", "write_json"]


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
