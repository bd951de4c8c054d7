"""Model registry: architectures keyed by the name used in ``model.name``.

The registry names ``module:Class`` paths and imports them only when a model is built, so that
validating ``params.yaml`` (every stage does it first) does not import PyTorch.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from occlufer.errors import OccluferError

if TYPE_CHECKING:
    import torch
    from torch import nn

#: name → "module:Class"; the class takes (num_classes, image_size, dropout) and maps
#: N×1×S×S floats to N×num_classes logits
MODELS: dict[str, str] = {
    "seed_cnn": "occlufer.models.seed_cnn:SeedCNN",
}


def build_model(name: str, *, num_classes: int, image_size: int, dropout: float = 0.0) -> nn.Module:
    """Instantiate a registered architecture; unknown names list the registered ones."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)(
        num_classes=num_classes, image_size=image_size, dropout=dropout)


def save_model(path: str | Path, model: nn.Module, *, name: str, classes: Sequence[str],
               image_size: int, dropout: float) -> None:
    """Weights plus everything needed to rebuild and use them (architecture, classes, size)."""
    import torch

    torch.save({"format": 1, "name": name, "classes": list(classes), "image_size": image_size,
                "dropout": dropout, "state_dict": model.state_dict()}, path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu",
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns (model in eval mode, metadata)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise OccluferError(f"{path}: no model file; train one first (`dvc repro train`)")
    meta = torch.load(path, map_location=map_location, weights_only=True)
    model = build_model(meta["name"], num_classes=len(meta["classes"]),
                        image_size=meta["image_size"], dropout=meta["dropout"])
    model.load_state_dict(meta.pop("state_dict"))
    return model.eval(), meta
