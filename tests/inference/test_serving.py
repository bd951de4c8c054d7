"""The served model: request handling, the pyfunc model through MLflow, and a real server."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from occlufer.data.synthetic import SyntheticSpec, generate
from occlufer.errors import OccluferError
from occlufer.inference import serving
from occlufer.inference.predictor import load_predictor
from occlufer.inference.serving import Limits, output_columns, predict_frame
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
    cx, cy = x + w / 2, y + h / 2  # on the face pasted at (120, 60), 160 px (centre 200, 140)
    assert abs(cx - 200) <= 30 and abs(cy - 140) <= 30 and 90 <= w <= 200


def test_predict_frame_empty_and_malformed(model_pt: Path) -> None:
    predictor = load_predictor(model_pt)
    empty = predict_frame(predictor, pd.DataFrame({"image": []}))
    assert len(empty) == 0 and list(empty.columns) == output_columns(list(CLASSES))
    assert len(predict_frame(predictor, pd.DataFrame())) == 0  # {"dataframe_records": []}
    with pytest.raises(OccluferError, match="expected `image`"):
        predict_frame(predictor, pd.DataFrame({"photo": ["x"]}))
    out = predict_frame(predictor, pd.DataFrame({"pixels": [np.full((48, 48), 300.0).tolist(),
                                                            " ".join(["7"] * 2304)]}))
    assert list(out["status"]) == ["error", "ok"]  # FER2013-style pixel strings work too


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature, IHDR and an empty IDAT claiming ``width``×``height``: no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", 0) + b"IDAT")


@pytest.mark.parametrize(("columns", "problem"), [
    (["foo"], r"unknown column\(s\) \['foo'\]"),
    (["image", "foo"], r"unknown column\(s\) \['foo'\]"),  # with a good one: still refused
    (["image", "detect"], "`detect` is a parameter, not a column"),
    ([], "no `image` or `pixels` column")])
def test_unknown_or_missing_columns_refuse_the_request(model_pt: Path, columns: list[str],
                                                        problem: str) -> None:
    frame = pd.DataFrame([[b64(encode(FACES[0]))] * len(columns)], columns=columns) \
        if columns else pd.DataFrame(index=[0])
    with pytest.raises(OccluferError, match=problem) as exc:
        predict_frame(load_predictor(model_pt), frame)
    assert "expected `image` (a base64-encoded image file) and/or `pixels` (48×48" in str(exc.value)
    if columns:  # no rows: the columns are still wrong (no rows and no columns: empty answer)
        with pytest.raises(OccluferError, match=problem):
            predict_frame(load_predictor(model_pt), frame.iloc[:0])


def test_oversized_request_is_refused_before_anything_is_decoded(
        model_pt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = load_predictor(model_pt)
    face = b64(encode(FACES[0]))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image of a refused request")

    monkeypatch.setattr(serving.base64, "b64decode", no_decoding)
    monkeypatch.setattr(serving, "analyse", no_decoding)
    big = pd.DataFrame({"image": [face, "A" * 10_000_000]})  # 10 MB + the face: the default
    with pytest.raises(OccluferError, match=r"request too large: 10\.0 MB of image data in 2 "
                                            r"rows > 10 MB \(OCCLUFER_MAX_REQUEST_MB\)"):
        predict_frame(predictor, big)
    monkeypatch.setenv("OCCLUFER_MAX_REQUEST_MB", "0.001")  # 1,000 characters, read per request
    with pytest.raises(OccluferError, match=r"> 0\.001 MB"):
        predict_frame(predictor, pd.DataFrame({"pixels": [" ".join(["7"] * 2304)]}))
    monkeypatch.undo()
    assert list(predict_frame(predictor, big.iloc[[0]])["status"]) == ["ok"]


def test_oversized_image_is_an_error_row_found_from_its_header(
        model_pt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    predictor = load_predictor(model_pt)
    decoded: list[int] = []
    analyse = serving.analyse
    monkeypatch.setattr(serving, "analyse", lambda data, search: decoded.append(len(data))
                        or analyse(data, search))
    wide = encode(np.zeros((10, 4100), np.uint8))  # a real PNG, 4100×10
    jpeg = encode(np.zeros((10, 4097), np.uint8), "JPEG")
    frame = pd.DataFrame({"image": [b64(_png_header(5000, 5000)), b64(encode(FACES[0])),
                                    b64(wide), b64(jpeg)]})
    out = predict_frame(predictor, frame)
    assert list(out["status"]) == ["error", "ok", "error", "error"]
    assert out.loc[0, "error"] == ("too_large: 5000×5000 px > 4096×4096 (OCCLUFER_MAX_IMAGE_SIDE); "
                                   "send a smaller image")
    assert out.loc[2, "error"].startswith("too_large: 4100×10 px")
    assert out.loc[3, "error"].startswith("too_large: 4097×10 px")
    assert decoded == [len(encode(FACES[0]))]  # only the good row was decoded
    np.testing.assert_allclose(out.loc[[1], list(CLASSES)].to_numpy(float),
                               predictor.predict_proba(FACES[:1]), atol=1e-6)
    monkeypatch.setenv("OCCLUFER_MAX_IMAGE_SIDE", "40")
    assert list(predict_frame(predictor, frame.iloc[[1]])["status"]) == ["error"]  # 48 > 40
    monkeypatch.setenv("OCCLUFER_MAX_IMAGE_SIDE", "lots")
    with pytest.raises(OccluferError, match="OCCLUFER_MAX_IMAGE_SIDE='lots': expected a "
                                            "positive whole number"):
        predict_frame(predictor, frame)


def test_small_images_are_too_small_rows_without_detection(model_pt: Path) -> None:
    predictor = load_predictor(model_pt)
    frame = pd.DataFrame({"image": [b64(encode(np.full((5, 5), 90, np.uint8))),
                                    b64(encode(FACES[0]))],
                          "pixels": [None, None]})
    out = predict_frame(predictor, frame)
    assert list(out["status"]) == ["too_small", "ok"]
    assert out.loc[0, "error"] == "too_small: shorter side 5 px < 32 (acquire.min_size)"
    assert out.loc[0, list(CLASSES)].isna().all()
    assert list(predict_frame(predictor, frame, limits=Limits(min_size=5))["status"]) == [
        "ok", "ok"]
    assert Limits.from_env({"OCCLUFER_MIN_SIZE": "5", "OCCLUFER_MAX_REQUEST_MB": "2.5"}) == \
        Limits(request_mb=2.5, image_side=4096, min_size=5)
    pixels = predict_frame(predictor, pd.DataFrame({"pixels": [FACES[1].tolist()]}))
    assert list(pixels["status"]) == ["ok"]  # pixels are the model's size: no size rule


def test_pyfunc_refuses_malformed_requests_with_http_400(model_pt: Path, tmp_path: Path) -> None:
    """Through MLflow's pyfunc and its scoring server's request handling (no process)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    from occlufer.inference.pyfunc import save_pyfunc_model

    model = mlflow.pyfunc.load_model(str(save_pyfunc_model(model_pt, tmp_path / "pyfunc")))
    with pytest.raises(MlflowException, match="unknown column") as exc:
        model.predict(pd.DataFrame({"columns": ["foo"], "data": [[1]]}["data"],
                                   columns=["foo"]))
    assert exc.value.get_http_status_code() == 400

    def post(body: dict) -> tuple[int, str]:
        try:
            answer = scoring_server.invocations(json.dumps(body), "application/json", model,
                                                model.metadata.get_input_schema())
        except MlflowException as error:  # the server answers its status and JSON
            return error.get_http_status_code(), json.loads(error.serialize_as_json())["message"]
        return answer.status, answer.response

    status, message = post({"dataframe_split": {"columns": ["foo"], "data": [[1]]}})
    assert status == 400 and "expected `image`" in message and "`pixels` (48×48" in message
    status, message = post({"dataframe_records": [{"image": b64(encode(FACES[0])), "pic": 1}]})
    assert status == 400 and "unknown column(s) ['pic']" in message
    status, message = post({"instances": "not a table"})
    assert status == 400 and "request is not a table" in message
    status, message = post({"dataframe_split": {"columns": ["image"],
                                                "data": [["A" * 10_500_000]]}})
    assert status == 400 and "request too large: 10.5 MB" in message
    status, answer = post({"dataframe_split": {"columns": ["image"], "data": [
        [b64(_png_header(5000, 5000))], [b64(encode(FACES[0]))]]}})
    rows = json.loads(answer)["predictions"]
    assert status == 200 and [r["status"] for r in rows] == ["error", "ok"]
    assert rows[0]["error"].startswith("too_large: 5000×5000") and rows[0]["angry"] is None
    status, answer = post({"inputs": {"image": b64(encode(FACES[0]))}})  # one row, 0-d arrays
    assert status == 200 and json.loads(answer)["predictions"][0]["status"] == "ok"
    assert post({"dataframe_records": []}) == (200, '{"predictions": []}')


