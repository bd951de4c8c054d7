"""Fine-tuning: ``train.init_from`` loads a trunk (and a fitting head), ``train.freeze_epochs``
freezes the trunk first, resume stays exact, and a trunk that does not fit says how to fix it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from occlufer.config import ConfigError
from occlufer.errors import OccluferError
from occlufer.labels import CLASSES
from occlufer.model_files import resolve_model_file
from occlufer.models import build_model, save_model
from occlufer.stages.train import train
from occlufer.training import TrainState, fit
from occlufer.training.checkpoints import fingerprint
from occlufer.training.init import head_prefixes, is_head, load_init, trunk_freezer
from tests.training.test_loop import _arrays, _same_weights

CK = ["angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]  # no neutral
TINY_COMPACT = ("model=compact", "model.width=8", "model.blocks=[1,1,1,1]")


def _save(path: Path, *, classes=CLASSES, name="compact", width=8, blocks=None, size=48,
          seed=1) -> Path:
    """A model with every weight and BatchNorm statistic random (unlike a fresh one)."""
    torch.manual_seed(seed)
    arch = {"width": width, "blocks": blocks} if name != "seed_cnn" else {}
    model = build_model(name, num_classes=len(classes), image_size=size, **arch)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand_like(t) + 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, model, name=name, classes=classes, image_size=size, dropout=0.0, arch=arch)
    return path


def _fresh(name="compact", classes=CLASSES, width=8, blocks=None, seed=7) -> nn.Module:
    torch.manual_seed(seed)
    arch = {"width": width, "blocks": blocks} if name != "seed_cnn" else {}
    return build_model(name, num_classes=len(classes), image_size=48, **arch)


def _load(model, pt, name="compact", classes=CLASSES, width=8, blocks=None, size=48) -> str:
    return load_init(model, str(pt), name=name, classes=classes, image_size=size,
                     arch={"width": width, "blocks": blocks})


def _saved_state(pt: Path) -> dict[str, torch.Tensor]:
    return torch.load(pt, weights_only=True)["state_dict"]


def _split(model, state) -> tuple[list[str], list[str]]:
    prefixes = head_prefixes(model)
    return ([k for k in state if not is_head(k, prefixes)],
            [k for k in state if is_head(k, prefixes)])


def test_same_classes_load_trunk_and_head(tmp_path: Path) -> None:
    pt = _save(tmp_path / "a" / "model.pt")
    model = _fresh()
    saved = _saved_state(pt)
    assert not torch.equal(model.state_dict()["head.3.weight"], saved["head.3.weight"])
    what = _load(model, pt.parent, blocks=[1, 1, 1, 1])  # a folder; blocks = compact's default
    assert "trunk and head" in what
    own = model.state_dict()
    assert own.keys() == saved.keys() and all(torch.equal(own[k], saved[k]) for k in own)


def test_a_half_precision_file_loads_into_the_float32_model(tmp_path: Path) -> None:
    pt = _save(tmp_path / "model.pt", classes=list(reversed(CLASSES)))  # zoo files are fp16
    blob = torch.load(pt, weights_only=True)
    blob["state_dict"] = {k: v.half() if v.is_floating_point() else v
                          for k, v in blob["state_dict"].items()}
    torch.save(blob, pt)
    model = _fresh()
    _load(model, pt)
    own, saved = model.state_dict(), blob["state_dict"]
    assert own["stem.0.weight"].dtype == torch.float32
    assert torch.equal(own["stem.0.weight"], saved["stem.0.weight"].float())
    assert torch.equal(own["head.3.bias"], saved["head.3.bias"].float().flip(0))


@pytest.mark.parametrize("name", ["compact", "occ_resnet", "seed_cnn"])
@pytest.mark.parametrize("classes", [CK, [*CLASSES, "contempt"]], ids=["ck", "eight"])
def test_other_classes_reinitialise_the_head_and_load_the_trunk(tmp_path: Path, name: str,
                                                                 classes: list[str]) -> None:
    pt = _save(tmp_path / "model.pt", name=name)
    model = _fresh(name, classes)
    before = copy.deepcopy(model.state_dict())
    what = _load(model, pt, name, classes)
    assert "head re-initialised" in what and "contempt" in what
    saved, own = _saved_state(pt), model.state_dict()
    trunk, head = _split(model, own)
    assert trunk and head
    assert all(torch.equal(own[k], saved[k]) for k in trunk)
    assert all(torch.equal(own[k], before[k]) for k in head)
    if name == "occ_resnet":
        assert any(k.startswith("attention.") for k in head)
    if name == "seed_cnn":  # only the final linear layer is the head
        assert sorted(head) == ["classifier.4.bias", "classifier.4.weight"]


def test_reordered_classes_reorder_the_head_rows(tmp_path: Path) -> None:
    shuffled = [CLASSES[i] for i in (3, 0, 6, 1, 5, 2, 4)]
    pt = _save(tmp_path / "model.pt", classes=shuffled)
    model = _fresh()
    assert "reordered" in _load(model, pt)
    source = build_model("compact", num_classes=7, image_size=48, width=8)
    source.load_state_dict(_saved_state(pt))
    x = torch.rand(4, 1, 48, 48)
    with torch.no_grad():
        want = source.eval()(x)[:, [shuffled.index(c) for c in CLASSES]]
        assert torch.allclose(model.eval()(x), want, atol=1e-5)


@pytest.mark.parametrize(("saved", "fix"), [
    ({"width": 16}, "model=compact model.width=16 model.blocks=[1,1,1,1]"),
    ({"blocks": [1, 1]}, "model.blocks=[1,1]"),
    ({"name": "resnet", "width": 8}, "model=resnet model.width=8 model.blocks=[2,2,2,2]"),
    ({"name": "seed_cnn"}, "model=seed_cnn"),
    ({"size": 64}, "acquire.image_size=64"),
])
def test_a_trunk_that_does_not_fit_stops_with_one_line_saying_how(tmp_path: Path, saved: dict,
                                                                  fix: str) -> None:
    pt = _save(tmp_path / "model.pt", **saved)
    model = _fresh()
    with pytest.raises(OccluferError) as err:
        _load(model, pt)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"train.init_from {pt} is a ")
    assert fix in msg and "or drop train.init_from" in msg


def test_weights_that_do_not_fit_the_architecture_are_named(tmp_path: Path) -> None:
    pt = _save(tmp_path / "model.pt")
    blob = torch.load(pt, weights_only=True)
    blob["state_dict"].pop("stem.0.weight")
    blob["state_dict"]["stem.9.weight"] = torch.zeros(1)
    torch.save(blob, pt)
    with pytest.raises(OccluferError, match=r"missing stem\.0\.weight; unexpected stem\.9"
                                            r"\.weight\).*drop train\.init_from$"):
        _load(_fresh(), pt, classes=CK)
    pt.write_bytes(b"not a model")
    with pytest.raises(OccluferError, match="is not a readable model.pt"):
        _load(_fresh(), pt)


def test_references_resolve_to_a_model_file(tmp_path: Path, monkeypatch) -> None:
    pt = _save(tmp_path / "models" / "model.pt")
    assert resolve_model_file(str(pt)) == pt
    assert resolve_model_file(str(pt.parent)) == pt
    with pytest.raises(OccluferError, match="no model file"):
        resolve_model_file(str(tmp_path / "nowhere.pt"))
    # MLflow: the pyfunc model keeps model.pt among its artifacts
    from occlufer import tracking

    logged = tmp_path / "dl"
    (logged / "artifacts").mkdir(parents=True)
    (logged / "artifacts" / "model.pt").write_bytes(pt.read_bytes())
    monkeypatch.setattr(tracking, "download_model", lambda uri: logged)
    assert resolve_model_file("models:/fer@champion") == logged / "artifacts" / "model.pt"
    # the zoo: one line for a name it does not have (the zoo tests cover published entries)
    monkeypatch.setenv("OCCLUFER_ZOO_DIR", str(tmp_path / "empty_zoo"))
    with pytest.raises(OccluferError, match="zoo:fer2013: no such zoo entry"):
        resolve_model_file("zoo:fer2013")
    # an ONNX file has no PyTorch weights to start from
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(OccluferError, match="no PyTorch weights"):
        resolve_model_file(str(onnx))


def test_freeze_epochs_needs_init_from(make_params) -> None:
    with pytest.raises(ConfigError, match="freeze_epochs.*init_from.*null"):
        make_params("train.freeze_epochs=1")


FINETUNE = (*TINY_COMPACT, "train.epochs=3", "train.optimizer=adamw", "train.weight_decay=0.05",
            "train.lr=0.01", "train.schedule=cosine", "train.augment.fresh_occlusion=true",
            "train.augment.flip=0.5", "train.augment.rotate=10", "model.dropout=0.2")


def _fit(params, split_dir, pt: Path, state: TrainState | None = None, states=None):
    torch.manual_seed(params.seed)
    model = build_model("compact", num_classes=7, image_size=48, dropout=params.model.dropout,
                        width=8, blocks=[1, 1, 1, 1])
    load_init(model, str(pt), name="compact", classes=CLASSES, image_size=48,
              arch={"width": 8, "blocks": [1, 1, 1, 1]})
    train_arrays, val = _arrays(split_dir)

    def keep(stats, st):
        if states is not None:
            states.append(copy.deepcopy(st))

    result = fit(model, train_arrays, val, params.train, params.model, params.occlusion,
                 params.seed, torch.device("cpu"), state=state, on_epoch=keep,
                 before_epoch=trunk_freezer(model, params.train.freeze_epochs))
    return model, result


def test_frozen_trunk_stays_put_then_trains_and_resume_is_exact(tmp_path: Path, make_params,
                                                                 split_dir: Path) -> None:
    pt = _save(tmp_path / "model.pt", classes=CK)  # head re-initialised: it has to learn
    params = make_params(*FINETUNE, f"train.init_from='{pt}'", "train.freeze_epochs=2")
    saved = _saved_state(pt)
    states: list[TrainState] = []
    full, full_result = _fit(params, split_dir, pt, states=states)
    assert [s.epoch for s in states] == [1, 2, 3]
    trunk, head = _split(full, saved)
    for st in states[:2]:  # frozen: weights and BatchNorm statistics as loaded
        assert all(torch.equal(st.model[k], saved[k]) for k in trunk)
    assert not all(torch.equal(states[1].model[k], states[0].model[k]) for k in head)
    changed = [k for k in trunk if not torch.equal(states[2].model[k], saved[k])]
    assert any(k.endswith(".weight") for k in changed)
    assert any(k.endswith("running_mean") for k in changed)
    assert all(p.requires_grad for p in full.parameters())
    for at in (0, 1):  # resume during the freeze and right after it
        resumed, result = _fit(params, split_dir, pt, state=states[at])
        assert _same_weights(full, resumed)
        assert [h.train_loss for h in result.history] == [
            h.train_loss for h in full_result.history]
        assert result.best_epoch == full_result.best_epoch


def test_without_freeze_the_trunk_trains_from_epoch_one(tmp_path: Path, make_params,
                                                        split_dir: Path) -> None:
    pt = _save(tmp_path / "model.pt")
    params = make_params(*FINETUNE, "train.epochs=1", f"train.init_from='{pt}'")
    states: list[TrainState] = []
    model, _ = _fit(params, split_dir, pt, states=states)
    saved = _saved_state(pt)
    trunk, _ = _split(model, saved)
    assert not all(torch.equal(states[0].model[k], saved[k]) for k in trunk)


def test_fingerprint_follows_init_from_freeze_epochs_and_the_files_content(
        tmp_path: Path, make_params, split_dir: Path) -> None:
    pt = _save(tmp_path / "model.pt")
    params = make_params(*TINY_COMPACT, f"train.init_from='{pt}'")
    key = fingerprint(params, split_dir)
    assert fingerprint(params, split_dir, pt) == key
    assert fingerprint(make_params(*TINY_COMPACT), split_dir) != key
    assert fingerprint(make_params(*TINY_COMPACT, f"train.init_from='{pt}'",
                                   "train.freeze_epochs=1"), split_dir) != key
    other = _save(tmp_path / "other" / "model.pt")  # same content, other place: other ref
    assert fingerprint(make_params(*TINY_COMPACT, f"train.init_from='{other}'"),
                       split_dir) != key
    _save(pt, seed=2)  # same reference, new content
    assert fingerprint(params, split_dir) != key


def test_train_stage_fine_tunes_and_stops_on_a_misfit(tmp_path: Path, make_params,
                                                      split_dir: Path, tracking_store,
                                                      capsys) -> None:
    pt = _save(tmp_path / "model.pt", classes=CK)
    params = make_params(*TINY_COMPACT, "train.epochs=2", "train.log_model=false",
                         f"train.init_from='{pt}'", "train.freeze_epochs=1")
    train(params, split_dir, tmp_path / "models")
    out = capsys.readouterr().out
    assert f"train: from {pt}: trunk of a compact model; head re-initialised" in out
    assert "trunk frozen for the first 1 epoch(s)" in out
    assert (tmp_path / "models" / "model.pt").is_file()
    misfit = make_params("model=compact", "model.width=16", "train.log_model=false",
                         f"train.init_from='{pt}'")
    with pytest.raises(OccluferError, match="set model=compact model.width=8 "):
        train(misfit, split_dir, tmp_path / "misfit")
    assert not (tmp_path / "misfit").exists()
