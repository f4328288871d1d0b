"""Elementwise primitives: arithmetic, exponentials, trigonometry, comparisons, ``where``.

Most rules are one line: a unary primitive is declared with its derivative
``d(ans)/dx`` as a function of ``(ans, x)``, a binary one with both partials
``(ans, x, y)``; ``unbroadcast`` undoes broadcasting in the VJP and every
primitive batches with ``elementwise_batch``. A partial may also be a constant
``1``, ``-1`` or ``0`` (the cotangent passes through, negated, or not at all),
which saves a multiplication in ``add``, ``subtract`` and friends.

Each NumPy ufunc is one primitive, so it keeps NumPy's exact values and its
dtype rules for every input type. Python scalars mixed with arrays follow NEP 50:
they take the array's dtype, so ``x * 3`` and ``2.0 ** x`` stay float32, and every
rule keeps float32 values, cotangents and tangents float32.

The NumPy surface (``numpy/_elementwise.py`` beside ``ops/``) registers these
primitives as NumPy's ufuncs and holds NumPy's signatures and compositions
(``clip``, ``sinc``, ``fix``, ``float_power``, ``deg2rad``...). Here, beside the
primitives, are the binders the rules of every family call: ``where(c, x, y)``,
``conj``, ``real``, ``imag``, ``sign``, ``clip(x, lo, hi)``, ``zeros_like``,
``ones_like``, ``stop_gradient`` and ``common_dtype``.

Complex values follow JAX's convention: a JVP is the real-linear tangent map
and a VJP its transpose under ``<a, b> = Re sum(a * b)`` (no conjugates). A
holomorphic ``f`` therefore has ``jvp(t) = t f'(z)`` and ``vjp(ct) = ct f'(z)``,
which is why the one-line rules serve real and complex inputs alike; ``abs``,
``real``, ``imag`` and ``conj`` (not holomorphic) have their own.
A real input whose cotangent comes out complex (``x * 1j``) takes its real part
(``unbroadcast`` and ``astype`` do it), as JAX casts cotangents to the primal's dtype.

Derivatives at special points (``x ** 0`` at 0, ``abs`` and ``hypot`` at 0,
ties of ``maximum`` and ``fmax``, ``logaddexp`` at infinities) are JAX's values;
``tests/ops/test_special_points.py`` records each with its source.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import Primitive, primitive
from ..core.trace import Tracer
from .common import dtype
from .base import elementwise_batch, unbroadcast
from .base import astype, astype_p, is_complex


# -- the two helpers that declare almost every primitive -------------------------------
def _ufunc_impl(name: str) -> Callable[..., Any]:
    npf = getattr(np, name)

    def impl(*xs: Any) -> Any:
        xp = array_module(*xs)
        return (npf if xp is np else getattr(xp, name))(*xs)
    impl.__name__ = name
    impl.direct = lambda xp: getattr(xp, name)  # type: ignore[attr-defined]  # see below
    return impl


# ``impl.direct(xp)``: the function ``impl`` calls on arrays of module ``xp``, for code
# that knows the module ahead (a staged program, funcflux.transforms.staging): one call
# instead of two, and no module lookup per call. Same values by construction.


def _fit(t: Any, ans: Any) -> Any:
    """A pass-through tangent in the output's dtype (``float32 + float64`` is float64)."""
    d = ans.dtype
    return t if t.dtype == d else astype_p(t, dtype=d)


_SCALARS = (int, float, complex)


def _typed(v: Any, ans: Any) -> Any:
    # A Python scalar argument takes the result's dtype, as NEP 50 gives it in the impl;
    # rules that build arrays from it (where, log) would otherwise make float64.
    return ans.dtype.type(v) if type(v) in _SCALARS else v


