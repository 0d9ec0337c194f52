"""The README's five-line script runs as written and prints a VERIFIED report."""

import re
from pathlib import Path

import numpy as np

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


def test_graph_example_prints_the_numbers_it_states(capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Graphs beyond chains.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile("import msgpass as mp\n" + block, "README", "exec"), namespace)
    assert "VERIFIED" in capsys.readouterr().out
    trace, f = namespace["trace"], namespace["f"]
    stated_value = re.search(r"trace.value\(f\)\s+# (\S+)", block).group(1)
    stated_grads = re.search(r'trace.grad\("y"\) # (\S+), (\S+)', block).groups()
    assert repr(float(trace.value(f))) == stated_value
    assert (repr(float(trace.grad("x"))), repr(float(trace.grad("y")))) == stated_grads


def test_streaming_example_runs_as_written():
    import numpy as np

    import msgpass as mp
    from msgpass.testing import random_batch
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Big networks.*?```python\n(.*?)```", text, re.S).group(1)
    net = mp.build_network("784-100-relu-10-sce", seed=0)
    x, target = random_batch(net, 8, np.random.default_rng(0))
    net.forward(x, target)
    namespace = {"net": net, "np": np, "mp": mp}
    exec(compile(block, "README", "exec"), namespace)
    trace = namespace["trace"]
    assert trace.param_messages["1.W"].shape == (8, 784, 100)
    assert trace.per_sample_grads()["1.W"].shape == (8, 784, 100)


def test_training_example_runs_as_written():
    import msgpass as mp
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Training.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {"mp": mp}
    exec(compile(block, "README", "exec"), namespace)
    assert namespace["history"].last["val_accuracy"] >= 0.95


def test_exact_and_function_example_runs_as_written(capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Exact proofs.*?```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("VERIFIED EXACTLY") and out[1].startswith("VERIFIED")
    assert "agrees with the complex step" in out[2]


def test_scale_example_runs_as_written(tmp_path, monkeypatch):
    import pytest
    pytest.importorskip("zarr")
    pytest.importorskip("xarray")
    pytest.importorskip("dask")
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Traces that outgrow memory.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README", "exec"), namespace)
    trace, lazy, ds = namespace["trace"], namespace["lazy"], namespace["ds"]
    assert trace.stats[1].absmax.shape == (64, 32)          # as the comment says
    assert ds["message1"].dims == ("sample", "src1", "dst1") and "message3" not in ds
    assert (tmp_path / "run.zarr").is_dir()
    for key, grad in trace.grads.items():
        assert abs(grad - lazy.grads[key]).max() <= 1e-12 * abs(grad).max()


def test_graph_training_example_runs_as_written():
    """The README's trainable-graph example, run as written: the validation accuracy it
    quotes (96.7 %) is what it reaches."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"A graph whose output is a loss node trains.*?```python\n(.*?)```", text,
                      re.S).group(1)
    namespace = {}
    exec(compile("import msgpass as mp\n" + block, "README", "exec"), namespace)
    accuracy = namespace["history"].last["val_accuracy"]
    assert f"{100 * accuracy:.1f} %" in text


def test_conv_example_states_its_shapes(capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Convolutional networks.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(block, "README", "exec"), namespace)
    assert "VERIFIED" in capsys.readouterr().out
    stated = re.findall(r"^(trace\.\S+\.shape)\s+# (\(.*?\))", block, re.M)
    assert len(stated) == 3
    for expression, shape in stated:
        assert repr(eval(expression, namespace)) == shape, expression


def test_pytorch_example_runs_as_written(capsys):
    import pytest
    pytest.importorskip("torch")
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Your own PyTorch model\s+```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 5
    exec(compile(block, "README", "exec"), {})
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "PyTorch autograd's" in out


def test_composite_functions_example_prints_the_numbers_it_states(capsys):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Composite functions.*?```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile("import numpy as np\nimport msgpass as mp\n" + block, "README", "exec"),
         namespace)
    assert "VERIFIED" in capsys.readouterr().out
    g, f = namespace["g"], namespace["f"]
    stated = dict(re.findall(r"^(\S.*?)\s+# (-?[0-9.]+)", block, re.M))
    ones = {"x": np.ones(5)}
    actual = {'trace.grad("x")[0]': namespace["trace"].grad("x")[0],
              "tangent.output[0]": namespace["tangent"].output[0],
              'g.hvp(f, {"x": np.ones(5)})["x"][0]': g.hvp(f, ones)["x"][0]}
    for expression, value in actual.items():
        assert repr(float(value)) == stated[expression], expression


def test_html_explorer_example_writes_a_self_contained_page(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## Seeing the messages.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README", "exec"), {})
    page = (tmp_path / "trace.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script src=" not in page
    assert (tmp_path / "trace.html").stat().st_size < 10 * 2**20   # the bound


def test_readme_links_every_example_notebook():
    text = README.read_text(encoding="utf-8")
    notebooks = sorted(p.name for p in (README.parent / "examples").glob("*.ipynb"))
    assert notebooks and all(f"(examples/{name})" in text for name in notebooks)
