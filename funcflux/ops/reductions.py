"""Reductions: ``sum``, ``prod``, ``max``, ``min`` and ``cumsum`` are primitives; the rest compose.

Parameters are normalised before ``bind``: ``axis`` is ``None`` or a tuple of
non-negative ints (a single non-negative int for the scans and ``arg*``
functions), so rules never handle negative or scalar axes. ``mean``, ``var``,
``std``, ``ptp`` and ``average`` are Python compositions; ``cumprod`` is a
log-depth scan of multiplications, exact at zeros to every order, and ``prod``'s
partials are two such exclusive scans (no division); ``sort`` and ``partition``
are gathers with a (constant) ``argsort`` / ``argpartition`` permutation, and
``median``/``quantile``/``percentile`` interpolate between gathered order
statistics. The ``nan*`` reductions mask NaNs with ``where`` (derivative 0 there).
"""
from __future__ import annotations

import math

import builtins
import operator
from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.dispatch import implements
from ..core.backend import array_module
from ..core.primitive import primitive
from .common import is_tracer, ndim, no_out, norm_axis, shape
from .indexing import _xp
from .base import move_bdim, sum_p, sum_transpose, expand_back as _expand_back, reduce_batch as _reduce_batch
from .base import reduction as _reduction, broadcast_to_impl

__all__ = ["sum", "mean", "prod", "max", "min", "amax", "amin", "var", "std", "cumsum",
           "cumprod", "argmax", "argmin", "all", "any", "sort", "argsort", "ptp", "average",
           "partition", "argpartition", "quantile", "percentile", "median", "nansum",
           "nanmean", "nanvar", "nanstd", "nanmax", "nanmin"]

UNSUPPORTED = ("np.{name}(..., {kw}=...) is not supported by funcflux; apply the reduction "
               "without it (e.g. mask the input with np.where first).")

DDOF = ("np.var / np.std with ddof={ddof} on {n} entries (shape {shape}, axis={axis}) divide by "
        "count - ddof <= 0: NumPy returns inf or nan there, which has no derivative. Use a "
        "smaller ddof or reduce over more entries.")


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


def _float(x: Any) -> Any:
    return fnp.common_dtype(x)


# -- sum -------------------------------------------------------------------------------
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
    return sum_transpose(ct, ans, x, axis, keepdims)


def _mean_fast(ct: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    """``_mean_transpose`` on NumPy (def_fast_vjp): the mean of a whole array (a loss) gets
    its cotangent filled in directly when small (a per-example loss vector), a read-only
    broadcast view when large. A mean over some axes takes the general rule."""
    if axis is not None:
        return _mean_transpose(ct, ans, x, axis, keepdims)
    n = x.size
    ct = ct / n if n else ct * np.nan
    if n <= 4096:
        out = np.empty(x.shape, ct.dtype)
        out[...] = ct  # a 0-d cotangent, or all ones in shape with keepdims
        return out
    return broadcast_to_impl(np.asarray(ct).reshape((1,) * x.ndim), x.shape)


mean_p = primitive("mean", _mean_impl)
mean_p.def_linear(_mean_transpose)
mean_p.def_fast_vjp(_mean_fast)
mean_p.def_batch(_reduce_batch(mean_p))


@implements(np.sum)
def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
        initial: Any = None, where: Any = True) -> Any:
    """``np.sum``; ``dtype`` casts first, ``out`` must be ``None``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(x, axis=-1)[0])(np.ones((2, 3)))
    array([[1., 1., 1.],
           [0., 0., 0.]])
    """
    no_out("sum", out)
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
    no_out(name, out)
    _no_where(name, where)
    a = _arr(a)
    r = p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))
    return r if initial is None else combine(r, initial)


@implements(np.max, np.amax)
def max(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = None,
        where: Any = True) -> Any:
    """``np.max``; tied maxima share the gradient equally.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.max(x))(np.array([1.0, 3.0, 3.0]))
    array([0. , 0.5, 0.5])
    """
    return _extremum(max_p, fnp.maximum, "max", a, axis, out, keepdims, initial, where)


