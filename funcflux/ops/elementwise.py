"""Elementwise primitives: arithmetic, exponentials, comparisons, ``where``.

Most rules are one line: a unary primitive is declared with its derivative
``d(ans)/dx`` as a function of ``(ans, x)``, a binary one with both partials
``(ans, x, y)``; ``unbroadcast`` undoes broadcasting in the VJP and every
primitive batches with ``elementwise_batch``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import Primitive, primitive
from .common import elementwise_batch, unbroadcast

__all__ = [
    "add", "subtract", "multiply", "true_divide", "divide", "negative", "power",
    "exp", "log", "tanh", "sin", "cos", "sqrt", "square", "maximum", "minimum",
    "abs", "absolute", "sign", "where", "greater", "greater_equal", "less", "less_equal",
    "equal", "not_equal", "logical_and", "logical_or", "logical_not", "isfinite", "isnan",
    "isinf", "floor", "ceil", "rint", "ones_like", "zeros_like", "astype", "stop_gradient",
    "floor_divide", "mod",
]


def _ufunc_impl(name: str) -> Callable[..., Any]:
    npf = getattr(np, name)

    def impl(*xs: Any) -> Any:
        xp = array_module(*xs)
        return (npf if xp is np else getattr(xp, name))(*xs)
    impl.__name__ = name
    return impl


def unary(name: str, deriv: Callable[[Any, Any], Any] | None, *, ufunc: Any = None,
          nondiff: bool = False) -> Primitive:
    """An elementwise primitive ``f(x)`` with ``d f/dx = deriv(ans, x)``."""
    ufunc = getattr(np, name) if ufunc is None else ufunc
    p = primitive(name, _ufunc_impl(ufunc.__name__), nondiff=nondiff)
    if deriv is not None:
        p.def_vjp(lambda ct, ans, x: ct * deriv(ans, x))
        p.def_jvp(lambda t, ans, x: t * deriv(ans, x))
    p.def_batch(elementwise_batch(p))
    fnp.implements_ufunc(ufunc, p)
    return p


def binary(name: str, dx: Callable | None, dy: Callable | None, *, ufunc: Any = None,
           nondiff: bool = False) -> Primitive:
    """A broadcasting primitive ``f(x, y)`` with partials ``dx(ans, x, y)``, ``dy(...)``."""
    ufunc = getattr(np, name) if ufunc is None else ufunc
    p = primitive(name, _ufunc_impl(ufunc.__name__), nondiff=nondiff)
    if not nondiff:
        p.def_vjp(lambda ct, ans, x, y: unbroadcast(ct * dx(ans, x, y), x),
                  lambda ct, ans, x, y: unbroadcast(ct * dy(ans, x, y), y))
        p.def_jvp(lambda t, ans, x, y: t * dx(ans, x, y),
                  lambda t, ans, x, y: t * dy(ans, x, y))
    p.def_batch(elementwise_batch(p))
    fnp.implements_ufunc(ufunc, p)
    return p


# -- linear arithmetic: the rules need no partials ----------------------------------
add = primitive("add", _ufunc_impl("add"))
add.def_linear(lambda ct, ans, x, y: unbroadcast(ct, x), lambda ct, ans, x, y: unbroadcast(ct, y))
add.jvps = (lambda t, ans, x, y: t, lambda t, ans, x, y: t)
add.def_batch(elementwise_batch(add))
fnp.implements_ufunc(np.add, add)

subtract = primitive("subtract", _ufunc_impl("subtract"))
subtract.def_vjp(lambda ct, ans, x, y: unbroadcast(ct, x), lambda ct, ans, x, y: unbroadcast(-ct, y))
subtract.def_jvp(lambda t, ans, x, y: t, lambda t, ans, x, y: -t)
subtract.def_batch(elementwise_batch(subtract))
fnp.implements_ufunc(np.subtract, subtract)

multiply = primitive("multiply", _ufunc_impl("multiply"))
multiply.def_linear(lambda ct, ans, x, y: unbroadcast(ct * y, x),
                    lambda ct, ans, x, y: unbroadcast(x * ct, y))
multiply.def_batch(elementwise_batch(multiply))
fnp.implements_ufunc(np.multiply, multiply)

negative = primitive("negative", _ufunc_impl("negative"))
negative.def_linear(lambda ct, ans, x: -ct)
negative.def_batch(elementwise_batch(negative))
fnp.implements_ufunc(np.negative, negative)

true_divide = binary("true_divide", lambda ans, x, y: 1.0 / y, lambda ans, x, y: -ans / y,
                     ufunc=np.divide)
divide = true_divide


def _power_dy(ans: Any, x: Any, y: Any) -> Any:
    # d(x**y)/dy = log(x) x**y, taken as 0 where x == 0 (the limit used by JAX and autograd).
    safe = where(equal(x, 0), 1.0, x)
    return where(equal(x, 0), 0.0, ans * log(safe))


power = binary("power", lambda ans, x, y: y * x ** (y - 1), _power_dy)

exp = unary("exp", lambda ans, x: ans)
log = unary("log", lambda ans, x: 1.0 / x)
tanh = unary("tanh", lambda ans, x: 1.0 - ans * ans)
sin = unary("sin", lambda ans, x: cos(x))
cos = unary("cos", lambda ans, x: -sin(x))
sqrt = unary("sqrt", lambda ans, x: 0.5 / ans)
square = unary("square", lambda ans, x: 2.0 * x)
sign = unary("sign", None, nondiff=True)
abs = unary("absolute", lambda ans, x: sign(x))
absolute = abs
maximum = binary("maximum", lambda ans, x, y: greater_equal(x, y) * 1.0 - equal(x, y) * 0.5,
                 lambda ans, x, y: less_equal(x, y) * 1.0 - equal(x, y) * 0.5)
minimum = binary("minimum", lambda ans, x, y: less_equal(x, y) * 1.0 - equal(x, y) * 0.5,
                 lambda ans, x, y: greater_equal(x, y) * 1.0 - equal(x, y) * 0.5)

# -- piecewise constant: no derivative, but they batch ---------------------------------
greater = binary("greater", None, None, nondiff=True)
greater_equal = binary("greater_equal", None, None, nondiff=True)
less = binary("less", None, None, nondiff=True)
less_equal = binary("less_equal", None, None, nondiff=True)
equal = binary("equal", None, None, nondiff=True)
not_equal = binary("not_equal", None, None, nondiff=True)
logical_and = binary("logical_and", None, None, nondiff=True)
logical_or = binary("logical_or", None, None, nondiff=True)
logical_not = unary("logical_not", None, nondiff=True)
isfinite = unary("isfinite", None, nondiff=True)
isnan = unary("isnan", None, nondiff=True)
isinf = unary("isinf", None, nondiff=True)
floor = unary("floor", None, nondiff=True)
ceil = unary("ceil", None, nondiff=True)
rint = unary("rint", None, nondiff=True)
floor_divide = binary("floor_divide", None, None, nondiff=True)


def mod(x: Any, y: Any) -> Any:
    """``x mod y`` with NumPy's sign convention; composed, so it differentiates."""
    return x - floor_divide(x, y) * y


