"""Edge cases of the elementwise family that the spec sweep does not reach."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp

F32 = np.float32


def _x32() -> np.ndarray:
    return np.array([-1.5, -0.25, 0.5, 2.0], dtype=F32)


# -- float32 stays float32 -----------------------------------------------------------------
SCALAR_MIXES = {
    "x*3": lambda x: x * 3,
    "3*x": lambda x: 3 * x,
    "x+1.5": lambda x: x + 1.5,
    "1.5-x": lambda x: 1.5 - x,
    "x/2": lambda x: x / 2,
    "2/x": lambda x: 2.0 / x,
    "x**2": lambda x: x ** 2,
    "x**0.5": lambda x: np.abs(x) ** 0.5,
    "2**x": lambda x: 2.0 ** x,
    "x%1.5": lambda x: x % 1.5,
    "fmod": lambda x: np.fmod(x, 1.5),
    "maximum": lambda x: np.maximum(x, 0.0),
    "fmin": lambda x: np.fmin(1.0, x),
    "clip": lambda x: np.clip(x, -1, 1),
    "where": lambda x: np.where(x > 0, x, 0.0),
    "copysign": lambda x: np.copysign(x, -1.0),
    "logaddexp": lambda x: np.logaddexp(x, 0.5),
    "arctan2": lambda x: np.arctan2(1.0, x),
    "hypot": lambda x: np.hypot(x, 2),
    "deg2rad": np.deg2rad,
    "sinc": np.sinc,
    "nan_to_num": lambda x: np.nan_to_num(x / (x > 0), posinf=9.0, neginf=-9.0),
    "exp2": np.exp2,
    "cbrt": np.cbrt,
}


@pytest.mark.parametrize("name", list(SCALAR_MIXES))
def test_float32_preserved_in_both_modes_to_second_order(name: str) -> None:
    f = SCALAR_MIXES[name]
    x = _x32()
    with np.errstate(divide="ignore", invalid="ignore"):
        assert f(x).dtype == F32  # NumPy's own result: the reference
        loss = lambda x: np.sum(f(x))
        g = ff.grad(loss)(x)
        assert g.dtype == F32, g.dtype
        out, t = ff.jvp(f, (x,), (np.ones_like(x),))
        assert out.dtype == F32 and t.dtype == F32, (out.dtype, t.dtype)
        hvp = ff.jvp(ff.grad(loss), (x,), (np.ones_like(x),))[1]
        assert hvp.dtype == F32, hvp.dtype
        assert ff.grad(lambda x: np.sum(ff.grad(loss)(x)))(x).dtype == F32


def test_mixed_precision_tangent_follows_the_output_dtype() -> None:
    x = _x32()
    y = np.ones(4)
    out, t = ff.jvp(lambda x: x + y, (x,), (np.ones_like(x),))
    assert out.dtype == t.dtype == np.float64
    out, t = ff.jvp(lambda x: np.where(x > 0, x, y), (x,), (np.ones_like(x),))
    assert out.dtype == t.dtype == np.float64
    assert ff.grad(lambda x: np.sum(x - y))(x).dtype == F32


# -- operators with Python scalars on either side ----------------------------------------
@pytest.mark.parametrize("f, df", [
    (lambda x: 2 * x, lambda x: 2.0),
    (lambda x: x * 2, lambda x: 2.0),
    (lambda x: 2 - x, lambda x: -1.0),
    (lambda x: x - 2, lambda x: 1.0),
    (lambda x: 2 / x, lambda x: -2.0 / x ** 2),
    (lambda x: x / 2, lambda x: 0.5),
    (lambda x: 2 ** x, lambda x: np.log(2.0) * 2.0 ** x),
    (lambda x: x ** 2, lambda x: 2 * x),
    (lambda x: 3.5 % x, lambda x: -np.floor_divide(3.5, x)),
    (lambda x: x % 0.75, lambda x: 1.0),
    (lambda x: 3.0 // x + x, lambda x: 1.0),
])
def test_operators_with_python_scalars(f, df) -> None:
    x = np.array([-1.3, 0.7, 1.9])
    np.testing.assert_allclose(ff.grad(lambda x: np.sum(f(x)))(x), df(x) * np.ones_like(x))
    np.testing.assert_allclose(ff.jvp(f, (x,), (np.ones_like(x),))[1], df(x) * np.ones_like(x))


def test_square_of_negative_base_to_second_order() -> None:
    x = np.array([-2.0, -0.5, 3.0])
    np.testing.assert_allclose(ff.grad(lambda x: np.sum(x ** 2))(x), 2 * x)
    np.testing.assert_allclose(ff.hessian(lambda x: np.sum(x ** 3))(x), np.diag(6 * x))


def test_power_exponent_derivative_at_zero_base() -> None:
    x = np.array([0.0, 2.0])
    y = np.array([2.0, 3.0])
    gy = ff.grad(lambda y: np.sum(x ** y))(y)
    np.testing.assert_allclose(gy, [0.0, 8 * np.log(2.0)])
    gx = ff.grad(lambda x: np.sum(x ** y))(x)
    np.testing.assert_allclose(gx, [0.0, 12.0])


# -- comparisons and logic are plain values ------------------------------------------------
def test_comparisons_are_plain_bools_inside_transforms() -> None:
    def f(x):
        c = np.sum(x) > 0
        assert type(c) in (bool, np.bool_), type(c)
        if c:
            return np.sum(x ** 2)
        return np.sum(-x)

    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(ff.grad(f)(x), 2 * x)
    np.testing.assert_allclose(ff.grad(f)(-x), [-1.0, -1.0])
    np.testing.assert_allclose(ff.jvp(f, (x,), (np.ones(2),))[1], 6.0)
    np.testing.assert_allclose(ff.hessian(f)(x), 2 * np.eye(2))

    def masks(x):
        m = (x > 0) & np.isfinite(x) | np.isnan(x)
        assert isinstance(m, np.ndarray) and m.dtype == bool
        return np.sum(np.where(m, x, 0.0))

    np.testing.assert_allclose(ff.grad(masks)(np.array([-1.0, 2.0])), [0.0, 1.0])


def test_nondiff_functions_give_zero_gradients() -> None:
    x = np.array([-1.3, 0.7, 1.9])
    for f in (np.floor, np.ceil, np.rint, np.trunc, np.fix, np.sign, np.round,
              lambda x: np.heaviside(x, 0.5), lambda x: x // 0.5):
        np.testing.assert_array_equal(ff.grad(lambda x: np.sum(f(x) * 1.0))(x), 0.0)


# -- clip -----------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda x: np.clip(x, None, 1.0),
    lambda x: np.clip(x, -1.0, None),
    lambda x: np.clip(x, -1.0, 1.0),
    lambda x: np.clip(x, min=-1.0),
    lambda x: np.clip(x, max=1.0),
    lambda x: np.clip(x, np.array([-3.0, 0.0, 0.0, -1.0, 0.0]), 1.0),
])
def test_clip_bounds(call) -> None:
    x = np.array([-2.0, -0.5, 0.5, 1.5, 3.0])
    np.testing.assert_array_equal(ff.vjp(call, x)[0], call(x))
    g = ff.grad(lambda x: np.sum(call(x)))(x)
    expected = ff.jvp(call, (x,), (np.ones_like(x),))[1]
    np.testing.assert_array_equal(g, expected)
    inside = (call(x) == x).astype(float)
    np.testing.assert_array_equal(g, inside)


def test_clip_method_and_none_bounds() -> None:
    x = np.array([-2.0, 0.5, 3.0])
    g = ff.grad(lambda x: np.sum(x.clip(min=0.0)) + np.sum(x.clip(None, 1.0)))(x)
    np.testing.assert_array_equal(g, [1.0, 2.0, 1.0])
    np.testing.assert_array_equal(fnp.clip(x, None, None), x)
    with pytest.raises(ValueError, match="either a_min or min"):
        ff.grad(lambda x: np.sum(np.clip(x, 0.0, min=0.0)))(x)
    with pytest.raises(TypeError, match="out="):
        ff.grad(lambda x: np.sum(np.clip(x, 0.0, 1.0, out=np.empty(3))))(x)


def test_clip_gradient_reaches_array_bounds() -> None:
    x = np.array([-2.0, 0.5, 3.0])
    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    glo, ghi = ff.grad(lambda lo, hi: np.sum(np.clip(x, lo, hi)), argnums=(0, 1))(lo, hi)
    np.testing.assert_array_equal(glo, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(ghi, [0.0, 0.0, 1.0])


# -- extrema at ties and NaNs ------------------------------------------------------------
def test_maximum_ties_share_the_gradient() -> None:
    # JAX: lax.max/min split a tie in halves; jnp.fmax/fmin are where((x > y) | isnan(y),
    # x, y), so a tie goes wholly to y.
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 4.0])
    for f, tie in ((np.maximum, 0.5), (np.minimum, 0.5), (np.fmax, 0.0), (np.fmin, 0.0)):
        gx, gy = ff.grad(lambda x, y, f=f: np.sum(f(x, y)), argnums=(0, 1))(x, y)
        assert gx[0] == tie and gy[0] == 1.0 - tie, f.__name__
        np.testing.assert_array_equal(gx + gy, 1.0)


def test_fmax_routes_the_gradient_past_nan() -> None:
    x, y = np.array([np.nan, 2.0]), np.array([1.0, np.nan])
    gx, gy = ff.grad(lambda x, y: np.sum(np.fmax(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [0.0, 1.0])
    np.testing.assert_array_equal(gy, [1.0, 0.0])


# -- rounding ------------------------------------------------------------------------------
@pytest.mark.parametrize("decimals", [0, 1, 2, -1])
def test_round_with_decimals(decimals: int) -> None:
    x = np.array([12.345, -3.14159, 0.5, 1.5, 250.0])
    out, pullback = ff.vjp(lambda x: np.round(x, decimals), x)
    np.testing.assert_array_equal(out, np.round(x, decimals))
    np.testing.assert_array_equal(pullback(np.ones(5))[0], 0.0)
    np.testing.assert_array_equal(ff.vjp(lambda x: x.round(decimals), x)[0], x.round(decimals))
    np.testing.assert_array_equal(ff.vjp(lambda x: np.around(x, decimals), x)[0],
                                  np.around(x, decimals))
    got = ff.vmap(lambda x: np.round(x, decimals))(x.reshape(5, 1))
    np.testing.assert_array_equal(got, np.round(x, decimals).reshape(5, 1))


def test_round_keeps_integer_semantics_under_vmap() -> None:
    a = np.arange(0, 294, 7).reshape(3, -1)
    np.testing.assert_array_equal(ff.vmap(lambda a: np.round(a, -1))(a), np.round(a, -1))
    np.testing.assert_array_equal(ff.vmap(np.reciprocal)(np.array([1, 2, -1])), [1, 0, -1])


def test_round_rejects_out() -> None:
    with pytest.raises(TypeError, match="out="):
        ff.grad(lambda x: np.sum(np.round(x, 1, out=np.empty(2))))(np.ones(2))


# -- exact values ------------------------------------------------------------------------
def test_values_match_numpy_bitwise() -> None:
    x = np.array([-7.3, -1e-3, 0.0, 2.5, 1e10, 8.0])
    y = np.array([0.7, -1.3, 2.0, -0.4, 3.3, 2.0])
    for f in (np.remainder, np.fmod, np.floor_divide, np.copysign, np.hypot, np.arctan2,
              np.logaddexp, np.fmax, lambda a, b: np.divmod(a, b)[1]):
        got = ff.vjp(lambda x: f(x, y), x)[0]
        np.testing.assert_array_equal(got, f(x, y))
    for f in (np.log2, np.log10, np.exp2, np.sinc, np.deg2rad, np.rad2deg, np.cbrt, np.fix,
              np.fabs, np.reciprocal):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            np.testing.assert_array_equal(ff.vjp(f, x)[0], f(x))


def test_sinc_at_zero() -> None:
    out, g = ff.value_and_grad(lambda x: np.sinc(x))(0.0)
    assert out == 1.0 and g == 0.0


def test_integer_inputs_follow_numpy_dtypes() -> None:
    i8 = np.array([1, 2, 3], dtype=np.int8)
    for f in (fnp.fabs, fnp.deg2rad, fnp.float_power, fnp.sinc):
        args = (i8, i8) if f is fnp.float_power else (i8,)
        ref = getattr(np, f.__name__)(*args)
        assert f(*args).dtype == ref.dtype, f.__name__
        np.testing.assert_allclose(f(*args), ref, rtol=1e-3)


# -- real, imag, conj on real and complex values ----------------------------------------------
def test_conj_real_imag_on_real_and_complex() -> None:
    x = np.array([1.0, -2.0])
    g = ff.grad(lambda x: np.sum(np.conj(x) * x.conj() + np.real(x) + np.imag(x)))(x)
    np.testing.assert_array_equal(g, 2 * x + 1)
    z = np.array([1 + 2j])
    np.testing.assert_array_equal(fnp.conj(z), np.conj(z))
    np.testing.assert_array_equal(fnp.imag(z), [2.0])
    # Complex values are transformed (they were refused before): vmap of conj, and the
    # tracer's .real / .imag / .conj() are the parts, not the value itself.
    np.testing.assert_array_equal(ff.vmap(np.conj)(np.array([1j, 2j])), [-1j, -2j])
    parts = ff.vmap(lambda z: (z.real, z.imag, z.conj()))(np.array([1 + 2j, 3 - 4j]))
    np.testing.assert_array_equal(parts[0], [1.0, 3.0])
    np.testing.assert_array_equal(parts[1], [2.0, -4.0])
    np.testing.assert_array_equal(parts[2], [1 - 2j, 3 + 4j])


def test_where_needs_both_branches() -> None:
    with pytest.raises(ValueError, match="both or neither"):
        fnp.where(np.array([True]), np.array([1.0]))
    g = ff.grad(lambda c: np.sum(np.where(c, c, 2.0)))(np.array([0.0, 3.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0])


def test_divmod_of_traced_values() -> None:
    x = np.array([5.5, -3.25])
    q, r = ff.vjp(lambda x: np.divmod(x, 2.0), x)[0]
    np.testing.assert_array_equal(q, [2.0, -2.0])
    np.testing.assert_array_equal(r, [1.5, 0.75])


def test_real_if_close_on_real_values_is_the_identity():
    """np.real_if_close had no rule (a TypeError naming it); HIPS autograd's
    test_systematic.py::test_real_ic differentiates it on real arrays."""
    x = np.array([[0.5, -1.0], [2.0, 3.0]])
    ff.test_util.check_grads(np.real_if_close, (x,), order=2)
    np.testing.assert_array_equal(ff.grad(lambda x: np.sum(np.real_if_close(x) ** 2))(x), 2 * x)
    np.testing.assert_array_equal(ff.vmap(np.real_if_close)(x), x)


def test_real_if_close_on_traced_complex_values_says_what_to_write():
    with pytest.raises(TypeError, match=r"np.real_if_close on a traced complex.*np.real\(z\)"):
        ff.grad(lambda z: np.abs(np.real_if_close(z)))(np.complex128(1.0 + 1e-20j))
