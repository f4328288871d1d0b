"""Complex numbers through the elementwise rules, with JAX's convention.

A JVP is the real-linear tangent map; a VJP is its transpose under the pairing
``<a, b> = Re sum(a * b)`` (no conjugate). So a holomorphic ``f`` has
``vjp(ct) = ct * f'(z)``, and ``grad`` of a real function of ``z = x + iy`` is
``df/dx - 1j * df/dy`` (JAX: ``grad(abs)(z) == conj(z) / abs(z)``). A real input
whose cotangent comes out complex keeps its real part. The sweep
(``specs_elementwise.py``, lines with ``C(...)``) checks every rule against finite
differences; these tests pin the convention and the motivating examples.
"""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux.test_util import check_grads

Z = np.array([1.0 + 2.0j, -0.5 + 0.3j, 0.7 - 1.1j])


# -- the motivating examples: real in, complex inside, real out ------------------------------
def f_phase(x):
    return np.real(np.exp(1j * x))


def test_grad_of_the_real_part_of_a_phase() -> None:
    assert ff.grad(f_phase)(0.3) == pytest.approx(-np.sin(0.3), rel=1e-15)
    g = ff.grad(f_phase)(np.float64(0.3))
    assert g.dtype == np.float64 and g.shape == ()


def test_jvp_vmap_and_second_order_of_it() -> None:
    out, t = ff.jvp(f_phase, (0.3,), (2.0,))
    assert out == pytest.approx(np.cos(0.3)) and t == pytest.approx(-2 * np.sin(0.3))
    assert np.asarray(t).dtype == np.float64
    xs = np.array([0.3, -1.0, 2.5])
    np.testing.assert_allclose(ff.vmap(ff.grad(f_phase))(xs), -np.sin(xs), rtol=1e-14)
    assert ff.grad(ff.grad(f_phase))(0.3) == pytest.approx(-np.cos(0.3))
    np.testing.assert_allclose(ff.hessian(lambda x: np.sum(f_phase(x)))(xs),
                               np.diag(-np.cos(xs)), rtol=1e-14)
    check_grads(f_phase, (xs,))


def test_float32_stays_float32_through_complex64() -> None:
    x = np.array([0.3, 1.0], dtype=np.float32)
    g = ff.grad(lambda x: np.sum(f_phase(x)))(x)
    assert g.dtype == np.float32
    _, t = ff.jvp(f_phase, (x,), (np.ones(2, np.float32),))
    assert t.dtype == np.float32


# -- JAX's convention, value by value --------------------------------------------------------
def test_grad_of_real_functions_of_complex_inputs() -> None:
    z = np.complex128(3.0 + 4.0j)
    # JAX: grad(jnp.abs)(z) == conj(z) / |z|; grad(|z|^2) == 2 conj(z).
    assert ff.grad(np.abs)(z) == pytest.approx((3.0 - 4.0j) / 5.0)
    assert ff.grad(lambda z: np.real(z * np.conj(z)))(z) == pytest.approx(2 * (3.0 - 4.0j))
    # JAX: real's transpose maps ct to ct + 0j; imag's to -1j * ct.
    assert ff.grad(np.real)(z) == 1.0 + 0.0j
    assert ff.grad(np.imag)(z) == -1.0j
    assert ff.grad(lambda z: z.real + 2.0 * z.imag)(z) == 1.0 - 2.0j
    assert ff.grad(lambda z: np.angle(z))(z) == pytest.approx(-(4.0 + 3.0j) / 25.0)


def test_holomorphic_rules_have_no_conjugate() -> None:
    # vjp(ct) = ct * f'(z): for exp, ct * exp(z); jvp(t) = t * f'(z).
    _, pullback = ff.vjp(np.exp, Z)
    np.testing.assert_allclose(pullback(np.ones(3) + 0j)[0], np.exp(Z), rtol=1e-15)
    _, t = ff.jvp(np.sin, (Z,), (np.full(3, 1j),))
    np.testing.assert_allclose(t, 1j * np.cos(Z), rtol=1e-15)
    _, pullback = ff.vjp(np.conj, Z)
    np.testing.assert_array_equal(pullback(np.full(3, 1j))[0], np.full(3, -1j))


