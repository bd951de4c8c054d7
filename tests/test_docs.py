"""The Markdown is a guide that holds together: internal links and #anchors resolve, every
``occlufer`` command and every ``conf/`` group is in the README."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from occlufer.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *ROOT.glob("benchmarks/*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in md.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not re.match(r"#{1,6} ", line):
            continue
        base = slug(line.lstrip("#"))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(md: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)  # code blocks are not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_slug_follows_github() -> None:
    assert slug(" Works before you train: the model zoo") == "works-before-you-train-the-model-zoo"
    assert slug("Validation (S500) and `occlufer evaluate`") == (
        "validation-s500-and-occlufer-evaluate")
    assert slug("Ablation: CutMix, EMA and a held-out occluder") == (
        "ablation-cutmix-ema-and-a-held-out-occluder")


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_internal_links_and_anchors_resolve(md: Path) -> None:
    dead = []
    for target in links(md):
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            dead.append(f"{target} (no file {dest.relative_to(ROOT)})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            dead.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not dead, f"{md.name}: dead links: {dead}"


def _commands(parser: argparse.ArgumentParser, prefix: str = "occlufer") -> list[str]:
    out = []
    for action in parser._actions:  # noqa: SLF001 - argparse keeps subparsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                out.append(f"{prefix} {name}")
                out += _commands(sub, f"{prefix} {name}")
    return out


def test_every_command_and_conf_group_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = _commands(build_parser())
    assert "occlufer predict" in commands and "occlufer zoo list" in commands
    missing = [c for c in commands if c not in readme]
    assert not missing, f"README.md never mentions {missing}"
    groups = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir())
    assert "train" in groups
    missing = [g for g in groups if f"conf/{g}" not in readme]
    assert not missing, f"README.md never mentions the config groups {missing}"


def test_the_checker_finds_a_dead_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md = tmp_path / "a.md"
    md.write_text("# Title\n[ok](#title) [bad](#nowhere) [gone](b.md)\n```\n[code](x.md)\n```\n")
    assert links(md) == ["#title", "#nowhere", "b.md"]
    assert anchors(md) == {"title"}
