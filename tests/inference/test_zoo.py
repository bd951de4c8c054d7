"""The model zoo: publish from a (fake) finished pipeline run, the card, the file and the
registry agree, bad files stop with one line, and commands fall back to the zoo by default."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import occlufer.zoo as zoo
from occlufer.cli import main
from occlufer.data.synthetic import SyntheticSpec, generate
from occlufer.inference.predictor import load_predictor, resolve_model
from occlufer.labels import CLASSES
from occlufer.models import MODELS, build_model, load_model, save_model
from occlufer.preprocess import MEAN, STD, WithViews, to_input
from occlufer.publish import fp16_parity

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = Path(zoo.__file__).resolve().parent
FACES, LABELS, _ = generate(SyntheticSpec(n_per_class=20, size=48), seed=1)  # 140 faces

#: a few validate metrics of a run with a test split (and the val ones beside them)
METRICS = {
    "val/acc": 0.64, "val/acc_ci_low": 0.60, "val/acc_ci_high": 0.68, "val/n": 300.0,
    "val/ece": 0.07,
    "test/acc": 0.61, "test/acc_ci_low": 0.58, "test/acc_ci_high": 0.64, "test/n": 350.0,
    "test/ece": 0.05, "test/macro_f1": 0.55,
    "test_occluded/acc": 0.52, "test_occluded/acc_ci_low": 0.49,
    "test_occluded/acc_ci_high": 0.55, "test_occluded/n": 350.0, "test_occluded/ece": 0.09,
    "test_occluded/occluder/sunglasses/acc": 0.55,
    "test_occluded/occluder/sunglasses/acc_ci_low": 0.45,
    "test_occluded/occluder/sunglasses/acc_ci_high": 0.65,
    "test_occluded/occluder/sunglasses/n": 80.0,
    "test_robustness/sunglasses/gap": 0.08, "test_robustness/sunglasses/acc_at_gap": 0.53,
    "test_robustness/mask/gap": 0.12, "test_robustness/mask/acc_at_gap": 0.49,
    "test_robustness/mean_auc": 0.5,
}


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, dict]:
    """A tiny compact model trained for a few steps on synthetic faces (decisive outputs)."""
    torch.manual_seed(0)
    model = build_model("compact", num_classes=7, image_size=48, width=8)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    x, y = to_input(FACES), torch.as_tensor(LABELS)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(40):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    meta = {"name": "compact", "classes": list(CLASSES), "image_size": 48, "dropout": 0.0,
            "arch": {"width": 8}}
    return model.eval(), meta


def _lock(params: dict) -> dict:
    return {"schema": "2.0", "stages": {
        "acquire": {"cmd": "python -m occlufer.stages.acquire",
                    "deps": [{"path": "src/occlufer/stages/acquire.py", "hash": "md5",
                              "md5": "0123456789abcdef0123456789abcdef", "size": 10}],
                    "params": {"params.yaml": {"acquire": params["acquire"],
                                               "seed": params["seed"]}},
                    "outs": [{"path": "data/acquired", "hash": "md5",
                              "md5": "b9916309e4785930a86b08e232d0c180.dir", "size": 1,
                              "nfiles": 5}]},
        "train": {"cmd": "python -m occlufer.stages.train",
                  "deps": [{"path": "data/split/train", "hash": "md5",
                            "md5": "7a4ff6be92bcaa3297c8b2821172e610.dir"}],
                  "params": {"params.yaml": {"model": params["model"], "seed": params["seed"]}},
                  "outs": [{"path": "models", "hash": "md5",
                            "md5": "810381241d4ed1308fed8bbe29cb2858.dir"}]}}}


def make_run(folder: Path, model: torch.nn.Module, meta: dict, **extra) -> Path:
    """A finished pipeline run: models/, reports/validate/metrics.json, params.yaml, dvc.lock,
    in a git checkout with one commit (history.csv with the epoch timings of older runs; no
    MLflow store: the tests that need one make it)."""
    (folder / "models").mkdir(parents=True)
    (folder / "reports" / "validate").mkdir(parents=True)
    save_model(folder / "models" / "model.pt", model, name=meta["name"], classes=meta["classes"],
               image_size=meta["image_size"], dropout=meta["dropout"], arch=meta["arch"],
               tta_flip=True, epoch=3, **extra)
    pd.DataFrame({"epoch": [1, 2, 3], "train/epoch_seconds": [1.5, 2.0, 2.5]}).to_csv(
        folder / "models" / "history.csv", index=False)
    (folder / "reports" / "validate" / "metrics.json").write_text(json.dumps(METRICS))
    shutil.copyfile(ROOT / "params.yaml", folder / "params.yaml")
    params = yaml.safe_load((folder / "params.yaml").read_text())
    (folder / "dvc.lock").write_text(yaml.safe_dump(_lock(params), sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(["git", "add", "params.yaml", "dvc.lock"], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-qm", "run"], cwd=folder, check=True)
    return folder


@pytest.fixture
def zoo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "zoo"
    monkeypatch.setenv(zoo.ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def published_once(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Entry ``tiny`` published once by the CLI from a fake run (recipe smoke, compared with
    conf/); (run folder, zoo folder)."""
    import contextlib
    import io

    base = tmp_path_factory.mktemp("published")
    run = make_run(base / "run", *trained)
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv(zoo.ENV, str(base / "zoo"))
        mp.chdir(run)
        assert main(["zoo", "publish", "tiny", "--recipe", "smoke", "--conf",
                     str(ROOT / "conf")]) == 0
    out = stdout.getvalue().splitlines()
    assert out[0].startswith(f"zoo publish: {base / 'zoo' / 'tiny.pt'} (")
    assert out[-1].startswith("model: zoo:tiny (SMOKE recipe, test acc 0.610; ")
    return run, base / "zoo"


