"""Staging: ``jit`` and ``make_jaxpr``. Trace a function once into a graph of
primitives, then replay the graph as generated straight-line Python.

The staging trace is one more interpreter at its own level. Its tracers carry a
variable of the graph; ``process_primitive`` appends one equation (primitive,
input variables or constants, parameters, output variable) and computes the
output on the trace-time values, which gives its shape and dtype without a table
of shape rules. A transform running inside (``jit(grad(f))``) binds its rules'
primitives down to this level, so the backward pass is staged like the forward.

Values are not known while tracing: a staged tracer refuses ``bool``, ``float``,
``int`` and conversion to NumPy with an error naming the user's line, and
``concrete()`` on it raises ``ConcretizationTypeError``; funcflux's own code asks
``module_value`` for the array module instead. So a graph never bakes in a value
of one call: it depends on its inputs only through primitives.

The graph is cleaned by three passes (common-subexpression elimination, folding a
negation into a scalar product, then dead-code elimination). Constant folding happens
while tracing: a computation that
depends on no input (or only on an input's shape, as ``ones_like``, whose impl says
``shape_only``) runs then, once, and its result is a constant of the graph. It is
compiled to a Python function with one line per
equation calling the primitive's ``impl``. ``jitted.lower(*args)`` shows the
traced graph, the optimised one and the generated source.

Composition: when ``jit(f)`` receives values traced by another transform, the call
is a primitive of the innermost one, whose rule is staged in turn: under ``vmap`` the
staged ``vmap(f)`` (per batch axes), under ``jvp`` the staged ``jvp(f)`` (per tangent
positions), under reverse mode a custom VJP whose forward is the staged ``f`` on the
primal values and whose backward is a staged pullback (recomputing the forward, as
``checkpoint`` does). Values of transforms further out pass through to the staged
function, which meets them the same way. Inside another ``jit``, or when ``f`` closes
over a traced value, ``f`` runs inline, which is what the staged graph computes.
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from .. import tree
from ..core.abstract import ShapeDtypeStruct, abstract_of, standin
from ..core.backend import array_module
from ..core.trace import ConcretizationTypeError, Trace, Tracer, escaped
from . import edge
from ..core.trace import find_top_trace
from .batching import BatchTrace, BatchTracer
from .checkpoint import recompute_vjp
from .forward import JVPTrace, JVPTracer, jvp

__all__ = ["jit", "make_jaxpr", "eval_shape", "ShapeDtypeStruct", "Jaxpr", "debug_print"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONTROL_FLOW = (
    "jit: {what} on a traced value at {where}: inside jit only the shape ({shape}) and "
    "dtype ({dtype}) of a value are known while the function is traced, not its contents, "
    "so Python cannot branch, loop or convert on it. Mark the argument that decides this "
    "static (jit(f, static_argnums=...) or static_argnames=...), compute both sides and "
    "choose with np.where, or move this code out of the jitted function."
)
CONCRETE = (
    "jit: the contents of a traced value (shape {shape}, dtype {dtype}) were needed while "
    "tracing at {where} (for example a boolean mask, np.nonzero, or a value-dependent "
    "shape); inside jit only shapes and dtypes are known. Mark the argument static, or "
    "compute this outside the jitted function."
)
VALUE_TYPED = ("jit: the primitive '{name}' gives a result whose dtype or shape depends on the "
               "values of its inputs (at {where}), so a staged program cannot hold it: its "
               "type would be fixed by the values of the call that traced. Call it outside "
               "the jitted function.")
UNHASHABLE = ("jit: argument {path} is a {type} that is not an array, so it is part of the "
              "cache key, but it cannot be hashed. Pass it as an array, or make it static "
              "with a hashable value.")
RETRACE = ("jit: {name} has been traced {n} times; the signature of {path} keeps changing "
           "(last {old} -> {new}). Every new shape, dtype or static value traces again: keep "
           "shapes fixed (pad batches) or pass scalars as arrays.")
RETRACE_AFTER = 8


def _user_frame() -> str:
    """``file:line (in function)`` of the innermost frame outside funcflux."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PACKAGE):
        f = f.f_back
    if f is None:
        return "an unknown place"
    return f"{f.f_code.co_filename}:{f.f_lineno} (in {f.f_code.co_name})"


# -- the graph --------------------------------------------------------------------------
class Var:
    """A value of the graph: an input, a constant or an equation's output."""

    __slots__ = ("n", "shape", "dtype", "weak")

    def __init__(self, n: int, shape: tuple, dtype: Any, weak: bool = False):
        self.n, self.shape, self.dtype, self.weak = n, shape, dtype, weak

    @property
    def name(self) -> str:
        n, s = self.n, ""
        while True:
            s = chr(ord("a") + n % 26) + s
            n = n // 26 - 1
            if n < 0:
                return s

    def typed(self) -> str:
        t = "py" + type(0 if self.dtype.kind in "iub" else 0.0 if self.dtype.kind == "f"
                        else 0j).__name__ if self.weak else _short(self.dtype)
        return f"{self.name}:{t}[{','.join(map(str, self.shape))}]"


def _short(dtype: Any) -> str:
    d = np.dtype(dtype)
    return {"f": "f", "c": "c", "i": "i", "u": "u", "b": "bool"}.get(d.kind, d.kind) + \
        ("" if d.kind == "b" else str(8 * d.itemsize))


class Eqn:
    """``outs = prim(*ins, **params)``; an input is a ``Var`` or a constant."""

    __slots__ = ("prim", "ins", "params", "outs", "multi", "weak", "fn", "bound", "method")

    def __init__(self, prim: Any, ins: list, params: dict, outs: list, multi: bool,
                 weak: bool = False, fn: Any = None, bound: bool = False, method: Any = None):
        self.prim, self.ins, self.params, self.outs, self.multi = prim, ins, params, outs, multi
        self.weak = weak  # Python numbers in, a Python number out (see StagingTrace)
        # What the generated code calls: prim.impl, or the function it would call on these
        # inputs' array module when the impl declares one (impl.direct(xp)), or the
        # impl specialised to these parameters and input types (impl.specialize(vals,
        # **params), which takes the arrays only: ``bound``), or a method of the first
        # input, ``method = (name, parameters passed by position)`` (impl.method).
        self.fn = fn if fn is not None else prim.impl
        self.bound = bound
        self.method = method


class Jaxpr:
    """A staged program: input variables, constants, equations, outputs.

    ``str(jaxpr)`` prints it one primitive per line, as JAX's ``make_jaxpr`` does.
    """

    def __init__(self, invars: list, constvars: list, consts: list, eqns: list, outs: list):
        self.invars, self.constvars, self.consts = invars, constvars, consts
        self.eqns, self.outs = eqns, outs

    def __str__(self) -> str:
        def show(v: Any) -> str:
            if isinstance(v, Var):
                return v.name
            return repr(v.item() if isinstance(v, np.generic) else v)
        consts = " ".join(v.typed() for v in self.constvars)
        ins = " ".join(v.typed() for v in self.invars)
        lines = [f"{{ lambda {consts} ; {ins}. let"]
        for e in self.eqns:
            params = "".join(f" {k}={v!r}" for k, v in e.params.items())
            params = f"[{params.strip()}]" if params else ""
            outs = " ".join(v.typed() for v in e.outs)
            rhs = f"{e.prim.name}{params} {' '.join(show(a) for a in e.ins)}"
            lines.append(f"    {outs} = {rhs}" if e.outs else f"    {rhs}")
        lines.append(f"  in ({', '.join(show(v) for v in self.outs)}{',' if len(self.outs) == 1 else ''}) }}")
        return "\n".join(lines)

    __repr__ = __str__


# -- the staging trace ------------------------------------------------------------------------
class _Foreign(Exception):
    """A value traced by another transform reached the staged function: run it inline."""


