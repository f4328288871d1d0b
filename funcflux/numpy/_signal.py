"""The NumPy surface of sampled signals: grids, differences, convolution, interpolation.

``linspace``, ``diff``, ``ediff1d``, ``gradient``, ``convolve``, ``correlate``
and ``interp`` are compositions of binders (slices, products, ``concatenate``,
a static gather, ``matmul``); ``searchsorted`` binds the one primitive of the
family (``funcflux/ops/signal.py``).
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..core.backend import array_module
from ..core.dispatch import implements
from ..core.trace import module_value
from ..ops.base import astype, broadcast_to, moveaxis, reshape
from ..ops.common import as_array as _arr, is_tracer, ndim, norm_axis, shape
from ..ops.elementwise import clip, conj, floor, mod, not_equal, subtract, where, zeros_like
from ..ops.indexing import getitem, take
from ..ops.linalg import matmul
from ..ops.shape import concatenate, flip, pad
from ..ops.signal import searchsorted_p

__all__ = ["convolve", "correlate", "diff", "ediff1d", "gradient", "interp", "linspace",
           "searchsorted"]

INTERP_XP = ("np.interp: xp (the sample points, shape {shape}) is traced here (differentiated "
             "or batched); funcflux differentiates interp in x and fp only and needs xp as a "
             "constant array. Pass a plain array (ff.stop_gradient(xp) if its derivative is "
             "not wanted), or for a batch of sample grids loop over them in Python.")


def _dtype(a: Any) -> Any:
    d = getattr(a, "dtype", None)
    return d if d is not None else np.result_type(a)


def _take(a: Any, axis: int, s: Any) -> Any:
    """``a[..., s, ...]`` with ``s`` (a slice or an int) on ``axis``."""
    return getitem(a, (slice(None),) * axis + (s,))


def _const(c: Any, like: Any) -> Any:
    """A constant (not traced) as an array on the device of ``like``."""
    if is_tracer(c):
        return c
    return array_module(module_value(like)).asarray(c)


# -- linspace ------------------------------------------------------------------------------
@implements(np.linspace)
def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True,
             retstep: bool = False, dtype: Any = None, axis: int = 0, *,
             device: Any = None) -> Any:
    """``np.linspace``, differentiable in ``start`` and ``stop`` (scalars or arrays).

    The last sample is ``stop`` itself when ``endpoint`` (as in NumPy), so its
    derivative is 1 in ``stop`` and 0 in ``start``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda s: np.sum(np.linspace(0.0, s, 5)))(2.0)
    array(2.5)
    """
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    start, stop = _arr(start), _arr(stop)
    div = num - 1 if endpoint else num
    dt = np.result_type(_dtype(start), _dtype(stop), float(num))
    if np.dtype(dt).kind not in "fc":
        dt = np.dtype(np.float64)
    delta = astype(stop, dt) - astype(start, dt)
    nd = ndim(delta)
    xp = array_module(module_value(start), module_value(stop))
    y = xp.arange(num, dtype=dt).reshape((-1,) + (1,) * nd)
    step = delta / div if div > 0 else zeros_like(delta) + np.nan  # NumPy's NaN step
    y = (y * step if div > 0 else y * delta) + start
    if endpoint and num > 1:
        last = reshape(broadcast_to(stop, shape(y)[1:]), (1,) + shape(y)[1:])
        y = concatenate([getitem(y, slice(0, -1)), astype(last, _dtype(y))])
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        if np.dtype(dtype).kind in "iu":
            y = floor(y)
        y = astype(y, dtype)
    return (y, step) if retstep else y


# -- differences -----------------------------------------------------------------------------
@implements(np.diff)
def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = np._NoValue,
         append: Any = np._NoValue) -> Any:
    """``np.diff``: ``n`` rounds of ``a[1:] - a[:-1]`` along ``axis``; linear in every argument.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.diff(x) ** 2))(np.array([0.0, 1.0, 3.0]))
    array([-2., -2.,  4.])
    """
    n = operator.index(n)
    if n == 0:
        return a
    if n < 0:
        raise ValueError("order must be non-negative but got " + repr(n))
    a = _arr(a)
    nd = ndim(a)
    if nd == 0:
        raise ValueError("diff requires input that is at least one dimensional")
    axis = norm_axis(axis, nd)[0]
    parts = []
    for extra in (prepend, a, append):
        if extra is np._NoValue:
            continue
        extra = _const(extra, a)
        if ndim(extra) == 0:
            s = list(shape(a))
            s[axis] = 1
            extra = broadcast_to(extra, tuple(s))
        parts.append(extra)
    if len(parts) > 1:
        a = concatenate(parts, axis=axis)
    sub = not_equal if _dtype(a) == np.bool_ else subtract
    for _ in range(n):
        m = shape(a)[axis]
        a = sub(_take(a, axis, slice(1, None)), _take(a, axis, slice(0, max(m - 1, 0))))
    return a


@implements(np.ediff1d)
def ediff1d(ary: Any, to_end: Any = None, to_begin: Any = None) -> Any:
    """``np.ediff1d``: differences of the flattened array, with optional ends."""
    ary = reshape(_arr(ary), (-1,))
    parts = [diff(ary)]
    for extra, end in ((to_begin, 0), (to_end, 1)):
        if extra is None:
            continue
        extra = _const(extra, ary)
        if not np.can_cast(_dtype(extra), _dtype(ary), casting="same_kind"):
            name = "to_begin" if end == 0 else "to_end"
            raise TypeError(f"dtype of `{name}` must be compatible with input `ary` under "
                            "the `same_kind` rule.")
        extra = astype(reshape(extra, (-1,)), _dtype(ary))
        parts.insert(0 if end == 0 else len(parts), extra)
    return parts[0] if len(parts) == 1 else concatenate(parts)


def _grad_axis(f: Any, axis: int, h: Any, edge_order: int) -> Any:
    """One axis of ``np.gradient``: ``h`` is a scalar spacing or the 1-D coordinates' diff."""
    n = shape(f)[axis]
    nd = ndim(f)
    def sl(s: Any) -> Any:
        return _take(f, axis, s)

    if ndim(h) == 0:
        inner = (sl(slice(2, None)) - sl(slice(None, -2))) / (2.0 * h)
        if edge_order == 1:
            first = (sl(slice(1, 2)) - sl(slice(0, 1))) / h
            last = (sl(slice(n - 1, n)) - sl(slice(n - 2, n - 1))) / h
        else:
            first = (-1.5 / h) * sl(slice(0, 1)) + (2.0 / h) * sl(slice(1, 2)) \
                + (-0.5 / h) * sl(slice(2, 3))
            last = (0.5 / h) * sl(slice(n - 3, n - 2)) + (-2.0 / h) * sl(slice(n - 2, n - 1)) \
                + (1.5 / h) * sl(slice(n - 1, n))
    else:
        col = (slice(None),) + (None,) * (nd - 1 - axis)  # a 1-D array along ``axis``
        d1, d2 = getitem(h, slice(0, -1)), getitem(h, slice(1, None))
        ca = -d2 / (d1 * (d1 + d2))
        cb = (d2 - d1) / (d1 * d2)
        cc = d1 / (d2 * (d1 + d2))
        inner = (getitem(ca, col) * sl(slice(None, -2)) + getitem(cb, col) * sl(slice(1, -1))
                 + getitem(cc, col) * sl(slice(2, None)))
        h0, hm1 = getitem(h, 0), getitem(h, -1)
        if edge_order == 1:
            first = (sl(slice(1, 2)) - sl(slice(0, 1))) / h0
            last = (sl(slice(n - 1, n)) - sl(slice(n - 2, n - 1))) / hm1
        else:
            h1, hm2 = getitem(h, 1), getitem(h, -2)
            first = (-(2.0 * h0 + h1) / (h0 * (h0 + h1))) * sl(slice(0, 1)) \
                + ((h0 + h1) / (h0 * h1)) * sl(slice(1, 2)) \
                + (-h0 / (h1 * (h0 + h1))) * sl(slice(2, 3))
            last = (hm1 / (hm2 * (hm2 + hm1))) * sl(slice(n - 3, n - 2)) \
                + (-(hm1 + hm2) / (hm2 * hm1)) * sl(slice(n - 2, n - 1)) \
                + ((2.0 * hm1 + hm2) / (hm1 * (hm2 + hm1))) * sl(slice(n - 1, n))
    return concatenate([first, inner, last], axis=axis)


