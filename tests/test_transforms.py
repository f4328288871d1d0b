"""The transform APIs: grad, value_and_grad, vjp, jvp, jacrev, jacfwd, hessian, their
compositions, and custom rules (custom_vjp / custom_jvp)."""
from __future__ import annotations

import collections
import functools

import numpy as np
import pytest

import funcflux as ff
from funcflux.transforms import edge
from tests import devices
from tests.devices import get, put

Point = collections.namedtuple("Point", ["x", "y"])


def close(a, b, tol=1e-7):
    np.testing.assert_allclose(np.asarray(get(a)), np.asarray(get(b)), rtol=tol, atol=tol)


def float_primals_on_device():
    """Skip the rest of a test that differentiates a Python float next to device arrays,
    while the transforms turn such floats into host 0-d arrays (edge.as_primal), which a
    device (CuPy, the strict stand-in) refuses to mix with its arrays."""
    if devices.on_device() and isinstance(edge.as_primal(1.0), np.ndarray):
        pytest.skip("a differentiated Python float becomes a host 0-d array "
                    "(funcflux.transforms.edge.as_primal); the device refuses to mix it")


def D(*args, **kwargs):
    """``np.array`` on the session's device (``pytest --device strict``/``gpu``)."""
    return put(np.array(*args, **kwargs))


def ones(*args, **kwargs):
    return put(np.ones(*args, **kwargs))


def zeros(*args, **kwargs):
    return put(np.zeros(*args, **kwargs))


# ----------------------------------------------------------------------------- the issue's examples
def test_issue_polynomial():
    f = lambda x: 3 * x**2 + 2 * x + 1
    assert ff.grad(f)(2.0) == 14.0
    assert ff.grad(ff.grad(f))(2.0) == 6.0


def test_issue_argnums_tuple():
    f = lambda x, y: np.sum((x - y) ** 2)
    gx, gy = get(ff.grad(f, argnums=(0, 1))(D([2., 1.]), D([2., 0.])))
    assert repr((gx, gy)) == "(array([0., 2.]), array([-0., -2.]))"


def test_perturbation_confusion():
    assert ff.grad(lambda x: x * ff.grad(lambda y: x + y)(1.0))(3.0) == 1.0
    # the same with the inner function closing over the outer value inside a product
    assert ff.grad(lambda x: ff.grad(lambda y: x * y)(2.0))(5.0) == 1.0


# ----------------------------------------------------------------------------- grad and friends
def test_value_and_grad():
    v, g = ff.value_and_grad(lambda x: np.sum(np.sin(x)))(D([0.0, 1.0]))
    close(v, np.sin(1.0))
    close(g, np.cos([0.0, 1.0]))


def test_argnums_negative_and_int():
    f = lambda a, b, c: a * b * c
    assert ff.grad(f, argnums=-1)(2.0, 3.0, 4.0) == 6.0
    assert ff.grad(f, argnums=1)(2.0, 3.0, 4.0) == 8.0
    with pytest.raises(ValueError, match="argnums"):
        ff.grad(f, argnums=3)(2.0, 3.0, 4.0)


def test_kwargs_are_constants():
    f = lambda x, scale=1.0: scale * x ** 2
    assert ff.grad(f)(3.0, scale=2.0) == 12.0


def test_has_aux_grad_and_value_and_grad():
    f = lambda x: (np.sum(x ** 2), {"norm": np.sqrt(np.sum(x ** 2))})
    x = D([3.0, 4.0])
    g, aux = ff.grad(f, has_aux=True)(x)
    close(g, 2 * x)
    close(aux["norm"], 5.0)
    assert not isinstance(aux["norm"], ff.core.trace.Tracer)
    (v, aux2), g2 = ff.value_and_grad(f, has_aux=True)(x)
    close(v, 25.0)
    close(g2, 2 * x)
    close(aux2["norm"], 5.0)


