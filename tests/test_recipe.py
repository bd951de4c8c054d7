"""Run names and descriptions (issue #16): the DVC experiment's name under ``dvc exp run``,
``<recipe>-<short commit>`` under ``dvc repro``; the recipe found from params alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest

from occlufer import tracking
from occlufer.config import compose, parse_params
from occlufer.recipe import recipe_name
from tests.conftest import CONF

#: the smoke recipe's own settings (conf/experiment/smoke.yaml), over the unit-test scale
SMOKE = ("acquire.n_per_class=100", "acquire.n_subjects=20", "train.epochs=8",
         "train.batch_size=32")


def test_recipe_name_from_params(make_params) -> None:
    assert recipe_name(make_params(*SMOKE).to_dict(), CONF) == "smoke"
    # a sweep changing one of its four settings is still the smoke recipe; two is too many
    assert recipe_name(make_params(*SMOKE, "train.epochs=3").to_dict(), CONF) == "smoke"
    assert recipe_name(make_params(*SMOKE, "train.epochs=3", "train.batch_size=8").to_dict(),
                       CONF) == "default"
    assert recipe_name(make_params().to_dict(), CONF) == "default"  # TINY overrides all four
    fer = parse_params(compose(["experiment=fer2013_cpu", "train.lr=0.01"], CONF)).to_dict()
    assert recipe_name(fer, CONF) == "fer2013_cpu"  # not fer2013_gpu, which shares much
    assert recipe_name({**fer, "experiment": "mine"}, CONF) == "mine"  # recorded: it wins
    assert recipe_name(fer, CONF.parent / "nowhere") == "default"
    # a recipe built on another (fer2013_best: fer2013_cpu for longer) is told apart from it
    best = parse_params(compose(["experiment=fer2013_best"], CONF)).to_dict()
    assert recipe_name(best, CONF) == "fer2013_best"
    cpu = parse_params(compose(["experiment=fer2013_cpu"], CONF)).to_dict()
    assert recipe_name(cpu, CONF) == "fer2013_cpu"
    # its two own settings alone, on the default config, are not the recipe
    plain = make_params("train.epochs=28", "validate.robustness_max_faces=1000").to_dict()
    assert recipe_name(plain, CONF) == "default"


def _run(run_id: str):
    return mlflow.MlflowClient().get_run(run_id)


def test_dvc_exp_run_names_the_run_after_the_experiment(make_params, tracking_store,
                                                        monkeypatch) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", "lusty-gram")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123456789abcdef0123456789abcdef01234567")
    with tracking.start_run("names", make_params(*SMOKE).to_dict()) as run:
        run_id = run.info.run_id
    got = _run(run_id)
    assert got.info.run_name == "lusty-gram" and got.data.tags["dvc.exp_name"] == "lusty-gram"
    note = got.data.tags[tracking.NOTE_TAG]
    assert note.startswith("Recipe `smoke` (conf/experiment/smoke.yaml) · DVC experiment "
                           "`lusty-gram` · baseline `0123456`")
    assert "the validate stage adds the headline result" in note


def test_dvc_repro_names_the_run_recipe_and_commit(make_params, tracking_store, tmp_path: Path,
                                                   monkeypatch) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    repo = tmp_path / "repo"
    shutil.copytree(CONF, repo / "conf")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                         text=True).stdout.strip()
    monkeypatch.chdir(repo)
    names = []
    for overrides in (SMOKE, ()):
        with tracking.start_run("names", make_params(*overrides).to_dict()) as run:
            names.append(_run(run.info.run_id).info.run_name)
        note = _run(run.info.run_id).data.tags[tracking.NOTE_TAG]
        assert f"commit `{sha[:7]}`" in note and "DVC experiment" not in note
    assert names == [f"smoke-{sha[:7]}", f"default-{sha[:7]}"]
    # an explicit name still wins; validate's description replaces the first one
    with tracking.start_run("names", make_params().to_dict(), run_name="mine") as run:
        tracking.set_description(tracking.describe(make_params().to_dict(), "**val**: 0.5"))
    got = _run(run.info.run_id)
    assert got.info.run_name == "mine"
    assert "**val**: 0.5" in got.data.tags[tracking.NOTE_TAG]
    assert "adds the headline" not in got.data.tags[tracking.NOTE_TAG]
