"""Small JSON outputs written the same way everywhere: a leaf module (stages and library code
import it; it imports nothing of occlufer)."""

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Pretty, stable JSON (sorted keys) for small stage outputs."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
