"""Family helpers that make most rules one line.

- ``unbroadcast(ct, x)``: sum a cotangent back to the shape (and dtype) of ``x``,
  undoing NumPy broadcasting; every binary VJP ends with it. A real ``x`` takes
  the real part of a complex cotangent.
- ``elementwise_batch(prim)``: the batching rule of any broadcasting op.
- ``move_bdim(x, d, to)`` and friends for batching rules of the other families.

They call primitives through ``funcflux.numpy`` (imported as a module so the
families can refer to each other while they load).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

import funcflux.numpy as fnp

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


def unbroadcast(ct: Any, x: Any) -> Any:
    """Sum ``ct`` over the axes that broadcasting added or stretched for ``x``."""
    try:  # arrays and tracers (the common case) have shapes
        target, s = x.shape, ct.shape
    except AttributeError:
        target, s = shape(x), shape(ct)
    if s != target:
        target, s = tuple(target), tuple(s)
        lead = len(s) - len(target)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(target) if n == 1 and s[i + lead] != 1)
        # The primitives directly: axes are already normalised, so skip the NumPy-facing
        # wrappers (this runs for every broadcast argument of every binary op).
        if axes:
            # Stretched axes only: keepdims gives the target shape with no reshape after.
            ct = fnp._reductions.sum_p(ct, axis=axes, keepdims=not lead)
        if shape(ct) != target:
            ct = fnp._shape.reshape_p(ct, shape=target)
    dx = getattr(x, "dtype", None)
    if dx is not None and getattr(ct, "dtype", dx) != dx:
        # astype_p: a complex cotangent of a real input casts to its real part (JAX's
        # convention, the transpose of the real -> complex inclusion).
        ct = fnp._elementwise.astype_p(ct, dtype=dx)
    return ct


def move_bdim(x: Any, d: int | None, to: int = 0) -> Any:
    """Move batch axis ``d`` of ``x`` to position ``to`` (no-op when already there)."""
    if d is None or d == to:
        return x
    return fnp.moveaxis(x, d, to)


def bdim_to_front(args: Sequence[Any], dims: Sequence[int | None], size: int | None = None
                  ) -> list:
    """Every argument with its batch axis first; unmapped ones broadcast when ``size`` given."""
    out = []
    for x, d in zip(args, dims):
        if d is None:
            if size is not None:
                x = fnp.broadcast_to(x, (size,) + shape(x))
        else:
            x = move_bdim(x, d, 0)
        out.append(x)
    return out


def batch_size(args: Sequence[Any], dims: Sequence[int | None]) -> int:
    for x, d in zip(args, dims):
        if d is not None:
            return shape(x)[d]
    raise ValueError("no batched argument")


def elementwise_batch(prim: Callable) -> Callable:
    """Batching rule for broadcasting ops: align every batch axis at the front."""
    def rule(args: Sequence[Any], dims: Sequence[int | None], **params: Any) -> tuple:
        nds = [ndim(x) - (d is not None) for x, d in zip(args, dims)]
        out_nd = max(nds)
        first = next(d for d in dims if d is not None)
        # Fast path: every argument is batched on the same axis with full rank.
        if all(d == first and n == out_nd for d, n in zip(dims, nds)):
            return prim(*args, **params), first
        new = []
        for x, d, n in zip(args, dims, nds):
            if d is not None:
                x = move_bdim(x, d, 0)
                if n < out_nd:
                    s = shape(x)
                    x = fnp.reshape(x, (s[0],) + (1,) * (out_nd - n) + s[1:])
            new.append(x)
        return prim(*new, **params), 0
    return rule


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
