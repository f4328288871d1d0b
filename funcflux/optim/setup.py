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

``adjust(state, learning_rate=...)`` returns a state with new hyperparameters
and the same moments, as ``Optimisers.adjust!`` does. For that, ``setup``
rebuilds every alias it finds in ``opt`` (inside ``chain``, ``masked`` and
``multi_transform`` too) with ``inject_hyperparams``, so that its numbers live
in the state: ``state.inner`` is then ``InjectHyperparamsState(count,
hyperparams, inner_state)`` around what ``opt.init`` would give. A state from
``opt.init`` can be adjusted where the user built the optimiser with
``optim.inject_hyperparams`` (as in optax); aliases alone keep optax's state.

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
from typing import Any

import numpy as np

from .. import functors, tree
from ..transforms.edge import is_float_leaf
from .base import GradientTransformation, is_transformation
from .checks import same_shape, shape_error
from .inject import InjectHyperparamsState, adjustable
from .leafwise import Leafwise, run
from .tree_utils import align

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
    "Only numbers given to an optimiser alias (optim.adam, ...) trained through optim.setup, "
    "or to optim.inject_hyperparams, can be adjusted; hyperparameters given as schedules, "
    "masks or None are fixed."
)
NOTHING_INJECTED = (
    " This state keeps no hyperparameters at all: as in optax, a state from opt.init holds "
    "only what the rule needs. Build the optimiser with "
    "optim.inject_hyperparams(optim.adam)(learning_rate=1e-3), or train through optim.setup, "
    "which does that for every alias."
)


# ----------------------------------------------------------------------------- the state
_UNSET: Any = object()


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
    __slots__ = ("opt", "inner", "slots", "paths", "frozen", "num_leaves", "skeleton",
                 "structure", "tied", "dense", "_flat")

    def __init__(self, opt: GradientTransformation, inner: Any, slots: tuple, paths: tuple,
                 frozen: frozenset, num_leaves: int, skeleton: Any,
                 structure: tree.PyTreeDef, _flat: Any = _UNSET, _layout: tuple | None = None):
        self.opt = opt
        self.inner = inner
        self.slots = slots          # per trained array: the leaf positions holding it
        self.paths = paths          # per trained array: the key paths of those positions
        self.frozen = frozen        # indices of frozen slots
        self.num_leaves = num_leaves
        self.skeleton = skeleton    # the model with markers for leaves (for selectors)
        self.structure = structure  # the model's, as setup saw it: the state's trees have it
        # the slots that are tied (one array in several places), and whether slot k is
        # leaf k for every k (every leaf trained, none tied: the common case)
        self.tied, self.dense = _layout or (
            tuple(k for k, pos in enumerate(slots) if len(pos) > 1),
            num_leaves == len(slots) and all(pos == (k,) for k, pos in enumerate(slots)))
        # What the last step knew of the state's arrays, so that the next one need not walk
        # their trees again: None (never: the model has lists or dicts, which a user could
        # change in place), () (nothing yet), or (inner, the per-slot arrays of each of its
        # trees). It is used only while ``inner`` is that very object (adjust() makes a new
        # one); a state rebuilt from its pytree children starts without it.
        self._flat = (() if _immutable(structure) else None) if _flat is _UNSET else _flat

    def _replace(self, **kw: Any) -> "OptimiserState":
        vals = {k: getattr(self, k) for k in self.__slots__ if k not in ("tied", "dense")}
        if "slots" not in kw and "num_leaves" not in kw:
            vals["_layout"] = self.tied, self.dense
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
    lambda s: ((s.inner,), (s.opt, s.slots, s.paths, s.frozen, s.num_leaves, s.skeleton,
                            s.structure)),
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
    opt = adjustable(opt)  # the aliases' numbers kept in the state, for adjust()
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
                          frozenset(), td.num_leaves, _skeleton(model, leaves, slots), td)