@implements(np.min, np.amin)
def min(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = None,
        where: Any = True) -> Any:
    """``np.min``; tied minima share the gradient equally."""
    return _extremum(min_p, fnp.minimum, "min", a, axis, out, keepdims, initial, where)


amax, amin = max, min


@implements(np.ptp)
def ptp(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    """``np.ptp``: ``max - min``."""
    no_out("ptp", out)
    return max(a, axis, keepdims=keepdims) - min(a, axis, keepdims=keepdims)


# -- prod ------------------------------------------------------------------------------
def _exclusive_cumprod(x: Any) -> Any:
    """Along the last axis: entry ``i`` is the product of entries ``0..i-1`` (1 for ``i = 0``)."""
    s = shape(x)
    one = fnp.ones_like(fnp.getitem(x, (Ellipsis, slice(0, 1))))
    if s[-1] == 1:
        return one
    return fnp.concatenate([one, cumprod(fnp.getitem(x, (Ellipsis, slice(0, -1))), axis=-1)],
                           axis=-1)


def _prod_partials(ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    """``d prod / d x_i``: the product of the entries before ``i`` times those after it.

    Both are exclusive running products (from the left and from the right), built
    from multiplications only (``cumprod`` is a scan of products). No division
    happens, so the partials are exact with any number of zeros, and, being a
    composition of primitives, so is every higher derivative (JAX's rule for
    ``reduce_prod`` takes the same two-sided route).
    """
    nd = ndim(x)
    ax = tuple(range(nd)) if axis is None else axis
    if not ax:
        return fnp.ones_like(x)
    keep = [d for d in range(nd) if d not in ax]
    perm = tuple(keep) + tuple(ax)
    xt = fnp.transpose(x, perm)
    st = shape(xt)
    lead = st[:len(keep)]
    n = math.prod(st[len(keep):])
    if n == 0:
        return fnp.zeros_like(x)
    flat = fnp.reshape(xt, lead + (n,))
    left = _exclusive_cumprod(flat)
    right = _flip(_exclusive_cumprod(_flip(flat, len(lead))), len(lead))
    out = fnp.reshape(left * right, st)
    return fnp.transpose(out, tuple(np.argsort(perm).tolist()))


prod_p = _reduction("prod")
prod_p.def_vjp(lambda ct, ans, x, axis, keepdims:
               _expand_back(ct, x, axis, keepdims) * _prod_partials(ans, x, axis, keepdims))
prod_p.def_jvp(lambda t, ans, x, axis, keepdims:
               sum_p(t * _prod_partials(ans, x, axis, keepdims), axis=axis, keepdims=keepdims))


@implements(np.prod)
def prod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
         initial: Any = None, where: Any = True) -> Any:
    """``np.prod``; derivatives of every order are exact where entries are zero.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.prod(x))(np.array([2.0, 0.0, 3.0]))
    array([0., 6., 0.])
    >>> ff.hessian(np.prod)(np.array([0.0, 0.0, 3.0]))[0]
    array([0., 3., 0.])
    """
    no_out("prod", out)
    a = _arr(a)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    if where is not True:
        a = fnp.where(where, a, 1)
    r = prod_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))
    return r if initial is None else r * initial


# -- mean, var, std, average (compositions) -------------------------------------------------
@implements(np.mean)
def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
         *, where: Any = True) -> Any:
    """``np.mean``, as ``sum / count``."""
    no_out("mean", out)
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


def _var_args(name: str, out: Any, where: Any, mean: Any, ddof: Any, correction: Any) -> Any:
    """The keyword checks ``var`` and ``nanvar`` share; returns the effective ``ddof``."""
    no_out(name, out)
    _no_where(name, where)
    if mean is not None:
        raise TypeError(UNSUPPORTED.format(name=name, kw="mean"))
    if correction is not None:
        if ddof != 0:
            raise ValueError("ddof and correction can't be provided simultaneously.")
        ddof = correction
    return ddof


