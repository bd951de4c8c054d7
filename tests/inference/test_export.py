"""ONNX export: onnxruntime's probabilities match PyTorch's for every registered architecture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from occlufer.data.synthetic import SyntheticSpec, generate
from occlufer.inference.export import INPUT, OUTPUT, export_onnx
from occlufer.inference.predictor import load_predictor, torch_predictor
from occlufer.labels import CLASSES
from occlufer.models import MODELS, build_model, load_model, save_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_probabilities_match_pytorch(name: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_model(name, num_classes=len(CLASSES), image_size=48, dropout=0.3).eval()
    meta = {"name": name, "classes": list(CLASSES), "image_size": 48, "dropout": 0.3}
    path = export_onnx(model, meta, tmp_path / "model.onnx")
    faces = generate(SyntheticSpec(n_per_class=5, size=48), seed=3)[0]  # 35 faces
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name) == (INPUT, "tensor(uint8)", OUTPUT)
    assert isinstance(inp.shape[0], str)  # a dynamic batch axis
    from occlufer.preprocess import to_input

    with torch.no_grad():
        expected = torch.softmax(model(to_input(faces)), dim=1).numpy()
    for batch in (faces, faces[:1], faces[:8]):
        got = session.run(None, {INPUT: batch})[0]
        assert got.shape == (len(batch), len(CLASSES))
        assert np.abs(got - expected[:len(batch)]).max() <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["classes"]) == list(CLASSES)
    assert (props["image_size"], props["name"]) == ("48", name)


def test_an_onnx_file_alone_is_a_model(model_pt: Path, tmp_path: Path) -> None:
    from occlufer.cli import main

    onnx = tmp_path / "exported" / "model.onnx"
    assert main(["export", "--format", "onnx", "--model", str(model_pt.parent),
                 "--out", str(onnx)]) == 0
    faces = generate(SyntheticSpec(n_per_class=4, size=48), seed=5)[0]
    via_onnx = load_predictor(onnx)
    via_torch = torch_predictor(model_pt)
    assert (via_onnx.backend, via_onnx.classes, via_onnx.image_size) == (
        "onnxruntime", list(CLASSES), 48)
    np.testing.assert_allclose(via_onnx.predict_proba(faces, batch_size=5),
                               via_torch.predict_proba(faces), atol=1e-4)


def test_models_saved_with_other_classes_keep_them(tmp_path: Path) -> None:
    classes = ["happy", "sad", "surprise"]
    model = build_model("seed_cnn", num_classes=3, image_size=64)
    save_model(tmp_path / "model.pt", model, name="seed_cnn", classes=classes, image_size=64,
               dropout=0.0)
    predictor = load_predictor(tmp_path)
    export_onnx(*load_model(tmp_path / "model.pt"), tmp_path / "m.onnx")
    onnx = load_predictor(tmp_path / "m.onnx")
    assert predictor.classes == onnx.classes == classes and onnx.image_size == 64
    assert onnx.predict_proba(np.zeros((2, 64, 64), np.uint8)).shape == (2, 3)