def _immutable(td: tree.PyTreeDef) -> bool:
    """Whether a tree of this structure has no list or dict (nothing a user would change
    in place)."""
    if td.node is not None and issubclass(td.node, (list, dict)):
        return False
    return all(_immutable(c) for c in td.children)


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
def step(state: OptimiserState, model: Any, grads: Any, **extra_args: Any
         ) -> tuple[OptimiserState, Any]:
    """One optimiser update: ``(state, model, grads) -> (new_state, new_model)``.

    ``grads`` has the model's structure (what ``ff.grad`` returns); ``None``
    anywhere in it (a leaf or a whole subtree) means no gradient there.
    Keyword arguments (``value=loss`` for ``optim.reduce_on_plateau``) are
    passed to the optimiser's ``update``, as optax's extra args.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> state = optim.setup(optim.sgd(0.5), {"w": np.ones(2)})
    >>> state, model = optim.step(state, {"w": np.ones(2)}, {"w": np.ones(2)})
    >>> model
    {'w': array([0.5, 0.5])}
    """
    walked: dict = {}  # id(container) -> (node type, children, aux), for the rebuild
    leaves, g = _leaves_and_grads(model, grads, walked)
    n = len(leaves)
    if n != state.num_leaves:
        raise ValueError(STRUCTURE_CHANGED.format(n=n, m=state.num_leaves))
    slots, frozen = state.slots, state.frozen
    # Per slot: the array, and its gradient (summed over the places it is in, if tied).
    ps = [leaves[pos[0]] for pos in slots]
    gs = [g[pos[0]] for pos in slots]
    for k in state.tied:
        gs[k] = _tied(state, k, leaves, g, ps[k], k in frozen)
    for k in frozen:
        gs[k] = None
    update = state.opt.update
    if isinstance(update, Leafwise):  # (a leafwise update takes no extra arguments)
        us, finish, flat = _fused(state, update, gs, ps)
    else:
        us, inner = _unfused(state, update, gs, ps, extra_args)
        finish, flat = None, state._flat
    new_leaves = list(leaves)
    for pos, p, du in zip(slots, ps, us):
        if du is not None:
            new = p + du  # tree_utils.add, inline (a hot loop): p's dtype is kept
            d = getattr(p, "dtype", None)
            if d is not None and new.dtype is not d and new.dtype != d:
                new = new.astype(d)
            for j in pos:
                new_leaves[j] = new
    if finish is not None:  # the state's new trees (Adam's mu, nu), of setup's structure
        unflatten = state.structure.unflatten
        trees = tuple(unflatten(c if state.dense else _at_leaves(n, slots, c))
                      for c in finish[1])
        inner = update.end(finish[0], state.inner, trees)
        if flat is not None:
            flat = (inner, finish[1])
    return (OptimiserState(state.opt, inner, slots, state.paths, frozen, n, state.skeleton,
                           state.structure, flat, (state.tied, state.dense)),
            _rebuild(model, new_leaves, walked))


class _Mismatch(Exception):
    pass


def _leaves_and_grads(model: Any, grads: Any, walked: dict) -> tuple[list, list]:
    """The model's leaves (``tree.flatten``'s) and the part of ``grads`` at each (``None``
    under a ``None`` subtree, as ``tree_utils.align`` gives them), in one walk of both.
    What each container of the model flattened to goes into ``walked``, by ``id``."""
    leaves: list = []
    g: list = []
    try:
        _gather(model, grads, leaves, g, walked)
    except _Mismatch:  # the two walks apart, to raise the error that names the path
        leaves, td = tree.flatten(model)
        g = align(td, grads, "grads")
    return leaves, g


