"""Face detection for photos: the policy, the crop, and the real detector on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occlufer.data import faces
from occlufer.data.images import Reject

FER = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "fer2013"


def test_policy_for_several_faces() -> None:
    boxes = [(0, 0, 50, 50), (100, 0, 30, 30)]  # largest first, as detect() returns them
    assert faces.choose(boxes, "largest") == boxes[:1]
    assert faces.choose(boxes, "all") == boxes
    with pytest.raises(Reject, match="several_faces: 2 faces"):
        faces.choose(boxes, "skip")
    assert faces.choose(boxes[:1], "skip") == boxes[:1]
    with pytest.raises(Reject, match="no_face"):
        faces.choose([], "largest")


def test_crop_adds_the_margin_and_pads_at_the_border() -> None:
    gray = np.zeros((100, 100), np.uint8)
    gray[40:60, 40:60] = 255                    # the "face"
    out = faces.crop(gray, (40, 40, 20, 20), margin=0.5, size=40)  # 40 px square around it
    assert out.shape == (40, 40)
    assert out[10:30, 10:30].min() == 255 and out[:8].max() == 0
    edge = faces.crop(gray, (90, 90, 20, 20), margin=0.0, size=20)  # half outside
    assert edge.shape == (20, 20)


def test_no_face_in_a_plain_image() -> None:
    assert faces.detect(np.full((240, 320), 128, np.uint8), 40) == []


@pytest.mark.slow
@pytest.mark.dataset
def test_haar_cascade_finds_real_faces_where_they_are() -> None:
    """FER2013 faces (tight 48×48 crops) scaled ×3 and pasted into a plain 400×300 'photo'.

    The frontal Haar cascade fires on about half of them (measured: 19 of 40 happy faces);
    every box it returns must lie on the pasted face.
    """
    if not FER.is_dir():
        pytest.skip(f"{FER} not present (real FER2013 faces)")
    paths = sorted((FER / "train" / "happy").glob("*.jpg"))[:40]
    found = 0
    for path in paths:
        face = np.asarray(Image.open(path).convert("L").resize((144, 144)))
        photo = np.full((300, 400), 120, np.uint8)
        photo[80:224, 200:344] = face
        for x, y, w, h in faces.detect(photo, 40):
            ix = max(0, min(x + w, 344) - max(x, 200)) * max(0, min(y + h, 224) - max(y, 80))
            assert ix / (w * h + 144 * 144 - ix) > 0.5, (path.name, (x, y, w, h))
            found += 1
    assert found >= len(paths) // 3


def test_crop_keypoints_are_the_detected_points_in_the_crop() -> None:
    from occlufer.data.detectors import ALIGN_TO, KEYPOINTS
    from tests.inference.conftest import face_photo

    gray = face_photo(rgb=False)
    (aligned,) = faces.face_crops(gray, size=48, policy="all", margin=0.2, min_face=24,
                                  detector="blazeface", image=face_photo())
    points = aligned.crop_keypoints  # fractions of the crop side
    assert points.shape == (6, 2)
    m = aligned.transform
    np.testing.assert_allclose(points * 48, aligned.face.keypoints @ m[:, :2].T + m[:, 2],
                               rtol=1e-5)
    for name, target in ALIGN_TO.items():  # least squares: near, not on, the targets
        np.testing.assert_allclose(points[KEYPOINTS.index(name)], target, atol=0.05)
    boxed = faces.FaceCrop(faces.crop(gray, aligned.box, 0.2, 96), aligned.face,
                           faces.crop_transform(aligned.box, 0.2, 96))  # not aligned, 96 px
    x, y, w, h = aligned.box
    side = round(max(w, h) * 1.4)
    left = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    np.testing.assert_allclose(boxed.crop_keypoints, (aligned.face.keypoints - left) / side,
                               atol=1e-5)
    (haar,) = faces.face_crops(gray, size=48, policy="all", margin=0.2, min_face=40,
                               detector="haar")
    assert haar.crop_keypoints.shape == (0, 2)