@implements(np.var)
def var(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
        keepdims: bool = False, *, where: Any = True, mean: Any = None,
        correction: Any = None) -> Any:
    """``np.var``: the mean squared deviation, divided by ``count - ddof``."""
    ddof = _var_args("var", out, where, mean, ddof, correction)
    a = _arr(a)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    elif np.dtype(fnp.common_dtype(a)) != np.dtype(a.dtype):
        a = fnp.astype(a, np.float64)
    ax = norm_axis(axis, ndim(a))
    n = _count(shape(a), ax)
    if n - ddof <= 0 and is_tracer(a):
        raise ValueError(DDOF.format(ddof=ddof, n=n, shape=shape(a), axis=axis))
    c = a - globals()["mean"](a, axis=ax, keepdims=True)
    return sum(_abs2(c), axis=ax, keepdims=keepdims) / builtins.max(n - ddof, 0)


def _abs2(c: Any) -> Any:
    """``|c|**2``, smooth everywhere: ``c * c`` for real, ``re(c * conj(c))`` for complex."""
    return fnp.real(c * fnp.conj(c)) if c.dtype.kind == "c" else c * c


@implements(np.std)
def std(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
        keepdims: bool = False, *, where: Any = True, mean: Any = None,
        correction: Any = None) -> Any:
    """``np.std``: ``sqrt(var)``, with derivative 0 where the variance is exactly 0.

    Where all entries along the reduced axes are equal, ``std`` has a kink (like
    ``|x|`` at 0, it is a norm of the deviations): no derivative exists. funcflux
    gives the zero subgradient there, at every order, as PyTorch does
    (pytorch/pytorch#4320); JAX computes ``sqrt``'s derivative there and gives NaN
    (jax-ml/jax#11716). Elsewhere the value is ``var``'s derivative ``/ (2 std)``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(np.std)(np.array([1.0, 3.0]))
    array([-0.5,  0.5])
    >>> ff.grad(np.std)(np.array([2.0, 2.0]))
    array([0., 0.])
    """
    return _sqrt_kink(var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                          correction=correction))


def _sqrt_kink(v: Any) -> Any:
    """``sqrt(v)`` of a variance, with every derivative 0 where ``v == 0`` (see ``std``)."""
    if not is_tracer(v):
        return fnp.sqrt(v)
    # Two wheres: the outer picks 0 at a zero variance, the inner keeps sqrt's derivative
    # there finite (1 / (2 sqrt(1))), so the unused branch passes back 0, not 0 * inf.
    zero = fnp.equal(v, 0)
    return fnp.where(zero, fnp.zeros_like(v), fnp.sqrt(fnp.where(zero, fnp.ones_like(v), v)))


@implements(np.average)
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
    no_out(name, out)
    a = _arr(a)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    if axis is None:
        return fnp.reshape(a, (-1,)), 0
    return a, _one_axis(axis, ndim(a))


@implements(np.cumsum)
def cumsum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """``np.cumsum``; ``axis=None`` flattens."""
    a, axis = _scan_args("cumsum", a, axis, dtype, out)
    return cumsum_p(a, axis=axis)


@implements(np.cumprod)
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


@implements(np.argmax)
def argmax(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
    """``np.argmax`` (an integer array: no derivative)."""
    no_out("argmax", out)
    a = _arr(a)
    return argmax_p(a, axis=None if axis is None else _one_axis(axis, ndim(a)),
                    keepdims=bool(keepdims))


@implements(np.argmin)
def argmin(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
    """``np.argmin`` (an integer array: no derivative)."""
    no_out("argmin", out)
    a = _arr(a)
    return argmin_p(a, axis=None if axis is None else _one_axis(axis, ndim(a)),
                    keepdims=bool(keepdims))


all_p = _reduction("all", nondiff=True)
any_p = _reduction("any", nondiff=True)


@implements(np.all)
def all(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *,
        where: Any = True) -> Any:
    """``np.all`` (boolean: no derivative)."""
    no_out("all", out)
    _no_where("all", where)
    a = _arr(a)
    return all_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))


@implements(np.any)
def any(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, *,
        where: Any = True) -> Any:
    """``np.any`` (boolean: no derivative)."""
    no_out("any", out)
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


