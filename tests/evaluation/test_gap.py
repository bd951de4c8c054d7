"""The robustness gap at one ratio (issue #13): accuracy there and clean − that accuracy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from occlufer.evaluation.robustness import Curves, gap_metrics


def test_gap_metrics_is_clean_minus_the_column_at_the_ratio() -> None:
    correct = {"block": np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]], bool),
               "mask": np.array([[1, 0, 0], [1, 1, 1], [0, 1, 0], [1, 1, 0]], bool)}
    curves = Curves([0.0, 0.25, 0.5], correct)
    clean = np.array([1, 1, 0, 1], bool)
    m = gap_metrics(curves, clean, 0.25)
    assert m == pytest.approx({"robustness/block/acc_at_gap": 0.5, "robustness/block/gap": 0.25,
                               "robustness/mask/acc_at_gap": 0.75, "robustness/mask/gap": 0.0})
    with pytest.raises(ValueError):
        gap_metrics(curves, clean, 0.3)  # not a computed ratio
    with pytest.raises(ValueError):
        gap_metrics(curves, clean[:3], 0.25)  # not the same faces


def test_without_drops_only_that_ratio() -> None:
    c = Curves([0.0, 0.1, 0.25, 0.3], {"a": np.arange(8).reshape(2, 4) % 3 == 0})
    d = c.without(0.25)
    assert d.ratios == [0.0, 0.1, 0.3]
    assert np.array_equal(d.correct["a"], c.correct["a"][:, [0, 1, 3]])


@pytest.fixture
def faces(tmp_path: Path, make_params):
    from occlufer.data.store import read_store
    from occlufer.evaluation.evaluate import EvalSet
    from occlufer.stages.acquire import acquire

    params = make_params("acquire.n_per_class=6")
    acquire(params, tmp_path / "acq")
    return params, EvalSet.from_store(read_store(tmp_path / "acq"), "acq")


def _model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7)).eval()


def test_evaluate_gap_uses_the_same_faces_and_leaves_the_curves_alone(faces,
                                                                       tmp_path: Path) -> None:
    import torch

    from occlufer.evaluation.evaluate import evaluate
    from occlufer.evaluation.robustness import robustness_curves
    from occlufer.occlusion import OcclusionSpec
    from occlufer.training import predict_logits

    params, data = faces
    model = _model()
    classes = [f"c{i}" for i in range(7)]

    def predict(images: np.ndarray) -> np.ndarray:
        return predict_logits(model, np.asarray(images), 64, torch.device("cpu")).argmax(axis=1)

    clean_pred = predict(data.images)
    # labels = the model's own clean predictions: clean accuracy 1, so the gap is 1 - acc@gap
    data = dataclasses.replace(data, labels=np.asarray(classes)[clean_pred])
    meta = {"classes": classes, "tta_flip": False}
    spec = OcclusionSpec.from_cfg(params.occlusion)
    types = ["block", "sunglasses", "mask"]
    cfg = dataclasses.replace(params.validate, device="cpu", bootstrap=100, mistakes=0,
                              robustness_types=types, robustness_ratios=[0.0, 0.2, 0.4],
                              gap_ratio=0.25)
    m = evaluate(model, meta, data, cfg, spec, params.seed, tmp_path / "a",
                 config={"validate": {"gap_ratio": 0.25}})
    assert m["val/acc"] == 1.0
    assert m["robustness/n"] == len(data.ids)  # fewer than robustness_max_faces: all of them
    direct = robustness_curves(predict, data.images, data.ids, clean_pred, spec, params.seed,
                               types, [0.25])
    for kind in types:
        acc = float(direct.correct[kind][:, 0].mean())
        assert m[f"robustness/{kind}/acc_at_gap"] == pytest.approx(acc)
        assert m[f"robustness/{kind}/gap"] == pytest.approx(1.0 - acc)
    assert max(m[f"robustness/{k}/gap"] for k in types) > 0  # occlusion changed something
    # the extra ratio is not a point of the curves: table and areas as without a gap ratio
    table = pd.read_csv(tmp_path / "a" / "robustness.csv")
    assert list(table["ratio"]) == [0.0, 0.2, 0.4]
    inside = evaluate(model, meta, data, dataclasses.replace(cfg, gap_ratio=0.2), spec,
                      params.seed, tmp_path / "b")
    assert pd.read_csv(tmp_path / "b" / "robustness.csv").equals(table)
    for kind in types:
        assert m[f"robustness/{kind}/auc"] == inside[f"robustness/{kind}/auc"]
        assert inside[f"robustness/{kind}/acc_at_gap"] == pytest.approx(table[kind][1])
    assert m["robustness/mean_auc_ci_low"] == inside["robustness/mean_auc_ci_low"]
    assert {**json.loads((tmp_path / "a" / "detail.json").read_text()),
            **json.loads((tmp_path / "a" / "metrics.json").read_text())} == pytest.approx(m)
    assert "Gap at ratio 0.25" in (tmp_path / "a" / "report.md").read_text()