def _gather(x: Any, g: Any, leaves: list, grads: list, walked: dict) -> None:
    nt = tree._node_type(x)
    if nt is None:
        leaves.append(x)
        grads.append(g)
        return
    children, aux = nt.flatten(x)
    if type(children) not in _SEQUENCES:
        children = list(children)
    walked[id(x)] = (nt, children, aux)
    if g is None:
        for c in children:
            if type(c) in _ARRAYS:  # a leaf, without a call: most children are arrays
                leaves.append(c)
                grads.append(None)
            else:
                _gather(c, None, leaves, grads, walked)
        return
    if type(g) is not type(x):
        raise _Mismatch
    g_children, g_aux = nt.flatten(g)
    if type(g_children) not in _SEQUENCES:  # (a registered flatten may give any iterable)
        g_children = list(g_children)
    if len(children) != len(g_children):
        raise _Mismatch
    if g_aux is not aux:
        try:
            same = bool(aux == g_aux)
        except Exception:  # arrays in configuration: the child count was checked, accept
            same = True
        if not same:
            raise _Mismatch
    for c, gc in zip(children, g_children):
        if type(c) in _ARRAYS:
            leaves.append(c)
            grads.append(gc)
        else:
            _gather(c, gc, leaves, grads, walked)


_ARRAYS = (np.ndarray,)  # leaf types recognised without a registry lookup (never nodes)
_SEQUENCES = (tuple, list)


def _fused(state: OptimiserState, update: Leafwise, gs: list, ps: list) -> tuple:
    """The optimiser's formula over the trained arrays themselves (one per slot), with no
    tree of gradients, parameters or updates built and walked again:
    ``(updates per slot, (token, new arrays per slot of each part), the reuse cache)``;
    ``step`` then builds the state's trees and ends the optimiser's step."""
    inner, slots = state.inner, state.slots
    leaf, ctx, token = update.start(inner)
    flat = state._flat
    if flat and flat[0] is inner:  # the state the last step made: its arrays are known
        parts = flat[1]
    else:
        parts = [_at_slots(align(state.structure, t, "optimiser state"), slots)
                 for t in update.arrays(inner)]
    us, cols = run("step", leaf, ctx, gs, ps, parts, _SlotPath(state))
    return us, (token, cols), flat


def _unfused(state: OptimiserState, update: Any, gs: list, ps: list, extra_args: dict
             ) -> tuple:
    """``opt.update`` over trees of the model's structure: ``(updates per slot, new state)``."""
    slots, td = state.slots, state.structure
    p_leaves: list = [None] * td.num_leaves
    g_leaves: list = [None] * td.num_leaves
    for k, (pos, p, gk) in enumerate(zip(slots, ps, gs)):
        if gk is not None and not same_shape(gk, p):  # it would broadcast into the array
            raise shape_error("step", gk, p, tree.keystr(state.paths[k][0]))
        p_leaves[pos[0]] = p
        g_leaves[pos[0]] = gk
    updates, inner = update(tree.unflatten(td, g_leaves), state.inner,
                            tree.unflatten(td, p_leaves), **extra_args)
    u = align(td, updates, "updates")
    return [u[pos[0]] for pos in slots], inner


def _tied(state: OptimiserState, k: int, leaves: list, g: list, arr: Any, frozen: bool) -> Any:
    """The summed gradient of tied slot ``k`` (``None`` if frozen), after checking that it
    is still tied."""
    pos = state.slots[k]
    for i, j in enumerate(pos[1:]):
        if leaves[j] is not arr:
            raise ValueError(TIE_BROKEN.format(a=tree.keystr(state.paths[k][0]),
                                               b=tree.keystr(state.paths[k][i + 1])))
    if frozen:
        return None
    for i, j in enumerate(pos):  # a gradient of another shape would broadcast into it
        if g[j] is not None and not same_shape(g[j], arr):
            raise shape_error("step", g[j], arr, tree.keystr(state.paths[k][i]))
    gs = [g[j] for j in pos if g[j] is not None]
    return None if not gs else gs[0] if len(gs) == 1 else reduce(operator.add, gs)


def _at_slots(leaves: list, slots: tuple) -> list:
    return [leaves[pos[0]] for pos in slots]


