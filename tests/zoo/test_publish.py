"""The model card reads a validate report in either layout: metrics.json (headline) with
detail.json (the rest), or one metrics.json with everything (reports from before the split)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occlufer.errors import OccluferError
from occlufer.headline import DETAIL_FILE, write_metrics
from occlufer.publish import evaluation, read_report
from tests.evaluation.test_headline import TYPES, full_metrics

VALIDATE = {"ci_level": 0.95, "gap_ratio": 0.25}


def test_card_evaluation_is_the_same_from_the_split_report(tmp_path: Path) -> None:
    full = full_metrics(test=True)
    split, single = tmp_path / "split", tmp_path / "single"
    split.mkdir()
    single.mkdir()
    head = write_metrics(split, full)
    assert len(head) < 30 and (split / DETAIL_FILE).is_file()
    (single / "metrics.json").write_text(json.dumps(full))
    assert read_report(split, "fix") == read_report(single, "fix") == full
    card = evaluation(read_report(split, "fix"), VALIDATE)
    assert card == evaluation(full, VALIDATE)
    # the card's numbers come from both files: headline (test/acc) and detail (per occluder)
    assert card["split"] == "test" and card["clean"]["acc"] == full["test/acc"]
    assert card["clean"]["n"] == int(full["test/n"])  # detail
    hand = card["occluders"]["hand"]
    assert hand["acc"] == full["test_occluded/occluder/hand/acc"]  # detail
    assert hand["gap"] == full["test_robustness/hand/gap"]  # headline
    assert set(card["occluders"]) == set(TYPES)
    # the headline alone would lose them: the detail is really read
    (split / DETAIL_FILE).unlink()
    assert "acc" not in evaluation(read_report(split, "fix"), VALIDATE)["occluders"]["hand"]


def test_a_broken_detail_file_is_one_line(tmp_path: Path) -> None:
    write_metrics(tmp_path, full_metrics(test=False))
    (tmp_path / DETAIL_FILE).write_text("{not json")
    with pytest.raises(OccluferError, match=r"detail.json: not valid JSON .*; run validate"):
        read_report(tmp_path, "run validate")