def unary(name: str, deriv: Callable[[Any, Any], Any] | int | None, *, ufunc: Any = None,
          nondiff: bool = False) -> Primitive:
    """An elementwise primitive ``f(x)`` with ``d f/dx = deriv(ans, x)`` (or ``-1``)."""
    ufunc = getattr(np, name) if ufunc is None else ufunc
    p = primitive(name, _ufunc_impl(ufunc.__name__), nondiff=nondiff)
    if callable(deriv):
        p.def_vjp(lambda ct, ans, x: ct * deriv(ans, x))
        p.def_jvp(lambda t, ans, x: t * deriv(ans, x))
    elif deriv == -1:
        p.def_vjp(lambda ct, ans, x: -ct)
        p.def_jvp(lambda t, ans, x: -t)
    p.def_batch(elementwise_batch(p))
    return p


def _binary_rules(d: Any, i: int) -> tuple[Callable, Callable]:
    """VJP and JVP rules of argument ``i`` from its partial ``d`` (callable, 1, -1 or 0)."""
    if callable(d):
        def partial(ans: Any, x: Any, y: Any) -> Any:
            return d(ans, _typed(x, ans), _typed(y, ans))
        if i == 0:
            return (lambda ct, ans, x, y: unbroadcast(ct * partial(ans, x, y), x),
                    lambda t, ans, x, y: t * partial(ans, x, y))
        return (lambda ct, ans, x, y: unbroadcast(ct * partial(ans, x, y), y),
                lambda t, ans, x, y: t * partial(ans, x, y))
    if d == 0:
        none = lambda g, ans, x, y: None  # noqa: E731  (no contribution)
        return none, none
    if d == 1:
        vjp = (lambda ct, ans, x, y: unbroadcast(ct, x)) if i == 0 else \
            (lambda ct, ans, x, y: unbroadcast(ct, y))
        return vjp, lambda t, ans, x, y: _fit(t, ans)
    if d == -1:
        vjp = (lambda ct, ans, x, y: unbroadcast(-ct, x)) if i == 0 else \
            (lambda ct, ans, x, y: unbroadcast(-ct, y))
        return vjp, lambda t, ans, x, y: _fit(-t, ans)
    raise ValueError(f"a partial must be a function, 1, -1 or 0, got {d!r}")


def binary(name: str, dx: Any, dy: Any, *, ufunc: Any = None,
           nondiff: bool = False) -> Primitive:
    """A broadcasting primitive ``f(x, y)`` with partials ``dx(ans, x, y)``, ``dy(...)``.

    A partial may be a constant ``1``, ``-1`` or ``0`` instead of a function.
    """
    ufunc = getattr(np, name) if ufunc is None else ufunc
    p = primitive(name, _ufunc_impl(ufunc.__name__), nondiff=nondiff)
    if not nondiff:
        (vx, jx), (vy, jy) = _binary_rules(dx, 0), _binary_rules(dy, 1)
        p.def_vjp(vx, vy)
        p.def_jvp(jx, jy)
    p.def_batch(elementwise_batch(p))
    return p


# -- arithmetic -------------------------------------------------------------------------
add = binary("add", 1, 1)
subtract = binary("subtract", 1, -1)
multiply = binary("multiply", lambda ans, x, y: y, lambda ans, x, y: x)
negative = unary("negative", -1)
true_divide = binary("true_divide", lambda ans, x, y: 1.0 / y, lambda ans, x, y: -ans / y,
                     ufunc=np.divide)
divide = true_divide


def _power_dx(ans: Any, x: Any, y: Any) -> Any:
    # d(x**y)/dx = y x**(y-1), and 0 where y == 0 (x**0 is constant), as JAX's pow and
    # integer_pow rules give: the exponent y - 1 is replaced by 1 there, so no 0 * inf
    # appears at x == 0 at any order (grad(grad(grad(lambda a: a**2)))(0.) == 0).
    if isinstance(y, (int, float, complex, np.generic)):  # constant exponent: x ** 2, x ** 0
        return zeros_like_p(ans) if y == 0 else y * x ** (y - 1)
    return y * x ** where_p(equal(y, 0), _one(y), y - 1)


def _one(v: Any) -> Any:
    return dtype(v).type(1)


def _power_dy(ans: Any, x: Any, y: Any) -> Any:
    # d(x**y)/dy = log(x) x**y, taken as 0 where x == 0 (JAX: log of x with 0 replaced by 1).
    zero = equal(x, 0)
    safe = where_p(zero, ans.dtype.type(1), x)
    return ans * log(safe)


