"""Hyperparameters kept in the state: ``inject_hyperparams`` (opt-in, as in optax).

An optimiser built by an alias keeps its numbers in its closures: its state
holds only what the rule needs (``optim.adam(1e-3).init(p)`` is optax's
``(ScaleByAdamState, EmptyState)``). To change a learning rate between steps,
the number must live in the state instead:
``optim.inject_hyperparams(optim.adam)(learning_rate=1e-3)`` gives the state
``InjectHyperparamsState(count, hyperparams, inner_state)``, and
``optim.adjust`` (or the user) changes ``hyperparams``.

``optim.setup`` does this wrapping for every alias it finds (through
:func:`adjustable`, following the recipes that aliases and combinators
record), which is what lets ``optim.adjust`` work on any state from
``setup``, as ``Optimisers.adjust!`` does in Julia.

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.inject_hyperparams(optim.adam)(learning_rate=0.1)
>>> state = opt.init(np.zeros(2))
>>> state.hyperparams["learning_rate"], type(state.inner_state[0]).__name__
(0.1, 'ScaleByAdamState')
"""
from __future__ import annotations

import functools
import inspect
import numbers
from typing import Any, Callable, NamedTuple

from .base import GradientTransformation, is_transformation, recipe_of
from .leafwise import Leafwise

__all__ = ["inject_hyperparams", "InjectHyperparamsState"]


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
    an update uses the optimiser built from ``state.hyperparams`` (built again
    only when they changed), so changing them (``optim.adjust``) takes effect at
    the next step with no new state. Arguments that are not numbers
    (schedules, masks, ``None``, flags) and those named in ``static_args`` stay
    fixed.

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
        # The last hyperparameter values and the optimiser built from them: built again
        # only when they changed (by adjust(), or by a user writing into the dict as in
        # optax, so the values are compared, not the dict's identity).
        last: list = [None, None]

        def build(hp: dict) -> GradientTransformation:
            if hp != last[0]:
                # Values read back from a checkpoint may be 0-d arrays: as Python floats
                # they keep float32 updates float32 (NEP 50).
                values = {k: float(v) for k, v in hp.items()}
                last[0], last[1] = values, factory(**fixed, **values)
            return last[1]

        first = build(numeric)  # now, so that a bad hyperparameter is an error at construction

        def init(params: Any) -> InjectHyperparamsState:
            return InjectHyperparamsState(0, dict(numeric), build(numeric).init(params))

        if isinstance(first.update, Leafwise):
            return GradientTransformation(init, _leafwise(factory.__name__, build, first.update))

        def update(updates: Any, state: InjectHyperparamsState, params: Any = None) -> tuple:
            updates, inner = build(state.hyperparams).update(updates, state.inner_state, params)
            return updates, InjectHyperparamsState(state.count + 1, state.hyperparams, inner)

        return GradientTransformation(init, update)

    wrapped.__wrapped__ = factory  # type: ignore[attr-defined]
    return wrapped


def _leafwise(name: str, build: Callable[[dict], GradientTransformation],
              first: Leafwise) -> Leafwise:
    """The update of an injected optimiser whose own update is leafwise: the optimiser
    for this step's hyperparameters is found once per step, and its own leaf runs at
    each leaf (no wrapper in between)."""
    def arrays(state: InjectHyperparamsState) -> tuple:
        return build(state.hyperparams).update.arrays(state.inner_state)

    def start(state: InjectHyperparamsState) -> tuple:
        lw = build(state.hyperparams).update
        leaf, ctx, token = lw.start(state.inner_state)
        return leaf, ctx, (lw, token)

    def end(token: tuple, state: InjectHyperparamsState, trees: tuple) -> InjectHyperparamsState:
        inner = token[0].end(token[1], state.inner_state, trees)
        return InjectHyperparamsState(state.count + 1, state.hyperparams, inner)

    return Leafwise(name, first.leaf, arrays=arrays, count=first.count, start=start, end=end,
                    needs_params=first.needs_params)


def adjustable(t: GradientTransformation) -> GradientTransformation:
    """``t`` rebuilt with every alias inside it wrapped by :func:`inject_hyperparams`.

    Follows the recipes that the aliases and combinators record; a hand-made
    pair (no recipe) and an already injected optimiser are kept as they are.
    This is what ``optim.setup`` does, so that ``optim.adjust`` works on its state.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> from funcflux.optim.inject import adjustable
    >>> state = adjustable(optim.chain(optim.clip(1.0), optim.adam(0.1))).init(np.zeros(1))
    >>> type(state[0]).__name__, state[1].hyperparams["learning_rate"]
    ('EmptyState', 0.1)
    """
    r = recipe_of(t)
    if r is None:
        return t
    args = tuple(_adjustable_arg(a) for a in r.args)
    kwargs = {k: _adjustable_arg(v) for k, v in r.kwargs.items()}
    if any(_is_number(v) for v in (*args, *kwargs.values())):
        return inject_hyperparams(r.factory)(*args, **kwargs)
    return r.factory(*args, **kwargs)


def _adjustable_arg(a: Any) -> Any:
    if is_transformation(a):
        return adjustable(a)
    if type(a) is tuple and len(a) == 2 and isinstance(a[0], str) and is_transformation(a[1]):
        return a[0], adjustable(a[1])  # named_chain's (name, optimiser)
    if type(a) is dict:  # multi_transform's {label: optimiser}
        return {k: adjustable(v) if is_transformation(v) else v for k, v in a.items()}
    return a
