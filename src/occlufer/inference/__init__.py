"""Using a trained model: load it from anywhere (:mod:`.predictor`), classify photos and folders
(:mod:`.photos`, ``occlufer predict``), serve it with MLflow (:mod:`.pyfunc`, :mod:`.serving`)
and export it to ONNX (:mod:`.export`, ``occlufer export``)."""

from occlufer.inference.predictor import Predictor, load_predictor

__all__ = ["Predictor", "load_predictor"]
