"""Activations: values and derivatives against their definitions, kinks, stability at |x| = 1000."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn
from funcflux.test_util import check_grads

X = np.array([-2.5, -0.7, -0.2, 0.3, 0.9, 2.2])  # away from every kink
R2 = np.random.default_rng(2)

SIG = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731  (reference formulas, fine at moderate x)
ALPHA, SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

# name -> (function, reference value, reference derivative)
DEFS = {
    "relu": (nn.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "sigmoid": (nn.sigmoid, SIG, lambda x: SIG(x) * (1 - SIG(x))),
    "logsigmoid": (nn.logsigmoid, lambda x: np.log(SIG(x)), lambda x: 1 - SIG(x)),
    "tanh": (nn.tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "softplus": (nn.softplus, lambda x: np.log1p(np.exp(x)), SIG),
    "softsign": (nn.softsign, lambda x: x / (1 + abs(x)), lambda x: 1 / (1 + abs(x)) ** 2),
    "gelu": (nn.gelu,
             lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
             None),
    "leakyrelu": (nn.leakyrelu, lambda x: np.where(x > 0, x, 0.01 * x),
                  lambda x: np.where(x > 0, 1.0, 0.01)),
    "elu": (nn.elu, lambda x: np.where(x > 0, x, np.exp(x) - 1),
            lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "selu": (nn.selu, lambda x: SCALE * np.where(x > 0, x, ALPHA * (np.exp(x) - 1)),
             lambda x: SCALE * np.where(x > 0, 1.0, ALPHA * np.exp(x))),
    "swish": (nn.swish, lambda x: x * SIG(x), lambda x: SIG(x) + x * SIG(x) * (1 - SIG(x))),
    "hardtanh": (nn.hardtanh, lambda x: np.clip(x, -1, 1), lambda x: (abs(x) <= 1) * 1.0),
}


def _grad(f, x):
    return ff.grad(lambda x: np.sum(f(x)))(x)


@pytest.mark.parametrize("name", sorted(DEFS))
def test_value_and_derivative_match_definition(name):
    f, ref, dref = DEFS[name]
    np.testing.assert_allclose(f(X), ref(X), rtol=1e-12, atol=1e-12)
    if dref is not None:
        np.testing.assert_allclose(_grad(f, X), dref(X), rtol=1e-10, atol=1e-12)
    check_grads(f, (X,), order=2)


def test_gelu_is_close_to_exact_gelu():
    for x in np.linspace(-4, 4, 33):
        exact = 0.5 * x * (1 + math.erf(x / math.sqrt(2)))
        assert abs(float(nn.gelu(np.array(x))) - exact) < 1e-3


def test_kinks_take_flux_derivatives():
    z = np.zeros(1)
    assert _grad(nn.relu, z)[0] == 0.0
    assert _grad(nn.leakyrelu, z)[0] == 0.01
    assert _grad(functools.partial(nn.leakyrelu, a=0.2), z)[0] == pytest.approx(0.2)
    assert _grad(nn.elu, z)[0] == 1.0
    np.testing.assert_array_equal(_grad(nn.hardtanh, np.array([-1.0, 1.0, 1.5])), [1, 1, 0])


def test_relu_primitive_values_derivatives_and_dtypes():
    x = np.array([-np.inf, -1.0, -0.0, 0.0, 2.0, np.inf, np.nan])
    np.testing.assert_array_equal(nn.relu(x), [0, 0, 0, 0, 2, np.inf, np.nan])
    np.testing.assert_array_equal(_grad(nn.relu, x[1:-2]), [0, 0, 0, 1])
    x32 = X.astype(np.float32)
    assert nn.relu(x32).dtype == np.float32 and _grad(nn.relu, x32).dtype == np.float32
    _, t = ff.jvp(nn.relu, (x32,), (np.ones_like(x32),))
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t, X > 0)
    # piecewise linear: the second derivative is zero away from 0 (and taken as 0 at it)
    np.testing.assert_array_equal(ff.hessian(lambda x: np.sum(nn.relu(x) * 3.0))(X), 0)
    np.testing.assert_allclose(ff.grad(ff.grad(lambda x: nn.relu(x) * x))(2.0), 2.0)
    # lists and Python numbers, as for NumPy functions
    np.testing.assert_array_equal(nn.relu([-1.0, 3.0]), [0.0, 3.0])
    assert float(nn.relu(-2.0)) == 0.0
    # vmap of grad against the loop
    xs = R2.normal(size=(3, 4))
    np.testing.assert_array_equal(ff.vmap(lambda x: _grad(nn.relu, x), in_axes=1)(xs),
                                  [_grad(nn.relu, xs[:, j]) for j in range(4)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(DEFS))
def test_stable_at_1000(name, dtype):
    f = DEFS[name][0]
    x = np.array([-1000.0, 1000.0], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v = f(x)
        g = _grad(f, x)
    assert v.dtype == dtype and g.dtype == dtype
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    # The limits: value and slope of each function far out on either side.
    lim = {"relu": ([0, 1000], [0, 1]), "sigmoid": ([0, 1], [0, 0]),
           "logsigmoid": ([-1000, 0], [1, 0]), "tanh": ([-1, 1], [0, 0]),
           "softplus": ([0, 1000], [0, 1]), "softsign": ([-0.999001, 0.999001], [1e-6, 1e-6]),
           "gelu": ([0, 1000], [0, 1]), "leakyrelu": ([-10, 1000], [0.01, 1]),
           "elu": ([-1, 1000], [0, 1]), "selu": ([-SCALE * ALPHA, SCALE * 1000], [0, SCALE]),
           "swish": ([0, 1000], [0, 1]), "hardtanh": ([-1, 1], [0, 0])}[name]
    np.testing.assert_allclose(v, lim[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, lim[1], rtol=1e-3, atol=1e-6)


def test_sigmoid_and_softplus_accurate_in_the_tails():
    x = np.array([-40.0, 40.0])
    np.testing.assert_allclose(nn.sigmoid(x), [np.exp(-40.0), 1.0], rtol=1e-12)
    np.testing.assert_allclose(nn.softplus(x), [np.exp(-40.0), 40.0], rtol=1e-12)


def test_softmax_family():
    x = np.array([[1.0, 2.0, 3.0], [-1000.0, 0.0, 1000.0]])
    e = np.exp(x[0] - 3)
    np.testing.assert_allclose(nn.softmax(x)[0], e / e.sum())
    np.testing.assert_allclose(nn.softmax(x)[1], [0, 0, 1])
    np.testing.assert_allclose(nn.logsoftmax(x)[1], [-2000, -1000, 0])
    np.testing.assert_allclose(nn.softmax(x, axis=0).sum(axis=0), [1, 1, 1])
    assert float(nn.logsumexp(np.array([1000.0, 1000.0]))) == pytest.approx(1000 + np.log(2))
    assert nn.logsumexp(x, axis=1, keepdims=True).shape == (2, 1)
    # d logsumexp = softmax, exactly, even at |x| = 1000
    g = ff.grad(lambda x: np.sum(nn.logsumexp(x, axis=1)))(x)
    np.testing.assert_allclose(g, nn.softmax(x))
    assert np.all(np.isfinite(ff.grad(lambda x: np.sum(nn.logsoftmax(x) ** 2))(x)))
    check_grads(lambda x: nn.softmax(x), (X.reshape(2, 3),), order=2)
    check_grads(lambda x: nn.logsoftmax(x, axis=0), (X.reshape(2, 3),), order=2)


def test_activations_preserve_float32_and_vmap():
    x = X.astype(np.float32).reshape(2, 3)
    for name, (f, _, _) in DEFS.items():
        assert f(x).dtype == np.float32, name
        np.testing.assert_allclose(ff.vmap(f)(x), f(x), rtol=1e-6)
