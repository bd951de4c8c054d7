"""``occlufer predict``: a folder mixing good photos, no face, corrupt files, odd formats."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from occlufer.cli import main
from occlufer.inference.photos import FaceSearch, analyse
from occlufer.inference.predictor import load_predictor
from occlufer.labels import CLASSES
from tests.inference.conftest import FACE_AT, FACE_SIDE, encode, face_photo

ROOT = Path(__file__).resolve().parents[2]


def _csv(path: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(Path(row["path"]).name, []).append(row)
    return rows


def test_predict_folder_with_detection_csv(photo_dir: Path, model_pt: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "preds.csv"
    assert main(["predict", str(photo_dir), "--out", str(out), "--model",
                 str(model_pt.parent), "--workers", "1"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary == f"predict: 6 images, 2 faces, 1 errors (3 without a face) -> {out}"
    rows = _csv(out)
    assert set(rows) == {"good.jpg", "plain.png", "corrupt.jpg", "alpha.png", "turned.jpg",
                         "face.webp"}  # recursive; .txt and hidden files skipped
    assert list(csv.reader(out.open()))[0][-7:] == list(CLASSES)
    for name in ("good.jpg", "face.webp"):
        (row,) = rows[name]
        assert row["status"] == "ok" and row["face"] == "0" and row["error"] == ""
        x, y, w, h = (int(row[k]) for k in "xywh")
        fx, fy = FACE_AT  # the box lies on the pasted face
        inter = (max(0, min(x + w, fx + FACE_SIDE) - max(x, fx))
                 * max(0, min(y + h, fy + FACE_SIDE) - max(y, fy)))
        assert inter / (w * h + FACE_SIDE**2 - inter) > 0.5
        probs = np.array([float(row[c]) for c in CLASSES])
        assert probs.sum() == pytest.approx(1, abs=1e-5)
        assert row["label"] == CLASSES[probs.argmax()]
        assert float(row["confidence"]) == pytest.approx(probs.max(), abs=1e-6)
    for name in ("plain.png", "alpha.png", "turned.jpg"):
        assert [(r["status"], r["label"], r["angry"]) for r in rows[name]] == [("no_face", "", "")]
    (bad,) = rows["corrupt.jpg"]
    assert bad["status"] == "error" and bad["error"].startswith("unreadable:")


def test_predict_no_detect_jsonl_every_readable_image_is_one_face(
        photo_dir: Path, model_pt: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "preds.jsonl"
    files = [str(photo_dir / "good.jpg"), str(photo_dir / "sub"), str(photo_dir / "alpha.png"),
             str(photo_dir / "corrupt.jpg"), str(photo_dir / "turned.jpg")]
    assert main(["predict", *files, "-o", str(out), "--format", "jsonl", "--no-detect",
                 "--model", str(model_pt), "--batch-size", "2", "--workers", "1"]) == 0
    assert "5 images, 4 faces, 1 errors (0 without a face)" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["good.jpg", "face.webp", "alpha.png",
                                                   "corrupt.jpg", "turned.jpg"]
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["good.jpg"]["box"] == [50, 0, 300, 300]  # the centred square of 400×300
    assert by_name["turned.jpg"]["box"] == [0, 20, 120, 120]  # upright 120×160
    assert by_name["corrupt.jpg"]["status"] == "error" and by_name["corrupt.jpg"]["box"] is None
    # a fully transparent PNG is white: the same probabilities as a white face crop
    predictor = load_predictor(model_pt)
    white = predictor.predict_proba(np.full((1, 48, 48), 255, np.uint8))[0]
    got = by_name["alpha.png"]["probabilities"]
    assert list(got) == list(CLASSES)
    np.testing.assert_allclose([got[c] for c in CLASSES], white, atol=1e-6)


def test_analyse_applies_exif_orientation_before_cropping(photo_dir: Path) -> None:
    found = analyse((photo_dir / "turned.jpg").read_bytes(), FaceSearch(detect=False))
    crop = found.crops[0].astype(float)
    assert found.boxes == [(0, 20, 120, 120)]
    assert crop[:20].mean() > 200 and crop[28:].mean() < 50  # white on top once upright


def test_analyse_reports_boxes_in_the_files_pixels_after_jpeg_draft() -> None:
    import cv2

    photo = face_photo(rgb=False)
    big = cv2.resize(photo, (3200, 2400), interpolation=cv2.INTER_LINEAR)  # ×8: drafted ÷2
    small = analyse(encode(photo, "JPEG", quality=95), FaceSearch()).boxes
    large = analyse(encode(big, "JPEG", quality=95), FaceSearch()).boxes
    assert len(small) == 1 and len(large) == 1
    np.testing.assert_allclose(np.array(large[0]) / 8, small[0], atol=6)


def test_onnx_model_gives_the_same_rows(photo_dir: Path, model_pt: Path, tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    assert main(["export", "--model", str(model_pt), "--out", str(onnx)]) == 0
    for model, name in ((model_pt, "torch.csv"), (onnx, "onnx.csv")):
        assert main(["predict", str(photo_dir), "-o", str(tmp_path / name), "--model",
                     str(model), "--no-detect", "--workers", "2"]) == 0
    torch_rows, onnx_rows = _csv(tmp_path / "torch.csv"), _csv(tmp_path / "onnx.csv")
    assert set(torch_rows) == set(onnx_rows) and len(torch_rows) == 6
    for name, rows in torch_rows.items():
        (a,), (b,) = rows, onnx_rows[name]
        assert (a["status"], a["label"], a["x"]) == (b["status"], b["label"], b["x"])
        if a["status"] == "ok":
            np.testing.assert_allclose([float(a[c]) for c in CLASSES],
                                       [float(b[c]) for c in CLASSES], atol=1e-4)


def test_bad_arguments_are_one_line_exit_2(photo_dir: Path, tmp_path: Path, model_pt: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OCCLUFER_ZOO_DIR", str(tmp_path / "empty-zoo"))  # no zoo fallback
    assert main(["predict", str(photo_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("occlufer predict: error: models/model.pt: no model file; train one "
                          "first (`dvc repro`) or pass --model")
    assert "zoo:fer2013" in err
    assert main(["predict", "nowhere", "--model", str(model_pt)]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", "empty", "--model", str(model_pt)]) == 2
    assert "no images in empty" in capsys.readouterr().err
    assert main(["predict", str(photo_dir), "--model", "missing.onnx"]) == 2
    assert "missing.onnx: no such ONNX file" in capsys.readouterr().err
    assert main(["export", "--model", "nothing"]) == 2
    assert "nothing/model.pt: no model file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(photo_dir), "--batch-size", "0"])
    assert exc.value.code == 2


def test_face_search_defaults_are_acquires_photo_settings() -> None:
    conf = yaml.safe_load((ROOT / "conf" / "acquire" / "photos.yaml").read_text())
    assert (FaceSearch().margin, FaceSearch().min_face) == (conf["face_margin"],
                                                            conf["face_min_size"])