@implements(np.gradient)
def gradient(f: Any, *varargs: Any, axis: Any = None, edge_order: int = 1) -> Any:
    """``np.gradient``: central differences inside, one-sided (order 1 or 2) at the edges.

    Spacings may be scalars or coordinate arrays, traced or not (the result is
    differentiable in both ``f`` and the spacings).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda f: np.gradient(f)[1])(np.array([1.0, 2.0, 4.0]))
    array([-0.5,  0. ,  0.5])
    """
    f = _arr(f)
    nd = ndim(f)
    axes = tuple(range(nd)) if axis is None else norm_axis(axis, nd)
    def nd_of(h: Any) -> int:
        return ndim(h) if is_tracer(h) else np.ndim(h)

    if len(varargs) == 0:
        hs: list = [1.0] * len(axes)
    elif len(varargs) == 1 and nd_of(varargs[0]) == 0:
        hs = [varargs[0]] * len(axes)
    elif len(varargs) == len(axes):
        hs = []
        for ax, h in zip(axes, varargs):
            if nd_of(h) == 0:
                hs.append(h)  # Python numbers stay weakly typed: float32 f stays float32
                continue
            h = _arr(h)
            if ndim(h) != 1:
                raise ValueError("distances must be either scalars or 1d")
            if shape(h)[0] != shape(f)[ax]:
                raise ValueError("when 1d, distances must match the length of the "
                                 "corresponding dimension")
            if _dtype(h).kind in "iub":
                h = astype(h, np.float64)
            d = diff(h)
            if not is_tracer(d) and bool((d == d[0]).all()):
                d = d[0]  # uniform coordinates: NumPy's (and our) scalar formulas
            hs.append(d)
    else:
        raise TypeError("invalid number of arguments")
    if edge_order > 2:
        raise ValueError("'edge_order' greater than 2 not supported")
    if _dtype(f).kind in "iub":
        f = astype(f, np.float64)
    outs = []
    for ax, h in zip(axes, hs):
        if shape(f)[ax] < edge_order + 1:
            raise ValueError("Shape of array too small to calculate a numerical gradient, "
                             "at least (edge_order + 1) elements are required.")
        outs.append(_grad_axis(f, ax, h, edge_order))
    return outs[0] if len(outs) == 1 else tuple(outs)


