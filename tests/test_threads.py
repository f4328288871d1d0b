"""Transforms in several threads at once: each trace belongs to its own thread's values."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import funcflux as ff


def _jobs():
    def poly(k):
        x = 0.1 * k + 0.5
        return lambda: float(ff.grad(lambda x: x ** 3 + k * x)(x)), 3 * x ** 2 + k

    def second(k):
        x = 0.05 * k - 0.3
        return lambda: float(ff.grad(ff.grad(lambda x: np.sin(x) * k))(x)), -np.sin(x) * k

    def vec(k):
        v = np.linspace(-1.0, 1.0, 5) * (k + 1)
        return (lambda: ff.grad(lambda v: np.sum(np.tanh(v) ** 2))(v),
                2 * np.tanh(v) * (1 - np.tanh(v) ** 2))

    def batched(k):
        xs = np.arange(4.0) + k
        return lambda: ff.vmap(ff.grad(lambda x: x ** 2 * k))(xs), 2 * xs * k

    def hvp(k):
        x = np.array([0.5, -0.25]) * (k + 1)
        f = lambda x: np.sum(x ** 4)
        return lambda: ff.jvp(ff.grad(f), (x,), (np.ones(2),))[1], 12 * x ** 2

    def confusion(k):
        return lambda: float(ff.grad(lambda x: x * ff.grad(lambda y: x * y + k)(1.0))(3.0 + k)), \
            2 * (3.0 + k)

    makers = [poly, second, vec, batched, hvp, confusion]
    return [makers[i % len(makers)](i) for i in range(48)]


def test_gradients_in_threads_are_correct():
    jobs = _jobs()
    barrier = threading.Barrier(8)

    def run(job):
        fn, want = job
        try:
            barrier.wait(timeout=5)  # start the first jobs together, to overlap their traces
        except threading.BrokenBarrierError:
            pass
        return [fn() for _ in range(3)], want

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, jobs))
    for got, want in results:
        for g in got:
            np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)


def test_threads_interleaving_inside_one_trace():
    # Each thread holds its tape open while the others trace: release the GIL mid-trace.
    ready = threading.Barrier(4)

    def work(k):
        def f(x):
            y = np.sin(x) * k
            ready.wait(timeout=5)  # every thread is now inside its own grad at once
            return np.sum(y * x)
        x = np.linspace(0.0, 1.0, 3) + k
        return ff.grad(f)(x), k * (np.cos(x) * x + np.sin(x))

    with ThreadPoolExecutor(max_workers=4) as pool:
        for got, want in pool.map(work, range(4)):
            np.testing.assert_allclose(got, want, rtol=1e-12)
