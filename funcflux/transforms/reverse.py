"""Reverse mode: a tape inside its level (HIPS autograd's design in JAX's levels).

While the function runs, every primitive applied to this level's tracers
records one node: the tracer it returns remembers the primitive, its unwrapped
arguments and parameters, and which arguments were this level's tracers (its
parents). Nodes are appended to the level's tape in the order they run, which
is already a topological order, so the backward pass is one loop over the tape
in reverse: each node hands its accumulated cotangent to its parents through
the primitive's VJP rules. No closure is built on the forward pass; the rules
run only on the backward pass, and only for arguments that need them.

VJP rules are written with primitives, so if a cotangent is itself a tracer of
another transform (a higher level, as in jvp-of-grad or vmap-of-vjp) the
backward pass is traced by it like any user code.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..core.trace import Trace, Tracer, escaped
from .. import tree
from . import edge
from .custom import bind_custom
from .edge import as_output, as_primal, is_float_leaf
from ..core.backend import array_module
from .. import numpy as fnp

NOT_SCALAR = (
    "{fn} needs a scalar output, but the function returned {shape}. Reduce it "
    "(e.g. np.sum or np.mean), or use ff.vjp for vector-Jacobian products and ff.jacrev "
    "for whole Jacobians."
)
NOT_ARRAY = (
    "{fn} needs the function to return a scalar (the value to differentiate), but it "
    "returned {what}. Return the loss as a number or 0-d array, e.g. `return np.sum(...)`; "
    "to return more, use has_aux=True and return (loss, extra)."
)


class RTracer(Tracer):
    """A value on the tape: the node that produced it and its running cotangent."""

    __slots__ = ("value", "prim", "args", "params", "parents", "ct")

    def __init__(self, trace: "ReverseTrace", value: Any, prim: Any = None, args: tuple = (),
                 params: Any = None, parents: tuple = ()):
        self._trace = trace
        self.value = value
        self.prim = prim
        self.args = args
        self.params = params
        self.parents = parents
        self.ct = None

    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def aval(self) -> Any:
        if self._trace.dead:
            raise escaped(self)
        return self.value


class ReverseTrace(Trace):
    __slots__ = ("tape",)

    def __init__(self) -> None:
        super().__init__()
        self.tape: list[RTracer] = []

    def process_primitive(self, prim: Any, args: tuple, params: dict) -> Any:
        # Values of lower levels are tracers too: those go through the primitive again
        # (bind), plain arrays straight to the implementation (one call less per op).
        if len(args) == 1:  # the top trace is ours, so a lone argument is our tracer
            a = args[0]
            v = a.value
            ans = prim(v, **params) if isinstance(v, Tracer) else prim.impl(v, **params)
            if prim.nondiff:
                return ans
            out = RTracer(self, ans, prim, (v,), params, (a,))
            self.tape.append(out)
            return out
        if len(args) == 2:  # binary ops: unwrapped inline (the next most common case)
            a, b = args
            if type(a) is RTracer and a._trace is self:
                pa, a = a, a.value
            else:
                pa = None
            if type(b) is RTracer and b._trace is self:
                pb, b = b, b.value
            else:
                pb = None
            ans = prim(a, b, **params) if isinstance(a, Tracer) or isinstance(b, Tracer) \
                else prim.impl(a, b, **params)
            if prim.nondiff:
                return ans
            out = RTracer(self, ans, prim, (a, b), params, (pa, pb))
            self.tape.append(out)
            return out
        vals, parents = self._unwrap(args)
        ans = prim(*vals, **params)
        if prim.nondiff:
            return ans
        out = RTracer(self, ans, prim, vals, params, parents)
        self.tape.append(out)
        return out

    # -- custom rules (see custom.py) ------------------------------------------------
    def _unwrap(self, xs: list) -> tuple[list, list]:
        vals, parents = [], []
        for a in xs:
            if type(a) is RTracer and a._trace is self:
                vals.append(a.value)
                parents.append(a)
            else:
                vals.append(a)
                parents.append(None)
        return vals, parents

    def process_custom_vjp(self, rule: Any, xs: list) -> list:
        vals, parents = self._unwrap(xs)
        outs, res = rule.fwd(*vals)
        return self._custom_node(rule.name, rule.bwd, res, parents, outs)

    def process_custom_jvp(self, rule: Any, xs: list) -> list:
        vals, parents = self._unwrap(xs)
        outs = bind_custom(rule, vals)
        return self._custom_node(rule.name, lambda res, cts: _transpose_jvp(rule, vals, parents, cts),
                                 None, parents, outs)

    def _custom_node(self, name: str, bwd: Any, res: Any, parents: list, outs: list) -> list:
        """One tape node for the whole call, fed by one selector node per output.

        The call's node sits on the tape before its outputs, so by the time the
        backward pass reaches it every output has added its cotangent into it.
        """
        last = max(i for i, p in enumerate(parents) if p is not None)
        hub = RTracer(self, None, _CustomNode(name, bwd, res, outs, last), (), _NO_PARAMS,
                      tuple(parents))
        self.tape.append(hub)
        result = []
        for j, o in enumerate(outs):
            if edge.is_float_leaf(o):
                t = RTracer(self, o, _Select(j), (), _NO_PARAMS, (hub,))
                self.tape.append(t)
                result.append(t)
            else:
                result.append(o)
        return result

    def backward(self) -> None:
        """Push every node's cotangent to its parents, newest node first."""
        _backward(self.tape)


