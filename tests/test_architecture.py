"""The shape of the code (DESIGN.md §5, README "Layout"): imports run one way and never in a
cycle, the witnesses share no code with the message path they check, no module outside the
partial kinds asks which kind it holds, and every public name still imports."""

import ast
import importlib
from pathlib import Path

import pytest

import msgpass

PACKAGE = Path(__file__).resolve().parents[1] / "msgpass"

# The layers of the package, lowest first: a unit may import only units of a lower rank (its
# own files aside). Units of equal rank know nothing of each other.
RANKS = {
    "errors": 0, "numbers": 1, "validate": 2, "naming": 2,
    "partials": 3, "stats": 3,
    "layers": 4,
    "messages": 5, "witnesses": 5,
    "streaming": 6, "trace": 6,
    "engine": 7,
    "network": 8,
    "spec": 9, "graph": 9,
    "testing": 10, "verification": 10, "demos": 10, "pytorch": 10,
    "draw": 11, "scale": 11, "training": 11,
    "gallery": 12, "view": 12,
    "_moved": 13,
    "__init__": 14,            # the public API: everything but the command line
    "cli": 15,
    "__main__": 16,
}
KINDS = {"Shared", "Diagonal", "Dense", "Coupled"}
KIND_NAMES = {"shared", "diagonal", "dense", "coupled"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(p): p for p in FILES}


def type_checking_blocks(tree) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            skipped |= {id(n) for n in ast.walk(node)}
    return skipped


def imports_of(path: Path) -> set[str]:
    """The msgpass modules a file imports, anywhere in it (functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = type_checking_blocks(tree)
    here = module_name(path)
    package = here if is_package(path) else here.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("msgpass")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[:len(base) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("msgpass"):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
    return {name for name in found if name in MODULES and name != here}


def string_imports() -> set[str]:
    """The modules msgpass._moved imports by name (importlib), which an AST walk of its
    import statements does not see."""
    from msgpass._moved import MOVED, PACKAGES
    return {name for name in [*MOVED.values(), *PACKAGES.values()] if name in MODULES}


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}
GRAPH["msgpass._moved"] |= string_imports()


def unit(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_rank():
    assert {unit(name) for name in MODULES} == set(RANKS)


def test_imports_run_one_way():
    backwards = [f"{source} imports {target}" for source, targets in GRAPH.items()
                 for target in targets
                 if unit(source) != unit(target)
                 and RANKS[unit(target)] >= RANKS[unit(source)]]
    assert not backwards, backwards


def test_no_import_cycles():
    """Depth-first search over the file-level import graph; a cycle is named."""
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail(f"import cycle: {' → '.join(cycle)}")
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"
    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_the_arrow_test_catches_an_arrow_pointing_back(tmp_path, monkeypatch):
    """Test the tester: a layer that imports the network is an arrow pointing back."""
    planted = dict(GRAPH)
    planted["msgpass.layers.affine"] = GRAPH["msgpass.layers.affine"] | {"msgpass.network"}
    monkeypatch.setattr(__import__(__name__), "GRAPH", planted)
    with pytest.raises(AssertionError, match="msgpass.layers.affine imports msgpass.network"):
        test_imports_run_one_way()
    planted["msgpass.messages"] = GRAPH["msgpass.messages"] | {"msgpass.streaming"}
    with pytest.raises(pytest.fail.Exception, match="import cycle: .*msgpass.messages"):
        test_no_import_cycles()


MESSAGE_PATH = {"msgpass.messages", "msgpass.streaming", "msgpass.network", "msgpass.trace",
                "msgpass.verification", "msgpass.graph.backward", "msgpass.graph.layered"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if unit(n) == "witnesses"))
def test_witnesses_never_import_the_message_code(name):
    """The witnesses share no code with the message path they check (DESIGN.md §3): not
    even the partials, which they may read as data but never import."""
    reached = {t for t in GRAPH[name] if t in MESSAGE_PATH or unit(t) == "partials"}
    assert not reached


def test_layers_base_does_not_reach_the_message_code():
    assert not GRAPH["msgpass.layers.base"] & MESSAGE_PATH


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
                assert not (names | attrs) & ({"local_partials", "LocalPartials", "Outer",
                                                "Elementwise"} | KINDS), cls.name


def kind_questions(path: Path) -> list[str]:
    """Places where code asks which kind of partials it holds: ``.diagonal``, ``.coupled``,
    isinstance (or type()) against a kind's class however it is reached, ``.kind`` compared
    with a kind's name or a collection of them."""
    found = []

    def names(node) -> set[str]:
        return {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
                if isinstance(n, (ast.Name, ast.Attribute))}

    def constants(node) -> set:
        return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("diagonal", "coupled"):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance",
                                                                               "issubclass")
              and len(node.args) == 2 and names(node.args[1]) & KINDS):
            found.append(f"line {node.lineno}: isinstance against a kind")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            asks = any(isinstance(s, ast.Attribute) and s.attr == "kind" for s in sides) or any(
                isinstance(s, ast.Call) and getattr(s.func, "id", "") == "type" for s in sides)
            if asks and (set().union(*map(constants, sides)) & KIND_NAMES
                         or set().union(*map(names, sides)) & KINDS):
                found.append(f"line {node.lineno}: which kind, by name or class")
    return found


@pytest.mark.parametrize("path", [p for p in FILES if "partials" not in p.parts],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_outside_the_kinds_asks_which_kind_it_holds(path):
    assert not kind_questions(path)


def test_the_kind_question_finder_finds_them(tmp_path):
    """Test the tester: each way of asking is found."""
    planted = tmp_path / "planted.py"
    planted.write_text("if J.diagonal:\n    pass\nif isinstance(J, (Dense, Coupled)):\n    pass\n"
                       "if block.kind == 'coupled':\n    pass\n"
                       "if J.kind in ('shared', 'dense'):\n    pass\n"
                       "if isinstance(J, partials.Diagonal):\n    pass\n"
                       "if type(J) is Shared:\n    pass\n")
    assert len(kind_questions(planted)) == 6


@pytest.mark.parametrize("name", msgpass.__all__)
def test_every_public_name_imports_from_msgpass(name):
    assert getattr(msgpass, name) is not None
    exec(f"from msgpass import {name}", {})


OLD_PATHS = sorted(importlib.import_module("msgpass._moved").MOVED) + [
    "msgpass.verify", "msgpass.verify.compare", "msgpass.verify.witness",
    "msgpass.train", "msgpass.train.data", "msgpass.train.optim"]


@pytest.mark.parametrize("old", OLD_PATHS)
def test_module_paths_of_0_8_still_import(old):
    from msgpass._moved import new_name
    module = importlib.import_module(old)
    assert module is importlib.import_module(new_name(old))
    assert module.__spec__.name == new_name(old)          # the real module, under its name
    assert callable(msgpass.compare) and callable(msgpass.train)   # no public name rebound
    assert callable(msgpass.verify)


def test_no_package_attribute_hides_a_module_of_the_same_name():
    """``import a.b.c as m`` reads attributes: a function exported under a module's name
    would hide the module (it once did: msgpass.verification.compare, msgpass.cli.main)."""
    hidden = []
    for name in MODULES:
        parent, _, child = name.rpartition(".")
        if parent and child != "__main__":
            module = importlib.import_module(name)
            if getattr(importlib.import_module(parent), child, module) is not module:
                hidden.append(name)
    assert not hidden


def test_the_readme_layout_names_every_unit():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    missing = [u for u in RANKS if not u.startswith("_")
               and (f"{u}/" not in layout and f"{u}.py" not in layout)]
    assert not missing, f"README's Layout section does not name {missing}"
