"""Validation shared by every optimiser: hyperparameter ranges and update shapes.

Hyperparameters are checked when an optimiser is built (``optim.adam(-1.0)``
fails there, naming the argument and its valid range); gradient shapes at each
update, since a gradient of another shape would silently broadcast into its
parameter.

>>> from funcflux.optim.checks import check_range
>>> check_range("adam", "b1", 0.9, 0.0, 1.0)
"""
from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_range", "same_shape", "shape_error"]

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

    >>> from funcflux.optim.checks import check_range
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
