"""Optimisers as pairs of pure functions, and the combinators that compose them.

An optimiser is a :class:`GradientTransformation`: ``init(params) -> state`` and
``update(updates, state, params=None) -> (updates, state)``. Neither mutates
anything, so a training step is a function from ``(params, state)`` to new
ones. Small transforms (``scale_by_adam``, ``scale``) compose with
:func:`chain`; :func:`masked` and :func:`multi_transform` give different rules
to different leaves; :func:`inject_hyperparams` keeps numeric hyperparameters
in the state, which is what lets ``optim.adjust`` change them later.

``None`` is how a tree says "no update here": ``ff.grad`` gives ``None`` for
integer leaves, ``optim.step`` gives it for frozen and non-trainable arrays.
Every transform passes a ``None`` update through untouched and leaves the
matching state as it was; :func:`apply_updates` leaves that parameter alone.
Trees are therefore flattened with ``None`` as a leaf (``funcflux.tree`` on
its own reads ``None`` as an empty container, which would shift the leaves of
the updates against those of the state).

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.chain(optim.clip(1.0), optim.scale(-0.1))
>>> params = {"w": np.array([1.0, 2.0]), "n": 3}
>>> grads = {"w": np.array([0.5, 4.0]), "n": None}
>>> updates, state = opt.update(grads, opt.init(params), params)
>>> optim.apply_updates(params, updates)
{'n': 3, 'w': array([0.95, 1.9 ])}
"""
from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Any, Callable, NamedTuple

import numpy as np

from .. import functors, tree
from ..core.backend import array_module
from ..transforms.edge import is_float_leaf

__all__ = [
    "GradientTransformation", "Optimiser", "EmptyState", "identity", "set_to_zero", "chain",
    "apply_updates", "masked", "MaskedState", "multi_transform", "MultiTransformState",
    "inject_hyperparams", "InjectHyperparamsState", "global_norm",
]

NO_PARAMS = ("{name} needs the parameters: call update(updates, state, params) with the "
             "current parameters as the third argument.")
NO_STATE = ("{name}: the update at {path} has no state to go with it (the state holds None "
            "there). Was the state made by init() on parameters of this structure?")
BAD_HYPERPARAM = "optim.{owner}: {name}={value!r} is not valid; {name} must be {what}.{note}"
NOT_A_NUMBER = ("optim.{owner}: {name} must be a real number, got {value!r} of type "
                "{kind}.")
SHAPE_MISMATCH = ("optim.{where}: the gradient at {path} has shape {g}, but the parameter has "
                  "shape {p}. Give one gradient per parameter, of the parameter's shape (a "
                  "per-example gradient must be reduced first, e.g. averaged over axis 0).")
UNKNOWN_LABEL = ("multi_transform: the leaf at {path} has label {label!r}, but the transforms "
                 "are only given for labels {known}. Add a transform for it (e.g. "
                 "optim.set_to_zero() to leave it unchanged).")


# ----------------------------------------------------------------------------- validation
def _interval(low: float, high: float, low_closed: bool, high_closed: bool) -> str:
    def num(v: float) -> str:
        return "inf" if v == math.inf else ("-inf" if v == -math.inf else f"{v:g}")
    if low == -math.inf and high == math.inf:
        return "a finite number" if not (low_closed or high_closed) else "a number, not NaN"
    return (f"in {'[' if low_closed else '('}{num(low)}, {num(high)}{']' if high_closed else ')'}")