power = binary("power", _power_dx, _power_dy)
pow = power

# Primitive rather than 1/x: NumPy's reciprocal keeps integer dtypes (1/2 -> 0).
reciprocal = unary("reciprocal", lambda ans, x: -square(ans))
square = unary("square", lambda ans, x: 2.0 * x)
sqrt = unary("sqrt", lambda ans, x: 0.5 / ans)
cbrt = unary("cbrt", lambda ans, x: 1.0 / (3.0 * square(ans)))
sign_p = unary("sign", None, nondiff=True)


def sign(x: Any) -> Any:
    """The sign of ``x``; for complex ``z`` it is ``z / |z|`` (0 at 0), differentiable there."""
    return csign_p(x) if dtype(x).kind == "c" and isinstance(x, Tracer) else sign_p(x)


def _csign_r(x: Any) -> Any:
    r = abs(x)
    return where_p(equal(r, 0), _one(r), r)


# Complex sign s = z / |z| is a primitive of its own (NumPy's exact values; the real one
# stays nondiff): its tangent i s Im(conj(s) t) / |z| is 0 at z == 0 because s is.
csign_p = primitive("csign", _ufunc_impl("sign"))
csign_p.def_jvp(lambda t, ans, x: 1j * ans * imag(conj(ans) * t) / _csign_r(x))
csign_p.def_vjp(lambda ct, ans, x: -1j * conj(ans) * real(1j * ct * ans) / _csign_r(x))
csign_p.def_batch(elementwise_batch(csign_p))


def _abs_slope(x: Any) -> Any:
    # JAX's real abs rule: +1 where x >= 0 (so 1 at 0, and at -0.0), -1 elsewhere.
    d = dtype(x).type
    return where_p(greater_equal(x, 0), d(1), d(-1))


def _abs_dz(ans: Any, x: Any) -> Any:
    # Complex: d|z| pairs with conj(z) / |z|, taken as 0 at z == 0 (JAX's abs rule).
    return conj(x) / where_p(equal(ans, 0), _one(ans), ans)


abs = primitive("absolute", _ufunc_impl("absolute"))
abs.def_vjp(lambda ct, ans, x: ct * (_abs_dz(ans, x) if dtype(x).kind == "c" else _abs_slope(x)))
abs.def_jvp(lambda t, ans, x: real(t * _abs_dz(ans, x)) if dtype(x).kind == "c"
            else t * _abs_slope(x))
abs.def_batch(elementwise_batch(abs))
absolute = abs

# copysign(x, y) = |x| with y's sign bit: d/dx = abs'(x) (+1 at 0, as JAX's abs) times
# that sign, as JAX's copysign (a where on signbit(y) between -|x| and |x|) gives.
copysign = binary("copysign", lambda ans, x, y: where_p(signbit(y), -_abs_slope(x),
                                                        _abs_slope(x)), 0)

floor_divide = binary("floor_divide", None, None, nondiff=True)
trunc = unary("trunc", None, nondiff=True)
# remainder and fmod are primitives: NumPy computes them exactly (via C fmod), which
# x - floor(x / y) * y is not; the quotient in the y-partial is piecewise constant.
remainder = binary("remainder", 1, lambda ans, x, y: -floor_divide(x, y))
mod = remainder
fmod = binary("fmod", 1, lambda ans, x, y: -trunc(x / y))

# -- exponentials and logarithms ------------------------------------------------------------
_LN2 = math.log(2.0)
_LN10 = math.log(10.0)

exp = unary("exp", lambda ans, x: ans)
exp2 = unary("exp2", lambda ans, x: ans * _LN2)  # exact at integers, unlike exp(x ln 2)
expm1 = unary("expm1", lambda ans, x: ans + 1.0)  # accurate near 0, as are log1p, logaddexp
log = unary("log", lambda ans, x: 1.0 / x)
log2 = unary("log2", lambda ans, x: 1.0 / (x * _LN2))  # exact at powers of 2
log10 = unary("log10", lambda ans, x: 1.0 / (x * _LN10))  # exact at powers of 10
log1p = unary("log1p", lambda ans, x: 1.0 / (x + 1.0))


