"""Canonical expression labels: the one ordered list every reader maps onto."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
