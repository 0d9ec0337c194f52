"""The witnesses share no code with the message path they check (DESIGN.md §3)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "msgpass"
MESSAGE_PATH = {"messages", "partials", "network", "trace", "verify", "backward"}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {part for name in found for part in name.split(".")}


@pytest.mark.parametrize("path", sorted((PACKAGE / "witnesses").glob("*.py")), ids=lambda p: p.name)
def test_witnesses_never_import_the_message_code(path):
    assert not imported_modules(path) & MESSAGE_PATH


def test_layers_base_does_not_reach_the_message_code():
    assert not imported_modules(PACKAGE / "layers" / "base.py") & (MESSAGE_PATH - {"partials"})


@pytest.mark.parametrize("path", sorted((PACKAGE / "layers").glob("*.py")), ids=lambda p: p.name)
def test_classic_backward_never_reads_local_partials(path):
    """Each layer's backward is written from its saved forward values, the textbook way."""
    for cls in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "backward":
                names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
                attrs = {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute)}
                assert not (names | attrs) & {"local_partials", "Shared", "Diagonal", "Dense",
                                              "LocalPartials", "Outer", "Elementwise"}, cls.name