# -- convolution ------------------------------------------------------------------------------
def _conv_full(a: Any, v: Any) -> Any:
    """The full convolution of 1-D ``a`` (length n) and ``v`` (length m): length n + m - 1.

    ``out[k] = sum_i a[i] v[k - i]``: a static gather builds the Toeplitz matrix of
    ``v`` (zero-padded), and one matmul applies it to ``a``. Linear in each argument,
    so every derivative is a gather, a matmul or a transpose.
    """
    n, m = shape(a)[0], shape(v)[0]
    vp = pad(v, [(n - 1, n - 1)])
    k = np.arange(n + m - 1)[:, None] - np.arange(n)[None, :] + (n - 1)
    return matmul(take(vp, k), a)


def _conv_args(name: str, a: Any, v: Any) -> tuple:
    a, v = _arr(a), _arr(v)
    if ndim(a) != 1 or ndim(v) != 1:
        raise ValueError(f"object too deep for desired array (np.{name} takes 1-D arrays, got "
                         f"shapes {shape(a)} and {shape(v)})")
    if not shape(a)[0]:
        raise ValueError("a cannot be empty")
    if not shape(v)[0]:
        raise ValueError("v cannot be empty")
    return a, v


def _mode_slice(full: Any, n: int, m: int, mode: str) -> Any:
    big, small = max(n, m), min(n, m)
    if mode == "full":
        return full
    if mode == "same":
        start = (small - 1) // 2
        return getitem(full, slice(start, start + big))
    if mode == "valid":
        return getitem(full, slice(small - 1, big))
    raise ValueError(f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})")


@implements(np.convolve)
def convolve(a: Any, v: Any, mode: str = "full") -> Any:
    """``np.convolve`` of two 1-D arrays, differentiable in both (modes full/same/valid).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda v: np.sum(np.convolve(np.array([1.0, 2.0]), v)))(np.ones(3))
    array([3., 3., 3.])
    """
    a, v = _conv_args("convolve", a, v)
    n, m = shape(a)[0], shape(v)[0]
    return _mode_slice(_conv_full(a, v), n, m, mode)


