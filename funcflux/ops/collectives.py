"""Collectives over a named ``vmap`` axis: ``psum``, ``pmax``, ``pmin``, ``all_gather``,
``psum_scatter`` (all_gather's transpose) and ``axis_index``, with their rules.

A collective is an :class:`AxisPrimitive`: its parameter ``axis`` is the batching trace
of the ``vmap`` it reduces over (looked up by name in ``funcflux.lax``). That trace
applies the primitive's *axis rule*, which sees the whole batch at once (a sum over
the batch axis, say) and returns ``(out, out_dim)`` like a batching rule; an output
with ``out_dim=None`` is the same for every member. Every other trace treats the
collective as an ordinary primitive: another ``vmap`` maps it over its own axis (the
``def_batch`` rules below), ``grad`` and ``jvp`` use its VJP and JVP rules.

Binding includes the axis's trace among the candidates for the top trace (JAX's old
rule for named axes): a value that does not vary along the axis (a constant, or one
produced below it) still reaches that trace, which is how ``psum(1.0, "i")`` is the
axis size and ``axis_index`` (no argument at all) is the member's index.

The derivatives follow JAX under ``vmap``: inside ``vmap(grad(f), axis_name=...)`` each
member gets the derivative of the *sum over members* of ``f``, so the transpose of
``psum`` is ``psum``, and ``all_gather`` and ``psum_scatter`` transpose into each
other. ``pmax``/``pmin`` share the derivative among tied members, as ``np.max`` does
(JAX defines no derivative for them).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import Primitive
from ..core.trace import find_top_trace
from .base import astype, broadcast_to, expand_dims, move_bdim, moveaxis, sum_p
from .common import shape
from .elementwise import common_dtype, equal
from .reductions import max as _max, min as _min

__all__ = ["AxisPrimitive", "psum_p", "pmax_p", "pmin_p", "all_gather_p", "psum_scatter_p",
           "axis_index_p"]

NEEDS_AXIS = ("{name}: its vmap (axis {axis!r}) has already finished. A collective runs "
              "inside the vmap that names its axis.")


class AxisPrimitive(Primitive):
    """A primitive over a named ``vmap`` axis: the trace in its ``axis`` parameter applies
    ``axis_rule(axis_size, args, dims, **params) -> (out, out_dim)``."""

    __slots__ = ("axis_rule",)

    def __init__(self, name: str, impl: Callable[..., Any], *, nondiff: bool = False):
        super().__init__(name, impl, nondiff=nondiff)
        self.axis_rule: Callable[..., Any] | None = None

    def def_axis_rule(self, rule: Callable[..., Any]) -> "AxisPrimitive":
        self.axis_rule = rule
        return self

    def __call__(self, *args: Any, **params: Any) -> Any:
        top = find_top_trace(args)
        axis = params["axis"]
        if not axis.dead and (top is None or axis.level > top.level):
            top = axis
        if top is None:
            return self.impl(*args, **params)
        return top.process_primitive(self, args, params)


def _same_dim(prim: AxisPrimitive) -> Callable:
    """The batching rule under another vmap for a collective that keeps its operand's shape."""
    return lambda args, dims, **p: (prim(args[0], **p), dims[0])


def _front(prim: AxisPrimitive, key: str) -> Callable:
    """The batching rule under another vmap for a collective that adds or removes the axis
    ``params[key]``: that vmap's axis goes first, and ``key`` moves one place on."""
    def rule(args: list, dims: list, **p: Any) -> tuple:
        x, d = args[0], dims[0]
        return prim(move_bdim(x, d, 0), **{**p, key: p[key] + 1}), 0
    return rule


# -- psum: the sum over the axis; linear, and its own transpose -----------------------------
def _psum_axis(n: int, args: list, dims: list, axis: Any) -> tuple:
    x, d = args[0], dims[0]
    return (x * n if d is None else sum_p(x, axis=(d,), keepdims=False)), None


psum_p = AxisPrimitive("psum", lambda x, axis: x * axis.axis_size)
psum_p.def_axis_rule(_psum_axis)
psum_p.def_batch(_same_dim(psum_p))
psum_p.def_jvp(lambda t, ans, x, axis: psum_p(t, axis=axis))
psum_p.def_vjp(lambda ct, ans, x, axis: psum_p(ct, axis=axis))


# -- pmax / pmin: one rule serves both -----------------------------------------------------
def _extremum_axis(reduce: Callable) -> Callable:
    def rule(n: int, args: list, dims: list, axis: Any) -> tuple:
        x, d = args[0], dims[0]
        return (x if d is None else reduce(x, axis=d)), None
    return rule


