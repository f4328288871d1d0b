"""Complex numbers at the API edge: JAX's conventions for vjp, jvp, grad and the Jacobians.

The convention (JAX's, documented in its FAQ and autodiff cookbook): the pullback is the
*transpose* of the real-linear tangent map, not its adjoint. For a holomorphic f it
multiplies the cotangent by f'(z) with no conjugate; for a real-valued f of z = x + iy,
grad returns df/dx - i df/dy. Values below are worked out by hand from those definitions
and checked against central differences where a derivative exists.
"""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux.dtypes import float0

Z = np.array([1.0 + 2.0j, -0.5 + 0.25j, 0.3 - 1.1j])


def holo_fd(f, z, h=1e-6):
    """f'(z) of a holomorphic f by a central difference along the real axis."""
    return (f(z + h) - f(z - h)) / (2 * h)


# -- holomorphic functions ----------------------------------------------------------------
def test_grad_holomorphic_is_complex_derivative():
    f = lambda z: z * z * z + 2.0 * z  # noqa: E731
    g = ff.grad(f, holomorphic=True)(1.0 + 2.0j)
    assert g.dtype == np.complex128
    np.testing.assert_allclose(g, 3 * (1 + 2j) ** 2 + 2, rtol=1e-12)
    np.testing.assert_allclose(g, holo_fd(f, 1.0 + 2.0j), rtol=1e-7)


def test_grad_holomorphic_exp_and_value_and_grad():
    f = lambda z: np.exp(z) * z  # noqa: E731
    z = 0.3 - 0.7j
    v, g = ff.value_and_grad(f, holomorphic=True)(z)
    np.testing.assert_allclose(v, np.exp(z) * z)
    np.testing.assert_allclose(g, np.exp(z) * (1 + z), rtol=1e-12)


def test_grad_holomorphic_second_order():
    # d2/dz2 (z ** 3) = 6 z
    g2 = ff.grad(ff.grad(lambda z: z * z * z, holomorphic=True), holomorphic=True)(1.0 + 2.0j)
    np.testing.assert_allclose(g2, 6 * (1 + 2j), rtol=1e-12)


def test_vjp_is_transpose_not_adjoint():
    # pullback(ct) = ct * f'(z) with no conjugate: JAX's vjp(lambda z: z * z, z)[1](ct).
    z, ct = 1.0 + 2.0j, 1.0j
    out, pb = ff.vjp(lambda z: z * z, z)
    np.testing.assert_allclose(out, z * z)
    (g,) = pb(ct)
    np.testing.assert_allclose(g, ct * 2 * z)  # -4 + 2j, not conj(2z) * ct
    np.testing.assert_allclose(g, -4.0 + 2.0j)


def test_vjp_of_array_function_and_sum():
    out, pb = ff.vjp(lambda z: np.sum(np.exp(z) * z), Z)
    (g,) = pb(np.complex128(1.0))
    np.testing.assert_allclose(g, np.exp(Z) * (1 + Z), rtol=1e-12)


def test_jvp_complex_primals_and_tangents():
    t = np.array([0.5 - 1.0j, 2.0 + 0.0j, 1.0j])
    out, tout = ff.jvp(lambda z: np.exp(z) * z, (Z,), (t,))
    np.testing.assert_allclose(out, np.exp(Z) * Z)
    np.testing.assert_allclose(tout, np.exp(Z) * (1 + Z) * t, rtol=1e-12)


def test_jvp_real_input_complex_output():
    # x real, f(x) = exp(i x): the tangent is i exp(i x) t, complex.
    x, t = np.array([0.0, 0.5, 2.0]), np.array([1.0, -2.0, 0.5])
    out, tout = ff.jvp(lambda x: np.exp(1j * x), (x,), (t,))
    np.testing.assert_allclose(out, np.exp(1j * x))
    np.testing.assert_allclose(tout, 1j * np.exp(1j * x) * t, rtol=1e-12)


@pytest.mark.parametrize("jac", [ff.jacrev, ff.jacfwd])
def test_jacobians_holomorphic(jac):
    J = jac(lambda z: z * z, holomorphic=True)(Z)
    assert J.dtype == np.complex128
    np.testing.assert_allclose(J, np.diag(2 * Z), rtol=1e-12)


def test_jacfwd_real_input_complex_output():
    # Not holomorphic-only: real inputs, complex outputs are fine for jacfwd (as in JAX).
    x = np.array([0.0, 0.5])
    J = ff.jacfwd(lambda x: np.exp(1j * x))(x)
    np.testing.assert_allclose(J, np.diag(1j * np.exp(1j * x)), rtol=1e-12)


def test_hessian_holomorphic():
    H = ff.hessian(lambda z: np.sum(z * z * z), holomorphic=True)(Z)
    np.testing.assert_allclose(H, np.diag(6 * Z), rtol=1e-12)