def _at_leaves(n: int, slots: tuple, values: list) -> list:
    """``n`` leaves with ``values`` at the slots and ``None`` elsewhere (how ``opt.init``
    laid out the state's arrays in ``setup``)."""
    leaves: list = [None] * n
    for pos, v in zip(slots, values):
        leaves[pos[0]] = v
    return leaves


class _SlotPath:
    """Names slot ``k`` in an error from the fused loop (its first path)."""
    __slots__ = ("paths",)

    def __init__(self, state: OptimiserState):
        self.paths = state.paths

    def __call__(self, k: int) -> str:
        return tree.keystr(self.paths[k][0])


def _rebuild(model: Any, new: list, walked: dict) -> Any:
    """``model`` with leaf ``i`` replaced by ``new[i]``, walking in ``tree.flatten`` order
    (with what ``_gather`` found at each container in ``walked``, so nothing is flattened
    twice).

    Subtrees whose leaves are all unchanged are returned as they are (the same
    object), and a container that appears twice is rebuilt once, so shared
    layers stay shared. A plain recursive function (no closure calling itself),
    so that a step leaves no reference cycle behind: its arrays are freed by
    reference counting alone.
    """
    return _rebuild_node(model, new, [0], {}, walked)


def _rebuild_node(x: Any, new: list, pos: list, memo: dict, walked: dict) -> Any:
    known = walked.get(id(x))
    if known is None:
        if tree._node_type(x) is None:  # a leaf
            i = pos[0]
            pos[0] = i + 1
            return new[i]
        known = walked[id(x)] = (tree._node_type(x), *tree._node_type(x).flatten(x))
    hit = memo.get(id(x))
    if hit is not None:
        pos[0] += hit[1]
        return hit[0]
    nt, children, aux = known
    start = pos[0]
    out = []
    same = True
    for c in children:
        if type(c) in _ARRAYS:  # a leaf, without a call
            r = new[pos[0]]
            pos[0] += 1
        else:
            r = _rebuild_node(c, new, pos, memo, walked)
        same = same and r is c
        out.append(r)
    if same:
        res = x
    elif type(x) is dict:  # keep the user's key order (tree.flatten sorts keys)
        res = dict(zip(aux, out))
        res = {k: res[k] for k in x}
    else:
        res = nt.unflatten(aux, out)
    memo[id(x)] = (res, pos[0] - start)
    return res


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


def adjust(state: Any, learning_rate: Any = _UNSET, **hyperparams: Any) -> Any:
    """A copy of ``state`` with new hyperparameter values; the moments and counts stay.

    Works on what ``setup`` returns (every alias inside it keeps its numbers in
    the state) and on a state from ``opt.init`` where the optimiser was built
    with ``optim.inject_hyperparams``. Every optimiser inside (through
    ``chain``, ``multi_transform``...) that has a hyperparameter of that name
    takes the new value.

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
    injected = [False]
    new = tree.map(lambda node: _adjust_node(node, hyperparams, found, available, injected),
                   state, is_leaf=_is_inject)
    missing = sorted(set(hyperparams) - found)
    if missing:
        raise ValueError(NO_HYPERPARAM.format(names=", ".join(map(repr, missing)),
                                              available=sorted(available) or "none")
                         + ("" if injected[0] or isinstance(state, OptimiserState)
                            else NOTHING_INJECTED))
    return new


def _is_inject(x: Any) -> bool:
    return isinstance(x, InjectHyperparamsState)


def _adjust_node(node: Any, hyperparams: dict, found: set, available: set,
                 injected: list) -> Any:
    if not _is_inject(node):
        return node
    injected[0] = True
    available.update(node.hyperparams)
    hp = dict(node.hyperparams)
    for k, v in hyperparams.items():
        if k in hp:
            hp[k] = float(v)
            found.add(k)
    inner = tree.map(lambda x: _adjust_node(x, hyperparams, found, available, injected),
                     node.inner_state, is_leaf=_is_inject)
    return InjectHyperparamsState(node.count, hp, inner)
