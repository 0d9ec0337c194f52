"""The example notebooks in examples/ run, top to bottom, and print what their prose claims.

Each is executed with nbclient in a fresh kernel of this interpreter (a kernel spec written to
a temporary directory, so nothing is registered globally and no other Python can answer to
"python3"), working directory examples/, MPLBACKEND=Agg. The files are committed without
outputs; notebooks that need MNIST say so in their metadata and are skipped, with the reason,
where it is not at hand."""

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from msgpass.gallery import find_mnist

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
# where the notebooks look for MNIST, from examples/ (find_mnist also reads $MSGPASS_MNIST)
MNIST = find_mnist(EXAMPLES / ".." / ".." / "shared" / "data" / "mnist")
TIME_LIMIT = 60     # seconds per notebook, the bound the README promises

# What each notebook's prose claims, as it must appear in its printed output.
FACTS = {
    "composite_functions.ipynb": ["Jacobian is diagonal: True", "VERIFIED: at every step",
                                  "abs1: entries on a kink [(0, 1)]",
                                  "softplus([800, -800]) = [800.   0.]  gradient [1. 0.]"],
    "exact_proof.ipynb": ["VERIFIED EXACTLY", "S^1 == backprop's ∂L/∂x, entry by entry: True",
                          "float64: VERIFIED",
                          "exact:   FAILED at step t=2, layer 2 (NudgedReLU)",
                          "equal exactly: True"],
    "mnist_messages.ipynb": ["hard digits send more than easy ones: True",
                             "sum of the messages equals S^1: True", "VERIFIED"],
    "conv_saliency.ipynb": ["block (4, 16, 10, 10, 6, 5, 5) 960,000 entries",
                            "S^1 against backprop's dL/dx: largest gap", "VERIFIED"],
}
# Accuracy the trained notebooks print, at least (their seeds fix the runs; these leave room
# for another BLAS summing in another order)
ACCURACY = {"mnist_messages.ipynb": 0.9, "conv_saliency.ipynb": 0.85}


def test_every_notebook_is_listed_and_committed_without_outputs():
    assert {p.name for p in NOTEBOOKS} == set(FACTS)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), \
            f"{path.name} holds outputs: clear them before committing"
        # prose of its own: a notebook explains what it shows
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4, path.name


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory):
    """A kernel spec "python3" that runs this interpreter with MPLBACKEND=Agg."""
    directory = tmp_path_factory.mktemp("kernels")
    (directory / "python3").mkdir()
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "msgpass tests", "language": "python",
            "env": {"MPLBACKEND": "Agg"}}
    (directory / "python3" / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(directory)])


def printed(nb) -> str:
    """Everything the notebook's cells wrote, streams and results' text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out:
                parts.append(out.data.get("text/plain", ""))
                parts.append(out.data.get("text/html", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_prints_what_it_claims(path, kernel_specs):
    nb = nbformat.read(path, as_version=4)
    needs = nb.metadata.get("msgpass", {}).get("needs", [])
    if "mnist" in needs and MNIST is None:
        pytest.skip(f"{path.name} trains on MNIST: none at ../shared/data/mnist or "
                    f"$MSGPASS_MNIST")
    # one more cell: which Python the kernel ran, and its matplotlib backend
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, os\nprint('kernel:', sys.executable, os.environ.get('MPLBACKEND'))"))
    km = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, timeout=TIME_LIMIT, allow_errors=False,
                            resources={"metadata": {"path": str(EXAMPLES)}})
    start = time.perf_counter()
    client.execute()          # a cell that raises fails here, naming the cell
    seconds = time.perf_counter() - start
    text = printed(nb)
    words = " ".join(text.split())     # column padding aside
    assert f"kernel: {sys.executable} Agg" in text
    for fact in FACTS[path.name]:
        assert " ".join(fact.split()) in words, f"{path.name} did not print {fact!r}"
    if path.name in ACCURACY:
        accuracy = float(re.search(r"test accuracy (\d\.\d+)", text).group(1))
        assert accuracy >= ACCURACY[path.name]
    assert "<svg" in text        # a trace displayed itself
    assert seconds < TIME_LIMIT, f"{path.name} took {seconds:.0f} s"
    print(f"{path.name}: {seconds:.1f} s")