def _softmax_weight(e: Callable) -> Callable:
    """``e(x - ans)``: the weight of ``x`` in ``logaddexp``; 1 where ``x`` is ``+inf``.

    At ``x == +inf`` JAX replaces both ``x`` and ``ans`` by 0 (weight ``e(0) = 1``);
    at ``(-inf, -inf)`` both it and we give NaN (``-inf - -inf``).
    """
    def weight(ans: Any, x: Any, y: Any) -> Any:
        inf = equal(x, np.inf)
        return e(where_p(inf, dtype(ans).type(0), x - ans))
    return weight


def _swap(d: Callable) -> Callable:
    return lambda ans, x, y: d(ans, y, x)


logaddexp = binary("logaddexp", _softmax_weight(exp), _swap(_softmax_weight(exp)))
logaddexp2 = binary("logaddexp2", _softmax_weight(exp2), _swap(_softmax_weight(exp2)))

# -- trigonometry -----------------------------------------------------------------------------
sin = unary("sin", lambda ans, x: cos(x))
cos = unary("cos", lambda ans, x: -sin(x))
tan = unary("tan", lambda ans, x: 1.0 + square(ans))
arcsin = unary("arcsin", lambda ans, x: 1.0 / sqrt(1.0 - square(x)))
arccos = unary("arccos", lambda ans, x: -1.0 / sqrt(1.0 - square(x)))
arctan = unary("arctan", lambda ans, x: 1.0 / (1.0 + square(x)))
# At (0, 0) both partials are 0 / 0 = NaN, as JAX's atan2 rule gives.
arctan2 = binary("arctan2", lambda ans, y, x: x / (square(x) + square(y)),
                 lambda ans, y, x: -y / (square(x) + square(y)))


def _hypot_d(ans: Any, x: Any, y: Any) -> Any:
    # x / hypot(x, y), and 0.5 at (0, 0): JAX's hypot is a where on max(|x|, |y|) == 0,
    # whose tie splits the derivative in halves (and abs' is +1 at 0).
    zero = equal(ans, 0)
    return where_p(zero, dtype(ans).type(0.5), x / where_p(zero, _one(ans), ans))


hypot = binary("hypot", _hypot_d, _swap(_hypot_d))
asin, acos, atan, atan2 = arcsin, arccos, arctan, arctan2


# -- hyperbolic ------------------------------------------------------------------------------
sinh = unary("sinh", lambda ans, x: cosh(x))
cosh = unary("cosh", lambda ans, x: sinh(x))
tanh = unary("tanh", lambda ans, x: 1.0 - square(ans))
arcsinh = unary("arcsinh", lambda ans, x: 1.0 / sqrt(square(x) + 1.0))
# sqrt(x - 1) sqrt(x + 1), not sqrt(x^2 - 1): the same for real x, and the right branch
# for complex x (the principal arccosh's cut is (-inf, 1]).
arccosh = unary("arccosh", lambda ans, x: 1.0 / (sqrt(x - 1.0) * sqrt(x + 1.0)))
arctanh = unary("arctanh", lambda ans, x: 1.0 / (1.0 - square(x)))
asinh, acosh, atanh = arcsinh, arccosh, arctanh


# -- extrema ----------------------------------------------------------------------------------
def _extremum_mask_impl(ans: Any, a: Any, b: Any) -> Any:
    xp = array_module(ans, a, b)
    won = ans == a
    tie = a == b
    if not xp.any(tie):  # the common case: a bool mask, two comparisons and a check
        return won
    won = won.astype(getattr(ans, "dtype", np.float64))
    return won - tie * won.dtype.type(0.5)  # a tie is also a win: 1 - 0.5


