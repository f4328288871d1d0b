"""Sliding windows for convolution and pooling: ``patches`` (im2col) and ``col2im``."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np


from ..core.backend import array_module
from ..core.primitive import primitive
from .common import ndim
from .base import move_bdim
from .common import shape as _shape
from .reductions import _arr

__all__ = ["patches", "col2im"]

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

WINDOWS_TOO_BIG = ("{fn}: a window of {span} (kernel {kernel}, dilation {dilation}) does not "
                   "fit in the input's trailing axes {spatial}")


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
patches_p.def_linear(lambda ct, ans, x, kernel, **p: col2im_p(
    ct, shape=_shape(x)[ndim(x) - len(kernel):], kernel=kernel, **p))
col2im_p.def_linear(lambda ct, ans, c, shape, **p: patches_p(ct, **p))
patches_p.def_batch(_patches_batch)
col2im_p.def_batch(_col2im_batch)


def _tuple(v: Any, k: int, what: str, fn: str) -> tuple:
    t = (int(v),) * k if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)
    if len(t) != k or any(a < 1 for a in t):
        raise ValueError(f"{fn}: {what} must be a positive int or a tuple of {k} positive ints, "
                         f"got {v!r}")
    return t


def _window_params(fn: str, kernel: Any, stride: Any, dilation: Any) -> tuple:
    try:
        return _window_params_cached(fn, kernel, stride, dilation)
    except TypeError:  # unhashable (a list): normalise without the cache
        return _window_params_cached.__wrapped__(fn, kernel, stride, dilation)


@functools.lru_cache(maxsize=256)
def _window_params_cached(fn: str, kernel: Any, stride: Any, dilation: Any) -> tuple:
    kernel = (int(kernel),) if isinstance(kernel, (int, np.integer)) else tuple(kernel)
    k = len(kernel)
    return (_tuple(kernel, k, "kernel", fn), _tuple(stride, k, "stride", fn),
            _tuple(dilation, k, "dilation", fn))


def patches(x: Any, kernel: Any, stride: Any = 1, dilation: Any = 1, *,
            kernel_first: bool = False) -> Any:
    """Every window of the trailing ``len(kernel)`` axes (im2col): ``(..., *kernel, *out)``.

    ``out[..., i, j, p, q] = x[..., i*dilation + p*stride, j*dilation + q*stride]``
    (per axis); ``out`` is the number of whole windows that fit. With
    ``kernel_first=True`` the kernel axes come first, ``(*kernel, ..., *out)``,
    which makes reductions over them (pooling) several times faster in NumPy.
    Linear; the transpose is :func:`col2im`.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.patches(np.arange(5.0), 2, stride=2)
    array([[0., 2.],
           [1., 3.]])
    """
    x = _arr(x)
    kernel, stride, dilation = _window_params("patches", kernel, stride, dilation)
    k = len(kernel)
    s = _shape(x)
    if len(s) < k or any(d * (kk - 1) + 1 > n for kk, d, n in zip(kernel, dilation, s[len(s) - k:])):
        raise ValueError(WINDOWS_TOO_BIG.format(
            fn="patches", span=tuple(d * (kk - 1) + 1 for kk, d in zip(kernel, dilation)),
            kernel=kernel, dilation=dilation, spatial=s[max(len(s) - k, 0):]))
    return patches_p(x, kernel=kernel, stride=stride, dilation=dilation,
                     kernel_first=bool(kernel_first))


def col2im(cols: Any, shape: Any, stride: Any = 1, dilation: Any = 1, *,
           kernel_first: bool = False) -> Any:
    """Add windows ``(..., *kernel, *out)`` back into an array ``(..., *shape)``.

    The transpose of :func:`patches`.

    ``shape`` is the trailing shape of the result; the kernel is read off
    ``cols`` (its first axes with ``kernel_first=True``, as :func:`patches`
    lays them out). Where windows overlap their values add up.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.col2im(np.ones((2, 2)), (3,))
    array([1., 2., 1.])
    """
    cols = _arr(cols)
    sp = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    k = len(sp)
    s = _shape(cols)
    if len(s) < 2 * k:
        raise ValueError(f"col2im: cols of shape {s} has too few axes for {k} kernel and {k} "
                         f"window axes")
    kernel = s[:k] if kernel_first else s[len(s) - 2 * k:len(s) - k]
    _, stride, dilation = _window_params("col2im", kernel, stride, dilation)
    want = tuple(_out_size(n, kk, st, d) for n, kk, st, d in zip(sp, kernel, stride, dilation))
    if s[len(s) - k:] != want:
        raise ValueError(f"col2im: windows {s[len(s) - k:]} do not match shape {sp} with kernel "
                         f"{kernel}, stride {stride}, dilation {dilation} (which give {want})")
    return col2im_p(cols, shape=sp, kernel=kernel, stride=stride, dilation=dilation,
                    kernel_first=bool(kernel_first))
