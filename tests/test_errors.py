"""Errors are part of the API: each says what went wrong, where, and what to do."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp


def test_grad_of_non_scalar_output():
    with pytest.raises(TypeError, match=r"scalar.*shape \(2,\).*ff\.vjp.*ff\.jacrev"):
        ff.grad(lambda x: x * 2.0)(np.ones(2))
    with pytest.raises(TypeError, match=r"scalar.*tuple"):
        ff.grad(lambda x: (np.sum(x), np.sum(x)))(np.ones(2))
    with pytest.raises(TypeError, match="scalar"):
        ff.value_and_grad(lambda x: x)(np.ones(3))


def test_grad_of_integer_argument_says_pass_floats():
    with pytest.raises(TypeError, match=r"argument 0.*int64.*Pass floats.*np\.array\(\[2\., 1\.\]\)"):
        ff.grad(lambda x: np.sum(x ** 2))(np.array([2, 1]))
    with pytest.raises(TypeError, match="argument 1.*bool"):
        ff.grad(lambda x, m: np.sum(x * m), argnums=1)(np.ones(2), np.array([True, False]))


def test_np_asarray_on_tracer():
    with pytest.raises(TypeError, match=r"np\.asarray / np\.array.*fnp\.array.*fnp\.stack.*stop_gradient"):
        ff.grad(lambda x: np.sum(np.asarray(x)))(np.ones(2))


def test_np_array_of_tracers():
    with pytest.raises(TypeError, match=r"np\.asarray / np\.array.*fnp\.array"):
        ff.grad(lambda x: np.sum(np.array([x, x])))(1.0)
    with pytest.raises(TypeError, match="fnp.array"):
        ff.grad(lambda x: np.sum(np.array([x[0], x[1]])))(np.ones(2))
    # the fix the message points to
    g = ff.grad(lambda x: np.sum(fnp.array([x[0], 3.0 * x[1]])))(np.ones(2))
    np.testing.assert_allclose(g, [1.0, 3.0])
    g = ff.grad(lambda x: np.sum(fnp.stack([x, x * x])))(np.array([1.0, 2.0]))
    np.testing.assert_allclose(g, [3.0, 5.0])
    # stop_gradient is the way to make a constant
    out = ff.grad(lambda x: x * np.asarray(ff.stop_gradient(x)))(3.0)
    assert out == 3.0


def test_float_and_item_on_tracer():
    with pytest.raises(TypeError, match=r"float\(\).*stop_gradient"):
        ff.grad(lambda x: float(x))(1.0)
    with pytest.raises(TypeError, match=r"\.item\(\)"):
        ff.grad(lambda x: x.item())(1.0)
    with pytest.raises(TypeError, match=r"\.tolist\(\)"):
        ff.grad(lambda x: np.sum(x.tolist()))(np.ones(2))


def test_function_with_no_rule_names_it_and_points_to_custom_vjp():
    with pytest.raises(TypeError, match=r"numpy\.fft\.fft.*custom_vjp"):
        ff.grad(lambda x: np.sum(np.fft.fft(x).real))(np.ones(4))
    with pytest.raises(TypeError, match=r"numpy\.polyval.*custom_vjp"):
        ff.grad(lambda x: np.polyval(x, 2.0))(np.ones(3))
    with pytest.raises(TypeError, match=r"numpy\.fft\.fft"):
        ff.vmap(np.fft.fft)(np.ones((2, 4)))


def test_complex_inputs_not_implemented():
    with pytest.raises(NotImplementedError, match=r"grad: the argument at args\[0\] is complex"):
        ff.grad(lambda x: np.sum(x))(np.ones(2, complex))
    with pytest.raises(NotImplementedError, match=r"args\[0\]\['a'\]"):
        ff.grad(lambda p: np.sum(p["a"]))({"a": np.ones(2, complex)})
    with pytest.raises(NotImplementedError, match="complex"):
        ff.grad(lambda x: x)(1 + 2j)
    with pytest.raises(NotImplementedError, match=r"jvp: the primal at primals\[0\]"):
        ff.jvp(lambda x: x, (np.ones(2, complex),), (np.ones(2, complex),))
    with pytest.raises(NotImplementedError, match="vjp: the output"):
        ff.vjp(lambda x: x * 1j, np.ones(2))
    with pytest.raises(NotImplementedError, match="jvp: the output"):
        ff.jvp(lambda x: x * 1j, (np.ones(2),), (np.ones(2),))


def test_out_argument_rejected():
    with pytest.raises(TypeError, match=r"out=.*Drop out="):
        ff.grad(lambda x: np.sum(x, out=np.zeros(())))(np.ones(2))
    with pytest.raises(TypeError, match=r"out="):
        ff.grad(lambda x: x.sum(out=np.zeros(())))(np.ones(2))


def test_pullback_wrong_cotangent():
    out, pullback = ff.vjp(lambda x: x * 2.0, np.ones(3))
    with pytest.raises(ValueError, match=r"shape \(2,\).*shape \(3,\)"):
        pullback(np.ones(2))
    out, pullback = ff.vjp(lambda x: {"a": x}, np.ones(3))
    with pytest.raises(ValueError, match="cotangent given to pullback"):
        pullback({"b": np.ones(3)})


def test_jvp_argument_errors():
    with pytest.raises(TypeError, match="tuples"):
        ff.jvp(lambda x: x, np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match=r"tangent at \[0\] has shape \(3,\)"):
        ff.jvp(lambda x: x, (np.ones(2),), (np.ones(3),))


def test_argnums_out_of_range():
    with pytest.raises(ValueError, match="argnums=2.*2 positional"):
        ff.grad(lambda x, y: x * y, argnums=2)(1.0, 2.0)
    with pytest.raises(ValueError, match="argnums"):
        ff.jacrev(lambda x: x, argnums=1)(np.ones(2))


def test_has_aux_needs_a_pair():
    with pytest.raises(TypeError, match=r"has_aux=True.*pair"):
        ff.grad(lambda x: x * 2.0, has_aux=True)(1.0)


def test_vmap_errors_summarised():
    with pytest.raises(ValueError, match=r"args\[0\] has size 2, args\[1\] has size 3"):
        ff.vmap(lambda x, y: x + y)(np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match=r"vmap.*np\.where"):
        ff.vmap(lambda x: x if x > 0 else -x)(np.ones(2))
