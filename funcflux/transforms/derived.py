"""Jacobians and Hessians, built from the other transforms in one batched pass.

``jacrev`` runs the function once under ``vjp`` and pulls back every basis
vector of the output space at once with ``vmap``; ``jacfwd`` pushes every basis
vector of the input space forward with ``vmap`` of ``jvp``; ``hessian`` is
``jacfwd(jacrev(f))``. For pytrees, the Jacobian has the output's structure
with, at each output leaf, the input's structure holding arrays of shape
``out_leaf.shape + in_leaf.shape`` (JAX's convention).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..core.backend import array_module
from ..core.trace import Tracer
from .. import tree
from . import edge
from .batching import vmap
from .forward import jvp
from .reverse import vjp


def _concrete(x: Any) -> Any:
    while isinstance(x, Tracer):
        x = x.aval
    return x


def _basis(leaves: list) -> tuple[Any, list[tuple], list[int]]:
    shapes = [edge.shape_of(x) for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    dtype = np.result_type(*[edge.dtype_of(x) for x in leaves]) if leaves else np.float64
    xp = array_module(*[_concrete(x) for x in leaves])
    return xp.eye(sum(sizes), dtype=dtype), shapes, sizes


def _split_rows(v: Any, shapes: list[tuple], sizes: list[int], dtypes: list) -> list:
    """A flat vector (possibly batched) cut into leaves of the given shapes."""
    from .. import numpy as fnp
    out, start = [], 0
    for s, n, d in zip(shapes, sizes, dtypes):
        piece = fnp.reshape(v[start:start + n], s)
        out.append(piece if edge.dtype_of(piece) == d else piece.astype(d))
        start += n
    return out


def _assemble(out_def: Any, in_def: Any, blocks: list[list], single: bool) -> Any:
    per_out = []
    for row in blocks:
        t = tree.unflatten(in_def, row)
        per_out.append(t[0] if single else t)
    return tree.unflatten(out_def, per_out)


def jacrev(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian of ``fun`` by reverse mode: one ``vjp``, all rows at once.

    >>> import numpy as np, funcflux as ff
    >>> ff.jacrev(lambda x: x ** 2)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    def jac(*args: Any) -> Any:
        from .. import numpy as fnp
        nums = edge.normalise_argnums("jacrev", argnums, len(args))
        part, dyn = edge.split_args(fun, args, nums)
        out, pullback = vjp(part, *dyn)
        ol, out_def = tree.flatten(out)
        il, in_def = tree.flatten(dyn)
        if len(ol) == 1 and edge.shape_of(ol[0]) in ((), (1,)):
            # One output value (a loss): a single pullback, no vmap over a 1x1 basis. This
            # keeps a batching level out of hessian = jacfwd(jacrev(f)) for scalar f.
            ctl = tree.flatten_up_to(in_def, pullback(tree.unflatten(out_def, [fnp.ones_like(ol[0])])))
            s = edge.shape_of(ol[0])
            blocks = [[None if c is None else fnp.reshape(c, s + edge.shape_of(x))
                       for x, c in zip(il, ctl)]]
            return _assemble(out_def, in_def, blocks, isinstance(argnums, int))
        eye, oshapes, osizes = _basis(ol)
        odtypes = [edge.dtype_of(o) for o in ol]
        cts = vmap(lambda v: pullback(tree.unflatten(out_def, _split_rows(v, oshapes, osizes, odtypes))))(eye)
        ctl = tree.flatten_up_to(in_def, cts)
        blocks = []
        start = 0
        for s, n in zip(oshapes, osizes):
            row = []
            for x, c in zip(il, ctl):
                if c is None:
                    row.append(None)
                else:
                    row.append(fnp.reshape(c[start:start + n], s + edge.shape_of(x)))
            blocks.append(row)
            start += n
        return _assemble(out_def, in_def, blocks, isinstance(argnums, int))

    jac.__name__ = f"jacrev_{getattr(fun, '__name__', 'fun')}"
    return jac


def jacfwd(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian of ``fun`` by forward mode: all columns in one batched ``jvp``.

    >>> import numpy as np, funcflux as ff
    >>> ff.jacfwd(lambda x: np.sin(x))(np.array([0.0, 0.0]))
    array([[1., 0.],
           [0., 1.]])
    """
    def jac(*args: Any) -> Any:
        from .. import numpy as fnp
        nums = edge.normalise_argnums("jacfwd", argnums, len(args))
        part, dyn = edge.split_args(fun, args, nums)
        dyn = edge.promote_ints(dyn)
        il, in_def = tree.flatten(dyn)
        fl = [i for i, x in enumerate(il) if edge.is_float_leaf(x)]
        prim_leaves = [edge.as_primal(il[i]) for i in fl]
        eye, ishapes, isizes = _basis(prim_leaves)
        idtypes = [edge.dtype_of(x) for x in prim_leaves]

        def push(v: Any) -> Any:
            ts: list = [None] * len(il)
            for i, t in zip(fl, _split_rows(v, ishapes, isizes, idtypes)):
                ts[i] = t
            return jvp(part, dyn, tree.unflatten(in_def, ts))

        out, touts = vmap(push, out_axes=(None, -1))(eye)
        ol, out_def = tree.flatten(out)
        tl = tree.flatten_up_to(out_def, touts)
        blocks = []
        for o, t in zip(ol, tl):
            row: list = [None] * len(il)
            start = 0
            for i, s, n in zip(fl, ishapes, isizes):
                row[i] = fnp.reshape(t[..., start:start + n], edge.shape_of(o) + s)
                start += n
            blocks.append(row)
        return _assemble(out_def, in_def, blocks, isinstance(argnums, int))

    jac.__name__ = f"jacfwd_{getattr(fun, '__name__', 'fun')}"
    return jac


def hessian(fun: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Hessian of a scalar ``fun``: ``jacfwd(jacrev(fun))``.

    >>> import numpy as np, funcflux as ff
    >>> ff.hessian(lambda x: np.sum(x ** 3))(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    return jacfwd(jacrev(fun, argnums), argnums)
