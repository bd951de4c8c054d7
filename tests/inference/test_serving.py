"""The served model: request handling, the pyfunc model through MLflow, and a real server."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from occlufer.data.synthetic import SyntheticSpec, generate
from occlufer.errors import OccluferError
from occlufer.inference.predictor import load_predictor
from occlufer.inference.serving import output_columns, predict_frame
from occlufer.labels import CLASSES
from tests.inference.conftest import b64, encode, face_photo
from tests.servers import free_port, running

FACES = generate(SyntheticSpec(n_per_class=1, size=48), seed=7)[0]  # 7 faces, 48×48


def _request(model_pt: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows: a PNG face, a JPEG photo, pixels as a nested list, a flat list, corrupt bytes,
    bad base64, pixels of the wrong shape, an empty row. Returns it and the expected
    probabilities of the rows that are face crops (rows 0, 2, 3)."""
    frame = pd.DataFrame({
        "image": [b64(encode(FACES[0])), b64(encode(face_photo(), "JPEG")), None, None,
                  b64(b"\xff\xd8 not a jpeg"), "***", None, None],
        "pixels": [None, None, FACES[1].tolist(), FACES[2].ravel().tolist(), None, None,
                   [[1, 2], [3, 4]], None],
    })
    expected = load_predictor(model_pt).predict_proba(FACES[:3])
    return frame, expected


def test_predict_frame_rows(model_pt: Path) -> None:
    predictor = load_predictor(model_pt)
    frame, expected = _request(model_pt)
    out = predict_frame(predictor, frame)
    assert list(out.columns) == output_columns(list(CLASSES)) and len(out) == len(frame)
    assert list(out["status"]) == ["ok", "ok", "ok", "ok", "error", "error", "error", "error"]
    np.testing.assert_allclose(out.loc[[0, 2, 3], list(CLASSES)].to_numpy(float), expected,
                               atol=1e-6)
    assert list(out.loc[:3, "label"]) == [CLASSES[i] for i in
                                          out.loc[:3, list(CLASSES)].to_numpy(float).argmax(1)]
    assert out.loc[1, "face_box"] == "50,0,300,300"  # no detection: the centred square
    assert out.loc[4, "error"].startswith("unreadable:")
    assert out.loc[5, "error"].startswith("bad_base64:")
    assert out.loc[6, "error"].startswith("pixels: expected 48×48 values")
    assert out.loc[7, "error"].startswith("empty:")
    assert out.loc[4:, list(CLASSES)].isna().all().all()
    detected = predict_frame(predictor, frame.iloc[[0, 1]], detect=True)
    assert list(detected["status"]) == ["no_face", "ok"]  # a tight crop has no face to detect
    x, y, w, h = map(int, detected.loc[1, "face_box"].split(","))
    assert 100 <= x <= 150 and 40 <= y <= 90 and 130 <= w <= 200  # the face at (120, 60)


def test_predict_frame_empty_and_malformed(model_pt: Path) -> None:
    predictor = load_predictor(model_pt)
    empty = predict_frame(predictor, pd.DataFrame({"image": []}))
    assert len(empty) == 0 and list(empty.columns) == output_columns(list(CLASSES))
    with pytest.raises(OccluferError, match="expected `image`"):
        predict_frame(predictor, pd.DataFrame({"photo": ["x"]}))
    out = predict_frame(predictor, pd.DataFrame({"pixels": [np.full((48, 48), 300.0).tolist(),
                                                            " ".join(["7"] * 2304)]}))
    assert list(out["status"]) == ["error", "ok"]  # FER2013-style pixel strings work too


