"""Evaluation: metrics, robustness curves, calibration, plots and the report; the entry point
is :func:`occlufer.evaluation.evaluate.evaluate` (``validate`` and ``occlufer evaluate``)."""
