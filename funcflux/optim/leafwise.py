"""Transformations declared leaf by leaf, so that loops over the leaves can be fused.

Most building blocks (``scale_by_adam``, ``scale``, ``trace``...) compute a
few scalars once per step (bias corrections, a scheduled step size) and then
one formula at every leaf. Declaring those parts apart, rather than as a
closure that walks the trees itself, lets :func:`~funcflux.optim.chain` run all
its members in one loop over the leaves, and ``optim.step`` run a whole
optimiser over the model's arrays without building trees of gradients and
updates. Why it matters: a tree walk costs about as much as the Adam update of
a small array, so on small models the walks were most of the step.

A :class:`Leafwise` is the ``update`` of a ``GradientTransformation``: called
with trees, it is optax's ``update(updates, state, params=None)``, so code that
only calls ``opt.update`` never needs to know about it.

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.chain(optim.scale_by_adam(), optim.scale(-0.1))
>>> isinstance(opt.update, optim.leafwise.Leafwise)   # the chain fused its members
True
>>> opt.update(np.ones(2), opt.init(np.zeros(2)))[0]
array([-0.1, -0.1])
"""
from __future__ import annotations

from typing import Any, Callable

from .. import tree
from .checks import NO_PARAMS, NO_STATE, shape_error
from .tree_utils import align, flatten, path_at

__all__ = ["Leafwise"]


class _Fields:
    """``state -> (state.<name>, ...)``: the arrays of a state NamedTuple, by field name."""
    __slots__ = ("names",)

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def __call__(self, state: Any) -> tuple:
        return tuple(getattr(state, n) for n in self.names)


def _no_context(state: Any) -> None:
    return None


def _same_state(ctx: Any, state: Any, arrays: tuple) -> Any:
    return state


class Leafwise:
    """The update of a transformation that applies one formula at every leaf.

    Args:
      name: the transformation's name, for error messages.
      leaf: ``(ctx, g, p, *arrays) -> (u, *new_arrays)`` at one leaf: ``g`` its
        update (never ``None``), ``p`` its parameter (``None`` when ``update``
        was called without parameters), ``arrays`` the state's arrays there.
      arrays: the names of the state's fields that hold a tree with the
        parameters' structure (Adam's ``("mu", "nu")``); or, for a composite, a
        function ``state -> tuple of such trees`` and their ``count``.
      prepare: ``state -> ctx``, what a step computes once (bias corrections).
      finish: ``(ctx, state, new_array_trees) -> new_state``.
      needs_params: ``update`` must be given the parameters.
      multiplier: for a transformation that only multiplies every update by
        one number (``scale``, ``scale_by_learning_rate``): ``ctx -> number``.
      scaled: ``(ctx, gain) -> ctx`` such that ``leaf`` with the new ``ctx``
        gives its update times ``gain``: a ``chain`` then folds a following
        multiplier in, instead of running it as one more pass over the leaf.
      passes: the leaf is the identity (``chain`` leaves it out).
      start, end: for composite updates (``chain``, ``inject_hyperparams``),
        replace ``prepare``/``finish``: ``start(state) -> (leaf, ctx, token)``
        and ``end(token, state, new_array_trees) -> new_state``.
    """
    __slots__ = ("name", "leaf", "arrays", "count", "prepare", "finish", "needs_params",
                 "multiplier", "scaled", "passes", "_start", "_end")

    def __init__(self, name: str, leaf: Callable[..., tuple], *,
                 arrays: tuple[str, ...] | Callable[[Any], tuple] = (), count: int = 0,
                 prepare: Callable[[Any], Any] = _no_context,
                 finish: Callable[[Any, Any, tuple], Any] = _same_state,
                 needs_params: bool = False,
                 multiplier: Callable[[Any], float] | None = None,
                 scaled: Callable[[Any, float], Any] | None = None,
                 passes: bool = False,
                 start: Callable[[Any], tuple] | None = None,
                 end: Callable[[Any, Any, tuple], Any] | None = None):
        self.name = name
        self.leaf = leaf
        if isinstance(arrays, tuple):
            arrays, count = _Fields(arrays), len(arrays)
        self.arrays = arrays
        self.count = count  # how many trees arrays(state) gives
        self.prepare = prepare
        self.finish = finish
        self.needs_params = needs_params
        self.multiplier = multiplier
        self.scaled = scaled
        self.passes = passes
        self._start = start
        self._end = end

    def start(self, state: Any) -> tuple:
        """``(leaf, ctx, token)`` for one step: ``leaf(ctx, ...)`` at each leaf, then
        :meth:`end` with ``token``."""
        if self._start is not None:
            return self._start(state)
        ctx = self.prepare(state)
        return self.leaf, ctx, ctx

    def end(self, token: Any, state: Any, trees: tuple) -> Any:
        """The new state, from the new arrays (one tree per part of ``arrays(state)``)."""
        if self._end is not None:
            return self._end(token, state, trees)
        return self.finish(token, state, trees)

    def __repr__(self) -> str:
        return f"<leafwise update of {self.name}>"

    def __call__(self, updates: Any, state: Any, params: Any = None, **extra_args: Any) -> tuple:
        # extra_args (``value=`` for reduce_on_plateau, forwarded by chain): not used here
        lv, td = flatten(updates)
        if params is None:
            if self.needs_params and any(u is not None for u in lv):
                raise ValueError(NO_PARAMS.format(name=self.name))
            ps: list = [None] * len(lv)
        else:
            ps = align(td, params, "params")
        leaf, ctx, token = self.start(state)
        parts = [align(td, t, f"{self.name} state") for t in self.arrays(state)]
        us, cols = run(self.name, leaf, ctx, lv, ps, parts, updates)
        return (tree.unflatten(td, us),
                self.end(token, state, tuple(tree.unflatten(td, c) for c in cols)))


