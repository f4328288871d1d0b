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
from .core.trace import Tracer, concrete, find_top_trace, module_value
from .ops.common import as_array as _scalar, shape as _shape
from .transforms import edge
from .transforms.batching import BatchTrace, BatchTracer
from .transforms.custom import custom_vjp
from .transforms.forward import JVPTrace, JVPTracer, jvp
from .transforms.reverse import ReverseTrace, RTracer, vjp
from .transforms.staging import (StagedTracer, StagingTrace, stage_scan, stage_switch,
                                 stage_while)
from .transforms.staging import _Foreign as ClosedOverTracer
from .transforms.staging import trace_closed
from .core.abstract import ShapeDtypeStruct, abstract_of

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
        return _staged_switch(pred, [true_fun, false_fun], operands, True)
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
        return _staged_switch(index, branches, operands, False)
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


# -- cond and switch inside jit, under transforms -------------------------------------------
# Inside jit a cond or switch on a staged index is one equation (stage_switch). When its
# operands are traced by transforms running inside the jit (jit(grad(f)), jit(vmap(f))),
# the equation is a primitive of the innermost one, whose rule is a switch over the
# transformed branches, staged in turn: under vmap the branches batched, under jvp their
# pushforwards, under reverse mode a custom VJP whose backward pass is a switch over the
# branches' pullbacks (recomputing the chosen branch, as checkpoint does).
def _top(leaves: list) -> Any:
    """The innermost transform tracing ``leaves`` above the staging trace (or None)."""
    top = find_top_trace(tuple(leaves))
    return None if top is None or type(top) is StagingTrace else top


def _flat_branch(branch: Callable, in_def: Any, box: dict) -> Callable:
    def flat(*leaves: Any) -> list:
        out, box["out"] = tree.flatten(branch(*tree.unflatten(in_def, list(leaves))))
        return out
    return flat


def _staged_switch(index: Any, branches: list, operands: tuple, is_cond: bool) -> Any:
    """``branches[index](*operands)`` inside jit, ``index`` staged. A branch that reads a
    value traced by a transform from a closure (not an operand) is converted (see
    below); when that does not apply, every branch runs and the result is selected, as
    under ``vmap``."""
    try:
        return _switch_rule(index, branches, operands, is_cond)
    except ClosedOverTracer:
        pass
    converted = _converted(lambda: _convert_switch(index, branches, operands, is_cond))
    if converted is not None:
        return converted
    outs = [b(*operands) for b in branches]
    _check_branches("cond" if is_cond else "switch", outs)
    return _select_branch(index, outs, is_cond)


def _select_branch(index: Any, outs: list, is_cond: bool) -> Any:
    if is_cond:
        return _select(fnp.not_equal(index, 0), outs[0], outs[1])
    idx = fnp.clip(fnp.astype(index, np.int64), 0, len(outs) - 1)
    out = outs[-1]
    for k in range(len(outs) - 2, -1, -1):
        out = _select(fnp.equal(idx, k), outs[k], out)
    return out


def _front(v: Any, d: Any, batched: bool, n: int) -> Any:
    """``v`` with its batch axis ``d`` first; an unbatched ``v`` broadcast to the batch of
    ``n`` where it must be ``batched``, else as it is."""
    if d is not None:
        return fnp.moveaxis(v, d, 0)
    return fnp.broadcast_to(v, (n,) + tuple(_shape(v))) if batched else v


