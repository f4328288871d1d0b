"""A traced value kept past the end of its transform is dead: using it raises
UnexpectedTracerError naming the transform, and no result ever holds a tracer."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux.core.trace import Tracer


def leak(transform):
    """Run ``transform`` on a function that stores its traced input; return that tracer."""
    box = []

    def f(x):
        box.append(x * 1.0)
        return np.sum(x * x)

    x = np.array([1.0, 2.0, 3.0])
    if transform == "grad":
        ff.grad(f)(x)
    elif transform == "value_and_grad":
        ff.value_and_grad(f)(x)
    elif transform == "vjp":
        ff.vjp(f, x)
    elif transform == "jvp":
        ff.jvp(f, (x,), (np.ones(3),))
    elif transform == "vmap":
        ff.vmap(f)(np.ones((2, 3)))
    assert isinstance(box[0], Tracer)
    return box[0]


TRANSFORMS = ["grad", "value_and_grad", "vjp", "jvp", "vmap"]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_using_an_escaped_tracer_names_its_transform(transform):
    t = leak(transform)
    with pytest.raises(ff.UnexpectedTracerError,
                       match=rf"shape \(3,\), dtype float64.*after the {transform} that "
                             r"created it had finished.*has_aux=True"):
        t * 2.0
    with pytest.raises(ff.UnexpectedTracerError, match=transform):
        np.sin(t)
    with pytest.raises(ff.UnexpectedTracerError, match=transform):
        np.sum(t)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_reading_an_escaped_tracer_raises(transform):
    t = leak(transform)
    for read in (bool, float, np.asarray, lambda t: t.item()):
        with pytest.raises(ff.UnexpectedTracerError, match=transform):
            read(t)


def test_escaped_tracer_is_a_type_error_like_jax():
    assert issubclass(ff.UnexpectedTracerError, TypeError)


def test_escaped_tracer_used_in_a_later_transform():
    # The classic mistake: state kept from one training step used in the next.
    t = leak("grad")
    with pytest.raises(ff.UnexpectedTracerError, match="grad"):
        ff.grad(lambda x: np.sum(x * t))(np.ones(3))
    with pytest.raises(ff.UnexpectedTracerError, match="grad"):
        ff.vmap(lambda x: x + t)(np.ones((2, 3)))
    with pytest.raises(ff.UnexpectedTracerError, match="grad"):
        ff.jvp(lambda x: x * t, (np.ones(3),), (np.ones(3),))


def test_escaped_through_a_closure_in_aux():
    g, scale = ff.grad(lambda x: (x * x, lambda y: y * x), has_aux=True)(2.0)
    assert g == 4.0
    with pytest.raises(ff.UnexpectedTracerError, match=r"shape \(\), dtype float64.*grad"):
        scale(3.0)


def test_inner_tracer_escaping_into_the_outer_function():
    def outer(x):
        box = []
        ff.grad(lambda y: box.append(y) or y * x)(x)
        return box[0] * x  # the inner grad's input, used after the inner grad ended

    with pytest.raises(ff.UnexpectedTracerError, match="grad"):
        ff.grad(outer)(1.0)


def test_escaped_tracer_in_a_custom_vjp_call():
    @ff.custom_vjp
    def f(x):
        return x * 2.0

    f.defvjp(lambda x: (f(x), None), lambda r, g: (2.0 * g,))
    t = leak("grad")
    with pytest.raises(ff.UnexpectedTracerError, match="grad"):
        ff.grad(lambda x: np.sum(f(x) * f(t)))(np.ones(3))


def test_live_nested_tracers_still_work():
    # Ending a transform kills only its own tracers: grad of grad, vmap of grad, jacrev
    # (vmap of a pullback that runs after vjp ended), hessian are unaffected.
    f = lambda x: np.sum(np.sin(x) * x)  # noqa: E731
    x = np.array([0.5, 1.0])
    np.testing.assert_allclose(ff.grad(lambda x: np.sum(ff.grad(f)(x)))(x),
                               2 * np.cos(x) - x * np.sin(x))
    np.testing.assert_allclose(ff.vmap(ff.grad(lambda x: np.sin(x) * x))(x),
                               np.sin(x) + x * np.cos(x))
    np.testing.assert_allclose(ff.hessian(f)(x), np.diag(2 * np.cos(x) - x * np.sin(x)))
    _, pb = ff.vjp(f, x)
    np.testing.assert_allclose(pb(1.0)[0], np.sin(x) + x * np.cos(x))
    np.testing.assert_allclose(pb(2.0)[0], 2 * (np.sin(x) + x * np.cos(x)))  # twice


def no_tracer(tree):
    return not any(isinstance(leaf, Tracer) for leaf in ff.tree.leaves(tree))


def test_no_result_holds_a_tracer():
    x = np.array([1.0, 2.0])
    aux_of = lambda x: {"y": x * 2.0, "l": [x, np.sum(x)], "i": np.argmax(x)}  # noqa: E731
    out = ff.grad(lambda x: (np.sum(x * x), aux_of(x)), has_aux=True)(x)
    assert no_tracer(out)
    out = ff.value_and_grad(lambda x: (np.sum(x * x), aux_of(x)), has_aux=True)(x)
    assert no_tracer(out)
    out, pb, aux = ff.vjp(lambda x: (x * x, aux_of(x)), x, has_aux=True)
    assert no_tracer((out, aux, pb(np.ones(2))))
    assert no_tracer(ff.jvp(lambda x: (x * x, aux_of(x)), (x,), (x,), has_aux=True))
    assert no_tracer(ff.vmap(lambda x: (x * x, aux_of(x)))(np.ones((3, 2))))
    assert no_tracer(ff.jacrev(lambda x: {"a": x * x})(x))
    assert no_tracer(ff.jacfwd(lambda x: {"a": x * x})(x))