def test_real_inputs_get_real_cotangents() -> None:
    x = np.array([1.0, 2.0])
    g = ff.grad(lambda x: np.real(np.sum(x * (1.0 + 2.0j))))(x)
    np.testing.assert_array_equal(g, [1.0, 1.0])
    assert g.dtype == np.float64
    # through broadcasting, where, and casts: each keeps the real input real
    _, pullback = ff.vjp(lambda x: x[:, None] * Z + np.where(x[:, None] > 0, x[:, None], Z), x)
    (gx,) = pullback(np.full((2, 3), 1.0 - 1.0j))
    assert gx.dtype == np.float64
    np.testing.assert_allclose(gx, np.full(2, np.sum(np.real((1 - 1j) * Z)) + 3.0))
    g = ff.grad(lambda x: np.real(x.astype(np.complex128) * 1j))(1.5)
    assert g == 0.0 and g.dtype == np.float64
    # conj of a real value is the value: its cotangent stays real too
    g = ff.grad(lambda x: np.conj(x) * x)(2.0)
    assert g == 4.0 and g.dtype == np.float64


def test_astype_between_complex_and_real() -> None:
    z = np.complex128(1.0 + 2.0j)
    # complex -> real keeps the real part; its transpose is ct + 0j
    assert ff.grad(lambda z: ff.numpy.astype(z, np.float64) * 3.0)(z) == 3.0 + 0.0j
    _, t = ff.jvp(lambda z: ff.numpy.astype(z, np.float32), (z,), (np.complex128(2 + 5j),))
    assert t == 2.0 and t.dtype == np.float32


def test_complex64_is_preserved() -> None:
    z = Z.astype(np.complex64)
    out, pullback = ff.vjp(lambda z: np.log(z) * z, z)
    assert out.dtype == np.complex64
    assert pullback(np.ones(3, np.complex64))[0].dtype == np.complex64
    _, t = ff.jvp(lambda z: np.abs(z) ** 2, (z,), (np.ones(3, np.complex64),))
    assert t.dtype == np.float32


def test_tracer_parts_and_methods() -> None:
    g = ff.grad(lambda z: np.sum(z.real * z.imag + np.real(z.conj() * z)))(Z)
    np.testing.assert_allclose(g, Z.imag + 1j * -Z.real + 2 * np.conj(Z), rtol=1e-15)
    np.testing.assert_array_equal(ff.vmap(lambda z: z.imag)(Z), Z.imag)


# -- ordered operations: NumPy's own behaviour, never a silent derivative --------------------
def test_numpy_refusals_stay_refusals() -> None:
    unary = (np.floor, np.cbrt, np.fabs, np.deg2rad, np.rad2deg)
    for f in unary + (np.hypot, np.arctan2, np.fmod, np.logaddexp, np.copysign):
        args = (Z,) if f in unary else (Z, Z)
        with pytest.raises(TypeError):
            f(*args)  # NumPy's error...
        with pytest.raises(TypeError):
            ff.jvp(lambda *a, f=f: f(*a), args, args)  # ...and the same on traced values


def test_lexicographic_extrema_follow_the_selected_argument() -> None:
    # NumPy (and JAX) order complex numbers lexicographically; the derivative follows the
    # argument that is returned, as for reals.
    w = np.array([1.0 + 5.0j, -1.0 + 0.0j, 0.7 - 1.1j])  # the last one ties
    gz, gw = ff.grad(lambda z, w: np.sum(np.real(np.maximum(z, w))), argnums=(0, 1))(Z, w)
    np.testing.assert_array_equal(gz, [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(gw, [1.0, 0.0, 0.5])
    gz = ff.grad(lambda z: np.real(np.maximum(z, 0.7 - 2.0j)))(np.complex128(0.7 - 1.1j))
    assert gz == 1.0  # equal real parts: the imaginary parts decide
