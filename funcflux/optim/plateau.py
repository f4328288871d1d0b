"""``reduce_on_plateau``: scale the updates down when a watched value stops improving.

optax keeps it in ``optax.contrib``; here it is ``optim.reduce_on_plateau``,
with optax's arguments, defaults and rule. The value (a training loss, or
better a validation loss) is passed to ``update`` as a keyword argument,
optax's "extra args": ``update(updates, state, params, value=loss)``. A
``chain`` forwards it to the members that take it, so the usual spelling is
``optim.chain(optim.adam(1e-3), optim.reduce_on_plateau(patience=5))`` and
``opt.update(grads, state, params, value=loss)``; ``optim.step(state, model,
grads, value=loss)`` does the same for a state from ``optim.setup``.

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.reduce_on_plateau(factor=0.5, patience=2)
>>> s = opt.init(np.zeros(1))
>>> for loss in [1.0, 0.9, 0.9, 0.9, 0.9]:      # no improvement after 0.9
...     u, s = opt.update(np.ones(1), s, value=loss)
>>> s.scale, u
(0.5, array([0.5]))
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from .base import GradientTransformation
from .checks import check_range
from .tree_utils import map_updates
from .wrappers import decide

__all__ = ["reduce_on_plateau", "ReduceLROnPlateauState"]

NO_VALUE = ("optim.reduce_on_plateau: update needs the watched value as a keyword argument: "
            "opt.update(grads, state, params, value=loss) (through a chain the same: the "
            "chain forwards it; through optim.setup: optim.step(state, model, grads, "
            "value=loss)).")


class ReduceLROnPlateauState(NamedTuple):
    """``scale`` applied to the updates; ``best_value`` seen; ``plateau_count`` checks
    without improvement; ``cooldown_count`` checks left before watching again; ``count``
    values averaged so far into ``avg_value`` (a check is made every
    ``accumulation_size`` values)."""
    scale: float
    best_value: float
    plateau_count: int
    cooldown_count: int
    count: int
    avg_value: float


def reduce_on_plateau(factor: float = 0.1, patience: int = 10, rtol: float = 1e-4,
                      atol: float = 0.0, cooldown: int = 0, accumulation_size: int = 1,
                      min_scale: float = 0.0) -> GradientTransformation:
    """Multiply the updates by ``scale``, which drops by ``factor`` after ``patience``
    checks without improvement.

    Args:
      factor: ``scale *= factor`` at a plateau, in (0, 1).
      patience: checks without improvement before the scale drops.
      rtol, atol: a value improves on the best when ``value < (1 - rtol) * best - atol``.
      cooldown: checks to wait after a drop before counting again.
      accumulation_size: values averaged into one check (1: every ``update``
        is a check; use the steps per epoch to check the epoch's mean loss).
      min_scale: the scale never drops below this.

    Put it after the optimiser in a chain (it scales the final updates) and
    pass ``value=`` at every update; the state's numbers are Python floats and
    ints, so it saves with ``ff.save`` like any state.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.chain(optim.sgd(0.1), optim.reduce_on_plateau(patience=1))
    >>> s = opt.init(np.zeros(1))
    >>> u, s = opt.update(np.ones(1), s, value=2.0)
    >>> u, s = opt.update(np.ones(1), s, value=3.0)      # worse: scale 1 -> 0.1
    >>> u
    array([-0.01])
    """
    check_range("reduce_on_plateau", "factor", factor, 0.0, 1.0, low_closed=False)
    check_range("reduce_on_plateau", "rtol", rtol, 0.0, 1.0, high_closed=True)
    check_range("reduce_on_plateau", "atol", atol)
    if rtol == 0.0 and atol == 0.0:
        raise ValueError("optim.reduce_on_plateau: rtol and atol are both 0; at least one must "
                         "be positive (a change of rounding size would count as improvement).")
    check_range("reduce_on_plateau", "patience", patience)
    check_range("reduce_on_plateau", "cooldown", cooldown)
    check_range("reduce_on_plateau", "accumulation_size", accumulation_size, 1.0)
    check_range("reduce_on_plateau", "min_scale", min_scale)

    def init(params: Any) -> ReduceLROnPlateauState:
        return ReduceLROnPlateauState(1.0, math.inf, 0, 0, 0, 0.0)

    def check(s: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        """optax's ``_update_scale``: one check of the averaged value."""
        improved = s.avg_value < (1.0 - rtol) * s.best_value - atol
        best = s.avg_value if improved else s.best_value
        plateau = 0 if improved else s.plateau_count + 1
        if s.cooldown_count > 0:
            plateau, scale, cool = 0, s.scale, s.cooldown_count - 1
        elif plateau == patience:
            plateau, scale, cool = 0, max(s.scale * factor, min_scale), int(cooldown)
        else:
            scale, cool = max(s.scale, min_scale), 0
        return ReduceLROnPlateauState(scale, best, plateau, cool, 0, 0.0)

    def update(updates: Any, state: ReduceLROnPlateauState, params: Any = None,
               **extra_args: Any) -> tuple:
        if "value" not in extra_args:
            raise TypeError(NO_VALUE)
        value = extra_args["value"]
        decide("reduce_on_plateau", "from the watched value, whether it improved",
               value == value)  # a staged value fails here, with the wrapper's name
        value = float(value)
        n = state.count + 1
        s = state._replace(avg_value=(state.count * state.avg_value + value) / n, count=n)
        if n == accumulation_size:
            s = check(s)
        scale = s.scale
        return map_updates(lambda g: scale * g, updates), s

    return GradientTransformation(init, update)
