"""The package layout: one package per pipeline stage, dependencies pointing down the pipeline.

Every ``import`` in ``earpiece/`` is read with :mod:`ast` (function-level and ``TYPE_CHECKING``
imports included: a lazy import is still a dependency) and checked against :data:`RANKS`: a
module may import modules of its own rank or below, never above. No two files may import each
other, directly or round a longer loop, and no module passes 600 lines.

A hand-written walk rather than import-linter: the whole check is the rank table below plus a
strongly-connected-components pass, and it runs with the tests without another tool.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "earpiece"

#: Pipeline order, lowest first. A module's rank is that of its longest listed prefix.
RANKS: dict[str, int] = {
    # shared base: errors, event types, the in-process bus, secrets, logging, check results
    "earpiece": 0,
    "earpiece.errors": 0,
    "earpiece.events": 0,
    "earpiece.bus": 0,
    "earpiece.secret": 0,
    "earpiece.logs": 0,
    "earpiece.checks": 0,
    # the call pipeline
    "earpiece.agi": 1,
    "earpiece.freeswitch": 1,
    "earpiece.media": 2,
    "earpiece.asr": 3,
    "earpiece.cpa": 4,  # greeting words use the recogniser
    "earpiece.emotion": 5,
    "earpiece.strategy": 6,
    "earpiece.delivery": 7,
    # the whole configuration file: every stage's settings
    "earpiece.config": 8,
    "earpiece.crm": 9,
    "earpiece.web": 10,
    # tools on top of the stages
    "earpiece.sim": 11,
    "earpiece.testing": 12,
    "earpiece.analyze": 12,
    "earpiece.app": 12,
    "earpiece.demo": 12,
    "earpiece.doctor": 12,
    # benchmarks measure the whole service too (bench soak runs earpiece.app.Service)
    "earpiece.bench": 13,
    "earpiece.cli": 14,
}

MAX_LINES = 600
#: Modules allowed past MAX_LINES, each saying why in its docstring.
LONG_ALLOWED = {"earpiece.agi.ari_models"}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _rank(module: str) -> int:
    name = module
    while name:
        if name in RANKS:
            return RANKS[name]
        name = name.rpartition(".")[0]
    raise KeyError(module)


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported earpiece module, line) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "earpiece":
                    yield _known(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "earpiece":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in MODULES else _known(base)), node.lineno


def _known(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _graph() -> dict[str, set[str]]:
    return {m: {dep for dep, _ in _imports(m, p) if dep != m} for m, p in MODULES.items()}


def test_every_module_has_a_rank() -> None:
    unranked = []
    for m in MODULES:
        try:
            _rank(m)
        except KeyError:
            unranked.append(m)
    assert not unranked, f"add these to RANKS in tests/test_layout.py: {unranked}"


def test_imports_point_down_the_pipeline() -> None:
    wrong = []
    for module, path in MODULES.items():
        for dep, line in _imports(module, path):
            if _rank(dep) > _rank(module):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module} "
                             f"(rank {_rank(module)}) imports {dep} (rank {_rank(dep)})")
    assert not wrong, "imports against the pipeline direction:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif child not in graph:
                continue
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def test_cycle_finder_finds_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_files() -> None:
    graph = _graph()
    # a package's __init__ re-exporting its own modules is not a loop between files
    for module in graph:
        if MODULES[module].name == "__init__.py":
            graph[module] = {d for d in graph[module] if not d.startswith(module + ".")}
    assert _cycles(graph) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    if module in LONG_ALLOWED:
        return
    assert lines <= MAX_LINES, f"{module}: {lines} lines (split it by concern)"


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items()
                                           if p.name == "__init__.py" and m != "earpiece"))
def test_stage_package_says_what_it_holds(package: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8")))
    assert doc, f"{package}/__init__.py needs a docstring saying what it holds"