def _backward(tape: list) -> None:
    """Push every node's cotangent to its parents, newest node first."""
    for node in reversed(tape):
        g = node.ct
        if g is None:
            continue
        node.ct = None
        prim, args, params = node.prim, node.args, node.params
        ans = node.value
        vjps = prim.vjps
        if prim.fast_vjps is not None and _on_numpy(g, args):
            vjps = prim.fast_table()
        for i, p in enumerate(node.parents):
            if p is not None:
                try:
                    rule = vjps[i]
                except IndexError:
                    rule = None
                if rule is None:
                    rule = prim.vjp_rule(i)  # raises, naming the primitive
                c = rule(g, ans, *args, **params)
                if c is not None:
                    p.ct = c if p.ct is None else p.ct + c


def _on_numpy(g: Any, args: tuple) -> bool:
    """Whether a node may take its primitive's fast VJP rules (``def_fast_vjp``): its
    cotangent and arguments are all NumPy arrays or scalars, so no transform traces
    this step of the backward pass (a tracer would be among them) and the data is
    on the host."""
    if type(g) is not np.ndarray and not isinstance(g, np.generic):
        return False
    for a in args:
        if type(a) is not np.ndarray and not isinstance(a, np.generic):
            return False
    return True


_NO_PARAMS: dict = {}


class _Cts:
    """The cotangents reaching a custom call's node, by output index; ``+`` merges."""

    __slots__ = ("items",)

    def __init__(self, items: dict):
        self.items = items

    def __add__(self, other: "_Cts") -> "_Cts":
        for j, c in other.items.items():
            old = self.items.get(j)
            self.items[j] = c if old is None else old + c
        return self


class _RuleTable:
    """``node.vjps[i]`` for the stand-ins below, which build their rules on demand."""

    __slots__ = ("owner",)

    def __init__(self, owner: Any):
        self.owner = owner

    def __getitem__(self, i: int) -> Any:
        return self.owner.vjp_rule(i)


class _Select:
    """Stands in for a primitive on an output's node: routes its cotangent to the call."""

    __slots__ = ("j",)
    name = "custom call output"
    nondiff = False
    fast_vjps = None

    def __init__(self, j: int):
        self.j = j

    def vjp_rule(self, i: int) -> Any:
        return lambda g, ans: _Cts({self.j: g})

    @property
    def vjps(self) -> Any:
        return _RuleTable(self)


class _CustomNode:
    """Stands in for a primitive on a custom call's node: one ``bwd`` for all arguments."""

    __slots__ = ("name", "bwd", "res", "outs", "last", "_g", "_cts")
    nondiff = False
    fast_vjps = None

    def __init__(self, name: str, bwd: Any, res: Any, outs: list, last: int):
        self.name, self.bwd, self.res, self.outs, self.last = name, bwd, res, outs, last
        self._g: Any = None
        self._cts: Any = None

    def vjp_rule(self, i: int) -> Any:
        return lambda g, ans: self._ct(i, g)

    @property
    def vjps(self) -> Any:
        return _RuleTable(self)

    def _ct(self, i: int, g: _Cts) -> Any:
        if g is not self._g:  # the first argument of this backward pass: run bwd once
            from .. import numpy as fnp
            cts = [g.items.get(j) for j in range(len(self.outs))]
            cts = [fnp.zeros_like(o) if c is None and edge.is_float_leaf(o) else c
                   for c, o in zip(cts, self.outs)]
            self._g, self._cts = g, self.bwd(self.res, cts)
        c = self._cts[i]
        if i == self.last:
            self._g = self._cts = None
        return c


