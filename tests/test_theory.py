"""theory/: every claim has a test, every test names a real claim, and every example prints
what the text says it prints."""

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted((ROOT / "theory").glob("*.md"))
CLAIM = re.compile(r"\*\*Claim (C\d+\.\d+)\b")
MARK = re.compile(r'pytest\.mark\.claim\("([^"]+)"\)')
EXAMPLE = re.compile(r"```python\n(.*?)```\s*```text\n(.*?)```", re.S)


def claims_in_documents() -> dict[str, str]:
    found = {}
    for doc in DOCUMENTS:
        for label in CLAIM.findall(doc.read_text(encoding="utf-8")):
            assert label not in found, f"claim {label} is stated twice"
            found[label] = doc.name
    return found


def _claim_label(decorator: ast.expr) -> str | None:
    """The label of a ``@pytest.mark.claim("...")`` decorator, else None."""
    if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr == "claim"
            and ast.unparse(decorator.func.value) == "pytest.mark"):
        if len(decorator.args) == 1 and isinstance(decorator.args[0], ast.Constant):
            return str(decorator.args[0].value)
    return None


def claim_marks() -> list[tuple[str, str, str]]:
    """(file, function, label) for every claim mark that decorates a function, by parsing the
    test files: a label in a comment, a string or a helper does not count as a test."""
    found = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [(path.name, node.name, label) for label in
                          map(_claim_label, node.decorator_list) if label is not None]
    return found


def claims_in_tests() -> set[str]:
    return {label for _, function, label in claim_marks() if function.startswith("test")}


def test_claim_marks_sit_on_test_functions():
    """A mark on a helper would never run, so it must not count as checking a claim."""
    misplaced = [(f, fn, label) for f, fn, label in claim_marks() if not fn.startswith("test")]
    assert not misplaced, f"claim marks on functions pytest does not collect: {misplaced}"
    in_text = sum(len(MARK.findall(path.read_text(encoding="utf-8")))
                  for path in (ROOT / "tests").glob("test_*.py") if path.name != "test_theory.py")
    assert in_text == len(claim_marks()), "a claim mark outside a decorator (comment, string?)"


def test_the_documents_exist():
    names = {doc.name for doc in DOCUMENTS}
    assert {"README.md", "01-chain-rule.md", "02-messages.md", "03-path-sums.md",
            "04-modules.md"} <= names


def test_every_claim_has_a_test():
    missing = sorted(set(claims_in_documents()) - claims_in_tests())
    assert not missing, f"claims without a test: {missing}"


def test_every_claim_a_test_names_exists():
    unknown = sorted(claims_in_tests() - set(claims_in_documents()))
    assert not unknown, f"tests name claims that no document states: {unknown}"


@pytest.mark.parametrize("doc", [d for d in DOCUMENTS if EXAMPLE.search(d.read_text("utf-8"))],
                         ids=lambda d: d.name)
def test_examples_print_what_the_text_says(doc):
    for code, shown in EXAMPLE.findall(doc.read_text(encoding="utf-8")):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(doc), "exec"), {})
        assert out.getvalue().strip() == shown.strip(), doc.name
