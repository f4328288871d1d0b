"""Optimiser benchmark: one epoch of Adam training, funcflux against hand-written NumPy.

Run from the repository root::

    python benchmarks/bench_optim.py             # a minute or so on 2 cores
    python benchmarks/bench_optim.py --quick     # smoke run: everything once, small data

Workload (the issue's): the 784-256-10 relu MLP, softmax cross-entropy, float32, params
in a dict, batch 128 over 5,000 random MNIST-sized examples (40 steps, the last one
partial), Adam with learning rate 1e-3.

- funcflux: the model as funcflux users write it, ``nn.Chain(nn.Dense(784, 256, nn.relu),
  nn.Dense(256, 10))`` with ``losses.logitcrossentropy``; ``ff.grad`` differentiates the
  loss, then ``optim.adam(1e-3).update`` and ``optim.apply_updates`` (new arrays every
  step): the documented five-line loop.
- NumPy: a hand-written backward pass and a hand-written in-place Adam.

Both start from the same parameters and see the same batches, and the script checks
that they end at the same parameters. Epochs of the two alternate round by round (so a
busy machine slows both alike); the minimum and the median over rounds are printed, and
their ratio (target: at most 1.2x). A second row times the optimiser step alone
(``update`` + ``apply_updates`` against the in-place Adam) on the same parameters; a
third runs the funcflux loop with the MLP written as plain NumPy inside the loss (a dict
of arrays, no nn layers), and a fourth ``ff.grad`` of that loss with the hand-written
Adam, to show which part of the epoch the gap comes from.

The last row is the small-model case, where the optimiser's own plumbing shows most: a
10-32-32-2 relu MLP (``nn.Chain`` of ``nn.Dense``, float32), ``optim.step`` with
``optim.adam(1e-3)`` over it (``setup``/``step``, a new model every step) against the same
careful in-place NumPy Adam over the same six arrays and the same gradient (target: at
most 1.3x). When benchmarking a current NumPy on a machine that sets OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE, unset both for this command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_optim.py
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any, Callable

import numpy as np

try:
    import funcflux as ff
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import funcflux as ff
from funcflux import optim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import (F32, N_IN, N_OUT, allocator, init_mlp, init_model,  # noqa: E402
                        loss, model_loss, np_grads)  # the same MLP, as a model and as NumPy

LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8
SMALL = (10, 32, 32, 2)  # the small MLP's layer sizes
SMALL_STEPS = 200        # optimiser steps per timed call on the small MLP


# ----------------------------------------------------------------------------- funcflux
def ff_epoch(model: Any, batches: list, loss_fn: Callable = model_loss) -> Any:
    """The documented training loop: ``ff.grad``, ``opt.update``, ``optim.apply_updates``."""
    opt = optim.adam(LR)
    state = opt.init(model)
    grad = ff.grad(loss_fn)
    for x, y in batches:
        updates, state = opt.update(grad(model, x, y), state, model)
        model = optim.apply_updates(model, updates)
    return model


def as_params(model: Any) -> dict:
    """The model's arrays in the hand-written loop's layout."""
    d1, d2 = model.layers
    return {"W1": d1.weight.T, "b1": d1.bias, "W2": d2.weight.T, "b2": d2.bias}


def np_adam(p: dict, g: dict, m: dict, v: dict, t: int) -> None:
    """Adam in place, as a careful NumPy programmer writes it: the moments and parameters
    are overwritten, the bias corrections folded into two scalars, one temporary per line.

    ``p -= lr * (m / c1) / (sqrt(v / c2) + eps)`` is ``p -= step * m / (sqrt(v) + eps_hat)``
    with ``step = lr * sqrt(c2) / c1`` and ``eps_hat = eps * sqrt(c2)``.
    """
    c1, c2 = 1 - B1 ** t, 1 - B2 ** t
    step, eps_hat = LR * np.sqrt(c2) / c1, EPS * np.sqrt(c2)
    for k in p:
        gk, mk, vk = g[k], m[k], v[k]
        mk *= B1
        mk += (1 - B1) * gk
        vk *= B2
        g2 = gk * gk
        g2 *= 1 - B2
        vk += g2
        d = np.sqrt(vk)
        d += eps_hat
        np.divide(mk, d, out=d)
        d *= step
        p[k] -= d


def np_epoch(params: dict, batches: list, grads: Callable = np_grads) -> dict:
    p = {k: a.copy() for k, a in params.items()}
    m = {k: np.zeros_like(a) for k, a in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for t, (x, y) in enumerate(batches, 1):
        np_adam(p, grads(p, x, y), m, v, t)
    return p


def hybrid_epoch(params: dict, batches: list) -> dict:
    """``ff.grad`` with the hand-written Adam: splits the gap between gradient and optimiser."""
    return np_epoch(params, batches, ff.grad(loss))


def small_step_fns(steps: int) -> dict[str, Callable[[], Any]]:
    """``steps`` Adam steps on the small MLP: ``optim.step`` against ``np_adam`` in place."""
    from funcflux import nn
    rng = np.random.default_rng(1)
    n = len(SMALL) - 1
    model = nn.Chain(*[nn.Dense(a, b, nn.relu if i < n - 1 else nn.identity, rng=i)
                       for i, (a, b) in enumerate(zip(SMALL, SMALL[1:]))])
    x = rng.standard_normal((32, SMALL[0])).astype(F32)
    y = rng.standard_normal((32, SMALL[-1])).astype(F32)
    g = ff.grad(lambda m: np.mean((m(x) - y) ** 2))(model)
    # The same arrays in the same memory layout (Dense keeps its weights column-major).
    params = {str(i): a.copy(order="K") for i, a in enumerate(ff.fleaves(model))}
    grads = {str(i): a for i, a in enumerate(ff.fleaves(g))}
    m = {k: np.zeros_like(a) for k, a in params.items()}
    v = {k: np.zeros_like(a) for k, a in params.items()}
    ff_run = [optim.setup(optim.adam(LR), model), model]
    t = [0]

    def ff_steps() -> None:
        state, mdl = ff_run
        for _ in range(steps):
            state, mdl = optim.step(state, mdl, g)
        ff_run[:] = state, mdl

    def np_steps() -> None:
        for _ in range(steps):
            t[0] += 1
            np_adam(params, grads, m, v, t[0])

    # Both run the same training: check it before timing anything.
    ff_steps()
    np_steps()
    for a, (k, b) in zip(ff.fleaves(ff_run[1]), params.items()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=k)
        assert a.dtype == F32
    return {"funcflux": ff_steps, "numpy": np_steps}


# ----------------------------------------------------------------------------- timing
def measure(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, tuple[float, float]]:
    """Seconds per call, ``{name: (min, median)}``, the functions taking turns each round."""
    for fn in fns.values():
        fn()  # warm up
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
            gc.enable()
    return {k: (min(v), float(np.median(v))) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small data, one round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's allocator settings alone (no ff.tune_allocator())")
    args = ap.parse_args(argv)
    print(allocator(args.system_malloc))
    n, rounds = (640, 1) if args.quick else (5000, args.rounds)

    rng = np.random.default_rng(0)
    x = rng.random((n, N_IN), dtype=F32)
    y = rng.integers(0, N_OUT, n)
    order = rng.permutation(n)
    batches = [(x[order[i:i + 128]], y[order[i:i + 128]]) for i in range(0, n, 128)]
    params = init_mlp(rng)

    model = init_model(params)
    a, b = as_params(ff_epoch(model, batches)), np_epoch(params, batches)
    c = ff_epoch(params, batches, loss)
    for k in params:  # the loops compute the same training run
        for got in (a, c):
            np.testing.assert_allclose(got[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
            assert got[k].dtype == F32

    epoch = measure({"funcflux": lambda: ff_epoch(model, batches),
                     "numpy": lambda: np_epoch(params, batches),
                     "np loss": lambda: ff_epoch(params, batches, loss),
                     "hybrid": lambda: hybrid_epoch(params, batches)}, rounds)

    # the optimiser step alone, on the same parameters and a fixed gradient
    g = np_grads(params, *batches[0])
    opt = optim.adam(LR)
    st = [opt.init(params)]
    p_np = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(a) for k, a in params.items()}

    def ff_step() -> None:
        u, st[0] = opt.update(g, st[0], params)
        optim.apply_updates(params, u)

    def np_step() -> None:
        np_adam(p_np, g, m, v, 1)

    step = measure({"funcflux": ff_step, "numpy": np_step}, max(rounds, 3) * 5)
    small_steps = 2 if args.quick else SMALL_STEPS
    small = measure(small_step_fns(small_steps), max(rounds, 3) * 3)

    print(f"bench_optim: numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"{n} examples, batch 128, {len(batches)} steps, {rounds} rounds")
    print(f"{'':28s}{'funcflux':>12s}{'numpy':>12s}{'ratio':>8s}  (min; median)")
    for name, res, unit, scale in (("epoch (grad + Adam)", epoch, "ms", 1e3),
                                   ("Adam step alone", step, "ms", 1e3)):
        f, q = res["funcflux"], res["numpy"]
        print(f"{name:28s}{f[0] * scale:10.2f}{unit}{q[0] * scale:10.2f}{unit}"
              f"{f[0] / q[0]:7.2f}x  ; {f[1] / q[1]:.2f}x median")
    h, q = epoch["np loss"], epoch["numpy"]
    print(f"{'epoch, loss in plain NumPy':28s}{h[0] * 1e3:10.2f}ms{q[0] * 1e3:10.2f}ms"
          f"{h[0] / q[0]:7.2f}x  ; {h[1] / q[1]:.2f}x median  (ordinary np code, no nn layers)")
    h, q = epoch["hybrid"], epoch["numpy"]
    print(f"{'epoch, ff.grad + NumPy Adam':28s}{h[0] * 1e3:10.2f}ms{q[0] * 1e3:10.2f}ms"
          f"{h[0] / q[0]:7.2f}x  ; {h[1] / q[1]:.2f}x median  (the gradient's share)")
    f, q = small["funcflux"], small["numpy"]
    us = 1e6 / small_steps
    print(f"{'small MLP: optim.step Adam':28s}{f[0] * us:10.1f}us{q[0] * us:10.1f}us"
          f"{f[0] / q[0]:7.2f}x  ; {f[1] / q[1]:.2f}x median  (10-32-32-2, per step)")
    print("target: epoch ratio <= 1.2x; small-MLP step <= 1.3x")


if __name__ == "__main__":
    main()
