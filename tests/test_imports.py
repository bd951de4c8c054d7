"""Imports run one way.

Bottom up: leaf modules (``errors``, ``labels``, ``hashing``, ``rng``, ``viz``, ``devices``,
``jsonio``, ``preprocess``, ...); ``data``, ``models``, ``occlusion``; ``config`` (the schema: it
checks names against their registries); ``tracking`` (MLflow plumbing); ``zoo``; ``inference``
(which uses ``tracking`` and the ``zoo``); ``training``; ``evaluation``; and on top ``stages``
and ``cli``. Three checks:

- no cycle between packages (the subpackages of occlufer and its top-level modules), over
  every import of the source, module-level and in functions (``if TYPE_CHECKING:`` blocks
  aside): a cycle such as ``tracking -> inference -> tracking`` is one even when one side
  imports lazily;
- loading a model to serve it (``occlufer.inference`` and its modules) pulls in neither
  ``occlufer.training`` nor ``occlufer.occlusion``, directly or transitively, lazily or not;
- no library module imports ``occlufer.stages`` (stages are the top layer).

The static graph is parsed with :mod:`ast`; each package and module is also imported in a
fresh interpreter, where ``sys.modules`` must agree.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import occlufer

SRC = Path(occlufer.__file__).resolve().parent
ROOT_PACKAGE = "occlufer"
#: the packages that model serving must not load
NOT_FOR_INFERENCE = ("occlufer.training", "occlufer.occlusion")
#: application layers: only they may import the stages
TOP = ("occlufer.stages", "occlufer.cli")

#: modules that are a node of their own in the package graph rather than part of their
#: package's: commands that sit in a package's folder but use it from above. Nothing else in
#: the package may import them (checked), so they cannot hide a cycle through it.
OWN_NODES = {
    "occlufer.zoo.publish": "`occlufer zoo publish`: reads validate's report "
                            "(occlufer.evaluation.headline) and the run's MLflow data",
    "occlufer.occlusion.preview": "main() is the `python -m occlufer.occlusion.preview` script: "
                                  "it composes conf/ (occlufer.config)",
}
#: deprecated re-exports that still import upward until their last callers move, as
#: (importer, imported): what is left to do. An entry whose import is gone fails the test, so
#: that it is removed here too.
SHIMS: dict[tuple[str, str], str] = {}


#: a registry entry ``"occlufer.module:Class"`` (e.g. ``occlufer.models.MODELS``): the module
#: is imported by name when the entry is used
_ENTRY = re.compile(r"(occlufer(?:\.\w+)+):\w+")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of occlufer (the package itself for `from occlufer import __version__`)
    line: int
    lazy: bool  # inside a function

    def where(self) -> str:
        path = _modules()[self.importer].relative_to(SRC.parent)
        return f"{path}:{self.line}{' (in a function)' if self.lazy else ''}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _targets(node: ast.Import | ast.ImportFrom, importer: str) -> list[str]:
    """The occlufer modules an import statement loads (``from occlufer.x import y``: ``y`` when
    it is a submodule, else ``occlufer.x``)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == ROOT_PACKAGE]
    base = node.module or ""
    if node.level:  # relative: from the importer's package
        package = importer if modules[importer].name == "__init__.py" else \
            importer.rpartition(".")[0]
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
    if base.split(".")[0] != ROOT_PACKAGE:
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


@cache
def _imports() -> tuple[Import, ...]:
    """Every import of an occlufer module in the source, module-level and in functions."""
    found: list[Import] = []

    def visit(node: ast.AST, importer: str, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other, importer, lazy)
                continue
            visit_one(child, importer, lazy)

    def visit_one(node: ast.AST, importer: str, lazy: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(Import(importer, t, node.lineno, lazy) for t in _targets(node, importer))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and (entry := _ENTRY.fullmatch(node.value)) and entry[1] in _modules()):
            found.append(Import(importer, entry[1], node.lineno, True))  # imported by name
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        visit(node, importer, inner)

    for name, path in _modules().items():
        visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), name, False)
    return tuple(dict.fromkeys(found))


def _node(module: str) -> str:
    """A module's node in the package graph: ``occlufer.<package>`` or a top-level module."""
    for own in OWN_NODES:
        if module == own or module.startswith(own + "."):
            return own
    return ".".join(module.split(".")[:2])


def _package_graph() -> dict[str, dict[str, list[Import]]]:
    graph: dict[str, dict[str, list[Import]]] = {}
    for imp in _imports():
        a, b = _node(imp.importer), _node(imp.target)
        if a != b and b != ROOT_PACKAGE and (imp.importer, imp.target) not in SHIMS:
            graph.setdefault(a, {}).setdefault(b, []).append(imp)
    return graph


