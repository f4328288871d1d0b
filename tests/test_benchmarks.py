"""Smoke test of the benchmark script: it runs and prints its table (no timing asserted)."""
from tests.test_examples import run_script


def test_bench_core_quick():
    out = run_script("benchmarks/bench_core.py", "--quick", "--no-peers")
    for key in ("a ", "b ", "c ", "d1", "d2", "d3"):
        assert any(line.startswith(key) for line in out.splitlines()), out
    assert "numpy" in out and "BLAS" in out
