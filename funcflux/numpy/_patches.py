"""The surface of the sliding-window primitives: ``patches`` (im2col) and ``col2im``.

Both normalise the kernel, stride and dilation and check that the windows fit,
then bind ``patches_p`` or ``col2im_p`` (``funcflux/ops/patches.py``).
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..ops.common import shape as _shape
from ..ops.patches import _out_size, col2im_p, patches_p
from ..ops.common import as_array as _arr

__all__ = ["patches", "col2im"]

WINDOWS_TOO_BIG = ("{fn}: a window of {span} (kernel {kernel}, dilation {dilation}) does not "
                   "fit in the input's trailing axes {spatial}")


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
