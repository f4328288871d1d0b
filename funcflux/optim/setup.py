"""Flux-style training over the same optimisers: ``setup``, ``step``, ``freeze``, ``adjust``.

``state = setup(opt, model)`` finds the arrays an optimiser should train: the
floating leaves of the model, except the non-trainable children of functor
classes (``@ff.functor(trainable=...)``: BatchNorm's running statistics).
Each distinct array object gets one slot, keyed by identity, so a *tied*
array (the same object in two places, e.g. an embedding shared with the
output layer) has one optimiser state; its gradients are summed and it is
updated once, and the new array goes back into every place: it stays tied.

``state, model = step(state, model, grads)`` runs one update, with ``grads``
as ``ff.grad`` returns them (the model's structure). The returned model is a
new object; the old one is unchanged. Subtrees with no update (frozen,
non-trainable) come back as the very same objects.

Internally the optimiser sees the model itself, with ``None`` at every leaf
it does not train and at the second place of a tied array; that is what a
``multi_transform`` labelling function or a ``masked`` mask function receives.

``freeze(state, where)`` and ``thaw`` take ``where`` as

- a selector function applied to the model's structure, ``lambda m: m.layers[0]``
  (it may return one node or a tuple/list of nodes; everything under them counts), or
- a path: a string as ``ff.tree.keystr`` writes it, ``".layers[0].weight"`` or
  ``"['w']"``, or a tuple of keys, ``("layers", 0, "weight")``; a path also
  selects everything under it (``".layers[0]"``).

``adjust(state, learning_rate=...)`` changes hyperparameters in place of the
state (a new state is returned; nothing is rebuilt): every alias keeps its
numeric hyperparameters in its state (``inject_hyperparams``), and ``adjust``
walks the whole state, so it reaches optimisers inside ``chain`` and
``multi_transform`` too. It works on states from ``opt.init`` as well.

>>> import numpy as np, funcflux as ff
>>> from funcflux import optim
>>> w = np.ones(2)
>>> model = {"enc": w, "dec": w, "b": np.zeros(1)}   # "enc" and "dec" are tied
>>> state = optim.setup(optim.sgd(0.1), model)
>>> grads = {"enc": np.ones(2), "dec": np.ones(2), "b": np.ones(1)}
>>> state, model = optim.step(state, model, grads)
>>> model["enc"] is model["dec"], model["enc"]     # summed gradient, updated once
(True, array([0.8, 0.8]))
>>> state = optim.freeze(state, "['b']")
>>> state, model = optim.step(state, model, grads)
>>> model["b"]
array([-0.1])
"""
from __future__ import annotations

import operator
import warnings
from functools import reduce
from typing import Any, Callable

import numpy as np

from .. import functors, tree
from ..transforms.edge import is_float_leaf
from .base import (GradientTransformation, InjectHyperparamsState, _add, align,
                   is_transformation, same_shape, shape_error)

__all__ = ["setup", "step", "freeze", "thaw", "adjust", "OptimiserState"]

VIEW_WARNING = (
    "optim.setup: the array at {a} and the array at {b} share memory (one is a NumPy view "
    "of the other) but are different objects. The optimiser updates them separately, so "
    "after the first step they no longer share anything. To tie them, store the one array "
    "and take the view in the forward pass (x @ self.W.T)."
)
TIE_BROKEN = (
    "optim.step: the arrays at {a} and {b} were one object when optim.setup ran (tied), "
    "but the model passed now holds different objects there. Call optim.setup again for the "
    "new model."
)
STRUCTURE_CHANGED = (
    "optim.step: the model has {n} leaves, but the one given to optim.setup had {m}. Call "
    "optim.setup again for the new model."
)
NOT_AN_OPTIMISER = (
    "{fn}: opt is a {kind}, not an optimiser. Pass one such as optim.adam(1e-3) (a "
    "GradientTransformation(init, update); the factory optim.adam itself must be called)."
)
NOTHING_SELECTED = (
    "optim.{fn}: {where!r} selects no trainable array of the model. Paths of trainable "
    "arrays look like: {examples}."
)
NO_HYPERPARAM = (
    "optim.adjust: the state has no adjustable hyperparameter {names}; it has {available}. "
    "Only numbers given to an optimiser alias (optim.adam, ...) or to "
    "optim.inject_hyperparams can be adjusted; hyperparameters given as schedules, masks "
    "or None are fixed."
)


