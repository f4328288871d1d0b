"""Reductions: ``sum``, ``prod``, ``max``, ``min`` and ``cumsum`` are primitives; the rest compose.

Parameters are normalised before ``bind``: ``axis`` is ``None`` or a tuple of
non-negative ints (a single non-negative int for the scans and ``arg*``
functions), so rules never handle negative or scalar axes. ``mean``, ``var``,
``std``, ``ptp`` and ``average`` are Python compositions; ``cumprod`` is a
log-depth scan of multiplications, exact at zeros to every order; ``sort`` is
a gather with the (constant) ``argsort`` permutation.
"""
from __future__ import annotations

import math

import builtins
import operator
from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from .common import is_tracer, move_bdim, ndim, norm_axis, shape

__all__ = ["sum", "mean", "prod", "max", "min", "amax", "amin", "var", "std", "cumsum",
           "cumprod", "argmax", "argmin", "all", "any", "sort", "argsort", "ptp", "average"]

NO_OUT = ("np.{name}(..., out=...) is not supported on traced values: arrays are values "
          "inside a transform. Drop out= and use the result.")
UNSUPPORTED = ("np.{name}(..., {kw}=...) is not supported by funcflux; apply the reduction "
               "without it (e.g. mask the input with np.where first).")


def _no_out(name: str, out: Any) -> None:
    if out is not None:
        raise TypeError(NO_OUT.format(name=name))


def _no_where(name: str, where: Any) -> None:
    if where is not True:
        raise TypeError(UNSUPPORTED.format(name=name, kw="where"))


def _arr(a: Any) -> Any:
    """Tracers and arrays pass through; lists and Python numbers become arrays (constants)."""
    return a if is_tracer(a) or hasattr(a, "shape") else np.asarray(a)


def _one_axis(axis: Any, nd: int) -> int:
    """A single axis as a non-negative int (``AxisError`` when out of range)."""
    try:
        a = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer or None here, got {axis!r}") from None
    return norm_axis(a, nd)[0]


def _count(s: tuple, axis: tuple | None) -> int:
    return math.prod(s) if axis is None else math.prod([s[i] for i in axis])