def _tie_share(ans: Any, x: Any, axis: Any) -> tuple:
    """The members holding the extremum, as floats, and how many they are."""
    mask = astype(equal(x, ans), common_dtype(x))
    return mask, psum_p(mask, axis=axis)


def _extremum_jvp(t: Any, ans: Any, x: Any, axis: Any) -> Any:
    mask, count = _tie_share(ans, x, axis)
    return psum_p(t * mask, axis=axis) / count


def _extremum_vjp(ct: Any, ans: Any, x: Any, axis: Any) -> Any:
    mask, count = _tie_share(ans, x, axis)
    return mask * (psum_p(ct, axis=axis) / count)


pmax_p = AxisPrimitive("pmax", lambda x, axis: x)
pmax_p.def_axis_rule(_extremum_axis(_max))
pmin_p = AxisPrimitive("pmin", lambda x, axis: x)
pmin_p.def_axis_rule(_extremum_axis(_min))
for _p in (pmax_p, pmin_p):
    _p.def_batch(_same_dim(_p)).def_jvp(_extremum_jvp).def_vjp(_extremum_vjp)


# -- all_gather / psum_scatter: a new axis of every member's value, and its transpose ------
def _all_gather_impl(x: Any, axis: Any, gather_axis: int) -> Any:
    xp = array_module(x)
    return xp.repeat(xp.expand_dims(x, gather_axis), axis.axis_size, axis=gather_axis)


def _all_gather_axis(n: int, args: list, dims: list, axis: Any, gather_axis: int) -> tuple:
    x, d = args[0], dims[0]
    if d is None:
        s = shape(x)
        return broadcast_to(expand_dims(x, gather_axis),
                            s[:gather_axis] + (n,) + s[gather_axis:]), None
    return moveaxis(x, d, gather_axis), None


def _psum_scatter_impl(x: Any, axis: Any, scatter_axis: int) -> Any:
    raise RuntimeError(NEEDS_AXIS.format(name="psum_scatter", axis=axis.axis_name))


def _psum_scatter_axis(n: int, args: list, dims: list, axis: Any, scatter_axis: int) -> tuple:
    x, d = args[0], dims[0]
    return (x * n if d is None else sum_p(x, axis=(d,), keepdims=False)), scatter_axis


all_gather_p = AxisPrimitive("all_gather", _all_gather_impl)
all_gather_p.def_axis_rule(_all_gather_axis)
all_gather_p.def_batch(_front(all_gather_p, "gather_axis"))
psum_scatter_p = AxisPrimitive("psum_scatter", _psum_scatter_impl)
psum_scatter_p.def_axis_rule(_psum_scatter_axis)
psum_scatter_p.def_batch(_front(psum_scatter_p, "scatter_axis"))
all_gather_p.def_jvp(lambda t, ans, x, axis, gather_axis: all_gather_p(
    t, axis=axis, gather_axis=gather_axis))
all_gather_p.def_vjp(lambda ct, ans, x, axis, gather_axis: psum_scatter_p(
    ct, axis=axis, scatter_axis=gather_axis))
psum_scatter_p.def_jvp(lambda t, ans, x, axis, scatter_axis: psum_scatter_p(
    t, axis=axis, scatter_axis=scatter_axis))
psum_scatter_p.def_vjp(lambda ct, ans, x, axis, scatter_axis: all_gather_p(
    ct, axis=axis, gather_axis=scatter_axis))


# -- axis_index: each member's position along the axis (no operand) -------------------------
def _axis_index_impl(axis: Any) -> Any:
    raise RuntimeError(NEEDS_AXIS.format(name="axis_index", axis=axis.axis_name))


axis_index_p = AxisPrimitive("axis_index", _axis_index_impl, nondiff=True)
axis_index_p.def_axis_rule(  # on the device of the vmap's inputs
    lambda n, args, dims, axis: ((axis.xp or np).arange(n, dtype=np.int32), 0))
axis_index_p.def_batch(lambda args, dims, **p: (axis_index_p(**p), None))


# -- shape rules (eval_shape) ----------------------------------------------------------------
def _same_type(x: Any, **p: Any) -> Any:
    return abstract.ShapeDtypeStruct(shape(x), x.dtype)


for _p in (psum_p, pmax_p, pmin_p):
    _p.def_abstract(_same_type)
all_gather_p.def_abstract(lambda x, axis, gather_axis: abstract.ShapeDtypeStruct(
    shape(x)[:gather_axis] + (axis.axis_size,) + shape(x)[gather_axis:], x.dtype))
psum_scatter_p.def_abstract(lambda x, axis, scatter_axis: abstract.ShapeDtypeStruct(
    shape(x)[:scatter_axis] + shape(x)[scatter_axis + 1:], x.dtype))
axis_index_p.def_abstract(lambda axis: abstract.ShapeDtypeStruct((), np.int32))
del _p
