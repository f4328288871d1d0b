"""Indexing by hand: every NumPy index kind, repeated indices, batched indices, errors."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp
from funcflux.ops.indexing import _out_shape, _parse
from funcflux.test_util import check_grads

X = np.arange(2.0 * 3 * 4).reshape(2, 3, 4) / 7.0 - 1.0
M23 = np.array([[True, False, True], [False, False, True]])

INDICES = [
    1, -1, (1, 2), (-2, -1, -3), slice(None, None, -1), (slice(None), slice(3, 0, -2)),
    (Ellipsis, 1), (None, Ellipsis, None), (1, None, slice(1, None), None), (Ellipsis,),
    np.array([1, 0, 1]), [1, 1, 0], (slice(None), [2, 0]), ([0, 1], [2, 2]),
    ([0, 1], slice(None), [3, 0]), (slice(None), [0, 2], [1, 3]), (1, slice(None), [0, 3]),
    (slice(None), 1, [0, 3]), ([[0], [1]], 0, [1, 2, 3]), ([1, 0], None, [2, 1]),
    (Ellipsis, np.array([[3, 0], [1, 1]])), (np.array(1), slice(None), [0, 2]),
    (np.int64(-1), [2, 2, 2]), np.array([], dtype=np.int64), (slice(None), []),
    np.array([True, False]), M23, (M23, [0, 3, 3]), (slice(None), np.array([True, False, True])),
    (Ellipsis, np.array([False, True, True, False])), (None, 1, np.array([1, 0, 1], bool)),
]


def _id(i: object) -> str:
    return repr(i).replace(" ", "").replace("\n", "")[:40]


@pytest.mark.parametrize("index", INDICES, ids=_id)
def test_every_index_kind_matches_numpy(index):
    want = X[index]
    np.testing.assert_array_equal(fnp.getitem(X, index), want)
    idx, arrays = _parse(X.shape, index)
    assert _out_shape(X.shape, idx, [a.shape for a in arrays]) == want.shape
    out, pullback = ff.vjp(lambda x: x[index], X)
    np.testing.assert_array_equal(out, want)
    ct = np.random.default_rng(0).normal(size=want.shape)
    expected = np.zeros_like(X)
    np.add.at(expected, index, ct)
    np.testing.assert_allclose(pullback(ct)[0], expected)
    _, t = ff.jvp(lambda x: x[index], (X,), (X * 3.0,))
    np.testing.assert_allclose(t, want * 3.0)
    # vmap over the data, with the index (even a mask) closed over
    xs = np.stack([X, 2 * X, -X], axis=1)
    got = ff.vmap(lambda x: x[index], in_axes=1)(xs)
    np.testing.assert_array_equal(got, np.stack([X[index], (2 * X)[index], (-X)[index]]))


def test_grads_accumulate_over_repeated_indices():
    x = np.array([1.0, 2.0, 3.0])
    g = ff.grad(lambda x: np.sum(x[np.array([0, 2, 0, 0])] ** 2))(x)
    np.testing.assert_allclose(g, [6.0, 0.0, 6.0])
    g = ff.grad(lambda x: np.sum(x[[1, 1], [0, 0]] * np.array([2.0, 5.0])))(np.ones((2, 2)))
    np.testing.assert_allclose(g, [[0, 0], [7.0, 0]])
    h = ff.hessian(lambda x: np.sum(x[np.array([1, 1, 2])] ** 3))(x)
    np.testing.assert_allclose(h, np.diag([0.0, 2 * 6 * 2.0, 6 * 3.0]))
    j = ff.jacrev(lambda x: x[np.array([0, 0, 1])])(x)
    np.testing.assert_allclose(j, np.eye(3)[[0, 0, 1]])
    check_grads(lambda x: x[np.array([[0, 2], [2, 2]]), 1:] ** 2, (np.ones((3, 2)) * 1.5,), order=2)


def test_float32_is_kept():
    x = np.ones((3, 2), np.float32)
    g = ff.grad(lambda x: np.sum(x[np.array([0, 0, 2])]))(x)
    assert g.dtype == np.float32
    assert fnp.index_add(x, 0, 1.0).dtype == np.float32
    assert ff.grad(lambda v: np.sum(fnp.index_update(x, 1, v)))(np.ones(2, np.float32)).dtype \
        == np.float32


def _loop(f, *args):
    return np.stack([f(*a) for a in zip(*args)])


def test_vmap_gathers_with_batched_indices():
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(5, 4, 3))
    idx = rng.integers(0, 4, size=(5, 6))
    f = lambda x, i: fnp.getitem(x, i)
    np.testing.assert_array_equal(ff.vmap(f)(xs, idx), _loop(f, xs, idx))
    # shared data, batched indices (an embedding lookup)
    w = xs[0]
    np.testing.assert_array_equal(ff.vmap(f, in_axes=(None, 0))(w, idx), w[idx])
    # indices on a later axis, batch axes not in front, a slice before the arrays
    g = lambda x, i, j: fnp.getitem(x, (slice(None), i, j))
    ii = rng.integers(0, 3, size=(2, 5))
    jj = rng.integers(0, 3, size=(2,))
    xs4 = rng.normal(size=(5, 2, 3, 3))
    got = ff.vmap(g, in_axes=(2, 1, None))(xs4.transpose(1, 2, 0, 3), ii, jj)
    np.testing.assert_array_equal(got, _loop(lambda x, i: g(x, i, jj), xs4, ii.T))
    # vmap of grad with batched repeated indices: scatter-add per example
    loss = lambda x, i: np.sum(fnp.getitem(x, (i, slice(None), i)) ** 2)
    x3 = rng.normal(size=(5, 3, 2, 3))
    i3 = rng.integers(0, 3, size=(5, 4))
    np.testing.assert_allclose(ff.vmap(ff.grad(loss))(x3, i3), _loop(ff.grad(loss), x3, i3))
    # nested vmap: both levels batch data and indices
    nested = ff.vmap(ff.vmap(f))
    x4 = rng.normal(size=(2, 5, 4, 3))
    i4 = rng.integers(-4, 4, size=(2, 5, 2))
    np.testing.assert_array_equal(nested(x4, i4), np.stack([_loop(f, a, b) for a, b in zip(x4, i4)]))


def test_vmap_with_argmax_indices():
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(4, 5, 3))
    f = lambda x: x[np.argmax(x[:, 0]), :]
    np.testing.assert_array_equal(ff.vmap(f)(xs), _loop(f, xs))
    gf = ff.grad(lambda x: np.sum(f(x) ** 2))
    np.testing.assert_allclose(ff.vmap(gf)(xs), _loop(gf, xs))
    along = lambda x: np.take_along_axis(x, np.argmax(x, axis=0)[None], axis=0)
    np.testing.assert_array_equal(ff.vmap(along)(xs), _loop(along, xs))


def test_batched_mask_is_refused_with_a_hint():
    xs = np.arange(6.0).reshape(2, 3)
    with pytest.raises(IndexError, match="np.where"):
        ff.vmap(lambda x: x[x > 1])(xs)
    with pytest.raises(IndexError, match="np.where"):
        ff.vmap(lambda x: np.nonzero(x > 1))(xs)
    # a mask computed under grad is concrete: fine
    g = ff.grad(lambda x: np.sum(x[x > 1] ** 2))(xs)
    np.testing.assert_allclose(g, np.where(xs > 1, 2 * xs, 0))
    np.testing.assert_array_equal(ff.grad(lambda x: (np.nonzero(x > 1), np.sum(x))[1])(xs),
                                  np.ones_like(xs))


def test_item_assignment_is_refused():
    def f(x):
        x[0] = 1.0
        return np.sum(x)
    with pytest.raises(TypeError, match="immutable.*index_update"):
        ff.grad(f)(np.ones(3))
    with pytest.raises(TypeError, match="immutable"):
        ff.grad(lambda x: np.put(x, [0], 1.0))(np.ones(3))


def test_index_add_and_update():
    x = np.arange(6.0).reshape(3, 2)
    i = np.array([2, 0, 2])
    v = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    want = x.copy()
    np.add.at(want, i, v)
    np.testing.assert_array_equal(fnp.index_add(x, i, v), want)
    gx, gv = ff.grad(lambda x, v: np.sum(fnp.index_add(x, i, v) * x), argnums=(0, 1))(x, v)
    np.testing.assert_allclose(gx, x + want)
    np.testing.assert_allclose(gv, x[i])
    # update: the last write of a repeated index lands, and only it gets a derivative
    want = x.copy()
    want[i] = v
    np.testing.assert_array_equal(fnp.index_update(x, i, v), want)
    gx, gv = ff.grad(lambda x, v: np.sum(fnp.index_update(x, i, v) ** 2), argnums=(0, 1))(x, v)
    np.testing.assert_allclose(gx, [[0, 0], [4.0, 6.0], [0, 0]])
    np.testing.assert_allclose(gv, [[0, 0], [6.0, 8.0], [10.0, 12.0]])
    check_grads(lambda x, v: fnp.index_update(x, (slice(None), [1, 1]), v) ** 2,
                (x, np.array([7.0, 8.0])), order=2)
    np.testing.assert_array_equal(fnp.index_update(x, (Ellipsis, 0), 9.0)[:, 0], [9.0] * 3)
    # batched indices and values under vmap
    xs = np.stack([x, -x])
    idx = np.array([[0, 1], [2, 2]])
    vs = np.array([[1.0, 2.0], [3.0, 4.0]])
    for fn in (fnp.index_add, fnp.index_update):
        f = lambda x, i, v: fn(x, (i, 1), v)
        np.testing.assert_array_equal(ff.vmap(f)(xs, idx, vs), _loop(f, xs, idx, vs))
        np.testing.assert_array_equal(ff.vmap(f, in_axes=(None, 0, None))(x, idx, vs[0]),
                                      _loop(lambda i: f(x, i, vs[0]), idx))


def test_numpy_spellings_route_here():
    x = np.arange(12.0).reshape(3, 4)
    grad = lambda f: ff.grad(lambda x: np.sum(f(x)))(x)
    np.testing.assert_allclose(grad(lambda x: np.take(x, [1, 1, 3], axis=1)), [[0, 2, 0, 1]] * 3)
    np.testing.assert_allclose(grad(lambda x: x.take([0, 0])), np.eye(1, 12).reshape(3, 4) * 2)
    np.testing.assert_allclose(grad(lambda x: x.diagonal(1)), np.eye(3, 4, 1))
    np.testing.assert_allclose(grad(lambda x: x.trace()), np.eye(3, 4))
    np.testing.assert_allclose(grad(lambda x: np.tril(x)), np.tri(3, 4))
    np.testing.assert_allclose(grad(lambda x: np.triu(x, 2)), 1 - np.tri(3, 4, 1))
    np.testing.assert_allclose(grad(lambda x: np.diag(np.diag(x))), np.eye(3, 4))
    seen = []

    def f(x):
        seen.extend([x.nonzero(), np.where(x > 5), np.argwhere(x > 9), np.flatnonzero(x > 9)])
        return np.sum(x)
    ff.grad(f)(x)
    want = [np.nonzero(x), np.where(x > 5), np.argwhere(x > 9), np.flatnonzero(x > 9)]
    for got, w in zip(seen, want):
        for a, b in zip(got if isinstance(got, tuple) else [got], w if isinstance(w, tuple) else [w]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("args", [(0, 0, 1), (1, 0, 1), (-1, 1, 0), (2, 0, 2), (-1, 2, 0),
                                  (1, -1, -3), (5, 0, 1)])
def test_diagonal_and_trace_match_numpy(args):
    a = np.arange(2.0 * 3 * 4).reshape(2, 3, 4)
    np.testing.assert_array_equal(fnp.diagonal(a, *args), np.diagonal(a, *args))
    np.testing.assert_array_equal(fnp.trace(a, *args), np.trace(a, *args))
    got = ff.vmap(lambda a: np.diagonal(a, args[0], 0, 1))(a.transpose(2, 0, 1))
    np.testing.assert_array_equal(got, np.stack([np.diagonal(b, args[0]) for b in a.transpose(2, 0, 1)]))


@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
def test_diag_triu_tril_match_numpy(k):
    v, m = np.arange(1.0, 4.0), np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(fnp.diag(v, k), np.diag(v, k))
    np.testing.assert_array_equal(fnp.diag(m, k), np.diag(m, k))
    for a in (v, m, np.arange(24).reshape(2, 3, 4)):
        np.testing.assert_array_equal(fnp.triu(a, k), np.triu(a, k))
        np.testing.assert_array_equal(fnp.tril(a, k), np.tril(a, k))
    assert fnp.tril(np.ones((2, 2), bool)).dtype == np.bool_
    with pytest.raises(ValueError, match="1- or 2-d"):
        fnp.diag(np.ones((2, 2, 2)))


def test_take_and_take_along_axis_match_numpy():
    x = np.arange(12.0).reshape(3, 4)
    for kw in [dict(), dict(axis=0), dict(axis=-1), dict(axis=1, mode="wrap"),
               dict(axis=0, mode="clip")]:
        i = np.array([[5, -1], [0, 2]]) if kw.get("mode") else np.array([[2, -1], [0, 2]])
        np.testing.assert_array_equal(fnp.take(x, i, **kw), np.take(x, i, **kw))
    np.testing.assert_array_equal(fnp.take(x, 2, axis=1), np.take(x, 2, axis=1))
    i = np.array([[0, 3, 3]])
    np.testing.assert_array_equal(fnp.take_along_axis(x, i, axis=1),
                                  np.take_along_axis(np.broadcast_to(x, (3, 4)), np.repeat(i, 3, 0), 1))
    np.testing.assert_array_equal(fnp.take_along_axis(x, np.array([11, 0]), axis=None),
                                  np.take_along_axis(x, np.array([11, 0]), axis=None))
    with pytest.raises(ValueError, match="same number of dimensions"):
        fnp.take_along_axis(x, np.array([0]), axis=1)


def test_index_errors():
    x = np.ones((2, 3))
    t = lambda idx: ff.grad(lambda x: np.sum(x[idx]))(x)
    with pytest.raises(IndexError, match="too many indices"):
        t((0, 0, 0))
    with pytest.raises(IndexError, match="single ellipsis"):
        t((Ellipsis, Ellipsis))
    with pytest.raises(IndexError, match="boolean index did not match"):
        t(np.array([True, False, True]))
    with pytest.raises(IndexError, match="valid indices"):
        t(np.array([0.5]))
    with pytest.raises(IndexError):
        t(np.array([2]))


# ----------------------------------------------------------------------------- 0-d values
@pytest.mark.parametrize("x", [3.0, np.float64(3.0), np.array(3.0)])
@pytest.mark.parametrize("index", [0, slice(1), (0,), (Ellipsis, 0)])
def test_indexing_a_scalar_argument_raises_numpys_index_error(x, index):
    # Regression: grad(lambda x: x[0])(3.0) raised AttributeError, then NumPy's scalar
    # message ("invalid index to scalar variable"); NumPy's 0-d array message is the one.
    msg = "too many indices for array: array is 0-dimensional, but 1 were indexed"
    with pytest.raises(IndexError, match=msg):
        np.asarray(x)[index]
    with pytest.raises(IndexError, match=msg):
        ff.grad(lambda v: v[index])(x)
    with pytest.raises(IndexError, match=msg):
        ff.jvp(lambda v: v[index], (x,), (1.0,))
    with pytest.raises(IndexError, match=msg):  # each example of a vmap is 0-d too
        ff.vmap(lambda v: v[index])(np.ones(3))


def test_indexing_a_scalar_argument_with_empty_index_and_none_works():
    assert ff.grad(lambda v: v[()] * 2)(3.0) == 2.0
    np.testing.assert_array_equal(ff.grad(lambda v: np.sum(v[None] * 2))(3.0), 2.0)


# ----------------------------------------------------------------------------- select
def test_select_matches_numpy_and_differentiates_the_chosen_branch():
    x = np.array([-1.0, 0.5, 2.0, 3.0])
    f = lambda v: np.select([v < 0, v > 2.5, v > 1], [-v, v ** 3, v ** 2], default=10 * v)
    np.testing.assert_array_equal(ff.vjp(f, x)[0], f(x))
    np.testing.assert_allclose(ff.grad(lambda v: np.sum(f(v)))(x), [-1.0, 10.0, 4.0, 27.0])
    check_grads(f, (x,), order=2, modes=("fwd", "rev"))
    x32 = x.astype(np.float32)
    assert ff.vjp(lambda v: np.select([v > 0], [v]), x32)[0].dtype == np.float32
    with pytest.raises(ValueError, match="list of cases must be same length"):
        ff.grad(lambda v: np.sum(np.select([v > 0], [v, v])))(x)
    with pytest.raises(TypeError, match="invalid entry 0 in condlist: should be boolean"):
        ff.grad(lambda v: np.sum(np.select([v], [v])))(x)


# ----------------------------------------------------------------------------- np.r_, np.c_
def test_r_and_c_say_what_to_write_instead():
    x = np.array([1.0, 2.0])
    with pytest.raises(TypeError, match=r"np\.r_\[\.\.\.\].*fnp\.concatenate\(\[a, b\]\)"):
        ff.grad(lambda v: np.sum(np.r_[v, 3 * v]))(x)
    with pytest.raises(TypeError, match=r"np\.r_\[\.\.\.\]"):
        ff.grad(lambda v: np.sum(np.r_[v[0], 1.0]))(x)
    with pytest.raises(TypeError, match=r"np\.c_\[\.\.\.\].*fnp\.column_stack\(\[a, b\]\)"):
        ff.grad(lambda v: np.sum(np.c_[v, v]))(x)
    # what the messages suggest does work
    np.testing.assert_array_equal(ff.grad(lambda v: np.sum(fnp.concatenate([v, 3 * v])))(x),
                                  [4.0, 4.0])
    np.testing.assert_array_equal(ff.grad(lambda v: np.sum(fnp.column_stack([v, v])))(x),
                                  [2.0, 2.0])