def _expand_back(ct: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    """``ct`` of a reduction, reshaped so that it broadcasts against ``x``."""
    if keepdims:
        return ct
    if axis is None:
        s = (1,) * ndim(x)
    else:
        ls = list(shape(x))
        for a in axis:
            ls[a] = 1
        s = tuple(ls)
    # reshape_p directly: the shape is known to fit (this runs in every reduction's rules)
    return ct if shape(ct) == s else fnp._shape.reshape_p(ct, shape=s)


def _reduce_batch(p: Any) -> Any:
    """Batching rule of a reduction ``p(x, axis=, keepdims=)``: batch axis first, axes shifted."""
    def rule(args: list, dims: list, axis: tuple | None, keepdims: bool) -> tuple:
        x = move_bdim(args[0], dims[0], 0)
        nd = ndim(x) - 1
        ax = tuple(range(1, nd + 1)) if axis is None else tuple(a + 1 for a in axis)
        return p(x, axis=ax, keepdims=keepdims), 0
    return rule


def _reduction(name: str, **kw: Any) -> Any:
    """A primitive ``name(x, axis=, keepdims=)`` computed by the array module's ``name``."""
    def impl(x: Any, axis: Any, keepdims: bool) -> Any:
        method = getattr(x, name, None)  # ndarray/CuPy methods skip NumPy's dispatch layer
        if method is not None:
            return method(axis=axis, keepdims=keepdims)
        return getattr(array_module(x), name)(x, axis=axis, keepdims=keepdims)
    p = primitive(name, impl, **kw)
    p.def_batch(_reduce_batch(p))
    return p


def _float(x: Any) -> Any:
    return fnp.common_dtype(x)


# -- sum -------------------------------------------------------------------------------
sum_p = _reduction("sum")
def _sum_transpose(ct: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    ct = _expand_back(ct, x, axis, keepdims)
    return ct if shape(ct) == shape(x) else fnp._shape.broadcast_to_p(ct, shape=shape(x))


sum_p.def_linear(_sum_transpose)


# -- mean: a primitive for floating inputs (a loss's last step: one op forward and back,
# where sum / count costs two and a broadcast); integer inputs use the composition below.
def _mean_impl(x: Any, axis: tuple | None, keepdims: bool) -> Any:
    n = _count(shape(x), axis)
    method = getattr(x, "sum", None)
    total = method(axis=axis, keepdims=keepdims) if method is not None else \
        array_module(x).sum(x, axis=axis, keepdims=keepdims)
    return total / n if n else total * np.nan


def _mean_transpose(ct: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    n = _count(shape(x), axis)
    ct = ct / n if n else ct * np.nan
    if axis is None and type(x) is np.ndarray and isinstance(ct, (np.ndarray, np.generic)):
        # The mean of a whole array (a loss), on NumPy: the cotangent filled in directly
        # when small (a per-example loss vector), a read-only broadcast view when large.
        if n <= 4096:
            out = np.empty(x.shape, ct.dtype)
            out[...] = ct  # a 0-d cotangent, or all ones in shape with keepdims
            return out
        return fnp._shape._broadcast_to_impl(np.asarray(ct).reshape((1,) * x.ndim), x.shape)
    return _sum_transpose(ct, ans, x, axis, keepdims)


mean_p = primitive("mean", _mean_impl)
mean_p.def_linear(_mean_transpose)
mean_p.def_batch(_reduce_batch(mean_p))


@fnp.implements(np.sum)
def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
        initial: Any = None, where: Any = True) -> Any:
    """``np.sum``; ``dtype`` casts first, ``out`` must be ``None``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(x, axis=-1)[0])(np.ones((2, 3)))
    array([[1., 1., 1.],
           [0., 0., 0.]])
    """
    _no_out("sum", out)
    a = _arr(a)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    if where is not True:
        a = fnp.where(where, a, 0)
    r = sum_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))
    return r if initial is None else r + initial