def test_has_aux_vjp_and_jvp():
    f = lambda x: (np.sin(x), np.cos(x))
    x = D([0.1, 0.2])
    out, pullback, aux = ff.vjp(f, x, has_aux=True)
    close(out, np.sin(x))
    close(aux, np.cos(x))
    close(pullback(ones(2))[0], np.cos(x))
    out, t, aux = ff.jvp(f, (x,), (ones(2),), has_aux=True)
    close(t, np.cos(x))
    close(aux, np.cos(x))
    with pytest.raises(TypeError, match="pair"):
        ff.vjp(lambda x: x, x, has_aux=True)


def test_vjp_pullback_twice():
    x = D([0.5, -1.0, 2.0])
    out, pullback = ff.vjp(lambda x: np.tanh(x) * x, x)
    ct = D([1.0, 2.0, 3.0])
    a, = pullback(ct)
    b, = pullback(ct)
    close(a, b)
    close(a, ct * ((1 - np.tanh(x) ** 2) * x + np.tanh(x)))


def test_vjp_pytree_output():
    x = D([1.0, 2.0])
    out, pullback = ff.vjp(lambda x: {"a": x * 2, "b": (np.sum(x), x ** 2)}, x)
    g, = pullback({"a": ones(2), "b": (D(1.0), D([1.0, 0.0]))})
    close(g, [2 + 1 + 2, 2 + 1])


def test_jvp():
    x = D([1.0, 2.0])
    out, t = ff.jvp(lambda x: np.sin(x) * x, (x,), (D([1.0, 0.5]),))
    close(out, np.sin(x) * x)
    close(t, D([1.0, 0.5]) * (np.cos(x) * x + np.sin(x)))
    # several primals, a pytree primal
    float_primals_on_device()
    out, t = ff.jvp(lambda p, s: p["w"] * s, ({"w": x}, 3.0), ({"w": ones(2)}, 1.0))
    close(t, 3.0 + x)


def test_python_ints_promoted():
    assert ff.grad(lambda x: x ** 2)(3) == 6.0
    assert ff.grad(lambda x: x ** 2)(3).dtype == np.float64
    assert ff.jvp(lambda x: x * 2, (3,), (1,))[1] == 2.0


@pytest.mark.parametrize("arg", [
    3, 2.5, np.float32(1.5), np.array([1.0, 2.0], np.float32), 1.0 + 2.0j,
    [3, 2.5, np.array([1, 2])], {"a": (np.array([1.0]), True), "n": 4},
], ids=["int", "float", "f32 scalar", "f32 array", "complex", "list", "dict"])
def test_grad_and_vjp_read_arguments_alike(arg):
    """grad, value_and_grad and vjp share one argument edge: the same promotion of bare
    ints, the same float leaves differentiated, the same None for integer leaves."""
    def floating(leaf):
        return isinstance(leaf, (float, complex)) or \
            getattr(getattr(leaf, "dtype", None), "kind", "") in "fc"

    def f(x):
        return sum(np.sum(np.real(leaf * leaf)) for leaf in ff.tree.leaves(x)
                   if floating(leaf))
    g = ff.grad(f)(arg)
    value, g2 = ff.value_and_grad(f)(arg)
    out, pullback = ff.vjp(f, arg)
    (c,) = pullback(np.ones_like(out))
    assert np.asarray(value) == np.asarray(out)
    gl, g2l, cl = (ff.tree.flatten(t, is_leaf=lambda v: v is None)[0] for t in (g, g2, c))
    assert len(gl) == len(g2l) == len(cl)
    for a, b, d in zip(gl, g2l, cl):
        if a is None:
            assert b is None and d is None
            continue
        assert a.dtype == b.dtype == d.dtype and a.shape == b.shape == d.shape
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, d)  # grad is the pullback of 1.0 (JAX)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    x = D([0.5, 1.5], dtype=dtype)
    f = lambda x: np.sum(np.tanh(x) * 2.0 + x ** 2 / 3.0)
    assert ff.grad(f)(x).dtype == dtype
    out, t = ff.jvp(lambda x: np.sin(x) * 0.5, (x,), (np.ones_like(x),))
    assert out.dtype == dtype and t.dtype == dtype
    assert ff.jacrev(lambda x: np.exp(x) * 2.0)(x).dtype == dtype
    assert ff.jacfwd(lambda x: np.exp(x) * 2.0)(x).dtype == dtype
    assert ff.hessian(f)(x).dtype == dtype