@implements(np.argsort)
def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
            stable: Any = None) -> Any:
    """``np.argsort`` (integer indices: no derivative); ``axis=None`` flattens."""
    a, axis, kind = _sort_args("argsort", a, axis, kind, order, stable)
    return argsort_p(a, axis=axis, kind=kind)


@implements(np.sort)
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


# -- partition: a gather by NumPy's own (constant) argpartition ------------------------------
def _argpartition_impl(x: Any, kth: tuple, axis: int) -> Any:
    return array_module(x).argpartition(x, kth, axis=axis)


argpartition_p = primitive("argpartition", _argpartition_impl, nondiff=True)
argpartition_p.def_batch(lambda args, dims, kth, axis: (
    argpartition_p(move_bdim(args[0], dims[0], 0), kth=kth, axis=axis + 1), 0))


def _kth(kth: Any, n: int) -> tuple:
    ks = (kth,) if np.ndim(kth) == 0 else tuple(np.ravel(kth))
    out = []
    for k in ks:
        k = operator.index(k)
        if not -n <= k < n:
            raise ValueError(f"kth(={k}) out of bounds ({n})")
        out.append(k % n)
    return tuple(out)


@implements(np.argpartition)
def argpartition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect",
                 order: Any = None) -> Any:
    """``np.argpartition`` (integer indices: no derivative); ``axis=None`` flattens."""
    a, axis, _ = _sort_args("argpartition", a, axis, kind, order, None)
    return argpartition_p(a, kth=_kth(kth, shape(a)[axis]), axis=axis)


@implements(np.partition)
def partition(a: Any, kth: Any, axis: Any = -1, kind: str = "introselect",
              order: Any = None) -> Any:
    """``np.partition``, differentiable: its values are a permutation of ``a``, as for ``sort``.

    The entries come out where NumPy puts them (a gather by ``np.argpartition``),
    and each carries the derivative of the input entry it came from.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.partition(x, 1)[1])(np.array([3.0, 1.0, 2.0]))
    array([0., 0., 1.])
    """
    a, axis, _ = _sort_args("partition", a, axis, kind, order, None)
    kth = _kth(kth, shape(a)[axis])
    if not is_tracer(a):
        return array_module(a).partition(a, kth, axis=axis)
    return fnp.take_along_axis(a, argpartition_p(a, kth=kth, axis=axis), axis=axis)


# -- quantiles: a sort and a linear interpolation between two order statistics ---------------
QUANTILE_METHOD = ("np.{name}(..., method={method!r}) is not supported by funcflux on traced "
                   "values; only method='linear' (NumPy's default) is.")


def _to_last(a: Any, axis: Any) -> tuple:
    """``a`` with the reduced axes merged into one last axis, and the kept axes' shape."""
    nd = ndim(a)
    ax = tuple(range(nd)) if axis is None else norm_axis(axis, nd)
    keep = [d for d in range(nd) if d not in ax]
    a = fnp.transpose(a, tuple(keep) + ax)
    kept = shape(a)[:len(keep)]
    return fnp.reshape(a, kept + (-1,)), kept, ax


def _quantile(name: str, a: Any, q: Any, axis: Any, out: Any, keepdims: bool, method: str,
              weights: Any) -> Any:
    no_out(name, out)
    if method != "linear":
        raise NotImplementedError(QUANTILE_METHOD.format(name=name, method=method))
    if weights is not None:
        raise TypeError(UNSUPPORTED.format(name=name, kw="weights"))
    a = _arr(a)
    if np.dtype(_float(a)) != a.dtype:
        a = fnp.astype(a, np.float64)
    if not (is_tracer(q) or hasattr(q, "shape")):
        q = _xp(a).asarray(q)  # a constant q on a's device
    flat, _, ax = _to_last(a, axis)
    n = shape(flat)[-1]
    srt = sort(flat, axis=-1)
    qs = shape(q)
    # Fractional positions into the sorted entries; floor and clip carry no derivative, so
    # the result is differentiable in a (through the gathered values) and in q (through t).
    pos = fnp.reshape(q, (-1,)) * (n - 1)
    lo = fnp.clip(fnp.floor(pos), 0, builtins.max(n - 1, 0))
    t = pos - lo
    lo = fnp.astype(lo, np.intp)
    hi = fnp.minimum(lo + 1, n - 1)
    below = fnp.take(srt, lo, axis=-1)
    above = fnp.take(srt, hi, axis=-1)
    t = fnp.astype(t, srt.dtype) if not is_tracer(q) else t
    # NumPy's linear interpolation, written from both ends for accuracy near t = 1.
    d = above - below
    r = fnp.where(t >= 0.5, above - d * (1 - t), below + d * t)
    # A NaN anywhere in a slice makes its quantile NaN (sort puts NaNs last).
    last = fnp.getitem(srt, (Ellipsis, slice(n - 1, n)))
    r = fnp.where(fnp.isnan(last), last, r)
    r = fnp.moveaxis(r, -1, 0)
    if keepdims:
        full = [1 if i in ax else s for i, s in enumerate(shape(a))]
        r = fnp.reshape(r, (shape(r)[0],) + tuple(full))
    return fnp.reshape(r, qs + shape(r)[1:])


