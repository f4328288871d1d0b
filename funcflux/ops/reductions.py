"""Reductions: the primitives ``sum`` (from ``base``), ``mean``, ``prod``, ``max``, ``min``,
``cumsum``, ``argmax``/``argmin``, ``all``/``any``, ``argsort`` and ``argpartition``, their
rules, and the binders other families' rules call.

Parameters are normalised before ``bind``: ``axis`` is ``None`` or a tuple of
non-negative ints (a single non-negative int for the scans, the sorts and the
``arg*`` functions), so rules never handle negative or scalar axes. ``mean`` is a
primitive for floating inputs (a loss's last step: one op forward and back).
``cumprod`` is a log-depth scan of multiplications, exact at zeros to every order,
and ``prod``'s partials are two such exclusive scans (no division); ``sort`` is a
gather with a (constant) ``argsort`` permutation.

Binders (normalised parameters, no NumPy-only ones): ``max``, ``min``, ``any``
``(x, axis=None, keepdims=False)``, ``sort(x, axis=-1)``, ``argsort(x, axis=-1,
kind=None)`` and ``cumprod(x, axis=-1)``. NumPy's signatures and the compositions no
rule needs (``var``, ``std``, ``ptp``, ``average``, ``partition``, the quantiles, the
``nan*`` reductions) are in the NumPy surface's ``_reductions`` module.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from .common import is_tracer, ndim, norm_axis, shape
from .base import astype, move_bdim, one_axis, reshape, transpose, broadcast_to_impl
from .base import sum_p, sum_transpose, expand_back as _expand_back, reduce_batch as _reduce_batch
from .base import reduction as _reduction
from .elementwise import common_dtype, equal, ones_like, zeros_like
from .indexing import getitem, take_along_axis
from .shape import concatenate

__all__ = ["sum_p", "mean_p", "max_p", "min_p", "prod_p", "cumsum_p", "argmax_p", "argmin_p",
           "all_p", "any_p", "argsort_p", "argpartition_p", "max", "min", "any", "sort",
           "argsort", "cumprod"]


def _count(s: tuple, axis: tuple | None) -> int:
    """How many entries a reduction of shape ``s`` over ``axis`` combines."""
    return math.prod(s) if axis is None else math.prod([s[i] for i in axis])


# -- sum: sum_p, its transpose and batching rule live in base ------------------------------
# -- mean: a primitive for floating inputs (a loss's last step: one op forward and back,
# where sum / count costs two and a broadcast); integer inputs use sum / count (the surface).
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
mean_p.def_abstract(abstract.reduction(_mean_impl))
mean_p.def_linear(_mean_transpose)
mean_p.def_fast_vjp(_mean_fast)
mean_p.def_batch(_reduce_batch(mean_p))


# -- max / min: one rule serves both -------------------------------------------------------
def _extremum_mask(ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    full = _expand_back(ans, x, axis, keepdims)
    return astype(equal(x, full), common_dtype(x))


def _extremum_vjp(ct: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    # The cotangent is shared equally among tied extrema (as JAX does).
    # Three full-size passes (compare, count, scale); the division happens at the reduced size.
    mask = equal(x, _expand_back(ans, x, axis, keepdims))
    count = astype(sum_p(mask, axis=axis, keepdims=True), common_dtype(x))
    return mask * (_expand_back(ct, x, axis, keepdims) / count)


def _extremum_jvp(t: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    mask = _extremum_mask(ans, x, axis, keepdims)
    return sum_p(t * mask, axis=axis, keepdims=keepdims) / sum_p(mask, axis=axis, keepdims=keepdims)


# min is a primitive rather than -max(-x): negation breaks unsigned ints and bools.
max_p = _reduction("max").def_vjp(_extremum_vjp).def_jvp(_extremum_jvp)
min_p = _reduction("min").def_vjp(_extremum_vjp).def_jvp(_extremum_jvp)


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 (NumPy's name)
    """The largest entry of ``x`` over ``axis`` (``None``: all; an int or tuple, negative
    allowed); tied maxima share the derivative equally."""
    return max_p(x, axis=norm_axis(axis, ndim(x)), keepdims=bool(keepdims))


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """The smallest entry of ``x`` over ``axis``, as ``max``."""
    return min_p(x, axis=norm_axis(axis, ndim(x)), keepdims=bool(keepdims))


# -- prod ------------------------------------------------------------------------------
def _flip(x: Any, axis: int) -> Any:
    return getitem(x, (slice(None),) * axis + (slice(None, None, -1),))


def _exclusive_cumprod(x: Any) -> Any:
    """Along the last axis: entry ``i`` is the product of entries ``0..i-1`` (1 for ``i = 0``)."""
    s = shape(x)
    one = ones_like(getitem(x, (Ellipsis, slice(0, 1))))
    if s[-1] == 1:
        return one
    return concatenate([one, cumprod(getitem(x, (Ellipsis, slice(0, -1))), axis=-1)], axis=-1)


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
        return ones_like(x)
    keep = [d for d in range(nd) if d not in ax]
    perm = tuple(keep) + tuple(ax)
    xt = transpose(x, perm)
    st = shape(xt)
    lead = st[:len(keep)]
    n = math.prod(st[len(keep):])
    if n == 0:
        return zeros_like(x)
    flat = reshape(xt, lead + (n,))
    left = _exclusive_cumprod(flat)
    right = _flip(_exclusive_cumprod(_flip(flat, len(lead))), len(lead))
    out = reshape(left * right, st)
    return transpose(out, tuple(np.argsort(perm).tolist()))


prod_p = _reduction("prod")
prod_p.def_vjp(lambda ct, ans, x, axis, keepdims:
               _expand_back(ct, x, axis, keepdims) * _prod_partials(ans, x, axis, keepdims))
prod_p.def_jvp(lambda t, ans, x, axis, keepdims:
               sum_p(t * _prod_partials(ans, x, axis, keepdims), axis=axis, keepdims=keepdims))


# -- scans ---------------------------------------------------------------------------------
cumsum_p = primitive("cumsum", lambda x, axis: array_module(x).cumsum(x, axis=axis))
cumsum_p.def_abstract(lambda x, axis: abstract.ShapeDtypeStruct(
    (x.size,) if axis is None else x.shape, np.cumsum(np.ones(1, x.dtype)).dtype))
# The transpose of a running sum is a running sum from the other end.
cumsum_p.def_linear(lambda ct, ans, x, axis: _flip(cumsum_p(_flip(ct, axis), axis=axis), axis))
cumsum_p.def_batch(lambda args, dims, axis: (
    cumsum_p(move_bdim(args[0], dims[0], 0), axis=axis + 1), 0))


def cumprod(x: Any, axis: Any = -1) -> Any:
    """The running product of ``x`` along ``axis`` (an int, negative allowed).

    On traced values it is a scan of ``ceil(log2 n)`` elementwise products
    (Hillis and Steele), so every derivative is exact, zeros included.
    """
    axis = one_axis(axis, ndim(x))
    if not is_tracer(x):
        return array_module(x).cumprod(x, axis=axis)
    n = shape(x)[axis]
    lead = (slice(None),) * axis
    step = 1
    while step < n:
        head = getitem(x, lead + (slice(0, step),))
        tail = getitem(x, lead + (slice(step, None),)) * getitem(x, lead + (slice(0, n - step),))
        x = concatenate([head, tail], axis=axis)
        step *= 2
    return x


# -- index-valued and boolean reductions (no derivative) ---------------------------------------
def _arg_reduction(name: str) -> Any:
    p = primitive(name, lambda x, axis, keepdims: getattr(array_module(x), name)(
        x, axis=axis, keepdims=keepdims), nondiff=True)

    def batch(args: list, dims: list, axis: int | None, keepdims: bool) -> tuple:
        x = move_bdim(args[0], dims[0], 0)
        if axis is not None:
            return p(x, axis=axis + 1, keepdims=keepdims), 0
        s = shape(x)
        r = p(reshape(x, (s[0], -1)), axis=1, keepdims=False)
        return (reshape(r, (s[0],) + (1,) * (len(s) - 1)) if keepdims else r), 0

    p.def_batch(batch)
    p.def_abstract(lambda x, axis, keepdims: abstract.ShapeDtypeStruct(abstract.reduced_shape(
        x.shape, None if axis is None else (axis,), keepdims), np.intp))
    return p


argmax_p = _arg_reduction("argmax")
argmin_p = _arg_reduction("argmin")
all_p = _reduction("all", nondiff=True)
any_p = _reduction("any", nondiff=True)


def any(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Whether any entry of ``x`` over ``axis`` is true (boolean: no derivative)."""
    return any_p(x, axis=norm_axis(axis, ndim(x)), keepdims=bool(keepdims))


