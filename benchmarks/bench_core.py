"""Core benchmarks: funcflux against hand-written NumPy, measured in the same run.

Run from the repository root (after ``pip install .``, or with the repo on ``sys.path``)::

    python benchmarks/bench_core.py            # full run, a few minutes on 2 cores
    python benchmarks/bench_core.py --quick    # smoke run: every workload once, seconds
    python benchmarks/bench_core.py --only a,d # some workloads only

Workloads (each row prints a ratio to NumPy measured in this run, and a target):

  a  one SGD step of a 784-256-10 relu MLP, softmax cross-entropy, batch 256, float32,
     against a hand-written NumPy step: the model as funcflux users write it
     (``nn.Chain(nn.Dense(784, 256, nn.relu), nn.Dense(256, 10))`` and
     ``losses.logitcrossentropy``), ``ff.grad`` + ``ff.tree.map`` update. Row a-np is
     the same step with the model and loss written in ordinary NumPy inside the loss.
  b  reverse-mode cost per primitive: grad of a chain of 1,000 elementwise ops on a
     length-8 vector, in microseconds per op (plain NumPy's forward per op for context).
  c  the MLP forward outside any transform, written with ``funcflux.numpy`` functions
     and called on plain arrays, against the same code written with ``numpy``.
  d  per-example gradients of the MLP loss for 128 examples with
     ``ff.vmap(ff.grad(loss), in_axes=(None, 0, 0))`` against a hand-derived NumPy
     einsum version and against a Python loop of ``ff.grad``; the Hessian of
     ``sum(tanh(A @ x)**2)`` (x of length 100) against its closed form.

HIPS autograd, PyTorch (CPU, eager) and JAX (eager, no jit) are measured on the same
workloads when they are importable; none of them is needed. Timings interleave the
contenders round by round; a ratio is the median over rounds of the two times taken
back to back in that round, which cancels most of the load a busy machine puts on
both. When benchmarking a current NumPy on a machine
that sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, unset both for this command only::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_core.py
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np

try:
    import funcflux as ff
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import funcflux as ff
import funcflux.numpy as fnp

F32 = np.float32
LR = 0.01
N_IN, N_HID, N_OUT, BATCH = 784, 256, 10, 256
N_PER_EXAMPLE = 128
CHAIN_OPS = 1000
HESS_N = 100


# ----------------------------------------------------------------------------- timing
def measure(fns: dict[str, Callable[[], Any]], quick: bool, min_time: float = 0.05,
            rounds: int = 9) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per round: ``{name: [s, ...]}``.

    Each function is warmed up, given a call count that fills ``min_time`` per
    round, then the functions take turns round by round (interleaved, so that
    load from other processes falls on every contender alike).
    """
    numbers = {}
    for name, fn in fns.items():
        fn()  # warm up: caches, lazy imports, first-call allocations
        if quick:
            numbers[name] = 1
            continue
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        numbers[name] = max(1, int(min_time / once))
    n_rounds = 1 if quick else rounds
    samples: dict[str, list[float]] = {k: [] for k in fns}
    gc_was = gc.isenabled()
    for _ in range(n_rounds):
        for name, fn in fns.items():
            n = numbers[name]
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            dt = time.perf_counter() - t0
            if gc_was:
                gc.enable()
            samples[name].append(dt / n)
    return samples


def best(res: dict, k: str) -> float:
    """The fastest round: the best estimate of an absolute time on a busy machine."""
    return min(res[k])


def ratio(res: dict, k: str, base: str) -> float:
    """Median over rounds of ``k``'s time / ``base``'s time in the same round.

    Pairing samples taken seconds apart cancels load that comes and goes; a ratio
    of two minima does not (one lucky round of the baseline skews it).
    """
    return float(np.median([a / b for a, b in zip(res[k], res[base])]))


def min_ratio(res: dict, k: str, base: str) -> float:
    return best(res, k) / best(res, base)


# ----------------------------------------------------------------------------- peers
def load_peers(want: bool) -> dict[str, Any]:
    peers: dict[str, Any] = {}
    if not want:
        return peers
    try:
        import autograd  # noqa: F401
        import autograd.numpy  # noqa: F401
        peers["autograd"] = autograd
    except Exception:
        pass
    try:
        import torch
        peers["torch"] = torch
    except Exception:
        pass
    try:
        import jax
        jax.config.update("jax_enable_x64", True)  # float64 where the NumPy code is float64
        peers["jax"] = jax
    except Exception:
        pass
    return peers


