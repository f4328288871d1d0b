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
- adam5k: five epochs of Adam (learning rate 1e-3) on 5,000 random MNIST-sized examples,
  batch 128 (bench_optim's workload, over five epochs), the 784-256-10 relu MLP as nn
  layers: the step (``ff.grad``, ``opt.update``, ``optim.apply_updates``) under ``jit``
  with the model and optimiser state donated, against bench_optim's hand-written
  backward pass and in-place Adam.
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

TARGETS = {"mlp": 1.3, "chain": 2.0, "hessian": 5.0, "mlp784": 1.0, "adam5k": 1.1,
           "trace": 30.0}
EPOCHS = 5


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


def adam5k(rng: np.random.Generator, n: int = 5000) -> tuple:
    """Five epochs of Adam: eager, jitted (model and state donated) and NumPy, as
    functions of nothing, plus a check that the three end at the same parameters."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_core as bc
    import bench_optim as bo
    from funcflux import optim
    x = rng.standard_normal((n, bc.N_IN)).astype(np.float32)
    y = rng.integers(0, bc.N_OUT, n)
    order = rng.permutation(n)
    batches = [(x[order[i:i + 128]], y[order[i:i + 128]]) for i in range(0, n, 128)]
    p0 = bc.init_mlp(rng)
    opt = optim.adam(bo.LR)

    def step(m, s, x, y):
        updates, s = opt.update(ff.grad(bc.model_loss)(m, x, y), s, m)
        return optim.apply_updates(m, updates), s
    jstep = ff.jit(step, donate_argnums=(0, 1))

    def run(step_fn):
        def epochs():
            m = bc.init_model(p0)  # fresh arrays: the jitted step overwrites its inputs
            s = opt.init(m)
            for _ in range(EPOCHS):
                for xb, yb in batches:
                    m, s = step_fn(m, s, xb, yb)
            return m
        return epochs

    def numpy_epochs():
        p = {k: a.copy() for k, a in p0.items()}
        mo = {k: np.zeros_like(a) for k, a in p.items()}
        v = {k: np.zeros_like(a) for k, a in p.items()}
        t = 0
        for _ in range(EPOCHS):
            for xb, yb in batches:
                t += 1
                bo.np_adam(p, bc.np_grads(p, xb, yb), mo, v, t)
        return p

    def check():
        a, b, c = bo.as_params(run(step)()), bo.as_params(run(jstep)()), numpy_epochs()
        for k in c:
            np.testing.assert_allclose(a[k], c[k], rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(b[k], c[k], rtol=1e-3, atol=1e-4)
    return run(step), run(jstep), numpy_epochs, check, (p0, batches)


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
            "hessian": lambda: jax.block_until_ready(jhess(xh)),
            "mlp784": _jax_mlp784, "adam5k": _jax_adam5k}


def _jax_loss():
    import jax
    import jax.numpy as jnp

    def loss(p, x, y):  # bench_core's loss (relu MLP, mean softmax cross-entropy)
        z = jnp.maximum(x @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - z[jnp.arange(z.shape[0]), y])
    return loss


def _jax_mlp784(p0: dict, x: np.ndarray, y: np.ndarray):
    """bench_core's SGD step under jax.jit, parameters donated, as a function of nothing."""
    import jax
    import jax.numpy as jnp
    loss, lr = _jax_loss(), 0.01
    step = jax.jit(lambda p, x, y: jax.tree_util.tree_map(
        lambda w, g: w - lr * g, p, jax.grad(loss)(p, x, y)), donate_argnums=0)
    box = {"p": {k: jnp.asarray(v) for k, v in p0.items()}}
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def run() -> None:
        box["p"] = jax.block_until_ready(step(box["p"], xj, yj))
    return run


def _jax_adam5k(p0: dict, batches: list):
    """Five epochs of the same Adam under jax.jit (Adam written out, as optax computes it)."""
    import jax
    import jax.numpy as jnp
    loss = _jax_loss()
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8

    def step(p, m, v, t, x, y):
        g = jax.grad(loss)(p, x, y)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = jax.tree_util.tree_map(lambda w, m, v: w - lr * (m / c1) / (jnp.sqrt(v / c2) + eps),
                                   p, m, v)
        return p, m, v
    jstep = jax.jit(step)
    jb = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches]

    def run():
        p = {k: jnp.asarray(a) for k, a in p0.items()}
        m = jax.tree_util.tree_map(jnp.zeros_like, p)
        v = jax.tree_util.tree_map(jnp.zeros_like, p)
        t = 0
        for _ in range(EPOCHS):
            for x, y in jb:
                t += 1
                p, m, v = jstep(p, m, v, jnp.float32(t), x, y)
        return jax.block_until_ready(p)
    return run


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
    c = {"base": lambda: npstep(p0, x, y), "eager": lambda: fstep(model, x, y), "jit": run_jit}
    if "mlp784" in jaxes:
        c["jax"] = jaxes["mlp784"](p0, x, y)
        c["jax"]()
    r = paired(c, "base", n, rounds)
    jx = f"{r['jax']:8.2f}x" if "jax" in r else f"{'-':>9}"
    ok = "yes" if r["jit"] <= TARGETS["mlp784"] else "MISSED"
    print(f"{'mlp784':<9}{r['eager']:8.2f}x{r['jit']:8.2f}x{jx}"
          f"{'<= ' + str(TARGETS['mlp784']):>9}  {ok}  (model donated)")
    # five epochs of Adam on 5,000 examples
    eager, jitted_epochs, numpy_epochs, check, (p0, batches) = adam5k(
        np.random.default_rng(1), n=640 if args.quick else 5000)
    check()  # also traces the jitted step (full and partial batch) outside the timing
    c = {"base": numpy_epochs, "eager": eager, "jit": jitted_epochs}
    if "adam5k" in jaxes:
        c["jax"] = jaxes["adam5k"](p0, batches)
        c["jax"]()
    r = paired(c, "base", 1, min(rounds, 5))
    jx = f"{r['jax']:8.2f}x" if "jax" in r else f"{'-':>9}"
    ok = "yes" if r["jit"] <= TARGETS["adam5k"] else "MISSED"
    print(f"{'adam5k':<9}{r['eager']:8.2f}x{r['jit']:8.2f}x{jx}"
          f"{'<= ' + str(TARGETS['adam5k']):>9}  {ok}  (model and state donated)")
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
