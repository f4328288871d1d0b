"""Shape primitives: every one is linear, so each is declared with its transpose.

``reshape``, ``transpose``, ``broadcast_to``, ``expand_dims`` (hence
``moveaxis``, ``swapaxes``, ``squeeze``) and ``concatenate`` are primitives;
``stack``, ``split`` and the rest are compositions of them and indexing.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from .common import bdim_to_front, move_bdim, ndim, norm_axis, shape, unbroadcast

__all__ = ["reshape", "transpose", "broadcast_to", "expand_dims", "moveaxis", "swapaxes",
           "squeeze", "concatenate", "stack", "ravel"]


def _resolve_shape(old: tuple, new: Any) -> tuple:
    new = (new,) if isinstance(new, (int, np.integer)) else tuple(int(n) for n in new)
    if -1 in new:
        known = int(np.prod([n for n in new if n != -1]))
        size = int(np.prod(old))
        if new.count(-1) > 1 or (known == 0 and size) or (known and size % known):
            raise ValueError(f"cannot reshape array of shape {old} into shape {new}")
        new = tuple(size // known if n == -1 else n for n in new) if known else tuple(0 if n == -1 else n for n in new)
    if int(np.prod(new)) != int(np.prod(old)):
        raise ValueError(f"cannot reshape array of size {int(np.prod(old))} (shape {old}) into shape {new}")
    return new


# -- reshape ---------------------------------------------------------------------------
reshape_p = primitive("reshape", lambda x, shape: array_module(x).reshape(x, shape))
reshape_p.def_linear(lambda ct, ans, x, shape: reshape_p(ct, shape=_shape_of(x)))
reshape_p.def_batch(lambda args, dims, shape: (
    reshape_p(move_bdim(args[0], dims[0], 0), shape=(args[0].shape[dims[0]],) + shape), 0))


def _shape_of(x: Any) -> tuple:
    return shape(x)


@fnp.implements(np.reshape)
def reshape(a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None, **kw: Any) -> Any:
    """``np.reshape`` (C order only)."""
    if order != "C":
        raise NotImplementedError("reshape on traced values supports order='C' only")
    new = _resolve_shape(_shape_of(a), shape if shape is not None else newshape)
    if new == _shape_of(a):
        return a
    return reshape_p(a, shape=new)


@fnp.implements(np.ravel)
def ravel(a: Any, order: str = "C") -> Any:
    return reshape(a, (-1,), order)


# -- transpose -------------------------------------------------------------------------
transpose_p = primitive("transpose", lambda x, axes: array_module(x).transpose(x, axes))
transpose_p.def_linear(lambda ct, ans, x, axes: transpose_p(ct, axes=tuple(np.argsort(axes).tolist())))
transpose_p.def_batch(lambda args, dims, axes: (
    transpose_p(move_bdim(args[0], dims[0], 0), axes=(0,) + tuple(a + 1 for a in axes)), 0))


@fnp.implements(np.transpose)
def transpose(a: Any, axes: Any = None) -> Any:
    """``np.transpose``; ``axes=None`` reverses the axes."""
    nd = ndim(a)
    axes = tuple(range(nd))[::-1] if axes is None else tuple(a_ % nd for a_ in norm_axis(axes, nd))
    if len(axes) != nd:
        raise ValueError(f"axes {axes} don't match array of {nd} dimensions")
    if axes == tuple(range(nd)):
        return a
    return transpose_p(a, axes=axes)


@fnp.implements(np.moveaxis)
def moveaxis(a: Any, source: Any, destination: Any) -> Any:
    """``np.moveaxis`` as a transpose."""
    nd = ndim(a)
    src = norm_axis(source, nd)
    dst = norm_axis(destination, nd)
    if len(src) != len(dst):
        raise ValueError("moveaxis: source and destination must have the same number of elements")
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, tuple(order))


@fnp.implements(np.swapaxes)
def swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    nd = ndim(a)
    i, j = norm_axis(axis1, nd)[0], norm_axis(axis2, nd)[0]
    order = list(range(nd))
    order[i], order[j] = order[j], order[i]
    return transpose(a, tuple(order))


# -- broadcast_to ----------------------------------------------------------------------
broadcast_to_p = primitive("broadcast_to", lambda x, shape: array_module(x).broadcast_to(x, shape))
broadcast_to_p.def_linear(lambda ct, ans, x, shape: unbroadcast(ct, x))


def _broadcast_batch(args: list, dims: list, shape: tuple) -> tuple:
    x = move_bdim(args[0], dims[0], 0)
    n, rest = _shape_of(x)[0], _shape_of(x)[1:]
    x = reshape_p(x, shape=(n,) + (1,) * (len(shape) - len(rest)) + rest) if len(rest) < len(shape) else x
    return broadcast_to_p(x, shape=(n,) + shape), 0


broadcast_to_p.def_batch(_broadcast_batch)


@fnp.implements(np.broadcast_to)
def broadcast_to(array: Any, shape: Any, subok: bool = False) -> Any:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    if _shape_of(array) == shape:
        return array
    return broadcast_to_p(array, shape=shape)


# -- expand_dims / squeeze (reshapes) ------------------------------------------------------
@fnp.implements(np.expand_dims)
def expand_dims(a: Any, axis: Any) -> Any:
    s = list(_shape_of(a))
    axes = norm_axis(axis, len(s) + (1 if isinstance(axis, int) else len(axis)))
    for ax in sorted(axes):
        s.insert(ax, 1)
    return reshape(a, tuple(s))


@fnp.implements(np.squeeze)
def squeeze(a: Any, axis: Any = None) -> Any:
    s = _shape_of(a)
    axes = tuple(i for i, n in enumerate(s) if n == 1) if axis is None else norm_axis(axis, len(s))
    for ax in axes:
        if s[ax] != 1:
            raise ValueError(f"cannot select an axis to squeeze out which has size not equal to one (axis {ax}, shape {s})")
    return reshape(a, tuple(n for i, n in enumerate(s) if i not in axes))


# -- concatenate -------------------------------------------------------------------------
def _concat_impl(*xs: Any, axis: int) -> Any:
    return array_module(*xs).concatenate(xs, axis=axis)


concatenate_p = primitive("concatenate", _concat_impl)


def _concat_transpose(i: int, ct: Any, ans: Any, *xs: Any, axis: int) -> Any:
    start = int(np.sum([_shape_of(x)[axis] for x in xs[:i]]))
    idx = (slice(None),) * axis + (slice(start, start + _shape_of(xs[i])[axis]),)
    return ct[idx]


concatenate_p.def_linear(_concat_transpose, variadic=True)


def _concat_batch(args: list, dims: list, axis: int) -> tuple:
    from .common import batch_size
    n = batch_size(args, dims)
    return concatenate_p(*bdim_to_front(args, dims, n), axis=axis + 1), 0


concatenate_p.def_batch(_concat_batch)


@fnp.implements(np.concatenate)
def concatenate(arrays: Sequence[Any], axis: int | None = 0, out: Any = None, **kw: Any) -> Any:
    """``np.concatenate``; ``axis=None`` flattens first."""
    arrays = list(arrays)
    if axis is None:
        arrays, axis = [reshape(a, (-1,)) for a in arrays], 0
    nd = ndim(arrays[0])
    axis = norm_axis(axis, nd)[0]
    if len(arrays) == 1:
        return arrays[0]
    return concatenate_p(*arrays, axis=axis)


@fnp.implements(np.stack)
def stack(arrays: Sequence[Any], axis: int = 0, out: Any = None, **kw: Any) -> Any:
    """``np.stack``, as ``expand_dims`` then ``concatenate``."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("need at least one array to stack")
    shapes = {_shape_of(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"all input arrays must have the same shape, got {sorted(shapes)}")
    nd = ndim(arrays[0]) + 1
    axis = norm_axis(axis, nd)[0]
    return concatenate([expand_dims(a, axis) for a in arrays], axis=axis)
