"""Collectives for ``vmap(..., axis_name=...)``: ``psum``, ``pmean``, ``pmax``, ``pmin``,
``all_gather`` and ``axis_index`` (JAX's names and semantics; re-exported by ``ff.lax``).

Inside ``ff.vmap(f, axis_name="i")`` the members of the batch can see one another:
``psum(x, "i")`` is the sum of ``x`` over the members, the same value in each. A tuple
of names reduces over several nested axes at once. Each function looks its names up
among the ``vmap`` calls it runs inside (innermost first) and binds one collective
primitive per name (``funcflux/ops/collectives.py``); everything else (``grad`` and
``jvp`` through them, ``vmap`` over them, ``jit`` around them) is the primitives'
rules. Under ``vmap(grad(f), axis_name=...)`` each member gets the derivative of the
sum of ``f`` over the members (JAX's convention: ``psum``'s transpose is ``psum``).

Across processes: these collectives never leave the process. When the data are
spread over MPI ranks, reduce the arrays (gradients, metrics) between steps with
``funcflux.distributed.allreduce(tree, op="sum" | "mean" | "max" | "min")``, outside
any transform; a named ``vmap`` axis is never the MPI world.
"""
from __future__ import annotations

from typing import Any, Hashable, Sequence

from ..ops.collectives import (all_gather_p, axis_index_p, pmax_p, pmin_p, psum_p)
from ..ops.common import as_array, ndim, shape
from .. import tree
from .batching import BatchTrace, bound_axis

__all__ = ["psum", "pmean", "pmax", "pmin", "all_gather", "axis_index"]

AxisName = Hashable | Sequence[Hashable]


def _traces(fn: str, axis_name: AxisName) -> list[BatchTrace]:
    names = tuple(axis_name) if isinstance(axis_name, (tuple, list)) else (axis_name,)
    if not names:
        raise ValueError(f"{fn}: axis_name is an empty tuple; name at least one vmap axis.")
    return [bound_axis(fn, n) for n in names]


def _reduce(prim: Any, fn: str, x: Any, axis_name: AxisName) -> Any:
    traces = _traces(fn, axis_name)

    def one(leaf: Any) -> Any:
        leaf = as_array(leaf)
        for t in traces:
            leaf = prim(leaf, axis=t)
        return leaf
    return tree.map(one, x)


def psum(x: Any, axis_name: AxisName) -> Any:
    """The sum of ``x`` (a pytree) over the members of the named ``vmap`` axis (or axes).

    A value that does not vary along the axis is multiplied by the axis size
    (``psum(1, "i")`` is the batch size).

    >>> import numpy as np, funcflux as ff
    >>> ff.vmap(lambda x: ff.lax.psum(x, "i"), axis_name="i")(np.array([1.0, 2.0, 3.0]))
    array([6., 6., 6.])
    """
    return _reduce(psum_p, "psum", x, axis_name)


def pmean(x: Any, axis_name: AxisName) -> Any:
    """The mean of ``x`` (a pytree) over the members of the named ``vmap`` axis (or axes).

    >>> import numpy as np, funcflux as ff
    >>> ff.vmap(lambda x: x - ff.lax.pmean(x, "i"), axis_name="i")(np.array([1.0, 2.0, 6.0]))
    array([-2., -1.,  3.])
    """
    traces = _traces("pmean", axis_name)
    n = 1
    for t in traces:
        n *= t.axis_size
    return tree.map(lambda s: s / n, _reduce(psum_p, "pmean", x, axis_name))


def pmax(x: Any, axis_name: AxisName) -> Any:
    """The largest value of ``x`` (a pytree) over the members of the named axis (or axes).

    Tied members share the derivative equally, as with ``np.max``.

    >>> import numpy as np, funcflux as ff
    >>> ff.vmap(lambda x: ff.lax.pmax(x, "i"), axis_name="i")(np.array([1.0, 5.0, 3.0]))
    array([5., 5., 5.])
    """
    return _reduce(pmax_p, "pmax", x, axis_name)


def pmin(x: Any, axis_name: AxisName) -> Any:
    """The smallest value of ``x`` (a pytree) over the members of the named axis (or axes).

    >>> import numpy as np, funcflux as ff
    >>> ff.vmap(lambda x: ff.lax.pmin(x, "i"), axis_name="i")(np.array([1.0, 5.0, 3.0]))
    array([1., 1., 1.])
    """
    return _reduce(pmin_p, "pmin", x, axis_name)


def all_gather(x: Any, axis_name: AxisName, *, axis: int = 0, tiled: bool = False) -> Any:
    """Every member's ``x`` (a pytree), stacked along a new axis ``axis``: each member sees
    the whole batch. With ``tiled=True`` the members' values are concatenated along the
    existing axis ``axis`` instead. A tuple of names gathers over those axes, the first
    name the slowest-varying.

    >>> import numpy as np, funcflux as ff
    >>> ff.vmap(lambda x: ff.lax.all_gather(x, "i"), axis_name="i")(np.array([1.0, 2.0]))
    array([[1., 2.],
           [1., 2.]])
    """
    traces = _traces("all_gather", axis_name)
    from .. import numpy as fnp

    def one(leaf: Any) -> Any:
        leaf = as_array(leaf)
        nd = ndim(leaf)
        hi = nd - 1 if tiled else nd
        if not -hi - 1 <= axis <= hi:
            raise ValueError(f"all_gather: axis={axis} is out of range for a value of shape "
                             f"{shape(leaf)}{' with tiled=True' if tiled else ''} (valid: "
                             f"{-hi - 1}..{hi}).")
        a = axis % (hi + 1)
        for t in reversed(traces):  # the last name innermost: the first name varies slowest
            leaf = all_gather_p(leaf, axis=t, gather_axis=a)
        s = shape(leaf)
        k = len(traces) + (1 if tiled else 0)
        if k > 1:
            merged = 1
            for m in s[a:a + k]:
                merged *= m
            leaf = fnp.reshape(leaf, s[:a] + (merged,) + s[a + k:])
        return leaf
    return tree.map(one, x)


def axis_index(axis_name: AxisName) -> Any:
    """Each member's index (``int32``) along the named ``vmap`` axis; for a tuple of names,
    the index in the flattened axes, the first name slowest-varying.

    >>> import numpy as np, funcflux as ff
    >>> ff.vmap(lambda x: x * ff.lax.axis_index("i"), axis_name="i")(np.ones(3))
    array([0., 1., 2.])
    """
    idx = None
    for t in _traces("axis_index", axis_name):
        i = axis_index_p(axis=t)
        idx = i if idx is None else idx * t.axis_size + i
    return idx
