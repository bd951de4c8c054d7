"""Evaluation: metrics, robustness curves, calibration, plots and the report.

:func:`~occlufer.evaluation.evaluate.evaluate` is the one entry point (the ``validate`` stage
and ``occlufer evaluate`` call it).
"""

from occlufer.evaluation.metrics import bootstrap_ci, classification_metrics, confusion_png

__all__ = ["bootstrap_ci", "classification_metrics", "confusion_png"]
