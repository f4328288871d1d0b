"""Adafactor's factored second moments: ``scale_by_factored_rms`` (optax's rule and names).

For an array with two axes of at least ``min_dim_size_to_factor`` elements,
the moving average of ``g² + eps`` is not kept element by element but as its
means along each of the two largest axes: a row vector ``v_row`` and a column
vector ``v_col`` (``n + m`` numbers for an ``n x m`` matrix instead of
``n * m``). The estimate of each element is then ``v_row[i] * v_col[j] /
mean(v_row)``, and the update is ``g / sqrt(estimate)``. Smaller arrays (and
every array when ``factored=False``) keep the full average ``v``. The unused
parts of the state hold an array of one zero, as in optax, so that the state
has the same tree structure for every leaf.

The decay of the averages grows with the step: ``1 - t ** -decay_rate``, ``t``
counting from 1 (``decay_rate_fn``). optax computes that number in float32
whatever the parameters' dtype; here it is a Python float (float64), so float64
trajectories differ from optax's in about the eighth digit and agree to the
last digits when optax is given the float64 rule (see docs/coming_from.md).

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.scale_by_factored_rms(min_dim_size_to_factor=2)
>>> p = np.ones((2, 3))
>>> state = opt.init(p)
>>> state.v_row.shape, state.v_col.shape, state.v.shape   # factored: one mean per axis
((2,), (3,), (1,))
>>> u, state = opt.update(np.full((2, 3), 0.5), state, p)
>>> u          # at the first step the decay is 0: g / sqrt(g²)
array([[1., 1., 1.],
       [1., 1., 1.]])
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from .. import tree
from ..core.backend import array_module
from .base import GradientTransformation
from .checks import check_range
from .leafwise import Leafwise
from .transforms import _abs_sq
from .tree_utils import flatten

__all__ = ["scale_by_factored_rms", "FactoredState"]


class FactoredState(NamedTuple):
    """``count`` steps so far; per leaf ``v_row`` and ``v_col`` (factored) or ``v`` (full)."""
    count: int
    v_row: Any
    v_col: Any
    v: Any


def decay_rate_pow(step: int, exponent: float = 0.8) -> float:
    """Adafactor's decay of the second moments at ``step`` (from 0): ``1 - (step + 1) ** -exponent``.

    >>> from funcflux.optim.factorized import decay_rate_pow
    >>> decay_rate_pow(0), round(decay_rate_pow(9), 6)
    (0.0, 0.841511)
    """
    return 1.0 - (step + 1.0) ** (-exponent)  # (no float(): the step is traced under jit)


def factored_dims(shape: tuple, factored: bool, min_dim_size_to_factor: int
                  ) -> tuple[int, int] | None:
    """The two largest axes of ``shape`` ``(second largest, largest)``, or ``None`` when the
    array is not factored (fewer than two axes, or the second largest is too short).

    Ties go as ``np.argsort`` orders them, as in optax.

    >>> from funcflux.optim.factorized import factored_dims
    >>> factored_dims((4, 2, 5), True, 2), factored_dims((4, 1), True, 2)
    ((0, 2), None)
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def scale_by_factored_rms(factored: bool = True, decay_rate: float = 0.8,
                          step_offset: int = 0, min_dim_size_to_factor: int = 128,
                          epsilon: float = 1e-30,
                          decay_rate_fn: Callable[[int, float], float] = decay_rate_pow
                          ) -> GradientTransformation:
    """Divide by a (factored, for large enough matrices) estimate of the gradient's RMS.

    Args:
      factored: factor the second moments of arrays with two long enough axes.
      decay_rate: the exponent of the decay schedule ``1 - t ** -decay_rate``.
      step_offset: subtracted from the step count (fine-tuning from a later step).
      min_dim_size_to_factor: factor only when the two largest axes are at least this long.
      epsilon: added to ``g²`` before averaging.
      decay_rate_fn: ``(step, decay_rate) -> decay`` (default :func:`decay_rate_pow`).

    The update needs the parameters (``update(grads, state, params)``), as in optax.
    """
    check_range("scale_by_factored_rms", "decay_rate", decay_rate)
    check_range("scale_by_factored_rms", "epsilon", epsilon)
    # (a float from optim.setup's inject_hyperparams is fine when whole)
    if isinstance(min_dim_size_to_factor, bool) or not isinstance(min_dim_size_to_factor,
                                                                  (int, float)) \
            or min_dim_size_to_factor != int(min_dim_size_to_factor) \
            or min_dim_size_to_factor < 1:
        raise ValueError(f"optim.scale_by_factored_rms: min_dim_size_to_factor must be an int "
                         f">= 1, got {min_dim_size_to_factor!r}.")
    min_dim_size_to_factor = int(min_dim_size_to_factor)

    def init_leaf(p: Any) -> tuple:
        xp = array_module(p)
        one = xp.zeros((1,), p.dtype)
        dims = factored_dims(p.shape, factored, min_dim_size_to_factor)
        if dims is None:
            return one, one, xp.zeros_like(p)
        d1, d0 = dims
        row = tuple(n for i, n in enumerate(p.shape) if i != d0)
        col = tuple(n for i, n in enumerate(p.shape) if i != d1)
        return xp.zeros(row, p.dtype), xp.zeros(col, p.dtype), one

    def init(params: Any) -> FactoredState:
        lv, td = flatten(params)
        parts = [init_leaf(p) if p is not None and getattr(p, "dtype", None) is not None
                 and p.dtype.kind in "fc" else (None, None, None) for p in lv]
        return FactoredState(0, *(tree.unflatten(td, [q[i] for q in parts]) for i in range(3)))

    def prepare(state: FactoredState) -> tuple:
        return state.count, decay_rate_fn(state.count - step_offset, decay_rate)

    def leaf(ctx: tuple, g: Any, p: Any, v_row: Any, v_col: Any, v: Any) -> tuple:
        rate = ctx[1]
        g2 = _abs_sq(g) + epsilon
        dims = factored_dims(p.shape, factored, min_dim_size_to_factor)
        if dims is None:
            new_v = (rate * v + (1.0 - rate) * g2).astype(p.dtype, copy=False)
            return g * new_v ** -0.5, v_row, v_col, new_v
        d1, d0 = dims
        xp = array_module(g)
        new_row = (rate * v_row + (1.0 - rate) * g2.mean(axis=d0)).astype(p.dtype, copy=False)
        new_col = (rate * v_col + (1.0 - rate) * g2.mean(axis=d1)).astype(p.dtype, copy=False)
        reduced_d1 = d1 - 1 if d1 > d0 else d1
        row_factor = (new_row / new_row.mean(axis=reduced_d1, keepdims=True)) ** -0.5
        col_factor = new_col ** -0.5
        u = g * xp.expand_dims(row_factor, d0) * xp.expand_dims(col_factor, d1)
        return u, new_row, new_col, v

    return GradientTransformation(init, Leafwise(
        "scale_by_factored_rms", leaf, arrays=("v_row", "v_col", "v"), prepare=prepare,
        needs_params=True,
        finish=lambda ctx, s, arrays: FactoredState(ctx[0] + 1, *arrays)))
