"""Every script in examples/ runs in a fresh process, on small settings, and prints what it says.

Each test starts ``python examples/<name>.py`` with flags that keep it short
(the whole file takes well under a minute on 2 cores) and reads its output.
"""
import doctest
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run_script(name: str, *args: str, timeout: float = 120, expect: int = 0,
               cwd: str = ROOT) -> str:
    """Run ``examples/<name>`` with ``args``; check its exit status; return its stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == expect, (
        f"{name} {' '.join(args)} exited with {proc.returncode}, expected {expect}:\n"
        f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr if expect else proc.stdout


def numbers_after(out: str, word: str) -> list[float]:
    """Every number that follows ``word`` in ``out`` (``accuracy 98.5%`` -> 98.5)."""
    return [float(m) for m in re.findall(re.escape(word) + r"\s+([-+0-9.eE]+)", out)]


# ----------------------------------------------------------------------------- the main job
def test_moons_trains_to_97_percent_and_plots(tmp_path):
    out = run_script("moons.py", "--quiet", "--out", str(tmp_path / "plots"), timeout=60)
    assert numbers_after(out, "test accuracy")[0] >= 97.0, out
    if HAVE_MATPLOTLIB:
        for name in ("moons_boundary.png", "moons_loss.png"):
            path = tmp_path / "plots" / name
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
            assert path.stat().st_size > 10_000, name  # a real figure, not an empty canvas
    else:
        assert "matplotlib is not installed" in out


def test_moons_fails_loudly_below_target(tmp_path):
    out = run_script("moons.py", "--quiet", "--epochs", "1", "--out", str(tmp_path), expect=1)
    assert "below the 97% target" in out


# ----------------------------------------------------------------------------- tutorials
def test_seed_mlp_reaches_1e_7():
    out = run_script("seed_mlp.py")
    assert "Chain(Dense(10 => 5, relu), Dense(5 => 5, relu), Dense(5 => 2))" in out
    assert numbers_after(out, "loss")[-1] < 1e-7
    assert "converged in" in out


def test_mnist_mlp_fake_reports_every_two_epochs():
    out = run_script("mnist_mlp.py", "--fake", "--limit", "600", "--epochs", "4", "--quiet")
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert [int(line.split()[1]) for line in lines] == [2, 4]
    test_acc = numbers_after(out, "test accuracy")
    assert test_acc[-1] > 50.0, out  # 10 classes: chance is 10%


def test_mnist_cnn_fake():
    out = run_script("mnist_cnn.py", "--fake", "--limit", "300", "--epochs", "2", "--quiet")
    assert "Conv((3, 3), 1 => 8, relu)" in out and "Dense(400 => 10)" in out
    assert len(numbers_after(out, "train accuracy")) == 1


def _write_idx(path, array):
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    path.write_bytes(head + array.tobytes())


def test_mnist_mlp_reads_idx_files(tmp_path):
    sys.path.insert(0, EXAMPLES)
    try:
        from _fake_digits import fake_mnist
    finally:
        sys.path.remove(EXAMPLES)
    (x, y), (xt, yt) = fake_mnist(200, 100, seed=3)
    as_bytes = lambda a: np.round(a * 255).astype(np.uint8)  # noqa: E731
    _write_idx(tmp_path / "train-images-idx3-ubyte", as_bytes(x))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y.astype(np.uint8))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", as_bytes(xt))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", yt.astype(np.uint8))
    out = run_script("mnist_mlp.py", "--data", str(tmp_path), "--epochs", "2", "--quiet")
    assert "200 training and 100 test images" in out and "(generated)" not in out
    assert len(numbers_after(out, "test accuracy")) == 1


@pytest.mark.parametrize("name", ["mnist_mlp.py", "mnist_cnn.py"])
def test_mnist_without_data_says_where_to_get_it(tmp_path, name):
    out = run_script(name, "--data", str(tmp_path / "nowhere"), expect=2)
    assert "train-images-idx3-ubyte" in out and "http" in out and "--fake" in out
    assert "Traceback" not in out


# ----------------------------------------------------------------------------- transforms
def test_per_example_grads_clips():
    out = run_script("per_example_grads.py", "--steps", "20", "--clip", "1.0")
    assert numbers_after(out, "max difference")[0] < 1e-5
    before = [float(v) for v in re.search(r"before clipping: \[([^\]]*)\]", out)[1].split()]
    after = [float(v) for v in re.search(r"after clipping:\s+\[([^\]]*)\]", out)[1].split()]
    assert max(before) > 1.0 and max(after) <= 1.0 + 1e-3
    assert all(a <= b + 1e-3 for a, b in zip(after, before))
    assert "step   20" in out


def test_maml_meta_loss_falls():
    out = run_script("maml.py", "--steps", "120")
    meta = numbers_after(out, "meta-loss")
    assert len(meta) >= 3 and meta[-1] < meta[0], out
    init = re.search(r"initial weights\s+([0-9.]+)\s+([0-9.]+)", out)
    trained = re.search(r"meta-trained weights\s+([0-9.]+)\s+([0-9.]+)", out)
    assert float(trained[2]) < float(init[2]), out  # better after one step than at the start


def test_newton_cg_matches_exact_newton():
    out = run_script("newton.py")
    assert numbers_after(out, "|hvp - H v| =")[0] < 1e-10
    assert numbers_after(out, "max |w_newton_cg - w_exact_newton| =")[0] < 1e-8


def test_ensemble_members_match_single_training():
    out = run_script("ensemble.py", "--models", "4", "--epochs", "2")
    assert "first layer's weight: (4, 16, 2)" in out
    assert numbers_after(out, "max difference")[0] < 1e-4
    rows = re.findall(r"^\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)%$", out, re.M)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]


def test_surgery_summaries():
    out = run_script("surgery.py", "--steps", "30")
    assert "# 162 parameters, 1.266 KiB" in out and "# 162 parameters, 0.633 KiB" in out
    assert "embed.weight is out.weight: True" in out and "still tied after training: True" in out
    assert "1 tied" in out and "frozen: .layers[0].weight" in out
    assert "Dense(32 => 3)" in out
    assert "layers 0 and 1 unchanged (the same arrays): True" in out


# ----------------------------------------------------------------------------- GPU
def test_gpu_example():
    import funcflux as ff
    out = run_script("gpu.py", "--limit", "300", "--epochs", "1", "--quiet")
    device = getattr(ff, "device", None)
    if device is not None and hasattr(ff, "gpu") and device.is_available():
        assert "model on gpu:" in out and "test accuracy" in out
    else:
        assert "skipped" in out and "cupy" in out.lower()


def test_gpu_example_on_the_strict_stand_in(monkeypatch, capsys):
    """gpu.py's device path on tests/strict.py, which fails on any NumPy call on device data."""
    import funcflux as ff
    from tests import strict
    to_device = lambda tree, *args, **kwargs: strict.to_strict(tree)  # noqa: E731
    monkeypatch.setattr(ff.device, "is_available", lambda: True)
    monkeypatch.setattr(ff.device, "gpu", to_device)   # DataLoader(device="gpu") calls this
    monkeypatch.setattr(ff, "gpu", to_device)
    monkeypatch.setattr(ff, "cpu", strict.from_strict)
    monkeypatch.syspath_prepend(EXAMPLES)
    spec = importlib.util.spec_from_file_location("gpu_example", os.path.join(EXAMPLES, "gpu.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    strict.register()
    try:
        assert mod.main(["--limit", "300", "--epochs", "1", "--quiet"]) == 0
    finally:
        strict.unregister()
    out = capsys.readouterr().out
    assert "model on strict:" in out and "back on the CPU: ndarray" in out


def test_gpu_example_runs_on_the_cpu():
    out = run_script("gpu.py", "--cpu", "--limit", "300", "--epochs", "1", "--quiet")
    assert "model on cpu" in out and "back on the CPU: ndarray" in out


# ----------------------------------------------------------------------------- the rest
def test_demo_trains_and_prints():
    out = run_script("demo.py")
    losses = [float(line.split("loss")[1].split()[0]) for line in out.splitlines()
              if line.startswith("step")]
    assert len(losses) >= 3
    assert losses[-1] < 0.5 * losses[0], out  # the loss falls
    assert "per-example gradient norms" in out
    assert "Hessian" in out


def test_fake_digits_doctest_and_determinism():
    spec = importlib.util.spec_from_file_location("_fake_digits",
                                                  os.path.join(EXAMPLES, "_fake_digits.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert doctest.testmod(mod).failed == 0
    (a, ya), _ = mod.fake_mnist(30, 10, seed=1)
    (b, yb), _ = mod.fake_mnist(30, 10, seed=1)
    (c, _), _ = mod.fake_mnist(30, 10, seed=2)
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0


def test_every_example_is_tested():
    with open(__file__, encoding="utf-8") as f:
        here = f.read()
    scripts = [f for f in os.listdir(EXAMPLES) if f.endswith(".py") and not f.startswith("_")]
    # mnist_mpi.py belongs to the MPI tests (tests/test_distributed.py).
    missing = [f for f in scripts if f'"{f}"' not in here and f != "mnist_mpi.py"]
    assert not missing, f"examples without a test: {missing}"


# ----------------------------------------------------------------------------- attention
def test_char_transformer_tiny(tmp_path):
    out = run_script("char_transformer.py", "--tiny", "--quiet", "--out", str(tmp_path),
                     timeout=120)
    entropy = numbers_after(out, "unigram entropy")[0]
    assert 3.0 < entropy < 3.5, out  # tiny shakespeare's characters: about 3.29 nats
    assert len(numbers_after(out, "training loss")) == 1
    assert re.search(r"sample:\n-+\nMENENIUS:\n.{40}\n-+\n", out, re.S), out
    norms = re.search(r"per-example gradient norms of 8 sequences: \[([^\]]*)\]", out)[1].split()
    assert len(norms) == 8 and all(float(v) > 0 for v in norms)
    assert numbers_after(out, "max difference from ff.grad of sequence 1 alone:")[0] < 1e-5
    if HAVE_MATPLOTLIB:
        png = tmp_path / "char_transformer_loss.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_char_transformer_tiny_jit(tmp_path):
    out = run_script("char_transformer.py", "--tiny", "--quiet", "--jit", "--out", str(tmp_path),
                     timeout=120)
    assert len(numbers_after(out, "training loss")) == 1
