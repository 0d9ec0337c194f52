"""The benchmark scripts still run (on a tiny size, one repetition; nothing is timed here)."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_suite_runs_on_a_tiny_size(monkeypatch, capsys):
    suite = load("bench_suite")
    monkeypatch.setitem(suite.SIZES, "tiny", ("12-8-relu-3-sce", 4))
    monkeypatch.setattr(sys, "argv", ["bench_suite.py", "--sizes", "tiny", "--repeat", "1"])
    suite.main()
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 8 and all(c for c in cells)
    if Path("/proc/self/clear_refs").exists():
        assert cells[-1] != "n/a"
    pytest.importorskip("torch")
    assert "n/a" not in cells[5:7]   # with torch installed, the PyTorch twin ran


def test_the_scale_benchmark_runs_on_a_tiny_network(monkeypatch, capsys):
    pytest.importorskip("dask")
    bench = load("bench_scale")
    monkeypatch.setattr(bench, "SPEC", "12-8-relu-3-sce")
    monkeypatch.setattr(sys, "argv", ["bench_scale.py", "--batch", "16", "--chunk-samples", "4",
                                      "--ratio-batch", "8", "--ratio-chunk-samples", "4",
                                      "--repeat", "1"])
    bench.main()
    out = capsys.readouterr().out
    assert "dask stats ÷ memory stats:" in out
    if Path("/proc/self/status").exists():
        assert "messages: 2,096 (" in out     # 16·(12·8 + 8 + 8·3 + 3)
        assert "histogram counts: 2,096 " in out
        assert "(≤ 1e-12: True)" in out
    monkeypatch.setattr(sys, "argv", ["bench_scale.py", "--sweep-chunks", "--repeat", "1"])
    bench.main()
    assert "| 1024 KiB |" in capsys.readouterr().out