class StagedTracer(Tracer):
    __slots__ = ("val", "var")

    def __init__(self, trace: "StagingTrace", val: Any, var: Var):
        self._trace = trace
        self.val = val
        self.var = var

    @property
    def shape(self) -> tuple:
        return self.var.shape

    @property
    def dtype(self) -> Any:
        return self.var.dtype

    @property
    def aval(self) -> Any:
        if self._trace.dead:
            raise escaped(self)
        raise ConcretizationTypeError(CONCRETE.format(shape=self.shape, dtype=self.dtype,
                                                      where=_user_frame()))

    @property
    def module_value(self) -> Any:
        # only its type is read (array_module); see core.trace.module_value
        v = self.val
        return np.zeros((), v.dtype) if type(v) is ShapeDtypeStruct else v

    def _refuse(self, what: str) -> Any:
        if self._trace.dead:
            raise escaped(self)
        raise ConcretizationTypeError(CONTROL_FLOW.format(
            what=what, where=_user_frame(), shape=self.shape, dtype=self.dtype))

    def __bool__(self) -> bool:
        return self._refuse("bool() (an if, while, and/or, or assert)")

    def __float__(self) -> float:
        return self._refuse("float()")

    def __int__(self) -> int:
        return self._refuse("int()")

    def __index__(self) -> int:
        return self._refuse("use as an index or a size")

    def __complex__(self) -> complex:
        return self._refuse("complex()")

    def __array__(self, *a: Any, **k: Any) -> Any:
        return self._refuse("conversion to a NumPy array")

    def item(self, *a: Any) -> Any:
        return self._refuse(".item()")

    def tolist(self) -> Any:
        return self._refuse(".tolist()")


class StagingTrace(Trace):
    __slots__ = ("eqns", "count", "consts", "const_ids", "parent", "captured", "capture_ids",
                 "abstract", "lifted", "lifted_ids")

    def __init__(self, parent: "StagingTrace | None" = None, abstract: bool = False) -> None:
        super().__init__()
        # eval_shape: the inputs' values are ShapeDtypeStructs, and so is every value
        # computed from them (by the primitives' shape rules); nothing is compiled.
        self.abstract = abstract or (parent is not None and parent.abstract)
        self.eqns: list[Eqn] = []
        self.count = 0
        self.consts: list[tuple[Var, Any]] = []
        self.const_ids: dict[int, Var] = {}
        # A branch or loop body is traced in a trace of its own inside its parent's: values
        # of the parent (or further out) that it reads become inputs of its graph.
        self.parent = parent
        self.captured: list[tuple[Var, StagedTracer]] = []
        self.capture_ids: dict[int, Var] = {}
        # closure conversion (trace_closed): values of other transforms the function reads,
        # each made an input of the graph instead of an error
        self.lifted: list[tuple[Var, Tracer]] | None = None
        self.lifted_ids: dict[int, Var] = {}

    def capture(self, a: "StagedTracer") -> Var:
        """``a``, a value of an enclosing staging trace, as an input of this graph."""
        t = self.parent
        while t is not None and a._trace is not t:
            t = t.parent
        if t is None or a._trace.dead:
            raise _Foreign()
        v = self.capture_ids.get(id(a))
        if v is None:
            v = self.capture_ids[id(a)] = self.new_var(a.val, a.var.weak)
            self.captured.append((v, a))
        return v

    def input_of(self, a: Any) -> Any:
        """What an equation of this graph reads for ``a``: its variable, or a constant."""
        if type(a) is StagedTracer:
            return a.var if a._trace is self else self.capture(a)
        return self.const(a)

    def new_var(self, val: Any, weak: bool = False) -> Var:
        v = Var(self.count, tuple(np.shape(val)) if not hasattr(val, "shape") else
                tuple(val.shape), _dtype(val), weak)
        self.count += 1
        return v

    def const(self, a: Any) -> Any:
        """An argument that is not one of this trace's tracers: a constant of the graph."""
        if isinstance(a, Tracer):
            if self.lifted is not None:
                v = self.lifted_ids.get(id(a))
                if v is None:
                    v = self.lifted_ids[id(a)] = self.new_var(abstract_of(a))
                    self.lifted.append((v, a))
                return v
            if self.abstract:  # eval_shape reads another transform's value's type only
                return self.new_var(abstract_of(a))
            raise _Foreign()
        if hasattr(a, "shape") and not isinstance(a, np.generic):  # an array: by reference
            v = self.const_ids.get(id(a))
            if v is None:
                v = self.const_ids[id(a)] = self.new_var(a)
                self.consts.append((v, a))
            return v
        return a  # a Python or NumPy scalar: inlined

    def _read(self, args: tuple) -> tuple[list, list]:
        """The trace-time values of ``args`` and what an equation reads for each."""
        vals, ins = [], []
        for a in args:
            if type(a) is StagedTracer:
                vals.append(a.val)
                ins.append(a.var if a._trace is self else self.capture(a))
            else:
                ins.append(self.const(a))
                vals.append(a)
        return vals, ins

    def process_primitive(self, prim: Any, args: tuple, params: dict) -> Any:
        if self.abstract:
            return self._abstract_primitive(prim, args, params)
        if getattr(prim.impl, "shape_only", False):  # ones_like: a constant of the program
            return prim.impl(*[a.val if type(a) is StagedTracer and a._trace is self else a
                               for a in args], **params)
        vals, ins = self._read(args)
        decide = getattr(prim.impl, "values_decide_type", None)
        if decide is not None and decide(*vals, **params):
            raise ConcretizationTypeError(VALUE_TYPED.format(name=prim.name, where=_user_frame()))
        out = prim.impl(*vals, **params)
        multi = isinstance(out, tuple)
        outs = list(out) if multi else [out]
        # Python numbers stay Python numbers, as eagerly: an operation on Python numbers
        # only (a staged int or float argument, an optimiser's step count) gives one, so
        # NumPy's promotion treats it as weak later on (0.9 ** count times a float32 array
        # stays float32, where a NumPy float64 would promote it).
        weak = not multi and all(a.weak if isinstance(a, Var) else type(a) in _PY for a in ins) \
            and np.ndim(out) == 0
        if weak:
            outs = [outs[0].item()]
        ovars = [self.new_var(o, weak) for o in outs]
        fn, bound, method = None, False, None
        if not weak:
            special = getattr(prim.impl, "specialize", None)
            direct = getattr(prim.impl, "direct", None)
            method = getattr(prim.impl, "method", None)
            if method is not None and not hasattr(vals[0], method[0]):
                method = None
            if special is not None:
                fn = special(vals, **params)
                bound = fn is not None
            elif direct is not None:
                fn = direct(array_module(*vals))
        self.eqns.append(Eqn(prim, ins, dict(params), ovars, multi, weak, fn, bound, method))
        tracers = [StagedTracer(self, o, v) for o, v in zip(outs, ovars)]
        return tuple(tracers) if multi else tracers[0]

    def _abstract_primitive(self, prim: Any, args: tuple, params: dict) -> Any:
        """eval_shape: the primitive's shape rule on abstract values (see core.abstract)."""
        vals, ins = self._read(args)
        vals = [abstract_of(v) if isinstance(v, Tracer) else v for v in vals]
        if not any(type(v) is ShapeDtypeStruct for v in vals):
            out = prim.impl(*vals, **params)  # a constant: computed, as under jit
        else:
            decide = getattr(prim.impl, "values_decide_type", None)
            if decide is not None and decide(*vals, **params):
                raise ConcretizationTypeError(VALUE_TYPED.format(name=prim.name,
                                                                 where=_user_frame()))
            out = abstract_eval(prim, vals, params)
        multi = isinstance(out, tuple)
        outs = list(out) if multi else [out]
        weak = not multi and all(a.weak if isinstance(a, Var) else type(a) in _PY for a in ins) \
            and np.ndim(out) == 0
        if weak and type(outs[0]) is not ShapeDtypeStruct:
            outs = [outs[0].item()]
        ovars = [self.new_var(o, weak) for o in outs]
        self.eqns.append(Eqn(prim, ins, dict(params), ovars, multi, weak, None))
        tracers = [StagedTracer(self, o, v) for o, v in zip(outs, ovars)]
        return tuple(tracers) if multi else tracers[0]

    # custom rules: nothing differentiates a staged graph (see the module docstring), so
    # the function itself is staged; transforms inside jit apply the rules above this level.
    def process_custom_vjp(self, rule: Any, xs: list) -> list:
        return rule.fun(*xs)

    def process_custom_jvp(self, rule: Any, xs: list) -> list:
        return rule.fun(*xs)


