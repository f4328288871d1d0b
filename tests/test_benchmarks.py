"""Smoke tests of the benchmark scripts: they run and print their tables (no timing asserted)."""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(name: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", name), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_bench_core_quick():
    out = run_bench("bench_core.py", "--quick", "--no-peers")
    for key in ("a ", "a-np", "b ", "c ", "d1", "d2", "d3"):
        assert any(line.startswith(key) for line in out.splitlines()), out
    assert "numpy" in out and "BLAS" in out


def test_bench_cnn_quick():
    out = run_bench("bench_cnn.py", "--quick", "--no-peers")
    assert "funcflux / NumPy" in out and "x NumPy" in out, out


def test_bench_optim_quick():
    out = run_bench("bench_optim.py", "--quick")
    assert "epoch (grad + Adam)" in out and "Adam step alone" in out


def test_bench_gpu_without_gpu_skips_and_runs_on_cpu():
    out = run_bench("bench_gpu.py")
    assert "nothing to measure" in out or "steps/s" in out  # a GPU host measures instead
    out = run_bench("bench_gpu.py", "--cpu", "--quick")
    assert "MLP batch 1024: ran once" in out and "CNN batch 256: ran once" in out


def test_bench_gpu_step_runs_on_the_device(put, get):
    """The benchmark's training step, with model and data on the test device (strict: no np.)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import bench_gpu
    import funcflux as ff
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    y = ff.data.onehotbatch(rng.integers(0, 10, 4), range(10))
    step = bench_gpu.make_step(put(bench_gpu.cnn()), put(x), put(y))
    step()
    step()


def test_bench_jit_quick():
    out = run_bench("bench_jit.py", "--quick")
    for row in ("mlp", "chain", "hessian", "mlp784", "adam5k", "trace"):
        assert f"\n{row}" in out, out