# One piecewise-constant primitive for the mask (for speed: a relu written as np.maximum
# costs two comparisons in its backward pass, as hand-written NumPy does, instead of six
# full-size passes of comparisons, casts and arithmetic).
extremum_mask = primitive("extremum_mask", _extremum_mask_impl, nondiff=True)
extremum_mask.def_batch(elementwise_batch(extremum_mask))
# Its dtype depends on the values (bool without ties); a shape rule says the float one, which
# gives the same dtype as the only use, a factor of the cotangent.
extremum_mask.def_abstract(lambda ans, a, b: abstract.ShapeDtypeStruct(
    np.broadcast_shapes(*[np.shape(v) for v in (ans, a, b)]), ans.dtype))


def _share(ans: Any, a: Any, b: Any) -> Any:
    """1 where ``a`` is the result, 0.5 where ``a`` ties with ``b``, else 0.

    A bool mask when nothing ties (multiplying a cotangent by it keeps the
    cotangent's dtype). Comparing with ``ans`` rather than ``b`` also routes the
    derivative of ``fmax(nan, y) = y`` to ``y``.
    """
    return extremum_mask(ans, a, b)


maximum = binary("maximum", lambda ans, x, y: _share(ans, x, y),
                 lambda ans, x, y: _share(ans, y, x))
minimum = binary("minimum", lambda ans, x, y: _share(ans, x, y),
                 lambda ans, x, y: _share(ans, y, x))
# fmax and fmin ignore NaNs, and a tie goes wholly to y: JAX composes them as
# where((x > y) | isnan(y), x, y), so the derivative follows whichever is returned.
fmax = binary("fmax", lambda ans, x, y: not_equal(ans, y), lambda ans, x, y: equal(ans, y))
fmin = binary("fmin", lambda ans, x, y: not_equal(ans, y), lambda ans, x, y: equal(ans, y))


def clip(x: Any, lo: Any = None, hi: Any = None) -> Any:
    """``minimum(maximum(x, lo), hi)``; a ``None`` bound is skipped."""
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


# -- piecewise constant: no derivative, but they batch ---------------------------------------
greater = binary("greater", None, None, nondiff=True)
greater_equal = binary("greater_equal", None, None, nondiff=True)
less = binary("less", None, None, nondiff=True)
less_equal = binary("less_equal", None, None, nondiff=True)
equal = binary("equal", None, None, nondiff=True)
not_equal = binary("not_equal", None, None, nondiff=True)
logical_and = binary("logical_and", None, None, nondiff=True)
logical_or = binary("logical_or", None, None, nondiff=True)
logical_xor = binary("logical_xor", None, None, nondiff=True)
logical_not = unary("logical_not", None, nondiff=True)
# ndarray & | ^ ~ reach a traced operand as these ufuncs (masks: mask & (x > 0)).
bitwise_and = binary("bitwise_and", None, None, nondiff=True)
bitwise_or = binary("bitwise_or", None, None, nondiff=True)
bitwise_xor = binary("bitwise_xor", None, None, nondiff=True)
invert = unary("invert", None, nondiff=True)
isfinite = unary("isfinite", None, nondiff=True)
isnan = unary("isnan", None, nondiff=True)
isinf = unary("isinf", None, nondiff=True)
signbit = unary("signbit", None, nondiff=True)
floor = unary("floor", None, nondiff=True)
ceil = unary("ceil", None, nondiff=True)
rint = unary("rint", None, nondiff=True)
heaviside = binary("heaviside", None, None, nondiff=True)

# A primitive (not rint(x * 10**d) / 10**d) so integer inputs and negative decimals
# keep NumPy's exact semantics.
round_p = primitive("round", lambda x, decimals: array_module(x).round(x, decimals=decimals),
                    nondiff=True)
round_p.def_batch(elementwise_batch(round_p))


# -- where ---------------------------------------------------------------------------------
where_p = primitive("where", _ufunc_impl("where"))
where_p.def_vjp(lambda ct, ans, c, x, y: None,  # the condition is piecewise constant
                lambda ct, ans, c, x, y: unbroadcast(where_p(c, ct, 0.0), x),
                lambda ct, ans, c, x, y: unbroadcast(where_p(c, 0.0, ct), y))
where_p.def_jvp(lambda t, ans, c, x, y: None,
                lambda t, ans, c, x, y: _fit(where_p(c, t, 0.0), ans),
                lambda t, ans, c, x, y: _fit(where_p(c, 0.0, t), ans))
