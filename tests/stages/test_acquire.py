from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from occlufer.data.readers import KEYPOINT_COLUMNS
from occlufer.data.store import read_store
from occlufer.stages.acquire import acquire


def test_acquire_writes_a_consistent_store(tmp_path: Path, params) -> None:
    counts = acquire(params, tmp_path / "acq")
    store = read_store(tmp_path / "acq")
    n = params.acquire.n_per_class * len(params.acquire.classes)
    assert counts == {"read": n, "kept": n, "rejected": 0}
    assert store.images.shape == (n, 48, 48) and store.images.dtype == np.uint8
    m = store.manifest
    assert list(m["label"].cat.categories) == params.acquire.classes
    assert m["label"].value_counts().eq(params.acquire.n_per_class).all()
    assert m["id"].is_unique
    assert m["group"].str.startswith("subject-").all()
    assert m[KEYPOINT_COLUMNS].isna().all().all()  # drawn faces: no detected keypoints
    rejects = pd.read_csv(tmp_path / "acq" / "rejects.csv")
    assert list(rejects.columns) == ["path", "reason"] and len(rejects) == 0
    summary = json.loads((tmp_path / "acq" / "summary.json").read_text())
    assert summary["read"] == summary["kept"] + summary["rejected"]
    assert Image.open(tmp_path / "acq" / "preview.png").size[0] > 48


def test_acquire_is_deterministic_and_seeded(tmp_path: Path, make_params) -> None:
    acquire(make_params(), tmp_path / "a")
    acquire(make_params(), tmp_path / "b")
    acquire(make_params("seed=1"), tmp_path / "c")
    a, b, c = (np.load(tmp_path / x / "images.npy") for x in "abc")
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_acquire_honours_class_subset_and_size(tmp_path: Path, make_params) -> None:
    p = make_params("acquire.classes=[happy,sad,surprise]", "acquire.image_size=64")
    acquire(p, tmp_path / "acq")
    store = read_store(tmp_path / "acq")
    assert store.images.shape[1:] == (64, 64)
    assert set(store.manifest["label"]) == {"happy", "sad", "surprise"}


# --------------------------------------------------------------------------- real sources