def _switch_rule(index: Any, branches: list, operands: tuple, is_cond: bool) -> Any:
    leaves, in_def = tree.flatten(operands)
    top = _top(leaves)
    if top is None:
        return stage_switch(index, branches, operands, cond=is_cond)
    box: dict = {}
    flats = [_flat_branch(b, in_def, box) for b in branches]
    if type(top) is BatchTrace:
        own = [type(x) is BatchTracer and x._trace is top for x in leaves]
        vals = [x.value if o else x for x, o in zip(leaves, own)]
        dims = tuple(x.bdim if o else None for x, o in zip(leaves, own))

        n = top.axis_size
        # an output is batched if it is in some branch (probed at trace time, then dropped)
        probes = [_run_batched(f, vals, list(dims), n)[1] for f in flats]
        out_b = [any(d is not None for d in ds) for ds in zip(*probes)]

        def batched(f: Callable) -> Callable:
            def run(*v: Any) -> list:
                outs, ds = _run_batched(f, list(v), list(dims), n)
                return [_front(o, d, b, n) for o, d, b in zip(outs, ds, out_b)]
            return run
        outs = _switch_rule(index, [batched(f) for f in flats], tuple(vals), is_cond)
        return tree.unflatten(box["out"], [BatchTracer(top, o, 0) if b else o
                                           for o, b in zip(outs, out_b)])
    if type(top) is JVPTrace:
        own = [type(x) is JVPTracer and x._trace is top for x in leaves]
        vals = [x.primal if o else x for x, o in zip(leaves, own)]
        idx = [i for i, o in enumerate(own) if o and leaves[i].tangent is not None]
        tans = [leaves[i].tangent for i in idx]
        n = len(vals)

        def pushforward(f: Callable) -> Callable:
            def run(*a: Any) -> tuple:
                def of_diff(*d: Any) -> list:
                    full = list(a[:n])
                    for i, v in zip(idx, d):
                        full[i] = v
                    return f(*full)
                return jvp(of_diff, tuple(a[i] for i in idx), tuple(a[n:]))
            return run
        outs, touts = _switch_rule(index, [pushforward(f) for f in flats],
                                   tuple(vals) + tuple(tans), is_cond)
        return tree.unflatten(box["out"], [o if t is None else JVPTracer(top, o, t)
                                           for o, t in zip(outs, touts)])
    if type(top) is ReverseTrace:
        return _reverse_switch(index, flats, box, leaves, is_cond)
    raise TypeError(f"lax.{'cond' if is_cond else 'switch'} inside jit: no rule for "
                    f"{type(top).__name__}")


def _reverse_switch(index: Any, flats: list, box: dict, leaves: list, is_cond: bool) -> Any:
    """A custom VJP: the forward is the staged switch on the primal values, the backward a
    staged switch over the branches' pullbacks, which recompute the chosen branch."""
    n = len(leaves)
    types: dict = {}

    def fun(*ops: Any) -> list:
        return _switch_rule(index, flats, ops, is_cond)

    def fwd(*ops: Any) -> tuple:
        outs = fun(*ops)
        types["outs"] = outs  # (the cotangent of an unused output is zeros like it)
        return outs, ops

    def pullback(f: Callable) -> Callable:
        def run(*a: Any) -> tuple:
            _, pull = vjp(f, *a[:n])
            return tuple(pull(list(a[n:])))
        return run

    def bwd(ops: tuple, cts: list) -> tuple:
        cts = [fnp.zeros_like(o) if c is None else c for c, o in zip(cts, types["outs"])]
        return tuple(_switch_rule(index, [pullback(f) for f in flats],
                                  tuple(ops) + tuple(cts), is_cond))
    wrapped = custom_vjp(fun)
    wrapped.defvjp(fwd, bwd)
    outs = wrapped(*leaves)
    return tree.unflatten(box["out"], outs)


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
        if type(pred) is StagedTracer or (_batched(pred) and _staged_below(pred)):
            # inside jit: the whole loop is one equation
            try:
                return _staged_while(fn, cond_fun, body_fun, val)
            except ClosedOverTracer:
                converted = _converted(lambda: _convert_while(fn, cond_fun, body_fun, val))
                if converted is None:
                    raise  # the jitted function runs unstaged
                return converted
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


def _staged_below(x: Any) -> bool:
    """Whether ``x`` is traced inside jit (a staged value under its other tracers)."""
    levels = _levels(x)
    return bool(levels) and type(levels[-1]) is StagedTracer