def run(name: str, leaf: Callable[..., tuple], ctx: Any, gs: list, ps: list, parts: list,
        where: Any) -> tuple:
    """``leaf(ctx, g, p, *arrays)`` at every ``g`` that is not ``None``:
    ``(updates, [new arrays per part])``.

    Where ``g`` is ``None`` the update stays ``None`` and the state's arrays
    are kept. ``where`` names leaf ``i`` in errors: a tree (its path) or a
    function ``i -> str``. The hot loop of every leafwise update: kept short.

    >>> import numpy as np
    >>> from funcflux.optim.leafwise import run
    >>> momentum = lambda ctx, g, p, t: (g + ctx * t, g + ctx * t)
    >>> run("trace", momentum, 0.5, [np.ones(1), None], [None, None],
    ...     [[np.ones(1), np.zeros(1)]], str)
    ([array([1.5]), None], [[array([1.5]), array([0.])]])
    """
    rows = []
    for i, (g, p, ss) in enumerate(zip(gs, ps, zip(*parts) if parts else _empty_rows(gs))):
        if g is None:
            rows.append((None, *ss))
            continue
        # The state has the parameters' shape; a gradient of another would broadcast.
        ref = p if p is not None else ss[0] if ss else None
        if ref is not None:
            try:
                bad = g.shape != ref.shape
            except AttributeError:  # a Python number
                bad = getattr(g, "shape", ()) != getattr(ref, "shape", ())
            if bad:
                raise shape_error(name, g, ref, _where(where, i))
        try:
            rows.append(leaf(ctx, g, p, *ss))
        except TypeError:
            if any(s is None for s in ss):  # (found only when it fails: off the hot path)
                raise ValueError(NO_STATE.format(name=name, path=_where(where, i))) from None
            raise
    if not rows:
        return [], [[] for _ in parts]
    us, *cols = map(list, zip(*rows))
    return us, cols


def _empty_rows(gs: list) -> Any:
    return [()] * len(gs)


def _where(where: Any, i: int) -> str:
    return where(i) if callable(where) else path_at(where, i)


def _pass(ctx: Any, g: Any, p: Any) -> tuple:
    return (g,)


def _in_turn(steps: tuple, g: Any, p: Any, *arrs: Any) -> tuple:
    """The fused leaf: each step ``(leaf, ctx, first array, last array)`` in turn."""
    new: list = []
    for f, c, a, b in steps:
        g, *out = f(c, g, p, *arrs[a:b])
        new.extend(out)
    return (g, *new)


def fuse(name: str, members: list[Leafwise]) -> Leafwise:
    """One :class:`Leafwise` running ``members`` one after another at each leaf
    (the update of a ``chain`` of leafwise transformations).

    Identities are left out, and a multiplier (``scale_by_learning_rate``) is
    folded into the step before it where that step can take it
    (``scale_by_adam``), so ``adam`` makes one pass per leaf, not two. Which
    member runs and what folds into what is decided here, once; each step
    only computes the numbers.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> from funcflux.optim.leafwise import fuse
    >>> adam = fuse("adam", [optim.scale_by_adam().update, optim.scale(-0.1).update])
    >>> leaf, ctx, token = adam.start((optim.ScaleByAdamState(0, None, None), optim.EmptyState()))
    >>> leaf.__qualname__, round(ctx[4], 6)   # Adam's own leaf; -0.1 * sqrt(1 - b2) / (1 - b1)
    ('scale_by_adam.<locals>.plain_leaf', -0.031623)
    """
    members = list(members)
    bounds = []  # per member: its first and last array among the chain's
    k = 0
    for m in members:
        bounds.append((k, k + m.count))
        k += m.count
    count = k
    plan: list[tuple[int, list[int]]] = []  # (member that runs, multipliers folded into it)
    for i, m in enumerate(members):
        if m.passes:
            continue
        if m.multiplier is not None and plan and members[plan[-1][0]].scaled is not None:
            plan[-1][1].append(i)
        else:
            plan.append((i, []))
    alone = len(plan) == 1 and bounds[plan[0][0]] == (0, count)  # one pass: its own leaf
    alone_i, alone_folded = plan[0] if alone else (0, [])

    def check(state: tuple) -> None:
        if len(state) != len(members):
            raise ValueError(f"{name}: the state holds {len(state)} parts for {len(members)} "
                             f"transforms; was it made by this {name}'s init?")

    def arrays(state: tuple) -> tuple:
        check(state)
        out: list = []
        for m, s in zip(members, state):
            out.extend(m.arrays(s))
        return tuple(out)

    def folded_ctx(started: list, i: int, folded: list) -> Any:
        ctx = started[i][1]
        for j in folded:
            ctx = members[i].scaled(ctx, members[j].multiplier(started[j][1]))
        return ctx

    def start(state: tuple) -> tuple:
        check(state)
        started = [m.start(s) for m, s in zip(members, state)]  # (leaf, ctx, token) each
        tokens = [t for _, _, t in started]
        if alone:
            return started[alone_i][0], folded_ctx(started, alone_i, alone_folded), tokens
        if not plan:
            return _pass, None, tokens
        return _in_turn, tuple((started[i][0], folded_ctx(started, i, folded), *bounds[i])
                               for i, folded in plan), tokens

    def end(tokens: list, state: tuple, trees: tuple) -> tuple:
        return tuple([m.end(t, s, trees[a:b])
                      for m, t, s, (a, b) in zip(members, tokens, state, bounds)])

    return Leafwise(name, _in_turn, arrays=arrays, count=count, start=start, end=end,
                    needs_params=any(m.needs_params for m in members))
