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

A transform that has finished calls ``end()`` on its trace, which turns the trace
into a dead one (its class becomes a subclass with the same layout, so this is one
assignment, and the live path pays nothing). A tracer kept past the end of its
transform, in a list, a global or a closure, still points at that trace, so the
first primitive applied to it lands in the dead trace, which raises
``UnexpectedTracerError`` naming the transform instead of computing on stale values.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

_levels = itertools.count(1)  # next() on a count is atomic under the GIL


ESCAPED = (
    "A traced value (shape {shape}, dtype {dtype}) was used after the {transform} that "
    "created it had finished: it escaped that call, e.g. stored in a list, a global or an "
    "attribute, or returned through a closure, inside the function being transformed. Its "
    "value belonged to that one call. Return what you need from the function instead (with "
    "has_aux=True for grad, value_and_grad and vjp) and use the returned arrays."
)


class UnexpectedTracerError(TypeError):
    """A traced value was used after its transform had finished (JAX's name and base class)."""


class Trace:
    """One active transform: an interpreter at one level."""

    __slots__ = ("level",)
    dead = False

    def __init__(self) -> None:
        self.level = next(_levels)

    def process_primitive(self, prim: Any, args: tuple, params: dict) -> Any:
        raise NotImplementedError

    def end(self, transform: str) -> None:
        """The transform ``transform`` has finished: its tracers are dead from now on."""
        if self.dead:
            return
        cls = type(self)
        dead = _DEAD.get((cls, transform))
        if dead is None:
            dead = _DEAD[(cls, transform)] = type(
                "Dead" + cls.__name__, (cls,),
                {"__slots__": (), "dead": True, "transform": transform,
                 "process_primitive": _dead_process,
                 "process_custom_vjp": _dead_custom, "process_custom_jvp": _dead_custom})
        self.__class__ = dead


def escaped(tracer: "Tracer") -> UnexpectedTracerError:
    """The error for using ``tracer``, whose transform has ended."""
    return UnexpectedTracerError(ESCAPED.format(
        shape=getattr(tracer, "shape", "?"), dtype=getattr(tracer, "dtype", "?"),
        transform=getattr(tracer._trace, "transform", "transform")))


def _first_own(trace: Trace, xs: Any) -> "Tracer":
    return next((a for a in xs if isinstance(a, Tracer) and a._trace is trace), xs[0])


def _dead_process(self: Trace, prim: Any, args: tuple, params: dict) -> Any:
    raise escaped(_first_own(self, args))


def _dead_custom(self: Trace, rule: Any, xs: list) -> Any:
    raise escaped(_first_own(self, xs))


# One dead class per (trace class, transform name): a few entries, made on first use.
_DEAD: dict[tuple[type, str], type] = {}


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

    @property
    def module_value(self) -> Any:
        """What :func:`module_value` steps to: the value one level down (its array type)."""
        return self.aval

    # -- showing a traced value: its value where one exists (not inside jit) -------------
    def _value(self) -> Any:
        """The value under every level, or None inside ``jit`` (no value yet) or after the
        transform has ended."""
        try:
            return concrete(self)
        except (ConcretizationTypeError, UnexpectedTracerError):
            return None

    def _describe(self) -> str:
        return f"shape={self.shape}, dtype={self.dtype}{self._repr_extra()}"  # type: ignore[attr-defined]

    def _repr_extra(self) -> str:
        """More to show in ``repr`` (a batch axis, say): ``", name=value"`` or ``""``."""
        return ""

    def __repr__(self) -> str:
        v = self._value()
        if v is None:
            return f"{type(self).__name__}({self._describe()})"
        return f"{type(self).__name__}({v!r}{self._repr_extra()})"

    def __str__(self) -> str:
        v = self._value()
        return repr(self) if v is None else str(v)

    def __format__(self, spec: str) -> str:
        """``f"{x:.3f}"``: the value, formatted (each entry, for an array). Inside ``jit``
        there is no value to format, so a format spec raises ``ConcretizationTypeError``
        (``ff.debug.print`` prints staged values); ``f"{x}"`` shows the description."""
        if not spec:
            return str(self)
        v = concrete(self)
        get = getattr(v, "get", None)
        if get is not None and not hasattr(v, "__array_interface__"):
            v = get()  # a device array: formatted on the host
        a = np.asarray(v)
        if a.ndim == 0:
            return format(a.item(), spec)
        return np.array2string(a, formatter={"all": lambda e: format(e, spec)})



class ConcretizationTypeError(TypeError):
    """A traced value's contents were needed where only its shape and dtype are known
    (inside ``jit``): JAX's name and base class."""


def concrete(x: Any) -> Any:
    """The value under ``x``'s tracers, all levels down (``x`` itself if not traced):
    for code that needs the values. Inside ``jit`` there are none to read: a staged
    value raises ``ConcretizationTypeError`` (use :func:`module_value` for the array
    module)."""
    while isinstance(x, Tracer):
        x = x.aval
    return x


def module_value(x: Any) -> Any:
    """A value of the array type under ``x``'s tracers (``x`` itself if not traced), for
    ``array_module``: the value itself in eager transforms, a placeholder of the same
    array module inside ``jit``, where values are not known."""
    while isinstance(x, Tracer):
        x = x.module_value
    return x


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
