"""Metric arithmetic: bootstrap intervals, calibration, robustness areas and subsets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc

from occlufer.evaluation.calibration import expected_calibration_error, reliability
from occlufer.evaluation.metrics import bootstrap_ci, classification_metrics
from occlufer.evaluation.robustness import Curves, stratified_subset, trapezoid_weights


def _hits(n: int, p: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < p


@pytest.mark.parametrize("n", [30, 200, 2000])
def test_interval_contains_the_accuracy(n: int) -> None:
    hits = _hits(n, 0.7)
    low, high = bootstrap_ci(hits, 1000, seed=0, name="val/acc")
    assert 0.0 <= low <= hits.mean() <= high <= 1.0
    assert low < high


def test_interval_shrinks_with_more_faces() -> None:
    widths = []
    for n in (50, 500, 5000):
        low, high = bootstrap_ci(_hits(n, 0.6), 1000, seed=0, name="val/acc")
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # about 2 × 1.96 × sqrt(p(1-p)/n) for a proportion
    assert widths[1] == pytest.approx(2 * 1.96 * np.sqrt(0.24 / 500), rel=0.2)


def test_interval_is_deterministic_per_seed_and_name() -> None:
    hits = _hits(300, 0.5)
    a = bootstrap_ci(hits, 500, seed=3, name="val/acc")
    assert a == bootstrap_ci(hits, 500, seed=3, name="val/acc")
    assert a != bootstrap_ci(hits, 500, seed=4, name="val/acc")
    assert a != bootstrap_ci(hits, 500, seed=3, name="val_occluded/acc")


def test_interval_of_several_columns_and_of_nothing() -> None:
    scores = np.stack([_hits(400, 0.3), _hits(400, 0.8, 1)], axis=1).astype(float)
    low, high = bootstrap_ci(scores, 500, seed=0, name="x", level=0.9)
    assert low.shape == high.shape == (2,)
    assert np.all(low <= scores.mean(axis=0)) and np.all(scores.mean(axis=0) <= high)
    low, high = bootstrap_ci(np.zeros(0), 500, seed=0, name="x")
    assert np.isnan(low) and np.isnan(high)


def test_macro_f1_ignores_classes_absent_from_the_data() -> None:
    classes = ["a", "b", "c"]
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, y, classes, "val")
    assert m["val/acc"] == 1.0 and m["val/macro_f1"] == 1.0
    assert m["val/c/support"] == 0.0 and m["val/n"] == 4.0


def test_ece_is_small_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 50_000)
    calibrated = rng.random(conf.size) < conf  # right exactly as often as it claims
    assert expected_calibration_error(conf, calibrated, 15) < 0.01
    over = np.full(10_000, 0.9)
    coin = rng.random(over.size) < 0.5          # claims 90 %, right half the time
    assert expected_calibration_error(over, coin, 15) == pytest.approx(0.4, abs=0.02)
    assert np.isnan(expected_calibration_error(np.zeros(0), np.zeros(0, bool), 15))


def test_reliability_table_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0, 1, 1000)
    hit = rng.random(1000) < conf ** 2
    table = reliability(conf, hit, 10)
    acc, mean_conf = calibration_curve(hit.astype(int), conf, n_bins=10)
    np.testing.assert_allclose(table["accuracy"], acc)
    np.testing.assert_allclose(table["confidence"], mean_conf)
    assert table["count"].sum() == 1000
    assert (table["lower"] <= table["confidence"]).all()
    assert (table["confidence"] <= table["upper"]).all()


def test_area_is_sklearn_auc_normalised_and_the_mean_of_face_scores() -> None:
    ratios = [0.0, 0.1, 0.2, 0.35, 0.5]
    rng = np.random.default_rng(2)
    correct = {"block": rng.random((300, 5)) < [0.9, 0.8, 0.6, 0.4, 0.2],
               "mask": rng.random((300, 5)) < 0.5}
    curves = Curves(ratios, correct)
    areas = curves.auc()
    for kind, c in correct.items():
        assert areas[kind] == pytest.approx(auc(ratios, c.mean(axis=0)) / 0.5)
    np.testing.assert_allclose(curves.face_scores().mean(axis=0), list(areas.values()))
    assert trapezoid_weights(ratios).sum() == pytest.approx(1.0)
    table = curves.table()
    assert list(table.columns) == ["ratio", "block", "mask"] and len(table) == 5


def test_stratified_subset_keeps_class_proportions_and_is_seeded() -> None:
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    sub = stratified_subset(labels, 100, seed=0)
    assert len(sub) == 100 and len(set(sub)) == 100
    assert list(np.bincount(labels[sub])) == [60, 30, 10]
    assert np.array_equal(sub, stratified_subset(labels, 100, seed=0))
    assert not np.array_equal(sub, stratified_subset(labels, 100, seed=1))
    assert np.array_equal(stratified_subset(labels, 5000, seed=0), np.arange(1000))


def test_curves_start_at_clean_accuracy_and_reuse_each_faces_occluder() -> None:
    from occlufer.evaluation.robustness import robustness_curves
    from occlufer.occlusion import OcclusionSpec

    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, size=(40, 48, 48), dtype=np.uint8)
    y = np.arange(40) % 4
    originals = {im.tobytes(): label for im, label in zip(images, y, strict=True)}
    calls = []

    def predict(batch: np.ndarray) -> np.ndarray:  # right only on untouched faces
        calls.append(len(batch))
        return np.array([originals.get(im.tobytes(), -1) for im in batch])

    ids = [f"f{i}" for i in range(40)]
    kw = dict(spec=OcclusionSpec(), seed=0, types=["block", "mask"],
              ratios=[0.0, 0.1, 0.3])
    curves = robustness_curves(predict, images, ids, y, **kw)
    table = curves.table()
    assert list(table.loc[0, ["block", "mask"]]) == [1.0, 1.0]
    assert (table.loc[1:, ["block", "mask"]] == 0.0).all().all()
    assert calls == [40] * 5  # ratio 0 once for all types, then one pass per (type, ratio)
    again = robustness_curves(predict, images, ids, y, **kw)
    assert all(np.array_equal(curves.correct[k], again.correct[k]) for k in curves.correct)