def test_vmap_complex_and_vmap_of_holomorphic_grad():
    np.testing.assert_allclose(ff.vmap(lambda z: z * z)(Z), Z * Z)
    g = ff.vmap(ff.grad(lambda z: z * z * z, holomorphic=True))(Z)
    np.testing.assert_allclose(g, 3 * Z * Z, rtol=1e-12)


def test_complex64_preserved():
    z = Z.astype(np.complex64)
    g = ff.grad(lambda z: np.sum(z * z), holomorphic=True)(z)
    assert g.dtype == np.complex64
    np.testing.assert_allclose(g, 2 * z, rtol=1e-6)


# -- the errors JAX raises, with messages that say what to do ---------------------------
def test_complex_output_without_holomorphic_is_an_error():
    with pytest.raises(TypeError, match=r"holomorphic=True.*np\.real\(out\) or np\.abs"):
        ff.grad(lambda z: z * z)(1.0 + 2.0j)
    with pytest.raises(TypeError, match="jacrev: .*output leaf 0 is complex"):
        ff.jacrev(lambda z: z * z)(Z)


def test_holomorphic_needs_complex_inputs_and_outputs():
    with pytest.raises(TypeError, match=r"grad\(holomorphic=True\): args\[0\] has dtype "
                                        r"float64.*must be complex"):
        ff.grad(lambda z: z * z, holomorphic=True)(2.0)
    with pytest.raises(TypeError, match=r"args\[0\]\['b'\] has dtype float64"):
        ff.grad(lambda p: np.sum(p["a"] * p["b"]), holomorphic=True)(
            {"a": Z, "b": np.ones(3)})
    with pytest.raises(TypeError, match=r"grad\(holomorphic=True\): the function's output "
                                        r"has dtype float64.*must be complex"):
        ff.grad(lambda z: np.float64(2.0), holomorphic=True)(1.0 + 1.0j)
    with pytest.raises(TypeError, match=r"jacfwd\(holomorphic=True\): args\[0\]"):
        ff.jacfwd(lambda x: x, holomorphic=True)(np.ones(2))
    with pytest.raises(TypeError, match=r"jacrev\(holomorphic=True\): args\[0\]"):
        ff.jacrev(lambda x: x, holomorphic=True)(np.ones(2))


def test_jacfwd_refuses_complex_input_without_holomorphic():
    # JAX: "jacfwd requires real-valued inputs ... pass holomorphic=True ... use jax.jvp".
    with pytest.raises(TypeError, match=r"jacfwd: args\[0\] is complex.*holomorphic=True"):
        ff.jacfwd(lambda z: z * z)(Z)
    with pytest.raises(TypeError, match=r"hessian: args\[0\] is complex.*holomorphic=True"):
        ff.hessian(lambda z: np.sum(np.abs(z) ** 2))(Z)


# -- allow_int and float0 ---------------------------------------------------------------
def test_float0_is_jax_s_dtype():
    assert float0.itemsize == 0 and float0.kind == "V"
    assert ff.dtypes.float0 is float0


def test_grad_allow_int_gives_float0_zeros():
    f = lambda x, n: np.sum(x * n)  # noqa: E731
    gx, gn = ff.grad(f, argnums=(0, 1), allow_int=True)(2.0, np.array([3, 4]))
    np.testing.assert_allclose(gx, 7.0)
    assert gn.dtype == float0 and gn.shape == (2,)
    v, (g,) = ff.value_and_grad(lambda p: np.sum(p["w"]) * 2.0, argnums=(0,),
                                allow_int=True)({"w": np.ones(2), "k": np.arange(3)})
    assert v == 4.0 and g["k"].dtype == float0 and g["k"].shape == (3,)
    np.testing.assert_allclose(g["w"], [2.0, 2.0])
    # An argument with integers only: no error with allow_int.
    g = ff.grad(lambda x, n: x * 2.0, argnums=1, allow_int=True)(1.0, np.array([1, 2]))
    assert g.dtype == float0 and g.shape == (2,)


def test_without_allow_int_integer_leaves_stay_constants_or_raise():
    g = ff.grad(lambda p: np.sum(p["w"]))({"w": np.ones(2), "k": np.arange(3)})
    assert g["k"] is None
    with pytest.raises(TypeError, match="no floating-point leaf"):
        ff.grad(lambda x, n: x * 2.0, argnums=1)(1.0, np.array([1, 2]))


