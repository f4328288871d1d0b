"""Reductions and the fused nn primitives: NumPy signatures, errors, zeros, stability."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp


def traced(f, *args):
    """``f(*args)`` computed on tracers (the value of ``vjp``), not by plain NumPy."""
    return ff.vjp(f, *args)[0]


X = np.arange(24.0).reshape(2, 3, 4) / 7.0 - 1.0


# ----------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min", "var", "std", "ptp"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (-1, 1), ()])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(name, axis, keepdims):
    f = lambda x: getattr(np, name)(x, axis=axis, keepdims=keepdims)
    got, want = traced(f, X), f(X)
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_arg_reductions_match_numpy_under_vmap(name, axis, keepdims):
    f = lambda x: getattr(np, name)(x, axis=axis, keepdims=keepdims)
    xs = np.random.default_rng(0).standard_normal((3, 2, 3, 4))
    got = ff.vmap(f, in_axes=2)(np.moveaxis(xs, 0, 2))
    np.testing.assert_array_equal(got, np.stack([f(x) for x in xs]))


def test_dtype_argument_casts_first():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    out = traced(lambda v: np.sum(v, dtype=np.float32) + np.sum(x, axis=0, dtype=np.float64)[0],
                 np.float32(1.0))
    assert np.asarray(out).dtype == np.float64
    assert np.asarray(traced(lambda v: np.cumsum(v, dtype=np.float32), np.ones(3))).dtype == np.float32


def test_mean_and_var_of_ints_are_float64():
    x = np.arange(6).reshape(2, 3)
    assert np.asarray(fnp.mean(x)).dtype == np.float64 == np.mean(x).dtype
    np.testing.assert_allclose(fnp.var(x, axis=1, ddof=1), np.var(x, axis=1, ddof=1))
    np.testing.assert_allclose(fnp.std(x, correction=1), np.std(x, correction=1))


def test_float32_stays_float32():
    x = X.astype(np.float32)
    for f in (np.mean, np.var, np.std, lambda v: np.prod(v, axis=0), fnp.logsumexp, fnp.softmax):
        out, pull = ff.vjp(f, x)
        assert np.asarray(out).dtype == np.float32
        assert pull(np.ones_like(out))[0].dtype == np.float32


def test_bad_axis_raises_numpy_axis_error():
    with pytest.raises(np.exceptions.AxisError, match="axis 3 is out of bounds for array of dimension 3"):
        ff.grad(lambda x: np.sum(x, axis=3))(X)
    with pytest.raises(np.exceptions.AxisError):
        ff.grad(lambda x: np.sum(np.cumsum(x, axis=-4)))(X)
    with pytest.raises(np.exceptions.AxisError):
        ff.vmap(lambda x: np.argmax(x, axis=2))(X)
    with pytest.raises(ValueError, match="repeated axis"):
        ff.grad(lambda x: np.sum(x, axis=(0, -3)))(X)
    with pytest.raises(TypeError, match="integer"):
        ff.grad(lambda x: np.sum(np.cumsum(x, axis=(0, 1))))(X)


def test_out_is_refused():
    with pytest.raises(TypeError, match="out="):
        ff.grad(lambda x: np.sum(x, out=np.zeros(())))(X)
    with pytest.raises(TypeError, match="out="):
        ff.grad(lambda x: np.max(x, axis=0, out=np.zeros((3, 4))).sum())(X)


def test_unsupported_where_is_an_error_not_ignored():
    with pytest.raises(TypeError, match="where"):
        ff.grad(lambda x: np.max(x, where=x > 0, initial=0.0))(X)


def test_sum_where_and_initial():
    mask = X > 0
    g = ff.grad(lambda x: np.sum(x, where=mask, initial=2.0))(X)
    np.testing.assert_array_equal(g, mask.astype(float))
    assert float(traced(lambda x: np.sum(x, where=mask, initial=2.0), X)) == pytest.approx(
        np.sum(X, where=mask, initial=2.0))


def test_tracer_methods():
    f = lambda x: x.sum(axis=0) + x.max(axis=0) + x.min(axis=0) + x.mean(axis=0) + x.prod(axis=0) \
        + x.var(axis=0) + x.std(axis=0) + x.cumsum(axis=0)[-1] + x.cumprod(axis=0)[-1]
    np.testing.assert_allclose(traced(f, X), f(X), rtol=1e-12)
    assert traced(lambda x: x.argmax(axis=-1) + x.argsort(axis=-1)[..., 0], X).dtype.kind == "i"


# ----------------------------------------------------------------------------- max / min ties
def test_ties_share_the_gradient():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(ff.grad(lambda v: np.sum(np.max(v, axis=1)))(x),
                               [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(ff.grad(lambda v: np.sum(np.min(v, axis=0)))(x),
                               [[1, 0, 0], [0, 1, 1]])
    _, t = ff.jvp(lambda v: np.max(v, axis=1), (x,), (np.arange(6.0).reshape(2, 3),))
    np.testing.assert_allclose(t, [1.5, 4.0])


def test_min_of_unsigned_and_bool():
    u = np.array([0, 5, 3], dtype=np.uint8)
    assert fnp.min(u) == 0 and fnp.amin(np.array([True, False])) == np.False_


# ----------------------------------------------------------------------------- prod with zeros
def _prod_others(x):
    return np.array([np.prod(np.delete(x, i)) for i in range(x.size)])


@pytest.mark.parametrize("x", [[2.0, 0.0, 3.0, -1.5], [0.0, 4.0], [0.0, 0.0, 2.0], [0.0],
                               [1.5, -2.0, 0.5]])
def test_prod_gradient_is_exact_with_zeros(x):
    x = np.array(x)
    np.testing.assert_array_equal(ff.grad(np.prod)(x), _prod_others(x))
    _, t = ff.jvp(np.prod, (x,), (np.ones_like(x),))
    assert float(t) == pytest.approx(_prod_others(x).sum())


def test_prod_gradient_with_zeros_along_an_axis():
    x = np.array([[2.0, 0.0, 3.0], [1.0, 2.0, 4.0], [0.0, 0.0, 5.0]])
    g = ff.grad(lambda v: np.sum(np.prod(v, axis=1) * np.array([1.0, 2.0, 3.0])))(x)
    want = np.stack([_prod_others(r) * w for r, w in zip(x, [1.0, 2.0, 3.0])])
    np.testing.assert_array_equal(g, want)
    g0 = ff.grad(lambda v: np.sum(np.prod(v, axis=0, keepdims=True)))(x)
    np.testing.assert_array_equal(g0, np.stack([_prod_others(c) for c in x.T], axis=1))


def test_prod_hessian_with_one_zero():
    x = np.array([2.0, 0.0, 3.0, -1.5])
    n = x.size
    want = np.array([[0.0 if i == j else np.prod(np.delete(x, [i, j])) for j in range(n)]
                     for i in range(n)])
    np.testing.assert_allclose(ff.hessian(np.prod)(x), want)


def test_prod_hessian_with_two_zeros_is_documented():
    # The mixed second derivative between the two zeros (the product of the rest) is 0.
    x = np.array([2.0, 0.0, 0.0])
    h = ff.hessian(np.prod)(x)
    assert np.all(np.isfinite(h))
    np.testing.assert_array_equal(h[0], [0.0, 0.0, 0.0])


def test_cumprod_is_exact_with_zeros():
    x = np.array([2.0, 0.0, 3.0, 0.0, -1.5])
    np.testing.assert_array_equal(traced(np.cumprod, x), np.cumprod(x))
    jac = ff.jacrev(np.cumprod)(x)
    want = np.array([[np.prod(np.delete(x[:k + 1], i)) if i <= k else 0.0 for i in range(x.size)]
                     for k in range(x.size)])
    np.testing.assert_array_equal(jac, want)
    np.testing.assert_array_equal(ff.jacfwd(np.cumprod)(x), want)


# ----------------------------------------------------------------------------- sort
def test_sort_gradient_is_the_inverse_permutation():
    x = np.array([[3.0, 1.0, 2.0], [0.5, -1.0, 4.0]])
    w = np.array([1.0, 10.0, 100.0])
    g = ff.grad(lambda v: np.sum(np.sort(v, axis=-1) * w))(x)
    np.testing.assert_array_equal(g, [[100.0, 1.0, 10.0], [10.0, 1.0, 100.0]])
    np.testing.assert_array_equal(traced(lambda v: np.sort(v, axis=None), x), np.sort(x, axis=None))
    with pytest.raises(TypeError, match="order"):
        ff.grad(lambda v: np.sum(np.sort(v, order="f")))(x)


def test_argsort_carries_no_derivative():
    x = np.array([3.0, 1.0, 2.0])
    g = ff.grad(lambda v: np.sum(v[np.argsort(v)] * np.array([1.0, 2.0, 3.0])))(x)
    np.testing.assert_array_equal(g, [3.0, 1.0, 2.0])
    np.testing.assert_array_equal(traced(lambda v: np.argsort(v, stable=True), np.ones(3)), [0, 1, 2])


# ----------------------------------------------------------------------------- average, all/any
def test_average_returned_and_weights():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    f = lambda x: np.average(x, axis=-1, weights=w, returned=True)
    (avg, scl), want = traced(f, X), np.average(X, axis=-1, weights=w, returned=True)
    np.testing.assert_allclose(avg, want[0])
    np.testing.assert_allclose(scl, want[1])
    gw = ff.grad(lambda v: np.sum(np.average(X, axis=-1, weights=v)))(w)
    assert gw.shape == w.shape
    with pytest.raises(TypeError, match="Axis must be specified"):
        ff.grad(lambda v: np.average(X, weights=v))(w)


def test_all_any_are_booleans_without_derivative():
    f = lambda x: np.all(x > -2, axis=(0, 1), keepdims=True) | np.any(x > 0.9, axis=(0, 1), keepdims=True)
    np.testing.assert_array_equal(traced(f, X), f(X))
    assert ff.vmap(lambda x: np.any(x > 0.5))(X).tolist() == [True, True]
    assert ff.vmap(lambda x: np.all(x > 0), in_axes=2)(X).tolist() == [False] * 4


# ----------------------------------------------------------------------------- logsumexp & softmax
BIG = np.array([[1000.0, -1000.0, 999.0], [-1000.0, -1000.0, -1000.0]])


def _softmax_ref(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_logsumexp_is_stable_at_1000():
    out = fnp.logsumexp(BIG, axis=1)
    np.testing.assert_allclose(out, [1000.0 + np.log1p(np.exp(-1.0)), -1000.0 + np.log(3.0)])
    assert float(fnp.logsumexp(np.array([1000.0, 1000.0]))) == pytest.approx(1000.0 + np.log(2.0))
    g = ff.grad(lambda x: np.sum(fnp.logsumexp(x, axis=1)))(BIG)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, _softmax_ref(BIG), rtol=1e-12)
    _, t = ff.jvp(lambda x: fnp.logsumexp(x, axis=-1), (BIG,), (np.ones_like(BIG),))
    np.testing.assert_allclose(t, [1.0, 1.0])


def test_logsumexp_hessian_is_softmax_covariance():
    x = np.array([1000.0, 999.0, -1000.0])
    p = _softmax_ref(x)
    np.testing.assert_allclose(ff.hessian(fnp.logsumexp)(x), np.diag(p) - np.outer(p, p), atol=1e-12)


def test_logsumexp_batches_and_keeps_dims():
    xs = np.random.default_rng(1).standard_normal((3, 4, 5)) * 500
    got = ff.vmap(lambda x: fnp.logsumexp(x, axis=0, keepdims=True), in_axes=1)(xs)
    want = np.stack([fnp.logsumexp(xs[:, i], axis=0, keepdims=True) for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert fnp.logsumexp(xs, axis=(0, 2), keepdims=True).shape == (1, 4, 1)


def test_logsumexp_of_infinities():
    assert fnp.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    assert fnp.logsumexp(np.array([np.inf, 0.0])) == np.inf
    assert float(fnp.logsumexp(np.array([-np.inf, 0.0]))) == 0.0


def test_softmax_and_log_softmax_are_stable_with_exact_gradients():
    np.testing.assert_allclose(fnp.softmax(BIG), _softmax_ref(BIG), rtol=1e-12)
    m = BIG.max(axis=0)
    want = BIG - m - np.log(np.exp(BIG - m).sum(axis=0))
    np.testing.assert_allclose(fnp.log_softmax(BIG, axis=0), want, rtol=1e-12)
    w = np.array([0.3, -1.0, 2.0])
    for f in (lambda x: np.sum(fnp.softmax(x) * w), lambda x: np.sum(fnp.log_softmax(x) * w)):
        g = ff.grad(f)(BIG)
        assert np.all(np.isfinite(g))
    # d/dx sum(w * log_softmax(x)) = w - sum(w) softmax(x)
    g = ff.grad(lambda x: np.sum(fnp.log_softmax(x) * w))(BIG)
    np.testing.assert_allclose(g, w - w.sum() * _softmax_ref(BIG), atol=1e-12)
    h = ff.hessian(lambda x: np.sum(fnp.softmax(x) * w))(BIG[0])
    assert np.all(np.isfinite(h))


def test_mean_cotangent_of_small_and_large_inputs_with_and_without_keepdims():
    """The mean's backward fills small cotangents in and broadcasts large ones: both
    must give 1/n everywhere, in the input's shape and dtype, for any keepdims."""
    for shape in [(3,), (4, 5), (70, 70)]:
        for keepdims in (False, True):
            x = np.ones(shape, np.float32)
            g = ff.grad(lambda v: np.sum(np.mean(v, keepdims=keepdims)))(x)
            assert g.shape == shape and g.dtype == np.float32
            np.testing.assert_allclose(g, np.full(shape, 1.0 / x.size), rtol=1e-6)