def _transpose_jvp(rule: Any, vals: list, parents: list, cts: list) -> list:
    """Pull ``cts`` back through the linear map ``t -> rule.jvp(vals, t)[1]``.

    The map is evaluated at ``t = 0`` on a fresh tape; its reverse pass is the transpose.
    """
    from .. import numpy as fnp
    trace = ReverseTrace()
    tangents: list = []
    for v, p in zip(vals, parents):
        if p is not None:
            tangents.append(RTracer(trace, fnp.zeros_like(v)))
        else:
            tangents.append(fnp.zeros_like(v) if edge.is_float_leaf(v) else None)
    _, touts = rule.jvp(list(vals), tangents)
    for o, c in zip(touts, cts):
        if c is not None and type(o) is RTracer and o._trace is trace:
            o.ct = c if o.ct is None else o.ct + c
    trace.backward()
    trace.tape.clear()  # tape -> tracer -> trace is a cycle: break it, free the values now
    out = []
    for t, p in zip(tangents, parents):
        if p is None:
            out.append(None)
        else:
            out.append(t.ct)
            t.ct = None
    return out


def _lower(x: Any, trace: ReverseTrace) -> Any:
    return x.value if type(x) is RTracer and x._trace is trace else x


def _split_aux(out: Any, trace: ReverseTrace) -> tuple:
    """``(output, aux)`` of a ``has_aux`` function, aux's values lowered off ``trace``."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("has_aux=True needs the function to return a pair (output, aux); "
                        f"it returned {type(out).__name__}.")
    return out[0], tree.map(lambda a: _lower(a, trace), out[1])


def vjp(fun: Callable, *primals: Any, has_aux: bool = False) -> Any:
    """Evaluate ``fun(*primals)`` and return ``(out, pullback)`` (and ``aux``).

    ``pullback(cotangent)`` takes a cotangent with the structure of ``out`` and
    returns a tuple with one cotangent per primal. Integer and bool leaves get
    ``None``; primals with no floating-point leaf at all are an error. The tape
    lives as long as ``pullback``; it may be called more than once.

    Complex values follow JAX: the pullback is the transpose of the (real-linear)
    tangent map, not its adjoint, so for a holomorphic ``f`` it returns
    ``ct * f'(z)``, with no conjugate.

    >>> import numpy as np, funcflux as ff
    >>> out, pullback = ff.vjp(lambda x: np.sin(x) * 2.0, np.array([0.0, np.pi]))
    >>> pullback(np.ones(2))
    (array([ 2., -2.]),)
    >>> ff.vjp(lambda z: z * z, 1.0 + 2.0j)[1](1.0 + 0.0j)  # 2z
    (array(2.+4.j),)
    """
    trace = ReverseTrace()
    primals, inputs = _trace_args(trace, "vjp", primals, range(len(primals)))
    if not any(type(w) is RTracer for _, wrapped, _ in inputs for w in wrapped) and \
            any(leaves for _, _, leaves in inputs):
        raise TypeError(edge.NO_FLOAT_PRIMAL.format(
            fn="vjp", kinds=edge.leaf_kinds([x for *_, ls in inputs for x in ls])))
    try:
        out = fun(*primals)
    finally:
        trace.end("vjp")
    # The pullback keeps the tape; the trace lets go of it, so that no cycle (tracer ->
    # trace -> tape -> tracer) outlives the pullback: dropping it frees every value.
    tape, trace.tape = trace.tape, []
    if has_aux:
        out, aux = _split_aux(out, trace)
    out_leaves, out_def = tree.flatten(out)
    out_vals = [edge.as_output(_lower(o, trace)) for o in out_leaves]

    def pullback(cotangent: Any) -> tuple:
        cts = tree.flatten_up_to(out_def, cotangent, "the cotangent given to pullback")
        for i, (o, c) in enumerate(zip(out_leaves, cts)):
            if c is None:
                continue
            if edge.shape_of(c) != edge.shape_of(out_vals[i]):
                raise ValueError(
                    f"pullback: cotangent leaf {i} has shape {edge.shape_of(c)}, but the "
                    f"output there has shape {edge.shape_of(out_vals[i])}.")
            if type(o) is RTracer and o._trace is trace:
                o.ct = c if o.ct is None else o.ct + c
        _backward(tape)
        return tuple(_collect(inputs, False, cts))

    result = (tree.unflatten(out_def, out_vals), pullback)
    return result + (aux,) if has_aux else result


def value_and_grad(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
                   holomorphic: bool = False, allow_int: bool = False) -> Callable:
    """``fun`` returning ``(value, gradient)``; see :func:`grad`.

    >>> import funcflux as ff
    >>> ff.value_and_grad(lambda x: x ** 3)(2.0)
    (array(8.), array(12.))
    """
    vg = _value_and_grad(fun, argnums, has_aux, holomorphic, allow_int, "value_and_grad")
    _wraps(vg, fun, "value_and_grad")
    return vg


def _value_and_grad(fun: Callable, argnums: int | Sequence[int], has_aux: bool,
                    holomorphic: bool, allow_int: bool, fn: str) -> Callable:
    def value_and_grad_fun(*args: Any, **kwargs: Any) -> Any:
        # vjp's edge (_trace_args, _collect) with the backward pass run directly: this
        # runs once per training step, so no pullback closure and no output pytree.
        nargs = len(args)
        if type(argnums) is int and -nargs <= argnums < nargs:
            nums: tuple[int, ...] = (argnums % nargs,)
        else:
            nums = edge.normalise_argnums(fn, argnums, nargs)
        trace = ReverseTrace()
        full, inputs = _trace_args(trace, fn, args, nums, holomorphic, allow_int, True)
        try:
            return _grad_rest(trace, fun(*full, **kwargs), inputs, argnums, has_aux,
                              holomorphic, allow_int, fn)
        finally:
            # The tape and its tracers point at each other (tracer -> trace -> tape): a
            # cycle that only the garbage collector would free, keeping every
            # intermediate array of the step alive until then. Cleared, they go now.
            trace.tape.clear()
            trace.end(fn)

    return value_and_grad_fun


def _trace_args(trace: ReverseTrace, fn: str, args: Sequence[Any], nums: Sequence[int],
                holomorphic: bool = False, allow_int: bool = False,
                each_needs_float: bool = False) -> tuple[list, list]:
    """The API edge of vjp, grad and value_and_grad: ``args`` with the floating-point
    leaves of ``args[nums]`` wrapped as inputs of ``trace``.

    A differentiated argument that is a bare Python int reads as a float (``grad(f)(3)``
    is ``grad(f)(3.0)``); integer and bool leaves inside it stay constants. With
    ``each_needs_float``, an argument without a float leaf is an error (unless
    ``allow_int``); with ``holomorphic``, every float leaf must be complex.
    Returns the new argument list and, per differentiated argument, ``(treedef,
    wrapped leaves, original leaves)`` for :func:`_collect`.
    """
    full = list(args)
    inputs = []
    for i in nums:
        a = full[i]
        leaves, td = tree.flatten(edge.promote_int(a) if type(a) is int else a)
        wrapped = []
        found = False
        for x in leaves:
            if is_float_leaf(x):
                if holomorphic and not edge.is_complex(x):  # raises, naming the leaf
                    edge.check_inputs(fn, nums, [args[j] for j in nums], True, allow_int)
                x = RTracer(trace, as_primal(x))
                found = True
            wrapped.append(x)
        if each_needs_float and leaves and not found and not allow_int:
            raise TypeError(edge.NO_FLOAT_LEAF.format(fn=fn, arg=i,
                                                      kinds=edge.leaf_kinds(leaves)))
        full[i] = wrapped[0] if td.node is None else tree.unflatten(td, wrapped)
        inputs.append((td, wrapped, leaves))
    return full, inputs


def _collect(inputs: list, allow_int: bool, given: Sequence[Any] = ()) -> list:
    """Per differentiated argument, its cotangent (shaped like the argument) read off the
    input tracers of :func:`_trace_args`; zeros where nothing flowed, ``None`` (``float0``
    zeros with ``allow_int``) for integer leaves. Every result is an ordinary writable
    array sharing memory with no other, with no input and with nothing in ``given``."""
    res, every = [], list(given)
    for _, wrapped, leaves in inputs:
        for w in wrapped:
            if type(w) is RTracer:
                g = w.ct
                w.ct = None
                res.append(fnp.zeros_like(w.value) if g is None else as_output(g))
            elif allow_int and edge.is_int_leaf(w):
                res.append(edge.float0_zeros(w))
            else:
                res.append(None)
        every += leaves
    edge.owned(res, every)  # one call: cotangents of different arguments may share memory
    out, start = [], 0
    for td, wrapped, _ in inputs:
        n = len(wrapped)
        out.append(res[start] if td.node is None else tree.unflatten(td, res[start:start + n]))
        start += n
    return out


def _grad_rest(trace: "ReverseTrace", out: Any, inputs: list, argnums: Any,
               has_aux: bool, holomorphic: bool, allow_int: bool, fn: str) -> Any:
    """The second half of ``value_and_grad``: check the output, run the tape, collect."""
    if has_aux:
        out, aux = _split_aux(out, trace)
    ours = type(out) is RTracer and out._trace is trace
    if ours:
        val = out.value
    elif not (isinstance(out, (list, tuple, dict)) or _arraylike(out)):
        raise TypeError(NOT_ARRAY.format(fn=fn, what=_describe_out(out)))
    elif isinstance(out, (list, tuple, dict)) or tree.structure(out).num_leaves != 1:
        raise TypeError(NOT_SCALAR.format(fn=fn, shape=_describe_out(out)))
    else:
        val = _lower(out, trace)
    if edge.shape_of(val) != ():
        raise TypeError(NOT_SCALAR.format(fn=fn, shape=_describe_out(val)))
    if holomorphic or edge.is_complex(val):
        edge.check_output(fn, holomorphic, val)
    if ours:
        out.ct = fnp.ones_like(val) if isinstance(val, Tracer) else \
            array_module(val).ones_like(val)
        trace.backward()
    grads = _collect(inputs, allow_int)
    g = grads[0] if isinstance(argnums, int) else tuple(grads)
    val = as_output(val)
    return ((val, aux), g) if has_aux else (val, g)


def grad(fun: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
         holomorphic: bool = False, allow_int: bool = False) -> Callable:
    """The gradient of a scalar-valued ``fun`` with respect to ``args[argnums]``.

    Gradients have the structure of the differentiated argument; integer and
    bool leaves get ``None`` (``float0`` zeros with ``allow_int=True``, as in
    JAX). With ``has_aux`` the function returns ``(value, aux)`` and the
    gradient function returns ``(gradient, aux)``. Every gradient is an
    ordinary writable array that shares memory with no input and no other
    gradient.

    Complex numbers follow JAX: the output must be real unless
    ``holomorphic=True`` (then every differentiated input must be complex and
    the result is ``f'(z)``). For a real ``f`` of complex ``z = x + iy`` the
    result is ``df/dx - i df/dy``, the *conjugate* of the steepest-ascent
    direction: a descent step is ``z - lr * np.conj(g)``.

    >>> import numpy as np, funcflux as ff
    >>> f = lambda x: 3 * x**2 + 2 * x + 1
    >>> float(ff.grad(f)(2.0)), float(ff.grad(ff.grad(f))(2.0))
    (14.0, 6.0)
    >>> ff.grad(lambda x, y: np.sum((x - y) ** 2), argnums=(0, 1))(np.array([2., 1.]), np.array([2., 0.]))
    (array([0., 2.]), array([-0., -2.]))
    >>> ff.grad(lambda z: z * z, holomorphic=True)(1.0 + 2.0j)
    array(2.+4.j)
    """
    vg = _value_and_grad(fun, argnums, has_aux, holomorphic, allow_int, "grad")

    def grad_fun(*args: Any, **kwargs: Any) -> Any:
        (out, g) = vg(*args, **kwargs)
        return (g, out[1]) if has_aux else g

    _wraps(grad_fun, fun, "grad")
    return grad_fun


def _arraylike(x: Any) -> bool:
    return isinstance(x, (Tracer, int, float, complex)) or hasattr(x, "dtype")


def _describe_out(out: Any) -> str:
    if out is None:
        return "None (is a return statement missing?)"
    if isinstance(out, (list, tuple, dict)):
        return f"a {type(out).__name__} pytree"
    if not _arraylike(out):
        return f"a {type(out).__name__}, not an array"
    return f"an array of shape {edge.shape_of(out)}"


def _wraps(wrapper: Callable, fun: Callable, kind: str) -> None:
    name = getattr(fun, "__name__", "fun")
    wrapper.__name__ = f"{kind}_{name}"
    wrapper.__qualname__ = wrapper.__name__
    wrapper.__doc__ = f"{kind} of {name}." + (f"\n\n{fun.__doc__}" if getattr(fun, "__doc__", None) else "")
    wrapper.__wrapped__ = fun  # type: ignore[attr-defined]