@pytest.mark.parametrize("jac", [ff.jacrev, ff.jacfwd])
def test_jacobian_allow_int(jac):
    x, n = np.array([1.0, 2.0]), np.array([3, 4, 5])
    Jx, Jn = jac(lambda x, n: x * 2.0, argnums=(0, 1), allow_int=True)(x, n)
    np.testing.assert_allclose(Jx, 2 * np.eye(2))
    assert Jn.dtype == float0 and Jn.shape == (2, 3)
    Jn = jac(lambda x, n: x * 2.0, argnums=1, allow_int=True)(x, n)
    assert Jn.dtype == float0 and Jn.shape == (2, 3)


# -- real-valued functions of complex inputs, and complex intermediates -----------------
def real_grad_fd(f, z, h=1e-6):
    """df/dx - i df/dy by central differences: JAX's grad of a real f at z = x + iy."""
    dx = (f(z + h) - f(z - h)) / (2 * h)
    dy = (f(z + 1j * h) - f(z - 1j * h)) / (2 * h)
    return dx - 1j * dy


def test_grad_of_abs_squared_is_jax_s_documented_value():
    # JAX's FAQ / autodiff cookbook: grad(lambda z: abs(z) ** 2)(3 + 4j) == 6 - 8j,
    # the conjugate of the steepest-ascent direction 2z.
    g = ff.grad(lambda z: np.abs(z) ** 2)(3.0 + 4.0j)
    np.testing.assert_allclose(g, 6.0 - 8.0j, rtol=1e-12)


@pytest.mark.parametrize("name,f", [
    ("real", lambda z: np.real(z * z)),
    ("imag", lambda z: np.imag(z * z * z)),
    ("conj", lambda z: np.real(np.conj(z) * np.exp(z))),
    ("abs", lambda z: np.abs(np.exp(z) + z)),
    ("angle", lambda z: np.angle(z)),
    ("attrs", lambda z: (z * z).real + (z * z).imag ** 2),
])
def test_grad_of_real_function_of_complex_input(name, f):
    z = 0.7 - 1.3j
    np.testing.assert_allclose(ff.grad(f)(z), real_grad_fd(f, z), rtol=1e-6)
    g = ff.grad(lambda z: np.sum(f(z)))(Z)
    np.testing.assert_allclose(g, [real_grad_fd(f, z) for z in Z], rtol=1e-6)
    # reverse and forward agree: <grad, t> (real pairing, JAX's) is the jvp along t
    t = np.array([0.3 + 0.1j, -1.0 + 2.0j, 0.5j])
    _, tout = ff.jvp(lambda z: np.sum(f(z)), (Z,), (t,))
    np.testing.assert_allclose(tout, np.real(np.sum(g * t)), rtol=1e-10)


def test_gradient_descent_on_complex_parameters_uses_conj():
    # The documented recipe: a descent step on complex z is z - lr * conj(grad).
    c = 2.0 - 1.0j
    loss = lambda z: np.abs(z - c) ** 2  # noqa: E731
    z = 0.0 + 0.0j
    for _ in range(50):
        z = z - 0.1 * np.conj(ff.grad(loss)(z))
    np.testing.assert_allclose(z, c, atol=1e-4)


def test_real_input_complex_intermediate_real_output():
    x = np.array([0.0, 0.5, 2.0])
    f = lambda x: np.real(np.exp(1j * x))  # cos x  # noqa: E731
    out, tout = ff.jvp(f, (x,), (np.ones(3),))
    np.testing.assert_allclose(out, np.cos(x))
    np.testing.assert_allclose(tout, -np.sin(x), atol=1e-15)
    assert tout.dtype == np.float64
    _, pb = ff.vjp(f, x)
    (g,) = pb(np.ones(3))
    assert g.dtype == np.float64  # a real input gets a real cotangent
    np.testing.assert_allclose(g, -np.sin(x), atol=1e-15)
    np.testing.assert_allclose(ff.grad(lambda x: np.sum(f(x)))(x), -np.sin(x), atol=1e-15)
    np.testing.assert_allclose(ff.jacrev(f)(x), np.diag(-np.sin(x)), atol=1e-15)
    np.testing.assert_allclose(ff.jacfwd(f)(x), np.diag(-np.sin(x)), atol=1e-15)
    np.testing.assert_allclose(ff.hessian(lambda x: np.sum(f(x)))(x), np.diag(-np.cos(x)),
                               atol=1e-15)


def test_jacrev_of_real_function_of_complex_input():
    # Rows are the JAX-convention gradients: d|z|/dx - i d|z|/dy = conj(z) / |z|.
    J = ff.jacrev(np.abs)(Z)
    np.testing.assert_allclose(J, np.diag(np.conj(Z) / np.abs(Z)), rtol=1e-12)


def test_vjp_of_real_output_with_complex_input():
    _, pb = ff.vjp(np.abs, Z)
    (g,) = pb(np.array([1.0, 2.0, -1.0]))
    np.testing.assert_allclose(g, np.array([1.0, 2.0, -1.0]) * np.conj(Z) / np.abs(Z))