# -- sorting -----------------------------------------------------------------------------------
def _argsort_impl(x: Any, axis: int, kind: Any) -> Any:
    return array_module(x).argsort(x, axis=axis, kind=kind)


argsort_p = primitive("argsort", _argsort_impl, nondiff=True)
argsort_p.def_abstract(lambda x, axis, kind: abstract.ShapeDtypeStruct(
    (x.size,) if axis is None else x.shape, np.intp))
argsort_p.def_batch(lambda args, dims, axis, kind: (
    argsort_p(move_bdim(args[0], dims[0], 0), axis=axis + 1, kind=kind), 0))


def _along(x: Any, axis: Any) -> tuple:
    """``x`` and ``axis`` as a non-negative int; ``axis=None`` flattens ``x``."""
    if axis is None:
        return reshape(x, (-1,)), 0
    return x, one_axis(axis, ndim(x))


def argsort(x: Any, axis: Any = -1, kind: Any = None) -> Any:
    """The indices that sort ``x`` along ``axis`` (``None``: flattened); no derivative."""
    x, axis = _along(x, axis)
    return argsort_p(x, axis=axis, kind=kind)


def sort(x: Any, axis: Any = -1) -> Any:
    """``x`` sorted along ``axis`` (``None``: flattened), differentiable: a gather of ``x``
    by its (constant) stable ``argsort``, so tied entries keep their order."""
    x, axis = _along(x, axis)
    if not is_tracer(x):
        return array_module(x).sort(x, axis=axis)
    return take_along_axis(x, argsort_p(x, axis=axis, kind="stable"), axis)


# -- partition: a gather by NumPy's own (constant) argpartition ------------------------------
def _argpartition_impl(x: Any, kth: tuple, axis: int) -> Any:
    return array_module(x).argpartition(x, kth, axis=axis)


argpartition_p = primitive("argpartition", _argpartition_impl, nondiff=True)
argpartition_p.def_abstract(lambda x, kth, axis: abstract.ShapeDtypeStruct(
    (x.size,) if axis is None else x.shape, np.intp))
argpartition_p.def_batch(lambda args, dims, kth, axis: (
    argpartition_p(move_bdim(args[0], dims[0], 0), kth=kth, axis=axis + 1), 0))
