"""NumPy's reductions on traced values: ``sum``, ``mean``, ``max``... with NumPy's signatures.

Each function normalises NumPy's arguments (``axis``, ``dtype``, ``keepdims``,
``initial``; ``out=`` and ``where=`` refused with NumPy's texts) and binds the
primitives of ``funcflux.ops.reductions``; ``var``, ``std``, ``ptp``, ``average``,
``partition``, the quantiles and the ``nan*`` reductions are compositions of them.
"""
from __future__ import annotations

import builtins
import operator
from typing import Any

import numpy as np

from ..core.backend import array_module
from ..core.dispatch import implements
from ..ops.common import as_array as _arr, is_tracer, ndim, no_out, norm_axis, shape
from ..ops.base import astype, broadcast_to, moveaxis, one_axis, reshape, transpose
from ..ops.elementwise import (clip, common_dtype, conj, equal, floor, isnan, less_equal,
                               logical_not, maximum, minimum, ones_like, real, sqrt, where,
                               zeros_like)
from ..ops.indexing import _xp, getitem, take, take_along_axis
from ..ops.reductions import (_count, all_p, any_p, argmax_p, argmin_p, argpartition_p,
                              argsort_p, cumsum_p, max_p, mean_p, min_p, prod_p, sum_p)
from ..ops.reductions import cumprod as _cumprod, sort as _sort

__all__ = ["sum", "mean", "prod", "max", "min", "amax", "amin", "var", "std", "cumsum",
           "cumprod", "argmax", "argmin", "all", "any", "sort", "argsort", "ptp", "average",
           "partition", "argpartition", "quantile", "percentile", "median", "nansum",
           "nanmean", "nanvar", "nanstd", "nanmax", "nanmin"]

UNSUPPORTED = ("np.{name}(..., {kw}=...) is not supported by funcflux; apply the reduction "
               "without it (e.g. mask the input with np.where first).")

DDOF = ("np.var / np.std with ddof={ddof} on {n} entries (shape {shape}, axis={axis}) divide by "
        "count - ddof <= 0: NumPy returns inf or nan there, which has no derivative. Use a "
        "smaller ddof or reduce over more entries.")


_where = where  # the functions below take a parameter named where, which hides it


def _no_where(name: str, where: Any) -> None:
    if where is not True:
        raise TypeError(UNSUPPORTED.format(name=name, kw="where"))


# -- sum, mean: the hottest functions, so each binds its primitive itself --------------------
@implements(np.sum)
def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
        initial: Any = None, where: Any = True) -> Any:
    """``np.sum``; ``dtype`` casts first, ``out`` must be ``None``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(x, axis=-1)[0])(np.ones((2, 3)))
    array([[1., 1., 1.],
           [0., 0., 0.]])
    """
    if out is not None:
        no_out("sum", out)
    a = _arr(a)
    if dtype is not None:
        a = astype(a, dtype)
    if where is not True:
        a = _where(where, a, 0)
    r = sum_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))
    return r if initial is None else r + initial


@implements(np.mean)
def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
         *, where: Any = True) -> Any:
    """``np.mean``: one primitive for floating inputs, ``sum / count`` (in float64) for
    integers and with ``dtype``."""
    if out is not None:
        no_out("mean", out)
    if where is not True:
        _no_where("mean", where)
    a = _arr(a)
    ax = norm_axis(axis, ndim(a))
    if dtype is None and getattr(getattr(a, "dtype", None), "kind", "") == "f":
        return mean_p(a, axis=ax, keepdims=bool(keepdims))
    n = _count(shape(a), ax)
    total = sum(a, axis=ax, dtype=dtype, keepdims=keepdims)
    if dtype is None and getattr(total.dtype, "kind", "f") not in "fc":
        total = astype(total, np.float64)  # NumPy averages integers in float64
    return total / n if n else total * np.nan


_mean = mean  # var's parameter named mean hides it


# -- max / min ---------------------------------------------------------------------------
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
    return _extremum(max_p, maximum, "max", a, axis, out, keepdims, initial, where)


@implements(np.min, np.amin)
def min(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, initial: Any = None,
        where: Any = True) -> Any:
    """``np.min``; tied minima share the gradient equally."""
    return _extremum(min_p, minimum, "min", a, axis, out, keepdims, initial, where)


amax, amin = max, min


@implements(np.ptp)
def ptp(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    """``np.ptp``: ``max - min``."""
    no_out("ptp", out)
    return max(a, axis, keepdims=keepdims) - min(a, axis, keepdims=keepdims)


# -- prod ------------------------------------------------------------------------------
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
        a = astype(a, dtype)
    if where is not True:
        a = _where(where, a, 1)
    r = prod_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))
    return r if initial is None else r * initial