def _staged_while(fn: str, cond_fun: Callable, body_fun: Callable, val: Any) -> Any:
    """A while loop inside jit: one equation (stage_while). A carry traced by transforms
    running inside the jit takes their rule, staged in turn: under vmap the loop runs on
    the whole batch until every member is done, a member that is done keeping its carry
    (as JAX does); under jvp the carry holds the tangents beside the primals."""
    leaves, c_def = tree.flatten(val)
    top = _top(leaves)
    if top is None:
        pred = _scalar(cond_fun(val))  # the loop's first test
        if type(pred) is not StagedTracer:
            # the test reads a value a transform traces from a closure: the staged loop
            # cannot take it as an input, so the jitted function runs unstaged
            raise ClosedOverTracer()
        return stage_while(cond_fun, body_fun, val, pred._trace)

    def unflat(ls: Sequence[Any]) -> Any:
        return tree.unflatten(c_def, list(ls))
    if type(top) is BatchTrace:
        return _batched_while(fn, cond_fun, body_fun, leaves, c_def, top)
    if type(top) is JVPTrace:
        own = [type(x) is JVPTracer and x._trace is top for x in leaves]
        prim = [x.primal if o else x for x, o in zip(leaves, own)]
        fidx = [i for i, x in enumerate(prim) if edge.is_float_leaf(x)]
        tans = [leaves[i].tangent if own[i] and leaves[i].tangent is not None
                else fnp.zeros_like(prim[i]) for i in fidx]

        def body_t(c: tuple) -> tuple:
            p, t = c

            def of_diff(*d: Any) -> list:
                full = list(p)
                for i, v in zip(fidx, d):
                    full[i] = v
                return tree.leaves(body_fun(unflat(full)))
            out, tout = jvp(of_diff, tuple(p[i] for i in fidx), tuple(t))
            return list(out), [tout[i] for i in fidx]
        p, t = _staged_while(fn, lambda c: cond_fun(unflat(c[0])), body_t, (prim, tans))
        tangent = dict(zip(fidx, t))
        return unflat([JVPTracer(top, o, tangent[i]) if i in tangent else o
                       for i, o in enumerate(p)])
    raise TypeError(WHILE_REVERSE.format(fn=fn))


def _run_batched(f: Callable, vals: list, dims: list, n: int) -> tuple[list, list]:
    """``f``'s flat outputs on ``vals`` batched along ``dims`` (None: not batched), and
    each output's batch axis (None where it does not depend on the batch)."""
    trace = BatchTrace(n)
    try:
        outs = f(*[v if d is None else BatchTracer(trace, v, d) for v, d in zip(vals, dims)])
    finally:
        trace.end("vmap")
    mine = [type(o) is BatchTracer and o._trace is trace for o in outs]
    return [o.value if m else o for o, m in zip(outs, mine)], \
        [o.bdim if m else None for o, m in zip(outs, mine)]


