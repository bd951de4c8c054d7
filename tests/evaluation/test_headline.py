"""Headline metrics vs. detail (issue #16): what metrics.json holds, and how ``dvc exp show
--only-changed`` shows a three-experiment sweep of it on a 160-column terminal."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from occlufer.headline import (
    DETAIL_FILE,
    HEADLINE_FILE,
    headline_keys,
    split_metrics,
    summary_markdown,
    write_metrics,
)
from occlufer.stages.validate import as_test_metrics

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: validate.robustness_types by default; the first seven are drawn by the default occlusion mix
TYPES = ("block", "sunglasses", "mask", "hand", "hair", "polygon", "strokes", "coarse_dropout",
         "grid_dropout", "erasing")
#: what people must see first in a sweep (also without a test split)
CORE = ("val/acc", "val_occluded/acc", "val/ece", "val/macro_f1", "robustness/mean_auc")
WIDTH = 160


def full_metrics(test: bool, seed: int = 0) -> dict[str, float]:
    """Every key :func:`occlufer.evaluation.evaluate.evaluate` writes for the default config
    (7 classes, 10 robustness types, 7 occluders in the data); validate's test keys when
    ``test``. 335 keys without a test split, as the real reports/validate/metrics.json had."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def u() -> float:
        return float(rng.uniform(0.3, 0.9))

    m = {"excluded/n": 0.0, "val/occlusion_drop": u(), "robustness/n": 300.0,
         "robustness/mean_auc": u(), "robustness/mean_auc_ci_low": u(),
         "robustness/mean_auc_ci_high": u()}
    for g in ("val", "val_occluded", *(f"val_occluded/occluder/{t}" for t in TYPES[:7])):
        m.update({f"{g}/acc": u(), f"{g}/macro_f1": u(), f"{g}/n": 500.0,
                  f"{g}/acc_ci_low": u(), f"{g}/acc_ci_high": u()})
        m.update({f"{g}/{c}/{s}": u() for c in CLASSES
                  for s in ("precision", "recall", "f1", "support")})
    m.update({f"{g}/ece": u() / 10 for g in ("val", "val_occluded")})
    for t in TYPES:
        m.update({f"robustness/{t}/auc": u(), f"robustness/{t}/acc_at_gap": u(),
                  f"robustness/{t}/gap": u() / 5})
    return {**m, **as_test_metrics(m)} if test else m


def test_headline_without_a_test_split() -> None:
    m = full_metrics(test=False)
    assert len(m) == 335
    head, detail = split_metrics(m)
    assert list(head) == [*CORE, "val/acc_ci_low", "val/acc_ci_high", "val_occluded/acc_ci_low",
                          "val_occluded/acc_ci_high", *sorted(f"robustness/{t}/gap"
                                                              for t in TYPES)]
    assert len(head) == 19 and set(head) | set(detail) == set(m) and not set(head) & set(detail)
    assert {"val/angry/f1", "val_occluded/occluder/hand/acc", "robustness/block/auc",
            "robustness/block/acc_at_gap", "val/n", "val/occlusion_drop"} <= set(detail)
    assert list(detail) == sorted(detail)


def test_headline_with_a_test_split_quotes_the_test_gaps() -> None:
    m = full_metrics(test=True)
    keys = headline_keys(m)
    assert len(keys) == 28 and keys[:5] == list(CORE)
    assert keys[9:14] == ["test/acc", "test_occluded/acc", "test/ece", "test/macro_f1",
                          "test_robustness/mean_auc"]
    assert keys[18:] == sorted(f"test_robustness/{t}/gap" for t in TYPES)
    assert "robustness/block/gap" not in keys  # val gaps are detail when a test split exists
    assert headline_keys({"val/n": 3.0}) == []


def test_write_metrics_keeps_the_display_order(tmp_path: Path) -> None:
    m = full_metrics(test=True)
    head = write_metrics(tmp_path, m)
    text = (tmp_path / HEADLINE_FILE).read_text()
    assert list(json.loads(text)) == list(head) == headline_keys(m)  # not sorted: DVC's order
    detail = json.loads((tmp_path / DETAIL_FILE).read_text())
    assert {**detail, **json.loads(text)} == m


def test_summary_markdown_has_each_split_and_its_gaps() -> None:
    m = full_metrics(test=True)
    text = summary_markdown(m, 0.25)
    val, test = text.split("\n\n")
    assert val.startswith(f"**val**: accuracy **{m['val/acc']:.3f}** [")
    assert f"occluded {m['val_occluded/acc']:.3f}" in val
    assert f"ECE {m['val/ece']:.3f}" in val and "mean AUC" in val
    assert f"gap at 0.25 (points): block {100 * m['robustness/block/gap']:.1f}," in val
    assert test.startswith(f"**test**: accuracy **{m['test/acc']:.3f}**")
    assert f"hand {100 * m['test_robustness/hand/gap']:.1f}" in test
    assert "**test**" not in summary_markdown(full_metrics(test=False))