_PY = (int, float, complex, bool)


def abstract_eval(prim: Any, vals: list, params: dict) -> Any:
    """The shape and dtype of ``prim``'s result(s) on ``vals`` (some ShapeDtypeStructs):
    its shape rule, or else its impl on zero-stride stand-ins (see core.abstract)."""
    rule = prim.abstract
    if rule is not None:
        return rule(*vals, **params)
    with np.errstate(all="ignore"):
        out = prim.impl(*[standin(v) if type(v) is ShapeDtypeStruct else v for v in vals],
                        **params)
    return tuple(abstract_of(o) for o in out) if isinstance(out, tuple) else abstract_of(out)


class _Effect:
    """What a graph equation runs when it is not a primitive: control flow (``cond``,
    ``while``, ``scan``) and ``debug_print``, an equation with no result."""

    def __init__(self, name: str, impl: Callable[..., None]):
        self.name, self.impl = name, impl


def _print_impl(*values: Any, fmt: str, keys: tuple) -> None:
    n = len(values) - len(keys)
    print(fmt.format(*values[:n], **dict(zip(keys, values[n:]))))


_PRINT = _Effect("debug_print", _print_impl)


def debug_print(fmt: str, *args: Any, **kwargs: Any) -> None:
    """Print ``fmt.format(*args, **kwargs)`` with the values of this call, also inside
    ``jit``, where Python's ``print`` runs only while tracing (JAX's ``jax.debug.print``).

    Outside ``jit`` it prints at once (under ``grad`` or ``jvp`` the values being
    differentiated; under ``vmap`` the whole batch, batch axis included). Inside ``jit``
    it becomes an equation of the program: it prints on the tracing call and on every
    replay, in program order.

    >>> import numpy as np, funcflux as ff
    >>> f = ff.jit(lambda x: (ff.debug.print("x = {}", x), x * 2.0)[1])
    >>> _ = f(np.array([1.0, 2.0]))
    x = [1. 2.]
    >>> _ = f(np.array([3.0, 4.0]))
    x = [3. 4.]
    """
    keys = tuple(kwargs)
    values = list(args) + [kwargs[k] for k in keys]
    trace, ins, vals = None, [], []
    for v in values:
        while isinstance(v, Tracer) and type(v) is not StagedTracer:
            v = v.value if isinstance(v, BatchTracer) else v.aval  # a batch keeps its axis
        if type(v) is StagedTracer and not v._trace.dead:
            if trace is not None and v._trace is not trace:
                raise ValueError("ff.debug.print: values from two different jit traces")
            trace = v._trace
            ins.append(v.var)
            vals.append(v.val)
        else:
            ins.append(v)
            vals.append(v)
    if trace is not None:
        ins = [a if isinstance(a, Var) else trace.const(a) for a in ins]
        trace.eqns.append(Eqn(_PRINT, ins, {"fmt": fmt, "keys": keys}, [], False))
    _print_impl(*vals, fmt=fmt, keys=keys)


