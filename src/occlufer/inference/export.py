"""Export a trained model to ONNX: uint8 faces in, class probabilities out, batch axis dynamic.

The graph carries :func:`occlufer.preprocess.to_input`'s normalisation, the model's test-time
views (``tta_flip`` / ``tta_shift``) and a softmax: input ``faces`` (uint8 N×S×S), output
``probabilities`` (float32 N×C); classes (JSON), image size and name are in its metadata_props.
The legacy exporter (``dynamo=False``) needs no ``onnxscript`` and works offline for every model.
"""

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from occlufer import __version__
from occlufer.preprocess import MEAN, STD, WithViews

INPUT = "faces"
OUTPUT = "probabilities"
OPSET = 17


class WithPreprocessing(nn.Module):
    """uint8 N×S×S → softmax(model(normalised N×1×S×S))."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = ((faces.float() / 255.0 - MEAN) / STD).unsqueeze(1)
        return torch.softmax(self.model(x), dim=1)


def export_onnx(model: nn.Module, meta: dict[str, Any], out: str | Path,
                opset: int = OPSET) -> Path:
    """Write ``model`` (eval mode, CPU) with its ``meta`` (name, classes, image_size) to ``out``."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = int(meta["image_size"])
    if meta.get("tta_flip") or meta.get("tta_shift"):  # the views the model is scored with
        model = WithViews(model, bool(meta.get("tta_flip")), int(meta.get("tta_shift", 0)))
    wrapper = WithPreprocessing(model.cpu().eval()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(wrapper, (torch.zeros((2, size, size), dtype=torch.uint8),), str(out),
                          dynamo=False, opset_version=opset, input_names=[INPUT],
                          output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, {
        "classes": json.dumps(list(meta["classes"])), "image_size": str(size),
        "name": str(meta["name"]), "occlufer_version": __version__,
        "input": f"{INPUT}: uint8 N×{size}×{size} grayscale face crops",
        "output": f"{OUTPUT}: float32 N×{len(meta['classes'])} softmax probabilities"})
    proto.doc_string = "occlufer facial expression model (uint8 faces → probabilities)"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out