def check_range(owner: str, name: str, value: Any, low: float = 0.0, high: float = math.inf, *,
                low_closed: bool = True, high_closed: bool = False, note: str = "") -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (open or closed at each end).

    The one check behind every optimiser constructor. An open infinite end
    excludes infinity, so the default ``[0, inf)`` is "finite and >= 0"; NaN
    is never in range. ``note`` is added to the message.

    >>> from funcflux.optim.base import check_range
    >>> check_range("adam", "b1", 0.9, 0.0, 1.0)
    >>> check_range("adam", "b1", 1.5, 0.0, 1.0)
    Traceback (most recent call last):
    ...
    ValueError: optim.adam: b1=1.5 is not valid; b1 must be in [0, 1).
    """
    real = isinstance(value, numbers.Real) or (  # a 0-d array, e.g. read from a checkpoint
        getattr(value, "shape", None) == () and getattr(value, "dtype", None) is not None
        and value.dtype.kind in "fiu")
    if isinstance(value, bool) or not real:
        raise TypeError(NOT_A_NUMBER.format(owner=owner, name=name, value=value,
                                            kind=type(value).__name__))
    v = float(value)
    ok = ((low <= v if low_closed else low < v) and (v <= high if high_closed else v < high))
    if not ok:
        raise ValueError(BAD_HYPERPARAM.format(
            owner=owner, name=name, value=value,
            what=_interval(low, high, low_closed, high_closed), note=note))


def same_shape(g: Any, p: Any) -> bool:
    """Whether update ``g`` has array ``p``'s shape (on the hot path: two reads, one compare)."""
    return getattr(g, "shape", ()) == getattr(p, "shape", ())


def shape_error(where: str, g: Any, p: Any, path: str) -> ValueError:
    """The error for an update whose shape is not its parameter's (it would broadcast)."""
    return ValueError(SHAPE_MISMATCH.format(where=where, path=path,
                                            g=tuple(getattr(g, "shape", ())),
                                            p=tuple(getattr(p, "shape", ()))))


# ----------------------------------------------------------------------------- the pair
class GradientTransformation(NamedTuple):
    """An optimiser: ``init(params) -> state``, ``update(updates, state, params=None)``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.sgd(0.1)
    >>> updates, state = opt.update(np.ones(2), opt.init(np.zeros(2)))
    >>> updates
    array([-0.1, -0.1])
    """
    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]


Optimiser = GradientTransformation


class EmptyState(NamedTuple):
    """The state of a transform that keeps none."""


def _init_empty(params: Any) -> EmptyState:
    return EmptyState()


# ----------------------------------------------------------------------------- leaf helpers
def _is_none(x: Any) -> bool:
    return x is None


def flatten(updates: Any) -> tuple[list, tree.PyTreeDef]:
    """Leaves of a tree with ``None`` kept as a leaf (a skipped update)."""
    return tree.flatten(updates, is_leaf=tree._none_leaf)


def align(td: tree.PyTreeDef, x: Any, name: str = "tree") -> list:
    """The parts of ``x`` at the leaves of ``td``; a ``None`` subtree gives ``None`` for each.

    Like ``tree.flatten_up_to``, but a ``None`` where ``td`` has a whole
    subtree stands for "no update anywhere below" (a layer without gradient).
    """
    known = tree._along(td, x)
    if known is not None:
        return known
    out: list = []
    try:
        _align(td, x, out)
    except _Mismatch:
        tree.flatten_up_to(td, x, name)  # raises the error that names the path
        raise ValueError(f"{name} does not match the structure {td}") from None
    return out


class _Mismatch(Exception):
    pass


def _align(td: tree.PyTreeDef, x: Any, out: list) -> None:
    if td.node is None:
        out.append(x)
        return
    if x is None:
        if td.node is not type(None):
            out.extend([None] * td.num_leaves)
        return
    if type(x) is not td.node:
        raise _Mismatch
    nt = tree._node_type(x)
    children, aux = nt.flatten(x)
    children = list(children)
    if len(children) != len(td.children):
        raise _Mismatch
    try:
        same = bool(aux == td.aux)
    except Exception:  # arrays in configuration: the child count was checked, accept
        same = True
    if not same:
        raise _Mismatch
    for c, sub in zip(children, td.children):
        _align(sub, c, out)


def _path(td_tree: Any, i: int) -> str:
    return tree.keystr(tree.flatten_with_path(td_tree, is_leaf=_is_none)[0][i][0])


