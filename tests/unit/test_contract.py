"""The contract between `load` and `hollow`: one NodeFailure (played with numbers, written
in scenarios with expressions), dependencies that point one way, and no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import msgspec
import pytest

import pykubemark
from pykubemark.contract import NodeFailure, Num
from pykubemark.errors import UserError
from pykubemark.load.scenario import parse_scenario

SRC = Path(pykubemark.__file__).parent


def test_a_played_node_failure_takes_numbers_only() -> None:
    with pytest.raises(msgspec.ValidationError, match="Expected `float`"):
        msgspec.convert({"action": "stop", "fraction": "share"}, NodeFailure[float])
    with pytest.raises(msgspec.ValidationError, match="flap needs a period"):
        msgspec.convert({"action": "flap", "fraction": 0.1}, NodeFailure[float])


def test_a_scenario_node_failure_is_checked_once_its_numbers_are_known() -> None:
    failure = msgspec.convert({"action": "flap", "fraction": "share"}, NodeFailure[Num])
    assert failure.fraction == "share"  # no period yet: checked once evaluated
    text = "name: s\nphases:\n  - name: p\n    node_failures:\n      - {action: slow, nodes: [a]}\n"
    with pytest.raises(UserError, match=r"line 5.*node_failures\[0\].*slow needs a delay"):
        parse_scenario(text, "scenario s")


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, module_level: bool) -> set[str]:
    """The pykubemark modules ``path`` imports; with ``module_level``, those imported when
    it is (not in functions, not under TYPE_CHECKING)."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                found.update(f"{base}.{a.name}" for a in node.names)
                found.add(base)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif module_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.AST)])

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name.startswith("pykubemark")}


MODULES = {_module(p): p for p in SRC.rglob("*.py")}


def _known(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def test_load_and_measure_never_import_hollow_nor_hollow_load() -> None:
    forbidden = {"pykubemark.load": "pykubemark.hollow", "pykubemark.measure": "pykubemark.hollow",
                 "pykubemark.hollow": "pykubemark.load"}
    wrong = [f"{name} imports {imported}"
             for name, path in MODULES.items() for imported in _imports(path, module_level=False)
             for side, other in forbidden.items()
             if (name == side or name.startswith(side + "."))
             and (imported == other or imported.startswith(other + "."))]
    assert wrong == []


def _loaded(name: str, imported: str) -> set[str]:
    """What importing ``imported`` from ``name`` runs: the module and the packages it is
    in, less the packages ``name`` is in (which Python runs first, whatever it imports)."""
    parts = _known(imported).split(".")
    chain = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in chain if m in MODULES and m != name and not name.startswith(m + ".")}


def test_no_import_circle() -> None:
    graph = {name: set().union(*(_loaded(name, i) for i in _imports(path, module_level=True)))
             for name, path in MODULES.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    circles = sorted(f"{a} -> {b} -> ... -> {a}" for a in graph for b in graph[a]
                     if reaches(b, a))
    assert circles == []
