"""``dvc plots show`` / ``dvc plots diff`` render offline: ``dvc.yaml`` lists only images.

DVC draws CSV/JSON plots with Vega loaded from a CDN (blank without a network) and embeds
image plots as ``<img>``; the stages render the PNGs (:mod:`occlufer.evaluation.plots`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc_render.image import ImageRenderer
from PIL import Image, ImageDraw

from tests.conftest import ROOT
from tests.offline_page import check_offline_page

BIN = Path(sys.executable).parent


def _dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def _plots() -> list[str]:
    return _dvc_yaml()["plots"]


def _outs(stage: dict) -> list[str]:
    return [next(iter(o)) if isinstance(o, dict) else str(o) for o in stage.get("outs", [])]


def test_dvc_yaml_plots_are_images_the_stages_write() -> None:
    plots = _plots()
    assert plots, "dvc.yaml lists no plots"
    vega = [p for p in plots if not isinstance(p, str)]
    assert not vega, f"Vega plot definitions (blank offline): {vega}"
    assert all(Path(p).suffix in ImageRenderer.EXTENSIONS for p in plots), plots
    assert len(set(plots)) == len(plots)
    stages = _dvc_yaml()["stages"]
    assert not [n for n, s in stages.items() if s.get("plots")], "stage plots would be Vega"
    outs = [Path(o) for s in stages.values() for o in _outs(s)]
    for plot in plots:  # a stage output: versioned, so `dvc plots diff` finds old revisions
        assert any(Path(plot) == o or o in Path(plot).parents for o in outs), plot
    for name in ("training", "robustness", "reliability"):
        assert f"reports/validate/{name}.png" in plots


def _image(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("L", (80, 50), 255)
    ImageDraw.Draw(img).line([(0, 49), (79, shade % 50)], fill=0, width=2)
    img.save(path)


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for key in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_ROOT"):
        env.pop(key, None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_real_dvc_plots_show_and_diff_need_no_network(tmp_path: Path) -> None:
    """The repository's plots section, with stand-in PNGs, through the real ``dvc`` CLI."""
    plots = _plots()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}), encoding="utf-8")
    for i, plot in enumerate(plots):
        _image(repo / plot, 7 * i)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "plots"]):
        _run(cmd, repo)
    _image(repo / plots[0], 3)  # a changed plot in the workspace

    _run(["dvc", "plots", "show", "-o", "show"], repo)
    page = check_offline_page(repo / "show" / "index.html")
    assert page.ok, page.problems
    assert (page.images, page.charts) == (len(plots), 0)

    _run(["dvc", "plots", "diff", "HEAD", "-o", "diff"], repo)
    page = check_offline_page(repo / "diff" / "index.html")
    assert page.ok, page.problems
    assert page.images >= len(plots) + 1 and page.charts == 0  # HEAD and workspace

    # the control: a CSV plot is a Vega chart that loads its library from the CDN
    (repo / "history.csv").write_text("epoch,acc\n1,0.2\n2,0.4\n", encoding="utf-8")
    (repo / "dvc.yaml").write_text(yaml.safe_dump(
        {"plots": [*plots, {"acc": {"x": "epoch", "y": {"history.csv": "acc"}}}]}),
        encoding="utf-8")
    _run(["dvc", "plots", "show", "-o", "vega"], repo)
    page = check_offline_page(repo / "vega" / "index.html")
    assert not page.ok and page.charts == 1
    assert any("cdn" in p for p in page.problems), page.problems