@pytest.mark.slow  # a fresh interpreter importing mlflow and torch: ~25 s on 2 busy cores
def test_pyfunc_model_carries_the_occlufer_code(model_pt: Path, tmp_path: Path) -> None:
    """The saved model loads and predicts where occlufer is not installed: its own copy."""
    from occlufer.inference.pyfunc import save_pyfunc_model

    out = save_pyfunc_model(model_pt, tmp_path / "pyfunc")
    assert (out / "code" / "occlufer" / "inference" / "serving.py").is_file()
    assert not list((out / "code").rglob("*.pt")) and not list((out / "code").rglob("*.pyc"))
    requirements = (out / "requirements.txt").read_text().split()
    assert "occlufer" not in requirements and any(r.startswith("torch==") for r in requirements)
    assert any(r.startswith("ai-edge-litert==") for r in requirements)  # the face detector
    src = str(Path(serving.__file__).resolve().parents[2])  # this checkout's src/
    script = f"""
import sys
sys.path[:] = [p for p in sys.path if p.rstrip("/") != {src!r}]
try:
    import occlufer
    raise SystemExit("occlufer importable before loading: " + occlufer.__file__)
except ImportError:
    pass
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model({str(out)!r})
out = model.predict(pd.DataFrame({{"pixels": [[[7] * 48] * 48]}}))
import occlufer
print(occlufer.__file__, out["status"].tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    where, status = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert Path(where).resolve().is_relative_to(out.resolve()) and status == "['ok']"


def test_pyfunc_model_through_mlflow_registry(model_pt: Path, tracking_store: str) -> None:
    import mlflow

    from occlufer import tracking
    from occlufer.inference.pyfunc import log_pyfunc_model

    with tracking.start_run("serve-test", {"x": 1}) as run:
        info = log_pyfunc_model(model_pt.parent, "fer-test", alias="champion")
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
    downloaded = Path(tracking.download_model("models:/fer-test/1"))
    requirements = downloaded.joinpath("requirements.txt").read_text()
    assert "torch==" in requirements and "mlflow==" in requirements
    assert "occlufer" not in requirements  # no index has it: the model carries the code
    assert (downloaded / "code" / "occlufer" / "inference" / "pyfunc.py").is_file()
    assert loaded.metadata.metadata["occlufer_request"].startswith("columns: image")


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
                 env={**os.environ, "MLFLOW_TRACKING_URI": tracking_store,
                      "OCCLUFER_MAX_REQUEST_MB": "1"}):
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
        # no usable column, or an unknown one: 400 naming the expected columns
        for request in ({"instances": "not a table"}, {"dataframe_records": [{"photo": "x"}]},
                        {"dataframe_split": {"columns": ["foo"], "data": [[1]]}}):
            status, body = _post(url, request)
            assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
            assert "`image`" in body["message"]
        status, body = _post(url, {"dataframe_split": {"columns": ["image"], "data": [
            ["A" * 1_500_000]]}})  # the server runs with OCCLUFER_MAX_REQUEST_MB=1
        assert status == 400 and "request too large: 1.5 MB" in body["message"]
        status, body = _post(url, {"dataframe_records": [{"image": 12345}]})  # not an image
        assert status == 200 and body["predictions"][0]["status"] == "error"


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_the_shipped_zoo_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped zoo model, right after install (no training): exported as a pyfunc folder by
    ``occlufer export`` and served by ``mlflow models serve``, answers like ``predict``."""
    from occlufer import zoo
    from occlufer.cli import main

    monkeypatch.delenv(zoo.ENV, raising=False)  # the package's own zoo
    monkeypatch.chdir(tmp_path)  # no models/ here: export takes the zoo's default
    assert main(["export", "--format", "pyfunc", "--out", "served"]) == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "served",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    env = {k: v for k, v in os.environ.items() if k != zoo.ENV}
    with running(cmd, f"{url}/ping", tmp_path / "serve.log", cwd=tmp_path, env=env):
        expected = load_predictor(f"zoo:{zoo.DEFAULT}").predict_proba(FACES[:2])
        status, body = _post(url, {"dataframe_records": [
            {"image": b64(encode(FACES[0]))}, {"pixels": FACES[1].tolist()}]})
        assert status == 200
        rows = body["predictions"]
        assert [r["status"] for r in rows] == ["ok", "ok"]
        np.testing.assert_allclose([[r[c] for c in CLASSES] for r in rows], expected,
                                   atol=1e-5)