where_p.def_batch(elementwise_batch(where_p))


def where(condition: Any, x: Any, y: Any) -> Any:
    """``x`` where ``condition`` holds, else ``y`` (broadcast together)."""
    return where_p(condition, x, y)


# -- complex numbers ------------------------------------------------------------------------
def _real_impl(x: Any) -> Any:
    return array_module(x).real(x)


def _imag_impl(x: Any) -> Any:
    return array_module(x).imag(x)


# real, imag and conj are linear over the reals; their transposes under Re sum(a * b):
# real's takes a real ct to the complex ct (ct + 0j), imag's to -1j ct, conj's is conj.
real_p = primitive("real", _real_impl)
real_p.def_vjp(lambda ct, ans, x: astype_p(ct, dtype=x.dtype))
real_p.def_jvp(lambda t, ans, x: real_p(t))
real_p.def_batch(elementwise_batch(real_p))
imag_p = primitive("imag", _imag_impl)
imag_p.def_vjp(lambda ct, ans, x: _fit(multiply(ct, -1j), x))
imag_p.def_jvp(lambda t, ans, x: imag_p(t))
imag_p.def_batch(elementwise_batch(imag_p))
conj_p = primitive("conjugate", _ufunc_impl("conjugate"))
conj_p.def_vjp(lambda ct, ans, x: conj_p(ct))
conj_p.def_jvp(lambda t, ans, x: conj_p(t))
conj_p.def_batch(elementwise_batch(conj_p))


def conj(x: Any) -> Any:
    """The complex conjugate of ``x``; ``x`` itself when it is real."""
    return conj_p(x) if is_complex(x) else x


conjugate = conj


def real(x: Any) -> Any:
    """The real part of ``x``; ``x`` itself when it is real."""
    return real_p(x) if is_complex(x) else x


def imag(x: Any) -> Any:
    """The imaginary part of ``x``; zeros (a constant) when it is real."""
    return imag_p(x) if is_complex(x) else zeros_like_p(x)


# -- creation, casting, stopping --------------------------------------------------------
def _like(name: str, fill: str) -> Primitive:
    def impl(x: Any) -> Any:
        return getattr(array_module(x), fill)(getattr(x, "shape", ()), dtype=dtype(x))
    # The output depends on the input's shape and dtype only: a staged program computes
    # it once, as a constant (funcflux.transforms.staging).
    impl.shape_only = True  # type: ignore[attr-defined]
    p = primitive(name, impl, nondiff=True)
    p.def_batch(lambda args, dims: (p(args[0]), dims[0]))
    return p


ones_like_p = _like("ones_like", "ones")
zeros_like_p = _like("zeros_like", "zeros")


def ones_like(x: Any, dtype: Any = None) -> Any:
    """Ones of ``x``'s shape, in ``x``'s dtype or ``dtype``: a constant."""
    out = ones_like_p(x)
    return out if dtype is None else astype(out, dtype)


def zeros_like(x: Any, dtype: Any = None) -> Any:
    """Zeros of ``x``'s shape, in ``x``'s dtype or ``dtype``: a constant."""
    out = zeros_like_p(x)
    return out if dtype is None else astype(out, dtype)


stop_gradient_p = primitive("stop_gradient", lambda x: x, nondiff=True)
stop_gradient_p.def_batch(lambda args, dims: (stop_gradient_p(args[0]), dims[0]))


def stop_gradient(x: Any) -> Any:
    """The array ``x`` as a constant: no derivative flows through it, at any order."""
    return stop_gradient_p(x)


def common_dtype(x: Any) -> Any:
    """The floating dtype that ``x`` computes in (float64 for ints and bools)."""
    d = getattr(x, "dtype", None)
    if d is None:
        d = np.result_type(x)
    return d if np.dtype(d).kind in "fc" else np.dtype(np.float64)


# -- shape rules (eval_shape): every primitive of this family is elementwise --------------------
for _p in list(globals().values()):
    if isinstance(_p, Primitive) and _p.abstract is None:
        _p.def_abstract(abstract.elementwise(_p.impl))
del _p
