"""Map uint8 face crops to class probabilities with a model from anywhere
(:func:`occlufer.model_files.resolve_model`), through PyTorch or onnxruntime."""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occlufer.errors import OccluferError
from occlufer.model_files import ModelChoice, resolve_model


@dataclass
class Predictor:
    """``predict_proba(faces)``: N×S×S uint8 face crops → N×C float32 probabilities."""

    run: Callable[[np.ndarray], np.ndarray]  # one batch of uint8 faces → probabilities
    classes: list[str]
    image_size: int
    name: str
    backend: str  # torch or onnxruntime
    source: str

    def predict_proba(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        faces = np.asarray(faces, dtype=np.uint8)
        if faces.ndim != 3 or faces.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(f"expected N×{self.image_size}×{self.image_size} uint8 faces, "
                             f"got shape {faces.shape}")
        if not len(faces):
            return np.zeros((0, len(self.classes)), np.float32)
        return np.concatenate([self.run(faces[i:i + batch_size])
                               for i in range(0, len(faces), batch_size)])


def torch_predictor(path: str | Path, device: str = "cpu", tta: bool = True) -> Predictor:
    """PyTorch: a ``model.pt``; with ``tta`` averaged over the test-time views it was saved with.
    On CPU: channels-last, and a TorchScript trace optimised for inference when it gives the
    same probabilities on a test batch (else the eager model)."""
    import contextlib
    import warnings

    import torch

    from occlufer.devices import resolve_device
    from occlufer.models import load_model
    from occlufer.preprocess import WithViews, to_input

    dev = resolve_device(device)
    model, meta = load_model(path, map_location="cpu")
    size = int(meta["image_size"])
    if tta and (meta.get("tta_flip") or meta.get("tta_shift")):
        model = WithViews(model, bool(meta.get("tta_flip")), int(meta.get("tta_shift", 0)))
    net = model.to(dev).eval()
    if dev.type == "cpu":
        net = model = model.to(memory_format=torch.channels_last).eval()
        x = torch.randn(8, 1, size, size).contiguous(memory_format=torch.channels_last)
        # an architecture TorchScript cannot trace stays eager
        with contextlib.suppress(Exception), torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = torch.jit.optimize_for_inference(torch.jit.trace(model, x))
            if all(torch.allclose(torch.softmax(fast(b), 1), torch.softmax(model(b), 1),
                                  atol=1e-5) for b in (x, x[:1])):
                net = fast

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = to_input(batch).to(dev)
            if dev.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return torch.softmax(net(x).float(), dim=1).cpu().numpy()

    return Predictor(run, list(meta["classes"]), size, meta["name"], "torch", str(path))


def onnx_predictor(path: str | Path, device: str = "cpu", threads: int = 0) -> Predictor:
    """onnxruntime: an ``.onnx`` file from :func:`occlufer.inference.export.export_onnx`."""
    import onnxruntime as ort

    from occlufer.inference.export import INPUT

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    providers = ["CPUExecutionProvider"]
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif device == "cuda":
        raise OccluferError(f"{path}: --device cuda but onnxruntime has no CUDA provider "
                            "(pip install onnxruntime-gpu); use --device cpu")
    try:
        session = ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise OccluferError(f"{path}: not a readable ONNX model "
                            f"({str(exc).splitlines()[0][:200]}); export one with "
                            "`occlufer export --format onnx`") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "classes" not in meta:
        raise OccluferError(f"{path}: ONNX model without occlufer metadata (classes); "
                            "export it with `occlufer export --format onnx`")

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT: np.ascontiguousarray(batch, np.uint8)})[0]

    return Predictor(run, json.loads(meta["classes"]), int(meta["image_size"]),
                     meta.get("name", "?"), "onnxruntime", str(path))


def load_predictor(source: str | Path | ModelChoice | None = None, device: str = "cpu",
                   threads: int = 0) -> Predictor:
    """A :class:`Predictor` for anything :func:`resolve_model` takes (or its answer)."""
    choice = source if isinstance(source, ModelChoice) else resolve_model(source)
    if choice.kind == "onnx":
        predictor = onnx_predictor(choice.path, device, threads)
    else:
        predictor = torch_predictor(choice.torch_file(), device)
    # a URI or zoo name as named; a local file as the path read
    predictor.source = (choice.ref if choice.kind == "mlflow" or choice.ref.startswith("zoo:")
                        else str(choice.path))
    return predictor


def top_labels(probs: np.ndarray, classes: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Labels and confidences (the largest probability) of N×C probabilities."""
    idx = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    return [classes[i] for i in idx], probs[np.arange(len(probs)), idx]
