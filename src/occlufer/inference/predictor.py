"""Load a trained model from wherever it lives and map uint8 face crops to class probabilities.

Sources (:func:`load_predictor`):

- a ``models/`` folder (the pipeline's output) or a ``model.pt`` file: PyTorch;
- an ``.onnx`` file written by ``occlufer export`` (class names in its metadata): onnxruntime;
- an MLflow model URI (``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/...``)
  or a local folder holding an MLflow model: the occlufer pyfunc model logged by ``train`` (or
  saved by ``occlufer export --format pyfunc``);
- ``zoo:<name>``: a model shipped in the package (:mod:`occlufer.zoo`).

Without a source, ``models/model.pt`` when trained here, else the zoo's default model
(:func:`resolve_model`, the one place that decides).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occlufer.errors import OccluferError

MODEL_FILE = "model.pt"
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


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
    """PyTorch: a ``model.pt`` written by :func:`occlufer.models.save_model`.

    With ``tta`` the logits are averaged over the test-time views the model was saved with
    (``tta_flip`` / ``tta_shift``), as ``validate`` and ``occlufer evaluate`` score it.
    """
    import torch

    from occlufer.devices import resolve_device
    from occlufer.models import load_model
    from occlufer.preprocess import WithViews, to_input

    dev = resolve_device(device)
    model, meta = load_model(path, map_location="cpu")
    if tta and (meta.get("tta_flip") or meta.get("tta_shift")):
        model = WithViews(model, bool(meta.get("tta_flip")), int(meta.get("tta_shift", 0)))
    model.to(dev).eval()
    net = _fast_cpu(model, int(meta["image_size"])) if dev.type == "cpu" else model

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = to_input(batch).to(dev)
            if dev.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return torch.softmax(net(x).float(), dim=1).cpu().numpy()

    return Predictor(run, list(meta["classes"]), int(meta["image_size"]), meta["name"],
                     "torch", str(path))


def _fast_cpu(model: Any, size: int) -> Any:
    """CPU inference: channels-last weights (about 2× on the convolutions), then a TorchScript
    trace optimised for inference (oneDNN, about 1.4× more) when it gives the same
    probabilities as the eager model on a test batch (else the eager, channels-last model)."""
    import warnings

    import torch

    model = model.to(memory_format=torch.channels_last).eval()
    x = torch.randn(8, 1, size, size).contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = torch.jit.optimize_for_inference(torch.jit.trace(model, x))
            ok = all(torch.allclose(torch.softmax(fast(b), 1), torch.softmax(model(b), 1),
                                    atol=1e-5) for b in (x, x[:1]))
    except Exception:  # noqa: BLE001 - an architecture TorchScript cannot trace: stay eager
        return model
    return fast if ok else model


def onnx_predictor(path: str | Path, device: str = "cpu", threads: int = 0) -> Predictor:
    """onnxruntime: an ``.onnx`` file from :func:`occlufer.inference.export.export_onnx`."""
    import onnxruntime as ort

    from occlufer.inference.export import INPUT

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
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


def is_mlflow_uri(source: str) -> bool:
    return source.startswith(MLFLOW_SCHEMES)


@dataclass(frozen=True)
class ModelChoice:
    """Which model a command uses: ``ref`` as named (or chosen by default), ``path`` the local
    file or folder (``kind``: ``torch`` for a model.pt, ``onnx``, ``mlflow`` for an MLflow model
    folder), ``line`` what the command prints first (``model: ...``)."""

    ref: str
    path: Path
    kind: str
    line: str

    def torch_file(self) -> Path:
        """The ``model.pt`` behind this choice (commands that need PyTorch weights)."""
        if self.kind == "torch":
            return self.path
        if self.kind == "mlflow":
            found = sorted(self.path.glob(f"artifacts/**/{MODEL_FILE}"))
            if not found:
                raise OccluferError(f"{self.ref}: not an occlufer MLflow model (no artifacts/"
                                    f"{MODEL_FILE}; it was logged in another format); pass a "
                                    "models/ folder, model.pt or zoo:<name> instead")
            return found[0]
        raise OccluferError(f"{self.ref}: an ONNX file has no PyTorch weights; pass a models/ "
                            "folder, model.pt, zoo:<name> or an MLflow URI")


def resolve_model(source: str | Path | None = None) -> ModelChoice:
    """The one place a ``--model`` value is resolved.

    ``None`` (no ``--model``): ``models/model.pt`` when a pipeline run trained one here, else
    the zoo's default entry (:data:`occlufer.zoo.DEFAULT`). Otherwise: ``zoo:<name>`` (checked
    against its card), an MLflow URI (downloaded), an ``.onnx`` file, a local MLflow model
    folder, a ``models/`` folder or a ``model.pt`` file. A model that cannot be found is one
    line saying how to get one.
    """
    from occlufer import zoo

    if source is None:
        default = Path("models") / MODEL_FILE
        if default.is_file():
            return ModelChoice("models", default, "torch",
                               f"model: {default} (trained here by dvc repro)")
        if zoo.DEFAULT in zoo.names():
            return resolve_model(f"{zoo.SCHEME}{zoo.DEFAULT}")
        raise OccluferError(f"{default}: no model file; train one first (`dvc repro`) or pass "
                            "--model (a models/ folder, model.pt, model.onnx, zoo:<name> or an "
                            f"MLflow models:/ URI); the zoo has no default model {zoo.SCHEME}"
                            f"{zoo.DEFAULT} either (in {zoo.zoo_dir()})")
    text = str(source)
    if text.startswith(zoo.SCHEME):
        entry = zoo.verify(text[len(zoo.SCHEME):])
        return ModelChoice(text, entry.pt, "torch", entry.line())
    if is_mlflow_uri(text):
        from occlufer import tracking

        return ModelChoice(text, tracking.download_model(text), "mlflow",
                           f"model: {text} (MLflow)")
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise OccluferError(f"{path}: no such ONNX file; write one with "
                                "`occlufer export --format onnx --out model.onnx`")
        return ModelChoice(text, path, "onnx", f"model: {path} (ONNX)")
    if path.is_dir() and (path / "MLmodel").is_file():
        return ModelChoice(text, path, "mlflow", f"model: {path} (MLflow model folder)")
    pt = path / MODEL_FILE if path.is_dir() or path.suffix != ".pt" else path
    if not pt.is_file():
        raise OccluferError(f"{pt}: no model file; train one first (`dvc repro`) or pass "
                            "--model (a models/ folder, model.pt, model.onnx, zoo:<name> or an "
                            "MLflow models:/ URI)")
    return ModelChoice(text, pt, "torch", f"model: {pt}")


def resolve_model_file(ref: str) -> Path:
    """The local ``model.pt`` (written by :func:`occlufer.models.save_model`) behind ``ref``:
    ``train.init_from`` takes the same references as ``--model``, resolved by
    :func:`resolve_model`.

    Raises :class:`~occlufer.errors.OccluferError` (one line) when there is none, or when
    ``ref`` is an ONNX file (no PyTorch weights).
    """
    return resolve_model(str(ref)).torch_file()


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
