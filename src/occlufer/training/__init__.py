"""Training: the epoch loop and model checkpoints."""

from occlufer.training.loop import EpochStats, fit, predict_logits, resolve_device

__all__ = ["EpochStats", "fit", "predict_logits", "resolve_device"]