def _png(path: Path, seed: int, shape: tuple[int, int] = (48, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)


def _folder_params(make_params, root: Path, *extra: str):
    import dataclasses

    p = make_params("acquire=image_folder", "acquire.path=/unset", *extra)
    return dataclasses.replace(p, acquire=dataclasses.replace(p.acquire, path=str(root),
                                                              workers=1))


def test_image_folder_stage_counts_everything(tmp_path: Path, make_params, capsys) -> None:
    root = tmp_path / "my faces"
    for i in range(20):
        _png(root / "train" / ("happy", "sad")[i % 2] / f"{i}.png", i)
    _png(root / "val" / "happy" / "v.png", 99)
    (root / "val" / "happy" / "broken.png").write_bytes(b"\x89PNG\r\n")
    counts = acquire(_folder_params(make_params, root), tmp_path / "acq")
    assert counts == {"read": 22, "kept": 21, "rejected": 1}
    assert "acquire: read 22, kept 21, rejected 1" in capsys.readouterr().out
    summary = json.loads((tmp_path / "acq" / "summary.json").read_text())
    assert summary["per_split"] == {"train": 20, "val": 1}
    assert summary["per_class"]["happy"] == 11 and summary["per_class"]["angry"] == 0
    assert summary["rejected_by_reason"] == {"unreadable": 1}
    rejects = pd.read_csv(tmp_path / "acq" / "rejects.csv")
    assert rejects["path"].tolist() == ["val/happy/broken.png"]
    assert len(read_store(tmp_path / "acq")) == 21
    assert (tmp_path / "acq" / "preview.png").is_file()


def test_too_many_rejects_or_nothing_usable_stop_with_one_line(tmp_path: Path, make_params,
                                                               capsys) -> None:
    from occlufer.stages import run_stage

    root = tmp_path / "d"
    _png(root / "happy" / "a.png", 1)
    for i in range(3):
        (root / "sad" / f"{i}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / "sad" / f"{i}.jpg").write_bytes(b"")
    p = _folder_params(make_params, root)
    with pytest.raises(SystemExit) as exit_:
        run_stage("acquire", lambda: acquire(p, tmp_path / "acq"))
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err
    assert "3 of 4 inputs rejected" in err and "max_reject_fraction" in err
    assert len(pd.read_csv(tmp_path / "acq" / "rejects.csv")) == 3  # written before stopping
    (root / "happy" / "a.png").unlink()
    with pytest.raises(SystemExit):
        run_stage("acquire", lambda: acquire(p, tmp_path / "acq2"))
    assert "nothing usable" in capsys.readouterr().err


def test_missing_dataset_path_is_one_line(tmp_path: Path, make_params, capsys) -> None:
    from occlufer.stages import run_stage

    p = _folder_params(make_params, tmp_path / "no such dataset")
    with pytest.raises(SystemExit):
        run_stage("acquire", lambda: acquire(p, tmp_path / "acq"))
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "`acquire.path`" in err and "no such dataset" in err


def test_photos_face_policies_and_exif_before_detection(tmp_path: Path, make_params,
                                                        monkeypatch) -> None:
    import dataclasses

    from occlufer.data import detectors
    from occlufer.data.detectors import Face

    seen = []

    class TwoFaces:  # two faces (no keypoints) in every photo, largest first
        def detect(self, image, min_face):
            seen.append(image.shape[:2])
            return ([Face((10, 10, 60, 60), 1.0), Face((100, 20, 40, 40), 1.0)]
                    if image.mean() > 60 else [])

    monkeypatch.setattr(detectors, "get_detector", lambda name: TwoFaces())
    root = tmp_path / "photos"
    _png(root / "happy" / "party.png", 1, (120, 160))
    (root / "sad").mkdir()
    Image.new("L", (160, 120), 0).save(root / "sad" / "dark.png")  # "no face"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((120, 160), 200, np.uint8)).save(root / "sad" / "turned.jpg",
                                                             exif=exif)
    base = make_params("acquire=photos", "acquire.path=/unset")

    def run(policy: str, name: str) -> pd.DataFrame:
        cfg = dataclasses.replace(base.acquire, path=str(root), workers=1, faces=policy,
                                  max_reject_fraction=1.0)
        acquire(dataclasses.replace(base, acquire=cfg), tmp_path / name)
        return read_store(tmp_path / name).manifest

    m = run("largest", "largest")
    assert sorted(m["source_path"]) == ["happy/party.png", "sad/turned.jpg"]
    assert set(m["face_box"]) == {"10,10,60,60"}
    assert (160, 120) in seen  # the EXIF-rotated photo reached the detector upright
    m = run("all", "all")
    assert len(m) == 4 and m.groupby("source_path")["group"].nunique().eq(1).all()
    assert {"happy/party.png#0", "happy/party.png#1"} <= set(m["id"])
    summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert summary["kept"] == 2 and summary["faces"] == 4
    from occlufer.data.readers import AcquireError

    with pytest.raises(AcquireError, match="nothing usable"):  # every face photo has two
        run("skip", "skip")
    reasons = pd.read_csv(tmp_path / "skip" / "rejects.csv").set_index("path")["reason"]
    assert reasons["happy/party.png"].startswith("several_faces: 2 faces")
    assert reasons["sad/dark.png"].startswith("no_face")


def test_photos_record_the_detected_keypoints_crop_folders_none(tmp_path: Path,
                                                                make_params) -> None:
    import dataclasses

    from occlufer.data.detectors import ALIGN_TO
    from tests.inference.conftest import face_photo

    assert KEYPOINT_COLUMNS[:4] == ["kp_left_eye_x", "kp_left_eye_y", "kp_right_eye_x",
                                    "kp_right_eye_y"]
    root = tmp_path / "photos"
    (root / "happy").mkdir(parents=True)
    Image.fromarray(face_photo()).save(root / "happy" / "face.png")
    base = make_params("acquire=photos", "acquire.path=/unset")

    def run(detector: str) -> pd.DataFrame:
        cfg = dataclasses.replace(base.acquire, path=str(root), workers=1, detector=detector)
        acquire(dataclasses.replace(base, acquire=cfg), tmp_path / detector)
        return read_store(tmp_path / detector).manifest

    (row,) = run("blazeface").to_dict("records")
    for name, (x, y) in ALIGN_TO.items():  # aligned crop: the eyes and mouth near the targets
        assert abs(row[f"kp_{name}_x"] - x) < 0.05 and abs(row[f"kp_{name}_y"] - y) < 0.05
    assert row["kp_left_ear_x"] < row["kp_nose_x"] < row["kp_right_ear_x"]
    assert run("haar")[KEYPOINT_COLUMNS].isna().all().all()  # boxes only
    crops = tmp_path / "crops"  # a folder of 48×48 face crops (FER2013-like)
    for i in range(4):
        _png(crops / ("happy", "sad")[i % 2] / f"{i}.png", i)
    acquire(_folder_params(make_params, crops), tmp_path / "folder")
    m = read_store(tmp_path / "folder").manifest
    assert len(m) == 4 and m[KEYPOINT_COLUMNS].isna().all().all()
    assert (m[KEYPOINT_COLUMNS].dtypes == np.float32).all()
