"""The served model's request handling, without MLflow: a DataFrame of images → predictions.

Rows carry ``image`` (base64 of an image file) or ``pixels`` (a face crop, S×S values 0..255);
one output row each (label, confidence, status, error, face_box, a probability per class). A
request is refused as a whole (HTTP 400) for unknown columns or more image data than
``OCCLUFER_MAX_REQUEST_MB``; see docs/model.md "Serving limits and errors", :class:`Limits`.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from occlufer.data.images import image_dimensions
from occlufer.errors import OccluferError
from occlufer.inference.photos import CROP_MIN_SIZE, ERROR, OK, FaceSearch, analyse, min_size_rule
from occlufer.inference.predictor import Predictor, top_labels

COLUMNS = ("image", "pixels")
ENV_MAX_REQUEST_MB = "OCCLUFER_MAX_REQUEST_MB"
ENV_MAX_IMAGE_SIDE = "OCCLUFER_MAX_IMAGE_SIDE"
ENV_MIN_SIZE = "OCCLUFER_MIN_SIZE"


@dataclass(frozen=True)
class Limits:
    """What one request may hold: base64 MB in all, each image's side (read from its header),
    the shorter side without detection (``too_small``); read at each request from the env."""

    request_mb: float = 10.0
    image_side: int = 4096
    min_size: int = CROP_MIN_SIZE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        env, d = os.environ if env is None else env, cls()
        return cls(*(_env_number(env, name, default) for name, default in (
            (ENV_MAX_REQUEST_MB, d.request_mb), (ENV_MAX_IMAGE_SIDE, d.image_side),
            (ENV_MIN_SIZE, d.min_size))))


def _env_number(env: Mapping[str, str], name: str, default: float) -> Any:
    raw = env.get(name, "").strip()
    try:
        value = type(default)(raw) if raw else default
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        what = "whole number" if isinstance(default, int) else "number"
        raise OccluferError(f"{name}={raw!r}: expected a positive {what} (default {default}); "
                            "fix or unset it in the server's environment")
    return value


def output_columns(classes: list[str]) -> list[str]:
    return ["label", "confidence", "status", "error", "face_box", *classes]


def _missing(value: Any) -> bool:
    return (value is None or (isinstance(value, float) and np.isnan(value))
            or (isinstance(value, str) and not value.strip()))


def _pixels(value: Any, size: int) -> np.ndarray:
    if isinstance(value, str):  # FER2013 style: space-separated
        value = value.replace(",", " ").split()
    shape = f"expected {size}×{size} values (or a flat list of {size * size})"
    if isinstance(value, list | tuple) and len(value) not in (size, size * size):
        raise ValueError(f"pixels: {shape}, got a list of {len(value)}")  # before converting it
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pixels: not numbers ({str(exc).splitlines()[0][:100]})") from None
    if a.shape == (size * size,):
        a = a.reshape(size, size)
    if a.shape != (size, size):
        raise ValueError(f"pixels: {shape}, got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
        raise ValueError("pixels: values must be finite numbers in 0..255")
    return np.rint(a).astype(np.uint8)


def _face(row: pd.Series, search: FaceSearch,
          limits: Limits) -> tuple[np.ndarray | None, str, str, str]:
    """(crop or None, status, error, face_box) for one request row."""
    pixels, image = row.get("pixels"), row.get("image")
    if isinstance(pixels, list | tuple | np.ndarray) or not _missing(pixels):
        try:
            return _pixels(pixels, search.size), OK, "", ""
        except ValueError as exc:
            return None, ERROR, str(exc), ""
    if _missing(image):
        return None, ERROR, "empty: the row has neither image nor pixels", ""
    if not isinstance(image, str | bytes):
        return None, ERROR, f"image: expected a base64 string, got {type(image).__name__}", ""
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError) as exc:
        return None, ERROR, f"bad_base64: {exc}", ""
    size = image_dimensions(data)  # from the header: nothing is decoded yet
    if size is not None and max(size) > limits.image_side:
        side = limits.image_side
        return None, ERROR, (f"too_large: {size[0]}×{size[1]} px > {side}×{side} "
                             f"({ENV_MAX_IMAGE_SIDE}); send a smaller image"), ""
    found = min_size_rule(analyse(data, search), search, limits.min_size)
    if found.status != OK:
        return None, found.status, found.error, ""
    # with detection the largest face (detect() sorts them largest first); else the one crop
    return found.crops[0], OK, "", ",".join(map(str, found.boxes[0]))


def check_columns(frame: pd.DataFrame, image_size: int) -> None:
    """Refuse a request with a column other than ``image`` / ``pixels``, or neither."""
    names = [str(c) for c in frame.columns]
    unknown = [n for n in names if n not in COLUMNS]
    if (not names and len(frame) == 0) or (not unknown and any(n in COLUMNS for n in names)):
        return
    problem = f"unknown column(s) {unknown}" if unknown else "no `image` or `pixels` column"
    note = ("; `detect` is a parameter, not a column: send \"params\": {\"detect\": true}"
            if "detect" in unknown else "")
    raise OccluferError(f"request has columns {names}: {problem}; expected `image` (a base64-"
                        f"encoded image file) and/or `pixels` ({image_size}×{image_size} values "
                        f"0..255), one of them in each row{note}")


def check_request_size(frame: pd.DataFrame, limits: Limits) -> None:
    """Refuse a request whose ``image`` and string ``pixels`` cells exceed the limit."""
    total = sum(len(v) for c in COLUMNS if c in frame.columns for v in frame[c]
                if isinstance(v, str | bytes))
    if total > limits.request_mb * 1e6:
        raise OccluferError(f"request too large: {total / 1e6:.1f} MB of image data in "
                            f"{len(frame)} rows > {limits.request_mb:g} MB "
                            f"({ENV_MAX_REQUEST_MB}); send fewer or smaller images per request")


def predict_frame(predictor: Predictor, frame: pd.DataFrame, *, detect: bool = False,
                  margin: float | None = None, min_face: int | None = None,
                  limits: Limits | None = None) -> pd.DataFrame:
    """The answer to a request (see the module docstring); ``limits``: default from the env."""
    limits = Limits.from_env() if limits is None else limits
    classes = predictor.classes
    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    check_columns(frame, predictor.image_size)
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in classes or c == "confidence"
                                          else object) for c in output_columns(classes)})
    check_request_size(frame, limits)
    default = FaceSearch()
    search = FaceSearch(detect=bool(detect), size=predictor.image_size,
                        margin=default.margin if margin is None else margin,
                        min_face=min_face or default.min_face)
    rows = [_face(row, search, limits) for _, row in frame.iterrows()]
    found = [crop is not None for crop, *_ in rows]
    probs = np.full((len(rows), len(classes)), np.nan)
    if any(found):
        probs[found] = predictor.predict_proba(np.stack([r[0] for r in rows if r[0] is not None]))
    labels, conf = top_labels(probs, classes)  # NaN (and no label) for rows without a face
    return pd.DataFrame({"label": [k if f else None for k, f in zip(labels, found, strict=True)],
                         "confidence": conf, "status": [r[1] for r in rows],
                         "error": [r[2] for r in rows], "face_box": [r[3] for r in rows],
                         **dict(zip(classes, probs.T, strict=True))},
                        columns=output_columns(classes))
