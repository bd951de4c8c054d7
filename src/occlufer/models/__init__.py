"""Model registry (``model.name`` → ``module:Class``), saving, loading and batched scoring;
classes are imported only when built, so validating ``params.yaml`` does not import PyTorch.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from occlufer.errors import OccluferError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

#: each class takes (num_classes, image_size, dropout, **arch), maps N×1×S×S floats to logits
#: and names its class-specific ``head_prefixes`` (the rest, the trunk, ``train.init_from`` loads)
MODELS: dict[str, str] = {
    "seed_cnn": "occlufer.models.nets:SeedCNN",
    "resnet": "occlufer.models.nets:FaceResNet",
    "occ_resnet": "occlufer.models.nets:OcclusionAttentionResNet",
    "compact": "occlufer.models.nets:CompactResNet",
}


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, *, num_classes: int, image_size: int, dropout: float = 0.0,
                **arch: Any) -> nn.Module:
    """A registered architecture; ``arch`` entries that are ``None`` keep the class defaults."""
    arch = {k: v for k, v in arch.items() if v is not None}
    return model_class(name)(num_classes=num_classes, image_size=image_size, dropout=dropout,
                             **arch)


def save_model(path: str | Path, model: nn.Module, *, name: str, classes: Sequence[str],
               image_size: int, dropout: float, arch: dict[str, Any] | None = None,
               **extra: Any) -> None:
    """Weights plus what rebuilds them; ``extra`` (e.g. ``tta_flip``, ``epoch``) goes in too."""
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
    """(model in eval mode, metadata) of a loaded :func:`save_model` file (weights popped)."""
    model = build_model(saved["name"], num_classes=len(saved["classes"]),
                        image_size=saved["image_size"], dropout=saved["dropout"],
                        **saved.get("arch", {}))
    model.load_state_dict(saved.pop("state_dict"))
    return model.eval(), saved


def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int,
                   device: torch.device, tta_flip: bool = False, tta_shift: int = 0,
                   ) -> np.ndarray:
    """N×C float32 logits of N×H×W uint8 faces, averaged over the ``tta_*`` views, in batches."""
    import numpy as np
    import torch

    from occlufer.preprocess import to_input, tta_views

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_input(np.asarray(images[start:start + batch_size])).to(device)
            views = tta_views(x, tta_flip, tta_shift)
            out.append(torch.stack([model(v).float() for v in views]).mean(0).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
