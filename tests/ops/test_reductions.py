"""Reductions and the fused nn primitives: NumPy signatures, errors, zeros, stability."""
from __future__ import annotations

import contextlib
import warnings

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
    # JAX's rule (jax/_src/lax/lax.py, _reduce_chooser_jvp_rule): the tangent is averaged
    # over the locations equal to the maximum, so jax.grad(jnp.max)([1., 3., 3.]) is
    # [0., .5, .5]; the VJP is its transpose.
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


def _prod_derivative(x, order):
    """The closed form: d^k prod / dx_i.. is the product of the other entries, 0 on repeats."""
    n = x.size
    out = np.zeros((n,) * order)
    for idx in np.ndindex(*out.shape):
        if len(set(idx)) == order:
            out[idx] = np.prod(np.delete(x, list(idx)))
    return out


PROD_POINTS = [[1.5, -2.0, 0.5], [2.0, 0.0, 3.0, -1.5], [0.0, 0.0, 3.0], [2.0, 0.0, 0.0],
               [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, -1.5, 2.0]]


@pytest.mark.parametrize("x", PROD_POINTS)
@pytest.mark.parametrize("how", ["hessian", "rev-rev", "fwd-fwd", "rev-fwd"])
def test_prod_hessian_is_exact_with_any_number_of_zeros(x, how):
    # Regression: with two zeros the mixed entry between them (the product of the rest)
    # came out 0, e.g. hessian(np.prod)([0, 0, 3]) was all zeros; the truth has 3 at (0, 1).
    x = np.array(x)
    f = {"hessian": ff.hessian(np.prod), "rev-rev": ff.jacrev(ff.jacrev(np.prod)),
         "fwd-fwd": ff.jacfwd(ff.jacfwd(np.prod)), "rev-fwd": ff.jacrev(ff.jacfwd(np.prod))}[how]
    np.testing.assert_allclose(f(x), _prod_derivative(x, 2), rtol=1e-14, atol=0)


@pytest.mark.parametrize("x", PROD_POINTS)
def test_prod_third_derivatives_are_exact(x):
    x = np.array(x)
    want = _prod_derivative(x, 3)
    np.testing.assert_allclose(ff.jacfwd(ff.hessian(np.prod))(x), want, rtol=1e-14, atol=0)
    np.testing.assert_allclose(ff.jacrev(ff.jacrev(ff.jacrev(np.prod)))(x), want, rtol=1e-14,
                               atol=0)


