"""Training: the epoch loop, augmentation, checkpoints and the distributed launch."""

from occlufer.devices import resolve_device
from occlufer.training.augment import TrainArrays, ValArrays, source_rows
from occlufer.training.loop import EpochStats, FitResult, TrainState, evaluate, fit, predict_logits

__all__ = ["EpochStats", "FitResult", "TrainArrays", "TrainState", "ValArrays", "evaluate", "fit",
           "predict_logits", "resolve_device", "source_rows"]