def _batched_while(fn: str, cond_fun: Callable, body_fun: Callable, leaves: list, c_def: Any,
                   top: Any) -> Any:
    """A while loop on a carry batched by ``vmap`` inside jit, as JAX batches it: a carry
    leaf is batched if it starts batched or the body makes it so (a fixed point); with a
    batched condition every leaf is, the loop runs until every member is done, and a
    member that is done keeps its carry. Leaves that stay unbatched stay so."""
    n = top.axis_size
    own = [type(x) is BatchTracer and x._trace is top for x in leaves]
    vals = [x.value if o else x for x, o in zip(leaves, own)]
    dims0 = [x.bdim if o else None for x, o in zip(leaves, own)]

    def flat_body(*ls: Any) -> list:
        return tree.leaves(body_fun(tree.unflatten(c_def, list(ls))))

    def flat_test(*ls: Any) -> list:
        return [fnp.not_equal(_scalar(cond_fun(tree.unflatten(c_def, list(ls)))), 0)]
    batched = [d is not None for d in dims0]
    while True:  # which leaves the loop batches (probes run at trace time and are dropped)
        dims = [0 if b else None for b in batched]
        probe = [_front(v, d, b, n) for v, d, b in zip(vals, dims0, batched)]
        pred_batched = _run_batched(flat_test, probe, dims, n)[1][0] is not None
        if pred_batched:
            new = [True] * len(vals)
        else:
            out_dims = _run_batched(flat_body, probe, dims, n)[1]
            new = [b or d is not None for b, d in zip(batched, out_dims)]
        if new == batched:
            break
        batched = new
    start = probe

    def to_front(outs: list, odims: list) -> list:
        return [_front(o, d, b, n) for o, d, b in zip(outs, odims, batched)]

    def tests(c: list) -> Any:
        t, d = _run_batched(flat_test, c, dims, n)
        return t[0], d[0]

    def cond_b(c: list) -> Any:
        t, d = tests(c)
        return fnp.any(t) if d is not None else t

    def body_b(c: list) -> list:
        new = to_front(*_run_batched(flat_body, c, dims, n))
        if not pred_batched:
            return new
        go, d = tests(c)
        go = fnp.moveaxis(go, d, 0)
        return [fnp.where(fnp.reshape(go, (n,) + (1,) * (len(_shape(o)) - 1)), o, old)
                for o, old in zip(new, c)]
    out = _staged_while(fn, cond_b, body_b, start)
    return tree.unflatten(c_def, [BatchTracer(top, o, 0) if b else o
                                  for o, b in zip(out, batched)])


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
    if _batched(lower) or _batched(upper) or _staged_below(lower) or _staged_below(upper):
        # a while loop; the bound rides in the carry (a loop body reads no traced closure)
        def cond_fun(c: tuple) -> Any:
            return fnp.less(c[0], c[1])

        def body(c: tuple) -> tuple:
            return c[0] + 1, c[1], body_fun(c[0], c[2])
        start = fnp.astype(fnp.broadcast_to(_scalar(lower), ()), np.int64) \
            if not isinstance(lower, int) else lower
        stop = fnp.astype(fnp.broadcast_to(_scalar(upper), ()), np.int64) \
            if not isinstance(upper, int) else upper
        return _while("fori_loop", cond_fun, body, (start, stop, init_val))[2]
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
    if n and any(_staged_below(x) for x in x_leaves + tree.leaves(init)):
        # inside jit: the loop is one equation with f traced once (not unrolled)
        try:
            return _staged_scan(f, init, x_leaves, x_def, n, reverse)
        except ClosedOverTracer:
            pass  # f reads a value a transform traces from a closure: converted, or unrolled
        converted = _converted(lambda: _convert_scan(f, init, x_leaves, x_def, n, reverse))
        if converted is not None:
            return converted
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


# -- scan inside jit, under transforms ------------------------------------------------------
def _staged_scan(f: Callable, init: Any, x_leaves: list, x_def: Any, n: int,
                 reverse: bool) -> tuple:
    """``scan`` inside jit: one equation (stage_scan). Carry and inputs traced by transforms
    running inside the jit take their rule, staged in turn, as for ``cond``: under vmap
    the body batched (carry entries the loop never batches stay unbatched), under jvp the
    tangents scanned beside the primals, under reverse mode a custom VJP whose forward
    scan saves the carry entering each step and whose backward pass is a reverse scan of
    the body's pullbacks."""
    c_leaves, c_def = tree.flatten(init)
    top = _top(c_leaves + x_leaves)
    if top is None:
        trace = next(_levels(x)[-1]._trace for x in c_leaves + x_leaves if _staged_below(x))
        return stage_scan(f, init, x_leaves, x_def, n, reverse, trace)
    nc = len(c_leaves)
    box: dict = {}

    def flat_f(*a: Any) -> list:
        c, y = _pair(f(tree.unflatten(c_def, list(a[:nc])), tree.unflatten(x_def, list(a[nc:]))))
        cl, cdef = tree.flatten(c)
        if cdef != c_def:
            raise TypeError(f"lax.scan: the carry f returns has structure {cdef}, but the carry "
                            f"it got has {c_def}.")
        yl, box["y"] = tree.flatten(y)
        return cl + yl

    def result(carry: list, ys: list) -> tuple:
        return tree.unflatten(c_def, carry), tree.unflatten(box["y"], ys)
    if type(top) is BatchTrace:
        carry, ys = _batched_scan(flat_f, c_leaves, x_leaves, n, reverse, top, box)
    elif type(top) is JVPTrace:
        carry, ys = _jvp_scan(flat_f, c_leaves, x_leaves, n, reverse, top, box)
    elif type(top) is ReverseTrace:
        carry, ys = _reverse_scan(flat_f, c_leaves, x_leaves, n, reverse, box)
    else:
        raise TypeError(f"lax.scan inside jit: no rule for {type(top).__name__}")
    return result(carry, ys)


