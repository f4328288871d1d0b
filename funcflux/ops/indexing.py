"""Indexing: ``getitem`` and its transpose, a scatter-add into zeros.

Basic indices (ints, slices, ``None``, ``...``) are static parameters.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from .common import move_bdim, shape

__all__ = ["getitem"]


def _getitem_impl(x: Any, idx: Any) -> Any:
    return x[idx]


def _scatter_add_impl(ct: Any, shape: tuple, idx: Any) -> Any:
    xp = array_module(ct)
    z = xp.zeros(shape, dtype=ct.dtype)
    z[idx] = ct
    return z


getitem_p = primitive("getitem", _getitem_impl)
scatter_p = primitive("scatter_add", _scatter_add_impl)
getitem_p.def_linear(lambda ct, ans, x, idx: scatter_p(ct, shape=shape(x), idx=idx))
scatter_p.def_linear(lambda ct, ans, c, shape, idx: getitem_p(ct, idx=idx))
getitem_p.def_batch(lambda args, dims, idx: (
    getitem_p(move_bdim(args[0], dims[0], 0), idx=(slice(None),) + idx), 0))
scatter_p.def_batch(lambda args, dims, shape, idx: (
    scatter_p(move_bdim(args[0], dims[0], 0), shape=(args[0].shape[dims[0]],) + shape,
              idx=(slice(None),) + idx), 0))


def getitem(x: Any, idx: Any) -> Any:
    """``x[idx]`` for basic indices."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    if any(i is Ellipsis for i in idx):
        k = idx.index(Ellipsis)
        n_real = len([i for i in idx if i is not None and i is not Ellipsis])
        idx = idx[:k] + (slice(None),) * (len(shape(x)) - n_real) + idx[k + 1:]
    return getitem_p(x, idx=idx)
