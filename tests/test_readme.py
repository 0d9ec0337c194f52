"""The README's five-line script runs as written and prints a VERIFIED report."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_five_line_script_runs(capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Five lines\s+```python\n(.*?)```", text, re.S)
    assert block, "README lost its five-line script"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 6
    exec(compile(code, "README", "exec"), {})
    out = capsys.readouterr().out
    assert "VERIFIED" in out
    assert "step t=1" in out


def test_readme_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first_blocks = re.findall(r"```bash\n(.*?)```", text, re.S)[:2]
    assert "msgpass verify" in first_blocks[0]
    assert "pytest" in first_blocks[1]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert first_blocks[1].strip() in ci, ".ci/run must run the README's test command exactly"
