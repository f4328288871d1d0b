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
    # np.fft.hfft: a submodule function without a rule (fft, rfft, ... have rules).
    with pytest.raises(TypeError, match=r"numpy\.fft\.hfft.*custom_vjp"):
        ff.grad(lambda x: np.sum(np.fft.hfft(x)))(np.ones(4))
    with pytest.raises(TypeError, match=r"numpy\.polyval.*custom_vjp"):
        ff.grad(lambda x: np.polyval(x, 2.0))(np.ones(3))
    with pytest.raises(TypeError, match=r"numpy\.fft\.hfft"):
        ff.vmap(np.fft.hfft)(np.ones((2, 4)))


def test_complex_output_of_grad_needs_holomorphic():
    # Complex inputs are differentiated (tests/test_complex_transforms.py); what stays an
    # error is grad/jacrev of a complex *output* without holomorphic=True, as in JAX.
    with pytest.raises(TypeError, match=r"grad: the function's output is complex.*"
                                        r"holomorphic=True.*np\.real"):
        ff.grad(lambda x: np.sum(x))(np.ones(2, complex))
    with pytest.raises(TypeError, match="value_and_grad: .*holomorphic=True"):
        ff.value_and_grad(lambda x: x * 1j)(1.0)
    with pytest.raises(TypeError, match=r"jacrev: the function's output leaf 0 is complex"):
        ff.jacrev(lambda x: x * 1j)(np.ones(2))


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


@pytest.mark.parametrize("make", [
    lambda f, a: ff.grad(f, argnums=a), lambda f, a: ff.value_and_grad(f, argnums=a),
    lambda f, a: ff.jacrev(f, argnums=a), lambda f, a: ff.jacfwd(f, argnums=a),
    lambda f, a: ff.hessian(f, argnums=a)])
@pytest.mark.parametrize("argnums", [(0, 0), (1, -1)])
def test_duplicate_argnums_is_an_error(make, argnums):
    # Regression: grad(f, argnums=(0, 0)) gave a zero first gradient and value_and_grad
    # handed back an RTracer as the value. JAX silently keeps the last occurrence; we refuse.
    f = lambda x, y: np.sum(x * y)  # noqa: E731
    with pytest.raises(ValueError, match=r"argnums=\(.*\) names argument \d more than once"):
        make(f, argnums)(np.ones(2), np.ones(2))


@pytest.mark.parametrize("name", ["jacrev", "jacfwd", "hessian"])
def test_jacobians_of_integer_only_argument_raise(name):
    # Regression: these returned None silently.
    with pytest.raises(TypeError, match=name + r": argument 0 has no floating-point leaf.*int64"):
        getattr(ff, name)(lambda x: np.sum(x * 2.0))(np.array([1, 2]))
    with pytest.raises(TypeError, match=name + r": argument 1 .*bool"):
        getattr(ff, name)(lambda x, m: np.sum(x * m), argnums=1)(np.ones(2),
                                                                 np.array([True, False]))


def test_vjp_with_no_float_primal_raises():
    # Regression: the pullback returned (None,) silently.
    with pytest.raises(TypeError, match=r"vjp: no primal has a floating-point leaf.*int64"):
        ff.vjp(lambda n: n * 2.0, np.array([1, 2]))
    # An integer primal beside a float one is a constant (its cotangent is None).
    _, pb = ff.vjp(lambda x, n: x * n, np.ones(2), np.array([1, 2]))
    g, gn = pb(np.ones(2))
    np.testing.assert_allclose(g, [1.0, 2.0])
    assert gn is None


def test_grad_of_function_returning_none_or_a_non_array():
    # Regression: "returned an array of shape ()".
    with pytest.raises(TypeError, match=r"grad needs the function to return a scalar.*"
                                        r"returned None \(is a return statement missing\?\)"):
        ff.grad(lambda x: None)(1.0)
    with pytest.raises(TypeError, match=r"value_and_grad .*returned a str, not an array"):
        ff.value_and_grad(lambda x: "loss")(1.0)
    with pytest.raises(TypeError, match=r"grad .*returned None.*has_aux"):
        ff.grad(lambda x: (None, x), has_aux=True)(1.0)


def test_has_aux_needs_a_pair():
    with pytest.raises(TypeError, match=r"has_aux=True.*pair"):
        ff.grad(lambda x: x * 2.0, has_aux=True)(1.0)


def test_vmap_errors_summarised():
    with pytest.raises(ValueError, match=r"args\[0\] has size 2, args\[1\] has size 3"):
        ff.vmap(lambda x, y: x + y)(np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match=r"vmap.*np\.where"):
        ff.vmap(lambda x: x if x > 0 else -x)(np.ones(2))
