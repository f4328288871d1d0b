"""``nn.outputsize``: the shape a model gives for an input shape, computing nothing."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import tree
from ..transforms.staging import ShapeDtypeStruct, eval_shape

__all__ = ["outputsize"]


def outputsize(model: Any, *input_shapes: tuple, padbatch: bool = False,
               dtype: Any = np.float32) -> Any:
    """The shape of ``model(x)`` for ``x`` of shape ``input_shape`` (Flux's ``outputsize``).

    Built on :func:`funcflux.eval_shape`: no array of the input's size is made and no layer
    computes, so it is instant for any input size. ``padbatch=True`` puts a batch axis of
    length 1 in front of each shape (funcflux is batch-first, where Flux appends it).
    Several input shapes are passed to a model taking several inputs; a model returning a
    pytree gives a pytree of shapes.

    >>> from funcflux import nn
    >>> m = nn.Chain(nn.Conv((3, 3), 1, 8), nn.MaxPool((2, 2)), nn.Flatten(), nn.Dense(1352, 10))
    >>> nn.outputsize(m, (1, 28, 28), padbatch=True)
    (1, 10)
    """
    if not input_shapes:
        raise TypeError("outputsize: give the input shape, e.g. nn.outputsize(model, (32, 784))")
    for s in input_shapes:
        if not (isinstance(s, tuple) and all(isinstance(n, (int, np.integer)) for n in s)):
            raise TypeError(f"outputsize: an input shape is a tuple of ints, got {s!r}")
    xs = [ShapeDtypeStruct(((1,) if padbatch else ()) + s, dtype) for s in input_shapes]
    out = eval_shape(model, *xs)
    return tree.map(lambda a: a.shape, out)