def map_updates(f: Callable[..., Any], updates: Any, *rest: Any) -> Any:
    """``f(u, *matching)`` at every update that is not ``None``; ``None`` stays ``None``."""
    lv, td = flatten(updates)
    if not rest:
        return tree.unflatten(td, [None if u is None else f(u) for u in lv])
    others = [align(td, r, "argument") for r in rest]
    out = []
    for i, (u, *xs) in enumerate(zip(lv, *others)):
        if u is None:
            out.append(None)
            continue
        for x in xs:  # the parameters: an update of another shape would broadcast into them
            if x is not None and not same_shape(u, x):
                raise shape_error("update", u, x, _path(updates, i))
        out.append(f(u, *xs))
    return tree.unflatten(td, out)


def map_with_state(f: Callable[..., tuple], updates: Any, *states: Any, name: str = "update"
                   ) -> tuple:
    """Leafwise ``f(u, *s) -> (u', *s')`` over updates and state trees of the same shape.

    Where the update is ``None`` the update stays ``None`` and every state
    part is kept as it was (a frozen or non-differentiable leaf).
    Returns ``(updates', *states')``.
    """
    lv, td = flatten(updates)
    parts = [align(td, s, f"{name} state") for s in states]
    outs: list[list] = [[] for _ in range(len(states) + 1)]
    for i, (u, *ss) in enumerate(zip(lv, *parts)):
        if u is None:
            outs[0].append(None)
            for k, s in enumerate(ss):
                outs[k + 1].append(s)
            continue
        if any(s is None for s in ss):
            raise ValueError(NO_STATE.format(name=name, path=_path(updates, i)))
        # The state has the parameters' shape; a gradient of another would broadcast.
        if ss and not same_shape(u, ss[0]):
            raise shape_error(name, u, ss[0], _path(updates, i))
        res = f(u, *ss)
        for k, r in enumerate(res):
            outs[k].append(r)
    return tuple(tree.unflatten(td, o) for o in outs)


def zeros_like(params: Any) -> Any:
    """Zeros for every floating leaf, ``None`` for the rest (they are never updated)."""
    return full_like(params, 0.0)


def full_like(params: Any, value: float) -> Any:
    def f(p: Any) -> Any:
        if p is None or not is_float_leaf(p):
            return None
        return array_module(p).full_like(p, value)
    lv, td = flatten(params)
    return tree.unflatten(td, [f(p) for p in lv])


def global_norm(updates: Any) -> float:
    """The L2 norm of all (non-``None``) leaves together, as a Python float.

    Exact to the leaves' precision at any magnitude: squares that would
    overflow or underflow the leaves' dtype (float16 gradients above 256 or
    below 1e-4, float32 above 1e19) are rescaled by the largest element, so
    the norm is ``inf`` or ``nan`` only when a leaf holds an ``inf`` or a
    ``nan`` (``nan`` wins). Complex leaves count with their magnitude.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.global_norm({"a": np.array([3.0]), "b": np.array([4.0]), "c": None})
    5.0
    >>> optim.global_norm({"h": np.full(4, 300.0, np.float16)})  # 300**2 overflows float16
    600.0
    """
    leaves = [u for u in flatten(updates)[0] if u is not None]
    total = 0.0
    with np.errstate(over="ignore"):  # an overflow is caught below, not warned about
        for u in leaves:
            v = _real_wide(u)
            total += float((v * v).sum())
    if 1e-20 < total < math.inf:  # no square can have overflowed or (noticeably) underflowed
        return math.sqrt(total)
    # Rare: zero, tiny, overflowed or non-finite. Scale by the largest magnitude.
    tops = [float(abs(u).max()) for u in leaves if u.size]
    if any(math.isnan(t) for t in tops):
        return math.nan
    top = max(tops, default=0.0)
    if top == 0.0 or top == math.inf:
        return top
    total = 0.0
    for u in leaves:
        v = _real_wide(abs(u)) / top  # every element in [0, 1]: the squares are safe
        total += float((v * v).sum())
    return top * math.sqrt(total)


