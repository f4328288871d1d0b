"""Staging (ff.jit) against eager funcflux and hand-written NumPy, in one run.

Run from the repository root::

    python benchmarks/bench_jit.py            # about 20 s
    python benchmarks/bench_jit.py --quick    # smoke run: every contender once

Rows (ratios to NumPy measured in the same run; each ratio is the median over rounds
of times taken back to back):

- mlp: an SGD step of a 10-32-32-2 tanh MLP with softmax cross-entropy, batch 32,
  float32 (time / a hand-written NumPy step).
- chain: ``grad`` of a 1,000-op elementwise chain on a length-8 vector (time / the
  NumPy forward pass alone, so the ratio is per op).
- hessian: ``hessian`` of ``sum(tanh(A @ x)**2)``, ``x`` of length 100, float64
  (time / the closed form ``A.T @ diag(d) @ A``).
- mlp784: bench_core's row a (an SGD step of the 784-256-10 MLP as nn layers, batch 256,
  float32) under ``jit`` with the model donated (``donate_argnums=0``: the update is
  written into the old parameters), against bench_core's hand-written NumPy step.
- trace: tracing and compiling the small MLP step once (time / one eager step).

JAX's ``jit`` is measured beside it on the same workloads when JAX is importable.
The BLAS runs on one thread (threadpoolctl, when installed) so that small matrix
products are not timed on thread start-up.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

try:
    import funcflux as ff
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import funcflux as ff

TARGETS = {"mlp": 1.3, "chain": 2.0, "hessian": 5.0, "mlp784": 1.0, "trace": 30.0}


def per_call(f, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t) / n


def paired(contenders: dict, base: str, n: int, rounds: int) -> dict:
    """Median over rounds of time(c) / time(base), every contender timed in every round."""
    ratios: dict = {k: [] for k in contenders}
    for _ in range(rounds):
        t = {k: per_call(f, n) for k, f in contenders.items()}
        for k in contenders:
            ratios[k].append(t[k] / t[base])
    return {k: statistics.median(v) for k, v in ratios.items()}


# -- workloads ------------------------------------------------------------------------
def mlp(rng: np.random.Generator) -> tuple:
    shapes = [(10, 32), (32,), (32, 32), (32,), (32, 2), (2,)]
    w = [(rng.normal(size=s) * 0.3).astype(np.float32) for s in shapes]
    x = rng.normal(size=(32, 10)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    rows = np.arange(32)

    def loss(p, x, y):
        h = np.tanh(x @ p[0] + p[1])
        h = np.tanh(h @ p[2] + p[3])
        z = h @ p[4] + p[5]
        z = z - z.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y])

    def step(p, x, y):
        g = ff.grad(loss)(p, x, y)
        return [a - 0.1 * b for a, b in zip(p, g)]

    def numpy_step(p, x, y):
        h1 = np.tanh(x @ p[0] + p[1])
        h2 = np.tanh(h1 @ p[2] + p[3])
        z = h2 @ p[4] + p[5]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        dz = e / e.sum(axis=1, keepdims=True)
        dz[rows, y] -= 1.0
        dz /= 32
        da2 = (dz @ p[4].T) * (1 - h2 * h2)
        da1 = (da2 @ p[2].T) * (1 - h1 * h1)
        g = [x.T @ da1, da1.sum(0), h1.T @ da2, da2.sum(0), h2.T @ dz, dz.sum(0)]
        return [a - 0.1 * b for a, b in zip(p, g)]

    return step, numpy_step, (w, x, y)


def chain(rng: np.random.Generator) -> tuple:
    x = rng.normal(size=8)

    def f(x):
        for _ in range(250):  # four primitives per round: sin, multiply, add, subtract...
            x = np.sin(x) * 1.01 + 0.1 - x * 0.5
        return np.sum(x)
    return ff.grad(f), f, (x,)


def hessian(rng: np.random.Generator) -> tuple:
    a = rng.normal(size=(100, 100)) / 10
    x = rng.normal(size=100)

    def f(x):
        return np.sum(np.tanh(a @ x) ** 2)

    def closed(x):
        t = np.tanh(a @ x)
        d = 2 * (1 - t * t) * (1 - 3 * t * t)
        return a.T @ (d[:, None] * a)
    return ff.hessian(f), closed, (x,)


def mlp784(rng: np.random.Generator) -> tuple:
    """bench_core's row a: the model step, and the NumPy step on the same values."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_core as bc
    p0 = bc.init_mlp(rng)
    x = rng.standard_normal((bc.BATCH, bc.N_IN)).astype(np.float32)
    y = rng.integers(0, bc.N_OUT, bc.BATCH)
    return bc.ff_model_step, bc.np_sgd_step, bc.init_model(p0), p0, x, y


