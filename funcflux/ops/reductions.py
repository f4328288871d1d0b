"""Reductions: ``sum`` and ``max`` are primitives; ``mean`` and friends compose them.

Parameters are normalised before ``bind``: ``axis`` is ``None`` or a tuple of
non-negative ints, so rules never handle negative or scalar axes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from .common import move_bdim, ndim, norm_axis, shape

__all__ = ["sum", "max", "min", "amax", "amin", "mean"]


def _expand_back(ct: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    """``ct`` of a reduction, reshaped so that it broadcasts against ``x``."""
    if keepdims:
        return ct
    if axis is None:
        return fnp.reshape(ct, (1,) * ndim(x))
    s = list(shape(x))
    for a in axis:
        s[a] = 1
    return fnp.reshape(ct, tuple(s))


def _reduce_batch(p: Any) -> Any:
    def rule(args: list, dims: list, axis: tuple | None, keepdims: bool) -> tuple:
        x = move_bdim(args[0], dims[0], 0)
        nd = ndim(x) - 1
        ax = tuple(range(1, nd + 1)) if axis is None else tuple(a + 1 for a in axis)
        return p(x, axis=ax, keepdims=keepdims), 0
    return rule


sum_p = primitive("sum", lambda x, axis, keepdims: array_module(x).sum(x, axis=axis, keepdims=keepdims))
sum_p.def_linear(lambda ct, ans, x, axis, keepdims:
                 fnp.broadcast_to(_expand_back(ct, x, axis, keepdims), shape(x)))
sum_p.def_batch(_reduce_batch(sum_p))


@fnp.implements(np.sum)
def sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
        **kwargs: Any) -> Any:
    """``np.sum``; ``dtype`` casts first, ``out`` must be ``None``."""
    _no_out("sum", out)
    if dtype is not None:
        a = fnp.astype(a, dtype)
    return sum_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))


def _max_vjp(ct: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    # The cotangent is shared equally among tied maxima (as JAX does).
    full = _expand_back(ans, x, axis, keepdims)
    mask = fnp.astype(fnp.equal(x, full), fnp.common_dtype(x))
    count = sum_p(mask, axis=axis, keepdims=True)
    return _expand_back(ct, x, axis, keepdims) * mask / count


def _max_jvp(t: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    full = _expand_back(ans, x, axis, keepdims)
    mask = fnp.astype(fnp.equal(x, full), fnp.common_dtype(x))
    return sum_p(t * mask, axis=axis, keepdims=keepdims) / sum_p(mask, axis=axis, keepdims=keepdims)


max_p = primitive("max", lambda x, axis, keepdims: array_module(x).max(x, axis=axis, keepdims=keepdims))
max_p.def_vjp(_max_vjp)
max_p.def_jvp(_max_jvp)
max_p.def_batch(_reduce_batch(max_p))


@fnp.implements(np.max, np.amax)
def max(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, **kwargs: Any) -> Any:
    """``np.max``; ties share the gradient equally."""
    _no_out("max", out)
    return max_p(a, axis=norm_axis(axis, ndim(a)), keepdims=bool(keepdims))


@fnp.implements(np.min, np.amin)
def min(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False, **kwargs: Any) -> Any:
    """``np.min``, as ``-max(-a)``."""
    _no_out("min", out)
    return -max(-a, axis=axis, keepdims=keepdims)


amax, amin = max, min


@fnp.implements(np.mean)
def mean(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False,
         **kwargs: Any) -> Any:
    """``np.mean``, as ``sum / count``."""
    _no_out("mean", out)
    ax = norm_axis(axis, ndim(a))
    s = shape(a)
    n = int(np.prod(s)) if ax is None else int(np.prod([s[i] for i in ax]))
    total = sum(a, axis=ax, dtype=dtype, keepdims=keepdims)
    return total / n if n else total * np.nan


def _no_out(name: str, out: Any) -> None:
    if out is not None:
        raise TypeError(f"np.{name}(..., out=...) is not supported on traced values: "
                        "arrays are values inside a transform. Drop out= and use the result.")
