"""Sampled signals: linspace, differences, gradient, convolution and interp against NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux.test_util import check_grads
from tests.ops.test_shape import _numpy_jacobian


def traced(f, *args):
    """``f(*args)`` computed on tracers (the value of ``vjp``), not by plain NumPy."""
    return ff.vjp(f, *args)[0]


RNG = np.random.default_rng(7)
M = RNG.normal(size=(4, 5))
V = RNG.normal(size=6)
K = np.array([0.5, -1.0, 2.0])

# Linear in their (first) argument: the Jacobian is NumPy's own function on basis vectors.
LINEAR = {
    "diff": (lambda x: np.diff(x), M),
    "diff-n3-axis0": (lambda x: np.diff(x, n=3, axis=0), M),
    "diff-prepend-append": (lambda x: np.diff(x, prepend=x[:, :1] * 2, append=0.0), M),
    "ediff1d": (lambda x: np.ediff1d(x, to_begin=x[1, :2], to_end=x[0]), M),
    "gradient": (lambda x: np.gradient(x, 0.5, axis=1, edge_order=2), M),
    "gradient-coords": (lambda x: np.gradient(x, [0.0, 0.5, 2.0, 2.5], axis=0), M),
    "gradient-coords-edge2": (lambda x: np.gradient(x, [0.0, 0.5, 2.0, 2.5], axis=0,
                                                    edge_order=2), M),
    "convolve-full": (lambda x: np.convolve(x, K), V),
    "convolve-same-short": (lambda x: np.convolve(K, x, "same"), V),
    "convolve-valid": (lambda x: np.convolve(x, K, mode="valid"), V),
    "correlate-valid": (lambda x: np.correlate(x, K), V),
    "correlate-same-long-v": (lambda x: np.correlate(K, x, "same"), V),
    "correlate-full": (lambda x: np.correlate(K, x, "full"), V),
    "interp-fp": (lambda fp: np.interp([-1.0, 0.2, 1.0, 1.7, 9.0], [0.0, 1.0, 2.0], fp), K),
}


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_signal_ops_match_numpy_with_exact_jacobians(name):
    f, x = LINEAR[name]
    want = f(x)
    out = traced(f, x)
    assert np.shape(out) == np.shape(want)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-14)
    jac = _numpy_jacobian(f, x)
    np.testing.assert_allclose(ff.jacrev(f)(x), jac, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ff.jacfwd(f)(x), jac, rtol=1e-13, atol=1e-14)
    xs = np.stack([x, 2 * x + 1], axis=0)
    np.testing.assert_allclose(ff.vmap(f)(xs), np.stack([f(xs[0]), f(xs[1])]), rtol=1e-13,
                               atol=1e-14)


@pytest.mark.parametrize("n,m", [(1, 1), (1, 4), (4, 1), (3, 5), (5, 3), (4, 4), (2, 6)])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_convolve_and_correlate_every_length_and_mode(n, m, mode):
    a, v = RNG.normal(size=n), RNG.normal(size=m)
    for f in (np.convolve, np.correlate):
        g = lambda a, v, f=f: f(a, v, mode)
        np.testing.assert_allclose(traced(g, a, v), g(a, v), rtol=1e-13, atol=1e-14)
        check_grads(g, (a, v), order=2, modes=("fwd", "rev"))


def test_convolution_errors_are_numpys():
    with pytest.raises(ValueError, match="v cannot be empty"):
        ff.grad(lambda a: np.sum(np.convolve(a, np.zeros(0))))(V)
    with pytest.raises(ValueError, match="mode must be one of"):
        ff.grad(lambda a: np.sum(np.convolve(a, K, "middle")))(V)


def test_linspace_is_differentiable_in_its_endpoints():
    f = lambda a, b: np.linspace(a, b, 5)
    np.testing.assert_array_equal(traced(f, 0.25, 2.0), np.linspace(0.25, 2.0, 5))
    np.testing.assert_allclose(ff.jacrev(f, argnums=(0, 1))(0.25, 2.0),
                               (np.linspace(1, 0, 5), np.linspace(0, 1, 5)), atol=1e-15)
    # the last sample is stop itself, so its derivative in start is exactly 0
    assert ff.grad(lambda a: np.linspace(a, 3.0, 7)[-1])(1.0) == 0.0
    for kw in ({"endpoint": False}, {"num": 1}, {"num": 0}, {"axis": -1}, {"retstep": True},
               {"dtype": np.float32}):
        g = lambda a, b, kw=kw: np.linspace(a, b, **{"num": 4, **kw})
        a, b = np.array([0.0, 1.0]), np.array([[2.0, -1.0], [3.0, 0.5]])
        for got, want in zip(ff.tree.leaves(traced(g, a, b)), ff.tree.leaves(g(a, b))):
            np.testing.assert_allclose(got, want, rtol=1e-15)
            assert np.asarray(got).dtype == np.asarray(want).dtype
    check_grads(lambda a, b: np.linspace(a, b, 4, axis=-1), (np.array([0.0, 1.0]),
                np.array([[2.0, -1.0], [3.0, 0.5]])), order=2, modes=("fwd", "rev"))
    with pytest.raises(ValueError, match="must be non-negative"):
        ff.grad(lambda a: np.sum(np.linspace(a, 1.0, -1)))(0.0)


def test_gradient_matches_numpy_for_every_spacing_form():
    f3 = RNG.normal(size=(3, 4, 5))
    x = np.array([0.0, 0.3, 1.0, 1.1, 2.0])
    cases = [lambda f: np.gradient(f), lambda f: np.gradient(f, 2.0),
             lambda f: np.gradient(f, 1.0, 0.5, x), lambda f: np.gradient(f, x, axis=-1),
             lambda f: np.gradient(f, axis=(0, 2), edge_order=2),
             lambda f: np.gradient(f, 0.5, x, axis=(1, 2), edge_order=2)]
    for g in cases:
        for got, want in zip(ff.tree.leaves(traced(g, f3)), ff.tree.leaves(g(f3))):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # traced spacings: the derivative in the coordinates too
    check_grads(lambda f, x: np.gradient(f, x, edge_order=2), (V[:5], x), order=2,
                modes=("fwd", "rev"))
    with pytest.raises(ValueError, match="at least \\(edge_order \\+ 1\\) elements"):
        ff.grad(lambda f: np.sum(np.gradient(f, edge_order=2)))(np.ones(2))
    with pytest.raises(ValueError, match="distances must match the length"):
        ff.grad(lambda f: np.sum(np.gradient(f, [0.0, 1.0])))(np.ones(3))


def test_interp_in_x_and_fp():
    xp, fp = np.array([0.0, 1.0, 2.5, 3.0]), np.array([1.0, -1.0, 2.0, 0.5])
    x = np.array([-1.0, 0.0, 0.4, 1.0, 2.0, 2.5, 2.9, 3.0, 4.0])
    f = lambda x, fp: np.interp(x, xp, fp)
    np.testing.assert_array_equal(traced(f, x, fp), f(x, fp))
    slopes = np.diff(fp) / np.diff(xp)
    # at a sample point the derivative is the one from the right; outside, 0
    want = [0.0, slopes[0], slopes[0], slopes[1], slopes[1], slopes[2], slopes[2], 0.0, 0.0]
    np.testing.assert_allclose(ff.vmap(ff.grad(f))(x, np.broadcast_to(fp, (9, 4))), want)
    np.testing.assert_allclose(ff.jvp(lambda x: f(x, fp), (x,), (np.ones_like(x),))[1], want)
    xi = np.array([-0.5, 0.3, 1.7, 2.6, 3.5])
    check_grads(f, (xi, fp), order=2, modes=("fwd", "rev"))
    check_grads(lambda x, fp: np.interp(x, xp, fp, left=fp[1] * 2, right=-3.0), (xi, fp),
                order=2, modes=("fwd", "rev"))
    g = lambda x, fp: np.interp(x, xp, fp, period=2.75)
    np.testing.assert_allclose(traced(g, xi * 3, fp), g(xi * 3, fp), rtol=1e-14)
    check_grads(g, (xi * 3, fp), order=2, modes=("fwd", "rev"))
    np.testing.assert_array_equal(traced(lambda x: np.interp(x, [1.0], [5.0]), x),
                                  np.interp(x, [1.0], [5.0]))


def test_interp_refuses_a_traced_xp():
    msg = r"xp .* is traced here .*; funcflux differentiates interp in x and fp only"
    with pytest.raises(TypeError, match=msg):
        ff.grad(lambda xp: np.interp(0.5, xp, np.array([0.0, 1.0])))(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=msg):
        ff.vmap(lambda xp: np.interp(0.5, xp, np.array([0.0, 1.0])))(np.eye(2))
    # the way out the message names
    g = ff.grad(lambda xp: np.interp(0.5, ff.stop_gradient(xp), np.array([0.0, 1.0])) + xp[0])
    np.testing.assert_array_equal(g(np.array([0.0, 1.0])), [1.0, 0.0])


def test_searchsorted_has_no_derivative_and_batches_a():
    a = np.array([[0.0, 1.0, 2.0], [5.0, 6.0, 7.0]])
    v = np.array([[0.5, 2.0], [6.0, 9.0]])
    got = ff.vmap(lambda a, v: np.searchsorted(a, v, side="right"))(a, v)
    np.testing.assert_array_equal(got, [np.searchsorted(a[i], v[i], side="right") for i in (0, 1)])
    assert traced(lambda v: np.searchsorted(a[0], v), v).dtype.kind == "i"
