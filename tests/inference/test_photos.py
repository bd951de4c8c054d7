"""``occlufer predict`` per face: the detector's score, keypoints and alignment transform."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from occlufer.cli import main
from occlufer.data.detectors import ALIGN_TO, KEYPOINTS
from occlufer.inference.photos import FaceSearch, analyse
from occlufer.labels import CLASSES
from tests.inference.conftest import encode, face_photo


def _apply(m: list[list[float]], point: list[float]) -> np.ndarray:
    return np.asarray(m)[:, :2] @ np.asarray(point) + np.asarray(m)[:, 2]


def test_transform_takes_the_files_keypoints_to_the_targets_after_jpeg_draft() -> None:
    big = cv2.resize(face_photo(), (3200, 2400), interpolation=cv2.INTER_LINEAR)  # drafted ÷2
    for data in (encode(face_photo(), "JPEG", quality=95), encode(big, "JPEG", quality=95)):
        found = analyse(data, FaceSearch())
        assert found.status == "ok" and len(found.boxes) == 1
        d = found.face(0, np.full(len(CLASSES), 1 / len(CLASSES)), CLASSES)
        assert 0.5 <= d["score"] <= 1 and list(d["keypoints"]) == list(KEYPOINTS)
        x, y, w, h = found.boxes[0]  # keypoints in the file's pixels, inside the box
        assert all(x <= px <= x + w and y <= py <= y + h
                   for n, (px, py) in d["keypoints"].items() if "ear" not in n)
        for name in ("left_eye", "right_eye"):
            np.testing.assert_allclose(_apply(d["transform"], d["keypoints"][name]) / 48,
                                       ALIGN_TO[name], atol=0.05)


def test_csv_and_jsonl_rows_carry_score_keypoints_and_transform(
        photo_dir: Path, model_pt: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    assert main(["predict", str(photo_dir), "-o", str(out), "--model", str(model_pt),
                 "--workers", "1"]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(out.open())}
    header = next(csv.reader(out.open()))
    points = [f"{n}_{a}" for n in KEYPOINTS for a in "xy"]
    assert header[10:] == ["score", *points, "transform", *CLASSES]  # classes stay last
    good = rows["good.jpg"]
    m = np.array(good["transform"].split(), float).reshape(2, 3)
    eye = [float(good["left_eye_x"]), float(good["left_eye_y"])]
    np.testing.assert_allclose(_apply(m.tolist(), eye) / 48, ALIGN_TO["left_eye"], atol=0.05)
    assert 0.5 <= float(good["score"]) <= 1
    assert [rows["corrupt.jpg"][k] for k in ("score", "left_eye_x", "transform")] == ["", "", ""]

    jsonl = tmp_path / "haar.jsonl"
    assert main(["predict", str(photo_dir / "good.jpg"), "-o", str(jsonl), "--format", "jsonl",
                 "--model", str(model_pt), "--detector", "haar", "--workers", "1"]) == 0
    (row,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert row["keypoints"] is None and row["score"] >= 1  # haar: merged windows, no keypoints
    x, y, w, h = row["box"]  # the transform: the box grown by the 0.2 margin → 48×48
    side = round(w * 1.4)
    np.testing.assert_allclose(_apply(row["transform"], [x + w / 2 + side / 2,
                                                         y + h / 2 + side / 2]), [48, 48],
                               atol=0.7)


def test_unknown_detector_in_the_library_is_one_error_not_rows() -> None:
    from occlufer.errors import OccluferError

    with pytest.raises(OccluferError, match="unknown face detector 'nope'"):
        analyse(encode(face_photo()), FaceSearch(detector="nope"))
