"""Structured control flow with JAX's signatures: ``cond``, ``switch``, ``fori_loop``,
``while_loop`` and ``scan``.

Outside ``vmap`` they run as the Python they stand for (one branch, one loop), so
``grad``, ``jvp`` and every transform built on them differentiate them like any
other code (as JAX does under ``jax.disable_jit``). What they add over plain Python:

- **vmap**: a predicate, branch index or loop bound that differs across the batch is
  handled the way JAX does it. ``cond`` and ``switch`` run every branch and select
  each member's result with ``np.where``; ``while_loop`` (and ``fori_loop`` with
  batched bounds) runs until every member is done, and a member that has finished
  keeps its carry. In plain Python, ``if`` on a batched value is an error.
- **checks**: a loop's body must return a carry of the type it got (same pytree
  structure, shapes and dtypes), ``cond``'s and ``switch``'s branches must return the
  same types, ``scan``'s inputs must share their leading length: an error names the
  leaf and both types, as JAX's does.
- **JAX's rule for reverse mode**: ``while_loop``, whose trip count depends on values,
  is differentiable in forward mode only; ``grad`` through it raises and says to use
  ``fori_loop`` with fixed bounds or ``scan``. This keeps code portable to JAX and to a
  staged funcflux.

>>> import numpy as np, funcflux as ff
>>> def power_sum(x, n):
...     return ff.lax.fori_loop(0, n, lambda i, acc: acc + x ** i, 0.0)
>>> float(ff.grad(power_sum)(2.0, 4))          # d/dx (1 + x + x^2 + x^3) at 2
17.0
>>> ff.vmap(lambda p, x: ff.lax.cond(p, np.sin, np.cos, x))(np.array([True, False]),
...                                                        np.array([0.0, 0.0]))
array([0., 1.])
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import numpy as np

import funcflux.numpy as fnp

from . import tree
from .core.backend import array_module
from .core.trace import Tracer, concrete, module_value
from .ops.common import as_array as _scalar, shape as _shape
from .transforms.batching import BatchTracer
from .transforms.reverse import RTracer
from .transforms.staging import StagedTracer, stage_scan, stage_switch, stage_while

__all__ = ["cond", "switch", "fori_loop", "while_loop", "scan",
           "psum", "pmean", "pmax", "pmin", "all_gather", "axis_index"]

WHILE_REVERSE = (
    "lax.{fn}: reverse-mode differentiation (grad, vjp, jacrev) does not go through a "
    "while_loop, whose number of steps depends on values (as in JAX). Use lax.fori_loop "
    "with fixed Python-int bounds or lax.scan, or forward mode (jvp, jacfwd)."
)
CARRY_TYPE = (
    "lax.{fn}: {what} must have the same type as {ref}, but at {path} it has {got} where "
    "{ref} has {want}. Cast the value (x.astype(...)) or start from the type the {part} "
    "returns (e.g. a float init_val, 0.0 instead of 0)."
)
BRANCH_TYPE = (
    "lax.{fn}: every branch must return the same type, but at {path} branch {i} returns "
    "{got} and branch 0 returns {want}."
)
PRED_SHAPE = ("lax.cond: the predicate must be a scalar, got shape {shape}. Reduce it first "
              "(np.all, np.any), or use np.where for an elementwise choice.")
INDEX_SHAPE = "lax.switch: the index must be a scalar integer, got shape {shape}."
SCAN_LENGTH = ("lax.scan: every leaf of xs must have the same leading length{also}, got "
               "{lengths}.")
SCAN_NO_LENGTH = "lax.scan: with no xs, give length= (the number of steps)."


# -- what a value is, through every level of tracers --------------------------------------
def _levels(x: Any) -> list:
    """The tracers around ``x``, outermost first (``[]`` for a plain value)."""
    out = []
    while isinstance(x, Tracer):
        out.append(x)
        if type(x) is StagedTracer:  # inside jit: no value below (the bottom level)
            break
        x = x.value if isinstance(x, BatchTracer) else x.aval
    return out


def _batched(x: Any) -> bool:
    """Whether ``x`` differs across some ``vmap`` batch (at any level of nesting)."""
    return any(isinstance(t, BatchTracer) for t in _levels(x))


def _reverse_traced(xs: Sequence[Any]) -> bool:
    return any(isinstance(t, RTracer) and not t._trace.dead
               for x in xs for t in _levels(x))


def _any_member(pred: Any) -> bool:
    """True if ``pred`` holds for at least one member of every enclosing batch."""
    while isinstance(pred, Tracer) and type(pred) is not StagedTracer:
        pred = np.any(pred.value) if isinstance(pred, BatchTracer) else pred.aval
    return bool(pred)  # (a staged predicate refuses, naming the line)


def _type(x: Any) -> tuple:
    """``(shape, dtype)`` of a leaf; a Python number has no fixed dtype (``None``)."""
    if type(x) in (bool, int, float, complex):
        return (), None
    d = getattr(x, "dtype", None)
    return _shape(x), (np.dtype(d) if d is not None else np.asarray(x).dtype)


def _describe(t: tuple) -> str:
    s, d = t
    return f"shape {s} and a Python number's dtype" if d is None else f"shape {s}, dtype {d}"


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and (a[1] is None or b[1] is None or a[1] == b[1])


def _check_carry(fn: str, new: Any, old: Any, what: str, ref: str, part: str) -> None:
    """``new`` (what a body returned) against ``old`` (the carry it got)."""
    new_leaves, new_def = tree.flatten(new)
    old_paths = tree.leaves_with_path(old)
    old_def = tree.structure(old)
    if new_def != old_def:
        raise TypeError(f"lax.{fn}: {what} must have the same pytree structure as {ref}: "
                        f"got {new_def}, expected {old_def}.")
    for (path, o), n in zip(old_paths, new_leaves):
        tn, to = _type(n), _type(o)
        if not _same(tn, to):
            raise TypeError(CARRY_TYPE.format(fn=fn, what=what, ref=ref, part=part,
                                              path=tree.keystr(path) or "the root",
                                              got=_describe(tn), want=_describe(to)))


def _check_branches(fn: str, outs: list) -> None:
    ref_paths = tree.leaves_with_path(outs[0])
    ref_def = tree.structure(outs[0])
    for i, out in enumerate(outs[1:], start=1):
        leaves, d = tree.flatten(out)
        if d != ref_def:
            raise TypeError(f"lax.{fn}: every branch must return the same pytree structure; "
                            f"branch {i} returns {d}, branch 0 returns {ref_def}.")
        for (path, r), o in zip(ref_paths, leaves):
            if not _same(_type(o), _type(r)):
                raise TypeError(BRANCH_TYPE.format(fn=fn, path=tree.keystr(path) or "the root",
                                                   i=i, got=_describe(_type(o)),
                                                   want=_describe(_type(r))))


def _select(pred: Any, on_true: Any, on_false: Any) -> Any:
    """Leafwise ``np.where(pred, on_true, on_false)`` over two pytrees of one structure."""
    return tree.map(lambda a, b: fnp.where(pred, a, b), on_true, on_false)


# -- cond and switch ------------------------------------------------------------------------
def cond(pred: Any, true_fun: Callable, false_fun: Callable, *operands: Any) -> Any:
    """``true_fun(*operands)`` if ``pred`` else ``false_fun(*operands)`` (JAX's ``lax.cond``).

    ``pred`` is a scalar (bool or number, non-zero meaning true). Outside ``vmap`` only
    the chosen branch runs. Under ``vmap`` with a batched ``pred``, both run and each
    member gets its own branch's result, so both branches must return the same types.

    >>> import numpy as np, funcflux as ff
    >>> float(ff.lax.cond(3.0 > 2.0, lambda x: x + 1.0, lambda x: x - 1.0, np.array(1.0)))
    2.0
    """
    pred = _scalar(pred)
    if _shape(pred) != ():
        raise TypeError(PRED_SHAPE.format(shape=_shape(pred)))
    if type(pred) is StagedTracer:  # inside jit: one equation running the chosen branch
        return stage_switch(pred, [true_fun, false_fun], operands, cond=True)
    if not _batched(pred):
        return true_fun(*operands) if bool(pred) else false_fun(*operands)
    outs = [true_fun(*operands), false_fun(*operands)]
    _check_branches("cond", outs)
    return _select(fnp.not_equal(pred, 0), outs[0], outs[1])


def switch(index: Any, branches: Sequence[Callable], *operands: Any) -> Any:
    """``branches[index](*operands)``, with ``index`` clamped to the valid range (JAX's
    ``lax.switch``). Under ``vmap`` with a batched index every branch runs and each
    member gets its own branch's result.

    >>> import numpy as np, funcflux as ff
    >>> float(ff.lax.switch(5, [np.sin, np.cos, np.negative], np.array(1.0)))  # clamped to 2
    -1.0
    """
    branches = list(branches)
    if not branches:
        raise ValueError("lax.switch: branches must hold at least one function")
    index = _scalar(index)
    if _shape(index) != ():
        raise TypeError(INDEX_SHAPE.format(shape=_shape(index)))
    if type(index) is StagedTracer:
        return stage_switch(index, branches, operands)
    if not _batched(index):
        i = int(np.asarray(concrete(index)).astype(np.int64)[()])
        return branches[min(max(i, 0), len(branches) - 1)](*operands)
    outs = [b(*operands) for b in branches]
    _check_branches("switch", outs)
    idx = fnp.clip(fnp.astype(index, np.int64), 0, len(branches) - 1)
    out = outs[-1]
    for k in range(len(outs) - 2, -1, -1):
        out = _select(fnp.equal(idx, k), outs[k], out)
    return out


# -- loops ----------------------------------------------------------------------------------
def while_loop(cond_fun: Callable, body_fun: Callable, init_val: Any) -> Any:
    """``val = init_val; while cond_fun(val): val = body_fun(val)`` (JAX's ``lax.while_loop``).

    ``body_fun`` must return a carry of the type it got. Differentiable in forward mode
    (``jvp``, ``jacfwd``) only, as in JAX. Under ``vmap`` with a batched condition the
    loop runs until every member is done; a member that is done keeps its carry.

    >>> import funcflux as ff
    >>> ff.lax.while_loop(lambda v: v < 100, lambda v: 2 * v, 3)
    192
    """
    return _while("while_loop", cond_fun, body_fun, init_val)


def _while(fn: str, cond_fun: Callable, body_fun: Callable, init_val: Any) -> Any:
    if _reverse_traced(tree.leaves(init_val)):
        raise TypeError(WHILE_REVERSE.format(fn=fn))
    val = init_val
    while True:
        pred = _scalar(cond_fun(val))
        if _shape(pred) != ():
            raise TypeError(f"lax.{fn}: cond_fun must return a scalar, got shape {_shape(pred)}.")
        if type(pred) is StagedTracer:  # inside jit: the whole loop is one equation
            return stage_while(cond_fun, body_fun, val, pred._trace)
        if not _batched(pred):
            if not bool(pred):
                break
            new = body_fun(val)
            _check_carry(fn, new, val, "body_fun's output", "its input", "body")
            val = new
        else:
            if not _any_member(pred):
                break
            new = body_fun(val)
            _check_carry(fn, new, val, "body_fun's output", "its input", "body")
            val = _select(fnp.not_equal(pred, 0), new, val)
    if _reverse_traced(tree.leaves(val)):  # the body closed over a value grad is tracing
        raise TypeError(WHILE_REVERSE.format(fn=fn))
    return val


def fori_loop(lower: Any, upper: Any, body_fun: Callable, init_val: Any) -> Any:
    """``val = init_val; for i in range(lower, upper): val = body_fun(i, val)`` (JAX's
    ``lax.fori_loop``).

    With bounds that are the same for every member (Python or NumPy ints, or unbatched
    values) it is a plain loop, differentiable in both modes. Bounds batched by ``vmap``
    make it a ``while_loop`` (forward mode only, as in JAX).

    >>> import funcflux as ff
    >>> ff.lax.fori_loop(0, 4, lambda i, acc: acc + i, 0)
    6
    """
    if _batched(lower) or _batched(upper) or StagedTracer in (type(lower), type(upper)):
        def cond_fun(c: tuple) -> Any:
            return fnp.less(c[0], upper)

        def body(c: tuple) -> tuple:
            return c[0] + 1, body_fun(c[0], c[1])
        start = fnp.astype(fnp.broadcast_to(_scalar(lower), ()), np.int64) \
            if not isinstance(lower, int) else lower
        return _while("fori_loop", cond_fun, body, (start, init_val))[1]
    lo, hi = _int_bound(lower, "lower"), _int_bound(upper, "upper")
    val = init_val
    for i in range(lo, hi):
        new = body_fun(i, val)
        _check_carry("fori_loop", new, val, "body_fun's output", "its input", "body")
        val = new
    return val


def _int_bound(b: Any, name: str) -> int:
    a = np.asarray(concrete(b))
    if a.shape != () or a.dtype.kind not in "iub":
        raise TypeError(f"lax.fori_loop: {name} must be a scalar integer, got {a.dtype} of "
                        f"shape {a.shape}.")
    return int(a)


def scan(f: Callable, init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False, unroll: int | bool = 1) -> tuple:
    """Loop ``carry, y = f(carry, x)`` over the leading axis of ``xs``; return the final
    carry and the ``y``'s stacked (JAX's ``lax.scan``).

    ``xs`` is a pytree whose leaves share their leading length (``None`` with
    ``length=`` for a loop without inputs); ``reverse=True`` runs from the last
    entry to the first and stacks ``ys`` in the original order. ``f`` may return
    ``None`` as ``y``. ``unroll`` is accepted for JAX compatibility and changes
    nothing here (every step already runs as Python).

    >>> import numpy as np, funcflux as ff
    >>> carry, ys = ff.lax.scan(lambda c, x: (c + x, c * x), 0.0, np.array([1.0, 2.0, 3.0]))
    >>> float(carry), ys
    (6.0, array([0., 2., 9.]))
    """
    if not (isinstance(unroll, bool) or operator.index(unroll) >= 1):
        raise ValueError(f"lax.scan: unroll must be a positive int or a bool, got {unroll!r}")
    x_leaves, x_def = tree.flatten(xs)
    lengths = sorted({_shape(x)[0] if _shape(x) else None for x in x_leaves},
                     key=lambda n: -1 if n is None else n)
    if None in lengths:
        raise ValueError("lax.scan: every leaf of xs needs a leading axis to scan over; "
                         "got a scalar leaf.")
    if length is not None:
        length = operator.index(length)
    if len(lengths) > 1 or (lengths and length is not None and lengths[0] != length):
        also = f" (and length={length})" if length is not None else ""
        raise ValueError(SCAN_LENGTH.format(also=also, lengths=lengths + (
            [length] if length is not None else [])))
    if not lengths and length is None:
        raise ValueError(SCAN_NO_LENGTH)
    n = lengths[0] if lengths else length
    staged = {x._trace for x in x_leaves + tree.leaves(init) if type(x) is StagedTracer}
    if n and len(staged) == 1 and not any(isinstance(x, Tracer) and type(x) is not StagedTracer
                                          for x in x_leaves + tree.leaves(init)):
        # inside jit: the loop is one equation with f traced once (not unrolled)
        return stage_scan(f, init, x_leaves, x_def, n, reverse, staged.pop())
    carry, ys = init, []
    steps = range(n - 1, -1, -1) if reverse else range(n)
    for i in steps:
        x = tree.unflatten(x_def, [xl[i] for xl in x_leaves])
        carry_new, y = _pair(f(carry, x))
        _check_carry("scan", carry_new, carry, "the carry f returns", "the carry it got", "f")
        carry = carry_new
        ys.append(y)
    if reverse:
        ys.reverse()
    if n == 0:  # no step ran: run one on zeros for the types of y (JAX traces f once)
        x0 = tree.unflatten(x_def, [_zeros(_shape(xl)[1:], xl) for xl in x_leaves])
        _, y0 = _pair(f(init, x0))
        return carry, (None if y0 is None else
                       tree.map(lambda y: _zeros((0,) + _shape(y), y), y0))
    if ys[0] is None:
        return carry, None
    return carry, tree.map(lambda *leaves: fnp.stack(list(leaves)), *ys)


def _zeros(shape: tuple, like: Any) -> Any:
    """Zeros of ``shape`` with ``like``'s dtype, on ``like``'s device (a constant)."""
    dtype = getattr(like, "dtype", None) or np.asarray(like).dtype
    return array_module(module_value(like)).zeros(shape, dtype)


def _pair(r: Any) -> tuple:
    if not (isinstance(r, tuple) and len(r) == 2):
        raise TypeError(f"lax.scan: f must return a pair (carry, y), got {type(r).__name__}.")
    return r


# -- collectives over vmap's axis_name (funcflux/transforms/collectives.py) -------------------
from .transforms.collectives import (all_gather, axis_index, pmax, pmean, pmin,  # noqa: E402
                                     psum)
