"""Which recipe (``conf/experiment/<name>.yaml``) a run's parameters come from, cheaply: it
names the MLflow runs of ``dvc repro``. Option files are read as plain YAML, without Hydra;
:func:`occlufer.publish.recipe_of` is the exact comparison for model cards.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: the share of a recipe's settings that a run's parameters must have for the recipe to count
MIN_SHARE = 0.75
DEFAULT = "default"


def flat_keys(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (values kept as they are)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_name(params: Mapping[str, Any], conf: Path) -> str:
    """``params["experiment"]`` when the parameters record it; else the ``conf/experiment``
    option with the largest share (≥ :data:`MIN_SHARE`) of its settings equal in ``params``
    (ties: the one with more settings, then by name); else ``default``."""
    chosen = params.get("experiment")
    if isinstance(chosen, str) and chosen:
        return chosen
    import yaml

    flat = flat_keys(params)
    best: tuple[float, int, str] | None = None
    for path in sorted((conf / "experiment").glob("*.yaml")):
        settings = _settings(path, yaml)
        if not settings:
            continue
        share = sum(flat.get(k, object()) == v for k, v in settings.items()) / len(settings)
        if share >= MIN_SHARE and (best is None or (share, len(settings)) > best[:2]):
            best = (share, len(settings), path.stem)
    return best[2] if best else DEFAULT


def _settings(path: Path, yaml: Any, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A recipe file's settings, flattened, over those of the recipes it names in ``defaults``
    (``- fer2013_cpu``; group overrides such as ``override /model: compact`` are skipped)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, Mapping):
        return {}
    out: dict[str, Any] = {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and entry not in seen:
            out.update(_settings(path.with_name(f"{entry}.yaml"), yaml, seen | {path.stem}))
    out.update(flat_keys({k: v for k, v in data.items() if k != "defaults"}))
    return out