def peer_version(name: str, mod: Any) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return getattr(mod, "__version__", "?")


def allocator(system: bool) -> str:
    """Apply funcflux's opt-in allocator setting unless ``system``; a line saying which.

    Every contender runs in this one process, so the NumPy baselines get the same
    allocator as funcflux. ``--system-malloc`` measures with glibc's defaults.
    """
    if system:
        return "allocator: glibc's defaults (--system-malloc)"
    on = ff.tune_allocator()
    return ("allocator: ff.tune_allocator() applied (freed memory stays in the process; "
            "--system-malloc for glibc's defaults)" if on else
            "allocator: the system's (ff.tune_allocator() does not apply here)")


def blas_info() -> tuple[str, int | None]:
    """A description of the BLAS NumPy uses, and its thread count (threadpoolctl if present)."""
    try:
        from threadpoolctl import threadpool_info
        for d in threadpool_info():
            if d.get("user_api") == "blas":
                desc = (f"{d.get('internal_api')} {d.get('version')} "
                        f"({d.get('architecture', '?')} kernel, {d.get('num_threads')} threads)")
                return desc, d.get("num_threads")
    except Exception:
        pass
    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        b = cfg["Build Dependencies"]["blas"]
        return f"{b.get('name')} {b.get('version')} (threadpoolctl not installed)", None
    except Exception:
        return "unknown (threadpoolctl not installed)", None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- the MLP
def init_mlp(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "W1": (rng.standard_normal((N_IN, N_HID)) * np.sqrt(2.0 / N_IN)).astype(F32),
        "b1": np.zeros(N_HID, F32),
        "W2": (rng.standard_normal((N_HID, N_OUT)) * np.sqrt(1.0 / N_HID)).astype(F32),
        "b2": np.zeros(N_OUT, F32),
    }


def loss(params: dict, x: np.ndarray, y: np.ndarray) -> Any:
    """Mean softmax cross-entropy of the MLP: ordinary NumPy, differentiated by funcflux.

    Works for a batch (x of shape (n, 784), y of shape (n,)) and for one example
    (x of shape (784,), y a 0-d int array), which is what vmap hands it.
    """
    h = np.maximum(x @ params["W1"] + params["b1"], 0)
    z = h @ params["W2"] + params["b2"]
    s = z - np.max(z, axis=-1, keepdims=True)
    logp = s - np.log(np.sum(np.exp(s), axis=-1, keepdims=True))
    onehot = y[..., None] == np.arange(N_OUT)
    return -np.sum(logp * onehot) / y.size


def ff_sgd_step(params: dict, x: np.ndarray, y: np.ndarray) -> dict:
    g = ff.grad(loss)(params, x, y)
    return ff.tree.map(lambda w, gw: w - LR * gw, params, g)


def np_dlogits(p: dict, x: np.ndarray, y: np.ndarray) -> tuple:
    """Hand-written forward pass to ``(h, dz)``: hidden activations and each example's
    d(loss)/d(logits) (softmax minus one-hot, not yet divided by the batch size)."""
    n = x.shape[0]
    h = x @ p["W1"]
    h += p["b1"]
    np.maximum(h, 0, out=h)
    z = h @ p["W2"]
    z += p["b2"]
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)  # softmax probabilities
    z[np.arange(n), y] -= 1
    return h, z