def _check_q(q: Any, hi: float, what: str) -> None:
    if is_tracer(q):
        return  # a traced q is not inspected (under vmap its values are not known)
    if not hasattr(q, "shape"):
        q = np.asarray(q)
    if not bool(((0 <= q) & (q <= hi)).all()):
        raise ValueError(f"{what} must be in the range [0, {hi:g}]")


@implements(np.quantile)
def quantile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
             method: str = "linear", keepdims: bool = False, *, weights: Any = None,
             interpolation: Any = None) -> Any:
    """``np.quantile`` (``method='linear'``), differentiable in ``a`` and in ``q``.

    The derivative in ``a`` goes to the two order statistics the quantile lies
    between (weights ``1 - t`` and ``t``); ties share it as ``sort`` does. In ``q``
    it is the slope between them, ``(n - 1) * (above - below)``, taken from the
    right where ``q * (n - 1)`` is a whole number.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.quantile(x, 0.25))(np.array([4.0, 1.0, 3.0]))
    array([0. , 0.5, 0.5])
    """
    _check_q(q, 1.0, "Quantiles")
    return _quantile("quantile", a, q, axis, out, keepdims, interpolation or method, weights)


@implements(np.percentile)
def percentile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
               method: str = "linear", keepdims: bool = False, *, weights: Any = None,
               interpolation: Any = None) -> Any:
    """``np.percentile``: ``quantile(a, q / 100)``."""
    _check_q(q, 100.0, "Percentiles")
    q = q if is_tracer(q) or hasattr(q, "shape") else _xp(_arr(a)).asarray(q)
    return _quantile("percentile", a, q / 100, axis, out, keepdims,
                     interpolation or method, weights)


@implements(np.median)
def median(a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
           keepdims: bool = False) -> Any:
    """``np.median``: the mean of the middle one or two order statistics.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(np.median)(np.array([4.0, 1.0, 3.0, 2.0]))
    array([0. , 0. , 0.5, 0.5])
    """
    return _quantile("median", a, 0.5, axis, out, keepdims, "linear", None)


# -- NaN-ignoring reductions: NaN entries are masked out, so their derivative is 0 --------------
def _nan_mask(a: Any) -> Any:
    return fnp.isnan(a) if getattr(a.dtype, "kind", "") in "fc" else None


def _nan_count(keep: Any, ax: tuple | None, keepdims: bool, like: Any) -> Any:
    """How many entries ``keep`` marks, as a real float of ``like``'s precision."""
    real = np.finfo(like.dtype).dtype if like.dtype.kind in "fc" else np.dtype(np.float64)
    return sum_p(fnp.astype(keep, real), axis=ax, keepdims=keepdims)


@implements(np.nansum)
def nansum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
           initial: Any = None, where: Any = True) -> Any:
    """``np.nansum``: NaNs count as 0 (and get derivative 0)."""
    a = _arr(a)
    m = _nan_mask(a)
    if m is not None:
        a = fnp.where(m, fnp.zeros_like(a), a)
    return sum(a, axis, dtype, out, keepdims, initial, where)