@pytest.fixture
def published(published_once: tuple[Path, Path], zoo_dir: Path, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the published zoo as this test's zoo; the working directory is tmp_path."""
    shutil.copytree(published_once[1], zoo_dir)
    monkeypatch.chdir(tmp_path)
    return zoo_dir


def test_fp16_weights_keep_parity_on_a_tiny_model(trained) -> None:
    model, _ = trained
    half, parity = fp16_parity(model, FACES)
    assert all(v.dtype == torch.float16 for v in half.values() if v.is_floating_point())
    assert any(v.dtype == torch.int64 for v in half.values())  # BatchNorm counters untouched
    rounded = build_model("compact", num_classes=7, image_size=48, width=8)
    rounded.load_state_dict(half)
    with torch.no_grad():
        a = torch.softmax(model(to_input(FACES)), 1).numpy()
        b = torch.softmax(rounded.eval()(to_input(FACES)), 1).numpy()
    top = np.sort(a, 1)
    decisive = top[:, -1] - top[:, -2] > 1e-3  # not a near-tie of two classes
    assert decisive.mean() > 0.9
    np.testing.assert_array_equal(a.argmax(1)[decisive], b.argmax(1)[decisive])
    assert np.abs(a - b).max() < 5e-3
    assert parity["parity"] and parity["faces"] == len(FACES)
    assert parity["max_prob_diff"] == pytest.approx(np.abs(a - b).max(), rel=0.01, abs=1e-6)


def test_weights_that_lose_parity_in_fp16_stay_fp32(trained, zoo_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from occlufer.publish import publish

    model, meta = trained
    big = copy.deepcopy(model)
    with torch.no_grad():
        big.head[-1].weight.mul_(1e6)  # overflows fp16 (max 65504)
    assert not fp16_parity(big, FACES)[1]["parity"]
    run = make_run(tmp_path / "run", big, meta)
    card = publish("big", run=run, recipe="smoke", conf=str(ROOT / "conf"))
    assert card["file"]["weights_dtype"] == "float32"
    state = torch.load(zoo_dir / "big.pt", weights_only=True)["state_dict"]
    assert all(v.dtype != torch.float16 for v in state.values())
    np.testing.assert_allclose(load_predictor("zoo:big").predict_proba(FACES[:8]),
                               load_predictor(run / "models").predict_proba(FACES[:8]),
                               atol=1e-6)


def test_card_file_and_registry_agree(published: Path, published_once: tuple[Path, Path],
                                      trained) -> None:
    card = json.loads((published / "tiny.json").read_text())
    pt = published / "tiny.pt"
    assert card["file"]["sha256"] == zoo.sha256(pt) and card["file"]["bytes"] == pt.stat().st_size
    assert card["file"]["weights_dtype"] == "float16" and card["file"]["fp16_parity"]["parity"]
    assert pt.stat().st_size <= zoo.MAX_BYTES
    _, meta = load_model(pt)
    predictor = load_predictor("zoo:tiny")
    assert card["classes"] == meta["classes"] == predictor.classes == list(CLASSES)
    assert card["image_size"] == meta["image_size"] == predictor.image_size == 48
    assert card["preprocessing"] == zoo.preprocessing(48)
    assert (card["preprocessing"]["mean"], card["preprocessing"]["std"]) == (MEAN, STD)
    assert card["model"]["arch"] == meta["name"] == "compact" and "compact" in MODELS
    assert card["model"]["arch_params"] == {"width": 8} and card["model"]["tta_flip"]
    assert all(v.dtype == torch.float16 for v in torch.load(pt, weights_only=True)[
        "state_dict"].values() if v.is_floating_point())
    # the predictions are the fp32 model's, averaged over its test-time views (tta_flip)
    model, _ = trained
    with torch.no_grad():
        expected = torch.softmax(WithViews(model, flip=True)(to_input(FACES)), 1).numpy()
    got = predictor.predict_proba(FACES)
    assert np.abs(got - expected).max() < 5e-3
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.99
    # the card was generated from the run's files
    assert card["recipe"]["name"] == "smoke"
    assert card["recipe"]["params"] == yaml.safe_load((ROOT / "params.yaml").read_text())
    assert card["recipe"]["overrides"]  # repo params.yaml is not the smoke composition
    assert card["recipe"]["command"].startswith("dvc exp run -S experiment=smoke")
    run = published_once[0]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=run, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert card["provenance"]["git"]["commit"] == commit
    assert card["provenance"]["git"]["dirty"] is False
    lock = card["provenance"]["dvc_lock"]
    assert lock["acquire"]["outs"] == {"data/acquired": "b9916309e4785930a86b08e232d0c180.dir"}
    assert lock["acquire"]["deps"]["src/occlufer/stages/acquire.py"].startswith("0123")
    assert lock["train"]["outs"]["models"].endswith(".dir")
    assert card["provenance"]["mlflow_run_id"] is None  # the run has no MLflow store
    assert card["provenance"]["source_model"]["sha256"] == zoo.sha256(run / "models/model.pt")
    assert card["training"]["seconds"] == pytest.approx(6.0)
    assert card["training"]["epochs"] == 3 and "history.csv" in card["training"]["source"]
    assert card["training"]["hardware"]["cores"] >= 1 and card["training"]["hardware"]["cpu"]
    assert "publish" in card["training"]["hardware_source"]
    ev = card["evaluation"]
    assert ev["split"] == "test" and "held-out" in ev["split_note"]
    assert ev["clean"] == {"acc": 0.61, "ci_low": 0.58, "ci_high": 0.64, "n": 350,
                           "ece": 0.05, "macro_f1": 0.55}
    assert ev["occluders"]["sunglasses"] == {"acc": 0.55, "ci_low": 0.45, "ci_high": 0.65,
                                             "n": 80, "acc_at_gap": 0.53, "gap": 0.08}
    assert ev["occluders"]["mask"] == {"acc_at_gap": 0.49, "gap": 0.12}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert ev["ci_level"] == params["validate"]["ci_level"]
    limits = " ".join(card["limits"])
    assert "48×48 grayscale" in limits and "7 classes" in limits and "ECE 0.050" in limits
    md = (published / "tiny.md").read_text()
    for text in (card["file"]["sha256"], "test accuracy 0.610", "[0.580, 0.640]", "sunglasses",
                 "8.0", "ECE", commit, "b9916309e4785930a86b08e232d0c180.dir", "## Limits",
                 "0 min 06 s"):
        assert text in md, text
    from occlufer.zoo.card import render

    assert md == render(card)  # the md is the json, rendered


def test_hardware_and_time_recorded_by_train_win(trained, zoo_dir: Path, tmp_path: Path) -> None:
    from occlufer.publish import publish

    hw = {"cpu": "Test CPU 9000", "cores": 3, "gpus": []}
    run = make_run(tmp_path / "run", *trained, hardware=hw, train_seconds=123.0)
    card = publish("hw", run=run, recipe="smoke", conf=str(ROOT / "conf"))
    assert card["training"]["hardware"] == hw and card["training"]["seconds"] == 123.0
    assert "model.pt" in card["training"]["hardware_source"]
    # val only (no test split): the card says so
    metrics = {k: v for k, v in METRICS.items() if not k.startswith("test")}
    (run / "reports/validate/metrics.json").write_text(json.dumps(metrics))
    card = publish("hw", run=run, recipe="smoke", conf=str(ROOT / "conf"))
    assert card["evaluation"]["split"] == "val" and "optimistic" in card["evaluation"][
        "split_note"]
    assert card["evaluation"]["clean"]["acc"] == 0.64


def test_run_time_and_hardware_come_from_the_mlflow_run(trained, zoo_dir: Path, tmp_path: Path,
                                                       tracking_store: str) -> None:
    """Today's runs keep no run id, time or host in their DVC outputs: the card takes them from
    the MLflow run that logged model.pt (found by its sha256)."""
    import mlflow

    from occlufer import tracking
    from occlufer.publish import publish

    run = make_run(tmp_path / "run", *trained)
    pd.DataFrame({"epoch": [1, 2, 3], "val/acc": [0.3, 0.4, 0.5]}).to_csv(
        run / "models" / "history.csv", index=False)  # no timings: they are MLflow's
    hw = {"cpu": "Test CPU 9000", "cores": 3, "gpus": []}
    mlflow.set_tracking_uri(tracking_store)
    with mlflow.start_run(experiment_id="0") as tracked:
        tracking.tag_model(run / "models" / "model.pt")
        mlflow.set_tag(tracking.HARDWARE_TAG, json.dumps(hw))
        mlflow.log_metric("train/seconds", 42.04)
    card = publish("fromrun", run=run, recipe="smoke", conf=str(ROOT / "conf"))
    run_id = tracked.info.run_id
    assert card["provenance"]["mlflow_run_id"] == run_id
    assert card["training"]["seconds"] == 42.0 and card["training"]["epochs"] == 3
    assert run_id in card["training"]["source"] and "train/seconds" in card["training"]["source"]
    assert card["training"]["hardware"] == hw
    assert run_id in card["training"]["hardware_source"]


def test_a_distilled_model_names_its_teacher_pinned_by_bytes_and_git(
        trained, zoo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``zoo:NAME`` moves on when the zoo is republished, so the card of a distilled model pins
    its teacher by sha256 and, when the run's checkout holds those bytes, by commit and path."""
    from occlufer.hashing import file_sha256
    from occlufer.publish import publish
    from occlufer.training.distill import provenance
    from occlufer.zoo.card import render

    model, meta = trained
    run = tmp_path / "run"
    run.mkdir()
    teacher = run / "teacher.pt"
    save_model(teacher, model, name="compact", classes=meta["classes"], image_size=48,
               dropout=0.0, arch=meta["arch"], epoch=9)
    recorded = provenance("teacher.pt", teacher, {"name": "compact", "epoch": 9}, 0.71, 0.5, 2.0)
    make_run(run, model, meta, teacher=recorded)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "add", "teacher.pt"], cwd=run, check=True)
    subprocess.run([*git, "commit", "-qm", "teacher"], cwd=run, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=run, check=True, capture_output=True,
                          text=True).stdout.strip()
    params = yaml.safe_load((run / "params.yaml").read_text())
    params["train"].update(teacher="teacher.pt", distill=0.5)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(run)  # the reference is relative to where publish runs

    card = publish("taught", run=run, recipe="smoke", conf=str(ROOT / "conf"))
    got = card["training"]["teacher"]
    assert got["sha256"] == file_sha256(teacher) and got["ref"] == "teacher.pt"
    assert (got["arch"], got["epoch"], got["train_acc"], got["distill"]) == ("compact", 9, 0.71,
                                                                           0.5)
    assert got["source"] == "model.pt (recorded by train)"
    assert got["git"] == {"commit": head, "path": "teacher.pt"}
    md = (zoo_dir / "taught.md").read_text()
    assert md == render(card)
    assert f"git show {head}:teacher.pt > teacher.pt" in md and got["sha256"] in md

    # the file the reference names now is another one: the recorded bytes are not in git
    save_model(teacher, model, name="compact", classes=meta["classes"], image_size=48,
               dropout=0.0, arch=meta["arch"], epoch=10)
    subprocess.run([*git, "commit", "-qam", "another teacher"], cwd=run, check=True)
    got = publish("taught", run=run, recipe="smoke", conf=str(ROOT / "conf"))["training"][
        "teacher"]
    assert got["sha256"] == recorded["sha256"] != file_sha256(teacher) and "git" not in got

    # a model.pt from before train recorded its teacher: the file the reference names now
    save_model(run / "models" / "model.pt", model, name="compact", classes=meta["classes"],
               image_size=48, dropout=0.0, arch=meta["arch"], tta_flip=True, epoch=3)
    got = publish("taught", run=run, recipe="smoke", conf=str(ROOT / "conf"))["training"][
        "teacher"]
    assert got["sha256"] == file_sha256(teacher) and "not recorded by model.pt" in got["source"]
    assert got["distill"] == 0.5 and got["git"]["commit"] != head
    assert "not recorded by model.pt" in (zoo_dir / "taught.md").read_text()

    # an MLflow reference is not fetched to publish a card
    params["train"].update(teacher="runs:/0123456789abcdef/model")
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    got = publish("taught", run=run, recipe="smoke", conf=str(ROOT / "conf"))["training"][
        "teacher"]
    assert got["sha256"] is None and "not fetched" in got["source"] and "git" not in got

    # no teacher, no line
    params["train"].update(teacher=None, distill=0.0)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    card = publish("taught", run=run, recipe="smoke", conf=str(ROOT / "conf"))
    assert "teacher" not in card["training"] and "teacher" not in render(card)


def test_list_and_show(published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"zoo: 1 entries in {published}"
    assert out[1].startswith("tiny: SMOKE recipe; compact, 7 classes, 48×48; test acc 0.610 "
                             "[0.580, 0.640]; ")
    assert main(["zoo", "show", "tiny"]) == 0
    assert capsys.readouterr().out == (published / "tiny.md").read_text()
    assert main(["zoo", "show", "tiny", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny"
    (published / "tiny.pt").rename(published / "gone.pt")
    (published / "bad.json").write_text("[]")
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"zoo: 2 entries in {published}"
    assert out[1].startswith("bad: BROKEN: zoo:bad: ") and "not a valid model card" in out[1]
    assert out[2].endswith("BROKEN: tiny.pt is missing")
    assert main(["zoo", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("occlufer zoo show: error: zoo:nope: no such "
                                                   "zoo entry") and "available: bad, tiny" in err


def test_empty_zoo_lists_nothing(zoo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list"]) == 0
    assert "no entries" in capsys.readouterr().out


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing", "classes", "image_size",
                                    "card"])
def test_a_bad_zoo_file_is_one_line_with_the_fix(published: Path, photo_dir: Path, damage: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    pt, card_path = published / "tiny.pt", published / "tiny.json"
    data = bytearray(pt.read_bytes())
    card = json.loads(card_path.read_text())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        pt.write_bytes(bytes(data))
    elif damage == "truncate":
        pt.write_bytes(bytes(data[:-100]))
    elif damage == "missing":
        pt.unlink()
    elif damage == "classes":  # a card that does not describe the file
        card["classes"] = list(reversed(card["classes"]))
        card_path.write_text(json.dumps(card))
    elif damage == "image_size":
        card["image_size"] = 64
        card_path.write_text(json.dumps(card))
    else:
        card_path.write_text("{not json")
    err = _one_line_error(["predict", str(photo_dir), "--model", "zoo:tiny", "-o", "p.csv"],
                          capsys)
    assert err.startswith("occlufer predict: error: zoo:tiny: ")
    named = "tiny.json" if damage == "card" else "tiny.pt"
    assert str(published / named) in err
    assert "occlufer zoo publish tiny" in err and "git checkout" not in err  # not the package's
    expected = {"flip": "sha256", "truncate": "bytes", "missing": "missing",
                "classes": "classes", "image_size": "64", "card": "not a valid model card"}
    assert expected[damage] in err
    for argv in (["export", "--model", "zoo:tiny", "--out", "m.onnx"],
                 ["zoo", "check", "tiny"]):
        assert "zoo:tiny: " in _one_line_error(argv, capsys)


def test_unknown_and_malformed_names(zoo_dir: Path, photo_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(["predict", str(photo_dir), "--model", "zoo:fer", "-o", "p.csv"], capsys)
    assert "no such zoo entry" in err and "the zoo is empty" in err
    assert "lower-case" in _one_line_error(["zoo", "show", "../etc"], capsys)


def test_predict_with_a_zoo_model_says_so_first(published: Path, photo_dir: Path,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.csv"
    assert main(["predict", str(photo_dir), "--model", "zoo:tiny", "--no-detect", "-o", str(out),
                 "--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("model: zoo:tiny (SMOKE recipe, test acc 0.610; occlufer zoo show "
                        "tiny)")
    assert lines[-1].startswith("predict: 6 images, 5 faces")
    rows = pd.read_csv(out)
    ok = rows[rows["status"] == "ok"]
    assert len(ok) == 5 and set(ok["label"]) <= set(CLASSES)
    # to stdout: the rows stay clean CSV, the model line leads stderr
    assert main(["predict", str(photo_dir / "good.jpg"), "--model", "zoo:tiny",
                 "--no-detect"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("path,face,")
    assert captured.err.splitlines()[0].startswith("model: zoo:tiny (")


def test_without_model_the_default_is_models_then_the_zoo(
        trained, zoo_dir: Path, tmp_path: Path, photo_dir: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from occlufer.publish import publish

    run = make_run(tmp_path / "run", *trained)
    publish(zoo.DEFAULT, run=run, recipe="smoke", conf=str(ROOT / "conf"))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    zoo_line = f"model: zoo:{zoo.DEFAULT} (SMOKE recipe, test acc 0.610; occlufer zoo show "
    assert resolve_model(None).ref == f"zoo:{zoo.DEFAULT}"
    assert main(["predict", str(photo_dir), "--no-detect", "-o", "p.csv", "--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(zoo_line)
    assert main(["export", "--out", "m.onnx"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(zoo_line)
    np.testing.assert_allclose(load_predictor("m.onnx").predict_proba(FACES[:8]),
                               load_predictor(None).predict_proba(FACES[:8]), atol=1e-4)
    # evaluate resolves (and names) the model before it reads anything else
    assert main(["evaluate", "--data", "nope", "--out", "ev",
                 "--params", str(ROOT / "params.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith(zoo_line) and "--data nope" in captured.err
    # a model trained here wins
    shutil.copytree(run / "models", cwd / "models")
    assert resolve_model(None).path == Path("models/model.pt")
    assert main(["predict", str(photo_dir), "--no-detect", "-o", "p.csv", "--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ("model: models/model.pt (trained here by "
                                                       "dvc repro)")
    # neither: one line naming both
    shutil.rmtree(cwd / "models")
    monkeypatch.setenv(zoo.ENV, str(tmp_path / "empty-zoo"))
    err = _one_line_error(["predict", str(photo_dir), "-o", "p.csv"], capsys)
    assert "models/model.pt: no model file" in err and f"zoo:{zoo.DEFAULT}" in err


def test_pyfunc_folder_from_the_zoo_serves_like_the_model(published: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    import mlflow

    out = tmp_path / "served"
    assert main(["export", "--model", "zoo:tiny", "--format", "pyfunc", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model: zoo:tiny (") and "mlflow models serve -m" in lines[-1]
    assert (out / "MLmodel").is_file()
    loaded = mlflow.pyfunc.load_model(str(out))
    assert capsys.readouterr().err.splitlines()[-1].startswith("model: zoo:tiny (")
    assert loaded.metadata.metadata["occlufer_model"].startswith("zoo:tiny (")
    frame = pd.DataFrame({"pixels": [FACES[0].tolist(), FACES[1].tolist()]})
    answer = loaded.predict(frame)
    expected = load_predictor("zoo:tiny").predict_proba(FACES[:2])
    np.testing.assert_allclose(answer[list(CLASSES)].to_numpy(float), expected, atol=1e-6)
    via_folder = load_predictor(out)  # the folder is a --model too
    np.testing.assert_allclose(via_folder.predict_proba(FACES[:2]), expected, atol=1e-6)
    assert "already exists" in _one_line_error(
        ["export", "--model", "zoo:tiny", "--format", "pyfunc", "--out", str(out)], capsys)


def test_check_says_within_or_outside(published: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "fresh"
    report.mkdir()
    for acc, rc, word in ((0.62, 0, "WITHIN"), (0.70, 1, "OUTSIDE"), (0.57, 1, "OUTSIDE")):
        (report / "metrics.json").write_text(json.dumps(
            {"test/acc": acc, "test/acc_ci_low": acc - 0.03, "test/acc_ci_high": acc + 0.03}))
        assert main(["zoo", "check", "tiny", "--report", str(report)]) == rc
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"zoo check tiny: fresh test/acc {acc:.4f} [") and word in line
        assert "[0.580, 0.640]" in line
    (report / "metrics.json").write_text(json.dumps({"val/acc": 0.6}))
    assert "no test/acc" in _one_line_error(["zoo", "check", "tiny", "--report", str(report)],
                                            capsys)


def test_publish_refuses_a_run_that_does_not_hang_together(
        trained, zoo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "run", *trained)
    monkeypatch.chdir(run)
    params = yaml.safe_load((run / "params.yaml").read_text())
    params["seed"] += 1  # params.yaml changed after the run
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    err = _one_line_error(["zoo", "publish", "x", "--conf", str(ROOT / "conf")], capsys)
    assert "`seed` differs from what" in err and "dvc.lock" in err
    assert _one_line_error(["zoo", "publish", "x", "--models", "nowhere"], capsys).startswith(
        "occlufer zoo publish: error: nowhere/model.pt: no trained model")
    assert "metrics.json" in _one_line_error(["zoo", "publish", "x", "--report", "nope"], capsys)
    assert not zoo_dir.exists() or not list(zoo_dir.iterdir())


def test_zoo_files_are_packaged_and_committable() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(data["tool"]["setuptools"]["package-data"]["occlufer"]) >= {
        "zoo/*.pt", "zoo/*.json", "zoo/*.md"}
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert not ignored("src/occlufer/zoo/fer2013.pt")
    assert not ignored("src/occlufer/zoo/fer2013.json")
    assert ignored("models/model.pt") and ignored("model.pt") and ignored("src/occlufer/x.pt")


# ------------------------------------------------------------ the entries shipped in the package
def _shipped() -> list[str]:
    return zoo.names(SHIPPED)


@pytest.mark.skipif(not _shipped(), reason="no zoo entry is shipped in src/occlufer/zoo yet "
                                           "(publish one with `occlufer zoo publish fer2013`)")
@pytest.mark.parametrize("name", _shipped() or ["none"])
def test_shipped_entry_card_file_and_registry_agree(name: str, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    monkeypatch.delenv(zoo.ENV, raising=False)
    entry = zoo.verify(name)  # sha256, size, classes, image size, arch, preprocessing
    assert entry.folder == SHIPPED
    card = entry.card
    assert card["name"] == name and card["file"]["sha256"] == zoo.sha256(entry.pt)
    assert entry.pt.stat().st_size <= zoo.MAX_BYTES
    assert card["preprocessing"] == zoo.preprocessing(entry.image_size)
    model, meta = load_model(entry.pt)
    assert meta["classes"] == card["classes"] and meta["image_size"] == card["image_size"]
    assert meta["name"] == card["model"]["arch"] in MODELS
    assert sum(p.numel() for p in model.parameters()) == card["model"]["parameters"]
    predictor = load_predictor(f"zoo:{name}")
    faces = generate(SyntheticSpec(n_per_class=2, size=entry.image_size), seed=0,
                     classes=[c for c in card["classes"] if c in CLASSES] or CLASSES)[0]
    probs = predictor.predict_proba(faces)
    assert probs.shape == (len(faces), len(card["classes"]))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    from occlufer.zoo.card import render

    assert entry.md.read_text(encoding="utf-8") == render(card)
    for key in ("recipe", "provenance", "training", "evaluation", "limits"):
        assert card[key], key
    assert os.access(entry.pt, os.R_OK)


def test_refresh_regenerates_the_card_text_and_keeps_weights_and_figures(
        published: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from occlufer.zoo.card import render

    path = published / "tiny.json"
    card = json.loads(path.read_text())
    stale = {**card, "limits": ["stale"], "preprocessing": {**card["preprocessing"],
                                                            "detector": "old"}}
    path.write_text(json.dumps(stale))
    (published / "tiny.md").write_text("stale\n")
    weights = zoo.sha256(published / "tiny.pt")
    assert main(["zoo", "refresh", "tiny"]) == 0
    assert "re-generated" in capsys.readouterr().out
    new = json.loads(path.read_text())
    assert new["limits"] == card["limits"] and new["preprocessing"] == zoo.preprocessing(48)
    assert {k: new[k] for k in ("file", "evaluation", "training", "provenance")} == {
        k: card[k] for k in ("file", "evaluation", "training", "provenance")}
    assert (published / "tiny.md").read_text(encoding="utf-8") == render(new)
    assert zoo.sha256(published / "tiny.pt") == weights
