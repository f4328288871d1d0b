"""NumPy's indexing functions on traced values: ``take``, ``diagonal``, ``triu``, ``select``...

Each keeps NumPy's signature and errors and binds the primitives of
``funcflux.ops.indexing`` (``getitem``, the scatters). ``getitem``, ``index_add``
and ``index_update`` are the binders themselves. NumPy's in-place writers
(``np.put``, ``x[idx] = v``...) are refused: values are immutable in a transform.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.backend import array_module
from ..core.dispatch import implements
from ..core.trace import Tracer
from ..ops.base import astype, sum as _sum
from ..ops.common import ndim, no_out, norm_axis, shape
from ..ops.elementwise import maximum, minimum, mod, where_p
from ..ops.indexing import (_concrete, _diag_iotas, _xp, diagonal as _diagonal, getitem,
                            index_add, index_update, scatter_add_p,
                            take_along_axis as _take_along_axis)
from ._shape import reshape

__all__ = ["getitem", "take", "take_along_axis", "diagonal", "diag", "trace", "triu", "tril",
           "nonzero", "argwhere", "flatnonzero", "index_update", "index_add", "select"]

IMMUTABLE = (
    "{what}: arrays are immutable inside transforms (grad, jvp, vmap, ...); a traced value "
    "cannot be written into. Build a new array instead: fnp.index_update(x, idx, values) "
    "for x[idx] = values, fnp.index_add(x, idx, values) for x[idx] += values, or "
    "np.where(mask, values, x)."
)


@implements(np.take)
def take(a: Any, indices: Any, axis: int | None = None, out: Any = None,
         mode: str = "raise") -> Any:
    """``np.take``: ``a[..., indices, ...]`` along ``axis`` (flattened when ``None``)."""
    no_out("take", out)
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    axis = norm_axis(axis, ndim(a))[0]
    n = shape(a)[axis]
    if mode == "wrap":
        indices = mod(indices, n) if isinstance(indices, Tracer) else np.mod(indices, n)
    elif mode == "clip":
        indices = (minimum(maximum(indices, 0), n - 1) if isinstance(indices, Tracer)
                   else np.clip(indices, 0, n - 1))
    elif mode != "raise":
        raise ValueError(f"take: mode must be 'raise', 'wrap' or 'clip', not {mode!r}")
    return getitem(a, (slice(None),) * axis + (indices,))


@implements(np.select)
def select(condlist: Any, choicelist: Any, default: Any = 0) -> Any:
    """``np.select``: the first true condition picks its choice (nested ``where`` calls).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.select([x < 0, x > 1], [-x, x ** 2], 0.0)))(
    ...     np.array([-1.0, 0.5, 2.0]))
    array([-1.,  0.,  4.])
    """
    condlist, choicelist = list(condlist), list(choicelist)
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    if not condlist:
        raise ValueError("select with an empty condition list is not possible")

    def dt(v: Any) -> Any:
        d = getattr(v, "dtype", None)
        return np.asarray(v).dtype if d is None else d

    for i, c in enumerate(condlist):
        if dt(c) != np.bool_:
            raise TypeError(f"invalid entry {i} in condlist: should be boolean ndarray")
    out = default
    for c, v in zip(condlist[::-1], choicelist[::-1]):
        out = where_p(c, v, out)
    # Python scalars stay weakly typed (NEP 50), as in NumPy's own select.
    want = np.result_type(*[v if type(v) in (int, float, complex) else dt(v)
                            for v in choicelist + [default]])
    return out if dt(out) == want else astype(out, want)


@implements(np.take_along_axis)
def take_along_axis(arr: Any, indices: Any, axis: int | None = -1) -> Any:
    """``np.take_along_axis``: gather along ``axis`` with per-position indices."""
    if axis is None:
        arr, axis = reshape(arr, (-1,)), 0
    if not isinstance(indices, Tracer) and not hasattr(indices, "dtype"):
        indices = np.asarray(indices)
    if getattr(indices, "dtype", np.dtype(int)).kind not in "iu":
        raise IndexError("`indices` must be an integer array")
    if ndim(indices) != ndim(arr):
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    return _take_along_axis(arr, indices, axis)


@implements(np.diagonal)
def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """``np.diagonal``: the diagonal becomes the last axis."""
    return _diagonal(a, offset, axis1, axis2)


@implements(np.diag)
def diag(v: Any, k: int = 0) -> Any:
    """``np.diag``: a 1-D array onto the ``k``-th diagonal, or a 2-D array's diagonal."""
    s = shape(v)
    if len(s) == 2:
        return _diagonal(v, k)
    if len(s) != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = s[0] + abs(int(k))
    i1, i2 = _diag_iotas(n, n, int(k))
    return scatter_add_p(v, shape=(n, n), idx=(i1, i2))


@implements(np.trace)
def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None,
          out: Any = None) -> Any:
    """``np.trace``: the sum of ``diagonal``."""
    no_out("trace", out)
    d = _diagonal(a, offset, axis1, axis2)
    return _sum(d if dtype is None else astype(d, dtype), axis=-1)


def _tri_mask(a: Any, k: int, upper: bool) -> Any:
    s = shape(a)[-2:]
    n, m = (s[0], s[1]) if len(s) == 2 else (s[0], s[0])
    xp = _xp(a)
    rows = xp.arange(n).reshape(n, 1)
    cols = xp.arange(m).reshape(1, m)
    return cols - rows >= k if upper else cols - rows <= k


def _zero(a: Any) -> Any:
    return _xp(a).zeros((), dtype=getattr(a, "dtype", None) or np.result_type(a))


@implements(np.triu)
def triu(m: Any, k: int = 0) -> Any:
    """``np.triu``: zeros below the ``k``-th diagonal of the last two axes."""
    return where_p(_tri_mask(m, int(k), True), m, _zero(m))


@implements(np.tril)
def tril(m: Any, k: int = 0) -> Any:
    """``np.tril``: zeros above the ``k``-th diagonal of the last two axes."""
    return where_p(_tri_mask(m, int(k), False), m, _zero(m))


@implements(np.nonzero)
def nonzero(a: Any) -> tuple:
    """``np.nonzero`` of a concrete value (its output shape depends on the values)."""
    c = _concrete(a, "nonzero")
    return array_module(c).nonzero(c)


@implements(np.argwhere)
def argwhere(a: Any) -> Any:
    c = _concrete(a, "argwhere")
    return array_module(c).argwhere(c)


@implements(np.flatnonzero)
def flatnonzero(a: Any) -> Any:
    c = _concrete(a, "flatnonzero")
    return array_module(c).flatnonzero(c)


def _immutable(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TypeError(IMMUTABLE.format(what=name))
    return refuse


for _f in (np.put, np.put_along_axis, np.place, np.putmask, np.fill_diagonal, np.copyto):
    implements(_f)(_immutable(f"np.{_f.__name__}"))
del _f


def _setitem(self: Tracer, index: Any, value: Any) -> None:
    """``Tracer.__setitem__`` (installed by ``funcflux.numpy``): item assignment is refused."""
    raise TypeError(IMMUTABLE.format(what="x[idx] = value"))
