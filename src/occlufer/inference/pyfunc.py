"""The MLflow pyfunc model that ``train`` logs: preprocessing + classes + weights in one model.

``mlflow models serve -m models:/<name>@<alias> --env-manager local`` answers
``POST /invocations`` with it; the request handling is :func:`occlufer.inference.serving.
predict_frame` (images as base64 or raw pixel arrays → label, confidence, status, one
probability per class). ``params={"detect": true}`` finds the largest face in each image first.
Logged by :func:`occlufer.tracking.log_pyfunc_model` (this module only defines the class).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from occlufer.errors import OccluferError

ARTIFACT = "model"  # context.artifacts key of model.pt


class ExpressionModel(mlflow.pyfunc.PythonModel):
    """Wraps ``model.pt`` (an artifact) with its preprocessing and class names."""

    def __init__(self, classes: list[str], image_size: int, margin: float,
                 min_face: int) -> None:
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.margin = float(margin)
        self.min_face = int(min_face)
        self.predictor: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "predictor": None}  # the weights travel as the artifact

    def load_context(self, context: Any) -> None:
        from occlufer.inference.predictor import torch_predictor

        self.predictor = torch_predictor(context.artifacts[ARTIFACT], "cpu")

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from occlufer.inference.serving import predict_frame

        params = params or {}
        try:
            out = predict_frame(self.predictor, pd.DataFrame(model_input),
                                detect=bool(params.get("detect", False)), margin=self.margin,
                                min_face=self.min_face)
        except OccluferError as exc:  # a malformed request: HTTP 400, one line
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        # rows without a face: null, not NaN (which is not JSON) in the server's answer
        return out.astype(object).where(out.notna(), None)