def test_gradient_mirrors_argument_structure():
    params = {"w": D([1.0, 2.0]), "b": 0.5, "layers": [ones(2), (3.0, None)],
              "p": Point(D(1.0), D(2.0)), "n": 3}
    def loss(p):
        return (np.sum(p["w"] ** 2) + p["b"] * 2.0 + np.sum(p["layers"][0] * 3.0)
                + p["layers"][1][0] ** 2 + p["p"].x * p["p"].y)
    g = ff.grad(loss)(params)
    assert set(g) == set(params)
    close(g["w"], [2.0, 4.0])
    close(g["b"], 2.0)
    close(g["layers"][0], [3.0, 3.0])
    assert isinstance(g["layers"], list) and isinstance(g["layers"][1], tuple)
    close(g["layers"][1][0], 6.0)
    assert g["layers"][1][1] is None
    assert isinstance(g["p"], Point)
    close(g["p"].x, 2.0)
    close(g["p"].y, 1.0)
    assert g["n"] is None  # int leaves are constants


def test_int_leaves_get_none():
    g = ff.grad(lambda t: np.sum(t[0] * t[1]))((D([1.0, 2.0]), D([3, 4])))
    close(g[0], [3, 4])
    assert g[1] is None


def test_unused_argument_gets_zeros():
    g = ff.grad(lambda x, y: np.sum(x), argnums=(0, 1))(ones(2), ones(3))
    close(g[1], zeros(3))


def test_broadcasting_undone():
    x = ones((3, 1))
    y = D([1.0, 2.0, 3.0, 4.0])
    gx, gy = ff.grad(lambda x, y: np.sum(x * y), argnums=(0, 1))(x, y)
    assert gx.shape == (3, 1) and gy.shape == (4,)
    close(gx, np.full((3, 1), 10.0))
    close(gy, np.full(4, 3.0))
    float_primals_on_device()
    gs = ff.grad(lambda s: np.sum(s + y))(2.0)
    close(gs, 4.0)


def test_eager_control_flow():
    def f(x):
        if np.sum(x) > 0:
            return np.sum(x ** 2)
        return np.sum(-x)
    close(ff.grad(f)(D([1.0, 2.0])), [2.0, 4.0])
    close(ff.grad(f)(D([-1.0, -2.0])), [-1.0, -1.0])

    def loop(x):
        while np.max(x) < 10.0:
            x = x * 2.0
        return np.sum(x)
    close(ff.grad(loop)(D([1.0, 3.0])), [4.0, 4.0])


def test_stop_gradient():
    assert ff.grad(lambda x: x * ff.stop_gradient(x))(3.0) == 3.0
    assert ff.grad(ff.grad(lambda x: x ** 2 * ff.stop_gradient(x)))(3.0) == 6.0
    tree = ff.stop_gradient({"a": 1.0, "b": (2.0,)})
    assert set(tree) == {"a", "b"}


