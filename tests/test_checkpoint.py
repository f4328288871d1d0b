"""ff.checkpoint: the same derivatives in every composition, and less memory in reverse mode."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import funcflux as ff

RNG = np.random.default_rng(0)


def block(x, w):
    return np.tanh(x @ w) * np.sin(x).sum()


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def loss(w, x, blk):
    h = x
    for _ in range(3):
        h = blk(h, w)
    return np.sum(h ** 2)


@pytest.fixture
def data():
    return RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=(2, 3))


def test_gradients_equal_in_every_composition(data):
    w, x = data
    ck = ff.checkpoint(block)
    close(loss(w, x, ck), loss(w, x, block))
    for argnums in (0, 1):
        close(ff.grad(loss, argnums=argnums)(w, x, ck), ff.grad(loss, argnums=argnums)(w, x, block))
    close(ff.hessian(lambda w: loss(w, x, ck))(w), ff.hessian(lambda w: loss(w, x, block))(w))
    close(ff.jacrev(ff.grad(lambda w: loss(w, x, ck)))(w),
          ff.jacrev(ff.grad(lambda w: loss(w, x, block)))(w))
    t = RNG.normal(size=w.shape)
    close(ff.jvp(lambda w: loss(w, x, ck), (w,), (t,))[1],
          ff.jvp(lambda w: loss(w, x, block), (w,), (t,))[1])
    xs = RNG.normal(size=(4, 2, 3))
    per = ff.vmap(ff.grad(lambda w, x: loss(w, x, ck)), in_axes=(None, 0))(w, xs)
    close(per, np.stack([ff.grad(loss)(w, x, block) for x in xs]))


def test_pytrees_and_static_arguments(data):
    w, x = data

    def layer(params, x, n, act):
        for _ in range(n):
            x = act(x @ params["w"] + params["b"])
        return x

    ck = ff.checkpoint(layer, static_argnums=(2, 3))
    params = {"w": w, "b": np.ones(3) * 0.1}
    f = lambda p, lay: np.sum(lay(p, x, 2, np.tanh) ** 2)
    g1, g2 = ff.grad(f)(params, ck), ff.grad(f)(params, layer)
    close(g1["w"], g2["w"])
    close(g1["b"], g2["b"])
    assert ck.__name__ == "layer"


def test_errors():
    with pytest.raises(NotImplementedError, match="policy"):
        ff.checkpoint(block, policy="dots_saveable")
    with pytest.raises(ValueError, match="non-negative"):
        ff.checkpoint(block, static_argnums=-1)
    assert ff.remat is ff.checkpoint


def _peak(f, *args):
    tracemalloc.start()
    try:
        f(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reverse_mode_keeps_the_block_inputs_only():
    """Twenty blocks of five elementwise layers on a 400 KB vector: without checkpoint
    the tape holds every intermediate (about 100 layers' arrays); with it, one input
    per block plus the tape of one block while the backward pass recomputes it."""
    x = RNG.normal(size=50_000)

    def blk(h):
        for _ in range(5):
            h = np.tanh(h * 1.01 + 0.01)
        return h

    def f(x, b):
        h = x
        for _ in range(20):
            h = b(h)
        return np.sum(h)

    ck = ff.checkpoint(blk)
    close(ff.grad(f)(x, ck), ff.grad(f)(x, blk))
    plain = _peak(ff.grad(f), x, blk)
    saved = _peak(ff.grad(f), x, ck)
    assert saved < 0.4 * plain, (saved, plain)