def _real_wide(u: Any) -> Any:
    """``u`` as real floats of at least 32 bits (magnitudes of complex; float16 and ints
    widened, so that their squares and sums stay in range)."""
    if u.dtype.kind == "c":
        u = abs(u)
    if u.dtype.kind != "f" or u.dtype.itemsize < 4:
        u = u.astype(array_module(u).float32 if u.dtype.kind == "f" else "float64")
    return u


def sqrt(x: Any) -> Any:
    return array_module(x).sqrt(x)


# ----------------------------------------------------------------------------- basics
def identity() -> GradientTransformation:
    """Leave updates unchanged (optax's ``identity``)."""
    return GradientTransformation(_init_empty, lambda updates, state, params=None: (updates, state))


def set_to_zero() -> GradientTransformation:
    """Replace every update by zeros: the parameters under it stay where they are.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.set_to_zero().update(np.ones(2), optim.EmptyState())[0]
    array([0., 0.])
    """
    def update(updates: Any, state: Any, params: Any = None) -> tuple:
        return map_updates(lambda u: array_module(u).zeros_like(u), updates), state
    return GradientTransformation(_init_empty, update)


def is_transformation(t: Any) -> bool:
    """Whether ``t`` looks like an optimiser: a pair ``(init, update)`` of callables."""
    return isinstance(t, tuple) and len(t) == 2 and callable(t[0]) and callable(t[1])


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after another; the state is the tuple of their states.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.chain(optim.scale(2.0), optim.scale(-0.5))
    >>> opt.update(np.ones(2), opt.init(np.zeros(2)))[0]
    array([-1., -1.])
    """
    for i, t in enumerate(transforms):
        if not is_transformation(t):
            raise TypeError(f"chain: argument {i} is a {type(t).__name__}, not an optimiser "
                            f"(a GradientTransformation(init, update)). Did you pass the "
                            f"factory (optim.adam) instead of calling it (optim.adam(1e-3))?")
    inits = tuple(t[0] for t in transforms)
    updates_fns = tuple(t[1] for t in transforms)

    def init(params: Any) -> tuple:
        return tuple(fn(params) for fn in inits)

    def update(updates: Any, state: tuple, params: Any = None) -> tuple:
        if len(state) != len(updates_fns):
            raise ValueError(f"chain: the state holds {len(state)} parts for "
                             f"{len(updates_fns)} transforms; was it made by this chain's init?")
        new = []
        for fn, s in zip(updates_fns, state):
            updates, s = fn(updates, s, params)
            new.append(s)
        return updates, tuple(new)

    return GradientTransformation(init, update)


def _add(p: Any, u: Any) -> Any:
    new = p + u
    d = getattr(p, "dtype", None)
    if d is not None and getattr(new, "dtype", d) != d:
        new = new.astype(d)
    return new


def trainable_flags(params: Any) -> list[bool]:
    """One flag per leaf (``None`` a leaf): False inside a functor's non-trainable children."""
    memo = tree.memo_of(params)
    if memo is not None:  # a frozen model: once per structure
        flags = memo.get("trainable")
        if flags is None:
            flags = memo["trainable"] = _trainable_flags(params)
        return list(flags)
    return _trainable_flags(params)


