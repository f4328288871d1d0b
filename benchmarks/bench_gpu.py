"""GPU benchmark: training steps per second of the MLP and the small CNN on CuPy.

Run from the repository root on a machine with a GPU and CuPy
(``pip install ".[gpu]"``)::

    python benchmarks/bench_gpu.py            # 784-256-10 MLP at batch 1024, CNN at batch 256
    python benchmarks/bench_gpu.py --cpu      # the same code on NumPy (for comparison / smoke)
    python benchmarks/bench_gpu.py --quick    # every workload once

Each step is ``ff.grad`` of a softmax cross-entropy over ``funcflux.nn`` layers
and an Adam update (``optim.setup``/``optim.step``), with the model, optimiser
state and batch on the device. GPU timings synchronise the device before the
clock stops. When PyTorch with CUDA is importable, the same models run in
PyTorch eager on the same GPU and the ratio is printed. Without a GPU (and
without ``--cpu``) the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import funcflux as ff  # noqa: E402
from funcflux import nn, optim  # noqa: E402


def mlp() -> nn.Chain:
    return nn.Chain(nn.Dense(784, 256, nn.relu, rng=0), nn.Dense(256, 10, rng=1))


def cnn() -> nn.Chain:
    return nn.Chain(nn.Conv(3, 1, 8, nn.relu, rng=0), nn.MaxPool(2),
                    nn.Conv(3, 8, 16, nn.relu, rng=1), nn.MaxPool(2),
                    nn.Flatten(), nn.Dense(400, 10, rng=2))


def loss(model: Any, x: Any, y: Any) -> Any:
    z = model(x)
    s = z - np.max(z, axis=-1, keepdims=True)
    logp = s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))
    return -np.sum(logp * y) / y.shape[0]


def make_step(model: Any, x: Any, y: Any) -> Callable[[], None]:
    state = {"opt": optim.setup(optim.adam(1e-3), model), "model": model}
    grad = ff.grad(loss)

    def step() -> None:
        g = grad(state["model"], x, y)
        state["opt"], state["model"] = optim.step(state["opt"], state["model"], g)
    return step


def timed(step: Callable[[], None], sync: Callable[[], None], quick: bool) -> float:
    """Median seconds per step over rounds (device synchronised before each clock read)."""
    step()
    sync()
    if quick:
        return float("nan")
    rounds = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(10):
            step()
        sync()
        rounds.append((time.perf_counter() - t0) / 10)
    return statistics.median(rounds)


def torch_steps(kind: str, batch: int) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    if kind == "mlp":
        net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        x = torch.randn(batch, 784, device=dev)
    else:
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Flatten(), torch.nn.Linear(400, 10))
        x = torch.randn(batch, 1, 28, 28, device=dev)
    net = net.to(dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run on NumPy instead of the GPU")
    ap.add_argument("--quick", action="store_true", help="run every workload once, no timing")
    args = ap.parse_args(argv)
    if args.cpu:
        put, sync, where = (lambda t: t), (lambda: None), "CPU (NumPy)"
    else:
        if not ff.device.is_available():
            print("bench_gpu: no GPU with CuPy here; nothing to measure "
                  "(run with --cpu to time the same code on NumPy).")
            return 0
        import cupy
        put, sync = ff.gpu, (lambda: cupy.cuda.Device().synchronize())
        where = f"GPU {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}"
    rng = np.random.default_rng(0)
    print(f"funcflux {ff.__version__} GPU benchmark on {where}")
    for kind, batch, shape in [("mlp", 1024, (784,)), ("cnn", 256, (1, 28, 28))]:
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        y = ff.data.onehotbatch(rng.integers(0, 10, batch), range(10))
        model = mlp() if kind == "mlp" else cnn()
        step = make_step(put(model), put(x), put(y))
        t = timed(step, sync, args.quick)
        line = f"  {kind.upper()} batch {batch}: {1 / t:9.1f} steps/s" if t == t else \
            f"  {kind.upper()} batch {batch}: ran once (--quick)"
        tstep = None if args.cpu else torch_steps(kind, batch)
        if tstep is not None and not args.quick:
            import torch
            tt = timed(tstep, torch.cuda.synchronize, False)
            line += f"; PyTorch eager {1 / tt:9.1f} steps/s; funcflux / PyTorch time {t / tt:.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
