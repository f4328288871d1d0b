"""Linear algebra: ``matmul`` (bilinear) and the ``numpy.linalg`` functions."""
from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from .common import bdim_to_front, batch_size, ndim, shape, unbroadcast

__all__ = ["matmul"]

#: ``funcflux.numpy.linalg``: functions of ``numpy.linalg`` go here (``namespace.inv = inv``).
namespace = types.ModuleType("funcflux.numpy.linalg", "Traced versions of numpy.linalg functions.")
sys.modules[namespace.__name__] = namespace


def _matmul_vjp_x(ct: Any, ans: Any, x: Any, y: Any) -> Any:
    if ndim(y) == 1:
        return unbroadcast(fnp.multiply(fnp.expand_dims(ct, -1), y), x)
    if ndim(x) == 1:
        return unbroadcast(matmul_p(y, fnp.expand_dims(ct, -1))[..., 0], x) if ndim(y) > 2 else \
            matmul_p(y, ct)
    return unbroadcast(matmul_p(ct, fnp.swapaxes(y, -1, -2)), x)


def _matmul_vjp_y(ct: Any, ans: Any, x: Any, y: Any) -> Any:
    if ndim(x) == 1:
        return unbroadcast(fnp.multiply(fnp.expand_dims(x, -1), fnp.expand_dims(ct, -2)), y)
    if ndim(y) == 1:
        return unbroadcast(fnp.sum(x * fnp.expand_dims(ct, -1), axis=tuple(range(ndim(x) - 1))), y) \
            if ndim(x) == 2 else unbroadcast(matmul_p(fnp.swapaxes(x, -1, -2), fnp.expand_dims(ct, -1))[..., 0], y)
    return unbroadcast(matmul_p(fnp.swapaxes(x, -1, -2), ct), y)


matmul_p = primitive("matmul", lambda x, y: array_module(x, y).matmul(x, y))
matmul_p.def_linear(_matmul_vjp_x, _matmul_vjp_y)


def _matmul_batch(args: list, dims: list) -> tuple:
    x, y = args
    dx, dy = dims
    n = batch_size(args, dims)
    # Make every operand at least a matrix with the batch axis leading, then use matmul's
    # own broadcasting over leading axes.
    if dx is not None and ndim(x) == 2 and dy is None and ndim(y) >= 2:
        return matmul_p(fnp.moveaxis(x, dx, 0), y), 0   # (n, k) @ (k, m): batch rides as rows
    xv = x if dx is None else fnp.moveaxis(x, dx, 0)
    yv = y if dy is None else fnp.moveaxis(y, dy, 0)
    x1 = ndim(x) - (dx is not None) == 1
    y1 = ndim(y) - (dy is not None) == 1
    if x1:
        xv = fnp.expand_dims(xv, -2)
    if y1:
        yv = fnp.expand_dims(yv, -1)
    # Align the batch axis: an unbatched operand gets no leading axis; a batched one must sit
    # in front of as many leading axes as the other operand has.
    ndx, ndy = ndim(xv) - (dx is not None), ndim(yv) - (dy is not None)
    lead = max(ndx, ndy) - 2
    if dx is not None:
        s = shape(xv)
        xv = fnp.reshape(xv, (s[0],) + (1,) * (lead - (ndx - 2)) + s[1:])
    if dy is not None:
        s = shape(yv)
        yv = fnp.reshape(yv, (s[0],) + (1,) * (lead - (ndy - 2)) + s[1:])
    out = matmul_p(xv, yv)
    if x1:
        out = fnp.squeeze(out, -2)
    if y1:
        out = fnp.squeeze(out, -1)
    return out, 0


matmul_p.def_batch(_matmul_batch)


@fnp.implements(np.matmul)
def matmul(x1: Any, x2: Any) -> Any:
    """``x1 @ x2``."""
    if ndim(x1) == 0 or ndim(x2) == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    return matmul_p(x1, x2)


fnp.implements_ufunc(np.matmul, matmul)
