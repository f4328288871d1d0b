"""Sliding windows for convolution and pooling: the primitives ``patches`` (im2col) and ``col2im``.

Their signatures for users (``patches`` and ``col2im``, normalising kernel, stride
and dilation) are in the surface's ``numpy/_patches.py``.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from .common import ndim
from .base import move_bdim
from .common import shape as _shape

__all__ = ["patches_p", "col2im_p"]

# Sliding windows for convolution and pooling.
#
# ``patches`` gathers every window of the trailing ``k`` axes (im2col): for an input
# ``(..., H, W)`` and kernel ``(kh, kw)`` it returns ``(..., kh, kw, OH, OW)`` with
# ``out[..., i, j, p, q] = x[..., i*dh + p*sh, j*dw + q*sw]``. A convolution is then one
# matmul, and pooling one reduction over the kernel axes. It is linear; its transpose
# ``col2im`` adds each window back where it came from, and the transpose of that is
# ``patches`` again, so every derivative of a convolution, of any order and under vmap,
# is made of these two and matmul. Leading axes are left alone, which is the whole
# batching rule: move the vmapped axis among them. ``kernel_first=True`` puts the
# kernel axes in front instead, ``(kh, kw, ..., OH, OW)``: NumPy reduces over leading
# axes several times faster, which is what pooling does.
#
# Two primitives for speed: a strided view and one copy (im2col), and kh*kw strided
# slice-adds (col2im), each vectorised over everything but the kernel offsets.


def _out_size(n: int, k: int, s: int, d: int) -> int:
    return (n - d * (k - 1) - 1) // s + 1


@functools.lru_cache(maxsize=256)
def _view_geometry(shape: tuple, strides: tuple, kernel: tuple, stride: tuple,
                   dilation: tuple, kernel_first: bool) -> tuple:
    """Shape and byte strides of the windows view of an array with ``shape`` and ``strides``."""
    k = len(kernel)
    sp, sst = shape[-k:], strides[-k:]
    out = tuple(_out_size(n, kk, s, d) for n, kk, s, d in zip(sp, kernel, stride, dilation))
    kst = tuple(a * d for a, d in zip(sst, dilation))
    ost = tuple(a * s for a, s in zip(sst, stride))
    if kernel_first:
        return kernel + shape[:-k] + out, kst + strides[:-k] + ost
    return shape[:-k] + kernel + out, strides[:-k] + kst + ost


def _patches_impl(x: Any, kernel: tuple, stride: tuple, dilation: tuple, kernel_first: bool
                  ) -> Any:
    xp = array_module(x)
    shape, strides = _view_geometry(x.shape, x.strides, kernel, stride, dilation, kernel_first)
    if xp is np and x.flags.c_contiguous:  # the ndarray constructor: as_strided checks far more
        view = np.ndarray(shape, x.dtype, x, 0, strides)
    else:
        view = xp.lib.stride_tricks.as_strided(x, shape, strides)
    return xp.ascontiguousarray(view)


@functools.lru_cache(maxsize=256)
def _col2im_plan(shape: tuple, kernel: tuple, stride: tuple, dilation: tuple, out_sp: tuple,
                 kernel_first: bool) -> tuple:
    """Whether the result can start empty, and per kernel offset: (target, source, add?)."""
    k = len(kernel)
    # Windows that do not overlap are assigned rather than added; when they also
    # leave no gaps the result needs no zeros first.
    disjoint = all(d * (kk - 1) < s for kk, s, d in zip(kernel, stride, dilation))
    tiles = disjoint and all(kk == s and n == s * o
                             for kk, s, n, o in zip(kernel, stride, shape, out_sp))
    steps = []
    for off in np.ndindex(*kernel):
        where = (Ellipsis,) + tuple(slice(i * d, i * d + s * (o - 1) + 1, s)
                                    for i, s, d, o in zip(off, stride, dilation, out_sp))
        part = off if kernel_first else (Ellipsis,) + off + (slice(None),) * k
        # The first offset writes into zeros, so it can assign too.
        steps.append((where, part, not disjoint and any(off)))
    return tiles, tuple(steps)


def _col2im_impl(c: Any, shape: tuple, kernel: tuple, stride: tuple, dilation: tuple,
                 kernel_first: bool) -> Any:
    xp = array_module(c)
    k = len(kernel)
    lead = c.shape[k:-k] if kernel_first else c.shape[:-2 * k]
    tiles, steps = _col2im_plan(shape, kernel, stride, dilation, c.shape[-k:], kernel_first)
    out = (xp.empty if tiles else xp.zeros)(lead + shape, dtype=c.dtype)
    for where, part, add in steps:
        if add:
            out[where] += c[part]
        else:
            out[where] = c[part]
    return out


def _patches_batch(args: list, dims: list, kernel: tuple, **p: Any) -> tuple:
    out = patches_p(move_bdim(args[0], dims[0], 0), kernel=kernel, **p)
    return out, len(kernel) if p["kernel_first"] else 0


def _col2im_batch(args: list, dims: list, kernel: tuple, **p: Any) -> tuple:
    to = len(kernel) if p["kernel_first"] else 0  # the batch axis goes among the leading axes
    return col2im_p(move_bdim(args[0], dims[0], to), kernel=kernel, **p), 0


patches_p = primitive("patches", _patches_impl)
col2im_p = primitive("col2im", _col2im_impl)
patches_p.def_abstract(lambda x, kernel, stride, dilation, kernel_first: abstract.ShapeDtypeStruct(
    _view_geometry(_shape(x), (0,) * ndim(x), kernel, stride, dilation, kernel_first)[0],
    x.dtype))
col2im_p.def_abstract(lambda c, shape, kernel, stride, dilation, kernel_first:
                      abstract.ShapeDtypeStruct((_shape(c)[len(kernel):-len(kernel)] if kernel_first
                                                 else _shape(c)[:-2 * len(kernel)]) + shape,
                                                c.dtype))
patches_p.def_linear(lambda ct, ans, x, kernel, **p: col2im_p(
    ct, shape=_shape(x)[ndim(x) - len(kernel):], kernel=kernel, **p))
col2im_p.def_linear(lambda ct, ans, c, shape, **p: patches_p(ct, **p))
patches_p.def_batch(_patches_batch)
col2im_p.def_batch(_col2im_batch)