def np_grads(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Hand-written backward pass of ``loss``, the way a careful NumPy programmer writes it."""
    h, z = np_dlogits(p, x, y)
    z /= x.shape[0]  # dloss/dz of the mean
    dh = z @ p["W2"].T
    dh *= h > 0
    return {"W1": x.T @ dh, "b1": dh.sum(axis=0), "W2": h.T @ z, "b2": z.sum(axis=0)}


def np_sgd_step(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    for k, g in np_grads(p, x, y).items():
        p[k] -= LR * g
    return p


def forward(m: Any, p: dict, x: np.ndarray) -> Any:
    """The MLP's log-probabilities, written against the namespace ``m``.

    ``m`` is numpy, funcflux.numpy or jax.numpy.
    """
    h = m.maximum(m.matmul(x, p["W1"]) + p["b1"], 0)
    z = m.matmul(h, p["W2"]) + p["b2"]
    s = z - m.max(z, axis=-1, keepdims=True)
    return s - m.log(m.sum(m.exp(s), axis=-1, keepdims=True))


def np_per_example_grads(p: dict, x: np.ndarray, y: np.ndarray) -> tuple:
    """Per-example gradients of ``loss`` derived by hand: one einsum per weight."""
    h, z = np_dlogits(p, x, y)  # each example's own loss: no 1/n
    dh = z @ p["W2"].T
    dh *= h > 0
    return (np.einsum("bi,bj->bij", x, dh), dh, np.einsum("bi,bj->bij", h, z), z)


# ----------------------------------------------------------------------------- the chain
def chain(m: Any, x: Any, n_ops: int = CHAIN_OPS) -> Any:
    """``n_ops`` cheap elementwise ops, cycling sin, tanh, scale, shift."""
    for _ in range(n_ops // 4):
        x = m.sin(x)
        x = m.tanh(x)
        x = x * 1.001
        x = x + 0.1
    return x


# ----------------------------------------------------------------------------- rows
class Table:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, key: str, what: str, value: float, unit: str, target: str | None = None,
            met: bool | None = None, median: float | None = None, peers: dict | None = None,
            note: str = "") -> None:
        self.rows.append(dict(key=key, what=what, value=value, unit=unit, target=target,
                              met=met, median=median, peers=peers or {}, note=note))


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:8.1f} us"
    if s < 1.0:
        return f"{s * 1e3:8.2f} ms"
    return f"{s:8.2f} s "


def init_model(p: dict) -> Any:
    """The same MLP as an idiomatic funcflux model holding the values of ``p``, in the
    memory layout ``nn.Dense`` gives its weights (``(out, in)``, column-major)."""
    from funcflux import nn
    return nn.Chain(nn.Dense.from_arrays(p["W1"].T.copy(order="F"), p["b1"].copy(), nn.relu),
                    nn.Dense.from_arrays(p["W2"].T.copy(order="F"), p["b2"].copy()))


def model_loss(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """``loss`` for the model: nn layers and ``losses.logitcrossentropy`` on integer labels."""
    return ff.losses.logitcrossentropy(model(x), y)


def ff_model_step(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    g = ff.grad(model_loss)(model, x, y)
    return ff.tree.map(lambda w, gw: w - LR * gw, model, g)


def bench_a(table: Table, quick: bool, peers: dict, rng: np.random.Generator) -> None:
    p0 = init_mlp(rng)
    x = rng.standard_normal((BATCH, N_IN)).astype(F32)
    y = rng.integers(0, N_OUT, BATCH)
    m0 = init_model(p0)

    # Same gradients before timing anything: a benchmark of a wrong answer is worthless.
    g_ff = ff.grad(loss)(p0, x, y)
    g_m = ff.grad(model_loss)(m0, x, y)
    g_np = np_grads(p0, x, y)
    as_model = {"W1": g_m.layers[0].weight.T, "b1": g_m.layers[0].bias,
                "W2": g_m.layers[1].weight.T, "b2": g_m.layers[1].bias}
    for k in p0:
        for g in (g_ff, as_model):
            assert g[k].dtype == F32, (k, g[k].dtype)
            np.testing.assert_allclose(g[k], g_np[k], rtol=2e-3, atol=2e-5)

    st_ff = {"p": dict(p0), "m": m0}
    st_np = {"p": {k: v.copy() for k, v in p0.items()}}

    def run_model() -> None:
        st_ff["m"] = ff_model_step(st_ff["m"], x, y)

    def run_ff() -> None:
        st_ff["p"] = ff_sgd_step(st_ff["p"], x, y)

    def run_np() -> None:
        np_sgd_step(st_np["p"], x, y)

    fns: dict[str, Callable[[], Any]] = {"funcflux": run_model, "funcflux (np loss)": run_ff,
                                         "numpy": run_np}
    fns.update(peer_mlp_steps(peers, p0, x, y))
    res = measure(fns, quick)
    own = ("funcflux", "funcflux (np loss)", "numpy")
    for key, name, what in (
            ("a", "funcflux", "SGD step, MLP 784-256-10 as nn.Chain(nn.Dense...) + "
                              "losses.logitcrossentropy, batch 256, f32 (time / NumPy)"),
            ("a-np", "funcflux (np loss)", "the same step with the model and loss written in "
                                           "ordinary NumPy (np.maximum, x @ W...)")):
        r = ratio(res, name, "numpy")
        peer_keys = [k for k in res if k not in own and k.startswith("torch (nn)") == (key == "a")]
        table.add(key, what, r, "x", "<= 1.15", r <= 1.15, min_ratio(res, name, "numpy"),
                  {k.replace(" (nn)", ""): ratio(res, k, "numpy") for k in peer_keys},
                  note=f"funcflux {fmt_time(best(res, name)).strip()}, "
                       f"NumPy {fmt_time(best(res, 'numpy')).strip()} per step (fastest rounds)")


def peer_mlp_steps(peers: dict, p0: dict, x: np.ndarray, y: np.ndarray) -> dict:
    fns: dict[str, Callable[[], Any]] = {}
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp

        def ag_loss(p: dict, x: Any, y: Any) -> Any:
            h = anp.maximum(anp.dot(x, p["W1"]) + p["b1"], 0)
            z = anp.dot(h, p["W2"]) + p["b2"]
            s = z - anp.max(z, axis=-1, keepdims=True)
            logp = s - anp.log(anp.sum(anp.exp(s), axis=-1, keepdims=True))
            onehot = y[..., None] == anp.arange(N_OUT)
            return -anp.sum(logp * onehot) / y.size

        ag_grad = autograd.grad(ag_loss)
        st = {"p": dict(p0)}

        def run_ag() -> None:
            g = ag_grad(st["p"], x, y)
            st["p"] = {k: st["p"][k] - LR * g[k] for k in st["p"]}
        fns["autograd"] = run_ag
    if "torch" in peers:
        torch = peers["torch"]
        tp = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in p0.items()}
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        ar = torch.arange(N_OUT)
        names = list(tp)

        def run_torch() -> None:
            h = torch.relu(tx @ tp["W1"] + tp["b1"])
            z = h @ tp["W2"] + tp["b2"]
            s = z - z.max(dim=-1, keepdim=True).values
            logp = s - torch.log(torch.exp(s).sum(dim=-1, keepdim=True))
            lv = -(logp * (ty[:, None] == ar)).sum() / ty.numel()
            gs = torch.autograd.grad(lv, [tp[k] for k in names])
            with torch.no_grad():
                for k, g in zip(names, gs):
                    tp[k].sub_(LR * g)
        fns["torch"] = run_torch

        # The idiomatic PyTorch step for row a: F.linear, F.relu, F.cross_entropy.
        F = torch.nn.functional
        tw = {"W1": torch.from_numpy(np.ascontiguousarray(p0["W1"].T)).requires_grad_(),
              "b1": torch.from_numpy(p0["b1"].copy()).requires_grad_(),
              "W2": torch.from_numpy(np.ascontiguousarray(p0["W2"].T)).requires_grad_(),
              "b2": torch.from_numpy(p0["b2"].copy()).requires_grad_()}

        def run_torch_nn() -> None:
            z = F.linear(F.relu(F.linear(tx, tw["W1"], tw["b1"])), tw["W2"], tw["b2"])
            gs = torch.autograd.grad(F.cross_entropy(z, ty), [tw[k] for k in names])
            with torch.no_grad():
                for k, g in zip(names, gs):
                    tw[k].sub_(LR * g)
        fns["torch (nn)"] = run_torch_nn
    if "jax" in peers:
        jax = peers["jax"]
        jnp = jax.numpy

        def jx_loss(p: dict, x: Any, y: Any) -> Any:  # ``loss`` in jax.numpy
            return -jnp.sum(forward(jnp, p, x) * (y[..., None] == jnp.arange(N_OUT))) / y.size

        jgrad = jax.grad(jx_loss)
        jst = {"p": {k: jnp.asarray(v) for k, v in p0.items()}}
        jxx, jyy = jnp.asarray(x), jnp.asarray(y)

        def run_jax() -> None:
            g = jgrad(jst["p"], jxx, jyy)
            jst["p"] = jax.tree_util.tree_map(lambda w, gw: w - LR * gw, jst["p"], g)
            jax.block_until_ready(jst["p"])
        fns["jax (eager)"] = run_jax
    return fns


def bench_b(table: Table, quick: bool, peers: dict, rng: np.random.Generator) -> None:
    x = rng.standard_normal(8)
    chain_loss = lambda v: np.sum(chain(np, v))
    gfun = ff.grad(chain_loss)
    fns: dict[str, Callable[[], Any]] = {"funcflux": lambda: gfun(x),
                                         "numpy": lambda: chain(np, x)}
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp
        agf = autograd.grad(lambda v: anp.sum(chain(anp, v)))
        fns["autograd"] = lambda: agf(x)
    if "torch" in peers:
        torch = peers["torch"]

        def run_torch() -> None:
            tv = torch.from_numpy(x).requires_grad_()
            torch.autograd.grad(chain(torch, tv).sum(), tv)
        fns["torch"] = run_torch
    if "jax" in peers:
        jax = peers["jax"]
        jgf = jax.grad(lambda v: jax.numpy.sum(chain(jax.numpy, v)))
        jxv = jax.numpy.asarray(x)
        fns["jax (eager)"] = lambda: jax.block_until_ready(jgf(jxv))
    res = measure(fns, quick, min_time=0.1, rounds=7)
    per = {k: best(res, k) / CHAIN_OPS * 1e6 for k in res}
    table.add("b", f"grad of a {CHAIN_OPS}-op elementwise chain, len-8 f64 (us per op, fwd+bwd)",
              per["funcflux"], "us/op", "<= 5", per["funcflux"] <= 5.0,
              float(np.median(res["funcflux"])) / CHAIN_OPS * 1e6,
              {k: per[k] for k in per if k not in ("funcflux", "numpy")},
              note=f"plain NumPy forward: {per['numpy']:.2f} us/op; peers in us/op")


def bench_c(table: Table, quick: bool, peers: dict, rng: np.random.Generator) -> None:
    p = init_mlp(rng)
    x = rng.standard_normal((BATCH, N_IN)).astype(F32)
    np.testing.assert_allclose(forward(fnp, p, x), forward(np, p, x), rtol=1e-6)
    res = measure({"funcflux": lambda: forward(fnp, p, x), "numpy": lambda: forward(np, p, x)},
                  quick)
    r = ratio(res, "funcflux", "numpy")
    table.add("c", "MLP forward outside transforms, fnp.* on plain arrays (time / np.*)",
              r, "x", "< 1.10", r < 1.10, min_ratio(res, "funcflux", "numpy"),
              note=f"NumPy {fmt_time(best(res, 'numpy')).strip()}; ordinary np code is NumPy itself (1.00)")


def bench_d(table: Table, quick: bool, peers: dict, rng: np.random.Generator) -> None:
    p = init_mlp(rng)
    x = rng.standard_normal((N_PER_EXAMPLE, N_IN)).astype(F32)
    y = rng.integers(0, N_OUT, N_PER_EXAMPLE)
    pe_grad = ff.vmap(ff.grad(loss), in_axes=(None, 0, 0))
    one_grad = ff.grad(loss)

    got = pe_grad(p, x, y)
    want = dict(zip(["W1", "b1", "W2", "b2"], np_per_example_grads(p, x, y)))
    for k in p:
        assert got[k].dtype == F32 and got[k].shape == (N_PER_EXAMPLE,) + p[k].shape
        np.testing.assert_allclose(got[k], want[k], rtol=2e-3, atol=2e-5)

    def loop() -> Any:
        gs = [one_grad(p, x[i], y[i]) for i in range(N_PER_EXAMPLE)]
        return {k: np.stack([g[k] for g in gs]) for k in p}

    fns: dict[str, Callable[[], Any]] = {"funcflux": lambda: pe_grad(p, x, y),
                                         "numpy": lambda: np_per_example_grads(p, x, y),
                                         "loop": loop}
    if "torch" in peers:
        torch = peers["torch"]
        tp = {k: torch.from_numpy(v) for k, v in p.items()}
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        ar = torch.arange(N_OUT)

        def t_loss(pp: dict, xi: Any, yi: Any) -> Any:
            h = torch.relu(xi @ pp["W1"] + pp["b1"])
            z = h @ pp["W2"] + pp["b2"]
            s = z - z.max(dim=-1, keepdim=True).values
            logp = s - torch.log(torch.exp(s).sum(dim=-1, keepdim=True))
            return -(logp * (yi[..., None] == ar)).sum()
        tpe = torch.func.vmap(torch.func.grad(t_loss), in_dims=(None, 0, 0))
        fns["torch"] = lambda: tpe(tp, tx, ty)
    if "jax" in peers:
        jax = peers["jax"]
        jnp = jax.numpy

        def j_loss(pp: dict, xi: Any, yi: Any) -> Any:  # one example's loss in jax.numpy
            return -jnp.sum(forward(jnp, pp, xi) * (yi[..., None] == jnp.arange(N_OUT)))
        jpe = jax.vmap(jax.grad(j_loss), in_axes=(None, 0, 0))
        jp = {k: jnp.asarray(v) for k, v in p.items()}
        jx, jy = jnp.asarray(x), jnp.asarray(y)
        fns["jax (eager)"] = lambda: jax.block_until_ready(jpe(jp, jx, jy))
    res = measure(fns, quick, min_time=0.1, rounds=7)
    r = ratio(res, "funcflux", "numpy")
    table.add("d1", f"per-example grads, MLP, {N_PER_EXAMPLE} examples, vmap(grad) (time / NumPy einsum)",
              r, "x", "<= 2", r <= 2.0, min_ratio(res, "funcflux", "numpy"),
              {k: ratio(res, k, "numpy") for k in res if k not in ("funcflux", "numpy", "loop")},
              note=f"funcflux {fmt_time(best(res, 'funcflux')).strip()}, "
                   f"NumPy {fmt_time(best(res, 'numpy')).strip()}")
    speedup = ratio(res, "loop", "funcflux")
    table.add("d2", f"per-example grads: speed-up of vmap(grad) over a loop of {N_PER_EXAMPLE} grads",
              speedup, "x faster", ">= 10", speedup >= 10.0, min_ratio(res, "loop", "funcflux"),
              note=f"loop {fmt_time(best(res, 'loop')).strip()}")

    # Hessian of sum(tanh(A x)^2): H = A^T diag(2 (1 - t^2)(1 - 3 t^2)) A with t = tanh(A x).
    A = rng.standard_normal((HESS_N, HESS_N)) / np.sqrt(HESS_N)
    xv = rng.standard_normal(HESS_N)
    f = lambda v: np.sum(np.tanh(A @ v) ** 2)
    hess = ff.hessian(f)

    def closed() -> Any:
        t = np.tanh(A @ xv)
        t2 = t * t
        return A.T @ ((2.0 * (1.0 - t2) * (1.0 - 3.0 * t2))[:, None] * A)

    np.testing.assert_allclose(hess(xv), closed(), rtol=1e-8, atol=1e-10)
    hfns: dict[str, Callable[[], Any]] = {"funcflux": lambda: hess(xv), "numpy": closed}
    if "autograd" in peers:
        import autograd
        import autograd.numpy as anp
        agh = autograd.hessian(lambda v: anp.sum(anp.tanh(anp.dot(A, v)) ** 2))
        hfns["autograd"] = lambda: agh(xv)
    if "torch" in peers:
        torch = peers["torch"]
        tA, tx = torch.from_numpy(A), torch.from_numpy(xv)
        th = torch.func.hessian(lambda v: torch.sum(torch.tanh(tA @ v) ** 2))
        hfns["torch"] = lambda: th(tx)
    if "jax" in peers:
        jax = peers["jax"]
        jnp = jax.numpy
        jA, jx = jnp.asarray(A), jnp.asarray(xv)
        jh = jax.hessian(lambda v: jnp.sum(jnp.tanh(jA @ v) ** 2))
        hfns["jax (eager)"] = lambda: jax.block_until_ready(jh(jx))
    hres = measure(hfns, quick)
    hr = ratio(hres, "funcflux", "numpy")
    table.add("d3", f"hessian of sum(tanh(A @ x)**2), x of length {HESS_N}, f64 (time / closed form)",
              hr, "x", "<= 3", hr <= 3.0, min_ratio(hres, "funcflux", "numpy"),
              {k: ratio(hres, k, "numpy") for k in hres if k not in ("funcflux", "numpy")},
              note=f"funcflux {fmt_time(best(hres, 'funcflux')).strip()}, "
                   f"closed form {fmt_time(best(hres, 'numpy')).strip()}")


BENCHES = {"a": bench_a, "b": bench_b, "c": bench_c, "d": bench_d}


# ----------------------------------------------------------------------------- report
def header(peers: dict, blas: str) -> list[str]:
    lines = [
        f"funcflux {ff.__version__} core benchmarks, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {platform.platform()}; CPU: {cpu_model()}; {os.cpu_count()} logical CPUs",
        f"python {platform.python_version()}, numpy {np.__version__}; BLAS: {blas}",
    ]
    env = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                             "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
           if k in os.environ]
    if env:
        lines.append("environment: " + ", ".join(env))
    lines.append("peers: " + (", ".join(f"{k} {peer_version(k, m)}" for k, m in peers.items())
                              if peers else "none importable (autograd, torch, jax are optional)"))
    return lines


def render(table: Table, peers: dict) -> list[str]:
    names = [("autograd", "autograd"), ("torch", "torch"), ("jax (eager)", "jax eager")]
    shown = [(k, lbl) for k, lbl in names if any(k in r["peers"] for r in table.rows)]
    cols = ["", "workload", "funcflux", "alt", "target", "met"] + [lbl for _, lbl in shown]
    out = []
    body = []
    for r in table.rows:
        val = f"{r['value']:.2f} {r['unit']}"
        med = f"{r['median']:.2f}" if r["median"] is not None else ""
        met = "" if r["met"] is None else ("yes" if r["met"] else "MISSED")
        peer_cells = []
        for k, _ in shown:
            v = r["peers"].get(k)
            peer_cells.append("" if v is None else f"{v:.2f}")
        body.append([r["key"], r["what"], val, med, r["target"] or "", met] + peer_cells)
    widths = [max(len(str(row[i])) for row in body + [cols]) for i in range(len(cols))]
    out.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    out.append("  ".join("-" * w for w in widths))
    for row in body:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    out.append("")
    out.append("Ratios (and the funcflux and peer columns of every row but b) are medians over "
               "rounds of time / baseline,")
    out.append("each round timing every contender back to back; 'alt' is the ratio of the fastest "
               "rounds. Row b is")
    out.append("the fastest round in us per op ('alt': the median round); its peer columns are "
               "us per op too.")
    for r in table.rows:
        if r["note"]:
            out.append(f"  {r['key']}: {r['note']}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="one timed call per contender: a smoke run, not a measurement")
    ap.add_argument("--only", default="a,b,c,d", help="comma-separated workloads (a,b,c,d)")
    ap.add_argument("--no-peers", action="store_true", help="skip autograd, torch and jax")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's allocator settings alone (no ff.tune_allocator())")
    args = ap.parse_args(argv)
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    bad = [k for k in only if k not in BENCHES]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {sorted(BENCHES)}")

    blas, threads = blas_info()
    peers = load_peers(not args.no_peers)
    if "torch" in peers:
        peers["torch"].set_num_threads(threads or os.cpu_count() or 1)
    for line in header(peers, blas):
        print(line)
    print(allocator(args.system_malloc))
    if args.quick:
        print("--quick: a smoke run; figures are single calls, not measurements")
    print(flush=True)

    rng = np.random.default_rng(0)
    table = Table()
    for k in only:
        t0 = time.perf_counter()
        BENCHES[k](table, args.quick, peers, rng)
        print(f"[{k} done in {time.perf_counter() - t0:.1f} s]", flush=True)
    if args.quick:  # single calls on a cold machine say nothing about targets
        for r in table.rows:
            r["met"] = None
    print()
    for line in render(table, peers):
        print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"header": header(peers, blas), "rows": table.rows}, fh, indent=1,
                      default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
