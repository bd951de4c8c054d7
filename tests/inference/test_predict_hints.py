"""``occlufer predict``: the hint for face crops and acquire's minimum size with --no-detect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from occlufer.cli import build_parser, main
from occlufer.data.synthetic import SyntheticSpec, generate
from occlufer.inference.photos import (
    CROP_HINT,
    CROP_MIN_SIZE,
    Summary,
    looks_like_crop,
)
from tests.inference.conftest import encode

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def crops_dir(tmp_path: Path) -> Path:
    """Seven 48×48 face crops (too tight for the detector) and one 200×120 plain image."""
    root = tmp_path / "crops"
    root.mkdir()
    for i, face in enumerate(generate(SyntheticSpec(n_per_class=1, size=48), seed=3)[0]):
        (root / f"face{i}.png").write_bytes(encode(face))
    (root / "wide.jpg").write_bytes(encode(np.full((120, 200), 90, np.uint8), "JPEG"))
    return root


def _rows(path: Path) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in map(json.loads, path.read_text().splitlines())}


def test_crops_without_no_detect_end_with_one_hint(crops_dir: Path, model_pt: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["predict", str(crops_dir), "-o", str(out), "--format", "jsonl", "--model",
                 str(model_pt), "--workers", "1"]) == 0
    rows = _rows(out)
    no_face = sum(r["status"] == "no_face" for r in rows.values())
    assert no_face >= 5 and rows["wide.jpg"]["status"] == "no_face"
    captured = capsys.readouterr()
    assert captured.err.count(CROP_HINT) == 1 and CROP_HINT not in captured.out
    hint = captured.err.strip().splitlines()[-1]
    assert hint == (f"predict: no face found in {no_face - 1} of 8 images, small and square "
                    f"(≤ 128 px): {CROP_HINT}")  # wide.jpg is no crop
    assert main(["predict", str(crops_dir), "-o", str(out), "--model", str(model_pt),
                 "--no-detect", "--workers", "1"]) == 0
    assert CROP_HINT not in capsys.readouterr().err  # classified: no hint


def test_photos_without_faces_get_no_hint(photo_dir: Path, model_pt: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(photo_dir), "-o", str(tmp_path / "p.csv"), "--model",
                 str(model_pt), "--workers", "1"]) == 0
    assert CROP_HINT not in capsys.readouterr().err  # 3 of 6 without a face, 1 of them square


def test_no_detect_reports_images_below_the_minimum_size(crops_dir: Path, model_pt: Path,
                                                         tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    (crops_dir / "tiny.png").write_bytes(encode(np.full((5, 5), 200, np.uint8)))
    (crops_dir / "strip.png").write_bytes(encode(np.full((31, 300), 200, np.uint8)))
    out = tmp_path / "p.jsonl"
    assert main(["predict", str(crops_dir), "-o", str(out), "--format", "jsonl", "--no-detect",
                 "--model", str(model_pt), "--workers", "1"]) == 0
    assert "10 images, 8 faces, 0 errors (0 without a face, 2 too small)" in \
        capsys.readouterr().out
    rows = _rows(out)
    for name, side in (("tiny.png", 5), ("strip.png", 31)):
        row = rows[name]
        assert (row["status"], row["label"], row["probabilities"], row["box"]) == (
            "too_small", None, None, None)
        assert row["error"] == f"too_small: shorter side {side} px < 32 (acquire.min_size)"
    assert rows["face0.png"]["status"] == "ok" and rows["wide.jpg"]["status"] == "ok"
    assert main(["predict", str(crops_dir / "tiny.png"), "-o", str(out), "--format", "jsonl",
                 "--no-detect", "--min-size", "5", "--model", str(model_pt)]) == 0
    assert _rows(out)["tiny.png"]["status"] == "ok"


def test_crop_rule_and_minimum_size_match_acquire() -> None:
    conf = yaml.safe_load((ROOT / "conf" / "acquire" / "image_folder.yaml").read_text())
    assert conf["min_size"] == CROP_MIN_SIZE
    assert build_parser().parse_args(["predict", "x"]).min_size == CROP_MIN_SIZE
    assert looks_like_crop(48, 48) and looks_like_crop(128, 110) and looks_like_crop(100, 80)
    assert not looks_like_crop(129, 129) and not looks_like_crop(100, 79)
    assert not looks_like_crop(79, 100)
    assert Summary(images=4, crop_like=2).hint() is None  # half is not most
    assert CROP_HINT in (Summary(images=4, crop_like=3).hint() or "")
