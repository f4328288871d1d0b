"""Walks over trees of updates: ``apply_updates``, ``global_norm`` and the helpers below them.

``None`` is how a tree says "no update here": ``ff.grad`` gives ``None`` for
integer leaves, ``optim.step`` gives it for frozen and non-trainable arrays.
Every transform passes a ``None`` update through untouched and leaves the
matching state as it was; :func:`apply_updates` leaves that parameter alone.
Trees are therefore flattened with ``None`` as a leaf (``funcflux.tree`` on
its own reads ``None`` as an empty container, which would shift the leaves of
the updates against those of the state).

>>> import numpy as np
>>> from funcflux import optim
>>> params = {"w": np.array([1.0, 2.0]), "n": 3}
>>> optim.apply_updates(params, {"w": np.array([0.5, -1.0]), "n": None})
{'n': 3, 'w': array([1.5, 1. ])}
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import functors, tree
from ..core.backend import array_module
from ..transforms.edge import is_float_leaf
from .checks import same_shape, shape_error

__all__ = ["apply_updates", "global_norm"]


def _is_none(x: Any) -> bool:
    return x is None


def flatten(updates: Any) -> tuple[list, tree.PyTreeDef]:
    """Leaves of a tree with ``None`` kept as a leaf (a skipped update)."""
    return tree.flatten(updates, is_leaf=_is_none)


class _Mismatch(Exception):
    pass


def align(td: tree.PyTreeDef, x: Any, name: str = "tree") -> list:
    """The parts of ``x`` at the leaves of ``td``; a ``None`` subtree gives ``None`` for each.

    Like ``tree.flatten_up_to``, but a ``None`` where ``td`` has a whole
    subtree stands for "no update anywhere below" (a layer without gradient).
    """
    out: list = []
    try:
        _align(td, x, out)
    except _Mismatch:
        tree.flatten_up_to(td, x, name)  # raises the error that names the path
        raise ValueError(f"{name} does not match the structure {td}") from None
    return out


def _align(td: tree.PyTreeDef, x: Any, out: list) -> None:
    if td.node is None:
        out.append(x)
        return
    if x is None:
        if td.node is not type(None):
            out.extend([None] * td.num_leaves)
        return
    if type(x) is not td.node:
        raise _Mismatch
    children, aux = tree._node_type(x).flatten(x)
    children = list(children)
    if len(children) != len(td.children):
        raise _Mismatch
    try:
        same = bool(aux == td.aux)
    except Exception:  # arrays in configuration: the child count was checked, accept
        same = True
    if not same:
        raise _Mismatch
    for c, sub in zip(children, td.children):
        _align(sub, c, out)


def path_at(x: Any, i: int) -> str:
    """The path of leaf ``i`` of ``x`` (``None`` a leaf), as ``tree.keystr`` writes it."""
    return tree.keystr(tree.flatten_with_path(x, is_leaf=_is_none)[0][i][0])


def map_updates(f: Callable[..., Any], updates: Any) -> Any:
    """``f(u)`` at every update that is not ``None``; ``None`` stays ``None``."""
    lv, td = flatten(updates)
    return tree.unflatten(td, [None if u is None else f(u) for u in lv])


def zeros_like(params: Any) -> Any:
    """Zeros for every floating leaf, ``None`` for the rest (they are never updated)."""
    return full_like(params, 0.0)


def full_like(params: Any, value: float) -> Any:
    """``value`` in the shape and dtype of every floating leaf, ``None`` for the rest."""
    lv, td = flatten(params)
    return tree.unflatten(td, [array_module(p).full_like(p, value)
                               if p is not None and is_float_leaf(p) else None for p in lv])


def sqrt(x: Any) -> Any:
    return array_module(x).sqrt(x)


def global_norm(updates: Any) -> float:
    """The L2 norm of all (non-``None``) leaves together, as a Python float.

    Exact to the leaves' precision at any magnitude: squares that would
    overflow or underflow the leaves' dtype (float16 gradients above 256 or
    below 1e-4, float32 above 1e19) are rescaled by the largest element, so
    the norm is ``inf`` or ``nan`` only when a leaf holds an ``inf`` or a
    ``nan`` (``nan`` wins). Complex leaves count with their magnitude.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.global_norm({"a": np.array([3.0]), "b": np.array([4.0]), "c": None})
    5.0
    >>> optim.global_norm({"h": np.full(4, 300.0, np.float16)})  # 300**2 overflows float16
    600.0
    """
    leaves = [u for u in flatten(updates)[0] if u is not None]
    total = 0.0
    with np.errstate(over="ignore"):  # an overflow is caught below, not warned about
        for u in leaves:
            v = _real_wide(u)
            total += float((v * v).sum())
    if 1e-20 < total < math.inf:  # no square can have overflowed or (noticeably) underflowed
        return math.sqrt(total)
    # Rare: zero, tiny, overflowed or non-finite. Scale by the largest magnitude.
    tops = [float(abs(u).max()) for u in leaves if u.size]
    if any(math.isnan(t) for t in tops):
        return math.nan
    top = max(tops, default=0.0)
    if top == 0.0 or top == math.inf:
        return top
    total = 0.0
    for u in leaves:
        v = _real_wide(abs(u)) / top  # every element in [0, 1]: the squares are safe
        total += float((v * v).sum())
    return top * math.sqrt(total)


def _real_wide(u: Any) -> Any:
    """``u`` as real floats of at least 32 bits (magnitudes of complex; float16 and ints
    widened, so that their squares and sums stay in range)."""
    if u.dtype.kind == "c":
        u = abs(u)
    if u.dtype.kind != "f" or u.dtype.itemsize < 4:
        u = u.astype(array_module(u).float32 if u.dtype.kind == "f" else "float64")
    return u


def add(p: Any, u: Any) -> Any:
    """``p + u`` in ``p``'s dtype (a float64 update does not promote a float32 parameter)."""
    new = p + u
    d = getattr(p, "dtype", None)
    if d is not None and getattr(new, "dtype", d) != d:
        new = new.astype(d)
    return new


def trainable_flags(params: Any) -> list[bool]:
    """One flag per leaf (``None`` a leaf): False inside a functor's non-trainable children."""
    out: list[bool] = []
    _trainable(params, True, out)
    return out


def _trainable(x: Any, ok: bool, out: list) -> None:
    nt = None if x is None else tree._node_type(x)
    if nt is None:
        out.append(ok)
        return
    children, aux = nt.flatten(x)
    if functors.is_functor(x):
        names = functors.trainable(x)
        for c, k in zip(children, nt.keys(x, aux)):
            _trainable(c, ok and getattr(k, "name", None) in names, out)
    else:
        for c in children:
            _trainable(c, ok, out)


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates`` leaf by leaf, keeping each parameter's dtype.

    A ``None`` update leaves its parameter unchanged, and so does every
    non-trainable child of a functor class (``@ff.functor(trainable=...)``),
    whatever its update says.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.apply_updates({"w": np.float32([1, 2])}, {"w": np.array([0.5, 0.5])})["w"]
    array([1.5, 2.5], dtype=float32)
    """
    lv, td = flatten(params)
    us = align(td, updates, "updates")
    flags = trainable_flags(params)
    out = []
    for i, (p, u, ok) in enumerate(zip(lv, us, flags)):
        if u is None or not ok:
            out.append(p)
            continue
        if not same_shape(u, p):
            raise shape_error("apply_updates", u, p, path_at(params, i))
        out.append(add(p, u))
    return tree.unflatten(td, out)
