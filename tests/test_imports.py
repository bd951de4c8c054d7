"""Imports run one way: the import-linter contracts of ``pyproject.toml`` hold, and a fresh
interpreter agrees for what the static graph cannot see (modules imported by name)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
LOADED = ("import importlib, json, sys; [importlib.import_module(m) for m in sys.argv[1:]]; "
          "print(json.dumps(sorted(sys.modules)))")


def test_the_import_contracts_hold() -> None:
    done = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_serving_a_model_loads_neither_training_occlusion_nor_stages(tmp_path: Path) -> None:
    modules = ["occlufer.inference", *(f"occlufer.inference.{p.stem}" for p in
                                       (ROOT / "src/occlufer/inference").glob("[!_]*.py"))]
    done = subprocess.run([sys.executable, "-c", LOADED, *modules], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m.startswith(("occlufer.training", "occlufer.occlusion",
                                                   "occlufer.stages"))]
