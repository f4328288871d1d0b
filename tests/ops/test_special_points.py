"""Derivatives of elementwise functions at their special points, against JAX's values.

The spec sweep draws points away from kinks, ties and singularities; this table
visits them. Each row gives the point, the derivative with respect to each
argument (reverse mode: ``grad``; forward mode: ``jvp`` along each unit tangent,
which equals it unless ``fwd`` says otherwise) and, where a rule uses a partial
that itself has a special point there, the second derivative. The values were
derived from JAX's rules (JAX 0.4.x, read in jax-ml/jax: jax/_src/lax/lax.py for
the primitives' JVPs, jax/_src/numpy/ufuncs.py for jax.numpy's compositions);
``source`` names the rule. Where JAX's value is ``inf`` or ``nan``, that value
is kept (it is JAX's documented behaviour, and the mathematics has no finite
answer there); the few places where funcflux deliberately differs say so.

JAX is not a test dependency: the numbers are written down here.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import funcflux as ff

# The points are where NumPy itself divides by zero or overflows: its warnings are expected.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

inf, nan = np.inf, np.nan
PI2_3 = -math.pi ** 2 / 3


@dataclasses.dataclass(frozen=True)
class Point:
    id: str
    fun: Callable[..., Any]
    at: tuple
    grad: tuple                 # d fun / d at[i], reverse mode
    source: str
    fwd: tuple | None = None    # forward mode, where it differs from reverse
    second: float | None = None  # d^2 fun / d at[0]^2 (both modes), when checked


POINTS = [
    # -- power: JAX's integer_pow JVP (y == 0 -> 0, else y * x**(y - 1)) and pow JVPs
    Point("x**0 at 0", lambda x: x ** 0, (0.0,), (0.0,),
          "lax.integer_pow_p JVP: zeros for y == 0", second=0.0),
    Point("x**1 at 0", lambda x: x ** 1, (0.0,), (1.0,),
          "integer_pow JVP: 1 * x**0", second=0.0),
    Point("x**2 at 0", lambda x: x ** 2, (0.0,), (0.0,), "integer_pow JVP: 2 * x", second=2.0),
    Point("x**3 at 0", lambda x: x ** 3, (0.0,), (0.0,), "integer_pow JVP: 3 * x**2",
          second=0.0),
    Point("x**2.0 at 0", lambda x: x ** 2.0, (0.0,), (0.0,), "lax.pow JVP: y * x**(y - 1)",
          second=2.0),
    Point("x**0.5 at 0", lambda x: x ** 0.5, (0.0,), (inf,), "lax.pow JVP: 0.5 * 0**-0.5"),
    Point("x**-1 at 0", lambda x: x ** -1, (0.0,), (-inf,), "integer_pow JVP: -1 * x**-2"),
    Point("x**0 at 2", lambda x: x ** 0, (2.0,), (0.0,), "integer_pow JVP: zeros for y == 0"),
    Point("x**y at (0, 2)", lambda x, y: x ** y, (0.0, 2.0), (0.0, 0.0),
          "lax.pow: d/dy = log(x with 0 replaced by 1) * x**y = 0"),
    Point("x**y at (0, 1)", lambda x, y: x ** y, (0.0, 1.0), (1.0, 0.0),
          "lax.pow JVPs: 1 * 0**0, log(1) * 0"),
    # funcflux differs from JAX's float-exponent rule only here: JAX's current lax.pow
    # forms 0 * 0**-1 = nan for a float y == 0; funcflux gives 0 (d/dx of the constant
    # x**0), as JAX's integer_pow rule and its earlier pow rule (y - 1 replaced by 1
    # where y == 0) do.
    Point("x**y at (0, 0)", lambda x, y: x ** y, (0.0, 0.0), (0.0, 0.0),
          "lax.pow (pre-2023) / integer_pow: d/dx = 0 where y == 0; d/dy = log(1) * 1"),
    Point("x**y at (0, -1)", lambda x, y: x ** y, (0.0, -1.0), (-inf, nan),
          "lax.pow JVPs: -1 * 0**-2; log(1) * inf = nan"),
    Point("x**y at (-8, 1/3)", lambda x, y: x ** y, (-8.0, 1 / 3), (nan, nan),
          "lax.pow: the value itself is nan"),
    Point("float_power at 0", lambda x: np.float_power(x, 2), (0.0,), (0.0,),
          "jnp.float_power = lax.pow in float64", second=2.0),

    # -- abs and its relatives: JAX's abs JVP is select(x >= 0, g, -g) for real x
    Point("abs at 0", np.abs, (0.0,), (1.0,), "lax.abs_p JVP: select(x >= 0, g, -g)",
          second=0.0),
    Point("abs at -0.0", np.abs, (-0.0,), (1.0,), "lax.abs_p JVP: -0.0 >= 0"),
    Point("fabs at 0", np.fabs, (0.0,), (1.0,), "jnp.fabs = lax.abs"),
    Point("copysign(0, 1)", np.copysign, (0.0, 1.0), (1.0, 0.0),
          "jnp.copysign = where(signbit(y), -abs(x), abs(x))"),
    Point("copysign(0, -1)", np.copysign, (0.0, -1.0), (-1.0, 0.0),
          "jnp.copysign = where(signbit(y), -abs(x), abs(x))"),
    Point("sign at 0", np.sign, (0.0,), (0.0,), "lax.sign_p: defjvp_zero"),
    Point("heaviside at 0", lambda x: np.heaviside(x, 0.5), (0.0,), (0.0,),
          "jnp.heaviside: where of constants"),
    Point("floor_divide(3, 1.5)", np.floor_divide, (3.0, 1.5), (0.0, 0.0),
          "jnp.floor_divide: floor of a quotient, zero JVP"),
    # remainder and fmod at a multiple of the divisor (where they jump): lax.rem_p JVPs
    # are g and -g * sign(x / y) * floor(|x / y|); jnp.remainder's select adds y's own.
    Point("remainder(3, 1.5)", np.remainder, (3.0, 1.5), (1.0, -2.0),
          "lax.rem_p JVPs: 1, -trunc(x / y)"),
    Point("remainder(-3, 1.5)", np.remainder, (-3.0, 1.5), (1.0, 2.0),
          "lax.rem_p JVPs (rem is -0: no correction)"),
    Point("fmod(3, 1.5)", np.fmod, (3.0, 1.5), (1.0, -2.0), "lax.rem_p JVPs"),
    Point("floor at 1", np.floor, (1.0,), (0.0,), "lax.floor_p: defjvp_zero"),
    Point("hypot(0, 0)", np.hypot, (0.0, 0.0), (0.5, 0.5),
          "jnp.hypot: where(max(|x|, |y|) == 0, max, ...); max splits the tie, abs' = 1",
          second=0.0),
    Point("hypot(3, 0)", np.hypot, (3.0, 0.0), (1.0, 0.0), "x / hypot, y / hypot"),
    Point("hypot(0, -2)", np.hypot, (0.0, -2.0), (0.0, -1.0), "x / hypot, y / hypot"),

    # -- singular derivatives: JAX's values are infinite
    Point("sqrt at 0", np.sqrt, (0.0,), (inf,), "lax.sqrt_p JVP: g * 0.5 / ans"),
    Point("cbrt at 0", np.cbrt, (0.0,), (inf,), "lax.cbrt_p JVP: g / 3 * ans**-2"),
    Point("log at 0", np.log, (0.0,), (inf,), "lax.log_p JVP: g / x"),
    Point("log2 at 0", np.log2, (0.0,), (inf,), "jnp.log2 = log(x) / log(2)"),
    Point("log10 at 0", np.log10, (0.0,), (inf,), "jnp.log10 = log(x) / log(10)"),
    Point("log1p at -1", np.log1p, (-1.0,), (inf,), "lax.log1p_p JVP: g / (x + 1)"),
    Point("reciprocal at 0", np.reciprocal, (0.0,), (-inf,),
          "jnp.reciprocal = integer_pow(x, -1): -x**-2"),
    Point("1/x at 0", lambda x: 1.0 / x, (0.0,), (-inf,), "lax.div_p JVP: -g * x / y**2"),
    Point("x/y at (1, 0)", lambda x, y: x / y, (1.0, 0.0), (inf, -inf),
          "lax.div_p JVPs: g / y, -g * x * y**-2"),
    Point("x/y at (0, 0)", lambda x, y: x / y, (0.0, 0.0), (inf, nan),
          "lax.div_p JVPs: 1 / 0, -0 * inf"),
    Point("arcsin at 1", np.arcsin, (1.0,), (inf,), "lax.asin_p JVP: g * rsqrt(1 - x**2)"),
    Point("arcsin at -1", np.arcsin, (-1.0,), (inf,), "lax.asin_p JVP: g * rsqrt(1 - x**2)"),
    Point("arccos at 1", np.arccos, (1.0,), (-inf,), "lax.acos_p JVP: -g * rsqrt(1 - x**2)"),
    Point("arccos at -1", np.arccos, (-1.0,), (-inf,), "lax.acos_p JVP: -g * rsqrt(1 - x**2)"),
    Point("arctanh at 1", np.arctanh, (1.0,), (inf,),
          "lax.atanh_p JVP: g / (1 + x) / (1 - x)"),
    Point("arctanh at -1", np.arctanh, (-1.0,), (inf,),
          "lax.atanh_p JVP: g / (1 + x) / (1 - x)"),
    Point("arccosh at 1", np.arccosh, (1.0,), (inf,),
          "lax.acosh_p JVP: g * rsqrt((x - 1) (x + 1))"),
    Point("arctan2(0, 0)", np.arctan2, (0.0, 0.0), (nan, nan),
          "lax.atan2_p JVPs: x / (x**2 + y**2), -y / (x**2 + y**2) at 0 / 0"),
    Point("arctan2(0, -1)", np.arctan2, (0.0, -1.0), (-1.0, 0.0),
          "lax.atan2_p JVPs on the branch cut: x / r**2, -y / r**2"),

    # -- smooth functions at infinities and at 0
    Point("exp at -inf", np.exp, (-inf,), (0.0,), "lax.exp_p JVP: g * ans"),
    Point("exp at inf", np.exp, (inf,), (inf,), "lax.exp_p JVP: g * ans"),
    Point("tanh at inf", np.tanh, (inf,), (0.0,), "lax.tanh_p JVP: g (1 + ans)(1 - ans)"),
    Point("arctan at inf", np.arctan, (inf,), (0.0,), "lax.atan_p JVP: g / (1 + x**2)"),
    Point("square at 0", np.square, (0.0,), (0.0,), "jnp.square = integer_pow(x, 2)",
          second=2.0),
    Point("sinc at 0", np.sinc, (0.0,), (0.0,),
          "jnp.sinc: _sinc_maclaurin(0, pi x), a custom_jvp with every order: -pi**2 / 3",
          second=PI2_3),
    Point("expm1 at -inf", np.expm1, (-inf,), (0.0,), "lax.expm1_p JVP: g * (ans + 1)"),
    Point("logaddexp(0, 0)", np.logaddexp, (0.0, 0.0), (0.5, 0.5),
          "jnp.logaddexp custom_jvp: exp(0 - log 2)"),
    Point("logaddexp(-inf, -inf)", np.logaddexp, (-inf, -inf), (nan, nan),
          "jnp.logaddexp custom_jvp: exp(x - ans) with -inf - -inf = nan"),
    Point("logaddexp(0, -inf)", np.logaddexp, (0.0, -inf), (1.0, 0.0),
          "jnp.logaddexp custom_jvp: exp(x - ans)"),
    Point("logaddexp(inf, inf)", np.logaddexp, (inf, inf), (1.0, 1.0),
          "jnp.logaddexp custom_jvp: +inf replaced by 0 in x and ans: exp(0)"),
    # funcflux differs from JAX for the finite argument here: JAX replaces ans = +inf by
    # 0 in both weights, giving exp(1 - 0) = e for y; the limit (and funcflux) is 0.
    Point("logaddexp(inf, 1)", np.logaddexp, (inf, 1.0), (1.0, 0.0),
          "jnp.logaddexp custom_jvp for x (+inf -> 0: exp(0)); the limit for y"),
    Point("logaddexp2(-inf, -inf)", np.logaddexp2, (-inf, -inf), (nan, nan),
          "jnp.logaddexp2 custom_jvp: 2**(x - ans) with -inf - -inf = nan"),
    Point("logaddexp2(0, -inf)", np.logaddexp2, (0.0, -inf), (1.0, 0.0),
          "jnp.logaddexp2 custom_jvp"),

    # -- ties: lax.max/min JVPs split a tie 0.5 / 0.5 (_balanced_eq); jnp.fmax/fmin are
    # where((x > y) | isnan(y), x, y), so a tie goes to y; jnp.clip is maximum then minimum
    Point("maximum tie", np.maximum, (1.0, 1.0), (0.5, 0.5), "lax.max_p JVP: _balanced_eq"),
    Point("minimum tie", np.minimum, (1.0, 1.0), (0.5, 0.5), "lax.min_p JVP: _balanced_eq"),
    Point("relu at 0", lambda x: np.maximum(x, 0.0), (0.0,), (0.5,),
          "jnp.maximum = lax.max: tie with the constant 0"),
    Point("fmax tie", np.fmax, (1.0, 1.0), (0.0, 1.0),
          "jnp.fmax = where(greater(x, y) | isnan(y), x, y)"),
    Point("fmin tie", np.fmin, (1.0, 1.0), (0.0, 1.0),
          "jnp.fmin = where(less(x, y) | isnan(y), x, y)"),
    Point("fmax(nan, 1)", np.fmax, (nan, 1.0), (0.0, 1.0), "jnp.fmax: y is returned"),
    Point("fmax(1, nan)", np.fmax, (1.0, nan), (1.0, 0.0), "jnp.fmax: isnan(y): x is returned"),
    Point("clip at the lower bound", lambda x: np.clip(x, 1.0, 2.0), (1.0,), (0.5,),
          "jnp.clip = minimum(maximum(x, lo), hi): tie with lo"),
    Point("clip at the upper bound", lambda x: np.clip(x, 1.0, 2.0), (2.0,), (0.5,),
          "jnp.clip: tie with hi"),
    Point("clip bounds at a tie", lambda lo, hi: np.clip(1.0, lo, hi), (1.0, 3.0), (0.5, 0.0),
          "jnp.clip: the tie's other half goes to the bound"),

    # -- where: the unselected branch's derivative is masked in forward mode, but in
    # reverse mode its zero cotangent times an infinite partial is nan (JAX's FAQ,
    # "Gradients contain NaN where using where")
    Point("where(x != 0, 1/x, 0) at 0", lambda x: np.where(x != 0, 1.0 / x, 0.0), (0.0,),
          (nan,), "lax.select_n transpose: 0 * -inf in the unselected branch", fwd=(0.0,)),
    Point("where(x < 1, x, exp(2000 x)) at 0.5",
          lambda x: np.where(x < 1.0, x, np.exp(2000.0 * x)), (0.5,), (nan,),
          "lax.select_n transpose: 0 * inf in the unselected branch", fwd=(1.0,)),
    Point("nan_to_num at inf", lambda x: np.nan_to_num(x * 1.0), (inf,), (0.0,),
          "jnp.nan_to_num: where(isinf(x), big, x) selects a constant"),
]


def _ids(p: Point) -> str:
    return p.id


def _close(actual: Any, expected: float, what: str) -> None:
    actual = np.asarray(actual)
    assert actual.shape == (), f"{what}: shape {actual.shape}"
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0, equal_nan=True,
                               err_msg=what)


def _args(p: Point) -> tuple:
    return tuple(np.float64(a) for a in p.at)


@pytest.mark.parametrize("p", POINTS, ids=_ids)
def test_reverse(p: Point) -> None:
    args = _args(p)
    gs = ff.grad(p.fun, argnums=tuple(range(len(args))))(*args)
    for i, (g, e) in enumerate(zip(gs, p.grad)):
        _close(g, e, f"{p.id}: grad wrt argument {i} (JAX: {p.source})")


def _partial(p: Point, i: int) -> Callable[[Any], Any]:
    """``fun`` of argument ``i`` alone, the others constants.

    A partial derivative: an explicit zero tangent for another argument would multiply
    that argument's infinite partial (0 * inf = nan), in JAX as here.
    """
    args = _args(p)
    return lambda a: p.fun(*args[:i], a, *args[i + 1:])


@pytest.mark.parametrize("p", POINTS, ids=_ids)
def test_forward(p: Point) -> None:
    args = _args(p)
    for i, e in enumerate(p.fwd or p.grad):
        _, t = ff.jvp(_partial(p, i), (args[i],), (np.float64(1.0),))
        _close(t, e, f"{p.id}: jvp along argument {i} (JAX: {p.source})")


@pytest.mark.parametrize("p", [p for p in POINTS if p.second is not None], ids=_ids)
def test_second_order(p: Point) -> None:
    x, f = _args(p)[0], _partial(p, 0)
    first = ff.grad(f)
    _close(ff.grad(first)(x), p.second, f"{p.id}: grad of grad ({p.source})")
    _close(ff.jvp(first, (x,), (1.0,))[1], p.second, f"{p.id}: jvp of grad ({p.source})")
    _close(ff.grad(lambda a: ff.jvp(f, (a,), (1.0,))[1])(x), p.second,
           f"{p.id}: grad of jvp ({p.source})")
    _close(ff.jvp(lambda a: ff.jvp(f, (a,), (1.0,))[1], (x,), (1.0,))[1], p.second,
           f"{p.id}: jvp of jvp ({p.source})")


# -- the cases of issue 13, as a user meets them --------------------------------------------
def test_polynomial_basis_at_zero() -> None:
    # JAX: lax.pow with an integer exponent array: select(y == 0, 0, y * x**(y - 1)).
    basis = lambda x: np.sum(x[:, None] ** np.arange(4) * np.array([1.0, 2.0, 3.0, 4.0]))
    x = np.array([0.0, 1.0])
    np.testing.assert_array_equal(ff.grad(basis)(x), [2.0, 2.0 + 6.0 + 12.0])
    _, t = ff.jvp(basis, (x,), (np.ones(2),))
    assert t == 2.0 + 2.0 + 6.0 + 12.0
    np.testing.assert_array_equal(ff.hessian(basis)(x), np.diag([6.0, 6.0 + 24.0]))


def test_float_exponent_array_with_zero() -> None:
    # JAX's integer rule (and its pre-2023 float rule): d/dx x**0 = 0, also at x == 0.
    y = np.array([0.0, 1.0, 2.0, 0.5, -1.0])
    g = ff.grad(lambda x: np.sum(x ** y))(np.zeros(5))
    np.testing.assert_array_equal(g, [0.0, 1.0, 0.0, inf, -inf])
    gy = ff.grad(lambda y: np.sum(np.zeros(5) ** y))(y)
    np.testing.assert_array_equal(gy, [0.0, 0.0, 0.0, 0.0, nan])


def test_higher_orders_of_powers_at_zero() -> None:
    g = ff.grad
    assert g(g(g(lambda a: a ** 2)))(0.0) == 0.0  # JAX: 0
    assert g(g(g(lambda a: a ** 3)))(0.0) == 6.0
    np.testing.assert_array_equal(ff.hessian(lambda x: np.sum(x ** 1))(np.zeros(2)),
                                  np.zeros((2, 2)))
    np.testing.assert_array_equal(ff.hessian(lambda x: np.sum(x ** 2))(np.zeros(2)),
                                  2 * np.eye(2))


def test_special_points_under_vmap() -> None:
    xs = np.array([0.0, -0.0, 1.0])
    np.testing.assert_array_equal(ff.vmap(ff.grad(lambda x: x ** 0 + x ** 1 + np.abs(x)))(xs),
                                  [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(
        ff.vmap(ff.grad(lambda x, y: np.hypot(x, y), argnums=(0, 1)))(np.zeros(2), np.zeros(2)),
        (np.full(2, 0.5), np.full(2, 0.5)))


def test_float32_kept_at_special_points() -> None:
    x = np.zeros(3, np.float32)
    for f in (lambda x: x ** 0, lambda x: x ** 2, np.abs, lambda x: np.hypot(x, x),
              lambda x: np.copysign(x, 1.0), np.sinc):
        g = ff.grad(lambda x, f=f: np.sum(f(x)))(x)
        assert g.dtype == np.float32


# -- complex special points ------------------------------------------------------------------
def test_complex_abs_and_sign_at_zero() -> None:
    # JAX: abs JVP for complex x is real(g * conj(x) / replace_zero(|x|)): 0 at 0.
    z = np.complex128(0)
    assert ff.grad(np.abs)(z) == 0
    assert ff.jvp(np.abs, (z,), (np.complex128(1 + 1j),))[1] == 0
    assert ff.jvp(np.sign, (z,), (np.complex128(1 + 1j),))[1] == 0
    # angle = arctan2(imag, real): nan at 0, as JAX's atan2 rule gives at (0, 0).
    assert np.isnan(ff.grad(np.angle)(z))