# -- var, std, average (compositions) -------------------------------------------------------
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
        a = astype(a, dtype)
    elif np.dtype(common_dtype(a)) != np.dtype(a.dtype):
        a = astype(a, np.float64)
    ax = norm_axis(axis, ndim(a))
    n = _count(shape(a), ax)
    if n - ddof <= 0 and is_tracer(a):
        raise ValueError(DDOF.format(ddof=ddof, n=n, shape=shape(a), axis=axis))
    c = a - _mean(a, axis=ax, keepdims=True)
    return sum(_abs2(c), axis=ax, keepdims=keepdims) / builtins.max(n - ddof, 0)


def _abs2(c: Any) -> Any:
    """``|c|**2``, smooth everywhere: ``c * c`` for real, ``re(c * conj(c))`` for complex."""
    return real(c * conj(c)) if c.dtype.kind == "c" else c * c


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
        return sqrt(v)
    # Two wheres: the outer picks 0 at a zero variance, the inner keeps sqrt's derivative
    # there finite (1 / (2 sqrt(1))), so the unused branch passes back 0, not 0 * inf.
    zero = equal(v, 0)
    return where(zero, zeros_like(v), sqrt(where(zero, ones_like(v), v)))


@implements(np.average)
def average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False, *,
            keepdims: bool = False) -> Any:
    """``np.average``: ``sum(a * w) / sum(w)``; differentiable in ``a`` and ``weights``."""
    a = _arr(a)
    ax = norm_axis(axis, ndim(a))
    if weights is None:
        avg = mean(a, axis=ax, keepdims=keepdims)
        scl = ones_like(avg) * _count(shape(a), ax)
    else:
        w = _arr(weights)
        if shape(w) != shape(a):
            if ax is None:
                raise TypeError("Axis must be specified when shapes of a and weights differ.")
            if ndim(w) != 1 or len(ax) != 1:
                raise TypeError("1D weights expected when shapes of a and weights differ.")
            if shape(w)[0] != shape(a)[ax[0]]:
                raise ValueError("Length of weights not compatible with specified axis.")
            w = reshape(w, tuple(shape(w)[0] if i == ax[0] else 1 for i in range(ndim(a))))
            w = broadcast_to(w, shape(a))
        scl = sum(w, axis=ax, keepdims=keepdims)
        avg = sum(a * w, axis=ax, keepdims=keepdims) / scl
    if returned:
        if shape(scl) != shape(avg):
            scl = broadcast_to(scl, shape(avg))
        return avg, scl
    return avg


# -- scans ---------------------------------------------------------------------------------
def _scan_args(name: str, a: Any, axis: Any, dtype: Any, out: Any) -> tuple:
    no_out(name, out)
    a = _arr(a)
    if dtype is not None:
        a = astype(a, dtype)
    if axis is None:
        return reshape(a, (-1,)), 0
    return a, one_axis(axis, ndim(a))


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
    return _cumprod(a, axis)