def _trainable_flags(params: Any) -> list[bool]:
    out: list[bool] = []

    def walk(x: Any, ok: bool) -> None:
        nt = None if x is None else tree._node_type(x)
        if nt is None:
            out.append(ok)
            return
        children, aux = nt.flatten(x)
        if functors.is_functor(x):
            names = functors.trainable(x)
            for c, k in zip(children, nt.keys(x, aux)):
                walk(c, ok and getattr(k, "name", None) in names)
        else:
            for c in children:
                walk(c, ok)

    walk(params, True)
    return out


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates`` leaf by leaf, keeping each parameter's dtype.

    A ``None`` update leaves its parameter unchanged, and so does every
    non-trainable child of a functor class (``@ff.functor(trainable=...)``),
    whatever its update says.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.apply_updates({"w": np.float32([1, 2])}, {"w": np.array([0.5, 0.5])})["w"]
    array([1.5, 2.5], dtype=float32)
    """
    lv, td = flatten(params)
    us = align(td, updates, "updates")
    flags = trainable_flags(params)
    out = []
    for i, (p, u, ok) in enumerate(zip(lv, us, flags)):
        if u is None or not ok:
            out.append(p)
            continue
        if not same_shape(u, p):
            raise shape_error("apply_updates", u, p, _path(params, i))
        out.append(_add(p, u))
    return tree.unflatten(td, out)


# ----------------------------------------------------------------------------- masks
class MaskedState(NamedTuple):
    inner_state: Any


def _leaf_values(spec: Any, target: Any, what: str) -> list:
    """One value of ``spec`` per leaf of ``target`` (``None`` a leaf); ``spec`` may be a prefix."""
    _, td = flatten(target)
    slv, std = flatten(spec)
    subs = tree.flatten_up_to(std, target, f"the tree given to {what}") \
        if std.num_leaves != td.num_leaves or std != td else None
    if subs is None:
        return slv
    out: list = []
    for v, sub in zip(slv, subs):
        out.extend([v] * len(flatten(sub)[0]))
    return out


def _split(updates: Any, keep: list) -> Any:
    lv, td = flatten(updates)
    return tree.unflatten(td, [u if k else None for u, k in zip(lv, keep)])


def masked(inner: GradientTransformation, mask: Any) -> GradientTransformation:
    """Apply ``inner`` only where ``mask`` is True; other updates pass through unchanged.

    ``mask`` is a tree of bools with the parameters' structure (or a prefix of
    it: one bool for a whole subtree), or a function ``params -> such a tree``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.masked(optim.scale(0.0), {"w": True, "b": False})
    >>> p = {"w": np.ones(1), "b": np.ones(1)}
    >>> opt.update(p, opt.init(p), p)[0]
    {'b': array([1.]), 'w': array([0.])}
    """
    def keep_of(target: Any, source: Any) -> list:
        m = mask(source) if callable(mask) else mask
        return [bool(k) for k in _leaf_values(m, target, "masked")]

    def init(params: Any) -> MaskedState:
        return MaskedState(inner.init(_split(params, keep_of(params, params))))

    def update(updates: Any, state: MaskedState, params: Any = None) -> tuple:
        keep = keep_of(updates, params if params is not None else updates)
        sub_p = None if params is None else _split_like(params, updates, keep)
        new_u, s = inner.update(_split(updates, keep), state.inner_state, sub_p)
        lv, td = flatten(updates)
        nv = align(td, new_u, "masked updates")
        return tree.unflatten(td, [n if k else u for u, n, k in zip(lv, nv, keep)]), MaskedState(s)

    return GradientTransformation(init, update)


def _split_like(params: Any, updates: Any, keep: list) -> Any:
    """``params`` restricted to the kept leaves, in the updates' leaf layout."""
    lv, td = flatten(updates)
    ps = align(td, params, "params")
    return tree.unflatten(td, [p if k else None for p, k in zip(ps, keep)])


class MultiTransformState(NamedTuple):
    inner_states: dict


