"""Using a trained model: load it (:mod:`.predictor`), classify photos (:mod:`.photos`) and
videos (:mod:`.video`), serve it with MLflow (:mod:`.pyfunc`, :mod:`.serving`), export it
(:mod:`.export`)."""

from occlufer.inference.predictor import Predictor, load_predictor, resolve_model

__all__ = ["Predictor", "load_predictor", "resolve_model"]