# -- max / min: one rule serves both -------------------------------------------------------
def _extremum_mask(ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    full = _expand_back(ans, x, axis, keepdims)
    return fnp.astype(fnp.equal(x, full), _float(x))


def _extremum_vjp(ct: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    # The cotangent is shared equally among tied extrema (as JAX does).
    # Three full-size passes (compare, count, scale); the division happens at the reduced size.
    mask = fnp.equal(x, _expand_back(ans, x, axis, keepdims))
    count = fnp.astype(sum_p(mask, axis=axis, keepdims=True), _float(x))
    return mask * (_expand_back(ct, x, axis, keepdims) / count)


def _extremum_jvp(t: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    mask = _extremum_mask(ans, x, axis, keepdims)
    return sum_p(t * mask, axis=axis, keepdims=keepdims) / sum_p(mask, axis=axis, keepdims=keepdims)


# min is a primitive rather than -max(-x): negation breaks unsigned ints and bools.
max_p = _reduction("max").def_vjp(_extremum_vjp).def_jvp(_extremum_jvp)
min_p = _reduction("min").def_vjp(_extremum_vjp).def_jvp(_extremum_jvp)


def _extremum(p: Any, combine: Any, name: str, a: Any, axis: Any, out: Any, keepdims: Any,
              initial: Any, where: Any) -> Any:
    _no_out(name, out)
    _no_where(name, where)
    a = _arr(a)
    r = p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))
    return r if initial is None else combine(r, initial)


@fnp.implements(np.max, np.amax)
def max(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = None,
        where: Any = True) -> Any:
    """``np.max``; tied maxima share the gradient equally.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.max(x))(np.array([1.0, 3.0, 3.0]))
    array([0. , 0.5, 0.5])
    """
    return _extremum(max_p, fnp.maximum, "max", a, axis, out, keepdims, initial, where)


@fnp.implements(np.min, np.amin)
def min(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = None,
        where: Any = True) -> Any:
    """``np.min``; tied minima share the gradient equally."""
    return _extremum(min_p, fnp.minimum, "min", a, axis, out, keepdims, initial, where)


amax, amin = max, min


@fnp.implements(np.ptp)
def ptp(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    """``np.ptp``: ``max - min``."""
    _no_out("ptp", out)
    return max(a, axis, keepdims=keepdims) - min(a, axis, keepdims=keepdims)


# -- prod ------------------------------------------------------------------------------
def _prod_partials(ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    """``d prod / d x_i``: the product of the other entries, exact with any number of zeros.

    With no zero in a reduced slice it is ``prod / x_i``. With exactly one zero, every
    other entry gets ``prod / x_i = 0`` and the zero gets the product of the rest; with
    two or more zeros every partial is 0. All three are exact, and so is the second
    derivative with at most one zero per slice; with two or more zeros the mixed second
    derivative between two zero entries (the product of the remaining entries) is
    reported as 0.
    """
    zero = fnp.equal(x, 0)
    safe = fnp.where(zero, 1.0, x)
    n_zero = sum_p(fnp.astype(zero, _float(x)), axis=axis, keepdims=True)
    rest = prod_p(safe, axis=axis, keepdims=True) * fnp.astype(fnp.equal(n_zero, 1), _float(x))
    return fnp.where(zero, rest, _expand_back(ans, x, axis, keepdims) / safe)


prod_p = _reduction("prod")
prod_p.def_vjp(lambda ct, ans, x, axis, keepdims:
               _expand_back(ct, x, axis, keepdims) * _prod_partials(ans, x, axis, keepdims))
prod_p.def_jvp(lambda t, ans, x, axis, keepdims:
               sum_p(t * _prod_partials(ans, x, axis, keepdims), axis=axis, keepdims=keepdims))


@fnp.implements(np.prod)
def prod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
         initial: Any = None, where: Any = True) -> Any:
    """``np.prod``; the gradient is exact where entries are zero (see ``_prod_partials``).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.prod(x))(np.array([2.0, 0.0, 3.0]))
    array([0., 6., 0.])
    """
    _no_out("prod", out)
    a = _arr(a)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    if where is not True:
        a = fnp.where(where, a, 1)
    r = prod_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))
    return r if initial is None else r * initial


# -- mean, var, std, average (compositions) -------------------------------------------------
@fnp.implements(np.mean)
def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
         *, where: Any = True) -> Any:
    """``np.mean``, as ``sum / count``."""
    _no_out("mean", out)
    _no_where("mean", where)
    a = _arr(a)
    ax = norm_axis(axis, ndim(a))
    if dtype is None and getattr(getattr(a, "dtype", None), "kind", "") == "f":
        return mean_p(a, axis=ax, keepdims=bool(keepdims))
    n = _count(shape(a), ax)
    total = sum(a, axis=ax, dtype=dtype, keepdims=keepdims)
    if dtype is None and getattr(total.dtype, "kind", "f") not in "fc":
        total = fnp.astype(total, np.float64)  # NumPy averages integers in float64
    return total / n if n else total * np.nan


@fnp.implements(np.var)
def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
        keepdims: bool = False, *, where: Any = True, mean: Any = None,
        correction: Any = None) -> Any:
    """``np.var``: the mean squared deviation, divided by ``count - ddof``."""
    _no_out("var", out)
    _no_where("var", where)
    if mean is not None:
        raise TypeError(UNSUPPORTED.format(name="var", kw="mean"))
    if correction is not None:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    a = _arr(a)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    elif np.dtype(fnp.common_dtype(a)) != np.dtype(a.dtype):
        a = fnp.astype(a, np.float64)
    ax = norm_axis(axis, ndim(a))
    n = _count(shape(a), ax)
    c = a - globals()["mean"](a, axis=ax, keepdims=True)
    return sum(c * c, axis=ax, keepdims=keepdims) / builtins.max(n - ddof, 0)


