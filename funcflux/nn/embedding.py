"""Positional embeddings: a learned table (``PositionalEmbedding``) and Vaswani et al.'s sinusoids.

Both *add* a ``(L, dim)`` table to a batch-first input ``(N, L, dim)`` (or one
sequence ``(L, dim)``): position ``p`` of every sequence gets row ``p``. Token
embeddings come from ``nn.Embedding``; a transformer's input is
``pos(embed(ids))``.

>>> import numpy as np
>>> from funcflux import nn
>>> ids = np.array([[3, 1, 4], [1, 5, 9]])
>>> x = nn.Embedding(10, 8, rng=0)(ids)                       # (2, 3, 8)
>>> nn.PositionalEmbedding(16, 8, rng=1)(x).shape, nn.SinusoidalPositionalEmbedding(8)(x).shape
((2, 3, 8), (2, 3, 8))
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..functors import functor
from ..ops.common import shape as _shape
from .base import Module, array_module_of, as_rng, shape_error
from .init import normal

__all__ = ["PositionalEmbedding", "SinusoidalPositionalEmbedding", "sinusoidal_embedding"]


def sinusoidal_embedding(length: int, dim: int, *, base: float = 10000.0,
                         dtype: Any = np.float32) -> np.ndarray:
    """The ``(length, dim)`` table of "Attention is all you need" (Vaswani et al., 2017, §3.5).

    ``table[p, 2i] = sin(p / base**(2i / dim))`` and
    ``table[p, 2i + 1] = cos(p / base**(2i / dim))``: sines and cosines interleaved,
    wavelengths from ``2π`` to ``2π * base``. An odd ``dim`` ends with a sine column.
    Computed in float64, returned in ``dtype``.

    >>> sinusoidal_embedding(3, 4).round(4)
    array([[ 0.    ,  1.    ,  0.    ,  1.    ],
           [ 0.8415,  0.5403,  0.01  ,  1.    ],
           [ 0.9093, -0.4161,  0.02  ,  0.9998]], dtype=float32)
    """
    length, dim = int(length), int(dim)
    if length < 0 or dim < 1:
        raise ValueError(f"sinusoidal_embedding: need length >= 0 and dim >= 1, got "
                         f"length={length}, dim={dim}")
    pos = np.arange(length, dtype=np.float64)[:, None]
    freq = float(base) ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)  # one per pair
    angle = pos * freq                                                     # (length, ceil(dim/2))
    table = np.empty((length, dim), np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : dim // 2])
    return table.astype(dtype)


def _check(layer: Any, x: Any, dim: int, max_len: int | None) -> int:
    """The sequence length ``L`` of ``x`` (``(..., L, dim)``), or a shape error."""
    s = _shape(x)
    if len(s) < 2 or s[-1] != dim:
        raise shape_error(layer, x, f"(N, L, {dim}) or (L, {dim})")
    if max_len is not None and s[-2] > max_len:
        raise ValueError(f"{layer._repr_inner()} got a sequence of length {s[-2]} (input of "
                         f"shape {s}); it holds positions 0..{max_len - 1}: build it with "
                         f"max_len >= {s[-2]}, or feed shorter sequences")
    return int(s[-2])


@functor("weight")
class PositionalEmbedding(Module):
    """A learned position table added to the input: ``x + weight[:L]`` for ``x`` of shape
    ``(..., L, dim)``.

    ``weight`` is ``(max_len, dim)``, drawn from ``N(0, 0.02²)`` by default (GPT-2's
    choice; ``init=`` takes any initialiser). Sequences longer than ``max_len`` are
    an error.

    >>> import numpy as np
    >>> pe = PositionalEmbedding(4, 2, init=lambda rng, shape, dtype: np.arange(8.0).reshape(shape))
    >>> pe
    PositionalEmbedding(4 => 2)  # 8 parameters, 0.062 KiB
    >>> pe(np.zeros((1, 3, 2))).tolist()
    [[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]]
    """

    _ndims = {"weight": 2}

    def __init__(self, max_len: int, dim: int, *, init: Callable = normal(0.02),
                 dtype: Any = np.float32, rng: Any = None):
        self.weight = init(as_rng(rng), (int(max_len), int(dim)), dtype)
        self._freeze()

    def __call__(self, x: Any) -> Any:
        max_len, dim = self.weight.shape[-2:]
        L = _check(self, x, dim, max_len)
        return x + self.weight[:L]

    def _repr_inner(self) -> str:
        max_len, dim = self.weight.shape[-2:]
        return f"PositionalEmbedding({max_len} => {dim})"


@functor(children=())
class SinusoidalPositionalEmbedding(Module):
    """``x + sinusoidal_embedding(L, dim)`` for ``x`` of shape ``(..., L, dim)``: fixed, no
    parameters, any length.

    The table is computed on each call in the input's dtype (for float inputs) on the
    input's device; ``base`` is Vaswani et al.'s 10,000.

    >>> import numpy as np
    >>> SinusoidalPositionalEmbedding(4)(np.zeros((2, 3, 4), np.float32))[1, 1].round(4)
    array([0.8415, 0.5403, 0.01  , 1.    ], dtype=float32)
    """

    def __init__(self, dim: int, *, base: float = 10000.0):
        self.dim = int(dim)
        self.base = float(base)
        self._freeze()

    def __call__(self, x: Any) -> Any:
        L = _check(self, x, self.dim, None)
        dtype = getattr(x, "dtype", np.dtype(np.float64))
        dtype = dtype if np.dtype(dtype).kind == "f" else np.float32
        table = sinusoidal_embedding(L, self.dim, base=self.base, dtype=dtype)
        xp = array_module_of(x)
        return x + (table if xp is np else xp.asarray(table))

    def _repr_inner(self) -> str:
        base = "" if self.base == 10000.0 else f", base={self.base:g}"
        return f"SinusoidalPositionalEmbedding({self.dim}{base})"
