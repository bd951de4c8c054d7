"""The served model's request handling, without MLflow: a DataFrame of images → predictions.

Input rows carry either ``image`` (a base64 string of an encoded image in any format PIL reads)
or ``pixels`` (an S×S array or nested list of 0..255 values, or a flat list of S² values; S =
the model's image size, 48 by default). Images are decoded by the pipeline's rules; with
``detect`` the largest face found is classified (acquire's Haar detection and margin), else the
centred square of the whole image. Pixels are taken as a face crop as they are.

Output: one row per input row, in order: ``label``, ``confidence``, ``status`` (``ok``,
``no_face``, ``too_small`` or ``error``), ``error`` (the reason, else empty), ``face_box``
(``x,y,w,h`` in the image's pixels, empty for pixels or failures) and one probability column
per class. A row that cannot be used does not fail the batch.

A request as a whole is refused (:class:`OccluferError`; HTTP 400 from the served model) when
it has a column other than ``image`` and ``pixels`` (``detect`` is a parameter, not a column),
or neither of them, or more image data than the limit. Limits, read from the environment at
each request (:meth:`Limits.from_env`):

- ``OCCLUFER_MAX_REQUEST_MB`` (default 10; 1 MB = 10⁶ characters): the ``image`` (base64) and
  string ``pixels`` cells of one request together; checked before anything is decoded.
- ``OCCLUFER_MAX_IMAGE_SIDE`` (default 4096): the width and height of each image, read from its
  header (:mod:`occlufer.data.dimensions`) before decoding; a larger one is an ``error`` row
  (``too_large: ...``).
- ``OCCLUFER_MIN_SIZE`` (default 32, acquire's ``min_size`` for image folders): without
  detection, an image whose shorter side is below it is a ``too_small`` row, not classified.
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

from occlufer.data.dimensions import image_dimensions
from occlufer.errors import OccluferError
from occlufer.inference.photos import CROP_MIN_SIZE, ERROR, OK, FaceSearch, analyse, min_size_rule
from occlufer.inference.predictor import Predictor, top_labels

COLUMNS = ("image", "pixels")
ENV_MAX_REQUEST_MB = "OCCLUFER_MAX_REQUEST_MB"
ENV_MAX_IMAGE_SIDE = "OCCLUFER_MAX_IMAGE_SIDE"
ENV_MIN_SIZE = "OCCLUFER_MIN_SIZE"


@dataclass(frozen=True)
class Limits:
    """What one request may hold; see the module docstring."""

    request_mb: float = 10.0
    image_side: int = 4096
    min_size: int = CROP_MIN_SIZE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by ``OCCLUFER_MAX_REQUEST_MB``, ``OCCLUFER_MAX_IMAGE_SIDE``
        and ``OCCLUFER_MIN_SIZE`` where set (``env``: default ``os.environ``)."""
        env = os.environ if env is None else env
        default = cls()
        return cls(request_mb=_env_number(env, ENV_MAX_REQUEST_MB, default.request_mb, float),
                   image_side=_env_number(env, ENV_MAX_IMAGE_SIDE, default.image_side, int),
                   min_size=_env_number(env, ENV_MIN_SIZE, default.min_size, int))