# ----------------------------------------------------------------------------- the state
class _Marker:
    """Stands for an array in the model skeleton that selector functions see."""
    __slots__ = ("slots",)

    def __init__(self) -> None:
        self.slots: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return "<array>"


class OptimiserState:
    """What ``setup`` returns: the optimiser, its state, and where the trained arrays live.

    A pytree whose only child is ``inner`` (the optimiser's state), so it can be
    saved and mapped over like any state.
    """
    __slots__ = ("opt", "inner", "slots", "paths", "frozen", "num_leaves", "skeleton")

    def __init__(self, opt: GradientTransformation, inner: Any, slots: tuple, paths: tuple,
                 frozen: frozenset, num_leaves: int, skeleton: Any):
        self.opt = opt
        self.inner = inner
        self.slots = slots          # per trained array: the leaf positions holding it
        self.paths = paths          # per trained array: the key paths of those positions
        self.frozen = frozen        # indices of frozen slots
        self.num_leaves = num_leaves
        self.skeleton = skeleton    # the model with markers for leaves (for selectors)

    def _replace(self, **kw: Any) -> "OptimiserState":
        vals = {k: getattr(self, k) for k in self.__slots__}
        vals.update(kw)
        return OptimiserState(**vals)

    def __repr__(self) -> str:
        tied = sum(len(p) > 1 for p in self.slots)
        s = f"OptimiserState({len(self.slots)} arrays"
        if tied:
            s += f", {tied} tied"
        if self.frozen:
            s += ", frozen: " + ", ".join(tree.keystr(self.paths[i][0])
                                          for i in sorted(self.frozen))
        return s + ")"


tree.register(
    OptimiserState,
    lambda s: ((s.inner,), (s.opt, s.slots, s.paths, s.frozen, s.num_leaves, s.skeleton)),
    lambda aux, ch: OptimiserState(aux[0], ch[0], *aux[1:]),
    keys=lambda s, aux: [tree.AttrKey("inner")],
)


# ----------------------------------------------------------------------------- setup
def _walk(x: Any, path: tuple, ok: bool, out: list) -> None:
    """``(path, leaf, trainable)`` for every leaf, in ``tree.flatten`` order."""
    if x is None:
        return
    nt = tree._node_type(x)
    if nt is None:
        out.append((path, x, ok))
        return
    children, aux = nt.flatten(x)
    keys = nt.keys(x, aux)
    names = functors.trainable(x) if functors.is_functor(x) else None
    for c, k in zip(children, keys):
        _walk(c, path + (k,), ok and (names is None or getattr(k, "name", None) in names), out)


def _root(a: np.ndarray) -> Any:
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def _warn_views(leaves: list) -> None:
    groups: dict[int, list] = {}
    for path, x, ok in leaves:
        if isinstance(x, np.ndarray) and x.size:
            groups.setdefault(id(_root(x)), []).append((path, x, ok))
    seen: set[tuple[int, int]] = set()
    for members in groups.values():
        for i, (pa, a, oka) in enumerate(members):
            for pb, b, okb in members[i + 1:]:
                if a is b or not (oka or okb) or (id(a), id(b)) in seen:
                    continue
                seen.add((id(a), id(b)))
                try:
                    shared = np.shares_memory(a, b, max_work=10_000)
                except np.exceptions.TooHardError:
                    shared = True
                if shared:
                    warnings.warn(VIEW_WARNING.format(a=tree.keystr(pa), b=tree.keystr(pb)),
                                  stacklevel=3)


def setup(opt: GradientTransformation, model: Any) -> OptimiserState:
    """Prepare ``opt`` to train ``model``: one state per distinct trainable array.

    Tied arrays (one object in several places) share their state; a NumPy view
    of another child is warned about, naming both paths.

    >>> import numpy as np, funcflux as ff
    >>> from funcflux import optim
    >>> optim.setup(optim.adam(1e-3), {"w": np.zeros(3), "b": np.zeros(1), "n": 2})
    OptimiserState(2 arrays)
    """
    if not is_transformation(opt):
        raise TypeError(NOT_AN_OPTIMISER.format(fn="optim.setup", kind=type(opt).__name__))
    leaves: list = []
    _walk(model, (), True, leaves)
    slots: list[list[int]] = []
    paths: list[list[tuple]] = []
    slot_of: dict[int, int] = {}
    for j, (path, x, ok) in enumerate(leaves):
        if not (ok and is_float_leaf(x)):
            continue
        # Only arrays tie: equal Python floats may well be one object by accident.
        k = slot_of.get(id(x)) if hasattr(x, "shape") else None
        if k is None:
            if hasattr(x, "shape"):
                slot_of[id(x)] = len(slots)
            slots.append([j])
            paths.append([path])
        else:
            slots[k].append(j)
            paths[k].append(path)
    _warn_views(leaves)

    td = tree.structure(model)
    p_leaves: list = [None] * td.num_leaves
    for pos in slots:
        p_leaves[pos[0]] = leaves[pos[0]][1]
    inner = opt.init(tree.unflatten(td, p_leaves))
    return OptimiserState(opt, inner, tuple(map(tuple, slots)), tuple(map(tuple, paths)),
                          frozenset(), td.num_leaves, _skeleton(model, leaves, slots))


