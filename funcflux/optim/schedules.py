"""Schedules: functions ``step -> value`` for learning rates and other hyperparameters.

Any ``learning_rate`` of an optimiser may be a schedule; the optimiser counts
its own steps (from 0). The formulas and argument names are optax's; each
schedule is also available under optax's longer name (``linear_schedule``...).
Values are Python floats, so they never promote float32 arrays. Every schedule is
written without Python branches on the count (``np.minimum``, ``np.where``), so under
``ff.jit``, where an optimiser's integer count is traced, it is part of the staged
program (a traced Python number there, which promotes nothing either).

>>> from funcflux import optim
>>> lr = optim.warmup_cosine_decay(0.0, peak_value=1.0, warmup_steps=10, decay_steps=110)
>>> [round(lr(n), 3) for n in (0, 5, 10, 60, 110, 200)]
[0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from ..core.trace import Tracer

__all__ = [
    "Schedule", "constant", "linear", "polynomial", "exponential_decay", "cosine_decay",
    "warmup_cosine_decay", "piecewise_constant", "join_schedules", "constant_schedule",
    "linear_schedule", "polynomial_schedule", "cosine_decay_schedule",
    "warmup_cosine_decay_schedule", "piecewise_constant_schedule",
    "sgdr", "sgdr_schedule", "cosine_onecycle", "cosine_onecycle_schedule",
]

Schedule = Callable[[int], float]


def _out(v: Any) -> Any:
    """A Python float, or the traced value inside ``jit``."""
    return v if isinstance(v, Tracer) else float(v)


def _clip(x: Any, lo: Any, hi: Any) -> Any:
    return np.minimum(np.maximum(x, lo), hi)


def constant(value: float) -> Schedule:
    """The same value at every step.

    >>> from funcflux import optim
    >>> optim.constant(0.1)(1000)
    0.1
    """
    value = float(value)
    return lambda count: value


def polynomial(init_value: float, end_value: float, power: float, transition_steps: int,
               transition_begin: int = 0) -> Schedule:
    """From ``init_value`` to ``end_value`` over ``transition_steps`` steps, as
    ``(init - end) * (1 - k / transition_steps) ** power + end`` with ``k`` the
    steps since ``transition_begin`` (clipped to ``[0, transition_steps]``).
    """
    if transition_steps <= 0:
        warnings.warn("A polynomial schedule was given transition_steps <= 0; it returns "
                      "init_value at every step.", stacklevel=2)
        return constant(init_value)
    init_value, end_value = float(init_value), float(end_value)

    def schedule(count: int) -> float:
        k = _clip(count - transition_begin, 0, transition_steps)
        return _out((init_value - end_value) * (1.0 - k / transition_steps) ** power + end_value)
    return schedule


def linear(init_value: float, end_value: float, transition_steps: int,
           transition_begin: int = 0) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value`` (optax's ``linear_schedule``).

    >>> from funcflux import optim
    >>> s = optim.linear(1.0, 0.0, transition_steps=4, transition_begin=2)
    >>> [s(n) for n in range(8)]
    [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    return polynomial(init_value, end_value, 1, transition_steps, transition_begin)


def exponential_decay(init_value: float, transition_steps: int, decay_rate: float,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: Optional[float] = None) -> Schedule:
    """``init_value * decay_rate ** (k / transition_steps)``, ``k`` the steps since
    ``transition_begin``; ``staircase`` floors the exponent; ``end_value`` bounds it.

    >>> from funcflux import optim
    >>> s = optim.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)
    >>> s(0), s(10), s(20)
    (1.0, 0.5, 0.25)
    """
    if transition_steps <= 0:
        warnings.warn("exponential_decay was given transition_steps <= 0; it returns "
                      "init_value at every step.", stacklevel=2)
        return constant(init_value)
    if decay_rate == 0:
        raise ValueError("exponential_decay: decay_rate must not be 0.")
    init_value = float(init_value)

    def schedule(count: int) -> float:
        p = np.maximum(count - transition_begin, 0) / transition_steps  # 0 before the start
        value = init_value * decay_rate ** (np.floor(p) if staircase else p)
        if end_value is not None:
            value = np.maximum(value, end_value) if decay_rate < 1 else \
                np.minimum(value, end_value)
        return _out(value)
    return schedule


def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0,
                 exponent: float = 1.0) -> Schedule:
    """Half a cosine from ``init_value`` down to ``alpha * init_value`` over ``decay_steps``:
    ``init * ((1 - alpha) * (0.5 * (1 + cos(pi * k / decay_steps))) ** exponent + alpha)``.

    >>> from funcflux import optim
    >>> s = optim.cosine_decay(1.0, decay_steps=100, alpha=0.1)
    >>> round(s(0), 3), round(s(50), 3), round(s(100), 3), round(s(500), 3)
    (1.0, 0.55, 0.1, 0.1)
    """
    if not decay_steps > 0:
        raise ValueError(f"cosine_decay needs decay_steps > 0, got {decay_steps}.")
    init_value = float(init_value)

    def schedule(count: int) -> float:
        k = np.minimum(count, decay_steps)
        cos = 0.5 * (1.0 + np.cos(math.pi * k / decay_steps))
        return _out(init_value * ((1.0 - alpha) * cos ** exponent + alpha))
    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """``schedules[i]`` from ``boundaries[i-1]`` on, each counting from its own boundary."""
    schedules, boundaries = list(schedules), list(boundaries)
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"join_schedules needs one boundary fewer than schedules, got "
                         f"{len(schedules)} schedules and {len(boundaries)} boundaries.")

    def schedule(count: int) -> float:
        value = schedules[0](count)
        for b, s in zip(boundaries, schedules[1:]):
            value = np.where(np.greater_equal(count, b), s(count - b), value)
        return _out(value)
    return schedule


def warmup_cosine_decay(init_value: float, peak_value: float, warmup_steps: int,
                        decay_steps: int, end_value: float = 0.0, exponent: float = 1.0
                        ) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then
    cosine decay to ``end_value`` at step ``decay_steps`` (which counts the warm-up)."""
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    if warmup_steps == 0:  # no warm-up (and no warning from a linear over 0 steps)
        return cosine_decay(peak_value, decay_steps, alpha, exponent)
    return join_schedules([linear(init_value, peak_value, warmup_steps),
                           cosine_decay(peak_value, decay_steps - warmup_steps, alpha, exponent)],
                          [warmup_steps])