def multi_transform(transforms: dict, param_labels: Any) -> GradientTransformation:
    """A different optimiser for each label: ``{label: opt}`` and one label per parameter.

    ``param_labels`` is a tree of labels with the parameters' structure (or a
    prefix of it), or a function ``params -> labels``. Under ``optim.setup`` the
    function receives the model with ``None`` at arrays that are not trained.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.multi_transform({"fast": optim.sgd(1.0), "off": optim.set_to_zero()},
    ...                             {"w": "fast", "b": "off"})
    >>> p = {"w": np.ones(1), "b": np.ones(1)}
    >>> opt.update(p, opt.init(p), p)[0]
    {'b': array([0.]), 'w': array([-1.])}
    """
    transforms = dict(transforms)

    def labels_of(target: Any, source: Any) -> list:
        lab = param_labels(source) if callable(param_labels) else param_labels
        labels = _leaf_values(lab, target, "multi_transform")
        lv = flatten(target)[0]
        for i, (x, l) in enumerate(zip(lv, labels)):
            if x is not None and l not in transforms:
                raise ValueError(UNKNOWN_LABEL.format(path=_path(target, i), label=l,
                                                      known=sorted(map(repr, transforms))))
        return labels

    def init(params: Any) -> MultiTransformState:
        labels = labels_of(params, params)
        return MultiTransformState({
            k: t.init(_split(params, [l == k for l in labels])) for k, t in transforms.items()})

    def update(updates: Any, state: MultiTransformState, params: Any = None) -> tuple:
        labels = labels_of(updates, params if params is not None else updates)
        lv, td = flatten(updates)
        out = list(lv)
        new_states = {}
        for k, t in transforms.items():
            keep = [l == k for l in labels]
            sub_p = None if params is None else _split_like(params, updates, keep)
            new_u, new_states[k] = t.update(_split(updates, keep), state.inner_states[k], sub_p)
            for i, (n, kp) in enumerate(zip(align(td, new_u, "multi_transform updates"), keep)):
                if kp:
                    out[i] = n
        return tree.unflatten(td, out), MultiTransformState(new_states)

    return GradientTransformation(init, update)


# ----------------------------------------------------------------------------- hyperparameters
class InjectHyperparamsState(NamedTuple):
    """``count`` updates so far, the numeric ``hyperparams`` in use, the wrapped state."""
    count: int
    hyperparams: dict
    inner_state: Any


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def inject_hyperparams(factory: Callable[..., GradientTransformation],
                       static_args: tuple[str, ...] = ()) -> Callable[..., GradientTransformation]:
    """Wrap an optimiser factory so that its numeric arguments live in the state.

    The state becomes ``InjectHyperparamsState(count, hyperparams, inner_state)``;
    every update rebuilds the optimiser from ``state.hyperparams``, so changing
    them (``optim.adjust``) takes effect at the next step with no new state.
    Arguments that are not numbers (schedules, masks, ``None``, flags) and
    those named in ``static_args`` stay fixed. Every alias (``optim.adam``...)
    is built this way.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.inject_hyperparams(optim.scale)(step_size=2.0)
    >>> state = opt.init(np.zeros(1))
    >>> state.hyperparams
    {'step_size': 2.0}
    >>> opt.update(np.ones(1), optim.adjust(state, step_size=3.0))[0]
    array([3.])
    """
    sig = inspect.signature(factory)

    @functools.wraps(factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        numeric = {k: float(v) for k, v in values.items()
                   if _is_number(v) and k not in static_args}
        fixed = {k: v for k, v in values.items() if k not in numeric}

        built: list = [None, None]  # the last (hyperparameters, optimiser) pair

        def build(hp: dict) -> GradientTransformation:
            # Values read back from a checkpoint may be 0-d arrays: as Python floats
            # they keep float32 updates float32 (NEP 50).
            values = {k: float(v) for k, v in hp.items()}
            if values != built[0]:  # rebuilt only when adjust() changed something
                built[0], built[1] = values, factory(**fixed, **values)
            return built[1]

        build(numeric)  # now, so that a bad hyperparameter is an error at construction

        def init(params: Any) -> InjectHyperparamsState:
            return InjectHyperparamsState(0, dict(numeric), build(numeric).init(params))

        def update(updates: Any, state: InjectHyperparamsState, params: Any = None) -> tuple:
            updates, inner = build(state.hyperparams).update(updates, state.inner_state, params)
            return updates, InjectHyperparamsState(state.count + 1, state.hyperparams, inner)

        return GradientTransformation(init, update)

    wrapped.__wrapped__ = factory  # type: ignore[attr-defined]
    return wrapped
