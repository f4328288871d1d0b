"""Abstract values: a shape and a dtype standing for an array that is never computed.

``ff.eval_shape`` traces a function on :class:`ShapeDtypeStruct` inputs (see
``funcflux.transforms.staging``). Each primitive reached on an abstract input asks its
*shape rule* (``Primitive.def_abstract``), declared beside its other rules in its ops
family, for the shape and dtype of its result. A rule receives the primitive's arguments
(abstract values, concrete arrays or Python numbers) and parameters, and returns a
``ShapeDtypeStruct`` (a tuple of them for a multi-output primitive). Rules compute no
array of the arguments' size; they may run the primitive's ``impl`` on one-element
stand-ins to learn NumPy's result dtype.

A primitive with no shape rule is run on *stand-ins*: read-only arrays of the right shape
and dtype with zero strides (see ``standin``). A stand-in costs no memory, but that
primitive's result is computed and then dropped: the Staging page lists the primitives
this applies to.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np


class ShapeDtypeStruct:
    """The shape and dtype of an array, with no data (``jax.ShapeDtypeStruct``).

    >>> import numpy as np, funcflux as ff
    >>> ff.ShapeDtypeStruct((2, 3), np.float32)
    ShapeDtypeStruct(shape=(2, 3), dtype=float32)
    """

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: Any, dtype: Any):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __eq__(self, other: Any) -> bool:
        return (type(other) is ShapeDtypeStruct and self.shape == other.shape
                and self.dtype == other.dtype)

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype))

    def __repr__(self) -> str:
        return f"ShapeDtypeStruct(shape={self.shape}, dtype={self.dtype.name})"


def abstract_of(x: Any) -> ShapeDtypeStruct:
    """The shape and dtype of an array, a NumPy scalar or a Python number."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return ShapeDtypeStruct(x.shape, x.dtype)
    return ShapeDtypeStruct((), np.asarray(x).dtype)


def standin(a: ShapeDtypeStruct) -> Any:
    """A read-only, zero-stride NumPy array of ``a``'s shape and dtype (no memory)."""
    s = a.shape
    if a.dtype.kind in "biu":  # indices and masks: zeros are valid for any length
        base = np.zeros((), a.dtype)
    elif len(s) >= 2 and 0 < s[-1] * s[-2] <= _MATRIX:
        # a diagonal matrix with distinct entries 1, 2, ...: invertible, positive definite,
        # with distinct eigen- and singular values, so factorisations and their checks pass
        base = np.zeros(s[-2:], a.dtype)
        k = min(s[-2:])
        base[np.arange(k), np.arange(k)] = np.arange(1, k + 1)
    else:
        base = np.ones((), a.dtype)
    return np.broadcast_to(base, s)


_MATRIX = 1 << 20  # the largest matrix a stand-in holds (larger ones are all ones)


def _one(x: Any) -> Any:
    """A one-element stand-in with ``x``'s dtype (Python numbers stay as they are, so
    NumPy's promotion treats them as weak, as it does on the real values)."""
    if type(x) is ShapeDtypeStruct or hasattr(x, "dtype"):
        return np.ones((), x.dtype)
    return x


def elementwise(impl: Callable[..., Any]) -> Callable[..., ShapeDtypeStruct]:
    """The shape rule of an elementwise (broadcasting) primitive computed by ``impl``:
    the broadcast shape of the arguments, and the dtype ``impl`` gives on one element."""
    def rule(*args: Any, **params: Any) -> ShapeDtypeStruct:
        shape = np.broadcast_shapes(*[tuple(getattr(a, "shape", ())) for a in args])
        with np.errstate(all="ignore"):
            out = impl(*[_one(a) for a in args], **params)
        return ShapeDtypeStruct(shape, np.asarray(out).dtype)
    return rule


def reduced_shape(shape: tuple, axis: Any, keepdims: bool) -> tuple:
    """``shape`` reduced over ``axis`` (``None`` or a tuple of non-negative ints)."""
    n = len(shape)
    axes = range(n) if axis is None else {a % n for a in axis}
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def reduction(impl: Callable[..., Any]) -> Callable[..., ShapeDtypeStruct]:
    """The shape rule of ``impl(x, axis=, keepdims=)``: the reduced shape, and the dtype
    ``impl`` gives on a one-element array of ``x``'s rank."""
    def rule(x: Any, axis: Any, keepdims: bool, **params: Any) -> ShapeDtypeStruct:
        with np.errstate(all="ignore"):
            out = impl(np.ones((1,) * len(x.shape), x.dtype), axis=axis, keepdims=keepdims,
                       **params)
        return ShapeDtypeStruct(reduced_shape(tuple(x.shape), axis, keepdims),
                                np.asarray(out).dtype)
    return rule
