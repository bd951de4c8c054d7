"""The served model's request handling, without MLflow: a DataFrame of images → predictions.

Input rows carry either ``image`` (a base64 string of an encoded image in any format PIL reads)
or ``pixels`` (an S×S array or nested list of 0..255 values, or a flat list of S² values; S =
the model's image size, 48 by default). Images are decoded by the pipeline's rules; with
``detect`` the largest face found is classified (acquire's Haar detection and margin), else the
centred square of the whole image. Pixels are taken as a face crop as they are.

Output: one row per input row, in order: ``label``, ``confidence``, ``status`` (``ok``,
``no_face`` or ``error``), ``error`` (the reason, else empty), ``face_box`` (``x,y,w,h`` in the
image's pixels, empty for pixels or failures) and one probability column per class. A row that
cannot be used does not fail the batch.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import pandas as pd

from occlufer.errors import OccluferError
from occlufer.inference.photos import ERROR, OK, FaceSearch, analyse
from occlufer.inference.predictor import Predictor, top_labels

COLUMNS = ("image", "pixels")


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


def _face(row: pd.Series, search: FaceSearch) -> tuple[np.ndarray | None, str, str, str]:
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
    found = analyse(data, search)
    if found.status != OK:
        return None, found.status, found.error, ""
    # with detection the largest face (detect() sorts them largest first); else the one crop
    return found.crops[0], OK, "", ",".join(map(str, found.boxes[0]))


def predict_frame(predictor: Predictor, frame: pd.DataFrame, *, detect: bool = False,
                  margin: float | None = None, min_face: int | None = None) -> pd.DataFrame:
    """See the module docstring; raises :class:`OccluferError` when the frame has neither an
    ``image`` nor a ``pixels`` column (an empty frame gives an empty answer)."""
    columns = output_columns(predictor.classes)
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    if len(frame) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c in predictor.classes
                                          or c == "confidence" else object)
                             for c in columns})
    if not any(c in frame.columns for c in COLUMNS):
        raise OccluferError(f"request has columns {list(map(str, frame.columns))}; expected "
                            "`image` (base64-encoded image) or `pixels` "
                            f"({predictor.image_size}×{predictor.image_size} values 0..255)")
    default = FaceSearch()
    search = FaceSearch(detect=bool(detect), size=predictor.image_size,
                        margin=default.margin if margin is None else margin,
                        min_face=min_face or default.min_face)
    rows = [_face(row, search) for _, row in frame.iterrows()]
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

