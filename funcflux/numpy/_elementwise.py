"""NumPy's elementwise functions on traced values: the ufuncs and their compositions.

Each ufunc is a primitive of ``funcflux.ops.elementwise`` itself, registered here for
``__array_ufunc__`` (no Python layer between ``np.tanh(x)`` and its primitive). The
functions NumPy composes (``clip``, ``sinc``, ``fix``, ``float_power``, ``deg2rad``...)
are compositions here too, with NumPy's signatures, ``out=`` refusals and error texts.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Callable

import numpy as np

from ._indexing import nonzero as _nonzero

from ..core.backend import array_module
from ..core.dispatch import implements, implements_ufunc
from ..core.trace import Tracer
from ..ops.base import astype, is_complex  # astype: exported as it is (it binds directly)
from ..ops.common import dtype, no_out
from ..ops.elementwise import (
    abs, absolute, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, bitwise_and,
    bitwise_or, bitwise_xor, cbrt, ceil, common_dtype, conj_p, copysign, cos, cosh, csign_p,
    equal, exp, exp2, expm1, floor, floor_divide, fmax, fmin, fmod, greater, greater_equal,
    heaviside, hypot, imag_p, invert, isfinite, isinf, isnan, less, less_equal, log, log1p,
    log2, log10, logaddexp, logaddexp2, logical_and, logical_not, logical_or, logical_xor,
    maximum, minimum, multiply, negative, not_equal, ones_like_p, power, real_p, reciprocal,
    remainder, rint, round_p, sign_p, signbit, sin, sinh, sqrt, square, stop_gradient_p,
    subtract, tan, tanh, trunc, true_divide, where_p, zeros_like_p,
)

__all__ = [
    # arithmetic
    "add", "subtract", "multiply", "true_divide", "divide", "negative", "positive", "power",
    "pow", "float_power", "reciprocal", "square", "sqrt", "cbrt", "abs", "absolute", "fabs",
    "sign", "copysign", "remainder", "mod", "fmod", "floor_divide", "divmod",
    # exponentials and logarithms
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "logaddexp", "logaddexp2",
    # trigonometry
    "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "asin", "acos", "atan",
    "atan2", "hypot", "deg2rad", "rad2deg", "degrees", "radians", "sinc",
    # hyperbolic
    "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "asinh", "acosh", "atanh",
    # extrema
    "maximum", "minimum", "fmax", "fmin", "clip", "where",
    # piecewise constant
    "floor", "ceil", "rint", "trunc", "fix", "round", "around", "heaviside",
    "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not",
    "bitwise_and", "bitwise_or", "bitwise_xor", "invert",
    "isfinite", "isnan", "isinf", "signbit", "nan_to_num",
    # complex numbers
    "conj", "conjugate", "real", "imag", "angle", "real_if_close",
    # creation, casting, stopping
    "ones_like", "zeros_like", "astype", "stop_gradient", "common_dtype",
]

divide = true_divide
pow = power
mod = remainder
asin, acos, atan, atan2 = arcsin, arccos, arctan, arctan2
asinh, acosh, atanh = arcsinh, arccosh, arctanh

# The ufuncs that are one primitive each: the primitive is the implementation.
for _p in (add, subtract, multiply, negative, true_divide, power, reciprocal, square, sqrt,
           cbrt, absolute, copysign, floor_divide, trunc, remainder, fmod,
           exp, exp2, expm1, log, log2, log10, log1p, logaddexp, logaddexp2,
           sin, cos, tan, arcsin, arccos, arctan, arctan2, hypot,
           sinh, cosh, tanh, arcsinh, arccosh, arctanh,
           maximum, minimum, fmax, fmin,
           greater, greater_equal, less, less_equal, equal, not_equal,
           logical_and, logical_or, logical_xor, logical_not,
           bitwise_and, bitwise_or, bitwise_xor, invert,
           isfinite, isnan, isinf, signbit, floor, ceil, rint, heaviside):
    implements_ufunc(getattr(np, _p.name), _p)
del _p

_SCALARS = (int, float, complex)


def _floating(ufunc: Any, x: Any) -> Any:
    """``x`` cast to the float dtype ``ufunc`` computes in, when it is not a float already."""
    d = dtype(x)
    if d.kind == "f":
        return x
    # NumPy's own TypeError where the ufunc has no loop (fabs and deg2rad of complex).
    out = ufunc.resolve_dtypes((d, None))[-1]
    return x if out == d else astype(x, out)


# -- arithmetic -------------------------------------------------------------------------
def positive(x: Any) -> Any:
    """``np.positive``: the value itself (values are immutable, so no copy is needed)."""
    return x if isinstance(x, Tracer) else array_module(x).positive(x)


implements_ufunc(np.positive, positive)


def float_power(x: Any, y: Any) -> Any:
    """``np.float_power``: ``power`` computed in (at least) float64, as NumPy does."""
    return power(_at_least_f64(x), _at_least_f64(y))


def _at_least_f64(v: Any) -> Any:
    if type(v) is complex:
        return v
    if type(v) in _SCALARS:
        return float(v)
    d = dtype(v)
    if d.kind == "c":
        return v if d.itemsize >= 16 else astype(v, np.complex128)
    return v if d.kind == "f" and d.itemsize >= 8 else astype(v, np.float64)


implements_ufunc(np.float_power, float_power)


def sign(x: Any) -> Any:
    """``np.sign``; for complex ``z`` it is ``z / |z|`` (0 at 0), differentiable there.

    >>> import numpy as np, funcflux as ff
    >>> ff.jvp(np.sign, (np.array([1j, -2.0]),), (np.array([1.0, 1j]),))[1]
    array([1.-0.j , 0.+0.5j])
    """
    return csign_p(x) if dtype(x).kind == "c" and isinstance(x, Tracer) else sign_p(x)


implements_ufunc(np.sign, sign)


def fabs(x: Any) -> Any:
    """``np.fabs``: ``absolute`` in the float dtype NumPy picks for integer inputs."""
    return absolute(_floating(np.fabs, x))


implements_ufunc(np.fabs, fabs)


def divmod(x: Any, y: Any) -> tuple:
    """``np.divmod``: ``(floor_divide(x, y), remainder(x, y))``."""
    return floor_divide(x, y), remainder(x, y)


implements_ufunc(np.divmod, divmod)


# -- trigonometry -----------------------------------------------------------------------
def _scaled(ufunc: Any, factor: float) -> Callable[[Any], Any]:
    # NumPy computes deg2rad and friends as one multiplication by a constant.
    def scale(x: Any) -> Any:
        return multiply(_floating(ufunc, x), factor)
    scale.__name__ = ufunc.__name__
    scale.__doc__ = f"``np.{ufunc.__name__}``: ``x * {factor!r}``."
    implements_ufunc(ufunc, scale)
    return scale


deg2rad = _scaled(np.deg2rad, math.pi / 180.0)
radians = _scaled(np.radians, math.pi / 180.0)
rad2deg = _scaled(np.rad2deg, 180.0 / math.pi)
degrees = _scaled(np.degrees, 180.0 / math.pi)


@implements(np.sinc)
def sinc(x: Any) -> Any:
    """``np.sinc``: ``sin(pi x) / (pi x)``, composed the way NumPy composes it.

    >>> import numpy as np, funcflux as ff
    >>> float(ff.grad(lambda x: np.sinc(x))(0.5))  # doctest: +ELLIPSIS
    -1.2732...
    """
    zero = equal(x, 0)
    y = multiply(math.pi, where_p(zero, 1.0e-20, x))
    # At x == 0 exactly, the Taylor polynomial of sin(z)/z (value 1, as NumPy's): its
    # derivatives there are sinc's to order 9, as JAX's Maclaurin rule gives
    # (grad(grad(np.sinc))(0.) == -pi**2 / 3), where the quotient's would be 0.
    z2 = square(multiply(math.pi, x))
    taylor = 1.0 + z2 * (-1.0 / 6 + z2 * (1.0 / 120 + z2 * (-1.0 / 5040 + z2 / 362880)))
    return where_p(zero, taylor, sin(y) / y)


# -- extrema ----------------------------------------------------------------------------
_NOVALUE: Any = getattr(np, "_NoValue", object())


@implements(np.clip)
def clip(a: Any, a_min: Any = _NOVALUE, a_max: Any = _NOVALUE, out: Any = None, *,
         min: Any = _NOVALUE, max: Any = _NOVALUE, **kwargs: Any) -> Any:
    """``np.clip`` as ``minimum(maximum(a, a_min), a_max)``; a ``None`` bound is skipped.

    The derivative is 1 inside the bounds, 0 outside (and 0.5 exactly at a bound).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.clip(x, -1.0, None)))(np.array([-2.0, 3.0]))
    array([0., 1.])
    """
    no_out("clip", out)
    if kwargs:
        raise TypeError(f"np.clip on traced values does not support {', '.join(kwargs)}=.")
    if min is not _NOVALUE:
        if a_min is not _NOVALUE:
            raise ValueError("np.clip: pass either a_min or min, not both.")
        a_min = min
    if max is not _NOVALUE:
        if a_max is not _NOVALUE:
            raise ValueError("np.clip: pass either a_max or max, not both.")
        a_max = max
    if a_min is not _NOVALUE and a_min is not None:
        a = maximum(a, a_min)
    if a_max is not _NOVALUE and a_max is not None:
        a = minimum(a, a_max)
    return a


@implements(np.where)
def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    """``np.where(condition, x, y)``; the one-argument form is ``nonzero``."""
    if x is None and y is None:
        return _nonzero(condition)
    if x is None or y is None:
        raise ValueError("np.where: either both or neither of x and y should be given.")
    return where_p(condition, x, y)


# -- piecewise constant -----------------------------------------------------------------
@implements(np.round, np.around)
def round(a: Any, decimals: int = 0, out: Any = None) -> Any:
    """``np.round``: to ``decimals`` places, half to even; its derivative is zero.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.round(x, 1) * x))(np.array([0.26, 1.0]))
    array([0.3, 1. ])
    """
    no_out("round", out)
    return round_p(a, decimals=operator.index(decimals))


around = round


@implements(np.fix)
def fix(x: Any, out: Any = None) -> Any:
    """``np.fix``: round toward zero (``trunc``); its derivative is zero."""
    no_out("fix", out)
    return trunc(x)


@implements(np.nan_to_num)
def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None,
               neginf: Any = None) -> Any:
    """``np.nan_to_num`` as ``where``s: the derivative is 1 at finite entries, 0 elsewhere."""
    d = dtype(x)
    if d.kind == "c":  # NumPy treats the real and imaginary parts separately
        parts = [nan_to_num(p, copy, nan, posinf, neginf) for p in (real(x), imag(x))]
        return parts[0] + parts[1] * d.type(1j)
    if d.kind != "f":
        return x
    big = np.finfo(d).max if posinf is None else posinf
    small = np.finfo(d).min if neginf is None else neginf
    x = where_p(isnan(x), d.type(nan), x)
    return where_p(isinf(x), where_p(signbit(x), d.type(small), d.type(big)), x)


# -- complex numbers --------------------------------------------------------------------
def conj(x: Any) -> Any:
    """``np.conj``: the complex conjugate; the value itself for real inputs.

    >>> import numpy as np, funcflux as ff
    >>> ff.jvp(np.conj, (np.array([1 + 2j]),), (np.array([1j]),))[1]
    array([0.-1.j])
    """
    return conj_p(x) if is_complex(x) else x


conjugate = conj
implements_ufunc(np.conjugate, conj)


@implements(np.real)
def real(val: Any) -> Any:
    """``np.real``: the real part; the value itself for real inputs.

    >>> import numpy as np, funcflux as ff
    >>> float(ff.grad(lambda x: np.real(np.exp(1j * x)))(0.3))  # -sin(0.3)
    -0.29552020666133955
    """
    return real_p(val) if is_complex(val) else val


@implements(np.imag)
def imag(val: Any) -> Any:
    """``np.imag``: the imaginary part; zeros (a constant) for real inputs.

    >>> import numpy as np, funcflux as ff
    >>> float(ff.grad(lambda x: np.imag(np.exp(1j * x)))(0.0))  # cos(0)
    1.0
    """
    return imag_p(val) if is_complex(val) else zeros_like(val)


REAL_IF_CLOSE = (
    "np.real_if_close on a traced complex array: whether the result is real or complex "
    "depends on the values (and under vmap would differ between examples), so it cannot "
    "be traced. Write np.real(z) where the imaginary part is known to be negligible, or "
    "keep z complex."
)


@implements(np.real_if_close)
def real_if_close(a: Any, tol: float = 100) -> Any:
    """``np.real_if_close``: the value itself for real inputs (its derivative is the identity).

    A traced complex input raises a ``TypeError``: the output dtype would depend on the
    values.

    >>> import numpy as np, funcflux as ff
    >>> float(ff.grad(lambda x: np.real_if_close(x) ** 2)(3.0))
    6.0
    """
    if is_complex(a):
        raise TypeError(REAL_IF_CLOSE)
    return a


@implements(np.angle)
def angle(z: Any, deg: bool = False) -> Any:
    """``np.angle``: ``arctan2(imag(z), real(z))``, in degrees with ``deg=True``.

    Its derivative is NaN at ``z == 0`` (``arctan2``'s at (0, 0), as in JAX).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda z: np.angle(z))(np.complex128(1j))  # d angle = Im(dz conj(z)) / |z|^2
    array(-1.-0.j)
    """
    a = arctan2(imag(z), real(z))
    return a * (180.0 / math.pi) if deg else a


# -- creation, casting, stopping --------------------------------------------------------
@implements(np.ones_like)
def ones_like(a: Any, dtype: Any = None) -> Any:
    out = ones_like_p(a)
    return out if dtype is None else astype(out, dtype)


@implements(np.zeros_like)
def zeros_like(a: Any, dtype: Any = None) -> Any:
    out = zeros_like_p(a)
    return out if dtype is None else astype(out, dtype)


def stop_gradient(x: Any) -> Any:
    """The array ``x`` as a constant: no derivative flows through it, at any order.

    ``ff.stop_gradient`` (funcflux.transforms.custom) takes whole pytrees.

    >>> import funcflux as ff, funcflux.numpy as fnp
    >>> float(ff.grad(lambda x: x * fnp.stop_gradient(x))(3.0))
    3.0
    """
    return stop_gradient_p(x)

