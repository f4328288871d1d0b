"""Sampled signals: the one primitive they need, ``searchsorted``.

``linspace``, ``diff``, ``ediff1d``, ``gradient``, ``convolve``, ``correlate``
and ``interp`` (NumPy's signatures, in the surface's ``numpy/_signal.py``) are
compositions of slices, products, ``concatenate``, a static gather and ``matmul``,
so every derivative of every order, forward and reverse, and batching come from
the primitives they use. The one primitive here is ``searchsorted`` (integer
output, no derivative): ``interp`` needs the interval of each query point.
"""
from __future__ import annotations

from ..core.backend import array_module
from ..core.primitive import primitive
from .base import broadcast_to, move_bdim
from .common import shape
from .indexing import getitem
from .shape import stack

__all__ = ["searchsorted_p"]

searchsorted_p = primitive("searchsorted", lambda a, v, side: array_module(a, v).searchsorted(
    a, v, side=side), nondiff=True)


def _searchsorted_batch(args: list, dims: list, side: str) -> tuple:
    a, v = args
    da, dv = dims
    if da is None:
        return searchsorted_p(a, v, side=side), dv
    a = move_bdim(a, da, 0)
    nb = shape(a)[0]
    v = move_bdim(v, dv, 0) if dv is not None else broadcast_to(v, (nb,) + shape(v))
    return stack([searchsorted_p(getitem(a, i), getitem(v, i), side=side)
                  for i in range(nb)]), 0


searchsorted_p.def_batch(_searchsorted_batch)