@implements(np.correlate)
def correlate(a: Any, v: Any, mode: str = "valid") -> Any:
    """``np.correlate``: ``sum_n a[n + k] conj(v[n])``, differentiable in both arguments.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.correlate(a, np.array([1.0, 2.0]))[0])(np.ones(3))
    array([1., 2., 0.])
    """
    a, v = _conv_args("correlate", a, v)
    n, m = shape(a)[0], shape(v)[0]
    if _dtype(v).kind == "c":
        v = conj(v)
    full = _conv_full(a, flip(v, 0))
    if m > n and mode != "full":
        # NumPy correlates the longer argument against the shorter one and reverses.
        big, small = m, n
        start = (small - 1) // 2 if mode == "same" else small - 1
        if mode not in ("same", "valid"):
            raise ValueError(f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})")
        stop = start + (big if mode == "same" else big - small + 1)
        # full has length n + m - 1; NumPy's window counts from the other end here.
        total = n + m - 1
        return getitem(full, slice(total - stop, total - start))
    return _mode_slice(full, n, m, mode)


# -- interpolation ----------------------------------------------------------------------------
@implements(np.searchsorted)
def searchsorted(a: Any, v: Any, side: str = "left", sorter: Any = None) -> Any:
    """``np.searchsorted`` (integer indices: no derivative)."""
    a, v = _arr(a), _arr(v)
    if ndim(a) != 1:
        raise ValueError("object too deep for desired array")
    if sorter is not None:
        a = take(a, sorter)
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right' (got {side!r})")
    return searchsorted_p(a, v, side=side)


@implements(np.interp)
def interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None,
           period: Any = None) -> Any:
    """``np.interp``, differentiable in the query points ``x`` and the values ``fp``.

    ``xp`` must be a constant (an error says so when it is traced). At a sample
    point the derivative in ``x`` is the one from the right: the slope of the next
    interval, and 0 at ``xp[-1]``; outside ``[xp[0], xp[-1]]`` it is 0.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.interp(x, [0.0, 1.0, 2.0], [0.0, 2.0, 3.0]))(0.5)
    array(2.)
    """
    if is_tracer(xp):
        raise TypeError(INTERP_XP.format(shape=shape(xp)))
    x, fp = _arr(x), _arr(fp)
    if not hasattr(xp, "shape"):  # a list: a constant, made on the device of x and fp
        xp = array_module(module_value(x), module_value(fp)).asarray(xp)
    if ndim(xp) != 1 or ndim(fp) != 1:
        raise ValueError("object too deep for desired array")
    if shape(xp)[0] != shape(fp)[0]:
        raise ValueError("fp and xp are not of the same length.")
    if shape(xp)[0] == 0:
        raise ValueError("array of sample points is empty")
    xm = array_module(xp)
    if _dtype(fp).kind not in "fc":
        fp = astype(fp, np.float64)
    if _dtype(x).kind not in "fc":
        x = astype(x, np.float64)
    if period is not None:
        if period == 0:
            raise ValueError("period must be a non-zero value")
        period = abs(period)
        left = right = None
        x = mod(x, period)
        xp = xm.mod(xp, period)
        order = xm.argsort(xp)
        xp = xp[order]
        fp = take(fp, order)
        xp = xm.concatenate([xp[-1:] - period, xp, xp[0:1] + period])
        fp = concatenate([getitem(fp, slice(-1, None)), fp, getitem(fp, slice(0, 1))])
    xp = xp.astype(np.float64) if xp.dtype.kind not in "f" else xp
    n = shape(xp)[0]
    f0 = getitem(fp, 0)
    fl = f0 if left is None else left
    fr = getitem(fp, -1) if right is None else right
    if n == 1:
        y = where(x < xp[0], fl, where(x > xp[0], fr, zeros_like(x) + f0))
        return y
    j = clip(searchsorted_p(xp, x, side="right") - 1, 0, n - 2)
    x0, x1 = take(xp, j), take(xp, j + 1)
    y0, y1 = take(fp, j), take(fp, j + 1)
    y = y0 + (y1 - y0) / (x1 - x0) * (x - x0)
    y = where(x == xp[-1], getitem(fp, -1), y)
    return where(x < xp[0], fl, where(x > xp[-1], fr, y))
