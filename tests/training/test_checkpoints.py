"""Checkpoints (:mod:`occlufer.training.checkpoints`): a planted pickle is refused in one line,
a truncated file starts afresh, a checkpoint of other params is not resumed, writes are atomic."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from occlufer.errors import OccluferError
from occlufer.training import TrainState
from occlufer.training.checkpoints import load_checkpoint, resume, save_checkpoint


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_a_planted_pickle_is_refused_in_one_line(tmp_path: Path, monkeypatch, how: str) -> None:
    monkeypatch.chdir(tmp_path)
    path = Path("checkpoints/train.pt")
    path.parent.mkdir()
    blob = {"state": _RunsCode(), "meta": {}}
    if how == "torch.save":
        torch.save(blob, path)
    else:
        path.write_bytes(pickle.dumps(blob, protocol=4))
    with pytest.raises(OccluferError) as err:
        load_checkpoint(path, print_=True)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert f"rm {path}" in msg and "dvc repro -f -s train" in msg
    assert not Path("PWNED").exists()


def test_a_truncated_checkpoint_still_starts_afresh(tmp_path: Path, capsys) -> None:
    path = tmp_path / "train.pt"
    torch.save({"state": {"epoch": 1, "model": {"w": torch.zeros(1000)}}, "meta": {}}, path)
    path.write_bytes(path.read_bytes()[:500])
    assert load_checkpoint(path, print_=True) == (None, {})
    assert "ignoring unreadable checkpoint" in capsys.readouterr().out


def _state(epoch: int) -> TrainState:
    return TrainState(epoch=epoch, model={"w": torch.ones(3)}, optimizer={}, scheduler={},
                      history=[], best_epoch=epoch, best_score=0.5, best_model={})


def test_resume_keeps_only_a_checkpoint_of_the_same_fingerprint(tmp_path: Path, capsys) -> None:
    path = tmp_path / "train.pt"
    save_checkpoint(path, _state(3), {"fingerprint": "abc", "run_id": "r1"})
    assert not path.with_suffix(".tmp").exists()  # written beside, then renamed
    state, meta = resume(path, "abc", print_=True)
    assert state is not None and state.epoch == 3 and meta["run_id"] == "r1"
    assert torch.equal(state.model["w"], torch.ones(3))
    assert resume(path, "other", print_=True) == (None, {})
    assert "from other params or data; starting afresh" in capsys.readouterr().out
    assert resume(tmp_path / "missing.pt", "abc", print_=True) == (None, {})