def _dtype(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    return np.dtype(d) if d is not None else np.asarray(x).dtype


# -- control flow as equations (ff.lax under jit) ---------------------------------------------
def _value(x: Any) -> Any:
    """The trace-time value of ``x`` (``x`` itself when it is not staged)."""
    return x.val if type(x) is StagedTracer else x


def _types(values: Sequence[Any]) -> list:
    return [(tuple(np.shape(v)), _dtype(v)) for v in values]


def _check_carry_leaves(fn: str, leaves: Sequence[Any]) -> None:
    for x in leaves:
        if not (type(x) is StagedTracer or _is_array(x) or type(x) in _PY):
            raise TypeError(f"lax.{fn} under jit: the carry holds a {type(x).__name__}; "
                            "a carry holds arrays and numbers only.")



class _Sub:
    """A function traced in a child trace: its compiled code, the parent values it reads
    (operands first, then captured values), its outputs' structure and trace-time values."""

    def __init__(self, run: Callable, inputs: list, out_def: Any, vals: list, types: list):
        self.run, self.inputs, self.out_def, self.vals, self.types = run, inputs, out_def, vals, types


def _stage_sub(parent: StagingTrace, fun: Callable, leaves: list, in_def: Any, name: str,
               every_leaf: bool = False) -> _Sub:
    """Trace ``fun`` on ``leaves`` in a child trace of ``parent``. Staged leaves are inputs;
    with ``every_leaf`` (a loop's carry, which changes from step to step) the constant ones
    are inputs too."""
    sub = StagingTrace(parent)
    invars, traced, inputs = [], [], []
    for x in leaves:
        if type(x) is StagedTracer or (every_leaf and (_is_array(x) or type(x) in _PY)):
            val = _value(x)
            weak = x.var.weak if type(x) is StagedTracer else type(x) in _PY
            v = sub.new_var(val, weak)
            invars.append(v)
            traced.append(StagedTracer(sub, val, v))
            inputs.append(x)
        else:
            traced.append(x)
    try:
        out = fun(*tree.unflatten(in_def, traced))
        out_leaves, out_def = tree.flatten(out)
        outvars, vals = [], []
        for o in out_leaves:
            outvars.append(sub.input_of(o))
            vals.append(_value(o))
    finally:
        sub.end("jit")
    jaxpr = Jaxpr(invars + [v for v, _ in sub.captured], [v for v, _ in sub.consts],
                  [c for _, c in sub.consts], sub.eqns, outvars)
    if sub.abstract:  # eval_shape: only the types are wanted
        vals = [abstract_of(v) for v in vals]
        return _Sub(_no_run, inputs + [a for _, a in sub.captured], out_def, vals, _types(vals))
    run, _ = compile_jaxpr(dce(fold_negations(cse(jaxpr))), name)
    return _Sub(run, inputs + [a for _, a in sub.captured], out_def, vals, _types(vals))


class ClosedJaxpr:
    """A function traced to a graph whose inputs are its arguments, then the values of
    enclosing programs it read (``captured``), then the values of other transforms it read
    from closures (``lifted``): see :func:`trace_closed`."""

    def __init__(self, jaxpr: Jaxpr, captured: list, lifted: list, out_def: Any):
        self.jaxpr, self.captured, self.lifted, self.out_def = jaxpr, captured, lifted, out_def

    def __call__(self, args: Sequence[Any], lifted: Sequence[Any]) -> list:
        """The graph's outputs for ``args``, with ``lifted`` in place of the lifted values."""
        return eval_jaxpr(self.jaxpr, list(args) + self.captured + list(lifted))


def trace_closed(parent: "StagingTrace", fun: Callable, types: Sequence[Any]) -> "ClosedJaxpr | None":
    """Closure conversion: trace ``fun`` on abstract arguments of ``types`` in a child of
    ``parent``, making each value of another transform it reads from a closure an input.
    ``None`` when ``fun`` does not trace to plain primitives (control flow or an effect
    inside, Python control flow on a value)."""
    sub = StagingTrace(parent, abstract=True)
    sub.lifted = []
    invars, traced = [], []
    for t in types:
        v = sub.new_var(t)
        invars.append(v)
        traced.append(StagedTracer(sub, t, v))
    try:
        out_leaves, out_def = tree.flatten(fun(*traced))
        outvars = [sub.input_of(o) for o in out_leaves]
    except (_Foreign, ConcretizationTypeError):
        return None
    finally:
        sub.end("jit")
    if any(not hasattr(e.prim, "impl") or isinstance(e.prim, _Effect) for e in sub.eqns):
        return None
    jaxpr = Jaxpr(invars + [v for v, _ in sub.captured] + [v for v, _ in sub.lifted],
                  [v for v, _ in sub.consts], [c for _, c in sub.consts], sub.eqns, outvars)
    return ClosedJaxpr(jaxpr, [a for _, a in sub.captured], [a for _, a in sub.lifted], out_def)


def eval_jaxpr(jaxpr: Jaxpr, args: Sequence[Any]) -> list:
    """Run a graph by binding its primitives on ``args``: under whatever transforms trace
    them, which is how a converted closure is differentiated and batched."""
    env: dict[int, Any] = {id(v): a for v, a in zip(jaxpr.invars, args)}
    env.update((id(v), c) for v, c in zip(jaxpr.constvars, jaxpr.consts))
    for e in jaxpr.eqns:
        out = e.prim(*[env[id(a)] if isinstance(a, Var) else a for a in e.ins], **e.params)
        for v, o in zip(e.outs, out if e.multi else (out,)):
            env[id(v)] = o
    return [env[id(v)] if isinstance(v, Var) else v for v in jaxpr.outs]


def _no_run(*args: Any) -> list:
    raise AssertionError("eval_shape never runs a staged function")


def _emit(trace: StagingTrace, name: str, impl: Callable, inputs: list, vals: list,
          out_def: Any, params: dict) -> Any:
    """Append one equation running ``impl`` to ``trace``; its outputs as staged values."""
    ins = [trace.input_of(a) for a in inputs]
    ovars = [trace.new_var(v, type(v) in _PY) for v in vals]
    trace.eqns.append(Eqn(_Effect(name, impl), ins, params, ovars, True))
    return tree.unflatten(out_def, [StagedTracer(trace, v, o) for v, o in zip(vals, ovars)])


BRANCH_TYPES = "lax.{fn} under jit: every branch must return the same types; {detail}."


def stage_switch(index: "StagedTracer", branches: Sequence[Callable], operands: tuple,
                 cond: bool = False) -> Any:
    """``branches[index](*operands)`` as one equation of ``index``'s graph: every branch is
    traced (so they must return the same types), the chosen one runs on each call.
    ``cond=True``: ``branches`` is ``[true_fun, false_fun]`` and ``index`` a predicate."""
    trace = index._trace
    leaves, in_def = tree.flatten(operands)
    subs = [_stage_sub(trace, b, leaves, in_def, f"branch_{k}") for k, b in enumerate(branches)]
    for k, sb in enumerate(subs[1:], start=1):
        if sb.out_def != subs[0].out_def or sb.types != subs[0].types:
            raise TypeError(BRANCH_TYPES.format(fn="cond" if cond else "switch", detail=(
                f"branch {k} returns {sb.out_def} with {sb.types}, branch 0 returns "
                f"{subs[0].out_def} with {subs[0].types}")))
    bounds, inputs = [], [index]
    for sb in subs:
        bounds.append((len(inputs) - 1, len(inputs) - 1 + len(sb.inputs)))
        inputs += sb.inputs
    runs, n = [sb.run for sb in subs], len(subs)

    def choose(i: Any) -> int:
        return (0 if i else 1) if cond else min(max(int(i), 0), n - 1)

    def switch_impl(i: Any, *args: Any, branches: int = 0) -> list:  # (param shown in the graph)
        k = choose(i)
        a, b = bounds[k]
        return runs[k](*args[a:b])
    chosen = subs[0] if trace.abstract else subs[choose(index.val)]
    return _emit(trace, "cond" if cond else "switch", switch_impl, inputs,
                 chosen.vals, subs[0].out_def, {"branches": n})


def stage_while(cond_fun: Callable, body_fun: Callable, init: Any, trace: StagingTrace) -> Any:
    """``while cond_fun(c): c = body_fun(c)`` as one equation of ``trace``'s graph; every
    leaf of the carry (array or Python number) is an input of both traced functions."""
    leaves, in_def = tree.flatten((init,))  # the functions take the carry as one argument
    carry_def = tree.structure(init)
    _check_carry_leaves("while_loop", leaves)
    cs = _stage_sub(trace, cond_fun, leaves, in_def, "cond_fun", every_leaf=True)
    bs = _stage_sub(trace, body_fun, leaves, in_def, "body_fun", every_leaf=True)
    carry_types = _types([_value(x) for x in leaves])
    if bs.out_def != carry_def or bs.types != carry_types:
        raise TypeError(f"lax.while_loop under jit: body_fun must return the carry's type: "
                        f"got {bs.out_def} with {bs.types}, expected {carry_def} with "
                        f"{carry_types}. Under jit the types must match exactly (a Python "
                        f"int that becomes a float does not): start from the type the body "
                        f"returns (0.0, not 0).")
    if len(cs.types) != 1 or cs.types[0][0] != ():
        raise TypeError(f"lax.while_loop under jit: cond_fun must return a scalar, got {cs.types}")
    nc = len(leaves)
    ncc = len(cs.inputs) - nc
    inputs = list(leaves) + cs.inputs[nc:] + bs.inputs[nc:]

    def while_impl(*args: Any) -> list:
        carry, cc, bc = list(args[:nc]), args[nc:nc + ncc], args[nc + ncc:]
        while cs.run(*carry, *cc)[0]:
            carry = bs.run(*carry, *bc)
        return carry
    vals = bs.vals if trace.abstract else while_impl(*[_value(x) for x in inputs])
    return _emit(trace, "while", while_impl, inputs, vals, carry_def, {})


def stage_scan(f: Callable, init: Any, x_leaves: list, x_def: Any, n: int, reverse: bool,
               trace: StagingTrace) -> tuple:
    """``lax.scan`` as one equation of ``trace``'s graph: ``f`` is traced once, on the carry
    and one slice of every ``xs`` leaf; the equation loops over the leading axis and stacks
    the ``y``'s."""
    c_leaves, c_def = tree.flatten(init)
    _check_carry_leaves("scan", c_leaves)
    # the body sees one slice of each xs leaf: traced from slice 0 (its type and values)
    x0 = [ShapeDtypeStruct(_value(x).shape[1:], _value(x).dtype) if trace.abstract
          else _value(x)[0] for x in x_leaves]
    nc, nx = len(c_leaves), len(x_leaves)
    leaves = list(c_leaves) + x0
    in_def = tree.structure((init, tree.unflatten(x_def, x0)))
    body = _stage_sub(trace, f, leaves, in_def, "scan_body", every_leaf=True)
    out_leaves_def = body.out_def
    carry_types = _types([_value(x) for x in c_leaves])
    pair = tree.unflatten(out_leaves_def, list(range(out_leaves_def.num_leaves)))
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise TypeError("lax.scan: f must return a pair (carry, y).")
    if tree.structure(pair[0]) != c_def or body.types[:nc] != carry_types:
        raise TypeError(f"lax.scan under jit: the carry f returns must have the carry's type: "
                        f"got {tree.structure(pair[0])} with {body.types[:nc]}, expected "
                        f"{c_def} with {carry_types}. Under jit the types must match "
                        f"exactly (a Python int that becomes a float does not): start from "
                        f"the type f returns (0.0, not 0).")
    inputs = list(c_leaves) + list(x_leaves) + body.inputs[nc + nx:]
    order = range(n - 1, -1, -1) if reverse else range(n)

    def scan_impl(*args: Any) -> list:
        carry, xs, cap = list(args[:nc]), args[nc:nc + nx], args[nc + nx:]
        ys: list = []
        for i in order:
            out = body.run(*carry, *[x[i] for x in xs], *cap)
            carry = out[:nc]
            ys.append(out[nc:])
        if reverse:
            ys.reverse()
        stacked = [array_module(*col).stack(col) for col in zip(*ys)] if ys else []
        return list(carry) + stacked
    if trace.abstract:
        vals = body.vals[:nc] + [ShapeDtypeStruct((n,) + v.shape, v.dtype)
                                 for v in body.vals[nc:]]
    else:
        vals = scan_impl(*[_value(x) for x in inputs])
    return _emit(trace, "scan", scan_impl, inputs, vals, out_leaves_def, {})


# -- passes -----------------------------------------------------------------------------------
def cse(jaxpr: Jaxpr) -> Jaxpr:
    """Common-subexpression elimination: an equation repeating an earlier one (same
    primitive, inputs and parameters) reuses its outputs."""
    seen: dict[Any, list] = {}
    subst: dict[int, Var] = {}
    eqns = []

    def sub(a: Any) -> Any:
        return subst.get(id(a), a) if isinstance(a, Var) else a

    for e in jaxpr.eqns:
        ins = [sub(a) for a in e.ins]
        try:
            if not e.outs:  # an effect happens as often as it was written
                raise TypeError
            key = (e.prim, tuple(("v", a.n) if isinstance(a, Var) else ("k", type(a), a)
                                 for a in ins), tuple(sorted(e.params.items())))
            hash(key)
        except TypeError:
            key = None
        prev = seen.get(key) if key is not None else None
        if prev is not None:
            for o, p in zip(e.outs, prev):
                subst[id(o)] = p
            continue
        if key is not None:
            seen[key] = e.outs
        eqns.append(Eqn(e.prim, ins, e.params, e.outs, e.multi, e.weak, e.fn, e.bound, e.method))
    return Jaxpr(jaxpr.invars, jaxpr.constvars, jaxpr.consts, eqns,
                 [sub(v) for v in jaxpr.outs])


def _scalar_const(a: Any) -> bool:
    return type(a) in (float, int) or (isinstance(a, np.generic) and a.dtype.kind in "fiu")


def fold_negations(jaxpr: Jaxpr) -> Jaxpr:
    """``multiply(negative(x), c)`` with ``c`` a scalar constant, and the negation used
    nowhere else, becomes ``multiply(x, -c)``: the same values (negation is exact), one
    array pass fewer. Reverse mode makes this pattern at every ``a - b * c``."""
    uses: dict[int, int] = {}
    for e in jaxpr.eqns:
        for a in e.ins:
            if isinstance(a, Var):
                uses[id(a)] = uses.get(id(a), 0) + 1
    for v in jaxpr.outs:
        if isinstance(v, Var):
            uses[id(v)] = uses.get(id(v), 0) + 2
    negated = {id(e.outs[0]): e.ins[0] for e in jaxpr.eqns
               if e.prim.name == "negative" and len(e.outs) == 1 and not e.weak
               and isinstance(e.ins[0], Var) and uses.get(id(e.outs[0])) == 1}
    if not negated:
        return jaxpr
    eqns = []
    for e in jaxpr.eqns:
        if e.prim.name == "multiply" and len(e.ins) == 2 and not e.weak:
            a, b = e.ins
            if isinstance(a, Var) and id(a) in negated and _scalar_const(b):
                e = Eqn(e.prim, [negated[id(a)], -b], e.params, e.outs, e.multi, e.weak, e.fn,
                        e.bound, e.method)
            elif isinstance(b, Var) and id(b) in negated and _scalar_const(a):
                e = Eqn(e.prim, [-a, negated[id(b)]], e.params, e.outs, e.multi, e.weak, e.fn,
                        e.bound, e.method)
        eqns.append(e)
    return Jaxpr(jaxpr.invars, jaxpr.constvars, jaxpr.consts, eqns, jaxpr.outs)


def dce(jaxpr: Jaxpr) -> Jaxpr:
    """Dead-code elimination: drop equations no output depends on, and unused constants."""
    live = {id(v) for v in jaxpr.outs if isinstance(v, Var)}
    kept = []
    for e in reversed(jaxpr.eqns):
        if not e.outs or any(id(o) in live for o in e.outs):  # no outputs: an effect (print)
            kept.append(e)
            live.update(id(a) for a in e.ins if isinstance(a, Var))
    kept.reverse()
    pairs = [(v, c) for v, c in zip(jaxpr.constvars, jaxpr.consts) if id(v) in live]
    return Jaxpr(jaxpr.invars, [v for v, _ in pairs], [c for _, c in pairs], kept, jaxpr.outs)


def _elementwise_ufunc(e: Eqn) -> bool:
    """Whether ``e`` calls a NumPy elementwise ufunc directly (fresh output, takes out=)."""
    return isinstance(e.fn, np.ufunc) and e.fn.signature is None and not e.weak and \
        not e.multi and not e.params


def plan_buffers(jaxpr: Jaxpr, donated: frozenset = frozenset()) -> dict[int, Var]:
    """Memory planning: ``{equation index: input whose buffer it writes into}``.

    An elementwise NumPy ufunc may write its result (``out=``) into an input buffer that
    dies there. The buffer must be the program's own (made by an earlier NumPy ufunc) or
    a donated input (``donated``: input variables, see ``jit(donate_argnums=...)``), of
    the output's shape and dtype, and no result. Views count as uses: an equation other
    than a NumPy ufunc (reshape, transpose, indexing, a reduction...) may return a view of
    its inputs, so its outputs join its inputs' alias group, and a buffer is written only
    once every member of its group has been read for the last time.
    """
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    last: dict[int, int] = {}
    for i, e in enumerate(jaxpr.eqns):
        for a in e.ins:
            if isinstance(a, Var):
                last[id(a)] = i
        if not isinstance(e.fn, np.ufunc):  # may return a view: outputs alias the inputs
            for a in e.ins:
                if isinstance(a, Var):
                    for o in e.outs:
                        ra, ro = root(id(a)), root(id(o))
                        if ra != ro:
                            parent[ro] = ra
    group_last: dict[int, int] = {}
    tainted: set[int] = set()  # groups holding a result
    for v in list(jaxpr.invars) + list(jaxpr.constvars) + [o for e in jaxpr.eqns for o in e.outs]:
        r = root(id(v))
        group_last[r] = max(group_last.get(r, -1), last.get(id(v), -1))
    for v in jaxpr.outs:
        if isinstance(v, Var):
            tainted.add(root(id(v)))
    owned: set[int] = {id(v) for v in jaxpr.invars if id(v) in donated}
    plan: dict[int, Var] = {}
    for i, e in enumerate(jaxpr.eqns):
        if not _elementwise_ufunc(e):
            continue
        o = e.outs[0]
        if o.shape != ():
            for a in e.ins:
                if isinstance(a, Var) and id(a) in owned:
                    r = root(id(a))
                    if r == id(a) and group_last[r] == i and r not in tainted and \
                            a.shape == o.shape and a.dtype == o.dtype:
                        plan[i] = a
                        owned.discard(id(a))
                        break
            owned.add(id(o))
    return plan


# -- code generation --------------------------------------------------------------------------
def compile_jaxpr(jaxpr: Jaxpr, name: str = "staged",
                  donated: frozenset = frozenset()) -> tuple[Callable, str]:
    """The graph as a Python function of its inputs (one line per equation), and its source."""
    ns: dict[str, Any] = {}
    names: dict[int, str] = {}
    reuse = plan_buffers(jaxpr, donated)

    def ref(a: Any) -> str:
        if isinstance(a, Var):
            return names[id(a)]
        k = f"k{len(ns)}"
        ns[k] = a
        return k

    for v in jaxpr.invars:
        names[id(v)] = f"{v.name}_"
    const_ids = {id(v) for v in jaxpr.constvars}
    for v, c in zip(jaxpr.constvars, jaxpr.consts):
        names[id(v)] = f"{v.name}_"
        ns[f"{v.name}_"] = c
    lines = [f"def {name}({', '.join(names[id(v)] for v in jaxpr.invars)}):"]
    for i, e in enumerate(jaxpr.eqns):
        fn = f"{e.prim.name}_{i}"
        ns[fn] = e.fn
        for o in e.outs:
            names[id(o)] = f"{o.name}_"
        args = [ref(a) for a in e.ins]
        if e.method is not None:  # x.name(positional params, keyword params)
            name_, pos = e.method
            margs = [ref(e.params[k]) for k in pos] + [
                f"{k}={ref(v)}" for k, v in e.params.items() if k not in pos]
            call = f"{args[0]}.{name_}({', '.join(args[1:] + margs)})"
        else:
            for k, val in () if e.bound else e.params.items():
                args.append(f"{k}={ref(val)}")
            if i in reuse:
                args.append(f"out={names[id(reuse[i])]}")
            call = f"{fn}({', '.join(args)}){'.item()' if e.weak else ''}"
        outs = ", ".join(names[id(o)] for o in e.outs)
        if e.multi and len(e.outs) == 1:
            outs += ","
        lines.append(f"    {outs} = {call}" if e.outs else f"    {call}")
    # A constant result is copied on every call: the caller owns what it gets.
    rets = [ref(v) + (".copy()" if isinstance(v, Var) and id(v) in const_ids else "")
            for v in jaxpr.outs]
    lines.append(f"    return [{', '.join(rets)}]")
    src = "\n".join(lines) + "\n"
    exec(compile(src, f"<funcflux.jit {name}>", "exec"), ns)
    return ns[name], src


# -- jit --------------------------------------------------------------------------------------
class Lowered:
    """What ``jit`` makes of one signature: the traced graph, the optimised graph and
    the generated source (``jitted.lower(*args)``)."""

    def __init__(self, jaxpr: Jaxpr, optimized: Jaxpr, source: str, run: Callable):
        self.jaxpr, self.optimized, self.source = jaxpr, optimized, source
        self.run = run  # the function compiled from ``source``

    def as_text(self) -> str:
        return self.source


class _Entry:
    __slots__ = ("run", "out_def", "lowered", "inline", "all_dynamic", "risky", "rebuild")

    def __init__(self, run: Any, out_def: Any, lowered: Lowered | None, inline: bool = False,
                 all_dynamic: bool = False, risky: tuple = ()):
        self.run, self.out_def, self.lowered, self.inline = run, out_def, lowered, inline
        self.all_dynamic = all_dynamic  # every leaf is an argument of run (no static leaf)
        # the results that may be views of an input, a constant or another result, which
        # the caller must get as arrays of its own (edge.owned); the others are new arrays
        # made by a NumPy ufunc, or numbers
        self.risky = risky
        self.rebuild = None if out_def is None else tree.unflattener(out_def)


def _risky_results(jaxpr: Jaxpr) -> tuple:
    """The positions of the results that are not certainly new arrays of their own: not
    made by a NumPy ufunc (an input, a constant array, a view), or repeated."""
    made = {id(o) for e in jaxpr.eqns if isinstance(e.fn, np.ufunc) and not e.weak
            for o in e.outs}
    weak = {id(o) for e in jaxpr.eqns if e.weak for o in e.outs}
    ids = [id(v) for v in jaxpr.outs]
    return tuple(k for k, (v, i) in enumerate(zip(jaxpr.outs, ids))
                 if isinstance(v, Var) and i not in weak and (i not in made or ids.count(i) > 1))


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


#: Python numbers traced like arrays (not part of the cache key): ints, which in a pytree
#: are mostly counters that change every call (an optimiser's step count). Floats and
#: bools are static: they are hyperparameters and flags that Python code reads by value
#: (an optimiser chooses its update from eps_root == 0); a new value traces again.
#: A traced int stays a Python number through arithmetic on Python numbers (see
#: ``StagingTrace.process_primitive``), so NumPy's promotion sees what it sees eagerly.
_NUMBERS = (int,)


def _dynamic(x: Any) -> bool:
    return _is_array(x) or type(x) in _NUMBERS


class Jitted:
    """``jit(fun)``: call it like ``fun``. See :func:`jit`."""

    def __init__(self, fun: Callable, static_argnums: Sequence[int], static_argnames: Sequence[str],
                 donate_argnums: Sequence[int] = ()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.static_argnums = tuple(sorted(set(static_argnums)))
        self.static_argnames = tuple(static_argnames)
        self.donate_argnums = tuple(sorted(set(donate_argnums)))
        if any(i < 0 for i in self.donate_argnums) or \
                set(self.donate_argnums) & set(self.static_argnums):
            raise ValueError(f"jit: donate_argnums must be non-negative positions of array "
                             f"arguments, not static ones; got {self.donate_argnums}")
        self._cache: dict[Any, _Entry] = {}
        # the entries again, by the cheap key of tree.flatten_key: (skeleton, signature,
        # static values) -> [(aux data, entry)]
        self._index: dict[Any, list] = {}
        self._traces = 0
        self._last: tuple | None = None
        self._warned = False
        self._vjp: Callable | None = None  # built on first use under grad (_staged_vjp)
        # staged vmap and jvp of this function, per argument structure and batch axes or
        # tangent positions: (the Jitted transformed function, a box with its output tree)
        self._transformed: dict[Any, tuple[Jitted, dict]] = {}

    def __repr__(self) -> str:
        return f"<jit {getattr(self.fun, '__name__', 'fun')}>"

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self, obj)

    def clear_cache(self) -> None:
        """Forget every traced signature (the next call traces again)."""
        self._cache.clear()
        self._index.clear()
        self._traces = 0
        self._last = None

    def _split(self, args: tuple, kwargs: dict) -> tuple:
        n = len(args)
        nums = {i % n for i in self.static_argnums if -n <= i < n}
        static = tuple((i, args[i]) for i in sorted(nums))
        dyn_args = tuple(a for i, a in enumerate(args) if i not in nums)
        skw = tuple(sorted((k, v) for k, v in kwargs.items() if k in self.static_argnames))
        dkw = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        return static, skw, (dyn_args, dkw)

    def _rebuild(self, static: tuple, skw: tuple, dyn: tuple) -> tuple[tuple, dict]:
        dyn_args, dkw = dyn
        args, it, s = [], iter(dyn_args), dict(static)
        for i in range(len(static) + len(dyn_args)):
            args.append(s[i] if i in s else next(it))
        return tuple(args), {**dkw, **dict(skw)}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or self.static_argnums:
            static, skw, dyn = self._split(args, kwargs)
        else:
            static, skw, dyn = (), (), (args, {})
        # the structure as flat tuples (tree.flatten_key): hashed and compared in C
        leaves, skel, auxes = tree.flatten_key(dyn)
        sig = []
        for x in leaves:
            t = type(x)
            if t is np.ndarray:  # the common case first
                sig.append((t, x.shape, x.dtype))
            elif isinstance(x, Tracer):  # under another transform (see the module docstring)
                return self._under_transform(args, kwargs, leaves, static, skw,
                                             tree.structure(dyn))
            elif _is_array(x):
                sig.append((t, tuple(x.shape), x.dtype))
            elif t in _NUMBERS:
                sig.append(("number", t))
            else:
                sig.append(("static", x))
        sig = tuple(sig)
        entry = None
        try:
            fast = (skel, sig, static, skw)
            for a, e in self._index.get(fast, ()):
                if a == auxes:
                    entry = e
                    break
        except (TypeError, ValueError):  # an unhashable static value, or aux data that
            fast = None                  # does not compare: the PyTreeDef key below
        if entry is None:
            try:
                key = (tree.structure(dyn), sig, static, skw)
                entry = self._cache.get(key)
            except TypeError:
                self._unhashable(dyn, static, skw)
                raise
            first = None
            if entry is None:
                entry, first = self._trace(key, static, skw, dyn, leaves, key[0])
            if fast is not None:
                self._index.setdefault(fast, []).append((auxes, entry))
            if first is not None:  # the trace computed this call's outputs already
                return entry.rebuild(edge.owned(first, leaves))
        if entry.inline:
            return self.fun(*args, **kwargs)
        if self.donate_argnums:
            self._check_donated(args, leaves)
        outs = entry.run(*(leaves if entry.all_dynamic else [x for x in leaves if _dynamic(x)]))
        risky = entry.risky
        if risky:  # (the new arrays are checked against too: a view may be of one of them)
            mine = [outs[k] for k in risky]
            mine = edge.owned(mine, leaves + [o for k, o in enumerate(outs) if k not in risky])
            for k, o in zip(risky, mine):
                outs[k] = o
        return entry.rebuild(outs)

    def _under_transform(self, args: tuple, kwargs: dict, leaves: list, static: tuple,
                         skw: tuple, in_def: Any) -> Any:
        """A call on values traced by another transform: the call is a primitive of the
        innermost one, whose rule is staged in turn.

        - ``vmap``: the staged ``vmap`` of this function, on the batched values, with their
          batch axes (every result is batched along axis 0).
        - ``jvp``: the staged ``jvp`` of this function, on the primals and tangents.
        - reverse mode (``grad``, ``vjp``): a custom VJP whose forward is this staged
          function on the primal values and whose backward is a staged pullback (it
          recomputes the forward, as ``checkpoint`` does).

        Values of the transforms further out are passed on, so the staged function meets
        them in turn (``vmap(jvp(jit(f)))`` stages ``vmap(jvp(f))``). Inside another
        ``jit`` (or with keyword arguments under reverse mode) ``fun`` runs inline, which
        is what the staged graph computes."""
        top = find_top_trace(tuple(leaves))
        if type(top) is BatchTrace and top.axis_name is None:
            return self._staged_rule("vmap", top, leaves, static, skw, in_def)
        if type(top) is JVPTrace:
            return self._staged_rule("jvp", top, leaves, static, skw, in_def)
        if kwargs or self.donate_argnums or type(top) in (StagingTrace, BatchTrace):
            return self.fun(*args, **kwargs)
        if self._vjp is None:
            self._vjp = self._staged_vjp()
        return self._vjp(*args)

    def _flat(self, static: tuple, skw: tuple, in_def: Any) -> Callable:
        """``fun`` on the flat list of its dynamic leaves, returning its flat outputs."""
        fun, rebuild = self.fun, self._rebuild

        def flat(*leaves: Any) -> Any:
            args, kwargs = rebuild(static, skw, tree.unflatten(in_def, list(leaves)))
            return fun(*args, **kwargs)
        flat.__name__ = getattr(fun, "__name__", "f")
        return flat

    def _staged_rule(self, kind: str, trace: Any, leaves: list, static: tuple, skw: tuple,
                     in_def: Any) -> Any:
        if kind == "vmap":
            vals, pos = [], []
            for x in leaves:
                own = type(x) is BatchTracer and x._trace is trace
                vals.append(x.value if own else x)
                pos.append(x.bdim if own else None)
            tans: list = []
        else:
            vals, tans, pos = [], [], []
            for x in leaves:
                own = type(x) is JVPTracer and x._trace is trace and x.tangent is not None
                vals.append(x.primal if type(x) is JVPTracer and x._trace is trace else x)
                pos.append(own)
                if own:
                    tans.append(x.tangent)
        key = (kind, in_def, static, skw, tuple(pos),
               trace.axis_size if kind == "vmap" else None)
        try:
            hit = self._transformed.get(key)
        except TypeError:  # an unhashable static value: as on a direct call
            self._unhashable(tree.unflatten(in_def, leaves), static, skw)
            raise
        if hit is None:
            hit = self._transformed[key] = self._transform(kind, key, pos, static, skw, in_def,
                                                           trace)
        staged, box = hit
        outs = staged(*vals, *tans)
        if kind == "vmap":
            return tree.unflatten(box["out"], [o if d is None else BatchTracer(trace, o, d)
                                               for o, d in zip(outs, box["dims"])])
        primals, tangents = outs
        return tree.unflatten(box["out"], [o if t is None else JVPTracer(trace, o, t)
                                           for o, t in zip(primals, tangents)])

    def _transform(self, kind: str, key: Any, pos: tuple, static: tuple, skw: tuple,
                   in_def: Any, trace: Any) -> tuple:
        flat, box = self._flat(static, skw, in_def), {}
        name = f"{kind}_{getattr(self.fun, '__name__', 'f')}"
        if kind == "vmap":
            n = trace.axis_size

            def batched(*vals: Any) -> list:
                inner = BatchTrace(n)
                try:
                    out = flat(*[v if d is None else BatchTracer(inner, v, d)
                                 for v, d in zip(vals, pos)])
                finally:
                    inner.end("vmap")
                leaves, box["out"] = tree.flatten(out)
                mine = [type(o) is BatchTracer and o._trace is inner for o in leaves]
                box["dims"] = [o.bdim if m else None for o, m in zip(leaves, mine)]
                return [o.value if m else o for o, m in zip(leaves, mine)]
            batched.__name__ = name
            return Jitted(batched, (), ()), box
        idx = [i for i, p in enumerate(pos) if p]

        def pushforward(*a: Any) -> tuple:
            vals, tans = list(a[:len(pos)]), a[len(pos):]

            def of_differentiated(*d: Any) -> list:
                full = list(vals)
                for i, v in zip(idx, d):
                    full[i] = v
                out, box["out"] = tree.flatten(flat(*full))
                return out
            return jvp(of_differentiated, tuple(vals[i] for i in idx), tuple(tans))
        pushforward.__name__ = name
        return Jitted(pushforward, (), ()), box

    def _staged_vjp(self) -> Callable:
        nums = self.static_argnums
        return recompute_vjp(self.fun, nums, forward=self,
                             stage=lambda pullback: Jitted(pullback, nums, ()))

    def _donated_flags(self, args: tuple) -> list[bool]:
        """For each leaf of the dynamic arguments: whether it is donated (positional args
        first, in order, then keyword ones, as ``tree.flatten`` lays them out)."""
        flags: list[bool] = []
        for i, a in enumerate(args):
            if i not in self.static_argnums:
                flags += [i in self.donate_argnums] * len(tree.leaves(a))
        return flags

    def _check_donated(self, args: tuple, leaves: list) -> None:
        """A donated array is overwritten: it must be writable and share memory with no
        other argument (else the program would read what it has written)."""
        flags = self._donated_flags(args)
        bases = [id(x.base if x.base is not None else x) if type(x) is np.ndarray else id(x)
                 for x in leaves]
        for k, (x, d) in enumerate(zip(leaves, flags)):
            if not d or not _is_array(x):
                continue
            if type(x) is np.ndarray and not x.flags.writeable:
                raise ValueError(f"jit: donated argument leaf {k} is a read-only array "
                                 f"(shape {x.shape}); pass a writable copy or do not donate it.")
            if bases.count(bases[k]) > 1:
                raise ValueError(f"jit: donated argument leaf {k} (shape {tuple(x.shape)}) "
                                 f"shares its memory with another argument; the program "
                                 f"would overwrite what it still reads. Pass a copy.")

    def _unhashable(self, dyn: tuple, static: tuple, skw: tuple) -> None:
        for path, x in tree.leaves_with_path(dyn):
            if not _is_array(x):
                try:
                    hash(x)
                except TypeError:
                    raise TypeError(UNHASHABLE.format(path=tree.keystr(path) or "?",
                                                      type=type(x).__name__)) from None
        for i, v in list(static) + list(skw):
            try:
                hash(v)
            except TypeError:
                raise TypeError(f"jit: static argument {i!r} must be hashable (it is part of "
                                f"the cache key), got a {type(v).__name__}.") from None

    def _trace(self, key: Any, static: tuple, skw: tuple, dyn: tuple, leaves: list,
               in_def: Any) -> tuple[_Entry, list | None]:
        self._note_retrace(key, dyn, in_def)
        lowered, out, out_def = self._stage(static, skw, dyn, leaves, in_def)
        if lowered is None:
            entry = _Entry(None, None, None, inline=True)
            self._cache[key] = entry
            return entry, None
        entry = _Entry(lowered.run, out_def, lowered, all_dynamic=all(_dynamic(x) for x in leaves),
                       risky=_risky_results(lowered.optimized))
        self._cache[key] = entry
        return entry, out

    def _stage(self, static: tuple, skw: tuple, dyn: tuple, leaves: list, in_def: Any) -> tuple:
        trace = StagingTrace()
        invars, traced = [], []
        for x in leaves:
            if _dynamic(x):
                v = trace.new_var(x, weak=type(x) in _NUMBERS)
                invars.append(v)
                traced.append(StagedTracer(trace, x, v))
            else:
                traced.append(x)
        try:
            args, kwargs = self._rebuild(static, skw, tree.unflatten(in_def, traced))
            out = self.fun(*args, **kwargs)
            out_leaves, out_def = tree.flatten(out)
            outvars, vals = [], []
            for o in out_leaves:
                if type(o) is StagedTracer and o._trace is trace:
                    outvars.append(o.var)
                    vals.append(o.val)
                else:  # a constant: the caller gets a copy, as on every replay
                    outvars.append(trace.const(o))
                    vals.append(o.copy() if _is_array(o) and hasattr(o, "copy") else o)
        except _Foreign:
            return None, None, None
        finally:
            trace.end("jit")
        jaxpr = Jaxpr(invars, [v for v, _ in trace.consts], [c for _, c in trace.consts],
                      trace.eqns, outvars)
        optimized = dce(fold_negations(cse(jaxpr)))
        donated = frozenset()
        if self.donate_argnums:
            dyn_args = dyn[0]
            args_only = self._rebuild(static, skw, (dyn_args, {}))[0]
            flags = self._donated_flags(args_only)
            dyn_flags = [f for f, x in zip(flags, leaves) if _dynamic(x)]
            donated = frozenset(id(v) for v, f in zip(invars, dyn_flags) if f)
        run, src = compile_jaxpr(optimized, _ident(getattr(self.fun, "__name__", "f")), donated)
        return Lowered(jaxpr, optimized, src, run), vals, out_def

    def _note_retrace(self, key: Any, dyn: tuple, structure: Any) -> None:
        self._traces += 1
        last, self._last = self._last, (key, structure)
        if self._warned or self._traces < RETRACE_AFTER or last is None:
            return
        self._warned = True
        last, last_structure = last
        paths = [tree.keystr(p) for p, _ in tree.leaves_with_path(dyn)]
        where, old, new = "the static arguments", last[2:], key[2:]
        if last_structure != structure:
            where, old, new = "the argument structure", last_structure, structure
        else:
            for p, a, b in zip(paths, last[1], key[1]):
                if a != b:
                    where, old, new = f"argument {p or '?'}", _sig_text(a), _sig_text(b)
                    break
        warnings.warn(RETRACE.format(name=getattr(self.fun, "__name__", "the function"),
                                     n=self._traces, path=where, old=old, new=new),
                      RuntimeWarning, stacklevel=4)

    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """The graph ``jit`` traces for these arguments, the optimised graph and the
        generated source (``.jaxpr``, ``.optimized``, ``.source``)."""
        static, skw, dyn = self._split(args, kwargs)
        leaves, in_def = tree.flatten(dyn)
        lowered, _, _ = self._stage(static, skw, dyn, leaves, in_def)
        if lowered is None:
            raise TypeError("jit.lower: the function uses a value traced by another "
                            "transform (an argument or a closure), so it runs inline.")
        return lowered


def _sig_text(s: tuple) -> str:
    if s and s[0] == "static":
        return repr(s[1])
    if s and s[0] == "number":
        return f"a Python {s[1].__name__}"
    return f"{s[2]}{list(s[1])}"


def _ident(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "f"
    return out if not out[0].isdigit() else "f_" + out


def jit(fun: Callable | None = None, *, static_argnums: int | Sequence[int] = (),
        static_argnames: str | Sequence[str] = (),
        donate_argnums: int | Sequence[int] = ()) -> Any:
    """``fun`` traced once per signature into a graph of primitives, then replayed.

    The first call with a new signature (the pytree structure of the arguments,
    each array's type, shape and dtype, and the values of static arguments and
    of non-array leaves such as Python numbers) traces ``fun``; later calls with
    that signature run the generated code without tracing. A new value of an
    array does not trace again. Inside ``fun`` values are unknown: Python control
    flow on them raises an error naming the line (make the deciding argument
    static, or use ``np.where``), and side effects such as ``print`` run once, at
    trace time. Used as a decorator with or without arguments.

    ``donate_argnums`` names positional arguments whose arrays the program may
    overwrite once it has read them for the last time (a training step writes the
    new parameters into the old ones). Their contents are undefined after the
    call: keep using only what the call returns. A donated array must be writable
    and share no memory with another argument.

    >>> import numpy as np, funcflux as ff
    >>> @ff.jit
    ... def step(w, x):
    ...     return w - 0.1 * ff.grad(lambda w: np.sum((x @ w) ** 2))(w)
    >>> step(np.ones(2), np.eye(2))
    array([0.8, 0.8])
    """
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
    don = (donate_argnums,) if isinstance(donate_argnums, int) else tuple(donate_argnums)
    if fun is None:
        return lambda f: Jitted(f, nums, names, don)
    if not callable(fun):
        raise TypeError(f"jit: expected a function, got {type(fun).__name__}")
    return Jitted(fun, nums, names, don)


def make_jaxpr(fun: Callable, static_argnums: int | Sequence[int] = ()) -> Callable:
    """A function that returns the graph ``fun`` stages for its arguments (printable,
    one primitive per line), before any optimisation.

    >>> import numpy as np, funcflux as ff
    >>> print(ff.make_jaxpr(lambda x: np.sin(x) * 2.0)(np.ones(3)))
    { lambda  ; a:f64[3]. let
        b:f64[3] = sin a
        c:f64[3] = multiply b 2.0
      in (c,) }
    """
    jitted = jit(fun, static_argnums=static_argnums)

    def traced(*args: Any, **kwargs: Any) -> Jaxpr:
        return jitted.lower(*args, **kwargs).jaxpr
    return traced


def eval_shape(fun: Callable, *args: Any, **kwargs: Any) -> Any:
    """The shapes and dtypes of ``fun(*args, **kwargs)``, computing nothing.

    Array leaves of the arguments (NumPy or CuPy arrays, tracers, or
    :class:`ShapeDtypeStruct`) stand for their shape and dtype only; other leaves
    (Python numbers, strings, ``None``) are passed as they are. Every array leaf of
    the result becomes a ``ShapeDtypeStruct``. Each primitive gives its result's type
    by its shape rule, so this works for arrays that would not fit in memory; the few
    primitives without one run on zero-stride stand-ins, which computes that result once
    (the Staging page lists them). Python control flow on a value raises
    ``ConcretizationTypeError``, as under ``jit``.

    >>> import numpy as np, funcflux as ff
    >>> x = ff.ShapeDtypeStruct((10**9, 784), np.float32)    # 3 TB, never allocated
    >>> w = np.zeros((784, 10), np.float32)
    >>> ff.eval_shape(lambda x, w: np.tanh(x @ w).sum(axis=0), x, w)
    ShapeDtypeStruct(shape=(10,), dtype=float32)
    """
    leaves, in_def = tree.flatten((args, kwargs))
    trace = StagingTrace(abstract=True)
    traced: list = []
    for x in leaves:
        if type(x) is ShapeDtypeStruct or _is_array(x) or isinstance(x, Tracer):
            a = abstract_of(x)
            traced.append(StagedTracer(trace, a, trace.new_var(a)))
        else:
            traced.append(x)
    try:
        a, k = tree.unflatten(in_def, traced)
        out = fun(*a, **k)
        out_leaves, out_def = tree.flatten(out)
        res = [(o.val if type(o.val) is ShapeDtypeStruct else abstract_of(o.val))
               if type(o) is StagedTracer and o._trace is trace else
               abstract_of(o) if _is_array(o) or type(o) in _PY else o for o in out_leaves]
    except _Foreign:  # a closure over a value of an enclosing jit's trace
        raise TypeError("eval_shape: the function reads a value staged by an enclosing jit "
                        "from a closure; pass it as an argument.") from None
    finally:
        trace.end("eval_shape")
    return tree.unflatten(out_def, res)