@fnp.implements(np.std)
def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
        keepdims: bool = False, *, where: Any = True, mean: Any = None,
        correction: Any = None) -> Any:
    """``np.std``: ``sqrt(var)`` (its gradient is infinite where the variance is 0)."""
    return fnp.sqrt(var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                        correction=correction))


@fnp.implements(np.average)
def average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *,
            keepdims: bool = False) -> Any:
    """``np.average``: ``sum(a * w) / sum(w)``; differentiable in ``a`` and ``weights``."""
    a = _arr(a)
    ax = norm_axis(axis, ndim(a))
    if weights is None:
        avg = mean(a, axis=ax, keepdims=keepdims)
        scl = fnp.ones_like(avg) * _count(shape(a), ax)
    else:
        w = _arr(weights)
        if shape(w) != shape(a):
            if ax is None:
                raise TypeError("Axis must be specified when shapes of a and weights differ.")
            if ndim(w) != 1 or len(ax) != 1:
                raise TypeError("1D weights expected when shapes of a and weights differ.")
            if shape(w)[0] != shape(a)[ax[0]]:
                raise ValueError("Length of weights not compatible with specified axis.")
            w = fnp.reshape(w, tuple(shape(w)[0] if i == ax[0] else 1 for i in range(ndim(a))))
            w = fnp.broadcast_to(w, shape(a))
        scl = sum(w, axis=ax, keepdims=keepdims)
        avg = sum(a * w, axis=ax, keepdims=keepdims) / scl
    if returned:
        if shape(scl) != shape(avg):
            scl = fnp.broadcast_to(scl, shape(avg))
        return avg, scl
    return avg


# -- scans ---------------------------------------------------------------------------------
def _flip(x: Any, axis: int) -> Any:
    return fnp.getitem(x, (slice(None),) * axis + (slice(None, None, -1),))


cumsum_p = primitive("cumsum", lambda x, axis: array_module(x).cumsum(x, axis=axis))
# The transpose of a running sum is a running sum from the other end.
cumsum_p.def_linear(lambda ct, ans, x, axis: _flip(cumsum_p(_flip(ct, axis), axis=axis), axis))
cumsum_p.def_batch(lambda args, dims, axis: (
    cumsum_p(move_bdim(args[0], dims[0], 0), axis=axis + 1), 0))


def _scan_args(name: str, a: Any, axis: Any, dtype: Any, out: Any) -> tuple:
    _no_out(name, out)
    a = _arr(a)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    if axis is None:
        return fnp.reshape(a, (-1,)), 0
    return a, _one_axis(axis, ndim(a))


@fnp.implements(np.cumsum)
def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """``np.cumsum``; ``axis=None`` flattens."""
    a, axis = _scan_args("cumsum", a, axis, dtype, out)
    return cumsum_p(a, axis=axis)


@fnp.implements(np.cumprod)
def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """``np.cumprod``; ``axis=None`` flattens.

    On traced values it is a scan of ``ceil(log2 n)`` elementwise products
    (Hillis and Steele), so every derivative is exact, zeros included.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.cumprod(x)[-1])(np.array([2.0, 0.0, 3.0]))
    array([0., 6., 0.])
    """
    a, axis = _scan_args("cumprod", a, axis, dtype, out)
    if not is_tracer(a):
        return array_module(a).cumprod(a, axis=axis)
    n = shape(a)[axis]
    lead = (slice(None),) * axis
    step = 1
    while step < n:
        head = fnp.getitem(a, lead + (slice(0, step),))
        tail = fnp.getitem(a, lead + (slice(step, None),)) * fnp.getitem(a, lead + (slice(0, n - step),))
        a = fnp.concatenate([head, tail], axis=axis)
        step *= 2
    return a


