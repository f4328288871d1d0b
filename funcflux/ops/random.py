"""Counter-based random bits: the Threefry-2x32 hash as one primitive.

``threefry2x32_p(key, count)`` hashes the 64-bit counter ``(0, count)`` under the
64-bit ``key`` with Threefry-2x32 (20 rounds; Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3", SC 2011), the bit generator of ``jax.random``. A key
is a ``uint32`` array whose last axis has length 2; ``count`` is a ``uint32`` array;
both broadcast over their leading axes (the key's pair axis set aside), and the
result is a key-shaped ``uint32`` array ``broadcast(key.shape[:-1], count.shape) +
(2,)`` holding the two output words. Everything in ``funcflux.random`` is this hash
plus ordinary arithmetic: ``split(key, n)`` hashes the counters ``0..n-1``,
``fold_in(key, d)`` the counter ``d``, and the random bits of a draw of shape ``S``
are the two words of the counters ``0..prod(S)-1`` xor-ed together (JAX's
``jax_threefry_partitionable`` layout).

The impl is written with the array module of its inputs (uint32 additions wrap, as
the hash needs), so it runs on NumPy, CuPy and the test suite's strict stand-in.
It is vectorised over the leading axes, so the batching rule only aligns the batch
axes at the front: a batch of keys under ``vmap`` hashes each member's key, an
unbatched key is shared by every member. The outputs are integers: the primitive is
``nondiff``; derivatives of random draws (``uniform``'s ``minval``/``maxval``, a
normal's scale) flow through the arithmetic composed on top in ``funcflux.random``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from .base import move_bdim, reshape_p
from .common import ndim, shape

__all__ = ["threefry2x32_p", "threefry2x32"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)  # Threefry's key-schedule constant


def _hash(xp: Any, k0: Any, k1: Any, count: Any) -> tuple[Any, Any]:
    """Threefry-2x32, 20 rounds, of the counters ``(0, count)``: 1-d uint32 arrays of one
    length (1-d: NumPy warns on wrapping scalars, never on arrays). In place on two fresh
    arrays and one scratch array: the hash is memory-bound, and this saves a fifth of it."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = xp.zeros(count.shape, dtype=np.uint32)
    x0 += ks[0]
    x1 = count + ks[1]
    t = xp.empty_like(x1)
    for i in range(5):  # five groups of four rounds, a key injection after each
        for r in _ROTATIONS[i % 2]:
            x0 += x1
            xp.left_shift(x1, np.uint32(r), out=t)  # x1 = rotl(x1, r) ^ x0
            xp.right_shift(x1, np.uint32(32 - r), out=x1)
            x1 |= t
            x1 ^= x0
        x0 += ks[(i + 1) % 3]
        x1 += ks[(i + 2) % 3]
        x1 += np.uint32(i + 1)
    return x0, x1


def _threefry_impl(key: Any, count: Any) -> Any:
    xp = array_module(key, count)
    for name, v in (("key", key), ("count", count)):
        if v.dtype != np.uint32:
            raise TypeError(f"threefry2x32: {name} must be uint32, got {v.dtype}")
    if key.shape[-1:] != (2,):
        raise ValueError(f"threefry2x32: key must have a last axis of length 2, got shape "
                         f"{key.shape}")
    lead = np.broadcast_shapes(key.shape[:-1], count.shape)
    n = int(np.prod(lead))
    k0 = xp.broadcast_to(key[..., 0], lead).reshape(n)
    k1 = xp.broadcast_to(key[..., 1], lead).reshape(n)
    y0, y1 = _hash(xp, k0, k1, xp.broadcast_to(count, lead).reshape(n))
    return xp.stack([y0, y1], axis=-1).reshape(lead + (2,))


def _threefry_batch(args: list, dims: list) -> tuple[Any, int]:
    key, count = args
    dk, dc = dims
    nk = ndim(key) - 1 - (dk is not None)  # the key's leading axes, pair and batch axes aside
    nc = ndim(count) - (dc is not None)
    lead = max(nk, nc)
    out = []
    for x, d, n in ((key, dk, nk), (count, dc, nc)):
        if d is not None:  # batch axis first, then ones so the other axes align on the right
            x = move_bdim(x, d, 0)
            s = shape(x)
            if n < lead:
                x = reshape_p(x, shape=(s[0],) + (1,) * (lead - n) + s[1:])
        out.append(x)
    return threefry2x32_p(*out), 0


# A primitive for speed and exactness: the hash is 80 integer operations on whole arrays.
threefry2x32_p = primitive("threefry2x32", _threefry_impl, nondiff=True)
threefry2x32_p.def_batch(_threefry_batch)
threefry2x32_p.def_abstract(lambda key, count: abstract.ShapeDtypeStruct(
    np.broadcast_shapes(shape(key)[:-1], shape(count)) + (2,), np.uint32))


def threefry2x32(key: Any, count: Any) -> Any:
    """The Threefry-2x32 hash of counters ``(0, count)`` under ``key``: ``(..., 2)`` uint32."""
    return threefry2x32_p(key, count)
