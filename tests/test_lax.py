"""funcflux.lax: structured control flow against the Python it stands for.

Every construct is checked against a plain Python loop or branch: values, ``grad``
(reverse mode), ``jvp`` (forward mode), ``hessian`` where it applies, and ``vmap``
against a loop over the examples, with batched predicates, indices and bounds
(JAX's semantics: every branch runs and selects; a loop runs until every member is
done). The errors (carry types, branch types, reverse mode through while_loop) are
checked for their texts.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import funcflux as ff
from funcflux import lax

RNG = np.random.default_rng(0)


def close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12, **kw)


# ---------------------------------------------------------------------------- cond
def f_cond(p, x):
    return lax.cond(p, lambda v: np.sin(v) * v, lambda v: np.cos(v) + v ** 2, x)


def f_if(p, x):
    return np.sin(x) * x if p else np.cos(x) + x ** 2


@pytest.mark.parametrize("p", [True, False, 1, 0, np.bool_(True), np.array(0.0)])
def test_cond_is_the_branch_it_picks(p):
    x = np.array([0.3, -1.2, 2.0])
    close(f_cond(p, x), f_if(p, x))
    close(ff.grad(lambda x: np.sum(f_cond(p, x)))(x), ff.grad(lambda x: np.sum(f_if(p, x)))(x))
    t = np.array([1.0, -2.0, 0.5])
    close(ff.jvp(lambda x: f_cond(p, x), (x,), (t,))[1], ff.jvp(lambda x: f_if(p, x), (x,), (t,))[1])
    close(ff.hessian(lambda x: np.sum(f_cond(p, x)))(x), ff.hessian(lambda x: np.sum(f_if(p, x)))(x))


def test_cond_predicate_computed_from_traced_values():
    # Outside vmap the predicate is read from the value, as Python's if would.
    f = lambda x: lax.cond(np.sum(x) > 0, lambda v: 2.0 * v, lambda v: -v, x)
    for x in (np.array([1.0, 2.0]), np.array([-3.0, 1.0])):
        close(ff.grad(lambda x: np.sum(f(x)))(x), np.full(2, 2.0 if x.sum() > 0 else -1.0))


def test_vmap_of_cond_with_a_batched_predicate_matches_a_loop():
    ps = np.array([True, False, True, False])
    xs = RNG.normal(size=(4, 3))
    out = ff.vmap(f_cond)(ps, xs)
    close(out, np.stack([f_if(p, x) for p, x in zip(ps, xs)]))
    # per-example gradients through the selected branches
    g = ff.vmap(ff.grad(lambda p, x: np.sum(f_cond(p, x)), argnums=1))(ps, xs)
    close(g, np.stack([ff.grad(lambda x: np.sum(f_if(p, x)))(x) for p, x in zip(ps, xs)]))
    # gradient of a batch sum, reverse mode through the select
    g2 = ff.grad(lambda xs: np.sum(ff.vmap(f_cond)(ps, xs)))(xs)
    close(g2, g)


def test_vmap_of_cond_with_unbatched_predicate_and_batched_operands():
    xs = RNG.normal(size=(5, 2))
    close(ff.vmap(lambda x: f_cond(True, x))(xs), np.stack([f_if(True, x) for x in xs]))


def test_nested_vmap_of_cond():
    ps = np.array([[True, False], [False, True], [True, True]])
    xs = RNG.normal(size=(3, 2, 4))
    out = ff.vmap(ff.vmap(f_cond))(ps, xs)
    want = np.stack([np.stack([f_if(p, x) for p, x in zip(pr, xr)]) for pr, xr in zip(ps, xs)])
    close(out, want)


def test_cond_pytree_operands_and_outputs():
    def f(p, params):
        return lax.cond(p, lambda d: {"a": d["w"] * 2.0, "b": d["b"]},
                        lambda d: {"a": -d["w"], "b": d["b"] + 1.0}, params)
    ps = np.array([True, False])
    params = {"w": RNG.normal(size=(2, 3)), "b": RNG.normal(size=(2,))}
    out = ff.vmap(f)(ps, params)
    close(out["a"], np.stack([params["w"][0] * 2.0, -params["w"][1]]))
    close(out["b"], np.array([params["b"][0], params["b"][1] + 1.0]))


def test_cond_errors():
    with pytest.raises(TypeError, match=r"predicate must be a scalar, got shape \(2,\)"):
        lax.cond(np.array([True, False]), np.sin, np.cos, 1.0)
    # Under vmap both branches run, so they must agree in type: the error names the leaf.
    with pytest.raises(TypeError, match=r"at \['b'\] branch 1 returns shape \(2,\)"):
        ff.vmap(lambda p, x: lax.cond(p, lambda v: {"a": v, "b": v[:1]},
                                      lambda v: {"a": v, "b": v[:2]}, x))(
            np.array([True, False]), np.ones((2, 3)))


# ---------------------------------------------------------------------------- switch
BRANCHES = [lambda v: v * 3.0, np.sin, lambda v: v ** 3]


@pytest.mark.parametrize("i", [-4, 0, 1, 2, 7])
def test_switch_clamps_like_jax(i):
    x = np.array([0.5, -1.5])
    k = min(max(i, 0), 2)
    close(lax.switch(i, BRANCHES, x), BRANCHES[k](x))
    close(ff.grad(lambda x: np.sum(lax.switch(i, BRANCHES, x)))(x),
          ff.grad(lambda x: np.sum(BRANCHES[k](x)))(x))


def test_vmap_of_switch_with_a_batched_index_matches_a_loop():
    idx = np.array([0, 2, 1, -3, 9])
    xs = RNG.normal(size=(5, 3))
    out = ff.vmap(lambda i, x: lax.switch(i, BRANCHES, x))(idx, xs)
    close(out, np.stack([BRANCHES[min(max(i, 0), 2)](x) for i, x in zip(idx, xs)]))
    g = ff.vmap(ff.grad(lambda i, x: np.sum(lax.switch(i, BRANCHES, x)), argnums=1))(idx, xs)
    close(g, np.stack([ff.grad(lambda x: np.sum(BRANCHES[min(max(i, 0), 2)](x)))(x)
                       for i, x in zip(idx, xs)]))


def test_switch_errors():
    with pytest.raises(ValueError, match="at least one"):
        lax.switch(0, [], 1.0)
    with pytest.raises(TypeError, match="index must be a scalar"):
        lax.switch(np.array([0, 1]), BRANCHES, 1.0)


# ---------------------------------------------------------------------------- fori_loop
def body(i, c):
    return np.tanh(c * 1.1 + 0.1 * i)


def py_fori(lo, hi, c):
    for i in range(lo, hi):
        c = body(i, c)
    return c


@pytest.mark.parametrize("lo,hi", [(0, 5), (2, 3), (3, 3), (4, 1)])
def test_fori_loop_is_a_python_loop(lo, hi):
    x = np.array([0.2, -0.7, 1.3])
    f = lambda x: np.sum(lax.fori_loop(lo, hi, body, x) ** 2)
    g = lambda x: np.sum(py_fori(lo, hi, x) ** 2)
    close(f(x), g(x))
    close(ff.grad(f)(x), ff.grad(g)(x))
    close(ff.hessian(f)(x), ff.hessian(g)(x))
    t = np.array([1.0, 0.0, -1.0])
    close(ff.jvp(f, (x,), (t,))[1], ff.jvp(g, (x,), (t,))[1])


def test_fori_loop_with_numpy_int_bounds_and_vmap_over_the_carry():
    xs = RNG.normal(size=(4, 2))
    out = ff.vmap(lambda x: lax.fori_loop(np.int64(0), np.int32(3), body, x))(xs)
    close(out, np.stack([py_fori(0, 3, x) for x in xs]))


def test_fori_loop_with_batched_bounds_runs_every_member_its_own_count():
    ups = np.array([0, 3, 1, 5])
    xs = RNG.normal(size=(4, 2))
    out = ff.vmap(lambda n, x: lax.fori_loop(0, n, body, x))(ups, xs)
    close(out, np.stack([py_fori(0, int(n), x) for n, x in zip(ups, xs)]))
    # forward mode goes through (a while_loop, as in JAX)
    ts = np.ones_like(xs)
    _, tan = ff.jvp(lambda xs: ff.vmap(lambda n, x: lax.fori_loop(0, n, body, x))(ups, xs),
                    (xs,), (ts,))
    want = np.stack([ff.jvp(lambda x: py_fori(0, int(n), x), (x,), (t,))[1]
                     for n, x, t in zip(ups, xs, ts)])
    close(tan, want)
    # reverse mode does not, and says what to use instead
    with pytest.raises(TypeError, match="reverse-mode differentiation .* does not go through"):
        ff.grad(lambda xs: np.sum(ff.vmap(lambda n, x: lax.fori_loop(0, n, body, x))(ups, xs)))(xs)


def test_fori_loop_carry_type_errors_name_the_leaf():
    with pytest.raises(TypeError, match=r"at \['acc'\] it has shape \(2,\), dtype float64 where "
                                        r"its input has shape \(\), dtype float64"):
        lax.fori_loop(0, 2, lambda i, c: {"acc": c["acc"] + np.ones(2)}, {"acc": np.float64(0)})
    with pytest.raises(TypeError, match="dtype float32 where its input has shape .*float64"):
        lax.fori_loop(0, 2, lambda i, c: c.astype(np.float32), np.zeros(3))
    with pytest.raises(TypeError, match="upper must be a scalar integer"):
        lax.fori_loop(0, 2.5, body, 1.0)


# ---------------------------------------------------------------------------- while_loop
def test_while_loop_values_and_forward_mode():
    cond = lambda c: c[0] < 5
    step = lambda c: (c[0] + 1, np.sin(c[1]) * 1.5)
    x = np.array([0.4, 1.0])
    out = lax.while_loop(cond, step, (0, x))
    y = x
    for _ in range(5):
        y = np.sin(y) * 1.5
    assert out[0] == 5
    close(out[1], y)
    t = np.array([1.0, 2.0])
    _, tan = ff.jvp(lambda x: lax.while_loop(cond, step, (0, x))[1], (x,), (t,))

    def py(x):
        for _ in range(5):
            x = np.sin(x) * 1.5
        return x
    close(tan, ff.jvp(py, (x,), (t,))[1])
    close(ff.jacfwd(lambda x: lax.while_loop(cond, step, (0, x))[1])(x), ff.jacfwd(py)(x))


def test_while_loop_refuses_reverse_mode_with_jaxs_advice():
    step = lambda c: c * 2.0
    with pytest.raises(TypeError, match="use lax.fori_loop|Use lax.fori_loop"):
        ff.grad(lambda x: lax.while_loop(lambda c: c < 10, step, x))(1.0)
    # a body that closes over the traced value is caught too
    with pytest.raises(TypeError, match="does not go through a while_loop"):
        ff.grad(lambda w: lax.while_loop(lambda c: c < 10.0, lambda c: c * 2.0 + w, 1.0))(0.5)


def test_vmap_of_while_loop_with_a_batched_condition_matches_a_loop():
    limits = np.array([1.0, 10.0, 100.0, 0.5])
    xs = np.array([0.7, 1.1, 2.0, 3.0])

    def f(lim, x):
        return lax.while_loop(lambda c: c[1] < lim, lambda c: (c[0] + 1, c[1] * 1.7 + 0.1),
                              (np.int64(0), x))

    n, v = ff.vmap(f)(limits, xs)
    for k, (lim, x) in enumerate(zip(limits, xs)):
        m, y = 0, x
        while y < lim:
            m, y = m + 1, y * 1.7 + 0.1
        assert n[k] == m
        close(v[k], y)
    # nested vmap: the outer batch runs until every inner member is done too
    n2, _ = ff.vmap(ff.vmap(f))(np.stack([limits, limits[::-1]]), np.stack([xs, xs]))
    np.testing.assert_array_equal(n2[0], n)
    np.testing.assert_array_equal(n2[1], ff.vmap(f)(limits[::-1], xs)[0])


# ---------------------------------------------------------------------------- scan
def rnn(c, x):
    h = np.tanh(c["w"] * c["h"] + x)
    return {"w": c["w"], "h": h}, h * 2.0


def py_scan(f, c, xs, reverse=False):
    ys = []
    idx = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    for i in idx:
        c, y = f(c, xs[i])
        ys.append(y)
    if reverse:
        ys.reverse()
    return c, np.stack(ys)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_is_a_python_loop_in_every_mode(reverse):
    xs = RNG.normal(size=(6, 3))
    c0 = {"w": np.array(0.8), "h": np.zeros(3)}

    def loss(w, xs, run):
        c, ys = run(rnn, {"w": w, "h": np.zeros(3)}, xs)
        return np.sum(c["h"] ** 2) + np.sum(ys)

    ours = lambda f, c, xs: lax.scan(f, c, xs, reverse=reverse)
    ref = lambda f, c, xs: py_scan(f, c, xs, reverse)
    c, ys = lax.scan(rnn, c0, xs, reverse=reverse)
    rc, rys = py_scan(rnn, c0, xs, reverse)
    close(c["h"], rc["h"])
    close(ys, rys)
    for argnums in (0, 1):
        close(ff.grad(loss, argnums=argnums)(0.8, xs, ours),
              ff.grad(loss, argnums=argnums)(0.8, xs, ref))
    close(ff.hessian(loss)(0.8, xs, ours), ff.hessian(loss)(0.8, xs, ref))
    close(ff.jvp(lambda xs: loss(0.8, xs, ours), (xs,), (np.ones_like(xs),))[1],
          ff.jvp(lambda xs: loss(0.8, xs, ref), (xs,), (np.ones_like(xs),))[1])


def test_vmap_of_scan_matches_a_loop():
    xss = RNG.normal(size=(4, 5, 2))
    ws = RNG.normal(size=4)
    f = lambda w, xs: lax.scan(rnn, {"w": w, "h": np.zeros(2)}, xs)[1]
    close(ff.vmap(f)(ws, xss),
          np.stack([py_scan(rnn, {"w": w, "h": np.zeros(2)}, xs)[1] for w, xs in zip(ws, xss)]))
    # xs batched on another axis
    close(ff.vmap(f, in_axes=(0, 1))(ws, np.moveaxis(xss, 0, 1)), ff.vmap(f)(ws, xss))


def test_scan_pytree_xs_no_xs_and_no_ys():
    xs = {"a": np.arange(4.0), "b": np.arange(8.0).reshape(4, 2)}
    c, ys = lax.scan(lambda c, x: (c + x["a"] + x["b"].sum(), x["b"] * c), 0.0, xs)
    assert c == pytest.approx(6.0 + 28.0)
    assert ys.shape == (4, 2)
    c, ys = lax.scan(lambda c, _: (c * 2.0, None), 1.0, None, length=5)
    assert c == 32.0 and ys is None
    c, ys = lax.scan(lambda c, x: (c, {"y": x * 2.0}), 0.0, np.zeros((0, 3)))
    assert ys["y"].shape == (0, 3) and ys["y"].dtype == np.float64


def test_scan_errors():
    with pytest.raises(ValueError, match="same leading length"):
        lax.scan(lambda c, x: (c, None), 0.0, {"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match=r"same leading length \(and length=2\)"):
        lax.scan(lambda c, x: (c, None), 0.0, np.zeros(3), length=2)
    with pytest.raises(ValueError, match="give length="):
        lax.scan(lambda c, x: (c, None), 0.0, None)
    with pytest.raises(TypeError, match="must return a pair"):
        lax.scan(lambda c, x: c, 0.0, np.zeros(3))
    with pytest.raises(TypeError, match="the carry f returns must have the same type"):
        lax.scan(lambda c, x: (np.zeros(2), None), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="unroll"):
        lax.scan(lambda c, x: (c, None), 0.0, np.zeros(3), unroll=0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**16), reverse=st.booleans())
def test_scan_cumulative_product_gradient_matches_the_closed_form(n, seed, reverse):
    x = np.random.default_rng(seed).uniform(0.5, 2.0, size=n)
    f = lambda x: np.sum(lax.scan(lambda c, v: (c * v, c * v), 1.0, x, reverse=reverse)[1])
    # sum of running products, from the front or from the back
    order = x[::-1] if reverse else x
    prods = np.cumprod(order)
    close(f(x), prods.sum())
    g = np.zeros(n)
    for k in range(n):  # d/dx_j of prod_{i<=k} order_i is that product / order_j for j <= k
        g[:k + 1] += prods[k] / order[:k + 1]
    close(ff.grad(f)(x), g[::-1] if reverse else g)


# ---------------------------------------------------------------------------- devices
def test_control_flow_runs_on_the_device_of_its_values(put, get):
    """Nothing converts to NumPy on the way (``--device strict`` / ``gpu``)."""
    xs = put(np.array([0.7, 1.1, 2.0]))
    lims = put(np.array([1.0, 10.0, 0.5]))

    def f(lim, x):
        return lax.while_loop(lambda c: c < lim, lambda c: c * 1.7 + 0.1, x)
    out = get(ff.vmap(f)(lims, xs))
    want = []
    for lim, x in zip([1.0, 10.0, 0.5], [0.7, 1.1, 2.0]):
        while x < lim:
            x = x * 1.7 + 0.1
        want.append(x)
    close(out, want)
    ps = put(np.array([True, False, True]))
    close(get(ff.vmap(f_cond)(ps, xs)), [f_if(p, x) for p, x in zip([1, 0, 1], [0.7, 1.1, 2.0])])
    seq = put(RNG.normal(size=(4, 3)))
    g = get(ff.grad(lambda s: np.sum(lax.scan(lambda c, x: (c * x, c), put(np.ones(3)), s)[1]))(seq))
    ref = ff.grad(lambda s: np.sum(py_scan(lambda c, x: (c * x, c), np.ones(3), s)[1]))(get(seq))
    close(g, ref)
    c, ys = lax.scan(lambda c, x: (c, x * 2.0), 0.0, put(np.zeros((0, 2))))
    assert get(ys).shape == (0, 2)
    close(get(lax.fori_loop(0, 3, body, xs)), py_fori(0, 3, get(xs)))