def test_prod_hessian_with_zeros_along_axes_and_under_vmap():
    x = np.array([[0.0, 0.0, 3.0], [1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [1.5, -2.0, 0.5]])
    h = ff.hessian(lambda v: np.sum(np.prod(v, axis=1)))(x)
    for r in range(4):
        np.testing.assert_allclose(h[r, :, r, :], _prod_derivative(x[r], 2))
        for q in set(range(4)) - {r}:
            assert not np.any(h[r, :, q, :])
    np.testing.assert_allclose(ff.vmap(ff.hessian(np.prod))(x),
                               np.stack([_prod_derivative(r, 2) for r in x]))
    # several reduced axes at once (moved last and merged before the two-sided products)
    y = np.array([[[0.0, 2.0], [1.0, 3.0]], [[0.0, 1.0], [-1.0, 0.5]]])  # (2, 2, 2)
    h = ff.hessian(lambda v: np.sum(np.prod(v, axis=(0, 2))))(y)
    for j in range(2):
        flat = y[:, j, :].ravel()
        np.testing.assert_allclose(h[:, j, :, :, j, :].reshape(4, 4), _prod_derivative(flat, 2))


def test_cumprod_is_exact_with_zeros():
    x = np.array([2.0, 0.0, 3.0, 0.0, -1.5])
    np.testing.assert_array_equal(traced(np.cumprod, x), np.cumprod(x))
    jac = ff.jacrev(np.cumprod)(x)
    want = np.array([[np.prod(np.delete(x[:k + 1], i)) if i <= k else 0.0 for i in range(x.size)]
                     for k in range(x.size)])
    np.testing.assert_array_equal(jac, want)
    np.testing.assert_array_equal(ff.jacfwd(np.cumprod)(x), want)


def test_amax_amin_ties_share_the_gradient_in_both_modes():
    x = np.array([2.0, -1.0, 2.0, -1.0, 2.0])
    for f, want in ((np.amax, [1 / 3, 0, 1 / 3, 0, 1 / 3]), (np.amin, [0, 0.5, 0, 0.5, 0])):
        np.testing.assert_allclose(ff.grad(f)(x), want)
        np.testing.assert_allclose(ff.jacfwd(f)(x), want)
        np.testing.assert_allclose(ff.vmap(ff.grad(f))(np.stack([x, x])), [want, want])


def test_cumprod_second_derivatives_are_exact_with_zeros():
    x = np.array([2.0, 0.0, 3.0, 0.0, -1.5])
    for k in range(x.size):
        want = _prod_derivative(x[:k + 1], 2)
        full = np.zeros((x.size, x.size))
        full[:k + 1, :k + 1] = want
        f = lambda v, k=k: np.cumprod(v)[k]
        np.testing.assert_allclose(ff.hessian(f)(x), full, rtol=1e-14, atol=0)
        np.testing.assert_allclose(ff.jacfwd(ff.jacfwd(f))(x), full, rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- var / std
@pytest.mark.parametrize("ddof", [0, 1])
def test_var_derivatives_at_constant_input_are_exact(ddof):
    x = np.full(4, 1.25)
    n = x.size
    np.testing.assert_array_equal(ff.grad(lambda v: np.var(v, ddof=ddof))(x), np.zeros(n))
    _, t = ff.jvp(lambda v: np.var(v, ddof=ddof), (x,), (np.arange(4.0),))
    assert t == 0.0
    want = 2.0 / (n - ddof) * (np.eye(n) - 1.0 / n)  # var is quadratic: a constant Hessian
    np.testing.assert_allclose(ff.hessian(lambda v: np.var(v, ddof=ddof))(x), want)
    np.testing.assert_allclose(ff.jacfwd(ff.jacfwd(lambda v: np.var(v, ddof=ddof)))(x), want)


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("axis", [None, 0, 1, (0, 1)])
def test_std_at_constant_input_has_the_zero_subgradient_never_nan(ddof, axis):
    # Regression: grad(np.std)(np.ones(3)) was [nan, nan, nan] (sqrt's 1/(2*0) times 0).
    # JAX gives NaN here too (jax-ml/jax#11716); funcflux gives the zero subgradient, at
    # every order, as PyTorch does (pytorch/pytorch#4320) and as documented in np.std.
    x = np.array([[2.0, 2.0, 2.0], [-1.0, -1.0, -1.0]]) if axis == 1 else np.full((2, 3), 0.5)
    f = lambda v: np.sum(np.std(v, axis=axis, ddof=ddof))
    for d in (ff.grad(f)(x), ff.jvp(f, (x,), (np.ones_like(x),))[1], ff.hessian(f)(x),
              ff.jacfwd(ff.jacrev(f))(x), ff.vmap(ff.grad(f))(np.stack([x, x]))):
        np.testing.assert_array_equal(d, np.zeros_like(d))


def test_std_gradient_away_from_constant_input_is_unchanged():
    x = np.array([[1.0, 2.0, 4.0], [0.5, 0.5, 3.0]])
    from funcflux.test_util import check_grads
    for kw in ({}, {"axis": 1, "ddof": 1}, {"axis": 0, "keepdims": True}):
        check_grads(lambda v, kw=kw: np.std(v, **kw), (x,), order=2, modes=("fwd", "rev"))
    # a row that is constant next to one that is not: each gets its own derivative
    g = ff.grad(lambda v: np.sum(np.std(v, axis=1)))(np.array([[1.0, 1.0], [1.0, 3.0]]))
    np.testing.assert_allclose(g, [[0.0, 0.0], [-0.5, 0.5]])


def test_var_with_ddof_past_the_count_refuses_to_differentiate():
    with pytest.raises(ValueError, match="ddof=3 on 3 entries"):
        ff.grad(lambda v: np.std(v, ddof=3))(np.array([1.0, 2.0, 4.0]))


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


# ----------------------------------------------------------------------------- sort ties
def test_sort_ties_follow_the_stable_permutation():
    # JAX permutes the tangent with the sort's own stable permutation (jax/_src/lax/lax.py,
    # _sort_jvp; jnp.sort is stable by default): tied entries keep their input order.
    x = np.array([1.0, 0.0, 1.0, 0.0])
    w = np.array([1.0, 10.0, 100.0, 1000.0])
    np.testing.assert_array_equal(ff.grad(lambda v: np.sum(np.sort(v) * w))(x),
                                  [100.0, 1.0, 1000.0, 10.0])
    _, t = ff.jvp(np.sort, (x,), (np.arange(4.0),))
    np.testing.assert_array_equal(t, [1.0, 3.0, 0.0, 2.0])
    np.testing.assert_array_equal(traced(np.argsort, x), np.argsort(x, kind="stable"))


# ----------------------------------------------------------------------------- partition
def test_partition_puts_values_where_numpy_does_and_permutes_the_gradient():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 7))
    for kth, axis in ((3, 1), ((0, 4), 0), (-1, None)):
        np.testing.assert_array_equal(traced(lambda v, k=kth, a=axis: np.partition(v, k, axis=a), x),
                                      np.partition(x, kth, axis=axis))
        idx = np.argpartition(x, kth, axis=axis)
        np.testing.assert_array_equal(traced(lambda v, k=kth, a=axis: np.argpartition(v, k, axis=a), x), idx)
    g = ff.grad(lambda v: np.partition(v, 2)[2])(np.array([5.0, 1.0, 4.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="out of bounds"):
        ff.grad(lambda v: np.sum(np.partition(v, 4)))(np.ones(4))


# ----------------------------------------------------------------------------- quantiles
Q = np.array([[0.7, -0.3, 2.0, 1.1], [0.2, 0.9, -1.4, 0.5], [3.0, 1.0, 0.1, -0.2]])


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("q", [0.5, 0.0, 1.0, [0.1, 0.99], [[0.25], [0.75]]])
def test_quantile_values_match_numpy(axis, keepdims, q):
    for name, qq in (("quantile", q), ("percentile", np.multiply(q, 100.0))):
        f = lambda v, name=name, qq=qq: getattr(np, name)(v, qq, axis=axis, keepdims=keepdims)
        got, want = traced(f, Q), f(Q)
        assert np.shape(got) == np.shape(want)
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    f = lambda v: np.median(v, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(traced(f, Q), f(Q), rtol=1e-14)


def test_median_gradient_goes_to_the_middle_entries():
    np.testing.assert_array_equal(ff.grad(np.median)(np.array([4.0, 1.0, 3.0])), [0, 0, 1])
    np.testing.assert_array_equal(ff.grad(np.median)(np.array([4.0, 1.0, 3.0, 2.0])),
                                  [0, 0, 0.5, 0.5])
    # a NaN anywhere makes the median NaN, as in NumPy
    assert np.isnan(traced(np.median, np.array([1.0, np.nan, 2.0])))


def test_quantile_is_differentiable_in_q():
    x = np.array([4.0, 1.0, 3.0, 2.0])
    from funcflux.test_util import check_grads
    check_grads(lambda v, q: np.quantile(v, q), (x, np.array([0.2, 0.55, 0.9])), order=2,
                modes=("fwd", "rev"))
    # between the order statistics 2 and 3 the slope in q is (n - 1) * (3 - 2)
    assert ff.grad(lambda q: np.quantile(x, q))(0.5) == pytest.approx(3.0)


def test_quantile_errors():
    with pytest.raises(ValueError, match=r"Quantiles must be in the range \[0, 1\]"):
        ff.grad(lambda v: np.quantile(v, 1.5))(Q)
    with pytest.raises(ValueError, match=r"Percentiles must be in the range \[0, 100\]"):
        ff.grad(lambda v: np.percentile(v, -1))(Q)
    with pytest.raises(NotImplementedError, match="method='linear'"):
        ff.grad(lambda v: np.quantile(v, 0.5, method="nearest"))(Q)


# ----------------------------------------------------------------------------- nan-reductions
XN = np.array([[1.0, np.nan, 3.0, 0.5], [np.nan, np.nan, np.nan, 2.0], [2.0, -1.0, 0.5, 0.5]])


@pytest.mark.parametrize("name", ["nansum", "nanmean", "nanvar", "nanstd", "nanmax", "nanmin"])
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_nan_reductions_match_numpy_and_ignore_nans_in_the_gradient(name, axis):
    f = lambda v: getattr(np, name)(v, axis=axis)
    with _quiet():
        want = f(XN)
        got = traced(f, XN)
    np.testing.assert_allclose(got, want, rtol=1e-14, equal_nan=True)
    loss = lambda v: np.nansum(f(v))
    g = ff.grad(loss)(XN)
    assert not np.any(np.isnan(g)), g
    assert not np.any(g[np.isnan(XN)])
    # the derivative at a real entry is that of the plain reduction of the real entries:
    # compare with NaNs replaced by values that the plain function ignores through a mask
    j = ff.jacfwd(loss)(XN)
    np.testing.assert_allclose(j, g, rtol=1e-12, atol=1e-15)
    eps = 1e-6
    for i in zip(*np.nonzero(~np.isnan(XN))):
        d = np.zeros_like(XN)
        d[i] = eps
        with _quiet():
            fd = (np.nansum(f(XN + d)) - np.nansum(f(XN - d))) / (2 * eps)
        if name in ("nanmax", "nanmin") and abs(fd - g[i]) > 1e-5:
            continue  # a tie (0.5, 0.5 in the last row) is a kink: the shared value is JAX's
        assert g[i] == pytest.approx(fd, rel=1e-6, abs=1e-8), (name, axis, i)


@contextlib.contextmanager
def _quiet():
    """NumPy's RuntimeWarnings for all-NaN slices and 0/0, silenced."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def test_nan_reductions_of_an_all_nan_slice_are_nan_with_zero_gradient():
    x = np.array([[np.nan, np.nan], [1.0, 2.0]])
    for name in ("nanmean", "nanvar", "nanstd", "nanmax", "nanmin"):
        f = getattr(np, name)
        with _quiet():
            v = traced(lambda a, f=f: f(a, axis=1), x)
            g = ff.grad(lambda a, f=f: np.nansum(f(a, axis=1)))(x)
        assert np.isnan(v[0]) and not np.isnan(v[1])
        assert not np.any(np.isnan(g)) and not np.any(g[0])


def test_nanstd_at_constant_input_has_the_zero_subgradient():
    g = ff.grad(np.nanstd)(np.array([1.0, np.nan, 1.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0])


def test_var_and_std_of_complex_values_are_real_as_in_numpy():
    # Regression: var summed c * c, giving a complex "variance"; NumPy sums |c|**2.
    z = np.array([[1 + 2j, -0.5j, 3.0], [2 - 1j, 1 + 1j, -1j]])
    for f in (lambda v: np.var(v, axis=0), lambda v: np.std(v, ddof=1),
              lambda v: np.nanvar(v, axis=1)):
        got, want = traced(f, z), f(z)
        assert np.asarray(got).dtype == want.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-14)