def _scan_flat(body: Callable, carry: list, xs: list, n: int, reverse: bool) -> tuple:
    """``scan`` of ``body(*carry, *x) -> carry + ys`` over flat lists (staged in turn)."""
    nc = len(carry)

    def f(c: list, x: list) -> tuple:
        out = body(*c, *x)
        return list(out[:nc]), list(out[nc:])
    c, ys = _staged_scan(f, list(carry), list(xs), tree.structure(list(xs)), n, reverse)
    return list(c), ([] if ys is None else list(ys))


def _batched_scan(flat_f: Callable, c_leaves: list, x_leaves: list, n: int, reverse: bool,
                  top: Any, box: dict) -> tuple:
    size, nc = top.axis_size, len(c_leaves)

    def own(x: Any) -> bool:
        return type(x) is BatchTracer and x._trace is top
    cv = [x.value if own(x) else x for x in c_leaves]
    cd = [x.bdim if own(x) else None for x in c_leaves]
    # the batch axis of an input goes second: each step's slice has it first
    xv = [fnp.moveaxis(x.value, x.bdim, 1) if own(x) else x for x in x_leaves]
    xd = [0 if own(x) else None for x in x_leaves]

    batched = [d is not None for d in cd]
    while True:  # which carry entries the loop batches (a probe on slice 0, then dropped)
        probe = [_front(v, d, b, size) for v, d, b in zip(cv, cd, batched)]
        dims = [0 if b else None for b in batched] + xd
        out_d = _run_batched(flat_f, probe + [x[0] for x in xv], dims, size)[1]
        new = [b or d is not None for b, d in zip(batched, out_d[:nc])]
        if new == batched:
            break
        batched = new
    y_b = [d is not None for d in out_d[nc:]]
    start = [_front(v, d, b, size) for v, d, b in zip(cv, cd, batched)]

    def body(*a: Any) -> list:
        outs, ds = _run_batched(flat_f, list(a), dims, size)
        return [_front(o, d, b, size) for o, d, b in zip(outs, ds, batched + y_b)]
    carry, ys = _scan_flat(body, start, xv, n, reverse)
    return ([BatchTracer(top, o, 0) if b else o for o, b in zip(carry, batched)],
            [BatchTracer(top, y, 1) if b else y for y, b in zip(ys, y_b)])


def _jvp_scan(flat_f: Callable, c_leaves: list, x_leaves: list, n: int, reverse: bool,
              top: Any, box: dict) -> tuple:
    nc = len(c_leaves)

    def own(x: Any) -> bool:
        return type(x) is JVPTracer and x._trace is top
    cp = [x.primal if own(x) else x for x in c_leaves]
    xp = [x.primal if own(x) else x for x in x_leaves]
    fc = [i for i, x in enumerate(cp) if edge.is_float_leaf(x)]
    fx = [i for i, x in enumerate(x_leaves) if own(x) and x.tangent is not None]
    ct = [c_leaves[i].tangent if own(c_leaves[i]) and c_leaves[i].tangent is not None
          else fnp.zeros_like(cp[i]) for i in fc]
    xt = [x_leaves[i].tangent for i in fx]
    ny, nfc, nxt = len(xp), len(fc), len(fx)
    y_float: dict = {}

    def body(*a: Any) -> list:
        c, tc = list(a[:nc]), a[nc:nc + nfc]
        x, tx = list(a[nc + nfc:nc + nfc + ny]), a[nc + nfc + ny:]

        def g(*d: Any) -> list:
            cc, xx = list(c), list(x)
            for i, v in zip(fc, d[:nfc]):
                cc[i] = v
            for i, v in zip(fx, d[nfc:]):
                xx[i] = v
            return flat_f(*cc, *xx)
        outs, touts = jvp(g, tuple(c[i] for i in fc) + tuple(x[i] for i in fx),
                          tuple(tc) + tuple(tx))
        y_float["idx"] = [k for k, t in enumerate(touts[nc:]) if t is not None]
        return (list(outs[:nc]) + [touts[i] for i in fc] + list(outs[nc:]) +
                [touts[nc + k] for k in y_float["idx"]])
    del nxt
    carry, ys = _scan_flat(body, cp + ct, xp + xt, n, reverse)
    p, t = carry[:nc], dict(zip(fc, carry[nc:]))
    nyo = box["y"].num_leaves
    yv, ty = ys[:nyo], dict(zip(y_float["idx"], ys[nyo:]))
    return ([JVPTracer(top, o, t[i]) if i in t else o for i, o in enumerate(p)],
            [JVPTracer(top, o, ty[k]) if k in ty else o for k, o in enumerate(yv)])


