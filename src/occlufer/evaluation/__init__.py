"""Evaluation: classification metrics and plots for clean and occluded faces."""

from occlufer.evaluation.metrics import classification_metrics, confusion_png

__all__ = ["classification_metrics", "confusion_png"]
