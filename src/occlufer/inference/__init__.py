"""Using a trained model: load it from anywhere, the model zoo included (:mod:`.predictor`,
:func:`~.predictor.resolve_model`), classify photos and folders (:mod:`.photos`, ``occlufer
predict``) and videos (:mod:`.video`: faces tracked across frames, smoothed per track), serve
it with MLflow (:mod:`.pyfunc`, :mod:`.serving`) and export it to ONNX or a pyfunc folder
(:mod:`.export`, ``occlufer export``)."""

from occlufer.inference.predictor import Predictor, load_predictor, resolve_model

__all__ = ["Predictor", "load_predictor", "resolve_model"]
