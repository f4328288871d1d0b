"""vmap(..., axis_name=...) and the collectives of ff.lax, against explicit loops and means.

The derivative convention checked here is JAX's under vmap: inside ``vmap(grad(f))`` each
member gets the derivative of the sum of ``f`` over the members (reference values from
JAX 0.10.2 are written out as the sums they are).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import funcflux as ff
from funcflux.lax import all_gather, axis_index, pmax, pmean, pmin, psum
from funcflux.test_util import check_grads

rng = np.random.default_rng(3)


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def named(f, name="i", **kw):
    return ff.vmap(f, axis_name=name, **kw)


# ----------------------------------------------------------------------------- values
def test_reductions_match_a_loop():
    x = rng.normal(size=(4, 3))
    close(named(lambda r: psum(r, "i"))(x), np.broadcast_to(x.sum(0), x.shape))
    close(named(lambda r: pmean(r, "i"))(x), np.broadcast_to(x.mean(0), x.shape))
    close(named(lambda r: pmax(r, "i"))(x), np.broadcast_to(x.max(0), x.shape))
    close(named(lambda r: pmin(r, "i"))(x), np.broadcast_to(x.min(0), x.shape))
    # a batch axis other than 0, and an output axis other than 0
    close(named(lambda r: r - pmean(r, "i"), in_axes=1, out_axes=1)(x),
          x - x.mean(1, keepdims=True))


def test_pytrees_and_python_numbers():
    x = {"a": rng.normal(size=3), "b": (rng.normal(size=(3, 2)),)}
    out = named(lambda t: psum(t, "i"))(x)
    close(out["a"], np.full(3, x["a"].sum()))
    close(out["b"][0], np.broadcast_to(x["b"][0].sum(0), (3, 2)))
    # a value that does not vary along the axis: psum multiplies by the size
    close(named(lambda r: psum(1.0, "i") + 0 * r)(np.zeros(5)), np.full(5, 5.0))
    close(named(lambda r: pmean(2.0, "i") + 0 * r)(np.zeros(5)), np.full(5, 2.0))


def test_all_gather_and_axis_index():
    x = rng.normal(size=(3, 2))
    close(named(lambda r: all_gather(r, "i"))(x), np.broadcast_to(x, (3, 3, 2)))
    close(named(lambda r: all_gather(r, "i", axis=1))(x),
          np.broadcast_to(x.T, (3, 2, 3)))
    close(named(lambda r: all_gather(r, "i", tiled=True))(x),
          np.broadcast_to(x.reshape(6), (3, 6)))
    close(named(lambda r: all_gather(r, "i", axis=-1))(x), np.broadcast_to(x.T, (3, 2, 3)))
    idx = named(lambda r: axis_index("i"))(x)
    assert idx.dtype == np.int32
    close(idx, np.arange(3))
    close(named(lambda r: r * axis_index("i"))(np.ones(4)), np.arange(4.0))


def test_nested_names():
    a = rng.normal(size=(2, 3))
    inner = lambda f: ff.vmap(ff.vmap(f, axis_name="j"), axis_name="i")  # noqa: E731
    close(inner(lambda x: psum(x, "j"))(a), np.broadcast_to(a.sum(1, keepdims=True), a.shape))
    close(inner(lambda x: psum(x, "i"))(a), np.broadcast_to(a.sum(0), a.shape))
    close(inner(lambda x: psum(x, ("i", "j")))(a), np.full(a.shape, a.sum()))
    close(inner(lambda x: pmean(x, ["i", "j"]))(a), np.full(a.shape, a.mean()))
    close(inner(lambda x: pmax(x, ("i", "j")))(a), np.full(a.shape, a.max()))
    close(inner(lambda x: axis_index(("i", "j")))(a), np.arange(6).reshape(2, 3))
    g = inner(lambda x: all_gather(x, ("i", "j")))(a)
    close(g, np.broadcast_to(a.reshape(6), (2, 3, 6)))
    # the same name twice: the inner vmap hides the outer one (as in JAX)
    close(ff.vmap(ff.vmap(lambda x: psum(x, "i"), axis_name="i"), axis_name="i")(a),
          np.broadcast_to(a.sum(1, keepdims=True), a.shape))


def test_unnamed_vmap_around_a_named_one():
    # an outer, unnamed vmap maps the collective over its own axis
    a = rng.normal(size=(4, 3))
    close(ff.vmap(named(lambda x: x - pmean(x, "i")))(a), a - a.mean(1, keepdims=True))
    close(ff.vmap(named(lambda x: all_gather(x, "i")))(a),
          np.broadcast_to(a[:, None, :], (4, 3, 3)))


# ----------------------------------------------------------------------------- derivatives
def _centred_sq(xs):
    return np.sum(named(lambda x: (x - pmean(x, "i")) ** 2)(xs))


def test_grad_of_vmapped_pmean_is_the_explicit_mean():
    xs = rng.normal(size=5)
    close(ff.grad(_centred_sq)(xs), ff.grad(lambda v: np.sum((v - np.mean(v)) ** 2))(xs))
    close(ff.grad(_centred_sq)(xs), 2 * (xs - xs.mean()))  # by hand
    close(ff.hessian(_centred_sq)(xs), 2 * (np.eye(5) - np.full((5, 5), 1 / 5)))
    check_grads(_centred_sq, (xs,), order=2)


def test_grad_inside_vmap_follows_jax():
    xs, ws = np.arange(1.0, 4.0), np.array([1.0, 10.0, 100.0])
    # d/dx_m of sum_k f_k: psum's transpose is psum
    close(named(ff.grad(lambda x: psum(x, "i")))(xs), np.full(3, 3.0))
    close(named(ff.grad(lambda x, w: psum(x, "i") * w))(xs, ws), np.full(3, ws.sum()))
    close(named(ff.grad(lambda x, w: psum(x, "i") * w + psum(x, "i")))(xs, ws),
          np.full(3, ws.sum() + 3))
    close(named(ff.grad(lambda x: pmean(x, "i")))(xs), np.ones(3))
    # all_gather's transpose is the reduce-scatter: member m gets sum_k ct_k[m]
    close(named(ff.grad(lambda x, w: np.sum(all_gather(x, "i") * w)), in_axes=(0, None))(xs, ws),
          3 * ws)
    out, t = named(lambda x: ff.jvp(lambda y: psum(y, "i"), (x,), (1.0,)))(xs)
    close(out, np.full(3, 6.0))
    close(t, np.full(3, 3.0))


def test_grad_inside_vmap_equals_grad_of_the_member_sum():
    # the convention, checked against an explicit computation: member m's gradient is
    # d/dx_m of sum_k f_k(x), with f_k using the mean of all members
    xs = rng.normal(size=4)
    f = lambda x: np.sin(x) * pmean(x, "i") ** 2  # noqa: E731
    total = lambda v: np.sum(np.sin(v) * np.mean(v) ** 2)  # noqa: E731
    close(named(ff.grad(f))(xs), ff.grad(total)(xs))
    g = lambda x: np.sum(all_gather(x, "i") ** 2) * pmax(x, "i")  # noqa: E731
    total_g = lambda v: v.size * np.sum(v ** 2) * np.max(v)  # noqa: E731
    close(named(ff.grad(g))(xs), ff.grad(total_g)(xs))


@pytest.mark.parametrize("name,f", [
    ("psum", lambda x: np.sin(x) * psum(x * x, "i")),
    ("pmean", lambda x: np.cos(pmean(x, "i") * x)),
    ("pmax", lambda x: x * pmax(np.sin(x), "i")),
    ("pmin", lambda x: x * pmin(np.sin(x), "i")),
    ("all_gather", lambda x: np.tanh(x * all_gather(x, "i"))),
    ("all_gather_tiled", lambda x: np.sum(all_gather(x, "i", tiled=True) ** 3) * x),
])
def test_check_grads_second_order(name, f):
    xs = rng.normal(size=(3, 2))
    check_grads(named(f), (xs,), order=2)
    # grad inside vmap: the rules of the collectives (and their derivatives) run
    check_grads(named(ff.grad(lambda x: np.sum(f(x)))), (xs,), order=2)


def test_vmap_of_grad_of_vmap_with_two_names():
    a = rng.normal(size=(2, 3))

    def loss(x):
        return np.sum(named(lambda r: (r - pmean(r, ("o", "i"))) ** 2)(x))
    got = ff.vmap(ff.grad(loss), axis_name="o")(a)
    # outer member m gets d/d(row m) of the sum of every member's loss: the loss of the
    # whole array centred on its global mean
    close(got, ff.grad(lambda v: np.sum((v - np.mean(v)) ** 2))(a))
    close(got, 2 * (a - a.mean()))


def test_custom_rules_see_the_axis():
    @ff.custom_vjp
    def centre(x):
        return x - pmean(x, "i")
    centre.defvjp(lambda x: (centre(x), None), lambda res, g: (g - pmean(g, "i"),))
    xs = rng.normal(size=4)
    close(named(centre)(xs), xs - xs.mean())
    close(ff.grad(lambda v: np.sum(named(centre)(v) * np.arange(4.0)))(xs),
          np.arange(4.0) - 1.5)


def test_jit_around_and_inside():
    xs = rng.normal(size=4)
    f = named(lambda x: x - pmean(x, "i") + psum(1.0, "i"))
    close(ff.jit(f)(xs), xs - xs.mean() + 4)
    close(ff.jit(f)(xs + 1), xs - xs.mean() + 4)


# ----------------------------------------------------------------------------- errors
def test_unbound_name_names_the_axis_and_the_bound_ones():
    with pytest.raises(NameError, match=r"psum: the axis name 'k' is not bound here; the "
                                        r"names bound are 'i' \(size 3\)"):
        named(lambda x: psum(x, "k"))(np.ones(3))
    with pytest.raises(NameError, match="names bound are none"):
        psum(np.ones(3), "i")
    with pytest.raises(NameError, match="axis_index"):
        axis_index("i")
    with pytest.raises(NameError, match="'j'"):
        ff.vmap(named(lambda x: pmean(x, ("i", "j"))))(np.ones((2, 3)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="out of range"):
        named(lambda x: all_gather(x, "i", axis=2))(np.ones((3, 2)))
    with pytest.raises(ValueError, match="tiled=True"):
        named(lambda x: all_gather(x, "i", tiled=True))(np.ones(3))
    with pytest.raises(ValueError, match="empty"):
        named(lambda x: psum(x, ()))(np.ones(3))


def test_names_are_scoped_to_the_call_and_the_thread():
    seen = {}

    def other():
        try:
            psum(1.0, "i")
        except NameError as e:
            seen["err"] = str(e)

    def f(x):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        return psum(x, "i")
    close(named(f)(np.ones(3)), np.full(3, 3.0))
    assert "names bound are none" in seen["err"]
    with pytest.raises(NameError):  # the vmap has ended: the name is gone
        psum(1.0, "i")


# ----------------------------------------------------------------------------- kwargs
def test_keyword_arguments_are_mapped_over_axis_0():
    x, y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    close(ff.vmap(lambda a, b: a * b)(x, b=y), x * y)
    close(ff.vmap(lambda a, b: a + b, in_axes=(None,))(1.0, b=y), 1.0 + y)
    close(ff.vmap(lambda a, b: a @ b["w"], in_axes=(1,))(x.T, b={"w": y}),
          np.einsum("ij,ij->i", x, y))
    with pytest.raises(ValueError, match=r"kwargs\['b'\] has size 4"):
        ff.vmap(lambda a, b: a + b)(x, b=np.ones(4))
    with pytest.raises(ValueError, match=r"kwargs\['b'\]"):  # a scalar has no axis 0
        ff.vmap(lambda a, b: a + b)(x, b=2.0)