def piecewise_constant(init_value: float, boundaries_and_scales: Optional[dict] = None
                       ) -> Schedule:
    """``init_value``, multiplied by ``scale`` from each ``step`` of ``{step: scale}`` on.

    >>> from funcflux import optim
    >>> s = optim.piecewise_constant(1.0, {10: 0.1, 20: 0.5})
    >>> s(9), s(10), round(s(20), 6)
    (1.0, 0.1, 0.05)
    """
    items = sorted((boundaries_and_scales or {}).items())
    if any(scale < 0 for _, scale in items):
        raise ValueError("piecewise_constant needs non-negative scales, got "
                         f"{dict(items)}.")
    init_value = float(init_value)

    def schedule(count: int) -> float:
        v = init_value
        for b, scale in items:
            v = v * np.where(np.greater_equal(count, b), scale, 1.0)
        return _out(v)
    return schedule


def sgdr(cosine_kwargs: Iterable[dict]) -> Schedule:
    """SGD with warm restarts (Loshchilov & Hutter 2017): one
    :func:`warmup_cosine_decay` cycle per dict of ``cosine_kwargs`` (its arguments:
    ``init_value``, ``peak_value``, ``warmup_steps``, ``decay_steps``, optionally
    ``end_value`` and ``exponent``), each starting where the last one's
    ``decay_steps`` ended. optax's ``sgdr_schedule``.

    >>> from funcflux import optim
    >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=6)
    >>> s = optim.sgdr([cycle, cycle])
    >>> [round(s(n), 3) for n in range(13)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    boundaries, schedules, step = [], [], 0
    for i, kwargs in enumerate(cosine_kwargs):
        if not isinstance(kwargs, dict) or "decay_steps" not in kwargs:
            raise ValueError(f"optim.sgdr: cycle {i} must be a dict of warmup_cosine_decay's "
                             f"arguments with decay_steps, got {kwargs!r}.")
        schedules.append(warmup_cosine_decay(**kwargs))
        step += kwargs["decay_steps"]
        boundaries.append(step)
    if not schedules:
        raise ValueError("optim.sgdr: cosine_kwargs holds no cycle.")
    return join_schedules(schedules, boundaries[:-1])


def _cosine_interpolate(start: float, end: float, pct: Any) -> Any:
    return end + (start - end) / 2.0 * (np.cos(math.pi * pct) + 1.0)


def cosine_onecycle(transition_steps: int, peak_value: float, pct_start: float = 0.3,
                    div_factor: float = 25.0, final_div_factor: float = 1e4) -> Schedule:
    """The one-cycle schedule (Smith & Topin 2017) with cosine phases: from
    ``peak_value / div_factor`` up to ``peak_value`` over the first
    ``int(pct_start * transition_steps)`` steps, then down to ``peak_value /
    (div_factor * final_div_factor)`` at ``transition_steps``, constant after.
    optax's ``cosine_onecycle_schedule``.

    >>> from funcflux import optim
    >>> s = optim.cosine_onecycle(10, peak_value=1.0, pct_start=0.2)
    >>> [round(s(n), 4) for n in (0, 1, 2, 6, 10, 20)]
    [0.04, 0.52, 1.0, 0.5, 0.0, 0.0]
    """
    if not transition_steps > 0:
        raise ValueError(f"optim.cosine_onecycle: transition_steps must be > 0, got "
                         f"{transition_steps!r}.")
    # optax's piecewise interpolation between the running products of these scales
    # (a dict: a warm-up of transition_steps steps leaves one boundary, as there)
    scales = {int(pct_start * transition_steps): div_factor,
              int(transition_steps): 1.0 / (div_factor * final_div_factor)}
    bounds = [0] + sorted(scales)
    values = [float(peak_value) / div_factor]
    for b in bounds[1:]:
        values.append(values[-1] * scales[b])

    def schedule(count: int) -> float:
        value = values[-1]
        for i in range(len(bounds) - 2, -1, -1):
            lo, hi = bounds[i], bounds[i + 1]
            inside = np.logical_and(np.greater_equal(count, lo), np.less(count, hi))
            value = np.where(inside, _cosine_interpolate(values[i], values[i + 1],
                                                         (count - lo) / max(hi - lo, 1)), value)
        return _out(value)
    return schedule


# optax's names
sgdr_schedule = sgdr
cosine_onecycle_schedule = cosine_onecycle
constant_schedule = constant
linear_schedule = linear
polynomial_schedule = polynomial
cosine_decay_schedule = cosine_decay
warmup_cosine_decay_schedule = warmup_cosine_decay
piecewise_constant_schedule = piecewise_constant
