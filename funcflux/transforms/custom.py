"""User-defined derivatives: ``custom_vjp`` and ``custom_jvp``.

A custom function behaves like a primitive whose rules the user writes. Its
body is ordinary NumPy code, but every transform that meets a call to it asks
its own trace what to do (``process_custom_vjp`` / ``process_custom_jvp``),
with the arguments flattened to a list of leaves, as for a primitive:

- reverse mode runs ``fwd`` one level down, keeps the residuals, and on the
  backward pass calls ``bwd`` once with every output's cotangent. A
  ``custom_jvp`` rule is transposed there: reverse mode pulls the cotangent
  back through ``t -> jvp_rule(primals, t)[1]``, which is linear in ``t``.
- forward mode calls the ``custom_jvp`` rule. A ``custom_vjp`` function under
  forward mode (``jvp``, ``jacfwd``) is differentiated through its body,
  operation by operation: its reverse rule says nothing about tangents. JAX
  raises an error there instead; we do not, because that error would also hit
  ``hessian`` (``jacfwd`` of ``jacrev``) whenever ``fwd`` calls the function
  itself, the usual way to write it. The price: a rule that changes the
  derivative on purpose (a gradient clip) applies to reverse mode only; write
  it as a ``custom_jvp`` when forward mode must follow it too.
- ``vmap`` batches the body and the rules by their own primitives; when a
  transform waits below it (``grad`` of ``vmap``), it hands that transform a
  batched copy of the custom function so that the rule still applies there.

Rules are written with NumPy operations like any user code, so they are
themselves differentiable (grad of grad differentiates ``bwd``) and batchable.
Two limits, shared with JAX: residuals must be arrays (or pytrees of arrays),
and the function must not close over traced values; pass them as arguments.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Sequence

import numpy as np

from ..core.trace import Tracer, find_top_trace
from .. import tree
from . import edge

NO_RULE_YET = ("{kind} function '{name}' was called before its rule was defined: "
               "call {name}.{method}(...) first.")
BAD_PAIR = ("{kind} function '{name}': {what} must return a pair {pair}, but returned "
            "{got}.")
BAD_BWD = ("custom_vjp function '{name}': bwd must return a tuple with one cotangent per "
           "differentiable positional argument ({n} here; None for a zero cotangent), "
           "but returned {got}.")
BAD_SHAPE = ("{kind} function '{name}': {what} at {path} has shape {got}, but {ref} has "
             "shape {want}.")
TRACED_STATIC = ("{kind} function '{name}': the argument at position {i} is in "
                 "nondiff_argnums, so it must not be a traced value. Pass it as an ordinary "
                 "argument to differentiate through it.")


# ----------------------------------------------------------------------------- flat rules
class CustomVJPRule:
    """A custom_vjp call seen by the traces: flat lists of leaves in and out.

    ``fun(*xs) -> outs``; ``fwd(*xs) -> (outs, residuals)``;
    ``bwd(residuals, cts) -> one cotangent (or None) per leaf of xs``.
    """

    __slots__ = ("name", "fun", "fwd", "bwd")
    method = "process_custom_vjp"

    def __init__(self, name: str, fun: Callable, fwd: Callable, bwd: Callable):
        self.name, self.fun, self.fwd, self.bwd = name, fun, fwd, bwd


class CustomJVPRule:
    """A custom_jvp call seen by the traces: ``fun(*xs) -> outs`` and
    ``jvp(primals, tangents) -> (outs, tangents_out)``, all flat lists; a tangent
    is ``None`` for a leaf that is not floating point."""

    __slots__ = ("name", "fun", "jvp")
    method = "process_custom_jvp"

    def __init__(self, name: str, fun: Callable, jvp: Callable):
        self.name, self.fun, self.jvp = name, fun, jvp


def bind_custom(rule: Any, xs: Sequence[Any]) -> list:
    """Apply a custom rule to leaves ``xs``: directly, or through the top trace."""
    top = find_top_trace(tuple(xs))
    if top is None:
        return rule.fun(*xs)
    process = getattr(top, rule.method, None)
    if process is None:  # a trace that knows no custom rules sees the body's primitives
        return rule.fun(*xs)
    return process(rule, list(xs))


# ----------------------------------------------------------------------------- user API
class _Custom:
    kind = ""
    method = ""

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(sorted(int(i) for i in nondiff_argnums))
        self._name = getattr(fun, "__name__", "fun")
        try:  # rules see every positional argument, defaults filled in (as in JAX)
            params = inspect.signature(fun).parameters.values()
        except (TypeError, ValueError):
            params = []
        pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._npos = len(pos)
        self._defaults = any(p.default is not p.empty for p in pos)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else functools.partial(self, obj)

    def __repr__(self) -> str:
        return f"<{self.kind} {self._name}>"

    def _split(self, args: tuple, kwargs: dict) -> tuple[tuple, list, tuple]:
        """``(static args, leaves of the rest, treedef of the rest)``."""
        if kwargs or self._defaults and len(args) < self._npos:
            ba = inspect.signature(self.fun).bind(*args, **kwargs)
            ba.apply_defaults()
            if ba.kwargs:
                raise TypeError(f"{self.kind} function '{self._name}' does not accept "
                                f"keyword-only arguments ({', '.join(ba.kwargs)}).")
            args = ba.args
        nums = tuple(i % len(args) for i in self.nondiff_argnums) if args else ()
        static = tuple(args[i] for i in nums)
        for i, s in zip(nums, static):
            if any(isinstance(x, Tracer) for x in tree.leaves(s)):
                raise TypeError(TRACED_STATIC.format(kind=self.kind, name=self._name, i=i))
        dyn = tuple(a for i, a in enumerate(args) if i not in nums)
        leaves, in_def = tree.flatten(dyn)
        return static, leaves, in_def

    def _merge(self, static: tuple, dyn: Sequence[Any]) -> tuple:
        if not static:
            return tuple(dyn)
        out, s, d = [], iter(static), iter(dyn)
        for i in range(len(static) + len(dyn)):
            out.append(next(s) if i in self.nondiff_argnums else next(d))
        return tuple(out)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self._ready():
            raise TypeError(NO_RULE_YET.format(kind=self.kind, name=self._name,
                                               method=self.method))
        static, leaves, in_def = self._split(args, kwargs)
        if not any(isinstance(x, Tracer) for x in leaves):
            return self.fun(*self._merge(static, tree.unflatten(in_def, leaves)))
        cell: dict = {}
        outs = bind_custom(self._rule(static, leaves, in_def, cell), leaves)
        return tree.unflatten(cell["out"], outs)

    def _call_fun(self, static: tuple, in_def: Any, cell: dict) -> Callable:
        def fun(*xs: Any) -> list:
            out = self.fun(*self._merge(static, tree.unflatten(in_def, xs)))
            ol, cell["out"] = tree.flatten(out)
            return [edge.as_primal(o) for o in ol]
        return fun

    def _pair(self, r: Any, what: str, pair: str) -> tuple:
        if not (isinstance(r, (tuple, list)) and len(r) == 2):
            raise TypeError(BAD_PAIR.format(kind=self.kind, name=self._name, what=what,
                                            pair=pair, got=type(r).__name__))
        return r[0], r[1]


class custom_vjp(_Custom):
    """A function with a user-written reverse-mode rule.

    ``fwd(*args) -> (out, residuals)`` computes the output and what the
    backward pass needs; ``bwd(residuals, cotangent) -> tuple`` returns one
    cotangent per positional argument (``None`` for zero). Arguments listed in
    ``nondiff_argnums`` are static: ``bwd`` receives them first,
    ``bwd(*static, residuals, cotangent)``, and returns cotangents for the others.
    Forward mode (``jvp``, ``jacfwd``) differentiates the body instead of using
    the rule (see the module docstring); ``custom_jvp`` serves both modes.

    >>> import numpy as np, funcflux as ff
    >>> @ff.custom_vjp
    ... def clip_gradient(x):
    ...     return x
    >>> clip_gradient.defvjp(lambda x: (x, None), lambda res, g: (np.clip(g, -1.0, 1.0),))
    >>> float(ff.grad(lambda x: 3.0 * clip_gradient(x))(2.0))
    1.0
    """

    kind = "custom_vjp"
    method = "defvjp"

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        super().__init__(fun, nondiff_argnums)
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None

    def _ready(self) -> bool:
        return self.fwd is not None

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """Set the forward pass ``fwd`` and the backward pass ``bwd``."""
        self.fwd, self.bwd = fwd, bwd

    def _rule(self, static: tuple, leaves: list, in_def: Any, cell: dict) -> CustomVJPRule:
        shapes = [edge.shape_of(x) for x in leaves]
        floats = [edge.is_float_leaf(x) for x in leaves]
        dtypes = [edge.dtype_of(edge.as_primal(x)) for x in leaves]
        n_dyn = len(in_def.children)

        def fwd(*xs: Any) -> tuple[list, list]:
            out, res = self._pair(self.fwd(*self._merge(static, tree.unflatten(in_def, xs))),
                                  "fwd", "(output, residuals)")
            ol, cell["out"] = tree.flatten(out)
            rl, cell["res"] = tree.flatten(res)
            return [edge.as_primal(o) for o in ol], rl

        def bwd(res: list, cts: list) -> list:
            cts_tree = tree.unflatten(cell["out"], cts)
            got = self.bwd(*static, tree.unflatten(cell["res"], res), cts_tree)
            if not isinstance(got, (tuple, list)) or len(got) != n_dyn:
                raise TypeError(BAD_BWD.format(name=self._name, n=n_dyn,
                                               got=_describe(got)))
            flat: list = []
            for i, (c, sub) in enumerate(zip(got, in_def.children)):
                if c is None:
                    flat.extend([None] * sub.num_leaves)
                else:
                    flat.extend(tree.flatten_up_to(sub, c, f"the cotangent bwd returned for "
                                                   f"argument {i}"))
            out = []
            for k, c in enumerate(flat):
                if c is None or not floats[k]:
                    out.append(None)
                    continue
                if edge.shape_of(c) != shapes[k]:
                    raise ValueError(BAD_SHAPE.format(
                        kind=self.kind, name=self._name, what="the cotangent bwd returned",
                        path=f"leaf {k} of the arguments", got=edge.shape_of(c),
                        ref="the argument", want=shapes[k]))
                out.append(_cast(c, dtypes[k]))
            return out

        return CustomVJPRule(self._name, self._call_fun(static, in_def, cell), fwd, bwd)


class custom_jvp(_Custom):
    """A function with a user-written forward-mode rule (used by reverse mode too).

    ``jvp_rule(primals, tangents) -> (out, tangent_out)``, where ``primals`` and
    ``tangents`` are tuples with one entry per positional argument; the rule
    must be linear in ``tangents``. Reverse mode transposes it, so one rule
    serves ``grad``, ``jvp``, ``jacfwd`` and ``jacrev``. Tangents of integer
    leaves are ``None``. ``defjvp`` returns the rule, so it works as a decorator.

    >>> import numpy as np, funcflux as ff
    >>> @ff.custom_jvp
    ... def log1pexp(x):
    ...     return np.log(1.0 + np.exp(x))
    >>> @log1pexp.defjvp
    ... def log1pexp_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     return log1pexp(x), t / (1.0 + np.exp(-x))
    >>> float(ff.grad(log1pexp)(50.0)), float(ff.jvp(log1pexp, (0.0,), (1.0,))[1])
    (1.0, 0.5)
    """

    kind = "custom_jvp"
    method = "defjvp"

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        super().__init__(fun, nondiff_argnums)
        self.jvp: Callable | None = None

    def _ready(self) -> bool:
        return self.jvp is not None

    def defjvp(self, jvp: Callable) -> Callable:
        """Set the rule ``jvp(primals, tangents) -> (out, tangent_out)``."""
        self.jvp = jvp
        return jvp

    def defjvps(self, *jvps: Callable | None) -> None:
        """Set the rule one argument at a time (JAX's ``defjvps``).

        ``jvps[i](t, out, *primals)`` returns argument ``i``'s contribution to the
        output tangent (a pytree like the output), given that argument's tangent
        ``t``, the primal output and every primal argument; ``None`` marks an
        argument the output does not depend on differentiably. The tangent of the
        output is the sum of the contributions. One entry per positional argument;
        not available with ``nondiff_argnums`` (as in JAX).

        >>> import numpy as np, funcflux as ff
        >>> @ff.custom_jvp
        ... def f(x, y):
        ...     return np.sin(x) * y
        >>> f.defjvps(lambda t, ans, x, y: np.cos(x) * y * t,
        ...           lambda t, ans, x, y: np.sin(x) * t)
        >>> ff.grad(f, argnums=(0, 1))(0.0, 2.0)
        (array(2.), array(0.))
        """
        if self.nondiff_argnums:
            raise TypeError(f"custom_jvp function '{self._name}': defjvps cannot be used with "
                            "nondiff_argnums; write the whole rule with defjvp.")
        name = self._name

        def jvp(primals: tuple, tangents: tuple) -> tuple:
            if len(jvps) != len(primals):
                raise TypeError(f"custom_jvp function '{name}': defjvps got {len(jvps)} "
                                f"rule(s) for a call with {len(primals)} positional "
                                "argument(s); give one per argument (None where there is "
                                "no dependence).")
            out = self(*primals)
            total = None
            for rule, t in zip(jvps, tangents):
                if rule is None or all(x is None for x in tree.leaves(t, is_leaf=_none)):
                    continue
                c = rule(t, out, *primals)
                total = c if total is None else tree.map(_add_tangents, total, c,
                                                         is_leaf=_none)
            if total is None:
                from .. import numpy as fnp
                total = tree.map(lambda o: fnp.zeros_like(edge.as_primal(o))
                                 if edge.is_float_leaf(o) else None, out)
            return out, total

        self.defjvp(jvp)

    def _rule(self, static: tuple, leaves: list, in_def: Any, cell: dict) -> CustomJVPRule:
        def jvp(primals: list, tangents: list) -> tuple[list, list]:
            p = tree.unflatten(in_def, primals)
            t = tree.unflatten(in_def, tangents)
            out, tout = self._pair(self.jvp(*static, p, t), "the jvp rule",
                                   "(output, tangent_output)")
            ol, od = tree.flatten(out)
            cell["out"] = od
            tl = [None] * len(ol) if tout is None else \
                tree.flatten_up_to(od, tout, f"the tangent output of '{self._name}''s jvp rule")
            ol = [edge.as_primal(o) for o in ol]
            res = []
            for k, (o, tk) in enumerate(zip(ol, tl)):
                if tk is None or not edge.is_float_leaf(o):
                    res.append(None)
                    continue
                so, st = edge.shape_of(o), edge.shape_of(tk)
                if st != so:
                    if _broadcasts(st, so):
                        from .. import numpy as fnp
                        tk = fnp.broadcast_to(tk, so)
                    else:
                        raise ValueError(BAD_SHAPE.format(
                            kind=self.kind, name=self._name, what="the tangent output",
                            path=f"output leaf {k}", got=st, ref="the output", want=so))
                res.append(_cast(tk, edge.dtype_of(o)))
            return ol, res

        return CustomJVPRule(self._name, self._call_fun(static, in_def, cell), jvp)


def _none(x: Any) -> bool:
    return x is None


def _add_tangents(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _cast(x: Any, dtype: Any) -> Any:
    d = edge.dtype_of(x)
    if dtype is None or d == dtype:
        return x
    from .. import numpy as fnp
    return fnp.astype(x, dtype)


def _broadcasts(src: tuple, dst: tuple) -> bool:
    try:
        return np.broadcast_shapes(src, dst) == dst
    except ValueError:
        return False


def _describe(x: Any) -> str:
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of length {len(x)}"
    return f"a {type(x).__name__}"


def stop_gradient(x: Any) -> Any:
    """``x`` (a pytree) as a constant: no derivative flows through it, at any order.

    >>> import funcflux as ff
    >>> float(ff.grad(lambda x: x * ff.stop_gradient(x))(3.0))
    3.0
    >>> ff.grad(lambda p: p["a"] * ff.stop_gradient(p)["a"])({"a": 2.0})
    {'a': array(2.)}
    """
    from ..ops.elementwise import stop_gradient_p
    return tree.map(stop_gradient_p, x)
