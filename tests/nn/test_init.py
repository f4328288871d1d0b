"""Initialisers: signature init(rng, shape, dtype), ranges and spreads, fans, reproducibility."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn

INITS = [nn.glorot_uniform, nn.glorot_normal, nn.kaiming_uniform, nn.kaiming_normal, nn.zeros,
         nn.ones, nn.normal(0.1), nn.uniform(0.3)]


@pytest.mark.parametrize("init", INITS, ids=lambda f: f.__name__)
def test_signature_shape_dtype(init):
    a = init(0, (4, 3))
    assert a.shape == (4, 3) and a.dtype == np.float32
    assert init(np.random.default_rng(0), (5,), np.float64).dtype == np.float64
    assert init(None, 7).shape == (7,)


@pytest.mark.parametrize("init", INITS[:4] + INITS[6:], ids=lambda f: f.__name__)
def test_reproducible_with_a_seed(init):
    np.testing.assert_array_equal(init(3, (6, 5)), init(3, (6, 5)))
    assert not np.array_equal(init(3, (6, 5)), init(4, (6, 5)))
    g = np.random.default_rng(0)
    assert not np.array_equal(init(g, (6, 5)), init(g, (6, 5)))  # a Generator advances


def test_fans_follow_pytorch_layout():
    assert nn.fans((10, 4)) == (4, 10)
    assert nn.fans((8, 3, 5, 5)) == (75, 200)
    assert nn.fans((6,)) == (6, 6)


def test_ranges_and_spreads():
    shape = (300, 200)  # fan_in 200, fan_out 300
    w = nn.glorot_uniform(0, shape, np.float64)
    lim = math.sqrt(6 / 500)
    assert np.abs(w).max() <= lim and np.abs(w).max() > 0.99 * lim
    std = nn.glorot_normal(0, shape, np.float64).std()
    assert std == pytest.approx(math.sqrt(2 / 500), rel=0.02)
    k = nn.kaiming_uniform(0, shape, np.float64)
    assert np.abs(k).max() <= math.sqrt(6 / 200)
    std = nn.kaiming_normal(0, shape, np.float64).std()
    assert std == pytest.approx(math.sqrt(2 / 200), rel=0.02)
    assert nn.normal(0.5, mean=1.0)(0, shape, np.float64).mean() == pytest.approx(1.0, abs=0.01)
    assert np.abs(nn.uniform(0.3)(0, shape)).max() <= 0.3
    g = functools.partial(nn.glorot_uniform, gain=2.0)(0, shape, np.float64)
    assert np.abs(g).max() > lim  # the gain widens the range
    assert not nn.zeros(0, shape).any() and nn.ones(0, shape).all()


def test_layers_use_init_and_dtype():
    d = nn.Dense(3, 2, init=nn.ones, dtype=np.float64, rng=0)
    assert d.weight.dtype == np.float64 and d.weight.all() and d.bias.dtype == np.float64
    np.testing.assert_array_equal(nn.Dense(3, 2, rng=5).weight, nn.Dense(3, 2, rng=5).weight)
    seen = []
    nn.Dense(3, 2, init=lambda rng, shape, dtype: seen.append((shape, dtype)) or np.zeros(shape))
    assert seen == [((2, 3), np.float32)]


@pytest.mark.parametrize("init", INITS, ids=lambda f: f.__name__)
def test_a_key_draws_with_ff_random(init):
    k = ff.random.key(0)
    a = init(k, (6, 5))
    assert a.shape == (6, 5) and a.dtype == np.float32
    assert init(k, (6, 5), np.float64).dtype == np.float64
    np.testing.assert_array_equal(a, init(k, (6, 5)))  # same key, same array
    if init not in (nn.zeros, nn.ones):
        assert not np.array_equal(a, init(ff.random.key(1), (6, 5)))
        # vmap over keys: one array per key, as a loop
        keys = ff.random.split(k, 3)
        batched = ff.vmap(lambda k: init(k, (4, 3)))(keys)
        np.testing.assert_array_equal(batched, np.stack([init(kk, (4, 3)) for kk in keys]))


def test_key_draws_follow_their_definitions():
    k = ff.random.key(7)
    shape = (300, 200)
    lim = math.sqrt(6 / 500)
    np.testing.assert_array_equal(nn.glorot_uniform(k, shape, np.float64),
                                  ff.random.uniform(k, shape, np.float64, -lim, lim))
    np.testing.assert_allclose(nn.kaiming_normal(k, shape, np.float64),
                               ff.random.normal(k, shape, np.float64) * math.sqrt(2 / 200),
                               rtol=1e-15)
    w = nn.normal(0.5, mean=1.0)(k, shape, np.float64)
    assert w.mean() == pytest.approx(1.0, abs=0.01) and w.std() == pytest.approx(0.5, rel=0.02)
    assert np.abs(nn.uniform(0.3)(k, shape)).max() <= 0.3
    assert nn.glorot_normal(k, shape, np.float64).std() == pytest.approx(math.sqrt(2 / 500),
                                                                         rel=0.02)


def test_layers_take_a_key():
    k = ff.random.key(5)
    np.testing.assert_array_equal(nn.Dense(3, 2, rng=k).weight, nn.Dense(3, 2, rng=k).weight)
    assert not np.array_equal(nn.Dense(3, 2, rng=k).weight,
                              nn.Dense(3, 2, rng=ff.random.key(6)).weight)
    cell = nn.LSTMCell(4, 4, rng=k)  # two weights of one shape from one key: still different
    assert not np.array_equal(cell.weight_ih, cell.weight_hh)
    with pytest.raises(TypeError, match=r"traced random key.*ff.tree.stack"):
        ff.vmap(lambda k: nn.Dense(3, 2, rng=k))(ff.random.split(k, 2))
    with pytest.raises(TypeError, match=r"batch of random keys"):
        nn.glorot_uniform(ff.random.split(k, 2), (2, 2))