def _reverse_scan(flat_f: Callable, c_leaves: list, x_leaves: list, n: int, reverse: bool,
                  box: dict) -> tuple:
    nc, nx = len(c_leaves), len(x_leaves)
    types: dict = {}

    def fun(*a: Any) -> list:
        c, ys = _scan_flat(flat_f, list(a[:nc]), list(a[nc:]), n, reverse)
        return c + ys

    def fwd(*a: Any) -> tuple:
        def saving(*b: Any) -> list:  # also emits the carry entering the step
            return flat_f(*b) + list(b[:nc])
        c, ys = _scan_flat(saving, list(a[:nc]), list(a[nc:]), n, reverse)
        ny = len(ys) - nc
        outs = c + ys[:ny]
        types["outs"] = outs
        return outs, (ys[ny:], list(a[nc:]))

    def bwd(res: tuple, cts: list) -> tuple:
        carries, xs = res
        cts = [fnp.zeros_like(o) if ct is None else ct for ct, o in zip(cts, types["outs"])]
        ct_c, ct_ys = cts[:nc], cts[nc:]
        floats = [edge.is_float_leaf(c) for c in carries]

        def step(*a: Any) -> list:  # (ct of the carry out; carry in, x, ct of y) -> ...
            k = sum(floats)
            ctc = a[:k]
            c_in, x_in, cty = a[k:k + nc], a[k + nc:k + nc + nx], a[k + nc + nx:]
            _, pull = vjp(flat_f, *c_in, *x_in)
            it = iter(ctc)
            full_ct = [next(it) if fl else fnp.zeros_like(c)
                       for fl, c in zip(floats, c_in)]
            g = pull(full_ct + list(cty))
            gc = [g[i] for i in range(nc) if floats[i]]
            gx = [fnp.zeros_like(x) if v is None else v
                  for v, x in zip(g[nc:], x_in)]
            return gc + gx
        start = [c for c, fl in zip(ct_c, floats) if fl]
        c_out, gxs = _scan_flat(step, start, list(carries) + list(xs) + list(ct_ys), n,
                                not reverse)
        it = iter(c_out)
        ct_init = [next(it) if fl else None for fl in floats]
        return tuple(ct_init) + tuple(gxs)
    wrapped = custom_vjp(fun)
    wrapped.defvjp(fwd, bwd)
    outs = wrapped(*c_leaves, *x_leaves)
    return list(outs[:nc]), list(outs[nc:])


# -- closure conversion inside jit -----------------------------------------------------------
# A branch or body that reads, from a closure, a value traced by a transform inside the jit
# (an RNN's weights under grad) cannot be staged as it is: the staged function would have
# no way to receive that value's derivative or batch. It is traced once more, abstractly,
# with those values made inputs (trace_closed), and replayed from that graph with them
# passed explicitly: as operands of a cond, as loop-invariant entries of a loop's carry.
# A function that does not trace to plain primitives keeps the fallbacks.
def _converted(attempt: Callable) -> Any:
    """``attempt()``, or None when the conversion does not apply or fails (the caller then
    takes its fallback, which raises any error that is the user's)."""
    try:
        return attempt()
    except (ClosedOverTracer, TypeError, ValueError):
        return None


