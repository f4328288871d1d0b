"""Resampling layers: Upsample (nearest, linear, bilinear, trilinear) and PixelShuffle.

Both follow PyTorch's arithmetic on ``(N, C, *spatial)`` inputs. ``Upsample``
resizes one spatial axis at a time (interpolation on a grid is separable): a
gather of the source indices for ``"nearest"``, two gathers and a weighted sum
for the linear modes, so derivatives of any order and ``vmap`` come from
``take``, ``*`` and ``+``. ``PixelShuffle`` is a reshape and a transpose.

>>> import numpy as np
>>> from funcflux import nn
>>> nn.Upsample(2)(np.array([[[1.0, 2.0]]]))
array([[[1., 1., 2., 2.]]])
>>> nn.PixelShuffle(2)(np.zeros((1, 8, 3, 3))).shape
(1, 2, 6, 6)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import numpy as fnp
from ..functors import functor
from .base import Module, array_module_of, shape_error
from ..ops.common import shape as _shape

__all__ = ["Upsample", "PixelShuffle"]

MODES = {"nearest": None, "linear": 1, "bilinear": 2, "trilinear": 3}
_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}


def _sizes(v: Any, what: str, cast: Any) -> Any:
    """``None``, a number, or a tuple of positive numbers (one per spatial axis)."""
    if v is None:
        return None
    t = cast(v) if np.ndim(v) == 0 else tuple(cast(a) for a in v)
    if any(a <= 0 for a in (t if isinstance(t, tuple) else (t,))) or t == ():
        raise ValueError(f"Upsample: {what} must be positive (a number or one per spatial "
                         f"axis), got {v!r}")
    return t


def _source_index(n: int, out: int, ratio: float, mode: str, align_corners: bool) -> tuple:
    """For each output position along an axis of length ``n``: ``(i0, i1, w1)``, the two
    source indices and the weight of the second (PyTorch's source-index arithmetic)."""
    d = np.arange(out, dtype=np.float64)
    if mode == "nearest":  # PyTorch's legacy "nearest": floor(dst * scale)
        i0 = np.minimum(np.floor(d * ratio).astype(np.int64), n - 1)
        return i0, None, None
    if align_corners:
        src = d * ((n - 1) / (out - 1) if out > 1 else 0.0)
    else:  # half-pixel centres, clamped at the first pixel
        src = np.maximum(ratio * (d + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, src - i0


def _along(v: np.ndarray, x: Any, axis: int, dtype: Any) -> Any:
    """``v`` (one entry per position of ``axis``) shaped to broadcast against ``x``."""
    xp = array_module_of(x)
    return xp.asarray(v.astype(dtype).reshape(v.shape + (1,) * (len(_shape(x)) - axis - 1)))


@functor(children=())
class Upsample(Module):
    """Resize the spatial axes of ``(N, C, *spatial)`` by ``scale_factor`` or to ``size``.

    ``mode``: ``"nearest"`` (any number of spatial axes), ``"linear"`` (1-D),
    ``"bilinear"`` (2-D), ``"trilinear"`` (3-D). Give exactly one of
    ``scale_factor`` (a number or one per axis; output ``floor(n * scale)``) and
    ``size`` (an int or one per axis). The number of spatial axes comes from a
    tuple ``size``/``scale_factor`` or from the linear mode's name; otherwise
    (``"nearest"`` with a number) every axis after the first two is spatial.
    With that number known, single examples ``(C, *spatial)`` work too.

    Source positions follow PyTorch's ``interpolate``: ``"nearest"`` takes
    ``floor(i * scale)``; the linear modes use half-pixel centres,
    ``(i + 0.5) * scale - 0.5`` clamped at 0 (PyTorch's ``align_corners=False``,
    the default here; Flux/NNlib's bilinear default is ``align_corners=True``,
    which aligns the corner pixels: ``i * (n - 1) / (out - 1)``). ``scale`` is
    ``1 / scale_factor`` when a scale factor is given, ``n / out`` for a size.

    >>> import numpy as np
    >>> Upsample(2, mode="linear")(np.array([[[1.0, 2.0]]]))
    array([[[1.  , 1.25, 1.75, 2.  ]]])
    >>> Upsample(size=(4, 6), mode="bilinear")(np.zeros((1, 3, 2, 3))).shape
    (1, 3, 4, 6)
    """

    def __init__(self, scale_factor: Any = None, *, size: Any = None, mode: str = "nearest",
                 align_corners: bool = False):
        if mode not in MODES:
            raise ValueError(f"Upsample: mode must be one of {', '.join(map(repr, MODES))}; got "
                             f"{mode!r}")
        if (scale_factor is None) == (size is None):
            raise ValueError("Upsample: give exactly one of scale_factor and size")
        if align_corners and mode == "nearest":
            raise ValueError("Upsample: align_corners only applies to the linear modes, not "
                             "'nearest'")
        self.scale_factor = _sizes(scale_factor, "scale_factor", float)
        self.size = _sizes(size, "size", int)
        self.mode = mode
        self.align_corners = bool(align_corners)
        given = self.size if self.size is not None else self.scale_factor
        nd = MODES[mode]
        if isinstance(given, tuple):
            if nd is not None and len(given) != nd:
                raise ValueError(f"Upsample: mode {mode!r} resizes {nd} spatial axes, but "
                                 f"{'size' if size is not None else 'scale_factor'} {given!r} "
                                 f"has {len(given)}")
            nd = len(given)
        self.spatial_dims = nd
        self._freeze()

    def _check(self, x: Any) -> tuple:
        s = _shape(x)
        nd = self.spatial_dims
        if nd is None:
            if len(s) < 3:
                raise shape_error(self, x, "(N, C, *spatial) with at least one spatial axis")
        elif len(s) not in (nd + 1, nd + 2):
            sp = _SPATIAL[nd] if nd in _SPATIAL else f"{nd} spatial axes"
            raise shape_error(self, x, f"(N, C, {sp}) or (C, {sp})")
        return s

    def __call__(self, x: Any) -> Any:
        s = self._check(x)
        nd = self.spatial_dims or len(s) - 2
        first = len(s) - nd
        per = lambda v: v if isinstance(v, tuple) else (v,) * nd  # noqa: E731
        dt = np.dtype(getattr(x, "dtype", np.float64))
        wdt = dt if dt.kind == "f" else np.float64
        for k in range(nd):
            axis, n = first + k, s[first + k]
            if self.size is not None:
                out = per(self.size)[k]
                ratio = n / out
            else:
                f = per(self.scale_factor)[k]
                out, ratio = int(math.floor(n * f)), 1.0 / f
            if out < 1:
                raise shape_error(self, x, f"a larger input: axis {axis} would have size {out}")
            i0, i1, w1 = _source_index(n, out, ratio, self.mode, self.align_corners)
            xp = array_module_of(x)
            a = fnp.take(x, xp.asarray(i0), axis=axis)
            if i1 is None:
                x = a
            else:
                b = fnp.take(x, xp.asarray(i1), axis=axis)
                x = a * _along(1.0 - w1, a, axis, wdt) + b * _along(w1, a, axis, wdt)
        return x

    def _repr_inner(self) -> str:
        arg = (f"size={self.size!r}" if self.size is not None else
               f"{self.scale_factor:g}" if not isinstance(self.scale_factor, tuple) else
               f"{tuple(float(f) for f in self.scale_factor)!r}")
        mode = "" if self.mode == "nearest" else f", mode={self.mode!r}"
        return f"Upsample({arg}{mode}{', align_corners=True' if self.align_corners else ''})"


@functor(children=())
class PixelShuffle(Module):
    """Rearrange ``(N, C * r**2, H, W)`` into ``(N, C, H * r, W * r)`` (PyTorch's order).

    ``out[n, c, h * r + i, w * r + j] = x[n, c * r * r + i * r + j, h, w]``: each
    block of ``r * r`` channels becomes an ``r`` by ``r`` patch (sub-pixel
    convolution). Single images ``(C * r**2, H, W)`` work too.

    >>> import numpy as np
    >>> PixelShuffle(2)(np.arange(4.0).reshape(1, 4, 1, 1))
    array([[[[0., 1.],
             [2., 3.]]]])
    """

    def __init__(self, upscale_factor: int):
        r = int(upscale_factor)
        if r < 1:
            raise ValueError(f"PixelShuffle: upscale_factor must be a positive int, got "
                             f"{upscale_factor!r}")
        self.upscale_factor = r
        self._freeze()

    def __call__(self, x: Any) -> Any:
        r = self.upscale_factor
        s = _shape(x)
        if len(s) not in (3, 4) or s[-3] % (r * r):
            raise shape_error(self, x, f"(N, C * {r * r}, H, W) or (C * {r * r}, H, W): "
                                       f"channels divisible by upscale_factor**2 = {r * r}")
        lead, (c, h, w) = s[:-3], s[-3:]
        k = len(lead)
        y = fnp.reshape(x, lead + (c // (r * r), r, r, h, w))
        y = fnp.transpose(y, tuple(range(k)) + (k, k + 3, k + 1, k + 4, k + 2))
        return fnp.reshape(y, lead + (c // (r * r), h * r, w * r))

    def _repr_inner(self) -> str:
        return f"PixelShuffle({self.upscale_factor})"