def _env_number(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not value > 0 or value == float("inf"):
        what = "whole number" if kind is int else "number"
        raise OccluferError(f"{name}={raw!r}: expected a positive {what} (default {default}); "
                            "fix or unset it in the server's environment")
    return value


def output_columns(classes: list[str]) -> list[str]:
    return ["label", "confidence", "status", "error", "face_box", *classes]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _pixels(value: Any, size: int) -> np.ndarray:
    if isinstance(value, str):  # FER2013 style: space-separated
        value = value.replace(",", " ").split()
    if isinstance(value, list | tuple) and len(value) not in (size, size * size):
        raise ValueError(f"pixels: expected {size}×{size} values (or a flat list of "
                         f"{size * size}), got a list of {len(value)}")  # before converting it
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pixels: not numbers ({str(exc).splitlines()[0][:100]})") from None
    if a.shape == (size * size,):
        a = a.reshape(size, size)
    if a.shape != (size, size):
        raise ValueError(f"pixels: expected {size}×{size} values (or a flat list of "
                         f"{size * size}), got shape {a.shape}")
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 255:
        raise ValueError("pixels: values must be finite numbers in 0..255")
    return np.rint(a).astype(np.uint8)


def _face(row: pd.Series, search: FaceSearch,
          limits: Limits) -> tuple[np.ndarray | None, str, str, str]:
    """(crop or None, status, error, face_box) for one request row."""
    pixels = row.get("pixels")
    image = row.get("image")
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
    """Raise :class:`OccluferError` naming the expected columns when ``frame`` has a column
    other than ``image`` / ``pixels`` or neither (an empty request without columns passes)."""
    names = [str(c) for c in frame.columns]
    if not names and len(frame) == 0:
        return
    unknown = [n for n in names if n not in COLUMNS]
    if not unknown and any(n in COLUMNS for n in names):
        return
    problem = f"unknown column(s) {unknown}" if unknown else "no `image` or `pixels` column"
    note = ("; `detect` is a parameter, not a column: send \"params\": {\"detect\": true}"
            if "detect" in unknown else "")
    raise OccluferError(f"request has columns {names}: {problem}; expected `image` (a base64-"
                        f"encoded image file) and/or `pixels` ({image_size}×{image_size} values "
                        f"0..255), one of them in each row{note}")


def check_request_size(frame: pd.DataFrame, limits: Limits) -> None:
    """Raise :class:`OccluferError` when the image data of ``frame`` (its ``image`` cells and
    string ``pixels`` cells, as sent) exceeds ``limits.request_mb``; nothing is decoded."""
    total = sum(len(v) for c in COLUMNS if c in frame.columns for v in frame[c]
                if isinstance(v, str | bytes))
    if total > limits.request_mb * 1e6:
        raise OccluferError(f"request too large: {total / 1e6:.1f} MB of image data in "
                            f"{len(frame)} rows > {limits.request_mb:g} MB "
                            f"({ENV_MAX_REQUEST_MB}); send fewer or smaller images per request")


def predict_frame(predictor: Predictor, frame: pd.DataFrame, *, detect: bool = False,
                  margin: float | None = None, min_face: int | None = None,
                  limits: Limits | None = None) -> pd.DataFrame:
    """See the module docstring; raises :class:`OccluferError` for a request that is refused as
    a whole (:func:`check_columns`, :func:`check_request_size`; an empty frame gives an empty
    answer). ``limits``: default :meth:`Limits.from_env`."""
    limits = Limits.from_env() if limits is None else limits
    columns = output_columns(predictor.classes)
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    check_columns(frame, predictor.image_size)
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in predictor.classes
                                          or c == "confidence" else object)
                             for c in columns})
    check_request_size(frame, limits)
    default = FaceSearch()
    search = FaceSearch(detect=bool(detect), size=predictor.image_size,
                        margin=default.margin if margin is None else margin,
                        min_face=min_face or default.min_face)
    rows = [_face(row, search, limits) for _, row in frame.iterrows()]
    crops = [r[0] for r in rows if r[0] is not None]
    probs = (predictor.predict_proba(np.stack(crops)) if crops
             else np.zeros((0, len(predictor.classes)), np.float32))
    labels, conf = top_labels(probs, predictor.classes)
    out: list[dict[str, Any]] = []
    k = 0
    for crop, status, error, box in rows:
        if crop is None:
            out.append({"label": None, "confidence": np.nan, "status": status, "error": error,
                        "face_box": box, **{c: np.nan for c in predictor.classes}})
            continue
        out.append({"label": labels[k], "confidence": float(conf[k]), "status": OK,
                    "error": "", "face_box": box,
                    **{c: float(p) for c, p in zip(predictor.classes, probs[k], strict=True)}})
        k += 1
    return pd.DataFrame(out, columns=columns)

