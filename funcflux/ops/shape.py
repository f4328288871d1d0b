"""Shape primitives ``concatenate`` and ``pad`` (constant), with their rules and binders.

Both are linear (``pad`` when its constant is 0), so each is declared with its
transpose: slicing. ``reshape``, ``transpose`` and ``broadcast_to`` sit in
``funcflux.ops.base``; everything else moves data with them and with basic
indexing (``getitem`` with static slices).

Binders, for the rules of every family and for the NumPy surface:
``concatenate(arrays, axis=0)``, ``stack(arrays, axis=0)`` (expand then
concatenate), ``pad(x, pad_width)`` (zeros), ``roll(x, shift, axis=None)`` (two
slices and a concatenate per rolled axis) and ``flip(x, axis=None)`` (a reversed
slice).
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from .common import as_array as _arr, ndim, norm_axis
from .base import astype, batch_size, bdim_to_front, expand_dims, move_bdim, reshape
from .elementwise import zeros_like
from .indexing import getitem_p
from .common import shape as _shape_of  # where a parameter named shape hides it

__all__ = ["concatenate_p", "pad_p", "concatenate", "stack", "pad", "roll", "flip"]


def _one_axis(axis: Any, nd: int) -> int:
    return norm_axis(operator.index(axis), nd)[0]


def _axis_slice(axis: int, s: slice) -> tuple:
    """A basic index selecting ``s`` along ``axis`` (everything along the others)."""
    return (slice(None),) * axis + (s,)


# -- concatenate -------------------------------------------------------------------------
def _concat_impl(*xs: Any, axis: int) -> Any:
    return array_module(*xs).concatenate(xs, axis=axis)


concatenate_p = primitive("concatenate", _concat_impl)


def _concat_abstract(*xs: Any, axis: int) -> Any:
    shapes = [_shape_of(x) for x in xs]
    out = list(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(out) or any(a != b for i, (a, b) in enumerate(zip(s, out)) if i != axis):
            raise ValueError(f"all the input array dimensions except for the concatenation "
                             f"axis must match exactly: got shapes {shapes}")
        out[axis] += s[axis]
    return abstract.ShapeDtypeStruct(out, np.result_type(*[x.dtype for x in xs]))


concatenate_p.def_abstract(_concat_abstract)


def _concat_vjp(i: int, ct: Any, ans: Any, *xs: Any, axis: int) -> Any:
    start = int(np.sum([_shape_of(x)[axis] for x in xs[:i]]))
    piece = getitem_p(ct, idx=_axis_slice(axis, slice(start, start + _shape_of(xs[i])[axis])))
    d = getattr(xs[i], "dtype", None)
    return piece if d is None or piece.dtype == d else astype(piece, d)


def _concat_jvp(i: int, t: Any, ans: Any, *xs: Any, axis: int) -> Any:
    # Jointly (not separately) linear: argument i's tangent sits among zeros, not among
    # the other primals, so ``def_linear``'s substitution does not apply.
    return concatenate_p(*[t if j == i else zeros_like(x) for j, x in enumerate(xs)], axis=axis)


def _concat_batch(args: list, dims: list, axis: int) -> tuple:
    n = batch_size(args, dims)
    return concatenate_p(*bdim_to_front(args, dims, n), axis=axis + 1), 0


concatenate_p.def_vjp(_concat_vjp, variadic=True)
concatenate_p.def_jvp(_concat_jvp, variadic=True)
concatenate_p.def_batch(_concat_batch)


def concatenate(arrays: Sequence[Any], axis: int = 0) -> Any:
    """``arrays`` (one or more, of one rank >= 1) joined along ``axis`` (negative allowed)."""
    arrays = [_arr(a) for a in arrays]
    if len(arrays) == 1:
        return arrays[0]
    return concatenate_p(*arrays, axis=_one_axis(axis, ndim(arrays[0])))


def stack(arrays: Sequence[Any], axis: int = 0) -> Any:
    """``arrays`` (of one shape) joined along a new axis ``axis``."""
    arrays = [_arr(a) for a in arrays]
    axis = _one_axis(axis, ndim(arrays[0]) + 1)
    return concatenate([expand_dims(a, axis) for a in arrays], axis)


# -- flip and roll: slices ------------------------------------------------------------
def flip(x: Any, axis: Any = None) -> Any:
    """``x`` reversed along ``axis`` (an int or a tuple; every axis for ``None``)."""
    nd = ndim(x)
    axes = tuple(range(nd)) if axis is None else norm_axis(axis, nd)
    if not axes:
        return x
    return getitem_p(x, idx=tuple(slice(None, None, -1) if i in axes else slice(None)
                                  for i in range(max(axes) + 1)))


def roll(x: Any, shift: Any, axis: Any = None) -> Any:
    """``x`` rolled by ``shift`` along ``axis`` (ints or sequences; the flattened ``x``
    for ``None``): two slices and a concatenate per rolled axis."""
    if axis is None:
        return reshape(roll(reshape(x, (-1,)), shift, 0), _shape_of(x))
    nd = ndim(x)
    shifts, axes = np.broadcast_arrays(np.asarray(shift), np.asarray(axis))
    if shifts.ndim > 1:
        raise ValueError("'shift' and 'axis' should be scalars or 1D sequences")
    total = [0] * nd
    for sh, ax in zip(shifts.reshape(-1).tolist(), axes.reshape(-1).tolist()):
        total[_one_axis(ax, nd)] += int(sh)
    s = _shape_of(x)
    for ax, sh in enumerate(total):
        n = s[ax]
        if n == 0 or sh % n == 0:
            continue
        k = n - sh % n
        x = concatenate_p(getitem_p(x, idx=_axis_slice(ax, slice(k, None))),
                          getitem_p(x, idx=_axis_slice(ax, slice(0, k))), axis=ax)
    return x


# -- pad -----------------------------------------------------------------------------------
def _pad_impl(x: Any, widths: tuple, values: tuple) -> Any:
    return array_module(x).pad(x, widths, mode="constant", constant_values=values)


def _zero_values(nd: int) -> tuple:
    return ((0, 0),) * nd


# Linear in x only when the constant is 0; the derivative always pads with zeros.
pad_p = primitive("pad", _pad_impl)
pad_p.def_abstract(lambda x, widths, values: abstract.ShapeDtypeStruct(
    tuple(n + a + b for n, (a, b) in zip(_shape_of(x), widths)), x.dtype))
pad_p.def_vjp(lambda ct, ans, x, widths, values: getitem_p(
    ct, idx=tuple(slice(b, b + n) for (b, _), n in zip(widths, _shape_of(x)))))
pad_p.def_jvp(lambda t, ans, x, widths, values: pad_p(t, widths=widths, values=_zero_values(len(widths))))
pad_p.def_batch(lambda args, dims, widths, values: (
    pad_p(move_bdim(args[0], dims[0], 0), widths=((0, 0),) + widths, values=((0, 0),) + values), 0))


def _pad_widths(pad_width: Any, nd: int) -> tuple:
    """NumPy's ``pad_width`` (an int, a pair, or one pair per axis) as one int pair per axis."""
    return tuple(tuple(int(v) for v in row)
                 for row in np.broadcast_to(np.asarray(pad_width), (nd, 2)).tolist())


def pad(x: Any, pad_width: Any) -> Any:
    """``x`` padded with zeros: ``pad_width`` as in ``np.pad`` (non-negative ints)."""
    nd = ndim(x)
    widths = _pad_widths(pad_width, nd)
    if all(w == (0, 0) for w in widths):
        return x
    return pad_p(x, widths=widths, values=_zero_values(nd))
