"""vmap over stacked layers (ensembles) agrees with a Python loop, forwards and backwards."""
from __future__ import annotations

import numpy as np

import funcflux as ff
from funcflux import losses, nn

R = np.random.default_rng(0)


def test_vmap_over_stacked_dense():
    members = [nn.Dense(5, 3, nn.tanh, rng=i) for i in range(8)]
    ens = ff.tree.stack(members)
    assert isinstance(ens, nn.Dense) and ens.weight.shape == (8, 3, 5)
    x = R.normal(size=(16, 5)).astype(np.float32)
    out = ff.vmap(lambda m, x: m(x), in_axes=(0, None))(ens, x)
    assert out.shape == (8, 16, 3) and out.dtype == np.float32
    for i, m in enumerate(members):
        np.testing.assert_allclose(out[i], m(x), rtol=1e-6, atol=1e-6)
    # each member on its own batch
    xs = R.normal(size=(8, 16, 5)).astype(np.float32)
    out2 = ff.vmap(lambda m, x: m(x))(ens, xs)
    for i, m in enumerate(members):
        np.testing.assert_allclose(out2[i], m(xs[i]), rtol=1e-6, atol=1e-6)


def test_grad_of_ensemble_loss_matches_loop():
    members = [nn.Chain(nn.Dense(4, 6, nn.relu, rng=i, dtype=np.float64),
                        nn.Dense(6, 3, rng=100 + i, dtype=np.float64)) for i in range(8)]
    ens = ff.tree.stack(members)
    x = R.normal(size=(10, 4))
    y = R.integers(0, 3, size=10)

    def loss(m):
        return losses.logitcrossentropy(m(x), y)
    g = ff.vmap(ff.grad(loss))(ens)
    assert isinstance(g, nn.Chain)
    for i, m in enumerate(members):
        gi = ff.grad(loss)(m)
        for a, b in zip(ff.tree.leaves(gi), ff.tree.leaves(ff.tree.unstack(g)[i])):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    # and the total loss through vmap: grad of the sum over members
    gs = ff.grad(lambda e: np.sum(ff.vmap(loss)(e)))(ens)
    for a, b in zip(ff.tree.leaves(gs), ff.tree.leaves(g)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
