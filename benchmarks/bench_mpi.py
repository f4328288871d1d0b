"""Data-parallel benchmark: samples per second of the MNIST MLP on 1 and 2 MPI ranks.

Run from the repository root (needs mpi4py and an mpiexec: ``pip install mpi4py mpich``)::

    python benchmarks/bench_mpi.py            # about half a minute
    python benchmarks/bench_mpi.py --quick    # smoke run: two settings once, few steps

Workload: the 784-256-10 relu MLP as ``nn.Chain`` layers, softmax cross-entropy,
float32, Adam 1e-3, random MNIST-sized data, 40 timed steps after 5 warm-up steps.
Each setting is a fresh ``mpiexec -n R python bench_mpi.py --worker`` launch; the
settings take turns round after round (the machine is shared and noisy) and the
best round and the median are printed.

- ``1 rank x T threads``: one process, BLAS limited to T threads.
- ``2 ranks x 1 thread``: the same global batch split over two processes, whose
  gradients ``dist.average_gradients()`` averages (one ``MPI_Allreduce`` per
  dtype, plus the one-word structure check).
- ``weak``: 2 ranks that each take the whole per-rank batch (global batch doubled).

Per step the worker times the gradient, the all-reduce (which includes waiting for
the slower rank) and the Adam update; after training it times the all-reduce of
the gradient tree alone, after a barrier (pure communication), with and without the
structure check.

Figures on the development machine (2 cores shared with other jobs, load average
about 2.3; MPICH 5.0.2 and mpi4py 4.1.2 from wheels, NumPy 2.4 with OpenBLAS; global
batch 128; best round of 5-7, three runs; samples per second)::

    1 rank  x 1 thread          30,000-32,000   (medians 24,000-28,000)
    1 rank  x 2 threads         23,000-43,000   (medians 4,500-6,300: BLAS threads
                                                 spin while the other core is busy)
    2 ranks x 1 thread          30,000-33,000   (medians 14,000-16,000)
    2 ranks, weak (256 global)  49,000-60,000   (medians 26,000-29,000)

    all-reduce of the 0.81 MB gradient (4 float32 arrays: one MPI call + the check):
      alone, after a barrier    0.29-0.41 ms, of which the structure check 0.06-0.09 ms
      inside the training loop  1.0-1.3 ms (mostly waiting for the slower rank)

On two busy cores, splitting a batch of 128 over two ranks is no faster than one rank
(each rank's 64-example step is too short to hide the scheduling noise), while two
ranks with full batches nearly double the throughput; the communication itself is
about a tenth of a 4 ms step.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import funcflux as ff
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, ROOT)
    import funcflux as ff


# ----------------------------------------------------------------------------- worker
def worker(batch: int, steps: int, warmup: int) -> None:
    """One timed run inside ``mpiexec``: rank 0 prints one JSON line."""
    from funcflux import distributed as dist, losses, nn, optim

    rank, size = dist.rank(), dist.size()
    g = np.random.default_rng(rank)
    n = batch * (steps + warmup)
    X = g.random((n, 784), dtype=np.float32)
    y = g.integers(0, 10, n)
    model = dist.broadcast(nn.Chain(nn.Dense(784, 256, nn.relu, rng=0), nn.Dense(256, 10, rng=1)))
    opt = optim.adam(1e-3)
    state = opt.init(model)
    vg = ff.value_and_grad(lambda m, x, t: losses.logitcrossentropy(m(x), t))
    t_grad = t_reduce = t_update = 0.0
    dist.barrier()
    for k in range(steps + warmup):
        if k == warmup:
            dist.barrier()
            start = time.perf_counter()
            t_grad = t_reduce = t_update = 0.0
        x, t = X[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
        t0 = time.perf_counter()
        _, grads = vg(model, x, t)
        t1 = time.perf_counter()
        grads = dist.allreduce(grads, "mean")
        t2 = time.perf_counter()
        updates, state = opt.update(grads, state, model)
        model = optim.apply_updates(model, updates)
        t3 = time.perf_counter()
        t_grad += t1 - t0
        t_reduce += t2 - t1
        t_update += t3 - t2
    dist.barrier()
    elapsed = time.perf_counter() - start

    def pure(check: bool, reps: int = 30) -> float:
        best = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.allreduce(grads, "mean", check=check)
            best.append(time.perf_counter() - t0)
        return statistics.median(best)

    pure_check, pure_nocheck = pure(True), pure(False)
    if rank == 0:
        print(json.dumps({
            "ranks": size, "batch_per_rank": batch,
            "samples_per_s": batch * size * steps / elapsed,
            "step_ms": elapsed / steps * 1e3, "grad_ms": t_grad / steps * 1e3,
            "allreduce_ms": t_reduce / steps * 1e3, "update_ms": t_update / steps * 1e3,
            "pure_allreduce_ms": pure_check * 1e3, "pure_nocheck_ms": pure_nocheck * 1e3,
            "grad_mb": sum(a.nbytes for a in ff.tree.leaves(grads)) / 1e6,
        }), flush=True)


# ----------------------------------------------------------------------------- driver
def find_mpiexec() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return None
    here = os.path.dirname(sys.executable)
    return (shutil.which("mpiexec", path=here) or shutil.which("mpiexec")
            or shutil.which("mpirun"))


def launch(mpiexec: str | None, ranks: int, threads: int, batch: int, steps: int,
           warmup: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FUNCFLUX_MPI", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--batch", str(batch),
           "--steps", str(steps), "--warmup", str(warmup)]
    if mpiexec is not None:
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: two settings, once")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--global-batch", type=int, default=128)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=40, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.batch, args.steps, args.warmup)
        return

    mpiexec = find_mpiexec()
    rounds, steps, warmup = (1, 4, 1) if args.quick else (args.rounds, 40, 5)
    gb = args.global_batch
    settings = [("1 rank  x 1 thread", 1, 1, gb), ("1 rank  x 2 threads", 1, 2, gb),
                ("2 ranks x 1 thread", 2, 1, gb // 2), ("2 ranks x 1 thread, weak", 2, 1, gb)]
    if mpiexec is None:
        settings = [s for s in settings if s[1] == 1]
    if args.quick:  # one setting of each kind
        settings = [s for s in settings if s[0] in ("1 rank  x 1 thread", "2 ranks x 1 thread")]
    results: dict = {name: [] for name, *_ in settings}
    for _ in range(rounds):
        for name, ranks, threads, batch in settings:
            results[name].append(launch(mpiexec if ranks > 1 else None, ranks, threads, batch,
                                        steps, warmup))

    print(f"bench_mpi: numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"{'mpiexec ' + mpiexec if mpiexec else 'no mpi4py/mpiexec: 1 rank only'}, "
          f"global batch {gb}, {steps} steps, best of {rounds} (median)")
    print(f"{'setting':28s}{'samples/s':>18s}{'step ms':>9s}{'grad':>7s}{'allred':>8s}"
          f"{'update':>8s}{'pure allreduce ms':>19s}{'no check':>10s}")
    for name, rs in results.items():
        best = max(rs, key=lambda r: r["samples_per_s"])
        med = statistics.median(r["samples_per_s"] for r in rs)
        extra = (f"{best['pure_allreduce_ms']:19.3f}{best['pure_nocheck_ms']:10.3f}"
                 if best["ranks"] > 1 else "")
        print(f"{name:28s}{best['samples_per_s']:9.0f} ({med:6.0f})"
              f"{best['step_ms']:9.2f}{best['grad_ms']:7.2f}{best['allreduce_ms']:8.3f}"
              f"{best['update_ms']:8.2f}{extra}")
    print(f"gradient: {results[settings[0][0]][0]['grad_mb']:.2f} MB of float32 "
          f"in 4 arrays; 'allred' includes waiting for the slower rank")


if __name__ == "__main__":
    main()