def _safe_div(num: Any, cnt: Any) -> Any:
    """``num / cnt``, NaN (with derivative 0) where ``cnt <= 0``."""
    bad = fnp.less_equal(cnt, 0)
    q = num / fnp.where(bad, fnp.ones_like(cnt), cnt)
    return fnp.where(bad, q.dtype.type(np.nan), q)


@implements(np.nanmean)
def nanmean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
            *, where: Any = True) -> Any:
    """``np.nanmean``: the mean of the non-NaN entries (NaN for an all-NaN slice).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(np.nanmean)(np.array([1.0, np.nan, 3.0]))
    array([0.5, 0. , 0.5])
    """
    no_out("nanmean", out)
    _no_where("nanmean", where)
    a = _arr(a)
    m = _nan_mask(a)
    if m is None:
        return mean(a, axis, dtype, keepdims=keepdims)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    ax = norm_axis(axis, ndim(a))
    total = sum(fnp.where(m, fnp.zeros_like(a), a), axis=ax, keepdims=keepdims)
    cnt = _nan_count(fnp.logical_not(m), ax, keepdims, total)
    return _safe_div(total, cnt)


@implements(np.nanvar)
def nanvar(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
           keepdims: bool = False, *, where: Any = True, mean: Any = None,
           correction: Any = None) -> Any:
    """``np.nanvar``: the variance of the non-NaN entries (NaN where ``count <= ddof``)."""
    ddof = _var_args("nanvar", out, where, mean, ddof, correction)
    a = _arr(a)
    m = _nan_mask(a)
    if m is None:
        return var(a, axis, dtype, ddof=ddof, keepdims=keepdims)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    ax = norm_axis(axis, ndim(a))
    keep = fnp.logical_not(m)
    zero = fnp.zeros_like(a)
    cnt = _nan_count(keep, ax, True, a)
    avg = _safe_div(sum(fnp.where(m, zero, a), axis=ax, keepdims=True), cnt)
    c = fnp.where(m, zero, a - avg)
    v = sum(_abs2(c), axis=ax, keepdims=keepdims)
    return _safe_div(v, _nan_count(keep, ax, keepdims, v) - ddof)


@implements(np.nanstd)
def nanstd(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, ddof: Any = 0,
           keepdims: bool = False, *, where: Any = True, mean: Any = None,
           correction: Any = None) -> Any:
    """``np.nanstd``: ``sqrt(nanvar)``, with derivative 0 where it is 0 (as ``std``)."""
    return _sqrt_kink(nanvar(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean,
                             correction=correction))


def _nan_extremum(name: str, fn: Any, fill: float, a: Any, axis: Any, out: Any, keepdims: Any,
                  initial: Any, where: Any) -> Any:
    no_out(name, out)
    _no_where(name, where)
    a = _arr(a)
    m = _nan_mask(a)
    if m is None:
        return fn(a, axis, keepdims=keepdims, initial=initial)
    filled = fnp.where(m, a.dtype.type(fill), a)
    r = fn(filled, axis, keepdims=keepdims, initial=initial)
    ax = norm_axis(axis, ndim(a))
    none = fnp.logical_not(any_p(fnp.logical_not(m), axis=ax, keepdims=bool(keepdims)))
    # An all-NaN slice gives NaN, as NumPy does (it also warns).
    return fnp.where(none, r.dtype.type(np.nan), r)


@implements(np.nanmax)
def nanmax(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False,
           initial: Any = None, where: Any = True) -> Any:
    """``np.nanmax``: ``max`` ignoring NaNs; tied maxima share the gradient.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(np.nanmax)(np.array([1.0, np.nan, 3.0]))
    array([0., 0., 1.])
    """
    return _nan_extremum("nanmax", max, -np.inf, a, axis, out, keepdims, initial, where)


@implements(np.nanmin)
def nanmin(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False,
           initial: Any = None, where: Any = True) -> Any:
    """``np.nanmin``: ``min`` ignoring NaNs; tied minima share the gradient."""
    return _nan_extremum("nanmin", min, np.inf, a, axis, out, keepdims, initial, where)
