"""custom_jvp.defjvps, and traced values shown by str/repr/format."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux.test_util import check_grads

rng = np.random.default_rng(11)


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- defjvps
def _sin_times():
    @ff.custom_jvp
    def f(x, y):
        return np.sin(x) * y
    f.defjvps(lambda t, ans, x, y: np.cos(x) * y * t,
              lambda t, ans, x, y: np.sin(x) * t)
    return f


def test_defjvps_matches_the_hand_derivatives():
    f = _sin_times()
    x, y = rng.normal(size=3), rng.normal(size=3)
    gx, gy = ff.grad(lambda a, b: np.sum(f(a, b)), argnums=(0, 1))(x, y)
    close(gx, np.cos(x) * y)
    close(gy, np.sin(x))
    tx, ty = rng.normal(size=3), rng.normal(size=3)
    close(ff.jvp(f, (x, y), (tx, ty))[1], np.cos(x) * y * tx + np.sin(x) * ty)
    close(ff.jacrev(f, argnums=1)(x, y), np.diag(np.sin(x)))
    close(ff.vmap(f)(x, y), np.sin(x) * y)
    check_grads(f, (x, y), order=2)


def test_defjvps_rule_is_used_not_the_body():
    @ff.custom_jvp
    def clipped(x):
        return x
    clipped.defjvps(lambda t, ans, x: np.clip(t, -1.0, 1.0) * 0.0 + 2.0 * t)
    close(ff.grad(clipped)(3.0), 2.0)
    close(ff.jvp(clipped, (3.0,), (1.0,))[1], 2.0)


def test_defjvps_none_and_pytrees():
    @ff.custom_jvp
    def f(p, n):
        return {"y": p["a"] * n, "z": np.exp(p["b"])}
    f.defjvps(lambda t, ans, p, n: {"y": t["a"] * n, "z": ans["z"] * t["b"]}, None)
    p = {"a": np.array([1.0, 2.0]), "b": np.array(0.5)}
    g = ff.grad(lambda q: np.sum(f(q, 3.0)["y"]) + f(q, 3.0)["z"])(p)
    close(g["a"], [3.0, 3.0])
    close(g["b"], np.exp(0.5))
    # the argument marked None gets no derivative: zero
    close(ff.grad(lambda n: np.sum(f(p, n)["y"]))(3.0), 0.0)


def test_defjvps_errors():
    @ff.custom_jvp
    def f(x, y):
        return x * y
    f.defjvps(lambda t, ans, x, y: t * y)
    with pytest.raises(TypeError, match="defjvps got 1 rule.*2 positional"):
        ff.grad(f)(1.0, 2.0)

    def g(n, x):
        return x * n
    with pytest.raises(TypeError, match="nondiff_argnums"):
        ff.custom_jvp(g, nondiff_argnums=(0,)).defjvps(lambda t, ans, x: t)


# ----------------------------------------------------------------------------- format
def test_traced_values_show_their_value():
    seen = []

    def f(x):
        seen.append((f"{x:.3f}", str(x), repr(x), f"{x}"))
        return np.sum(x ** 2)
    ff.grad(f)(np.array(2.0))
    assert seen[-1] == ("2.000", "2.0", "RTracer(array(2.))", "2.0")
    ff.jvp(f, (np.array([1.0, 0.5]),), (np.ones(2),))
    assert seen[-1][:2] == ("[1.000 0.500]", "[1.  0.5]")
    assert seen[-1][2].startswith("JVPTracer(array([1. , 0.5]))")
    ff.vmap(f)(np.array([[1.0, 2.0], [3.0, 4.0]]))  # the whole batch
    assert seen[-1][0] == "[[1.000 2.000]\n [3.000 4.000]]"
    assert seen[-1][2].endswith("batch_axis=0)")
    ff.grad(ff.grad(lambda x: f(x) * x))(np.array(1.5))  # two levels down
    assert seen[-1][0] == "1.500"


def test_inside_jit_a_format_spec_raises_and_repr_describes():
    seen = []

    def f(x):
        seen.append((repr(x), str(x), f"{x}"))
        with pytest.raises(ff.ConcretizationTypeError):
            f"{x:.3f}"
        return x * 2.0
    close(ff.jit(f)(np.array(1.0)), 2.0)
    assert seen[0] == ("StagedTracer(shape=(), dtype=float64)",) * 3


def test_an_escaped_tracer_describes_itself():
    kept = []
    ff.grad(lambda x: kept.append(x) or x)(1.0)
    assert repr(kept[0]) == "RTracer(shape=(), dtype=float64)"
    with pytest.raises(ff.UnexpectedTracerError):
        f"{kept[0]:.2f}"