# -- index-valued and boolean reductions (no derivative) ---------------------------------------
@implements(np.argmax)
def argmax(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
    """``np.argmax`` (an integer array: no derivative)."""
    no_out("argmax", out)
    a = _arr(a)
    return argmax_p(a, axis=None if axis is None else one_axis(axis, ndim(a)),
                    keepdims=bool(keepdims))


@implements(np.argmin)
def argmin(a: Any, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Any:
    """``np.argmin`` (an integer array: no derivative)."""
    no_out("argmin", out)
    a = _arr(a)
    return argmin_p(a, axis=None if axis is None else one_axis(axis, ndim(a)),
                    keepdims=bool(keepdims))


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
def _sort_args(name: str, a: Any, axis: Any, kind: Any, order: Any, stable: Any) -> tuple:
    if order is not None:
        raise TypeError(UNSUPPORTED.format(name=name, kw="order"))
    if stable:
        kind = "stable"
    a = _arr(a)
    if axis is None:
        return reshape(a, (-1,)), 0, kind
    return a, one_axis(axis, ndim(a)), kind


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
    return _sort(a, axis)


# -- partition: a gather by NumPy's own (constant) argpartition ------------------------------
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
    return take_along_axis(a, argpartition_p(a, kth=kth, axis=axis), axis)


# -- quantiles: a sort and a linear interpolation between two order statistics ---------------
QUANTILE_METHOD = ("np.{name}(..., method={method!r}) is not supported by funcflux on traced "
                   "values; only method='linear' (NumPy's default) is.")


def _to_last(a: Any, axis: Any) -> tuple:
    """``a`` with the reduced axes merged into one last axis, and the kept axes' shape."""
    nd = ndim(a)
    ax = tuple(range(nd)) if axis is None else norm_axis(axis, nd)
    keep = [d for d in range(nd) if d not in ax]
    a = transpose(a, tuple(keep) + ax)
    kept = shape(a)[:len(keep)]
    return reshape(a, kept + (-1,)), kept, ax


def _quantile(name: str, a: Any, q: Any, axis: Any, out: Any, keepdims: bool, method: str,
              weights: Any) -> Any:
    no_out(name, out)
    if method != "linear":
        raise NotImplementedError(QUANTILE_METHOD.format(name=name, method=method))
    if weights is not None:
        raise TypeError(UNSUPPORTED.format(name=name, kw="weights"))
    a = _arr(a)
    if np.dtype(common_dtype(a)) != a.dtype:
        a = astype(a, np.float64)
    if not (is_tracer(q) or hasattr(q, "shape")):
        q = _xp(a).asarray(q)  # a constant q on a's device
    flat, _, ax = _to_last(a, axis)
    n = shape(flat)[-1]
    srt = sort(flat, axis=-1)
    qs = shape(q)
    # Fractional positions into the sorted entries; floor and clip carry no derivative, so
    # the result is differentiable in a (through the gathered values) and in q (through t).
    pos = reshape(q, (-1,)) * (n - 1)
    lo = clip(floor(pos), 0, builtins.max(n - 1, 0))
    t = pos - lo
    lo = astype(lo, np.intp)
    hi = minimum(lo + 1, n - 1)
    below = take(srt, lo, axis=-1)
    above = take(srt, hi, axis=-1)
    t = astype(t, srt.dtype) if not is_tracer(q) else t
    # NumPy's linear interpolation, written from both ends for accuracy near t = 1.
    d = above - below
    r = where(t >= 0.5, above - d * (1 - t), below + d * t)
    # A NaN anywhere in a slice makes its quantile NaN (sort puts NaNs last).
    last = getitem(srt, (Ellipsis, slice(n - 1, n)))
    r = where(isnan(last), last, r)
    r = moveaxis(r, -1, 0)
    if keepdims:
        full = [1 if i in ax else s for i, s in enumerate(shape(a))]
        r = reshape(r, (shape(r)[0],) + tuple(full))
    return reshape(r, qs + shape(r)[1:])


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
    return isnan(a) if getattr(a.dtype, "kind", "") in "fc" else None


def _nan_count(keep: Any, ax: tuple | None, keepdims: bool, like: Any) -> Any:
    """How many entries ``keep`` marks, as a real float of ``like``'s precision."""
    fdt = np.finfo(like.dtype).dtype if like.dtype.kind in "fc" else np.dtype(np.float64)
    return sum_p(astype(keep, fdt), axis=ax, keepdims=keepdims)


@implements(np.nansum)
def nansum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
           initial: Any = None, where: Any = True) -> Any:
    """``np.nansum``: NaNs count as 0 (and get derivative 0)."""
    a = _arr(a)
    m = _nan_mask(a)
    if m is not None:
        a = _where(m, zeros_like(a), a)
    return sum(a, axis, dtype, out, keepdims, initial, where)


def _safe_div(num: Any, cnt: Any) -> Any:
    """``num / cnt``, NaN (with derivative 0) where ``cnt <= 0``."""
    bad = less_equal(cnt, 0)
    q = num / where(bad, ones_like(cnt), cnt)
    return where(bad, q.dtype.type(np.nan), q)


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
        a = astype(a, dtype)
    ax = norm_axis(axis, ndim(a))
    total = sum(_where(m, zeros_like(a), a), axis=ax, keepdims=keepdims)
    cnt = _nan_count(logical_not(m), ax, keepdims, total)
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
        a = astype(a, dtype)
    ax = norm_axis(axis, ndim(a))
    keep = logical_not(m)
    zero = zeros_like(a)
    cnt = _nan_count(keep, ax, True, a)
    avg = _safe_div(sum(_where(m, zero, a), axis=ax, keepdims=True), cnt)
    c = _where(m, zero, a - avg)
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
    filled = _where(m, a.dtype.type(fill), a)
    r = fn(filled, axis, keepdims=keepdims, initial=initial)
    ax = norm_axis(axis, ndim(a))
    none = logical_not(any_p(logical_not(m), axis=ax, keepdims=bool(keepdims)))
    # An all-NaN slice gives NaN, as NumPy does (it also warns).
    return _where(none, r.dtype.type(np.nan), r)


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
