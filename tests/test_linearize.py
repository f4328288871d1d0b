"""linearize, linear_transpose, and has_aux for jacrev/jacfwd, against jvp, vjp and hand
Jacobians."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux.test_util import check_grads

rng = np.random.default_rng(7)


def close(a, b, tol=1e-10):
    for x, y in zip(ff.tree.leaves(a), ff.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def f(x, p):
    return {"a": np.sin(x) * p["w"], "b": np.sum(x ** 3) + p["c"] ** 2}


X = rng.normal(size=3)
P = {"w": rng.normal(size=3), "c": np.array(0.7)}


# ----------------------------------------------------------------------------- linearize
def test_linearize_equals_jvp_for_every_tangent():
    out, f_jvp = ff.linearize(f, X, P)
    close(out, f(X, P))
    for _ in range(3):  # called again and again: the same linear map
        tx, tp = rng.normal(size=3), {"w": rng.normal(size=3), "c": rng.normal()}
        close(f_jvp(tx, tp), ff.jvp(f, (X, P), (tx, tp))[1])


def test_linearize_by_hand_and_linear():
    x = np.array([0.3, -1.2])
    _, f_jvp = ff.linearize(lambda v: np.sin(v) * v[0], x)
    jac = np.diag(np.cos(x) * x[0])
    jac[:, 0] += np.sin(x)
    t1, t2 = rng.normal(size=2), rng.normal(size=2)
    close(f_jvp(t1), jac @ t1)
    close(f_jvp(2.0 * t1 - t2), 2.0 * f_jvp(t1) - f_jvp(t2))


def test_linearize_runs_the_function_once():
    calls = []

    def g(x):
        calls.append(1)
        return np.tanh(x) * 2.0
    _, g_jvp = ff.linearize(g, X)
    for _ in range(4):
        g_jvp(rng.normal(size=3))
    assert len(calls) == 1


def test_linearize_integer_primals_and_aux():
    _, f_jvp = ff.linearize(lambda x, n: x * n, X, np.array(3))
    close(f_jvp(np.ones(3), None), np.full(3, 3.0))
    out, f_jvp, aux = ff.linearize(lambda x: (x ** 2, {"norm": np.sum(x)}), X, has_aux=True)
    close(out, X ** 2)
    close(aux["norm"], np.sum(X))
    close(f_jvp(np.ones(3)), 2 * X)


def test_linearize_composes_with_grad_and_vmap():
    # differentiate f_jvp: in the tangent (linear: the Jacobian's rows) and, through a
    # fresh linearize, in the primal (second derivatives)
    jvp_of = lambda x, t: np.sum(ff.linearize(lambda v: np.sin(v) ** 2, x)[1](t))  # noqa: E731
    t = rng.normal(size=3)
    close(ff.grad(jvp_of, argnums=1)(X, t), 2 * np.sin(X) * np.cos(X))
    close(ff.grad(jvp_of)(X, t), 2 * np.cos(2 * X) * t)
    check_grads(jvp_of, (X, t), order=2)
    _, f_jvp = ff.linearize(lambda v: np.sin(v) ** 2, X)
    close(ff.vmap(f_jvp)(np.eye(3)), np.diag(np.sin(2 * X)))


def test_linearize_errors():
    _, f_jvp = ff.linearize(f, X, P)
    with pytest.raises(TypeError, match="one tangent per primal"):
        f_jvp(X)
    with pytest.raises(ValueError, match=r"linearize: the tangent given to f_jvp at "
                                         r"\[0\] has shape \(2,\), but the primal there has "
                                         r"shape \(3,\)"):
        f_jvp(np.ones(2), P)
    with pytest.raises(ValueError, match="linearize"):
        f_jvp(X, {"w": X})


# ----------------------------------------------------------------------------- linear_transpose
def test_linear_transpose_is_the_matrix_transpose():
    a = rng.normal(size=(4, 3))
    f_t = ff.linear_transpose(lambda x: a @ x, np.zeros(3))
    ct = rng.normal(size=4)
    (got,) = f_t(ct)
    close(got, a.T @ ct)
    # <f(x), ct> == <x, f_t(ct)> on pytrees
    g = lambda x, y: {"u": 2.0 * x + y[0], "v": np.cumsum(y[1])}  # noqa: E731
    x, y = rng.normal(size=3), (rng.normal(size=3), rng.normal(size=5))
    g_t = ff.linear_transpose(g, x, y)
    ct = {"u": rng.normal(size=3), "v": rng.normal(size=5)}
    tx, ty = g_t(ct)
    out = g(x, y)
    lhs = np.sum(out["u"] * ct["u"]) + np.sum(out["v"] * ct["v"])
    rhs = np.sum(x * tx) + np.sum(y[0] * ty[0]) + np.sum(y[1] * ty[1])
    close(lhs, rhs)
    check_grads(lambda c: g_t({"u": c, "v": ct["v"]}), (ct["u"],), order=2)


def test_linear_transpose_errors():
    f_t = ff.linear_transpose(lambda x: 2.0 * x, np.zeros(3))
    with pytest.raises(ValueError, match=r"linear_transpose: the cotangent at <root> has "
                                         r"shape \(2,\), but the output there has shape \(3,\)"):
        f_t(np.ones(2))
    with pytest.raises(ValueError, match="linear_transpose"):
        f_t((np.ones(3),))


# ----------------------------------------------------------------------------- has_aux
@pytest.mark.parametrize("jac", [ff.jacrev, ff.jacfwd])
def test_jacobians_with_aux(jac):
    def g(x, y):
        return np.sin(x) * y, {"n": np.sum(x), "tag": "hi"}
    x, y = rng.normal(size=3), rng.normal(size=3)
    j, aux = jac(g, has_aux=True)(x, y)
    close(j, np.diag(np.cos(x) * y))
    close(aux["n"], np.sum(x))
    assert aux["tag"] == "hi" and isinstance(aux["n"], np.ndarray)
    (jx, jy), _ = jac(g, argnums=(0, 1), has_aux=True)(x, y)
    close(jx, np.diag(np.cos(x) * y))
    close(jy, np.diag(np.sin(x)))
    # second order: the Jacobian of a has_aux Jacobian
    h = ff.jacfwd(lambda v: jac(g, has_aux=True)(v, y)[0])(x)
    want = np.zeros((3, 3, 3))
    want[np.arange(3), np.arange(3), np.arange(3)] = -np.sin(x) * y
    close(h, want)
    check_grads(lambda v: jac(g, has_aux=True)(v, y)[0], (x,), order=2)
    # no aux without the flag; a clear error when the function does not return a pair
    close(jac(lambda v: np.sin(v))(x), np.diag(np.cos(x)))
    with pytest.raises(TypeError, match="has_aux=True needs the function to return a pair"):
        jac(lambda v: np.sin(v), has_aux=True)(x)


def test_jacobians_with_aux_keep_their_positional_order():
    # JAX's order: (fun, argnums, has_aux, holomorphic, allow_int)
    j, aux = ff.jacrev(lambda z: (z * z, 1), 0, True, True)(np.array([1.0 + 2.0j]))
    close(j, np.array([[2.0 + 4.0j]]))
    assert aux == 1
    j, aux = ff.jacrev(lambda n: (n * 2.0, 0), 0, True, False, True)(np.array([3]))
    assert j.dtype == ff.dtypes.float0
