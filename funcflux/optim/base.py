"""The types every optimiser shares: the ``(init, update)`` pair and the empty state.

Types only, as in optax's ``_src/base.py``. The rest of ``funcflux.optim`` is
one idea per module: ``checks`` (hyperparameter and shape validation),
``tree_utils`` (walks over trees of updates: ``apply_updates``,
``global_norm``), ``leafwise`` (transformations declared leaf by leaf, so
that loops fuse), ``transforms`` (the building blocks), ``combine``
(``chain``, ``masked``, ``multi_transform``), ``inject``
(``inject_hyperparams``), ``aliases`` (``adam``... as plain chains),
``schedules`` and ``setup`` (Flux-style ``setup``/``step``/``adjust``);
``factorized`` (Adafactor's factored moments), ``wrappers`` (``MultiSteps``,
``apply_if_finite``, ``lookahead``) and ``plateau`` (``reduce_on_plateau``).

>>> import numpy as np
>>> from funcflux import optim
>>> init, update = optim.sgd(0.1)          # a NamedTuple: unpacks like optax's
>>> update(np.ones(2), init(np.zeros(2)))[0]
array([-0.1, -0.1])
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

__all__ = ["GradientTransformation", "Optimiser", "EmptyState", "Recipe", "is_transformation"]


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


def init_empty(params: Any) -> EmptyState:
    """The ``init`` of a transform without state."""
    return EmptyState()


class Recipe(NamedTuple):
    """How a transformation was made: ``factory(*args, **kwargs)`` makes it again.

    The aliases (``optim.adam``...) and the combinators (``chain``...) record
    theirs, so that ``optim.setup`` can rebuild them with their numeric
    hyperparameters kept in the state, where ``optim.adjust`` changes them.
    """
    factory: Callable[..., GradientTransformation]
    args: tuple
    kwargs: dict


class RecordedTransformation(GradientTransformation):
    """A ``GradientTransformation`` that also holds its :class:`Recipe` (``.recipe``).

    In every other respect it is the plain ``(init, update)`` pair (it unpacks,
    compares and is an instance like one); a hand-made pair simply has no recipe.
    """
    # No __slots__: a NamedTuple subclass then has an instance dict, where the recipe lives.

    def __repr__(self) -> str:
        r = getattr(self, "recipe", None)
        if r is None:
            return GradientTransformation.__repr__(self)
        parts = [repr(a) for a in r.args] + [f"{k}={v!r}" for k, v in r.kwargs.items()]
        return f"{getattr(r.factory, '__name__', 'optimiser')}({', '.join(parts)})"


def recorded(t: GradientTransformation, recipe: Recipe) -> RecordedTransformation:
    """``t`` holding ``recipe``."""
    out = RecordedTransformation(t.init, t.update)
    out.recipe = recipe  # type: ignore[attr-defined]
    return out


def recipe_of(t: Any) -> Recipe | None:
    """The recipe ``t`` was made by, if it recorded one."""
    return getattr(t, "recipe", None) if isinstance(t, RecordedTransformation) else None


def is_transformation(t: Any) -> bool:
    """Whether ``t`` looks like an optimiser: a pair ``(init, update)`` of callables."""
    return isinstance(t, tuple) and len(t) == 2 and callable(t[0]) and callable(t[1])