def _skeleton(model: Any, leaves: list, slots: list) -> Any:
    """The model with a marker for every leaf (one marker per object, so ties show)."""
    slots_of: dict[int, list[int]] = {}
    for k, pos in enumerate(slots):
        slots_of.setdefault(id(leaves[pos[0]][1]), []).append(k)

    def mark(x: Any) -> Any:
        m = _Marker()
        m.slots = tuple(slots_of.get(id(x), ()))
        return m
    return functors.fmap(mark, model)


# ----------------------------------------------------------------------------- step
def step(state: OptimiserState, model: Any, grads: Any) -> tuple[OptimiserState, Any]:
    """One optimiser update: ``(state, model, grads) -> (new_state, new_model)``.

    ``grads`` has the model's structure (what ``ff.grad`` returns); ``None``
    anywhere in it (a leaf or a whole subtree) means no gradient there.
    """
    leaves, td = tree.flatten(model)
    if td.num_leaves != state.num_leaves:
        raise ValueError(STRUCTURE_CHANGED.format(n=td.num_leaves, m=state.num_leaves))
    g = align(td, grads, "grads")
    n = td.num_leaves
    p_leaves: list = [None] * n
    g_leaves: list = [None] * n
    for k, pos in enumerate(state.slots):
        first = pos[0]
        arr = leaves[first]
        for i, j in enumerate(pos[1:]):
            if leaves[j] is not arr:
                raise ValueError(TIE_BROKEN.format(a=tree.keystr(state.paths[k][0]),
                                                   b=tree.keystr(state.paths[k][i + 1])))
        p_leaves[first] = arr
        if k in state.frozen:
            continue
        gs = [g[j] for j in pos if g[j] is not None]
        for i, j in enumerate(pos):  # a gradient of another shape would broadcast into it
            if g[j] is not None and not same_shape(g[j], arr):
                raise shape_error("step", g[j], arr, tree.keystr(state.paths[k][i]))
        if gs:
            g_leaves[first] = gs[0] if len(gs) == 1 else reduce(operator.add, gs)
    updates, inner = state.opt.update(tree.unflatten(td, g_leaves), state.inner,
                                      tree.unflatten(td, p_leaves))
    u = align(td, updates, "updates")
    new_leaves = list(leaves)
    for pos in state.slots:
        du = u[pos[0]]
        if du is not None:
            new = _add(leaves[pos[0]], du)
            for j in pos:
                new_leaves[j] = new
    return state._replace(inner=inner), _rebuild(model, leaves, new_leaves)


def _rebuild(model: Any, old: list, new: list) -> Any:
    """``model`` with leaf ``i`` replaced by ``new[i]``, walking in ``tree.flatten`` order.

    Subtrees whose leaves are all unchanged are returned as they are (the same
    object), and a container that appears twice is rebuilt once, so shared
    layers stay shared.
    """
    pos = [0]
    memo: dict[int, tuple[Any, int]] = {}

    def go(x: Any) -> Any:
        if x is None:
            return None
        nt = tree._node_type(x)
        if nt is None:
            i = pos[0]
            pos[0] += 1
            return new[i]
        hit = memo.get(id(x))
        if hit is not None:
            pos[0] += hit[1]
            return hit[0]
        start = pos[0]
        children, aux = nt.flatten(x)
        children = list(children)
        out = [go(c) for c in children]
        if all(a is b for a, b in zip(out, children)):
            res = x
        elif type(x) is dict:  # keep the user's key order (tree.flatten sorts keys)
            res = {k: v for k, v in zip(aux, out)}
            res = {k: res[k] for k in x}
        else:
            res = nt.unflatten(aux, out)
        memo[id(x)] = (res, pos[0] - start)
        return res

    return go(model)


