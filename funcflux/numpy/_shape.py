"""NumPy's shape functions on traced values: ``reshape``, ``stack``, ``split``, ``pad``...

Each keeps NumPy's signature and errors and binds the primitives of
``funcflux.ops.base`` (``reshape``, ``transpose``, ``broadcast_to``),
``funcflux.ops.shape`` (``concatenate``, ``pad``) and ``funcflux.ops.indexing``
(basic slices): ``expand_dims``/``squeeze`` are reshapes, ``moveaxis``/``swapaxes``/
``rot90`` transposes, ``flip`` a reversed slice, ``split`` slices, ``roll`` slices
and a concatenate, ``tile`` and integer ``repeat`` a reshape-broadcast-reshape, and
the index-based ``pad`` modes a static gather (runs of slices, see ``_gather_static``).
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np

from ..core.backend import array_module
from ..core.dispatch import implements
from ..ops.base import astype, broadcast_to_p, expand_dims as _expand_dims, \
    moveaxis as _moveaxis, reshape_p, resolve_shape as _resolve_shape, \
    squeeze as _squeeze, transpose_p
from ..ops.common import as_array as _arr, is_tracer, ndim, no_out, norm_axis
from ..ops.common import shape as _shape_of  # where a parameter named shape hides it
from ..ops.indexing import _xp, getitem
from ..ops.shape import _axis_slice, _one_axis, _pad_widths, concatenate_p, pad_p
from ..ops.shape import flip as _flip, roll as _roll

__all__ = ["reshape", "ravel", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze",
           "broadcast_to", "broadcast_arrays", "atleast_1d", "atleast_2d", "atleast_3d",
           "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack", "split",
           "array_split", "tile", "repeat", "flip", "fliplr", "flipud", "roll", "pad", "rot90",
           "rollaxis", "append", "hsplit", "vsplit", "dsplit"]


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


# -- reshape ---------------------------------------------------------------------------
@implements(np.reshape)
def reshape(a: Any, shape: Any = None, order: str = "C", *, newshape: Any = None,
            copy: Any = None) -> Any:
    """``np.reshape`` (C order only; one ``-1`` is inferred)."""
    if order != "C":
        raise NotImplementedError("reshape on traced values supports order='C' only")
    a = _arr(a)
    new = _resolve_shape(_shape_of(a), shape if shape is not None else newshape)
    if new == _shape_of(a):
        return a
    return reshape_p(a, shape=new)


@implements(np.ravel)
def ravel(a: Any, order: str = "C") -> Any:
    """``np.ravel`` (C order only)."""
    return reshape(a, (-1,), order)


# -- transpose -------------------------------------------------------------------------
@implements(np.transpose)
def transpose(a: Any, axes: Any = None) -> Any:
    """``np.transpose``; ``axes=None`` reverses the axes."""
    a = _arr(a)
    nd = ndim(a)
    axes = tuple(range(nd))[::-1] if axes is None else norm_axis(axes, nd)
    if len(axes) != nd:
        raise ValueError("axes don't match array")
    if axes == tuple(range(nd)):
        return a
    return transpose_p(a, axes=axes)


@implements(np.moveaxis)
def moveaxis(a: Any, source: Any, destination: Any) -> Any:
    """``np.moveaxis`` as a transpose."""
    return _moveaxis(_arr(a), source, destination)


@implements(np.rollaxis)
def rollaxis(a: Any, axis: int, start: int = 0) -> Any:
    """``np.rollaxis``: move ``axis`` to sit before position ``start``, as a transpose."""
    a = _arr(a)
    nd = ndim(a)
    axis = _one_axis(axis, nd)
    start = operator.index(start)
    if start < 0:
        start += nd
    if not 0 <= start < nd + 1:
        raise np.exceptions.AxisError(
            f"'start' arg requires {-nd} <= start < {nd + 1}, but {start} was passed in")
    if axis < start:
        start -= 1
    order = [d for d in range(nd) if d != axis]
    order.insert(start, axis)
    return transpose(a, tuple(order))


@implements(np.swapaxes)
def swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    """``np.swapaxes`` as a transpose."""
    a = _arr(a)
    nd = ndim(a)
    i, j = _one_axis(axis1, nd), _one_axis(axis2, nd)
    order = list(range(nd))
    order[i], order[j] = order[j], order[i]
    return transpose(a, tuple(order))


@implements(np.rot90)
def rot90(m: Any, k: int = 1, axes: Any = (0, 1)) -> Any:
    """``np.rot90``: a flip and a transpose."""
    m = _arr(m)
    axes = tuple(axes)
    nd = ndim(m)
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == nd:
        raise ValueError("Axes must be different.")
    if not (-nd <= axes[0] < nd and -nd <= axes[1] < nd):
        raise ValueError(f"Axes={axes} out of range for array of ndim={nd}.")
    k %= 4
    if k == 0:
        return m
    if k == 2:
        return flip(flip(m, axes[0]), axes[1])
    order = list(range(nd))
    order[axes[0]], order[axes[1]] = order[axes[1]], order[axes[0]]
    if k == 1:
        return transpose(flip(m, axes[1]), tuple(order))
    return flip(transpose(m, tuple(order)), axes[1])


# -- broadcast_to ----------------------------------------------------------------------
@implements(np.broadcast_to)
def broadcast_to(array: Any, shape: Any, subok: bool = False) -> Any:
    """``np.broadcast_to``."""
    array = _arr(array)
    shape = (int(shape),) if _is_int(shape) else tuple(int(s) for s in shape)
    if _shape_of(array) == shape:
        return array
    np.broadcast_shapes(_shape_of(array), shape)  # NumPy's error for incompatible shapes
    if len(shape) < ndim(array) or np.broadcast_shapes(_shape_of(array), shape) != shape:
        raise ValueError(f"cannot broadcast an array of shape {_shape_of(array)} to shape {shape}")
    return broadcast_to_p(array, shape=shape)


@implements(np.broadcast_arrays)
def broadcast_arrays(*args: Any, subok: bool = False) -> tuple:
    """``np.broadcast_arrays`` (a tuple, as NumPy 2 returns)."""
    args = [_arr(a) for a in args]
    target = np.broadcast_shapes(*[_shape_of(a) for a in args])
    return tuple(broadcast_to(a, target) for a in args)


# -- reshapes: expand_dims, squeeze, atleast_* ----------------------------------------------
@implements(np.expand_dims)
def expand_dims(a: Any, axis: Any) -> Any:
    """``np.expand_dims`` (``axis`` an int or a tuple)."""
    a = _arr(a)
    s = list(_shape_of(a))
    n_new = 1 if _is_int(axis) else len(axis)
    axes = norm_axis(axis, len(s) + n_new)
    for ax in sorted(axes):
        s.insert(ax, 1)
    return reshape_p(a, shape=tuple(s))


@implements(np.squeeze)
def squeeze(a: Any, axis: Any = None) -> Any:
    """``np.squeeze``; squeezing an axis whose length is not 1 is an error."""
    return _squeeze(_arr(a), axis)


def _atleast(arys: tuple, pad: Any) -> Any:
    res = [reshape(a, pad(_shape_of(a))) for a in map(_arr, arys)]
    return res[0] if len(res) == 1 else tuple(res)


@implements(np.atleast_1d)
def atleast_1d(*arys: Any) -> Any:
    """``np.atleast_1d``: 0-d becomes ``(1,)``."""
    return _atleast(arys, lambda s: s or (1,))


@implements(np.atleast_2d)
def atleast_2d(*arys: Any) -> Any:
    """``np.atleast_2d``: ``(N,)`` becomes ``(1, N)``."""
    return _atleast(arys, lambda s: (1,) * (2 - len(s)) + s if len(s) < 2 else s)


@implements(np.atleast_3d)
def atleast_3d(*arys: Any) -> Any:
    """``np.atleast_3d``: ``(N,)`` becomes ``(1, N, 1)``, ``(M, N)`` becomes ``(M, N, 1)``."""
    return _atleast(arys, lambda s: {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}.get(len(s), s))


@implements(np.concatenate)
def concatenate(arrays: Sequence[Any], axis: Any = 0, out: Any = None, *, dtype: Any = None,
                casting: str = "same_kind") -> Any:
    """``np.concatenate``; ``axis=None`` flattens first."""
    no_out("concatenate", out)
    arrays = [_arr(a) for a in arrays]
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    if dtype is not None:
        arrays = [astype(a, dtype) for a in arrays]
    if axis is None:
        arrays, axis = [reshape(a, (-1,)) for a in arrays], 0
    nd = ndim(arrays[0])
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = _one_axis(axis, nd)
    if len(arrays) == 1:
        return arrays[0]
    return concatenate_p(*arrays, axis=axis)


@implements(np.stack)
def stack(arrays: Sequence[Any], axis: int = 0, out: Any = None, *, dtype: Any = None,
          casting: str = "same_kind") -> Any:
    """``np.stack``, as ``expand_dims`` then ``concatenate``."""
    no_out("stack", out)
    arrays = [_arr(a) for a in arrays]
    if not arrays:
        raise ValueError("need at least one array to stack")
    if len({_shape_of(a) for a in arrays}) != 1:
        raise ValueError("all input arrays must have the same shape")
    axis = _one_axis(axis, ndim(arrays[0]) + 1)
    arrays = [_expand_dims(a, axis) for a in arrays]
    if dtype is not None:
        arrays = [astype(a, dtype) for a in arrays]
    return arrays[0] if len(arrays) == 1 else concatenate_p(*arrays, axis=axis)


def _as_list(tup: Any, fn: Any) -> list:
    out = fn(*tup)
    return list(out) if isinstance(out, tuple) else [out]


@implements(np.hstack)
def hstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Any:
    """``np.hstack``: along axis 1, or 0 for 1-d arrays."""
    arrs = _as_list(tup, atleast_1d)
    return concatenate(arrs, axis=0 if ndim(arrs[0]) == 1 else 1, dtype=dtype)


@implements(np.vstack)
def vstack(tup: Sequence[Any], *, dtype: Any = None, casting: str = "same_kind") -> Any:
    """``np.vstack``: along axis 0 of ``atleast_2d``."""
    return concatenate(_as_list(tup, atleast_2d), axis=0, dtype=dtype)


@implements(np.dstack)
def dstack(tup: Sequence[Any]) -> Any:
    """``np.dstack``: along axis 2 of ``atleast_3d``."""
    return concatenate(_as_list(tup, atleast_3d), axis=2)


@implements(np.column_stack)
def column_stack(tup: Sequence[Any]) -> Any:
    """``np.column_stack``: 1-d arrays become columns."""
    arrs = []
    for v in map(_arr, tup):
        s = _shape_of(v)
        arrs.append(reshape(v, (s[0] if s else 1, 1)) if len(s) < 2 else v)
    return concatenate(arrs, axis=1)


# -- split -------------------------------------------------------------------------------
@implements(np.array_split)
def array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list:
    """``np.array_split``: sections may differ in length by one."""
    ary = _arr(ary)
    axis = _one_axis(axis, ndim(ary))
    total = _shape_of(ary)[axis]
    if _is_int(indices_or_sections):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ValueError("number sections must be larger than 0.")
        each, extra = divmod(total, sections)
        bounds = np.cumsum([0] + extra * [each + 1] + (sections - extra) * [each]).tolist()
    else:
        bounds = [0] + [int(i) for i in indices_or_sections] + [total]
    return [getitem(ary, _axis_slice(axis, slice(st, end)))
            for st, end in zip(bounds[:-1], bounds[1:])]


@implements(np.split)
def split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list:
    """``np.split``: an int must divide the axis evenly; a list gives the cut points."""
    ary = _arr(ary)
    if _is_int(indices_or_sections):
        if _shape_of(ary)[_one_axis(axis, ndim(ary))] % int(indices_or_sections):
            raise ValueError("array split does not result in an equal division")
    return array_split(ary, indices_or_sections, axis)


def _split_along(name: str, min_nd: int, axis: int) -> Any:
    def fn(ary: Any, indices_or_sections: Any) -> list:
        ary = _arr(ary)
        if ndim(ary) < min_nd:
            raise ValueError(f"{name} only works on arrays of {min_nd} or more dimensions")
        ax = 0 if name == "hsplit" and ndim(ary) == 1 else axis
        return split(ary, indices_or_sections, ax)
    fn.__name__ = name
    fn.__doc__ = f"``np.{name}``: ``split`` along axis {axis}" + \
        (" (axis 0 for 1-D arrays)." if name == "hsplit" else ".")
    return fn


hsplit = implements(np.hsplit)(_split_along("hsplit", 1, 1))
vsplit = implements(np.vsplit)(_split_along("vsplit", 2, 0))
dsplit = implements(np.dsplit)(_split_along("dsplit", 3, 2))


@implements(np.append)
def append(arr: Any, values: Any, axis: Any = None) -> Any:
    """``np.append``: a ``concatenate`` (of the flattened arrays when ``axis`` is None).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.append(x, 2 * x)))(np.ones(2))
    array([3., 3.])
    """
    arr = _arr(arr)
    if not (is_tracer(values) or hasattr(values, "shape")):  # a list or number: a constant
        values = _xp(arr).asarray(values)         # made on arr's device
    if axis is None:
        return concatenate([reshape(arr, (-1,)), reshape(values, (-1,))])
    return concatenate([arr, values], axis=axis)


# -- tile / repeat -----------------------------------------------------------------------
@implements(np.tile)
def tile(A: Any, reps: Any) -> Any:
    """``np.tile``: a reshape, a broadcast and a reshape."""
    A = _arr(A)
    reps = (int(reps),) if _is_int(reps) else tuple(int(r) for r in reps)
    d = max(len(reps), ndim(A))
    s = (1,) * (d - ndim(A)) + _shape_of(A)
    reps = (1,) * (d - len(reps)) + reps
    if all(r == 1 for r in reps):
        return reshape(A, s)
    inter = tuple(v for pair in zip((1,) * d, s) for v in pair)
    big = tuple(v for pair in zip(reps, s) for v in pair)
    return reshape(broadcast_to(reshape(A, inter), big), tuple(r * n for r, n in zip(reps, s)))


@implements(np.repeat)
def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    """``np.repeat``: an int repeats every element; a sequence gives one count per element."""
    a = _arr(a)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    axis = _one_axis(axis, ndim(a))
    s = _shape_of(a)
    if is_tracer(repeats):
        raise TypeError("np.repeat: repeats must be concrete integers, not a traced value.")
    reps = np.asarray(repeats)
    if reps.dtype.kind not in "iub":
        raise TypeError(f"Cannot cast array data from {reps.dtype} to int64 according to the rule 'safe'")
    if (reps < 0).any():
        raise ValueError("repeats may not contain negative values.")
    if reps.size == 1:
        r = int(reps.reshape(()))
        if r == 1:
            return a
        inter = s[:axis + 1] + (1,) + s[axis + 1:]
        big = s[:axis + 1] + (r,) + s[axis + 1:]
        return reshape(broadcast_to(reshape(a, inter), big), s[:axis] + (s[axis] * r,) + s[axis + 1:])
    if reps.ndim != 1 or reps.shape[0] != s[axis]:
        raise ValueError(f"operands could not be broadcast together with shape ({s[axis]},) "
                         f"({reps.shape[0] if reps.ndim == 1 else reps.shape})")
    if not is_tracer(a):
        return array_module(a).repeat(a, reps, axis=axis)
    return _gather_static(a, np.repeat(np.arange(s[axis]), reps), axis)


# -- gathers with static indices: repeat by counts, the index-based pad modes ------------
def _gather_static(x: Any, idx: Any, axis: int) -> Any:
    """``x`` at positions ``idx`` (a concrete int sequence) along ``axis``.

    The indices are cut into runs of step +1, -1 or 0; each run is one basic slice
    (a broadcast for step 0) and the runs are concatenated. Every piece is a view, so
    the forward pass copies once, and the transposes are those of slicing.
    """
    idx = [int(i) for i in idx]
    if not idx:
        return getitem(x, _axis_slice(axis, slice(0, 0)))
    runs = []  # (start, step, length)
    start, step, length = idx[0], None, 1
    for i in idx[1:]:
        d = i - (start + (step or 0) * (length - 1))
        if step is None and d in (-1, 0, 1):
            step, length = d, 2
        elif step is not None and d == step:
            length += 1
        else:
            runs.append((start, step or 0, length))
            start, step, length = i, None, 1
    runs.append((start, step or 0, length))
    pieces = []
    for st, sp, n in runs:
        if sp == 1:
            pieces.append(getitem(x, _axis_slice(axis, slice(st, st + n))))
        elif sp == -1:
            stop = st - n
            pieces.append(getitem(x, _axis_slice(axis, slice(st, None if stop < 0 else stop, -1))))
        else:
            one = getitem(x, _axis_slice(axis, slice(st, st + 1)))
            s = _shape_of(one)
            pieces.append(one if n == 1 else broadcast_to(one, s[:axis] + (n,) + s[axis + 1:]))
    return pieces[0] if len(pieces) == 1 else concatenate(pieces, axis=axis)


@implements(np.flip)
def flip(m: Any, axis: Any = None) -> Any:
    """``np.flip``: a reversed slice along ``axis`` (all axes for ``None``)."""
    return _flip(_arr(m), axis)


@implements(np.fliplr)
def fliplr(m: Any) -> Any:
    """``np.fliplr``: flip axis 1."""
    m = _arr(m)
    if ndim(m) < 2:
        raise ValueError("Input must be >= 2-d.")
    return _flip(m, 1)


@implements(np.flipud)
def flipud(m: Any) -> Any:
    """``np.flipud``: flip axis 0."""
    m = _arr(m)
    if ndim(m) < 1:
        raise ValueError("Input must be >= 1-d.")
    return _flip(m, 0)


@implements(np.roll)
def roll(a: Any, shift: Any, axis: Any = None) -> Any:
    """``np.roll``: two slices and a concatenate per rolled axis."""
    return _roll(_arr(a), shift, axis)


# -- pad -----------------------------------------------------------------------------------
_INDEX_MODES = ("edge", "reflect", "symmetric", "wrap")


@implements(np.pad)
def pad(array: Any, pad_width: Any, mode: Any = "constant", **kwargs: Any) -> Any:
    """``np.pad`` in modes ``constant``, ``edge``, ``reflect``, ``symmetric`` and ``wrap``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.pad(x, 1, mode="edge") ** 2))(np.array([1.0, 2.0]))
    array([4., 8.])
    """
    array = _arr(array)
    if not is_tracer(array):
        return array_module(array).pad(array, pad_width, mode=mode, **kwargs)
    nd = ndim(array)
    pw = np.asarray(pad_width)
    if pw.dtype.kind not in "iu":
        raise TypeError("`pad_width` must be of integral type.")
    widths = _pad_widths(pw, nd)
    if any(v < 0 for row in widths for v in row):
        raise ValueError("index can't contain negative values")
    if mode == "constant":
        bad = set(kwargs) - {"constant_values"}
        if bad:
            raise ValueError(f"unsupported keyword arguments for mode 'constant': {bad}")
        cv = kwargs.get("constant_values", 0)
        if is_tracer(cv) or (isinstance(cv, (list, tuple)) and
                             any(is_tracer(c) for c in np.ravel(np.asarray(cv, dtype=object)))):
            raise TypeError("np.pad: constant_values must be concrete numbers, not traced values.")
        values = tuple(tuple(v for v in row) for row in np.broadcast_to(np.asarray(cv), (nd, 2)).tolist())
        if all(w == (0, 0) for w in widths):
            return array
        return pad_p(array, widths=widths, values=values)
    if mode not in _INDEX_MODES or (mode in ("reflect", "symmetric") and
                                    kwargs.get("reflect_type", "even") != "even"):
        extra = f" with reflect_type={kwargs.get('reflect_type')!r}" if mode in _INDEX_MODES else ""
        raise NotImplementedError(
            f"np.pad mode {mode!r}{extra} is not supported on traced values; funcflux supports "
            f"'constant', 'edge', 'reflect', 'symmetric' and 'wrap'.")
    for ax, (b, e) in enumerate(widths):
        if b or e:
            n = _shape_of(array)[ax]
            idx = np.pad(np.arange(n), (b, e), mode=mode, **kwargs)  # NumPy's own index map
            array = _gather_static(array, idx, ax)
    return array