# -- index-valued and boolean reductions (no derivative) ---------------------------------------
def _arg_reduction(name: str) -> Any:
    p = primitive(name, lambda x, axis, keepdims: getattr(array_module(x), name)(
        x, axis=axis, keepdims=keepdims), nondiff=True)

    def batch(args: list, dims: list, axis: int | None, keepdims: bool) -> tuple:
        x = move_bdim(args[0], dims[0], 0)
        if axis is not None:
            return p(x, axis=axis + 1, keepdims=keepdims), 0
        s = shape(x)
        r = p(fnp.reshape(x, (s[0], -1)), axis=1, keepdims=False)
        return (fnp.reshape(r, (s[0],) + (1,) * (len(s) - 1)) if keepdims else r), 0

    p.def_batch(batch)
    return p


argmax_p = _arg_reduction("argmax")
argmin_p = _arg_reduction("argmin")


@fnp.implements(np.argmax)
def argmax(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
    """``np.argmax`` (an integer array: no derivative)."""
    _no_out("argmax", out)
    a = _arr(a)
    return argmax_p(a, axis=None if axis is None else _one_axis(axis, ndim(a)),
                    keepdims=bool(keepdims))


@fnp.implements(np.argmin)
def argmin(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
    """``np.argmin`` (an integer array: no derivative)."""
    _no_out("argmin", out)
    a = _arr(a)
    return argmin_p(a, axis=None if axis is None else _one_axis(axis, ndim(a)),
                    keepdims=bool(keepdims))


all_p = _reduction("all", nondiff=True)
any_p = _reduction("any", nondiff=True)


@fnp.implements(np.all)
def all(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *,
        where: Any = True) -> Any:
    """``np.all`` (boolean: no derivative)."""
    _no_out("all", out)
    _no_where("all", where)
    a = _arr(a)
    return all_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))


@fnp.implements(np.any)
def any(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *,
        where: Any = True) -> Any:
    """``np.any`` (boolean: no derivative)."""
    _no_out("any", out)
    _no_where("any", where)
    a = _arr(a)
    return any_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))


# -- sorting -----------------------------------------------------------------------------------
def _argsort_impl(x: Any, axis: int, kind: Any) -> Any:
    return array_module(x).argsort(x, axis=axis, kind=kind)


argsort_p = primitive("argsort", _argsort_impl, nondiff=True)
argsort_p.def_batch(lambda args, dims, axis, kind: (
    argsort_p(move_bdim(args[0], dims[0], 0), axis=axis + 1, kind=kind), 0))


def _sort_args(name: str, a: Any, axis: Any, kind: Any, order: Any, stable: Any) -> tuple:
    if order is not None:
        raise TypeError(UNSUPPORTED.format(name=name, kw="order"))
    if stable:
        kind = "stable"
    a = _arr(a)
    if axis is None:
        return fnp.reshape(a, (-1,)), 0, kind
    return a, _one_axis(axis, ndim(a)), kind


@fnp.implements(np.argsort)
def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
            stable: Any = None) -> Any:
    """``np.argsort`` (integer indices: no derivative); ``axis=None`` flattens."""
    a, axis, kind = _sort_args("argsort", a, axis, kind, order, stable)
    return argsort_p(a, axis=axis, kind=kind)


@fnp.implements(np.sort)
def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
         stable: Any = None) -> Any:
    """``np.sort``, differentiable: a gather of ``a`` by its (constant) ``argsort``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sort(x)[0])(np.array([3.0, 1.0, 2.0]))
    array([0., 1., 0.])
    """
    a, axis, kind = _sort_args("sort", a, axis, kind, order, stable)
    if not is_tracer(a):
        return array_module(a).sort(a, axis=axis, kind=kind)
    # A stable permutation makes ties deterministic: the first of equal values goes first.
    idx = argsort_p(a, axis=axis, kind="stable")
    return fnp.take_along_axis(a, idx, axis=axis)