# ----------------------------------------------------------------------------- freeze / thaw
def _key_value(k: Any) -> Any:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def _path_matches(path: tuple, where: Any) -> bool:
    if isinstance(where, str):
        s = tree.keystr(path)
        w = where if where != "<root>" else ""
        return s.startswith(w) and (len(s) == len(w) or s[len(w)] in ".[")
    where = tuple(where)
    if len(where) > len(path):
        return False
    return all(w == k or w == _key_value(k) for w, k in zip(where, path))


def _collect_markers(picked: Any, out: set) -> None:
    seen: set[int] = set()
    stack = [picked]
    while stack:
        n = stack.pop()
        if id(n) in seen or n is None:
            continue
        seen.add(id(n))
        if isinstance(n, _Marker):
            out.update(n.slots)
            continue
        ch = functors.children(n)
        stack.extend(ch.values() if isinstance(ch, dict) else ch)


def _select(state: OptimiserState, where: Any, fn: str) -> set:
    chosen: set[int] = set()
    if callable(where):
        _collect_markers(where(state.skeleton), chosen)
    elif isinstance(where, (str, tuple, list)):
        for k, ps in enumerate(state.paths):
            if any(_path_matches(p, where) for p in ps):
                chosen.add(k)
    else:
        raise TypeError(f"optim.{fn}: where must be a path (a string like '.layers[0]' or a "
                        f"tuple of keys) or a function of the model, got "
                        f"{type(where).__name__}.")
    if not chosen:
        examples = ", ".join(repr(tree.keystr(ps[0])) for ps in state.paths[:4]) or "(none)"
        raise ValueError(NOTHING_SELECTED.format(fn=fn, where=where, examples=examples))
    return chosen


def freeze(state: OptimiserState, where: Any) -> OptimiserState:
    """Stop updating the arrays that ``where`` selects (a path or ``lambda m: m.layer``).

    Their optimiser state is kept as it is, so ``thaw`` resumes where they stopped.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> state = optim.setup(optim.sgd(0.1), [{"w": np.ones(1)}, {"w": np.ones(1)}])
    >>> optim.freeze(state, lambda m: m[0])
    OptimiserState(2 arrays, frozen: [0]['w'])
    """
    return state._replace(frozen=state.frozen | _select(state, where, "freeze"))


def thaw(state: OptimiserState, where: Any) -> OptimiserState:
    """Undo :func:`freeze` for the arrays that ``where`` selects."""
    return state._replace(frozen=state.frozen - _select(state, where, "thaw"))


# ----------------------------------------------------------------------------- adjust
_UNSET: Any = object()


def adjust(state: Any, learning_rate: Any = _UNSET, **hyperparams: Any) -> Any:
    """A copy of ``state`` with new hyperparameter values; the moments and counts stay.

    Works on what ``setup`` returns and on any state from ``opt.init``; every
    optimiser inside (through ``chain``, ``multi_transform``...) that has a
    hyperparameter of that name takes the new value.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> state = optim.setup(optim.adam(1e-3), {"w": np.zeros(2)})
    >>> state = optim.adjust(state, learning_rate=1e-4, b2=0.99)
    >>> state.inner.hyperparams["learning_rate"], state.inner.hyperparams["b2"]
    (0.0001, 0.99)
    """
    if learning_rate is not _UNSET:
        hyperparams["learning_rate"] = learning_rate
    if not hyperparams:
        return state
    found: set[str] = set()
    available: set[str] = set()

    def is_inject(x: Any) -> bool:
        return isinstance(x, InjectHyperparamsState)

    def fix(node: Any) -> Any:
        if not is_inject(node):
            return node
        available.update(node.hyperparams)
        hp = dict(node.hyperparams)
        for k, v in hyperparams.items():
            if k in hp:
                hp[k] = float(v)
                found.add(k)
        return InjectHyperparamsState(node.count, hp,
                                      tree.map(fix, node.inner_state, is_leaf=is_inject))

    new = tree.map(fix, state, is_leaf=is_inject)
    missing = sorted(set(hyperparams) - found)
    if missing:
        raise ValueError(NO_HYPERPARAM.format(names=", ".join(map(repr, missing)),
                                              available=sorted(available) or "none"))
    return new
