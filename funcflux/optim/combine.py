"""Combinators: ``chain`` (and ``named_chain``) one transformation after another,
``masked`` and ``multi_transform`` to give different rules to different leaves.

Each returns an ordinary ``GradientTransformation`` that also records how it
was made (its :class:`~funcflux.optim.base.Recipe`), so that ``optim.setup``
can reach the aliases inside it. A ``chain`` whose members all act leaf by
leaf fuses them into one loop over the leaves (``funcflux.optim.leafwise``).

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

import inspect
from typing import Any, NamedTuple

from .. import tree
from .base import GradientTransformation, Recipe, is_transformation, recorded
from .leafwise import Leafwise, fuse
from .tree_utils import align, flatten, path_at

__all__ = ["chain", "named_chain", "masked", "MaskedState", "multi_transform",
           "MultiTransformState"]

UNKNOWN_LABEL = ("multi_transform: the leaf at {path} has label {label!r}, but the transforms "
                 "are only given for labels {known}. Add a transform for it (e.g. "
                 "optim.set_to_zero() to leave it unchanged).")


def takes_extra_args(update: Any) -> bool:
    """Whether an ``update`` function accepts keyword arguments beyond ``params``
    (``**extra_args``, as optax's ``GradientTransformationExtraArgs``): ``chain``
    forwards such arguments (``value=`` for :func:`~funcflux.optim.reduce_on_plateau`)
    only to the members that take them.

    >>> from funcflux import optim
    >>> from funcflux.optim.combine import takes_extra_args
    >>> takes_extra_args(optim.reduce_on_plateau().update), takes_extra_args(lambda u, s, p: 0)
    (True, False)
    """
    try:
        sig = inspect.signature(update)
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after another; the state is the tuple of their states.

    Keyword arguments given to the chain's ``update`` beyond ``params`` (optax's
    "extra args", such as ``value=loss`` for ``reduce_on_plateau``) go to every
    member whose ``update`` accepts ``**extra_args``; the others do not see them.

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
    update_fns = tuple(t[1] for t in transforms)

    def init(params: Any) -> tuple:
        return tuple(fn(params) for fn in inits)

    if all(isinstance(fn, Leafwise) for fn in update_fns):
        return recorded(GradientTransformation(init, fuse("chain", list(update_fns))),
                        Recipe(chain, transforms, {}))

    takes = tuple(takes_extra_args(fn) for fn in update_fns)

    def update(updates: Any, state: tuple, params: Any = None, **extra_args: Any) -> tuple:
        if len(state) != len(update_fns):
            raise ValueError(f"chain: the state holds {len(state)} parts for "
                             f"{len(update_fns)} transforms; was it made by this chain's init?")
        new = []
        for fn, s, t in zip(update_fns, state, takes):
            updates, s = fn(updates, s, params, **extra_args) if t and extra_args \
                else fn(updates, s, params)
            new.append(s)
        return updates, tuple(new)

    return recorded(GradientTransformation(init, update), Recipe(chain, transforms, {}))


def named_chain(*transforms: tuple[str, GradientTransformation]) -> GradientTransformation:
    """``chain`` of ``(name, transformation)`` pairs; the state is ``{name: state}``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.named_chain(("clip", optim.clip(1.0)), ("sgd", optim.sgd(0.5)))
    >>> state = opt.init(np.zeros(2))
    >>> sorted(state)
    ['clip', 'sgd']
    >>> opt.update(np.array([4.0, -0.5]), state)[0]
    array([-0.5 ,  0.25])
    """
    for i, pair in enumerate(transforms):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(f"named_chain: argument {i} must be a pair (name, optimiser), got "
                            f"{type(pair).__name__}.")
    names = [n for n, _ in transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain: the names {names} repeat; each state is kept under "
                         f"its name, so they must differ.")
    inner = chain(*(t for _, t in transforms))

    def init(params: Any) -> dict:
        return dict(zip(names, inner.init(params)))

    def update(updates: Any, state: dict, params: Any = None, **extra_args: Any) -> tuple:
        if set(state) != set(names):
            raise ValueError(f"named_chain: the state holds {sorted(state)}, but the chain's "
                             f"names are {sorted(names)}; was it made by this chain's init?")
        updates, new = inner.update(updates, tuple(state[n] for n in names), params,
                                    **extra_args)
        return updates, dict(zip(names, new))

    return recorded(GradientTransformation(init, update), Recipe(named_chain, transforms, {}))


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

    return recorded(GradientTransformation(init, update), Recipe(masked, (inner, mask), {}))


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
                raise ValueError(UNKNOWN_LABEL.format(path=path_at(target, i), label=l,
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

    return recorded(GradientTransformation(init, update),
                    Recipe(multi_transform, (transforms, param_labels), {}))
