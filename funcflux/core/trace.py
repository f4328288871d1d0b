"""Trace levels, tracers and ``bind``: the dispatch at the heart of every transform.

The idea is JAX's (see Autodidax): each active transform is an interpreter that
owns a *level*. A transform wraps its inputs in tracers of its level; when user
code applies a primitive, ``bind`` finds the highest level among the arguments
and hands the primitive to that level's trace. The trace unwraps its own
tracers, binds the same primitive again (so it lands one level down, or on real
arrays in ``impl``), records what it needs (a tape node, a tangent, a batch
axis) and wraps the result. Arguments from lower levels are constants to it.

Levels are unique, increasing integers handed out when a transform starts. A
transform that runs inside another starts later, so it always sits above it,
which is all that nesting needs; a tracer carries its own trace, so threads and
async tasks that trace at the same time never see each other's levels. That is
why there is no global level stack to keep in sync: ``bind`` reads the levels
off its arguments.

With no tracer among the arguments, ``bind`` calls ``impl`` directly: outside a
transform a primitive costs one loop over its arguments more than NumPy.
"""
from __future__ import annotations

import itertools
from typing import Any

_levels = itertools.count(1)  # next() on a count is atomic under the GIL


class Trace:
    """One active transform: an interpreter at one level."""

    __slots__ = ("level",)

    def __init__(self) -> None:
        self.level = next(_levels)

    def process_primitive(self, prim: Any, args: tuple, params: dict) -> Any:
        raise NotImplementedError


class Tracer:
    """A value seen by a transform. Subclasses add their own payload.

    The NumPy face of a tracer (operators, ``__array_ufunc__``, ``shape``, ...)
    is attached by ``funcflux.numpy``, so this file knows nothing of NumPy names.
    """

    __slots__ = ("_trace",)
    __array_priority__ = 1000

    @property
    def aval(self) -> Any:
        """A value with this tracer's shape and dtype (possibly a lower-level tracer)."""
        raise NotImplementedError

    def full_lower(self) -> Any:
        return self


def find_top_trace(args: tuple) -> Trace | None:
    top = None
    for a in args:
        if isinstance(a, Tracer):
            t = a._trace
            if top is None or t.level > top.level:
                top = t
    return top


def bind(prim: Any, *args: Any, **params: Any) -> Any:
    """Apply ``prim`` to ``args``: on real arrays directly, else through the top trace.

    ``Primitive.__call__`` inlines this (the hottest path in funcflux); this
    spelling is for code that holds a primitive and its arguments separately.
    """
    top = find_top_trace(args)
    if top is None:
        return prim.impl(*args, **params)
    return top.process_primitive(prim, args, params)