def _cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _closure(start: Iterable[str]) -> dict[str, Import | None]:
    """Every occlufer module that importing ``start`` may load, lazily or not (a submodule
    loads its parent packages too), each with the import that first reaches it."""
    by_importer: dict[str, list[Import]] = {}
    for imp in _imports():
        by_importer.setdefault(imp.importer, []).append(imp)
    seen: dict[str, Import | None] = {}
    queue = deque((m, None) for m in start)
    while queue:
        module, via = queue.popleft()
        if module in seen:
            continue
        seen[module] = via
        parts = module.split(".")
        for i in range(1, len(parts)):
            queue.append((".".join(parts[:i]), via))
        queue.extend((imp.target, imp) for imp in by_importer.get(module, []))
    return seen


def _chain(seen: dict[str, Import | None], module: str) -> str:
    steps = []
    while (via := seen.get(module)) is not None and len(steps) < 50:
        steps.append(f"{via.importer} -> {via.target} ({via.where()})")
        module = via.importer
    return "; ".join(reversed(steps))


def _in(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


# ------------------------------------------------------------------------------ static checks
def _shortest_cycle(graph: dict[str, dict[str, list[Import]]], nodes: list[str]) -> list[str]:
    best: list[str] = []
    for start in nodes:
        parent = {start: ""}
        queue = deque([start])
        while queue:
            v = queue.popleft()
            if start in graph.get(v, {}) and v in parent:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                cycle = [*reversed(path), start]
                best = cycle if not best or len(cycle) < len(best) else best
                break
            for w in graph.get(v, {}):
                if w in nodes and w not in parent:
                    parent[w] = v
                    queue.append(w)
    return best


def test_the_package_graph_has_no_cycle() -> None:
    graph = _package_graph()
    lines = []
    for component in _cycles(graph):
        cycle = _shortest_cycle(graph, component)
        lines.append(f"cycle {' -> '.join(cycle)} (all of {', '.join(component)} are in one):")
        lines += [f"  {imp.importer} -> {imp.target} ({imp.where()})"
                  for a, b in zip(cycle, cycle[1:], strict=False) for imp in graph[a][b]]
    assert not lines, "\n".join(lines)


def test_own_nodes_and_shims_are_current() -> None:
    modules, imports = _modules(), _imports()
    for own in OWN_NODES:
        assert own in modules, f"{own} is gone: remove it from OWN_NODES"
        package = own.rpartition(".")[0]
        users = [f"{i.importer} ({i.where()})" for i in imports
                 if _in(i.target, [own]) and _in(i.importer, [package])
                 and not _in(i.importer, [own])]
        assert not users, (f"{own} is imported inside {package}, so it is no node of its own: "
                           f"{users}")
    pairs = {(i.importer, i.target) for i in imports}
    stale = [f"{a} -> {b}" for a, b in SHIMS if (a, b) not in pairs]
    assert not stale, f"these imports are gone: remove them from SHIMS: {stale}"


def test_inference_loads_neither_training_nor_occlusion() -> None:
    seen = _closure(m for m in _modules() if _in(m, ["occlufer.inference"]))
    bad = sorted(m for m in seen if _in(m, NOT_FOR_INFERENCE))
    assert not bad, "occlufer.inference reaches " + "\n".join(
        f"{m}: {_chain(seen, m)}" for m in bad)


def test_only_the_top_layer_imports_the_stages() -> None:
    bad = [f"{i.importer} -> {i.target} ({i.where()})" for i in _imports()
           if _in(i.target, ["occlufer.stages"]) and not _in(i.importer, TOP)]
    assert not bad, "library modules import the stages (the top layer):\n" + "\n".join(bad)


# ------------------------------------------------------------------- in a fresh interpreter
_CHILD = ("import importlib, json, sys\n"
          "importlib.import_module(sys.argv[1])\n"
          "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'occlufer')))\n")


def _fresh_import(module: str, cwd: Path) -> tuple[str, int, str, str]:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", _CHILD, module], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return module, done.returncode, done.stdout, done.stderr


def test_fresh_interpreters_agree(tmp_path: Path) -> None:
    """Each package and top-level module (and each module of ``occlufer.inference``) imported
    alone: the serving side loads neither training nor occlusion, no library module loads the
    stages, and nothing loads a module the static graph does not reach."""
    modules = _modules()
    chosen = sorted({_node(m) for m in modules if _node(m) in modules}
                    | {m for m in modules if _in(m, ["occlufer.inference"])})
    chosen = [m for m in chosen if m != ROOT_PACKAGE and not _in(m, TOP)]
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        results = list(pool.map(lambda m: _fresh_import(m, tmp_path), chosen))
    problems = []
    for module, rc, out, err in results:
        if rc != 0:
            problems.append(f"{module}: import failed: {err.strip().splitlines()[-1:]}")
            continue
        loaded = json.loads(out.strip().splitlines()[-1])
        if _in(module, ["occlufer.inference"]):
            problems += [f"{module} loads {m}" for m in loaded if _in(m, NOT_FOR_INFERENCE)]
        problems += [f"{module} loads {m}" for m in loaded if _in(m, ["occlufer.stages"])]
        reach = _closure([module])
        problems += [f"{module} loads {m}, which the static import graph misses"
                     for m in loaded if m not in reach]
    assert not problems, "\n".join(problems)
