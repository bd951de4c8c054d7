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

#: name → "module:Class"; the class takes (num_classes, image_size, dropout, **arch) and maps
#: N×1×S×S floats to N×num_classes logits. ``arch`` holds the architecture keys of the
#: ``model`` section that are set (``width``, ``blocks``); every class has defaults for them.
#: Each class names its class-specific part in ``head_prefixes`` (``state_dict`` key prefixes):
#: fine-tuning (``train.init_from``) loads the rest, the trunk, from another model.
MODELS: dict[str, str] = {
    "seed_cnn": "occlufer.models.seed_cnn:SeedCNN",
    "resnet": "occlufer.models.resnet:FaceResNet",
    "occ_resnet": "occlufer.models.resnet:OcclusionAttentionResNet",
    "compact": "occlufer.models.resnet:CompactResNet",
}


def build_model(name: str, *, num_classes: int, image_size: int, dropout: float = 0.0,
                **arch: Any) -> nn.Module:
    """Instantiate a registered architecture; unknown names list the registered ones.

    ``arch`` entries that are ``None`` are left to the class's defaults.
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    module, cls = MODELS[name].split(":")
    arch = {k: v for k, v in arch.items() if v is not None}
    return getattr(importlib.import_module(module), cls)(
        num_classes=num_classes, image_size=image_size, dropout=dropout, **arch)


def save_model(path: str | Path, model: nn.Module, *, name: str, classes: Sequence[str],
               image_size: int, dropout: float, arch: dict[str, Any] | None = None,
               **extra: Any) -> None:
    """Weights plus everything needed to rebuild and use them (architecture, classes, size).

    ``extra`` goes into the metadata as it is (e.g. ``tta_flip``, ``epoch``).
    """
    import torch

    torch.save({"format": 1, "name": name, "classes": list(classes), "image_size": image_size,
                "dropout": dropout, "arch": dict(arch or {}), **extra,
                "state_dict": model.state_dict()}, path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu",
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; returns (model in eval mode, metadata)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise OccluferError(f"{path}: no model file; train one first (`dvc repro train`)")
    return model_from(torch.load(path, map_location=map_location, weights_only=True))


def model_from(saved: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """The model (eval mode) and metadata of a loaded :func:`save_model` file's content; the
    weights leave ``saved``."""
    model = build_model(saved["name"], num_classes=len(saved["classes"]),
                        image_size=saved["image_size"], dropout=saved["dropout"],
                        **saved.get("arch", {}))
    model.load_state_dict(saved.pop("state_dict"))
    return model.eval(), saved