def test_pyfunc_model_through_mlflow_registry(model_pt: Path, tracking_store: str) -> None:
    import mlflow

    from occlufer import tracking

    with tracking.start_run("serve-test", {"x": 1}) as run:
        info = tracking.log_pyfunc_model(model_pt.parent, "fer-test", alias="champion")
    assert (info.registered_model_version, info.name) == (1, "model")
    assert info.run_id == run.info.run_id
    loaded = mlflow.pyfunc.load_model("models:/fer-test@champion")
    assert loaded.metadata.get_params_schema().params[0].name == "detect"
    frame, expected = _request(model_pt)
    out = loaded.predict(frame)
    assert list(out["status"])[:5] == ["ok", "ok", "ok", "ok", "error"]
    np.testing.assert_allclose(out.loc[[0, 2, 3], list(CLASSES)].to_numpy(float), expected,
                               atol=1e-6)
    assert out.loc[4, "angry"] is None  # null in JSON, not NaN
    for uri in ("models:/fer-test@champion", f"runs:/{run.info.run_id}/model"):
        via_uri = load_predictor(uri)
        assert via_uri.classes == list(CLASSES) and via_uri.source == uri
        np.testing.assert_allclose(via_uri.predict_proba(FACES[:3]), expected, atol=1e-6)
    requirements = Path(tracking.download_model(
        "models:/fer-test/1")).joinpath("requirements.txt").read_text()
    assert "torch==" in requirements and "mlflow==" in requirements


# ----------------------------------------------------------------- the real scoring server

def _post(url: str, body: bytes | dict) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/invocations", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_mlflow_models_serve_answers_images_arrays_and_bad_requests(
        split_dir: Path, params, tracking_store: str, tmp_path: Path) -> None:
    from occlufer.stages.train import train

    train(params, split_dir, tmp_path / "models")  # logs the pyfunc model into the run
    import mlflow

    mlflow.set_tracking_uri(tracking_store)  # the test's own store
    (logged,) = mlflow.search_logged_models(output_format="list")
    version = mlflow.register_model(logged.model_uri, "fer-served")
    mlflow.MlflowClient().set_registered_model_alias("fer-served", "prod", version.version)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
           "models:/fer-served@prod", "--env-manager", "local", "-h", "127.0.0.1", "-p",
           str(port), "-w", "1"]
    with running(cmd, f"{url}/ping", tmp_path / "serve.log", cwd=tmp_path,
                 env={**os.environ, "MLFLOW_TRACKING_URI": tracking_store}):
        served = load_predictor(tmp_path / "models")
        expected = served.predict_proba(FACES[:2])
        status, body = _post(url, {"dataframe_records": [
            {"image": b64(encode(FACES[0]))}, {"pixels": FACES[1].tolist()},
            {"image": b64(b"GIF89a corrupt")}]})
        assert status == 200
        rows = body["predictions"]
        assert [r["status"] for r in rows] == ["ok", "ok", "error"]
        for row, probs in zip(rows[:2], expected, strict=True):
            np.testing.assert_allclose([row[c] for c in served.classes], probs, atol=1e-5)
            assert row["label"] == served.classes[int(np.argmax(probs))]
            assert row["confidence"] == pytest.approx(float(probs.max()), abs=1e-5)
        assert rows[2]["error"].startswith("unreadable:") and rows[2]["label"] is None
        assert rows[2][served.classes[0]] is None
        status, body = _post(url, {"dataframe_split": {"columns": ["image"], "data": [
            [b64(encode(face_photo(), "JPEG"))]]}, "params": {"detect": True}})
        assert status == 200 and body["predictions"][0]["status"] == "ok"
        assert body["predictions"][0]["face_box"]
        assert _post(url, {"dataframe_records": []}) == (200, {"predictions": []})
        status, body = _post(url, b"")
        assert status == 400 and body["error_code"] == "BAD_REQUEST"
        # no usable column: MLflow's schema enforcement drops unknown input, so an empty answer
        for request in ({"instances": "not a table"}, {"dataframe_records": [{"photo": "x"}]}):
            assert _post(url, request) == (200, {"predictions": []})
        status, body = _post(url, {"dataframe_records": [{"image": 12345}]})  # not an image
        assert status == 200 and body["predictions"][0]["status"] == "error"
