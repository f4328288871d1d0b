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

Rules are written with funcflux primitives (operators on the values, primitives,
and the binders of ``funcflux.ops``), never with raw NumPy: that single property makes the
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

A *fast variant* of the VJP rules, ``def_fast_vjp``, is NumPy code for the
common eager case (a first-order gradient on NumPy arrays), declared beside
the general rules and never written inside them. The reverse trace picks it
for a tape node only when the cotangent and every argument of that node are
concrete NumPy arrays or NumPy scalars, that is when nothing is tracing the
backward pass (no grad of grad, vmap of grad, jvp of grad) and the data lives
on the host. Everywhere else (tracers, CuPy, the strict stand-in) the general
rules run. A fast rule has the general rule's signature and must return the
same values, shape and dtype for every input it can receive: it may not
decline a case, so it handles every rank and dtype the primitive accepts
(calling the general rule for the cases it does not speed up). It
may return a fresh writable array where the general rule returns a read-only
view (cheaper for the next rule), never the reverse; gradients reach the user
through the API edge, which copies read-only views, either way. The test suite
checks each declared fast rule against the general one
(``tests/ops/test_fast_rules.py``).
"""
from __future__ import annotations

from typing import Any, Callable

from .trace import Tracer, bind

Rule = Callable[..., Any]


class PerIndex:
    """A rule table for variadic primitives: ``rules[i]`` is ``rule`` with ``i`` bound.

    Every index is defined, so it has no length; code that lists a primitive's
    rules (the completeness test) recognises this type instead.
    """

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


class Primitive:
    """An operation known to every transform. Calling it is ``bind``."""

    __slots__ = ("name", "impl", "vjps", "jvps", "fast_vjps", "_fast_table", "batch", "nondiff",
                 "abstract", "__weakref__")

    def __init__(self, name: str, impl: Callable[..., Any], *, nondiff: bool = False):
        self.name = name
        self.impl = impl
        self.nondiff = nondiff
        self.vjps: Any = ()
        self.jvps: Any = ()
        self.fast_vjps: tuple | None = None  # see def_fast_vjp
        self._fast_table: tuple | None = None  # (fast_vjps, vjps, merged): see fast_table
        self.batch: Rule | None = None
        self.abstract: Rule | None = None  # see def_abstract
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
        self.vjps = PerIndex(rules[0]) if variadic else rules  # type: ignore[arg-type]
        return self

    def def_fast_vjp(self, *rules: Rule | None) -> "Primitive":
        """Fast NumPy variants of the VJP rules, one per argument (``None``: none there).

        The reverse trace uses ``rules[i]`` in place of the general rule of argument
        ``i`` when the cotangent and every argument of the node are NumPy arrays or
        scalars (see the module docstring for the contract a fast rule keeps).
        """
        if isinstance(self.vjps, PerIndex):
            raise TypeError(f"primitive '{self.name}': fast VJP rules are declared per "
                            "argument, so a variadic primitive cannot take them.")
        self.fast_vjps = rules if any(r is not None for r in rules) else None
        return self

    def fast_table(self) -> tuple:
        """The VJP rules with the declared fast variants in place of the general ones.

        Merged once (the reverse trace asks for it at every eligible node), and again
        only when either table has been replaced since.
        """
        c = self._fast_table
        fast, general = self.fast_vjps, self.vjps
        if c is None or c[0] is not fast or c[1] is not general:
            n = max(len(fast), len(general))
            f = tuple(fast) + (None,) * (n - len(fast))
            g = tuple(general) + (None,) * (n - len(general))
            c = self._fast_table = (fast, general, tuple(b if a is None else a
                                                         for a, b in zip(f, g)))
        return c[2]

    def def_jvp(self, *rules: Rule | None, variadic: bool = False) -> "Primitive":
        """One JVP rule per argument (``None``: not differentiable there)."""
        self.jvps = PerIndex(rules[0]) if variadic else rules  # type: ignore[arg-type]
        return self

    def def_linear(self, *transposes: Rule | None, variadic: bool = False) -> "Primitive":
        """Linear in each argument: give the transposes; the JVPs follow."""
        self.def_vjp(*transposes, variadic=variadic)
        if variadic:
            self.jvps = PerIndex(self._substituted)
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

    def def_abstract(self, rule: Rule) -> "Primitive":
        """The shape rule ``rule(*args, **params) -> ShapeDtypeStruct`` (a tuple of them
        for several results): what ``eval_shape`` asks instead of computing
        (see ``funcflux.core.abstract``)."""
        self.abstract = rule
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
