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
from ..core.trace import module_value
from .. import tree
from . import edge
from .batching import vmap
from .forward import jvp
from .reverse import vjp


def _basis(leaves: list) -> tuple[Any, list[tuple], list[int]]:
    shapes = [edge.shape_of(x) for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    dtype = np.result_type(*[edge.dtype_of(x) for x in leaves]) if leaves else np.float64
    xp = array_module(*[module_value(x) for x in leaves])
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


def _float0_blocks(ol: list, il: list, allow_int: bool) -> list[list]:
    """Jacobian blocks when no input leaf is differentiable: ``float0`` zeros or ``None``."""
    return [[np.zeros(edge.shape_of(o) + edge.shape_of(x), edge.float0)
             if allow_int and edge.is_int_leaf(x) else None for x in il] for o in ol]


def _finish(out_def: Any, in_def: Any, blocks: list[list], single: bool, il: list,
            ol: list, allow_int: bool) -> Any:
    """Fill ``float0`` blocks for integer leaves, make every block an ordinary array."""
    flat = []
    for o, row in zip(ol, blocks):
        for j, (x, b) in enumerate(zip(il, row)):
            if b is None and allow_int and edge.is_int_leaf(x):
                row[j] = np.zeros(edge.shape_of(o) + edge.shape_of(x), edge.float0)
        flat.extend(row)
    flat = edge.owned(flat, il)
    k = len(il)
    return _assemble(out_def, in_def, [flat[r * k:(r + 1) * k] for r in range(len(ol))],
                     single)


def jacrev(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
           holomorphic: bool = False, allow_int: bool = False) -> Callable:
    """The Jacobian of ``fun`` by reverse mode: one ``vjp``, all rows at once.

    As in JAX, the outputs must be real unless ``holomorphic=True`` (then inputs
    and outputs are complex and the result holds ``df_i/dz_j``); ``allow_int``
    gives integer inputs ``float0`` zero blocks instead of an error. With
    ``has_aux=True`` the function returns ``(output, aux)`` and the Jacobian
    function returns ``(jacobian, aux)``; ``aux`` is not differentiated.

    >>> import numpy as np, funcflux as ff
    >>> ff.jacrev(lambda x: x ** 2)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    >>> ff.jacrev(lambda x: (x ** 2, {"sum": np.sum(x)}), has_aux=True)(np.array([3.0]))
    (array([[6.]]), {'sum': array(3.)})
    """
    return _jacrev(fun, argnums, holomorphic, allow_int, "jacrev", has_aux)


def _aux_pair(fn: str, out: Any) -> tuple:
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{fn}: has_aux=True needs the function to return a pair (output, "
                        f"aux); it returned {type(out).__name__}.")
    return out


def _jacrev(fun: Callable, argnums: int | Sequence[int], holomorphic: bool, allow_int: bool,
            fn: str, has_aux: bool = False) -> Callable:
    def jac(*args: Any) -> Any:
        if has_aux:
            aux: list = []
            return _jac(*args, aux=aux), tree.map(edge.as_output, aux[0])
        return _jac(*args)

    def _jac(*args: Any, aux: list | None = None) -> Any:
        from .. import numpy as fnp
        nums = edge.normalise_argnums(fn, argnums, len(args))
        part, dyn = edge.split_args(fun, args, nums)
        dyn = edge.promote_ints(dyn)
        edge.check_inputs(fn, nums, dyn, holomorphic, allow_int)
        il, in_def = tree.flatten(dyn)
        single = isinstance(argnums, int)
        if not any(edge.is_float_leaf(x) for x in il):  # allow_int, integers only
            out = part(*dyn)
            if aux is not None:
                out, a = _aux_pair(fn, out)
                aux.append(a)
            ol, out_def = tree.flatten(out)
            return _finish(out_def, in_def, _float0_blocks(ol, il, allow_int), single, il,
                           ol, allow_int)
        if aux is None:
            out, pullback = vjp(part, *dyn)
        else:
            out, pullback, a = vjp(part, *dyn, has_aux=True)
            aux.append(a)
        ol, out_def = tree.flatten(out)
        for k, o in enumerate(ol):
            _check_rev_output(fn, holomorphic, o, k)
        if len(ol) == 1 and edge.shape_of(ol[0]) in ((), (1,)):
            # One output value (a loss): a single pullback, no vmap over a 1x1 basis. This
            # keeps a batching level out of hessian = jacfwd(jacrev(f)) for scalar f.
            ctl = tree.flatten_up_to(in_def, pullback(tree.unflatten(out_def, [fnp.ones_like(ol[0])])))
            s = edge.shape_of(ol[0])
            blocks = [[None if c is None else fnp.reshape(c, s + edge.shape_of(x))
                       for x, c in zip(il, ctl)]]
            return _finish(out_def, in_def, blocks, single, il, ol, allow_int)
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
        return _finish(out_def, in_def, blocks, single, il, ol, allow_int)

    jac.__name__ = f"{fn}_{getattr(fun, '__name__', 'fun')}"
    return jac


def _check_rev_output(fn: str, holomorphic: bool, o: Any, k: int) -> None:
    """JAX's rule for reverse-mode Jacobians: real floating outputs, or complex ones with
    ``holomorphic=True``; integer outputs have no Jacobian to pull back."""
    edge.check_output(fn, holomorphic, o, f" leaf {k}")
    if not edge.is_float_leaf(o):
        raise TypeError(f"{fn}: output leaf {k} has dtype {edge.dtype_of(o)}, which has no "
                        "derivative; return floating-point values (or use ff.vjp).")


def jacfwd(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
           holomorphic: bool = False, allow_int: bool = False) -> Callable:
    """The Jacobian of ``fun`` by forward mode: all columns in one batched ``jvp``.

    As in JAX, complex inputs need ``holomorphic=True`` (then the result holds
    ``df_i/dz_j``); for other functions of complex inputs use ``jacrev`` or
    ``jvp``. ``allow_int`` (an extension: JAX's jacfwd has none) gives integer
    inputs ``float0`` zero blocks instead of an error. With ``has_aux=True`` the
    function returns ``(output, aux)`` and the Jacobian function returns
    ``(jacobian, aux)``; ``aux`` is computed once, from the primals.

    >>> import numpy as np, funcflux as ff
    >>> ff.jacfwd(lambda x: np.sin(x))(np.array([0.0, 0.0]))
    array([[1., 0.],
           [0., 1.]])
    >>> ff.jacfwd(lambda x: (x ** 2, np.sum(x)), has_aux=True)(np.array([3.0]))
    (array([[6.]]), array(3.))
    """
    return _jacfwd(fun, argnums, holomorphic, allow_int, "jacfwd", has_aux)


def _jacfwd(fun: Callable, argnums: int | Sequence[int], holomorphic: bool, allow_int: bool,
            fn: str, has_aux: bool = False) -> Callable:
    def jac(*args: Any) -> Any:
        if has_aux:
            aux: list = []
            return _jac(*args, aux=aux), tree.map(edge.as_output, aux[0])
        return _jac(*args)

    def _jac(*args: Any, aux: list | None = None) -> Any:
        from .. import numpy as fnp
        nums = edge.normalise_argnums(fn, argnums, len(args))
        part, dyn = edge.split_args(fun, args, nums)
        dyn = edge.promote_ints(dyn)
        edge.check_inputs(fn, nums, dyn, holomorphic, allow_int, forward=True)
        il, in_def = tree.flatten(dyn)
        single = isinstance(argnums, int)
        fl = [i for i, x in enumerate(il) if edge.is_float_leaf(x)]
        if not fl:  # allow_int, integers only
            out = part(*dyn)
            if aux is not None:
                out, a = _aux_pair(fn, out)
                aux.append(a)
            ol, out_def = tree.flatten(out)
            return _finish(out_def, in_def, _float0_blocks(ol, il, allow_int), single, il,
                           ol, allow_int)
        prim_leaves = [edge.as_primal(il[i]) for i in fl]
        eye, ishapes, isizes = _basis(prim_leaves)
        idtypes = [edge.dtype_of(x) for x in prim_leaves]

        def push(v: Any) -> Any:
            ts: list = [None] * len(il)
            for i, t in zip(fl, _split_rows(v, ishapes, isizes, idtypes)):
                ts[i] = t
            return jvp(part, dyn, tree.unflatten(in_def, ts), has_aux=aux is not None)

        if aux is None:
            out, touts = vmap(push, out_axes=(None, -1))(eye)
        else:
            out, touts, a = vmap(push, out_axes=(None, -1, None))(eye)
            aux.append(a)
        ol, out_def = tree.flatten(out)
        if holomorphic:
            for k, o in enumerate(ol):
                edge.check_output(fn, True, o, f" leaf {k}")
        tl = tree.flatten_up_to(out_def, touts)
        blocks = []
        for o, t in zip(ol, tl):
            row: list = [None] * len(il)
            start = 0
            for i, s, n in zip(fl, ishapes, isizes):
                row[i] = fnp.reshape(t[..., start:start + n], edge.shape_of(o) + s)
                start += n
            blocks.append(row)
        return _finish(out_def, in_def, blocks, single, il, ol, allow_int)

    jac.__name__ = f"{fn}_{getattr(fun, '__name__', 'fun')}"
    return jac


def hessian(fun: Callable, argnums: int | Sequence[int] = 0,
            holomorphic: bool = False) -> Callable:
    """The Hessian of a scalar ``fun``: ``jacfwd(jacrev(fun))``.

    ``holomorphic=True`` differentiates a holomorphic function of complex
    inputs twice (as in JAX), giving ``d^2f/dz_i dz_j``.

    >>> import numpy as np, funcflux as ff
    >>> ff.hessian(lambda x: np.sum(x ** 3))(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    return _jacfwd(_jacrev(fun, argnums, holomorphic, False, "hessian"), argnums, holomorphic,
                   False, "hessian")
