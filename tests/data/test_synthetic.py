"""The procedural expression dataset: layout, determinism and class evidence."""

from __future__ import annotations

import numpy as np
import pytest

from occlufer.data import synthetic
from occlufer.data.synthetic import SyntheticSpec, generate, preview_grid, render_face
from occlufer.labels import CLASSES

EYE_ROWS, MOUTH_ROWS = slice(7, 24), slice(29, 43)  # ~15-50 % and ~60-90 % of 48 rows


def _paired_faces(expression: str, k: int = 12) -> np.ndarray:
    """Noise-free faces of fixed identities and generator seeds: across expressions they share
    pose and lighting, so differences between expressions are the expression alone."""
    return np.stack([
        render_face(np.random.default_rng([3, i]), synthetic._identity(3, i), expression, 0.8,
                    48, noise=0.0).astype(np.float64)
        for i in range(k)
    ])


def test_shapes_dtypes_labels_and_subjects() -> None:
    spec = SyntheticSpec(n_per_class=3, n_subjects=4)
    images, labels, subjects = generate(spec, seed=0)
    assert images.shape == (21, 48, 48) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and subjects.dtype == np.int64
    assert labels.tolist() == [i % 7 for i in range(21)]
    assert subjects.min() >= 0 and subjects.max() < 4 and len(set(subjects.tolist())) > 1
    assert images.std() > 10  # not blank


def test_subset_of_classes_indexes_into_given_sequence() -> None:
    images, labels, _ = generate(SyntheticSpec(n_per_class=2), 0, classes=("sad", "happy"))
    assert images.shape == (4, 48, 48) and labels.tolist() == [0, 1, 0, 1]


def test_same_seed_same_bytes_other_seed_differs() -> None:
    spec = SyntheticSpec(n_per_class=2)
    a, b, c = generate(spec, 5), generate(spec, 5), generate(spec, 6)
    for x, y in zip(a, b, strict=True):
        assert x.tobytes() == y.tobytes()
    assert a[0].tobytes() != c[0].tobytes()


def test_prefix_is_stable_when_more_images_are_generated() -> None:
    short = generate(SyntheticSpec(n_per_class=5), 1)
    long = generate(SyntheticSpec(n_per_class=10), 1)
    for x, y in zip(short, long, strict=True):
        assert len(x) == 35 and np.array_equal(x, y[:35])


@pytest.mark.parametrize("size", [48, 64, 96, 112])
def test_supported_sizes(size: int) -> None:
    images, _, _ = generate(SyntheticSpec(n_per_class=1, size=size), 0)
    assert images.shape == (7, size, size) and images.dtype == np.uint8
    assert images.std() > 10


def test_classes_differ_on_average() -> None:
    means = {c: _paired_faces(c).mean(axis=0) for c in CLASSES}
    for i, a in enumerate(CLASSES):
        for b in CLASSES[i + 1:]:
            assert np.abs(means[a] - means[b]).mean() > 0.5, (a, b)


@pytest.mark.parametrize("expression", [c for c in CLASSES if c != "neutral"])
def test_evidence_in_both_eye_and_mouth_regions(expression: str) -> None:
    diff = np.abs(_paired_faces(expression) - _paired_faces("neutral"))
    assert diff[:, EYE_ROWS].mean() > 0.5
    assert diff[:, MOUTH_ROWS].mean() > 0.5


def test_unknown_class_raises() -> None:
    with pytest.raises(ValueError, match="contempt"):
        generate(SyntheticSpec(n_per_class=1), 0, classes=("happy", "contempt"))
    with pytest.raises(ValueError, match="smirk"):
        render_face(np.random.default_rng(0), synthetic._identity(0, 0), "smirk", 1.0, 48)


def test_invalid_spec_raises() -> None:
    with pytest.raises(ValueError):
        SyntheticSpec(intensity=(0.9, 0.2))


def test_preview_grid_size() -> None:
    images, labels, _ = generate(SyntheticSpec(n_per_class=3), 0)
    grid = preview_grid(images, labels, CLASSES, per_class=4, scale=2)
    tile, pad, left = 96, 2, 70  # 48 px × scale 2, viz.image_grid's padding and label column
    assert grid.size == (left + 3 * (tile + pad) + pad, 7 * (tile + pad) + pad)
    first_row = np.asarray(grid)[pad:pad + tile, left + pad:left + pad + tile]
    assert first_row.std() > 10  # a face, not the white background