# ----------------------------------------------------------------------------- Jacobians
def test_jacrev_jacfwd_closed_form():
    A = D([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    x = D([0.3, -0.2, 0.7])
    f = lambda x: np.tanh(A @ x)
    want = (1 - np.tanh(A @ x) ** 2)[:, None] * A
    close(ff.jacrev(f)(x), want)
    close(ff.jacfwd(f)(x), want)


def test_jacobian_matrix_input_shape():
    x = put(np.arange(6.0).reshape(2, 3) / 10)
    f = lambda x: np.sum(x ** 2, axis=0)
    for jac in (ff.jacrev, ff.jacfwd):
        J = jac(f)(x)
        assert J.shape == (3, 2, 3)
        want = np.zeros((3, 2, 3))
        for i in range(3):
            want[i, :, i] = 2 * get(x)[:, i]
        close(J, want)


def test_jacobian_pytree_in_and_out():
    params = {"a": D([1.0, 2.0]), "b": D(3.0)}
    f = lambda p: (p["a"] * p["b"], np.sum(p["a"]) ** 2)
    for jac in (ff.jacrev, ff.jacfwd):
        J = jac(f)(params)
        assert isinstance(J, tuple) and len(J) == 2
        assert set(J[0]) == {"a", "b"}
        assert J[0]["a"].shape == (2, 2) and J[0]["b"].shape == (2,)
        assert J[1]["a"].shape == (2,) and J[1]["b"].shape == ()
        close(J[0]["a"], 3.0 * np.eye(2))
        close(J[0]["b"], [1.0, 2.0])
        close(J[1]["a"], [6.0, 6.0])
        close(J[1]["b"], 0.0)


def test_jacobian_argnums_tuple():
    f = lambda x, y: x * y ** 2
    x, y = D([1.0, 2.0]), D([3.0, 4.0])
    for jac in (ff.jacrev, ff.jacfwd):
        Jx, Jy = jac(f, argnums=(0, 1))(x, y)
        close(Jx, np.diag(y ** 2))
        close(Jy, np.diag(2 * x * y))
        Jy2 = jac(f, argnums=1)(x, y)
        close(Jy2, np.diag(2 * x * y))


def test_hessian():
    x = D([0.5, -1.0])
    f = lambda x: np.sum(x ** 3) + x[0] * x[1]
    close(ff.hessian(f)(x), np.diag(6 * x) + D([[0, 1.0], [1.0, 0]]))
    float_primals_on_device()
    H = ff.hessian(lambda p: np.sum(p["u"] ** 2 * p["v"]))({"u": D([1.0, 2.0]), "v": 3.0})
    close(H["u"]["u"], np.diag([6.0, 6.0]))
    close(H["u"]["v"], [2.0, 4.0])
    close(H["v"]["u"], [2.0, 4.0])
    close(H["v"]["v"], 0.0)


# ----------------------------------------------------------------------------- compositions
def test_hessian_vector_product():
    x = D([0.5, -1.0, 2.0])
    v = D([1.0, 0.5, -0.25])
    f = lambda x: np.sum(np.sin(x) * x[0])
    H = ff.hessian(f)(x)
    _, hvp = ff.jvp(ff.grad(f), (x,), (v,))
    close(hvp, H @ v)


def test_vmap_of_grad_and_grad_of_vmap():
    xs = D([[0.1, 0.2], [0.3, -0.4], [1.0, 2.0]])
    f = lambda x: np.sum(np.tanh(x) ** 2)
    per_example = ff.vmap(ff.grad(f))(xs)
    close(per_example, np.stack([ff.grad(f)(x) for x in xs]))
    total = ff.grad(lambda xs: np.sum(ff.vmap(f)(xs)))(xs)
    close(total, per_example)


def test_vmap_of_jvp():
    xs = D([0.1, 0.5, 2.0])
    ts = D([1.0, 2.0, 3.0])
    out, t = ff.vmap(lambda x, t: ff.jvp(np.sin, (x,), (t,)))(xs, ts)
    close(out, np.sin(xs))
    close(t, np.cos(xs) * ts)


def test_jacfwd_of_jacrev():
    x = D([0.3, 0.7])
    f = lambda x: np.sin(x) * np.sum(x)
    J2 = ff.jacfwd(ff.jacrev(f))(x)
    J2b = ff.jacrev(ff.jacfwd(f))(x)
    assert J2.shape == (2, 2, 2)
    # d2 f_i / dx_j dx_k
    want = zeros((2, 2, 2))
    s = np.sum(x)
    for i in range(2):
        for j in range(2):
            for k in range(2):
                v = 0.0
                if i == j == k:
                    v += -np.sin(x[i]) * s
                if i == j:
                    v += np.cos(x[i])
                if i == k:
                    v += np.cos(x[i])
                want[i, j, k] = v
    close(J2, want)
    close(J2b, want)


def test_vmap_vmap_grad():
    xs = np.arange(12.0).reshape(3, 2, 2) / 10
    f = lambda x: np.sum(x ** 3)
    g = ff.vmap(ff.vmap(ff.grad(f)))(xs)
    close(g, 3 * xs ** 2)


def test_grad_of_grad_of_grad():
    f = lambda x: x ** 4
    assert ff.grad(ff.grad(ff.grad(f)))(2.0) == 48.0


# ----------------------------------------------------------------------------- custom rules
@ff.custom_jvp
def log1pexp(x):
    return np.log(1.0 + np.exp(x))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t * (1.0 - 1.0 / (1.0 + np.exp(x)))


@ff.custom_vjp
def log1pexp_v(x):
    return np.log(1.0 + np.exp(x))


def _lpe_fwd(x):
    return log1pexp_v(x), x


def _lpe_bwd(x, g):
    return (g * (1.0 - 1.0 / (1.0 + np.exp(x))),)


log1pexp_v.defvjp(_lpe_fwd, _lpe_bwd)


@ff.custom_vjp
def clip_gradient(lo, hi, x):
    return x


clip_gradient.defvjp(lambda lo, hi, x: (x, (lo, hi)),
                     lambda res, g: (None, None, np.minimum(np.maximum(g, res[0]), res[1])))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(autouse=False)
def quiet():
    with np.errstate(all="ignore"):
        yield


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("fn", [log1pexp, log1pexp_v], ids=["custom_jvp", "custom_vjp"])
def test_stable_log1pexp(fn):
    xs = D([-3.0, 0.0, 2.0, 1000.0])
    naive = ff.grad(lambda x: np.sum(np.log(1.0 + np.exp(x))))(xs)
    assert np.isnan(naive[-1])  # the reason for the custom rule
    g = ff.grad(lambda x: np.sum(fn(x)))(xs)
    close(g, _sigmoid(xs))
    close(ff.vmap(ff.grad(fn))(xs), _sigmoid(xs))                   # vmap of grad
    close(ff.grad(lambda x: np.sum(ff.vmap(fn)(x)))(xs), _sigmoid(xs))  # grad of vmap
    close(ff.jacrev(fn)(xs), np.diag(_sigmoid(xs)))
    s = _sigmoid(xs[:3])
    close(ff.vmap(ff.grad(ff.grad(fn)))(xs[:3]), s * (1 - s))      # bwd is differentiated
    close(ff.hessian(lambda x: np.sum(fn(x)))(xs[:3]), np.diag(s * (1 - s)))
    _, hvp = ff.jvp(ff.grad(lambda x: np.sum(fn(x))), (xs[:3],), (ones(3),))
    close(hvp, s * (1 - s))


@pytest.mark.usefixtures("quiet")
def test_custom_jvp_forward_mode():
    xs = D([-3.0, 0.0, 1000.0])
    out, t = ff.jvp(log1pexp, (xs,), (ones(3),))
    close(t, _sigmoid(xs))
    close(ff.jacfwd(log1pexp)(xs), np.diag(_sigmoid(xs)))
    close(ff.jacfwd(ff.jacfwd(log1pexp))(xs[:2])[[0, 1], [0, 1], [0, 1]],
          _sigmoid(xs[:2]) * (1 - _sigmoid(xs[:2])))
    close(ff.jvp(ff.vmap(log1pexp), (xs,), (ones(3),))[1], _sigmoid(xs))
    float_primals_on_device()
    close(ff.vmap(lambda x: ff.jvp(log1pexp, (x,), (1.0,))[1])(xs), _sigmoid(xs))


def test_custom_vjp_under_forward_mode_differentiates_the_body():
    xs = D([-1.0, 0.5, 2.0])
    close(ff.jvp(log1pexp_v, (xs,), (ones(3),))[1], _sigmoid(xs))
    close(ff.jacfwd(log1pexp_v)(xs), np.diag(_sigmoid(xs)))
    # the clip is a reverse-mode rule: forward mode sees the identity body
    close(ff.jacfwd(lambda x: 5.0 * clip_gradient(-1.0, 1.0, x))(xs[:2]), 5.0 * np.eye(2))


def test_gradient_clipping():
    x = D([1.0, 2.0])
    f = lambda x: np.sum(5.0 * clip_gradient(-1.0, 1.0, x * 2.0))
    # the cotangent reaching the clip is 5, clipped to 1, then times 2
    close(ff.grad(f)(x), [2.0, 2.0])
    close(ff.grad(lambda x: np.sum(5.0 * x * 2.0))(x), [10.0, 10.0])
    close(ff.vmap(ff.grad(lambda x: 5.0 * clip_gradient(-1.0, 1.0, x * 2.0)))(x), [2.0, 2.0])
    close(ff.grad(lambda x: np.sum(5.0 * ff.vmap(lambda v: clip_gradient(-1.0, 1.0, v * 2.0))(x)))(x),
          [2.0, 2.0])
    close(ff.jacrev(lambda x: 5.0 * clip_gradient(-1.0, 1.0, x))(x), np.eye(2))
    assert clip_gradient(-1.0, 1.0, x) is x  # eager: the body itself


def test_custom_vjp_pytrees_and_many_outputs():
    @ff.custom_vjp
    def f(p, s):
        return {"sum": p["a"] + p["b"], "prod": p["a"] * p["b"] * s}

    def fwd(p, s):
        return f(p, s), (p["a"], p["b"], s)

    def bwd(res, g):
        a, b, s = res
        return ({"a": g["sum"] + g["prod"] * b * s, "b": g["sum"] + g["prod"] * a * s}, None)

    f.defvjp(fwd, bwd)
    p = {"a": D([1.0, 2.0]), "b": D([3.0, 4.0])}
    loss = lambda p, s: np.sum(f(p, s)["prod"]) + 2.0 * np.sum(f(p, s)["sum"])
    g = ff.grad(loss)(p, 2.0)
    close(g["a"], p["b"] * 2.0 + 2.0)
    close(g["b"], p["a"] * 2.0 + 2.0)
    float_primals_on_device()
    gs = ff.grad(loss, argnums=1)(p, 2.0)  # bwd said None: a zero cotangent
    close(gs, 0.0)
    out, pullback = ff.vjp(lambda p: f(p, 2.0), p)
    ct = {"sum": ones(2), "prod": zeros(2)}
    close(pullback(ct)[0]["a"], ones(2))
    close(pullback(ct)[0]["a"], ones(2))  # pullback called twice
    # vmap over a batch of dicts, with a shared s, then differentiated
    pb = {"a": ones((3, 2)), "b": put(np.arange(6.0).reshape(3, 2))}
    gb = ff.grad(lambda pb: np.sum(ff.vmap(f, in_axes=(0, None))(pb, 2.0)["prod"]))(pb)
    close(gb["a"], pb["b"] * 2.0)


def test_custom_vjp_shared_argument_under_vmap():
    @ff.custom_vjp
    def scale(w, x):
        return w * x

    scale.defvjp(lambda w, x: (w * x, (w, x)), lambda r, g: (np.sum(g * r[1]), g * r[0]))
    w, xs = D(3.0), D([1.0, 2.0, 3.0])
    loss = lambda w, xs: np.sum(ff.vmap(scale, in_axes=(None, 0))(w, xs))
    gw, gx = ff.grad(loss, argnums=(0, 1))(w, xs)
    close(gw, 6.0)
    close(gx, [3.0, 3.0, 3.0])


def test_custom_nondiff_argnums_and_kwargs():
    @functools.partial(ff.custom_vjp, nondiff_argnums=(0,))
    def apply(fn, x, scale=2.0):
        return fn(x) * scale

    apply.defvjp(lambda fn, x, scale: (apply(fn, x, scale), (x, scale)),
                 lambda fn, res, g: (g * res[1] * 10.0, None))
    assert ff.grad(lambda x: apply(np.sin, x))(0.0) == 20.0
    assert ff.grad(lambda x: apply(np.sin, x, scale=3.0))(0.0) == 30.0

    @functools.partial(ff.custom_jvp, nondiff_argnums=(0,))
    def power(n, x):
        return x ** n

    @power.defjvp
    def _(n, primals, tangents):
        (x,), (t,) = primals, tangents
        return x ** n, n * x ** (n - 1) * t

    assert ff.grad(lambda x: power(3, x))(2.0) == 12.0
    assert ff.jvp(lambda x: power(3, x), (2.0,), (1.0,))[1] == 12.0


def test_custom_rule_errors():
    @ff.custom_vjp
    def f(x, y):
        return x * y

    with pytest.raises(TypeError, match="defvjp"):
        ff.grad(f)(1.0, 2.0)
    f.defvjp(lambda x, y: (x * y, None), lambda r, g: g)
    with pytest.raises(TypeError, match="one cotangent per"):
        ff.grad(f)(1.0, 2.0)
    f.defvjp(lambda x, y: (x * y, None), lambda r, g: (ones(3), None))
    with pytest.raises(ValueError, match="shape"):
        ff.grad(f)(1.0, 2.0)
    f.defvjp(lambda x, y: x * y, lambda r, g: (g, g))
    with pytest.raises(TypeError, match="fwd must return a pair"):
        ff.grad(f)(1.0, 2.0)


def test_custom_jvp_int_argument_and_dtype():
    @ff.custom_jvp
    def f(x, k):
        return x * k

    @f.defjvp
    def _(primals, tangents):
        (x, k), (t, tk) = primals, tangents
        assert tk is None  # integer leaves carry no tangent
        return x * k, t * k

    x = D([1.0, 2.0], dtype=np.float32)
    g = ff.grad(lambda x: np.sum(f(x, D([3, 4]))))(x)
    close(g, [3.0, 4.0])
    assert g.dtype == np.float32


def test_a_gradient_frees_its_intermediate_arrays_without_the_garbage_collector():
    """The tape and its tracers must not form a reference cycle: with the collector off,
    every intermediate of a step goes as soon as grad returns (or the pullback is dropped)."""
    import gc
    import weakref
    refs = []

    def f(x):
        h = np.sin(x) * 2.0
        refs.append(weakref.ref(h.value))  # the array the tape holds for this node
        return np.sum(h)

    was = gc.isenabled()
    gc.disable()
    try:
        ff.grad(f)(np.ones(3))
        assert refs[-1]() is None
        _, pullback = ff.vjp(f, np.ones(3))
        pullback(np.float64(1.0))
        assert refs[-1]() is not None  # the pullback may run again: its tape stays
        del pullback
        assert refs[-1]() is None
        ff.jacrev(f)(np.ones(3))
        assert all(r() is None for r in refs)
    finally:
        if was:
            gc.enable()


# -- every derivative handed to the user is an ordinary writable array ---------------------
def _assert_owned(*arrays, given=()):
    for k, a in enumerate(arrays):
        assert isinstance(a, np.ndarray) and a.flags.writeable, (k, a.flags)
        for u in list(given) + list(arrays[:k]):
            assert not np.shares_memory(a, u), k
    for a in arrays:
        a *= 2  # what a user does with a gradient; raised on read-only views before


@pytest.mark.parametrize("n", [10, 4096, 4097, 10_000])
@pytest.mark.parametrize("name,f", [
    ("sum", np.sum), ("mean", np.mean),
    ("broadcast_to", lambda x: np.sum(np.broadcast_to(x, (3,) + x.shape) * 2.0)),
    ("reshape", lambda x: np.sum(np.reshape(x, (-1, 1)))),
    ("indexing", lambda x: x[0] + np.sum(x[1:3])),
])
def test_gradients_are_writable_arrays(name, f, n):
    # Regression: grad(np.sum) was a read-only broadcast view; np.mean's gradient was
    # writable below 4,097 elements and read-only above.
    x = np.linspace(0.0, 1.0, n)
    g = ff.grad(f)(x)
    want = ff.grad(f)(x).copy()
    _assert_owned(g, given=[x])
    np.testing.assert_allclose(g, 2 * want)
    v, g = ff.value_and_grad(f)(x)
    _assert_owned(g, given=[x])
    _, pullback = ff.vjp(f, x)
    (g,) = pullback(np.float64(1.0))
    _assert_owned(g, given=[x])


def test_gradients_of_several_arguments_do_not_share_memory():
    x, y = np.ones(3), np.ones(3)
    gx, gy = ff.grad(lambda x, y: np.sum(x + y), argnums=(0, 1))(x, y)
    _assert_owned(gx, gy, given=[x, y])
    g = ff.grad(lambda p: np.sum(p["a"] + p["b"]))({"a": x, "b": y})
    _assert_owned(g["a"], g["b"], given=[x, y])


def test_pullback_and_jvp_do_not_alias_what_the_user_gave():
    # The identity's pullback would hand back the user's own cotangent (and jvp the
    # user's tangent): a later `g *= 2` would change the user's array.
    x, ct, t = np.ones(3), np.full(3, 2.0), np.full(3, 3.0)
    (g,) = ff.vjp(lambda x: x, x)[1](ct)
    _assert_owned(g, given=[x, ct])
    np.testing.assert_allclose(ct, 2.0)
    _, tout = ff.jvp(lambda x: x, (x,), (t,))
    _assert_owned(tout, given=[x, t])
    _, tout = ff.jvp(lambda x: np.broadcast_to(x, (2, 3)), (x,), (t,))
    _assert_owned(tout, given=[x, t])
    np.testing.assert_allclose(t, 3.0)


@pytest.mark.parametrize("jac", [ff.jacrev, ff.jacfwd])
def test_jacobians_are_writable_arrays(jac):
    x = np.array([1.0, 2.0])
    J = jac(lambda x: {"a": x * 2.0, "b": np.sum(x)})(x)
    _assert_owned(J["a"], J["b"], given=[x])
    Jx, Jy = jac(lambda x, y: x + y, argnums=(0, 1))(x, x.copy())
    _assert_owned(Jx, Jy, given=[x])
    H = ff.hessian(lambda x: np.sum(x ** 3))(x)
    _assert_owned(H, given=[x])


def test_dense_weight_gradient_keeps_its_layout_and_is_not_copied():
    # nn.Dense keeps a column-major weight and gets a column-major gradient on purpose;
    # the writable-gradient check must not turn it into a C-ordered copy.
    layer = ff.nn.Dense(3, 2, rng=0, dtype=np.float64)
    x = np.ones((4, 3))
    g = ff.grad(lambda m: np.sum(m(x) ** 2))(layer)
    assert layer.weight.flags.f_contiguous and g.weight.flags.f_contiguous
    assert g.weight.flags.writeable and g.weight.base is not None  # the GEMM's own result
