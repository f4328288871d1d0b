"""funcflux.distributed: the one-rank world in process, and real MPI jobs under ``mpiexec -n 2``.

The MPI tests launch the worker scripts in tests/mpi/ (about a second per
launch, so one worker checks many things) and are skipped when mpi4py or an
``mpiexec`` is missing; ``pip install mpi4py mpich`` provides both (the
``test`` extra does).
"""
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

import funcflux as ff
from funcflux import data, distributed as dist, optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- one rank
@pytest.fixture
def fresh_world(monkeypatch):
    """Forget the discovered world (and the launcher variables) for one test."""
    for k in ("FUNCFLUX_MPI", "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE",
              "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "ALPS_APP_PE",
              "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(dist, "_world", None)
    return monkeypatch


def test_one_rank_world_without_a_launcher(fresh_world):
    had_mpi = "mpi4py.MPI" in sys.modules
    assert (dist.rank(), dist.size(), dist.is_initialized()) == (0, 1, False)
    dist.barrier()
    assert ("mpi4py.MPI" in sys.modules) == had_mpi  # MPI is not started for nothing


def test_collectives_are_the_identity_on_one_rank():
    t = {"w": np.ones((2, 3), np.float32), "b": [np.float64(2.0), 3], "none": None,
         "i": np.arange(3)}
    for op in ("sum", "max", "min"):
        assert dist.allreduce(t, op) is t
    f = {"w": np.ones(2), "s": 1.5}
    assert dist.allreduce(f, "mean") is f
    assert dist.broadcast(t) is t and dist.broadcast(t, root=0) is t
    g = dist.allgather(dict(t, name="x"))
    assert g["w"].shape == (1, 2, 3) and g["w"].dtype == np.float32
    assert g["b"][0].shape == (1,) and g["b"][1].tolist() == [3] and g["name"] == ["x"]
    assert g["none"] is None


def test_average_gradients_is_the_identity_on_one_rank():
    params = {"w": np.zeros(3), "frozen": np.zeros(2)}
    grads = {"w": np.arange(3.0), "frozen": None}
    opt = optim.chain(dist.average_gradients(), optim.adam(0.1))
    ref = optim.adam(0.1)
    u, _ = opt.update(grads, opt.init(params), params)
    v, _ = ref.update(grads, ref.init(params), params)
    np.testing.assert_array_equal(u["w"], v["w"])
    assert u["frozen"] is None


def test_errors_are_the_same_on_one_rank():
    with pytest.raises(ValueError, match="op must be one of 'sum', 'mean', 'max', 'min'"):
        dist.allreduce(np.ones(2), "avg")
    with pytest.raises(ValueError, match=r"root must be a rank in \[0, 1\), got 1"):
        dist.broadcast(np.ones(2), root=1)
    with pytest.raises(TypeError, match=r"leaf at \['n'\] is of dtype int64; ints and bools "
                                        "have no mean"):
        dist.allreduce({"n": np.arange(2), "x": np.ones(1)}, "mean")
    with pytest.raises(TypeError, match="bools have no sum"):
        dist.allreduce(np.array([True]))
    with pytest.raises(TypeError, match="complex numbers are not ordered"):
        dist.allreduce(np.array([1j]), "max")
    with pytest.raises(TypeError, match=r"leaf at \[1\] is a str object"):
        dist.allreduce([1.0, "tag"])
    with pytest.raises(TypeError, match=r"leaf at \['w'\] is a traced value"):
        ff.grad(lambda w: np.sum(dist.allreduce({"w": w})["w"]))(np.ones(2))


def test_launcher_detection():
    assert not dist._launched({})
    assert dist._launched({"PMI_RANK": "0"}) and dist._launched({"OMPI_COMM_WORLD_SIZE": "4"})
    assert dist._launched({"PMIX_RANK": "3"})
    assert not dist._launched({"SLURM_STEP_NUM_TASKS": "1"})  # srun of one task
    assert dist._launched({"SLURM_STEP_NUM_TASKS": "8"})
    assert dist._launcher_size({"PMI_SIZE": "4", "PMI_RANK": "1"}) == 4
    assert dist._launcher_size({}) == 0


def test_launched_without_mpi4py_warns_once(fresh_world):
    fresh_world.setenv("PMI_SIZE", "2")
    fresh_world.setenv("PMI_RANK", "1")
    fresh_world.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` fail
    fresh_world.delitem(sys.modules, "mpi4py.MPI", raising=False)
    with pytest.warns(RuntimeWarning, match="world size 2.*mpi4py is not installed"):
        assert dist.size() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dist.rank() == 0 and dist.size() == 1


def test_funcflux_mpi_0_keeps_a_launched_process_alone(fresh_world):
    fresh_world.setenv("PMI_SIZE", "2")
    fresh_world.setenv("FUNCFLUX_MPI", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dist.size() == 1 and not dist.is_initialized()


def test_mismatch_messages():
    a = ("allreduce(op='sum')", "{'w': *}", [("['w']", "float64 (3, 2)")])
    b = ("allreduce(op='sum')", "{'w': *}", [("['w']", "float64 (3, 4)")])
    assert dist._difference([a, a, b]) == \
        "at ['w'] rank 0 has float64 (3, 2) and rank 2 has float64 (3, 4)"
    c = ("allreduce(op='max')",) + a[1:]
    assert "rank 0 called allreduce(op='sum') but rank 1 called allreduce(op='max')" == \
        dist._difference([a, c])


def test_train_with_distributed_true_on_one_rank():
    X, y = data.make_moons(64, noise=0.1, rng=0)
    loss = lambda p, x, y: np.mean((x @ p["w"] - y[:, None]) ** 2)
    runs = [ff.train(loss, {"w": np.zeros((2, 1))}, data.DataLoader((X, y), batchsize=16),
                     optim.chain(dist.average_gradients(), optim.sgd(0.1)), epochs=2,
                     progress=False, distributed=flag) for flag in (None, True, False)]
    for p, _, hist in runs[1:]:
        np.testing.assert_array_equal(p["w"], runs[0][0]["w"])
        assert hist == runs[0][2]


# ----------------------------------------------------------------------------- MPI jobs
def _find_mpiexec():
    """The mpiexec beside this Python (where the mpich wheel puts it), else one on PATH."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    here = os.path.dirname(sys.executable)
    for name in ("mpiexec", "mpirun"):
        found = shutil.which(name, path=here)
        if found:
            return found
    return shutil.which("mpiexec") or shutil.which("mpirun")


MPIEXEC = _find_mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None,
                               reason="needs mpi4py and mpiexec: pip install mpi4py mpich")


def run_mpi(*args, n=2, timeout=60):
    """``mpiexec -n n python *args`` from the repository root: ``(returncode, output)``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FUNCFLUX_MPI", None)
    env["OMP_NUM_THREADS"] = "1"  # two ranks share a small machine
    # Open MPI refuses root and more ranks than cores unless told; MPICH ignores these.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    proc = subprocess.Popen([MPIEXEC, "-n", str(n), sys.executable, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} did not end within {timeout} s:\n{out}")
    return proc.returncode, out


@needs_mpi
def test_collectives_shards_and_training_under_mpiexec():
    rc, out = run_mpi(os.path.join("tests", "mpi", "collectives.py"))
    assert rc == 0 and out.rstrip().endswith("ALL OK"), out
    for what in ("allreduce", "broadcast", "allgather", "device arrays", "mismatch",
                 "average_gradients",
                 "shards", "training"):
        assert f"OK {what}" in out, out


@needs_mpi
def test_an_exception_on_one_rank_ends_the_job():
    rc, out = run_mpi(os.path.join("tests", "mpi", "abort.py"), timeout=30)
    assert rc != 0, out
    assert "rank 1 of 2 raised RuntimeError" in out, out
    assert "[rank 1] RuntimeError: rank one fails on purpose" in out, out
    assert "rank 0 was not stopped" not in out


# How rank 1 leaves (tests/mpi/faults.py) and what the output must say; before the exit check
# and the hook installed by the first dist call, every mode but "nan" hung until the timeout.
FAULTS = {
    "nan": ["rank 1 of 2 raised FloatingPointError; aborting all ranks",
            "[rank 1] FloatingPointError: ff.train: the loss is nan at epoch 1, step 2"],
    "caught": ["rank 1 kept the model of the last finished step: True",
               "rank 1 of 2 ended its program (a normal end or sys.exit) while rank 0 called "
               "allreduce(op='mean')"],
    "early": ["rank 1 of 2 raised RuntimeError; aborting all ranks",
              "[rank 1] RuntimeError: rank one cannot read its data"],
    "exit": ["rank 1 of 2 ended its program (a normal end or sys.exit) while rank 0 called "
             "barrier()"],
}


@needs_mpi
@pytest.mark.parametrize("mode", sorted(FAULTS))
def test_a_rank_that_fails_or_leaves_ends_the_job(mode):
    rc, out = run_mpi(os.path.join("tests", "mpi", "faults.py"), mode, timeout=30)
    assert rc != 0, out
    for needle in FAULTS[mode]:
        assert needle in out, out
    assert "was not stopped" not in out, out


def test_the_exit_check_is_quiet_on_one_rank(fresh_world):
    dist._exit_check()  # nothing to meet: returns without starting MPI
    assert dist._world is None


def test_leaving_message():
    every = [("allreduce(op='mean')", "{'w': *}", []), (dist._EXIT_CALL, "()", [])]

    class Comm:  # what _check sees when rank 1 ends its program: the hashes differ
        def Allreduce(self, _, buf, op):
            buf[:] = [1, 0]

        def allgather(self, _):
            return every

    mpi = type("MPI", (), {"IN_PLACE": None, "MAX": None})
    w = dist._World(Comm(), mpi, 0, 2)
    with pytest.raises(ValueError, match=r"^distributed\.allreduce: rank 1 of 2 ended its "
                                         r"program .* while rank 0 called allreduce\(op='mean'\)"):
        dist._check(w, "allreduce", "allreduce(op='mean')", dist._Flat("allreduce", np.ones(2)))
    every = [every[1], every[0], every[1]]  # ranks 0 and 2 ended, seen from rank 2's exit
    w = dist._World(Comm(), mpi, 2, 3)
    with pytest.raises(ValueError, match=r"^funcflux\.distributed, at the end of rank 2's "
                                         r"program: ranks 0, 2 of 3 ended their program .* "
                                         r"while rank 1 called allreduce"):
        dist._check(w, "exit", dist._EXIT_CALL, dist._Flat("exit", ()))


EPOCH_LINE = re.compile(r"epoch \d+ loss (\d+\.\d+)")
ACCURACY_LINE = re.compile(r"test accuracy (\d\.\d+)")


def result_lines(pattern: re.Pattern, out: str) -> list[str]:
    """The value of every line (split at \\n and \\r, as a terminal shows it) that is exactly
    ``pattern``: a progress bar drawn with \\r, or any other package's output, is not one."""
    return [m.group(1) for m in map(pattern.fullmatch, out.splitlines()) if m]


def test_result_lines_ignore_progress_bars():
    out = ("epoch 1/3: 100%|##########| 8/8 [00:00<00:00, loss=0.2979]\r\n"
           "2 rank(s), global batch 128\nepoch 1 loss 1.2345\nepoch 2 loss 0.5000\n"
           "\repoch 3/3:  50%|#####     | 4/8 [loss=0.1]\repoch 3 loss 0.2500\n"
           "test accuracy 0.9310\n")
    assert [float(v) for v in result_lines(EPOCH_LINE, out)] == [1.2345, 0.5, 0.25]
    assert result_lines(ACCURACY_LINE, out) == ["0.9310"]


@needs_mpi
def test_mnist_mpi_example():
    rc, out = run_mpi(os.path.join("examples", "mnist_mpi.py"), "--fake", "--n", "2000",
                      "--epochs", "3", "--lr", "3e-3")
    assert rc == 0, out
    assert "2 rank(s), global batch 128" in out, out
    # The output mixes the script's result lines with whatever optional packages print
    # (tqdm's progress bar, "epoch 1/3 ... loss=0.29]", goes to stderr, merged here): read
    # only lines of exactly the script's own form.
    losses = [float(v) for v in result_lines(EPOCH_LINE, out)]
    assert len(losses) == 3 and losses[2] < losses[0] / 2, out
    (acc,) = map(float, result_lines(ACCURACY_LINE, out))
    assert acc > 0.6, out  # chance is 0.1; these three short epochs reach about 0.93


@needs_mpi
def test_bench_mpi_quick():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join("benchmarks", "bench_mpi.py"), "--quick"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("1 rank", "2 ranks"))]
    assert len(rows) == 2, proc.stdout