def _staging_trace(leaves: list) -> Any:
    return next(_levels(x)[-1]._trace for x in leaves if _staged_below(x))


def _types_of(leaves: list) -> list:
    return [abstract_of(x) for x in leaves]


def _lifted_union(closed: list) -> list:
    """The closure values of several traced functions, each once (by identity)."""
    lifted: list = []
    for c in closed:
        lifted += [t for t in c.lifted if all(t is not u for u in lifted)]
    return lifted


def _positions(c: Any, lifted: list) -> list:
    """Where each of ``c``'s closure values sits in ``lifted``."""
    return [next(k for k, u in enumerate(lifted) if u is t) for t in c.lifted]


def _convert_switch(index: Any, branches: list, operands: tuple, is_cond: bool) -> Any:
    leaves, in_def = tree.flatten(operands)
    closed, boxes = [], []
    for b in branches:
        box: dict = {}
        c = trace_closed(index._trace, _flat_branch(b, in_def, box), _types_of(leaves))
        if c is None:
            return None
        closed.append(c)
        boxes.append(box)
    lifted = _lifted_union(closed)
    if not lifted:
        return None
    n = len(leaves)

    def explicit(c: Any) -> Callable:
        pick = _positions(c, lifted)
        return lambda *a: c(a[:n], [a[n + k] for k in pick])
    outs = _staged_switch(index, [explicit(c) for c in closed], tuple(leaves) + tuple(lifted),
                          is_cond)
    return tree.unflatten(boxes[0]["out"], outs)


def _convert_scan(f: Callable, init: Any, x_leaves: list, x_def: Any, n: int,
                  reverse: bool) -> Any:
    c_leaves, c_def = tree.flatten(init)
    nc = len(c_leaves)
    box: dict = {}

    def flat(*a: Any) -> list:
        c, y = _pair(f(tree.unflatten(c_def, list(a[:nc])), tree.unflatten(x_def, list(a[nc:]))))
        yl, box["y"] = tree.flatten(y)
        return tree.leaves(c) + yl
    types = _types_of(c_leaves) + [ShapeDtypeStruct(_shape(x)[1:], x.dtype) for x in x_leaves]
    closed = trace_closed(_staging_trace(c_leaves + x_leaves), flat, types)
    if closed is None or not closed.lifted:
        return None
    k = len(closed.lifted)

    def body(*a: Any) -> list:  # the closure values ride in the carry, unchanged
        outs = closed(list(a[:nc]) + list(a[nc + k:]), a[nc:nc + k])
        return list(outs[:nc]) + list(a[nc:nc + k]) + list(outs[nc:])
    carry, ys = _scan_flat(body, list(c_leaves) + list(closed.lifted), x_leaves, n, reverse)
    return tree.unflatten(c_def, carry[:nc]), tree.unflatten(box["y"], ys)


def _convert_while(fn: str, cond_fun: Callable, body_fun: Callable, val: Any) -> Any:
    leaves, c_def = tree.flatten(val)
    nc = len(leaves)
    trace = _staging_trace(leaves + [_scalar(cond_fun(val))])
    types = _types_of(leaves)
    test = trace_closed(trace, lambda *a: _scalar(cond_fun(tree.unflatten(c_def, list(a)))),
                        types)
    step = trace_closed(trace, lambda *a: tree.leaves(body_fun(tree.unflatten(c_def, list(a)))),
                        types)
    if test is None or step is None:
        return None
    lifted = _lifted_union([test, step])
    if not lifted:
        return None

    def explicit(c: Any) -> Callable:
        pick = _positions(c, lifted)
        return lambda carry: c(carry[:nc], [carry[nc + k] for k in pick])
    run_test, run_step = explicit(test), explicit(step)
    out = _while(fn, lambda c: run_test(c)[0],
                 lambda c: list(run_step(c)) + list(c[nc:]), list(leaves) + lifted)
    return tree.unflatten(c_def, out[:nc])


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
