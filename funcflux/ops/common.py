"""Plain helpers shared by the families and the NumPy surface: no primitives here.

``shape``/``ndim``/``dtype`` read a value's static facts (never converting a
tracer), ``norm_axis`` validates and normalises NumPy axes, ``no_out`` refuses
``out=``. The helpers that bind primitives (``unbroadcast``, ``elementwise_batch``,
``move_bdim``...) live in ``funcflux.ops.base`` beside the primitives they use.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.trace import Tracer


def shape(x: Any) -> tuple:
    """``x``'s shape as a tuple: arrays' and tracers' own (never asking NumPy, which would
    convert a tracer), NumPy's for Python numbers and nested lists.

    The one definition for the whole package (the API edge, tree and layers import it).
    """
    s = getattr(x, "shape", None)
    if type(s) is tuple:
        return s
    return tuple(s) if s is not None else np.shape(x)


def ndim(x: Any) -> int:
    return len(shape(x))


def dtype(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    return d if d is not None else np.result_type(x)


def as_array(x: Any) -> Any:
    """Arrays and traced values pass through; lists and Python numbers become NumPy arrays
    (constants), as NumPy functions read their arguments."""
    return x if isinstance(x, Tracer) or hasattr(x, "shape") else np.asarray(x)


def is_tracer(x: Any) -> bool:
    return isinstance(x, Tracer)


NO_OUT = ("np.{name}(..., out=...) is not supported on traced values: arrays are values "
          "inside a transform. Drop out= and use the result.")


def no_out(name: str, out: Any) -> None:
    """Refuse NumPy's ``out=`` on traced values (``name``: the function, as after ``np.``)."""
    if out is not None:
        raise TypeError(NO_OUT.format(name=name))


def norm_axis(axis: Any, nd: int) -> tuple[int, ...] | None:
    """``None`` or a tuple of non-negative axes, validated against rank ``nd``."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -nd <= a < nd:
            raise np.exceptions.AxisError(a, nd)
        out.append(a % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(out)
