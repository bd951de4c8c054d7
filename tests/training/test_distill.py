"""Distillation (``train.teacher``, ``train.distill``): the teacher scores each clean face once,
occluded copies learn towards their clean face's teacher output, the student follows the
teacher, and a teacher that does not fit stops with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from occlufer.config import ConfigError
from occlufer.data.store import read_store
from occlufer.errors import OccluferError
from occlufer.hashing import file_sha256
from occlufer.labels import CLASSES
from occlufer.models import build_model, save_model
from occlufer.stages.train import train
from occlufer.training import fit, predict_logits
from occlufer.training.checkpoints import fingerprint
from occlufer.training.distill import (
    clean_rows,
    distill_loss,
    load_teacher,
    soft_targets,
    teacher_logits,
)
from tests.training.test_augment import _data
from tests.training.test_loop import _arrays, _run

TINY_COMPACT = ("model=compact", "model.width=8", "model.blocks=[1,1,1,1]")


class _Brightness(nn.Module):
    """A 'teacher' whose logits are the mean pixel times a per-class factor: its output on a
    face is known in closed form, and differs between a face and an altered copy."""

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.arange(classes, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))[:, None] * self.scale[None, :]


def _save_teacher(path: Path, classes=CLASSES, size: int = 48, bias_to: str = "happy") -> Path:
    """A tiny compact model that always predicts ``bias_to`` (a huge bias on that class)."""
    torch.manual_seed(3)
    model = build_model("compact", num_classes=len(classes), image_size=size, width=8,
                        blocks=[1, 1, 1, 1])
    with torch.no_grad():
        model.head[-1].bias.fill_(0.0)
        model.head[-1].bias[list(classes).index(bias_to)] = 20.0
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, model, name="compact", classes=list(classes), image_size=size,
               dropout=0.0, arch={"width": 8, "blocks": [1, 1, 1, 1]}, tta_flip=True)
    return path


def test_each_row_gets_the_teacher_output_on_its_clean_face() -> None:
    d = _data(40)
    d.images[20:, 10:30, 10:30] = 255  # the occluded copies differ from their clean faces
    rows = clean_rows(d)
    assert (rows[:20] == np.arange(20)).all() and (rows[20:] == np.arange(20)).all()
    logits = teacher_logits(_Brightness(), d, np.arange(7), torch.device("cpu"),
                            tta_flip=False, batch_size=7)
    assert logits.shape == (40, 7) and logits.dtype == np.float32
    assert np.array_equal(logits[20:], logits[:20])  # the copies: their clean face's output
    x = (d.images[:20].astype(np.float32) / 255 - 0.5) / 0.5
    expect = x.mean(axis=(1, 2))[:, None] * np.arange(7)[None, :]
    np.testing.assert_allclose(logits[:20], expect, atol=1e-4)
    # the teacher's columns are reordered to the student's classes
    swapped = teacher_logits(_Brightness(), d, np.array([6, 5, 4, 3, 2, 1, 0]),
                             torch.device("cpu"), tta_flip=False)
    np.testing.assert_allclose(swapped[:, ::-1], logits, atol=1e-6)
    # a copy without its clean face in the set is scored on itself
    d.source[25] = -1
    alone = teacher_logits(_Brightness(), d, np.arange(7), torch.device("cpu"), tta_flip=False)
    assert not np.allclose(alone[25], alone[5])


def test_the_distillation_loss_is_zero_at_the_teacher_and_grows_away_from_it() -> None:
    t = torch.randn(8, 7)
    assert float(distill_loss(t, soft_targets(t, 2.0), 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(torch.zeros(8, 7), soft_targets(t, 2.0), 2.0)) > 0.01
    # a mixed batch's target is the same mixture of the two faces' distributions
    perm = torch.arange(7, -1, -1)
    mixed = soft_targets(t, 1.0, perm, 0.3).exp()
    expect = 0.3 * t.softmax(1) + 0.7 * t[perm].softmax(1)
    assert torch.allclose(mixed, expect, atol=1e-6)
    assert torch.allclose(mixed.sum(1), torch.ones(8), atol=1e-6)


def test_the_config_needs_teacher_and_weight_together(make_params) -> None:
    with pytest.raises(ConfigError, match=r"distill.*teacher.*null.*zoo:fer2013"):
        make_params("train.distill=0.5")
    with pytest.raises(ConfigError, match=r"teacher.*not used.*distill"):
        make_params("train.teacher=zoo:fer2013")
    with pytest.raises(ConfigError, match="distill"):
        make_params("train.teacher=zoo:fer2013", "train.distill=1.5")
    params = make_params("train.teacher=zoo:fer2013", "train.distill=0.5")
    assert params.train.distill_temperature == 2.0


def test_fit_without_the_teacher_logits_says_what_is_missing(make_params, split_dir) -> None:
    params = make_params(*TINY_COMPACT, "train.epochs=1", "train.teacher=zoo:fer2013",
                         "train.distill=0.5")
    with pytest.raises(ValueError, match="teacher's logits for every training row"):
        _run(params, split_dir)


def test_a_student_with_distill_1_follows_the_teacher_not_the_labels(
        tmp_path: Path, make_params, split_dir: Path) -> None:
    pt = _save_teacher(tmp_path / "teacher.pt", bias_to="happy")
    train_set, _ = _arrays(split_dir)
    teacher = load_teacher(str(pt), list(CLASSES), 48)
    assert teacher.meta["tta_flip"] is True
    logits = teacher.logits(train_set, torch.device("cpu"))
    assert (logits.argmax(1) == CLASSES.index("happy")).all()
    common = (*TINY_COMPACT, "train.epochs=3", "train.lr=0.01", "train.optimizer=adamw")
    for weight, expect_happy in ((1.0, True), (0.0, False)):
        extra = (f"train.teacher='{pt}'", f"train.distill={weight}") if weight else ()
        params = make_params(*common, *extra)
        train_set, val = _arrays(split_dir)
        train_set.teacher = logits
        torch.manual_seed(params.seed)
        model = build_model("compact", num_classes=7, image_size=48, width=8,
                            blocks=[1, 1, 1, 1])
        fit(model, train_set, val, params.train, params.model, params.occlusion, params.seed,
            torch.device("cpu"))
        pred = _predict(model, val.images).argmax(1)
        happy = float((pred == CLASSES.index("happy")).mean())
        assert (happy > 0.9) is expect_happy, (weight, happy)


def _predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    return predict_logits(model, images, 64, torch.device("cpu"))


def test_a_teacher_that_does_not_fit_stops_with_one_line(tmp_path: Path) -> None:
    ck = ["angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]
    other = _save_teacher(tmp_path / "ck.pt", classes=ck)
    with pytest.raises(OccluferError, match=r"^train.teacher .* predicts the classes .*same "
                                            r"classes.*train.distill=0 train.teacher=null$"):
        load_teacher(str(other), list(CLASSES), 48)
    big = _save_teacher(tmp_path / "big.pt", size=64)
    with pytest.raises(OccluferError, match=r"takes 64×64 faces.*acquire.image_size=64$"):
        load_teacher(str(big), list(CLASSES), 48)
    reordered = _save_teacher(tmp_path / "r.pt", classes=list(reversed(CLASSES)))
    columns = load_teacher(str(reordered), list(CLASSES), 48).columns
    assert columns.tolist() == list(range(6, -1, -1))
    with pytest.raises(OccluferError, match="no model file"):
        load_teacher(str(tmp_path / "none.pt"), list(CLASSES), 48)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(OccluferError, match=r"junk.pt is not a readable model.pt .*written by"):
        load_teacher(str(junk), list(CLASSES), 48)


def test_fingerprint_follows_the_teacher_file(tmp_path: Path, make_params,
                                              split_dir: Path) -> None:
    pt = _save_teacher(tmp_path / "t.pt")
    params = make_params(*TINY_COMPACT, f"train.teacher='{pt}'", "train.distill=0.5")
    key = fingerprint(params, split_dir)
    assert fingerprint(params, split_dir, teacher_file=pt) == key
    assert fingerprint(make_params(*TINY_COMPACT, f"train.teacher='{pt}'",
                                   "train.distill=0.7"), split_dir) != key
    _save_teacher(pt, bias_to="sad")  # same reference, new content
    assert fingerprint(params, split_dir) != key


def test_train_stage_distils_and_stops_on_a_misfit(tmp_path: Path, make_params,
                                                   split_dir: Path, tracking_store,
                                                   capsys) -> None:
    pt = _save_teacher(tmp_path / "teacher.pt")
    params = make_params(*TINY_COMPACT, "train.epochs=1", "train.log_model=false",
                         f"train.teacher='{pt}'", "train.distill=0.5")
    train(params, split_dir, tmp_path / "models")
    out = capsys.readouterr().out
    assert f"train: distilling from {pt} (compact, epoch ?): its accuracy on the clean" in out
    assert (tmp_path / "models" / "model.pt").is_file()
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    acc = runs[0].data.metrics["teacher/train_acc"]  # the teacher always says "happy"
    manifest = read_store(split_dir / "train").manifest
    clean = manifest[~manifest["occluded"].astype(bool)]
    assert acc == pytest.approx(float((clean["label"] == "happy").mean()))
    # the student's model.pt pins its teacher by bytes (zoo:NAME moves on when republished)
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)["teacher"]
    assert saved["sha256"] == file_sha256(pt) and saved["ref"] == str(pt)
    assert (saved["distill"], saved["temperature"]) == (0.5, 2.0)
    assert saved["train_acc"] == pytest.approx(acc, abs=1e-4)
    misfit = _save_teacher(tmp_path / "big.pt", size=64)
    params = make_params(*TINY_COMPACT, "train.log_model=false", f"train.teacher='{misfit}'",
                         "train.distill=0.5")
    with pytest.raises(OccluferError, match="takes 64×64 faces"):
        train(params, split_dir, tmp_path / "misfit")
    assert not (tmp_path / "misfit").exists()