# ------------------------------------------------------------- dvc exp show --only-changed
def _check_table(text: str, head: dict[str, float], lrs: list[float]) -> list[str]:
    """The 160-column table: no line wider; the core columns shown whole, in order, with
    every experiment's values; the changed param shown. Returns the header's metric columns."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= WIDTH, text
    header = next(line for line in lines if "Experiment" in line).split()
    shown = header[header.index("Created") + 1:]
    assert shown[:len(CORE)] == list(CORE), text
    assert shown[-1] == "train.lr" and "…" in shown  # the rest folds into one column
    rows = [line for line in lines if "[" in line and "]" in line]  # the three experiments
    assert len(rows) == len(lrs), text
    for lr in lrs:
        row = next(r for r in rows if f" {lr:g} " in f"{r} ")
        for key in CORE:
            assert f"{head[key] * (1 - lr):.5g}" in row, (key, row)
    return shown


def test_dvc_exp_show_renders_a_sweep_readably_in_160_columns(monkeypatch) -> None:
    """DVC's own renderer (the code behind ``dvc exp show``) on a baseline and three
    experiments of the real headline; the real command is the slow test below."""
    import rich.console
    from dvc.commands.experiments.show import show_experiments
    from dvc.compare import TabularData
    from dvc.ui import ui

    head = split_metrics(full_metrics(test=True))[0]
    buf = io.StringIO()
    monkeypatch.setattr(ui, "_enabled", True)
    monkeypatch.setitem(ui.__dict__, "rich_console",
                        rich.console.Console(width=WIDTH, file=buf, color_system=None))
    cols = ["Experiment", "rev", "typ", "Created", "parent", "State", "Executor", *head,
            "train.lr", "train.epochs"]
    td = TabularData(cols, fill_value="-")
    runs = [("", "workspace", "baseline", "-", 0.03), ("", "main", "baseline", "Nov 28, 2026",
                                                       0.001),
            ("paled-doss", "ba22c71", "branch_commit", "11:57 AM", 0.03),
            ("wersh-pats", "1538850", "branch_commit", "11:57 AM", 0.02),
            ("urban-oast", "b235803", "branch_base", "11:56 AM", 0.01)]
    for name, rev, typ, created, lr in runs:
        td.append([name, rev, typ, created, "", "", "",
                   *(f"{v * (1 - lr):.5g}" for v in head.values()), f"{lr:g}", "10"])
    show_experiments(td, {"metrics": list(head), "params": ["train.lr", "train.epochs"],
                          "deps": []}, pager=False, only_changed=True)
    shown = _check_table(buf.getvalue(), head, [0.03, 0.02, 0.01])
    assert "train.epochs" not in shown  # unchanged: --only-changed drops it


def _git_dvc(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_real_dvc_exp_show_of_a_three_experiment_sweep(tmp_path: Path) -> None:
    """``dvc exp run`` ×3 in a temporary repository whose stage writes the real headline
    (values scaled by ``train.lr``), then ``dvc exp show --only-changed`` at 160 columns."""
    head = split_metrics(full_metrics(test=True))[0]
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "base.json").write_text(json.dumps(head))
    (repo / "params.yaml").write_text("train:\n  lr: 0.001\n  epochs: 10\n")
    (repo / "gen.py").write_text(
        "import json, os, yaml\n"
        "lr = yaml.safe_load(open('params.yaml'))['train']['lr']\n"
        "base = json.load(open('base.json'))\n"
        "os.makedirs('reports/validate', exist_ok=True)\n"
        "out = {k: v * (1 - lr) for k, v in base.items()}\n"
        "open('reports/validate/metrics.json', 'w').write(json.dumps(out, indent=2))\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  validate:\n    cmd: python gen.py\n    deps: [gen.py, base.json]\n"
        "    params: [train]\n    outs: [reports/validate]\n"
        "metrics: [reports/validate/metrics.json]\n")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS":
           str(WIDTH), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL":
           "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for key in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT"):
        env.pop(key, None)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        _git_dvc(cmd, repo, env)
    lrs = [0.01, 0.02, 0.03]
    for lr in lrs:
        _git_dvc(["dvc", "exp", "run", "-q", "-S", f"train.lr={lr}"], repo, env)
    table = _git_dvc(["dvc", "exp", "show", "--only-changed", "--no-pager"], repo, env)
    _check_table(table, head, lrs)
    csv = _git_dvc(["dvc", "exp", "show", "--only-changed", "--csv"], repo, env)
    columns = csv.splitlines()[0].split(",")
    assert columns[columns.index("Created") + 1:] == [*head, "train.lr"]  # the file's order