fnp.implements_ufunc(np.remainder, mod)


# -- where ---------------------------------------------------------------------------
where_p = primitive("where", _ufunc_impl("where"))
where_p.def_vjp(None, lambda ct, ans, c, x, y: unbroadcast(where_p(c, ct, 0.0), x),
                lambda ct, ans, c, x, y: unbroadcast(where_p(c, 0.0, ct), y))
where_p.def_jvp(None, lambda t, ans, c, x, y: where_p(c, t, 0.0),
                lambda t, ans, c, x, y: where_p(c, 0.0, t))
where_p.def_batch(elementwise_batch(where_p))


@fnp.implements(np.where)
def where(condition: Any, x: Any = None, y: Any = None) -> Any:
    """``np.where(condition, x, y)``; the one-argument form is ``nonzero``."""
    if x is None and y is None:
        return fnp.nonzero(condition)
    return where_p(condition, x, y)


# -- creation, casting, stopping --------------------------------------------------------
def _like(name: str, fill: str) -> Primitive:
    p = primitive(name, lambda x: getattr(array_module(x), fill)(getattr(x, "shape", ()),
                                                                 dtype=getattr(x, "dtype", None) or np.result_type(x)),
                  nondiff=True)
    p.def_batch(lambda args, dims: (p(args[0]), dims[0]))
    return p


ones_like_p = _like("ones_like", "ones")
zeros_like_p = _like("zeros_like", "zeros")


@fnp.implements(np.ones_like)
def ones_like(a: Any, dtype: Any = None) -> Any:
    out = ones_like_p(a)
    return out if dtype is None else astype(out, dtype)


@fnp.implements(np.zeros_like)
def zeros_like(a: Any, dtype: Any = None) -> Any:
    out = zeros_like_p(a)
    return out if dtype is None else astype(out, dtype)


def _astype_impl(x: Any, dtype: Any) -> Any:
    return x.astype(dtype) if hasattr(x, "astype") else np.asarray(x, dtype=dtype)


astype_p = primitive("astype", _astype_impl)
astype_p.def_vjp(lambda ct, ans, x, dtype: astype_p(ct, dtype=x.dtype) if hasattr(x, "dtype") else ct)
astype_p.def_jvp(lambda t, ans, x, dtype: astype_p(t, dtype=dtype))
astype_p.def_batch(lambda args, dims, dtype: (astype_p(args[0], dtype=dtype), dims[0]))
astype_nondiff = primitive("astype_nondiff", _astype_impl, nondiff=True)
astype_nondiff.def_batch(lambda args, dims, dtype: (astype_nondiff(args[0], dtype=dtype), dims[0]))


def astype(x: Any, dtype: Any) -> Any:
    """``x.astype(dtype)``: differentiable between float dtypes, constant otherwise."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return astype_p(x, dtype=dtype)
    return astype_nondiff(x, dtype=dtype)


stop_gradient_p = primitive("stop_gradient", lambda x: x, nondiff=True)
stop_gradient_p.def_batch(lambda args, dims: (stop_gradient_p(args[0]), dims[0]))


def stop_gradient(x: Any) -> Any:
    """``x`` as a constant: no derivative flows through it, at any order.

    >>> import funcflux as ff
    >>> float(ff.grad(lambda x: x * ff.stop_gradient(x))(3.0))
    3.0
    """
    from .. import tree
    return tree.map(lambda v: stop_gradient_p(v), x)


def common_dtype(x: Any) -> Any:
    """The floating dtype that ``x`` computes in (float64 for ints and bools)."""
    d = getattr(x, "dtype", None)
    if d is None:
        d = np.result_type(x)
    return d if np.dtype(d).kind in "fc" else np.dtype(np.float64)


__all__.append("common_dtype")
