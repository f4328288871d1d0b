"""The ``Primitive`` type: one operation with its rules side by side.

A primitive is declared once, in its family file under ``funcflux.ops``, with

- ``impl(*arrays, **params)``: the computation on real arrays, written against
  ``array_module(*arrays)`` so that it runs unchanged on NumPy and CuPy;
- one VJP rule per differentiable argument, ``vjp_i(ct, ans, *args, **params)``
  returning the cotangent of argument ``i`` (HIPS autograd's ``defvjp`` table);
- one JVP rule per argument, ``jvp_i(t, ans, *args, **params)`` returning that
  argument's contribution to the output tangent (summed over arguments);
- a batching rule ``batch(args, dims, **params) -> (out, out_dim)`` where a dim
  is an int, or ``None`` for an argument without a batch axis.

Rules are written with funcflux primitives (operators on the values, and
``funcflux.numpy``), never with raw NumPy: that single property makes the
backward pass itself differentiable and batchable, which is what gives grad of
grad, vmap of grad and Hessian-vector products with no extra code.

``nondiff=True`` marks comparisons, rounding and other piecewise-constant
operations: their outputs carry no derivative at any level. ``def_linear``
declares a function that is linear in each argument *separately*, the others
held fixed (``neg``, ``sum``, ``mul``, ``matmul``, ``einsum``): the tangent
rule of argument ``i`` is the primitive itself with that argument replaced by
its tangent, so only the transposes (the VJPs) are written. That substitution
is wrong for operations that are linear in all arguments *jointly*, where each
argument fills its own part of the output (``add``, ``concatenate``): there
the other arguments must count as zeros, so give those explicit JVP rules.
"""
from __future__ import annotations

from typing import Any, Callable

from .trace import Tracer, bind

Rule = Callable[..., Any]


class _PerIndex:
    """A rule table for variadic primitives: ``rules[i]`` is ``rule`` with ``i`` bound."""

    __slots__ = ("rule", "cache")

    def __init__(self, rule: Rule):
        self.rule = rule
        self.cache: dict[int, Rule] = {}

    def __getitem__(self, i: int) -> Rule:
        r = self.cache.get(i)
        if r is None:
            rule = self.rule
            r = self.cache[i] = lambda *a, **p: rule(i, *a, **p)
        return r

    def __len__(self) -> int:  # any index is defined
        return 1 << 30


class Primitive:
    """An operation known to every transform. Calling it is ``bind``."""

    __slots__ = ("name", "impl", "vjps", "jvps", "batch", "nondiff", "__weakref__")

    def __init__(self, name: str, impl: Callable[..., Any], *, nondiff: bool = False):
        self.name = name
        self.impl = impl
        self.nondiff = nondiff
        self.vjps: Any = ()
        self.jvps: Any = ()
        self.batch: Rule | None = None
        REGISTRY[name] = self

    def __call__(self, *args: Any, **params: Any) -> Any:
        # ``bind`` inlined: this is the hottest call in funcflux (one frame less per op).
        top = None
        for a in args:
            if isinstance(a, Tracer):
                t = a._trace
                if top is None or t.level > top.level:
                    top = t
        if top is None:
            return self.impl(*args, **params)
        return top.process_primitive(self, args, params)

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"

    # -- declaring rules ---------------------------------------------------------
    def def_vjp(self, *rules: Rule | None, variadic: bool = False) -> "Primitive":
        """One VJP rule per argument (``None``: not differentiable there).

        With ``variadic=True`` pass one rule ``rule(i, ct, ans, *args, **params)``
        that serves every argument position.
        """
        self.vjps = _PerIndex(rules[0]) if variadic else rules  # type: ignore[arg-type]
        return self

    def def_jvp(self, *rules: Rule | None, variadic: bool = False) -> "Primitive":
        """One JVP rule per argument (``None``: not differentiable there)."""
        self.jvps = _PerIndex(rules[0]) if variadic else rules  # type: ignore[arg-type]
        return self

    def def_linear(self, *transposes: Rule | None, variadic: bool = False) -> "Primitive":
        """Linear in each argument: give the transposes; the JVPs follow."""
        self.def_vjp(*transposes, variadic=variadic)
        if variadic:
            self.jvps = _PerIndex(self._substituted)
        else:
            self.jvps = tuple(
                None if tr is None else _bind_index(self._substituted, i)
                for i, tr in enumerate(transposes)
            )
        return self

    def _substituted(self, i: int, t: Any, ans: Any, *args: Any, **params: Any) -> Any:
        return bind(self, *args[:i], t, *args[i + 1:], **params)

    def def_batch(self, rule: Rule) -> "Primitive":
        """The batching rule ``rule(args, dims, **params) -> (out, out_dim)``."""
        self.batch = rule
        return self

    # -- looking rules up (with errors that say which rule is missing) -----------
    def vjp_rule(self, i: int) -> Rule:
        try:
            r = self.vjps[i]
        except IndexError:
            r = None
        if r is None:
            raise NotImplementedError(
                f"funcflux has no reverse-mode rule for argument {i} of primitive "
                f"'{self.name}'. Wrap the computation in ff.custom_vjp to supply one."
            )
        return r

    def jvp_rule(self, i: int) -> Rule:
        try:
            r = self.jvps[i]
        except IndexError:
            r = None
        if r is None:
            raise NotImplementedError(
                f"funcflux has no forward-mode rule for argument {i} of primitive "
                f"'{self.name}'. Wrap the computation in ff.custom_jvp to supply one."
            )
        return r

    def batch_rule(self) -> Rule:
        if self.batch is None:
            raise NotImplementedError(
                f"funcflux has no batching rule for primitive '{self.name}', so it "
                "cannot run under vmap."
            )
        return self.batch


def _bind_index(rule: Rule, i: int) -> Rule:
    return lambda *a, **p: rule(i, *a, **p)


#: Every primitive ever declared, by name: the table the test suite sweeps.
REGISTRY: dict[str, Primitive] = {}


def primitive(name: str, impl: Callable[..., Any], *, nondiff: bool = False) -> Primitive:
    """Declare a primitive; see the module docstring for the rules to add."""
    return Primitive(name, impl, nondiff=nondiff)