def jax_versions(rng: np.random.Generator) -> dict:
    """The same workloads under jax.jit, when JAX is importable (else empty)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}
    jax.config.update("jax_enable_x64", True)
    _, _, (w, x, y) = mlp(rng)

    def jmlp_loss(p, x, y):
        h = jnp.tanh(x @ p[0] + p[1])
        h = jnp.tanh(h @ p[2] + p[3])
        z = h @ p[4] + p[5]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - z[jnp.arange(32), y])
    jstep = jax.jit(lambda p, x, y: [a - 0.1 * b for a, b in zip(p, jax.grad(jmlp_loss)(p, x, y))])
    pw = [jnp.asarray(v) for v in w]

    def jf(v):
        for _ in range(250):
            v = jnp.sin(v) * 1.01 + 0.1 - v * 0.5
        return jnp.sum(v)
    jchain = jax.jit(jax.grad(jf))
    a = jnp.asarray(rng.normal(size=(100, 100)) / 10)
    jhess = jax.jit(jax.hessian(lambda v: jnp.sum(jnp.tanh(a @ v) ** 2)))
    xc, xh = jnp.asarray(rng.normal(size=8)), jnp.asarray(rng.normal(size=100))
    return {"mlp": lambda: jax.block_until_ready(jstep(pw, x, y)),
            "chain": lambda: jax.block_until_ready(jchain(xc)),
            "hessian": lambda: jax.block_until_ready(jhess(xh))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="every contender once (smoke test)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    ff.tune_allocator()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    n_of = {"mlp": 200, "chain": 20, "hessian": 50}
    rounds = 1 if args.quick else args.rounds
    jaxes = {} if args.quick else jax_versions(np.random.default_rng(0))
    print(f"bench_jit: numpy {np.__version__}, {os.cpu_count()} CPUs, {rounds} rounds"
          f"{'' if jaxes else '; JAX not importable: no jax.jit column'}")
    print(f"{'row':<9}{'eager':>9}{'jit':>9}{'jax.jit':>9}{'target':>9}  met")
    step, numpy_step, margs = mlp(rng)
    for name, (fun, base, fargs) in {"mlp": (step, numpy_step, margs),
                                     "chain": chain(rng), "hessian": hessian(rng)}.items():
        jitted = ff.jit(fun)
        jitted(*fargs)  # trace outside the timing
        n = 1 if args.quick else n_of[name]
        c = {"base": lambda: base(*fargs), "eager": lambda: fun(*fargs),
             "jit": lambda: jitted(*fargs)}
        if name in jaxes:
            jaxes[name]()
            c["jax"] = jaxes[name]
        r = paired(c, "base", n, rounds)
        jx = f"{r['jax']:8.2f}x" if "jax" in r else f"{'-':>9}"
        ok = "yes" if r["jit"] <= TARGETS[name] else "MISSED"
        print(f"{name:<9}{r['eager']:8.2f}x{r['jit']:8.2f}x{jx}{'<= ' + str(TARGETS[name]):>9}  {ok}")
    # the large MLP, parameters donated
    fstep, npstep, model, p0, x, y = mlp784(rng)
    jitted = ff.jit(fstep, donate_argnums=0)
    state = {"m": jitted(model, x, y)}

    def run_jit() -> None:
        state["m"] = jitted(state["m"], x, y)
    n = 1 if args.quick else 20
    r = paired({"base": lambda: npstep(p0, x, y), "eager": lambda: fstep(model, x, y),
                "jit": run_jit}, "base", n, rounds)
    ok = "yes" if r["jit"] <= TARGETS["mlp784"] else "MISSED"
    print(f"{'mlp784':<9}{r['eager']:8.2f}x{r['jit']:8.2f}x{'-':>9}"
          f"{'<= ' + str(TARGETS['mlp784']):>9}  {ok}  (model donated)")
    # tracing and compiling, against one eager step
    traces = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ff.jit(step)(*margs)
        t1 = time.perf_counter()
        step(*margs)
        traces.append((t1 - t0) / (time.perf_counter() - t1))
    r = statistics.median(traces)
    print(f"{'trace':<9}{'':>9}{r:8.1f}x{'-':>9}{'<= ' + str(TARGETS['trace']):>9}  "
          f"{'yes' if r <= TARGETS['trace'] else 'MISSED'}  (trace + compile / one eager step)")


if __name__ == "__main__":
    main()
