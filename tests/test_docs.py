"""The docs hold together: relative links and #anchors resolve, the commands the docs show in
shell blocks run as printed (as far as parsing goes), and docs/reference.md is current."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from occlufer.cli import build_parser
from occlufer.config import compose, parse_params

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
               *(ROOT / "docs").glob("*.md")])
# pages whose shell blocks are commands to run today (history.md records commands as they were)
GUIDES = [p for p in DOCS if p.name not in ("history.md", "CHANGELOG.md")]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
SHELL = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.S | re.M)
SEPARATORS = {"&&", "||", ";", "|", "&"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# -- links -------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, link targets and markup dropped, punctuation
    other than - and _ removed, spaces to -."""
    text = re.sub(r"`|\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in md.read_text(encoding="utf-8").splitlines():
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
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)  # code blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link either
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def dead_links(md: Path) -> list[str]:
    dead = []
    for target in links(md):
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if not dest.exists():
            dead.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            dead.append(f"{target} (no heading #{anchor} in {dest.name})")
    return dead


def test_slug_follows_github() -> None:
    assert slug(" Works before you train: the model zoo") == "works-before-you-train-the-model-zoo"
    assert slug("Validation (S500) and `occlufer evaluate`") == (
        "validation-s500-and-occlufer-evaluate")
    assert slug("### `train.augment`".lstrip("#")) == "trainaugment"
    assert slug("`fer2013_gpu` on one GPU") == "fer2013_gpu-on-one-gpu"


@pytest.mark.parametrize("md", DOCS, ids=rel)
def test_relative_links_and_anchors_resolve(md: Path) -> None:
    dead = dead_links(md)
    assert not dead, f"{rel(md)}: dead links: {dead}"


def test_the_link_checker_finds_dead_links(tmp_path: Path) -> None:
    md = tmp_path / "a.md"
    md.write_text("# Title\n[ok](#title) [bad](#nowhere) [gone](b.md) `[code](c.md)`\n"
                  "```\n[code](x.md)\n```\n")
    assert links(md) == ["#title", "#nowhere", "b.md"]
    assert dead_links(md) == ["#nowhere (no heading #nowhere in a.md)",
                              f"b.md (no file {tmp_path / 'b.md'})"]


# -- commands ----------------------------------------------------------------------------------

def shell_commands(text: str) -> list[list[str]]:
    """Each simple command of a shell snippet, as the shell splits it: comments dropped,
    continuation lines joined, split at && || ; | &, leading VAR=value assignments dropped."""
    commands = []
    for line in complete_lines(text):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        tokens = iter([*lexer, ";"])
        for token in tokens:
            if token in SEPARATORS:
                while current and re.match(r"^[A-Z_][A-Z0-9_]*=", current[0]):
                    current.pop(0)
                if current:
                    commands.append(current)
                current = []
            elif token in ("<", ">", ">>", "2>"):
                next(tokens, None)  # a redirection and its file
            else:
                current.append(token)
    return commands


def complete_lines(block: str) -> list[str]:
    """A shell block's commands, one string each: continuation lines and lines inside an open
    quote joined to the line they continue, as the shell reads them."""
    out, pending = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if pending.strip():
            out.append(pending)
        pending = ""
    return out + ([pending] if pending else [])


def snippets(md: Path) -> list[str]:
    """The commands of md's shell blocks."""
    return [c for block in SHELL.findall(md.read_text(encoding="utf-8"))
            for c in complete_lines(block)]


def conf_commands() -> list[str]:
    """The commands the conf/ files show in their comments (``#   dvc exp run ...``)."""
    return [m.group(1) for p in sorted((ROOT / "conf").rglob("*.yaml"))
            for m in re.finditer(r"^#\s+((?:dvc exp run|occlufer) .*)$",
                                 p.read_text(encoding="utf-8"), re.M)]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {t for line in re.findall(r"^([\w .-]+):(?!=)", text, re.M) for t in line.split()}


def check_command(argv: list[str]) -> str | None:
    """Why ``argv`` would not run as printed, or None; commands of other tools pass."""
    if argv[0] == "occlufer":
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            return f"occlufer's parser rejects it (exit {exc.code})"
    elif argv[:3] == ["dvc", "exp", "run"]:
        from dvc.utils.hydra import get_hydra_sweeps

        overrides = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-S", "--set-param")]
        try:  # what `dvc exp run` does with -S: parse, expand sweeps, compose, then validate
            for sweep in get_hydra_sweeps({"params.yaml": overrides}):
                parse_params(compose(sweep["params.yaml"], ROOT / "conf"))
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    elif argv[0] == "make":
        missing = [t for t in argv[1:] if "=" not in t and t not in make_targets()]
        if missing:
            return f"no Makefile target {missing}"
    return None


def shown_commands() -> list[tuple[str, str]]:
    out = [(rel(md), line) for md in GUIDES for line in snippets(md)]
    return out + [("conf/", line) for line in conf_commands()]


@pytest.mark.parametrize("where, line", shown_commands(),
                         ids=[f"{w}:{i}" for i, (w, _) in enumerate(shown_commands())])
def test_shown_commands_parse_as_printed(where: str, line: str) -> None:
    for argv in shell_commands(line):
        problem = check_command(argv)
        assert problem is None, f"{where}: `{line}`: {problem}"


def test_the_readme_shows_the_main_commands() -> None:
    lines = [line for md in [ROOT / "README.md"] for line in snippets(md)]
    first = {argv[0] + " " + argv[1] for line in lines for argv in shell_commands(line)
             if len(argv) > 1}
    assert {"make repro", "make test", "occlufer predict", "dvc exp"} <= first


def test_the_command_checker_catches_what_the_shell_would_not_run() -> None:
    assert shell_commands("A=1 occlufer zoo list && mlflow ui  # x\nmake test") == [
        ["occlufer", "zoo", "list"], ["mlflow", "ui"], ["make", "test"]]
    assert check_command(["occlufer", "predict"]) is not None  # PATH is required
    assert check_command(["occlufer", "zoo", "show", "fer2013", "--json"]) is None
    assert check_command(["make", "no-such-target"]) is not None
    assert check_command(["dvc", "exp", "run", "-S", "occlusion.ratio=0.1,0.4"]) is None
    assert check_command(["dvc", "exp", "run", "-S", "train.nosuchkey=1"]) is not None
    unquoted = shell_commands(r"dvc exp run -S 'acquire.group_regex=^(S\d+)_'")[0]
    quoted = shell_commands(r"""dvc exp run -S "acquire.group_regex='^(S\d+)_'" """)[0]
    assert "LexerNoViableAltException" in (check_command(unquoted) or "")
    assert check_command(quoted) is None


# -- the generated reference -------------------------------------------------------------------

def test_reference_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs/gen_reference.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.render()
    assert "| `train.epochs` |" in text and "### `occlufer predict`" in text
    assert (ROOT / "docs/reference.md").read_text(encoding="utf-8") == text, (
        "docs/reference.md is out of date: run python docs/gen_reference.py")


def test_the_readme_stays_a_guide() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move reference material to docs/"
