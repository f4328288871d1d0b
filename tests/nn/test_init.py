"""Initialisers: signature init(rng, shape, dtype), ranges and spreads, fans, reproducibility."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

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
