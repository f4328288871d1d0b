"""Convolution and pooling layers in 1, 2 or 3 spatial dimensions (NCL, NCHW, NCDHW).

The length of the kernel (or window) decides the number of spatial axes, as in
Flux: ``Conv((3,), 1, 4)`` is 1-D on ``(N, C, L)``, ``Conv((3, 3), ...)`` 2-D on
``(N, C, H, W)``, ``Conv((3, 3, 3), ...)`` 3-D on ``(N, C, D, H, W)``; an int
kernel means 2-D. Each layer is a composition of three primitives:
``fnp.patches`` gathers every window of the spatial axes (im2col), a
convolution is one ``matmul`` of the weight with those windows, and pooling is
one reduction over the kernel axes. ``ConvTranspose`` runs the same steps
backwards (a matmul, then ``fnp.col2im`` adds the windows back). Derivatives of
every order, forward mode and ``vmap`` all come from the rules of those
primitives.

Layers accept batches ``(N, C, *spatial)`` and also single examples
``(C, *spatial)``, so ``vmap`` over examples works. The global pools are the
exception: they reduce every axis after the first two (Flux's rule, for any
number of spatial axes), so they need the batch axis.

>>> import numpy as np
>>> from funcflux import nn
>>> model = nn.Chain(nn.Conv(3, 1, 8, nn.relu, rng=0), nn.MaxPool(2))
>>> model
Chain(Conv((3, 3), 1 => 8, relu), MaxPool((2, 2)))  # 80 parameters, 0.312 KiB
>>> model(np.zeros((5, 1, 28, 28), np.float32)).shape
(5, 8, 13, 13)
>>> nn.Conv((5,), 2, 4, rng=0)(np.zeros((5, 2, 100), np.float32)).shape
(5, 4, 96)
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import numpy as fnp
from ..functors import functor
from .activations import identity
from .base import Module, activation_name, array_module_of, as_rng, shape_error
from .init import glorot_uniform
from .layers import _bias
from ..ops.common import shape as _shape

__all__ = ["Conv", "ConvTranspose", "MaxPool", "MeanPool", "GlobalMaxPool", "GlobalMeanPool",
           "DepthwiseConv", "AdaptiveMaxPool", "AdaptiveMeanPool"]

SAME_NEEDS_STRIDE_1 = 'padding="same" needs stride 1 (got stride {stride})'
BAD_OUTPUT_PADDING = ("output_padding {op} must be smaller than the stride {stride} or the "
                      "dilation {dilation} in each axis")
BAD_GROUPS = ("{layer}: in_channels ({cin}) and out_channels ({cout}) must both be divisible by "
              "groups ({groups})")
BAD_WEIGHT = ("{fn}: weight of shape {shape} is not a {nd}-D kernel: give "
              "{layout} ({rank} axes)")


# ----------------------------------------------------------------------------- arguments
def _ntuple(v: Any, n: int, what: str, lo: int = 1) -> tuple:
    """``(v,) * n`` for an int, else ``v`` as a tuple of ints, checked to have ``n`` entries."""
    t = (int(v),) * n if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)
    if len(t) != n or any(a < lo for a in t):
        kind = "positive" if lo == 1 else "non-negative"
        raise ValueError(f"{what} must be a {kind} int or a tuple of {n} of them (one per "
                         f"spatial axis), got {v!r}")
    return t


def _kernel(v: Any, what: str) -> tuple:
    """A kernel or window size: an int means 2-D (``3 -> (3, 3)``), a tuple's length is the
    number of spatial axes (``(3,)`` is 1-D, ``(3, 3, 3)`` 3-D), as in Flux."""
    t = (int(v),) * 2 if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)
    if not t or any(a < 1 for a in t):
        raise ValueError(f"{what} must be a positive int (2-D) or a non-empty tuple of positive "
                         f"ints, one per spatial axis, got {v!r}")
    return t


def _short(t: tuple) -> Any:
    """``2`` for ``(2, 2)``: how options print."""
    return t[0] if len(set(t)) == 1 else t


def _pad_widths(padding: Any, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """``((before, after), ...)`` per spatial axis from an int, a tuple or ``"same"``."""
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f'padding must be an int, a tuple or "same", got {padding!r}')
        if any(s != 1 for s in stride):
            raise ValueError(SAME_NEEDS_STRIDE_1.format(stride=_short(stride)))
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in _ntuple(padding, len(kernel), "padding", lo=0))


def _pad_spatial(x: Any, widths: tuple, value: float = 0.0) -> Any:
    if not any(a or b for a, b in widths):
        return x
    lead = ((0, 0),) * (len(_shape(x)) - len(widths))
    return fnp.pad(x, lead + tuple(widths), constant_values=value)


def _check_weight(fn: str, weight: Any, nd: int, layout: str) -> Any:
    s = _shape(weight)
    if len(s) != nd + 2:
        raise ValueError(BAD_WEIGHT.format(fn=fn, shape=s, nd=nd, layout=layout, rank=nd + 2))
    return weight


# ----------------------------------------------------------------------------- functions
def _conv(x: Any, weight: Any, bias: Any, stride: tuple, widths: tuple, dilation: tuple,
          groups: int) -> Any:
    """Cross-correlation over the last ``weight.ndim - 2`` axes, arguments normalised."""
    ws = _shape(weight)
    o, cg, kernel = ws[0], ws[1], ws[2:]
    nd = len(kernel)
    p = fnp.patches(_pad_spatial(x, widths), kernel, stride, dilation)  # (..., C, *k, *out)
    s = _shape(p)
    lead, out = s[:len(s) - 2 * nd - 1], s[len(s) - nd:]
    k, m = cg * math.prod(kernel), math.prod(out)
    if groups == 1:
        y = fnp.matmul(fnp.reshape(weight, (o, k)), fnp.reshape(p, lead + (k, m)))
    else:  # one matmul for all groups: the group axis broadcasts like a batch axis
        y = fnp.matmul(fnp.reshape(weight, (groups, o // groups, k)),
                       fnp.reshape(p, lead + (groups, k, m)))
    y = fnp.reshape(y, lead + (o,) + out)
    return y if bias is None else y + fnp.reshape(bias, (o,) + (1,) * nd)


def _conv_fn(fn: str, nd: int, x: Any, weight: Any, bias: Any, stride: Any, padding: Any,
             dilation: Any, groups: int) -> Any:
    kernel = _shape(_check_weight(fn, weight, nd, "(out, in / groups, *kernel)"))[2:]
    stride, dilation = _ntuple(stride, nd, "stride"), _ntuple(dilation, nd, "dilation")
    return _conv(x, weight, bias, stride, _pad_widths(padding, kernel, stride, dilation),
                 dilation, int(groups))


def conv1d(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Any:
    """Cross-correlation of ``x`` ``(..., C, L)`` with ``weight`` ``(O, C/groups, k)``.

    The layer :class:`Conv` with a 1-D kernel, without its checks (PyTorch's ``F.conv1d``).

    >>> import numpy as np
    >>> conv1d(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 2)), padding=1)
    array([[[0., 1., 3., 5., 7., 4.]]])
    """
    return _conv_fn("conv1d", 1, x, weight, bias, stride, padding, dilation, groups)


def conv2d(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Any:
    """Cross-correlation of ``x`` ``(..., C, H, W)`` with ``weight`` ``(O, C/groups, kh, kw)``.

    The layer :class:`Conv` without its checks: pad, gather windows, one matmul.

    >>> import numpy as np
    >>> conv2d(np.arange(9.0).reshape(1, 1, 3, 3), np.ones((1, 1, 2, 2)))
    array([[[[ 8., 12.],
             [20., 24.]]]])
    """
    return _conv_fn("conv2d", 2, x, weight, bias, stride, padding, dilation, groups)


def conv3d(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Any:
    """Cross-correlation of ``x`` ``(..., C, D, H, W)`` with ``weight`` ``(O, C/groups, kd, kh, kw)``.

    >>> import numpy as np
    >>> conv3d(np.ones((1, 1, 3, 3, 3)), np.ones((2, 1, 2, 2, 2))).shape
    (1, 2, 2, 2, 2)
    """
    return _conv_fn("conv3d", 3, x, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(x: Any, weight: Any, bias: Any, stride: tuple, pads: tuple, extra: tuple,
                    dilation: tuple, groups: int) -> Any:
    """The adjoint of :func:`_conv` in its input, arguments normalised."""
    ws = _shape(weight)
    cin, og, kernel = ws[0], ws[1], ws[2:]
    nd = len(kernel)
    s = _shape(x)
    lead, sp = s[:len(s) - nd - 1], s[len(s) - nd:]
    k, m = og * math.prod(kernel), math.prod(sp)
    if groups == 1:
        c = fnp.matmul(fnp.swapaxes(fnp.reshape(weight, (cin, k)), 0, 1),
                       fnp.reshape(x, lead + (cin, m)))
    else:
        c = fnp.matmul(fnp.swapaxes(fnp.reshape(weight, (groups, cin // groups, k)), 1, 2),
                       fnp.reshape(x, lead + (groups, cin // groups, m)))
    c = fnp.reshape(c, lead + (og * groups,) + kernel + sp)
    full = tuple((n - 1) * st + d * (kk - 1) + 1
                 for n, kk, st, d in zip(sp, kernel, stride, dilation))
    y = fnp.col2im(c, full, stride, dilation)
    # output_padding adds rows at the end, padding removes them from both ends.
    y = _pad_spatial(y, tuple((0, max(e - p, 0)) for e, p in zip(extra, pads)))
    if any(pads):
        ys = _shape(y)[-nd:]
        y = y[(Ellipsis,) + tuple(slice(p, n - max(p - e, 0))
                                  for p, n, e in zip(pads, ys, extra))]
    return y if bias is None else y + fnp.reshape(bias, (og * groups,) + (1,) * nd)


def _conv_transpose_fn(fn: str, nd: int, x: Any, weight: Any, bias: Any, stride: Any,
                       padding: Any, output_padding: Any, dilation: Any, groups: int) -> Any:
    _check_weight(fn, weight, nd, "(in, out / groups, *kernel)")
    return _conv_transpose(x, weight, bias, _ntuple(stride, nd, "stride"),
                           _ntuple(padding, nd, "padding", lo=0),
                           _ntuple(output_padding, nd, "output_padding", lo=0),
                           _ntuple(dilation, nd, "dilation"), int(groups))


def conv_transpose1d(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Any:
    """The adjoint of :func:`conv1d` in its input: ``weight`` ``(C, O/groups, k)``.

    >>> import numpy as np
    >>> conv_transpose1d(np.ones((1, 1, 3)), np.ones((1, 1, 2)), stride=2)
    array([[[1., 1., 1., 1., 1., 1.]]])
    """
    return _conv_transpose_fn("conv_transpose1d", 1, x, weight, bias, stride, padding,
                              output_padding, dilation, groups)


def conv_transpose2d(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Any:
    """The adjoint of :func:`conv2d` in its input: ``weight`` ``(C, O/groups, kh, kw)``.

    Output size ``(H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``
    per axis, as PyTorch.

    >>> import numpy as np
    >>> conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
    array([[[[1., 2., 1.],
             [2., 4., 2.],
             [1., 2., 1.]]]])
    """
    return _conv_transpose_fn("conv_transpose2d", 2, x, weight, bias, stride, padding,
                              output_padding, dilation, groups)


def conv_transpose3d(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Any:
    """The adjoint of :func:`conv3d` in its input: ``weight`` ``(C, O/groups, kd, kh, kw)``.

    >>> import numpy as np
    >>> conv_transpose3d(np.ones((1, 1, 2, 2, 2)), np.ones((1, 3, 2, 2, 2)), stride=2).shape
    (1, 3, 4, 4, 4)
    """
    return _conv_transpose_fn("conv_transpose3d", 3, x, weight, bias, stride, padding,
                              output_padding, dilation, groups)


def _pool(x: Any, reduce: Callable, window: tuple, stride: tuple, pads: tuple, fill: Any) -> Any:
    # Kernel axes first: NumPy reduces over leading axes of a contiguous array much faster
    # than over middle ones, or over the strided length-k axes of a (N, C, H/k, k, W/k, k)
    # reshape (even when windows tile the input).
    p = fnp.patches(_pad_spatial(x, tuple((a, a) for a in pads), fill), window, stride,
                    kernel_first=True)
    return reduce(p, axis=tuple(range(len(window))))


def _lowest(x: Any) -> Any:
    """What max-padding fills with: ``-inf``, or the dtype's minimum for integers."""
    dt = np.dtype(getattr(x, "dtype", np.float64))
    return -np.inf if dt.kind in "fc" else np.iinfo(dt).min if dt.kind in "iu" else False


def _maxpool(x: Any, window: tuple, stride: tuple, pads: tuple) -> Any:
    return _pool(x, fnp.max, window, stride, pads, _lowest(x))


def _meanpool(x: Any, window: tuple, stride: tuple, pads: tuple) -> Any:
    return _pool(x, fnp.mean, window, stride, pads, 0.0)


def _pool_args(nd: int, window: Any, stride: Any, padding: Any) -> tuple:
    window = _ntuple(window, nd, "window")
    stride = window if stride is None else _ntuple(stride, nd, "stride")
    return window, stride, _ntuple(padding, nd, "padding", lo=0)


def maxpool1d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Maximum over each window of the last axis; padding counts as ``-inf``.

    >>> import numpy as np
    >>> maxpool1d(np.array([1.0, 3.0, 2.0, 0.0, 5.0]), 2)
    array([3., 2.])
    """
    return _maxpool(x, *_pool_args(1, window, stride, padding))


def maxpool2d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Maximum over each window of the last two axes; padding counts as ``-inf``.

    Tied maxima share the gradient equally (``np.max``'s rule).

    >>> import numpy as np
    >>> maxpool2d(np.arange(16.0).reshape(4, 4), 2)
    array([[ 5.,  7.],
           [13., 15.]])
    """
    return _maxpool(x, *_pool_args(2, window, stride, padding))


def maxpool3d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Maximum over each window of the last three axes; padding counts as ``-inf``.

    >>> import numpy as np
    >>> maxpool3d(np.arange(8.0).reshape(2, 2, 2), 2)
    array([[[7.]]])
    """
    return _maxpool(x, *_pool_args(3, window, stride, padding))


def meanpool1d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Mean over each window of the last axis; padding counts as zeros (in the count too).

    >>> import numpy as np
    >>> meanpool1d(np.array([1.0, 3.0, 2.0, 0.0, 5.0]), 2)
    array([2., 1.])
    """
    return _meanpool(x, *_pool_args(1, window, stride, padding))


def meanpool2d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Mean over each window of the last two axes; padding counts as zeros (in the count too).

    >>> import numpy as np
    >>> meanpool2d(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    return _meanpool(x, *_pool_args(2, window, stride, padding))


def meanpool3d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Mean over each window of the last three axes; padding counts as zeros (in the count too).

    >>> import numpy as np
    >>> meanpool3d(np.arange(8.0).reshape(2, 2, 2), 2)
    array([[[3.5]]])
    """
    return _meanpool(x, *_pool_args(3, window, stride, padding))


def _adaptive_axis(x: Any, axis: int, out: int, mode: str) -> Any:
    """Reduce axis ``axis`` of length ``n`` to ``out`` windows ``[floor(i n / out),
    ceil((i + 1) n / out))`` (PyTorch's adaptive pooling), by max or mean."""
    s = _shape(x)
    n = s[axis]
    reduce = fnp.max if mode == "max" else fnp.mean
    if n % out == 0:  # equal windows that tile the axis: split it in two and reduce one
        return reduce(fnp.reshape(x, s[:axis] + (out, n // out) + s[axis + 1:]), axis=axis + 1)
    # Unequal windows: gather each, padded to the longest with one extra entry (index n)
    # that cannot change the result (-inf for max, 0 for a sum), then reduce.
    starts = [i * n // out for i in range(out)]
    ends = [-(-(i + 1) * n // out) for i in range(out)]
    width = max(e - b for b, e in zip(starts, ends))
    idx = [[b + j if b + j < e else n for j in range(width)] for b, e in zip(starts, ends)]
    xp = array_module_of(x)
    fill = _lowest(x) if mode == "max" else 0.0
    widths = ((0, 0),) * axis + ((0, 1),) + ((0, 0),) * (len(s) - axis - 1)
    g = fnp.take(fnp.pad(x, widths, constant_values=fill), xp.asarray(idx), axis=axis)
    if mode == "max":
        return fnp.max(g, axis=axis + 1)
    dt = np.dtype(getattr(x, "dtype", np.float64))
    inv = np.array([1.0 / (e - b) for b, e in zip(starts, ends)],
                   dtype=dt if dt.kind in "fc" else np.float64)
    inv = xp.asarray(inv.reshape((out,) + (1,) * (len(s) - axis - 1)))
    return fnp.sum(g, axis=axis + 1) * inv


# ----------------------------------------------------------------------------- layers
_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


def _spatial_names(nd: int) -> str:
    return _AXES.get(nd) or ", ".join(f"S{i}" for i in range(1, nd + 1))


def _check_input(layer: Any, x: Any, channels: int | None, nd: int) -> tuple:
    """``(N, C, *spatial)`` or ``(C, *spatial)`` with ``nd`` spatial axes (and ``channels``)."""
    s = _shape(x)
    if len(s) not in (nd + 1, nd + 2) or (channels is not None and s[-nd - 1] != channels):
        c = "C" if channels is None else str(channels)
        sp = _spatial_names(nd)
        raise shape_error(layer, x, f"(N, {c}, {sp}) or ({c}, {sp})")
    return s


def _check_fits(layer: Any, x: Any, spatial: tuple, span: tuple, note: str) -> None:
    if any(n < k for n, k in zip(spatial, span)):
        raise shape_error(layer, x, f"spatial size at least {span} {note}".rstrip())


def _options(**opts: Any) -> str:
    return "".join(f", {k}={v}" for k, v in opts.items() if v is not None)


def _check_groups(layer: str, cin: int, cout: int, groups: int) -> None:
    if groups < 1 or cin % groups or cout % groups:
        raise ValueError(BAD_GROUPS.format(layer=layer, cin=cin, cout=cout, groups=groups))


@functor("weight", "bias")
class Conv(Module):
    """Convolution (cross-correlation, as Flux and PyTorch) in 1, 2 or 3 spatial dimensions.

    The kernel size's length decides: ``Conv((5,), ...)`` runs over ``(N, C, L)``,
    ``Conv((3, 3), ...)`` (or ``Conv(3, ...)``) over ``(N, C, H, W)``,
    ``Conv((3, 3, 3), ...)`` over ``(N, C, D, H, W)``; single examples without
    the batch axis work too. ``weight`` has shape ``(out_channels, in_channels //
    groups, *kernel_size)`` and ``bias`` ``(out_channels,)`` (``None`` with
    ``bias=False``). ``stride``, ``dilation``: an int or one per spatial axis;
    ``padding``: the same (zeros added on both sides) or ``"same"`` (output size =
    input size; stride 1; an odd total puts the extra entry at the end).
    ``groups`` splits the channels into groups convolved separately (PyTorch's
    ``groups``; see :class:`DepthwiseConv`). Weights come from ``init(rng,
    shape, dtype)``, Glorot uniform by default, as Flux.

    >>> import numpy as np
    >>> c = Conv((3, 3), 2, 4, stride=2, padding=1, rng=0)
    >>> c, c(np.zeros((1, 2, 9, 9), np.float32)).shape
    (Conv((3, 3), 2 => 4, stride=2, padding=1)  # 76 parameters, 0.297 KiB, (1, 4, 5, 5))
    >>> Conv((3, 3, 3), 1, 2, rng=0)(np.zeros((1, 1, 4, 5, 6), np.float32)).shape
    (1, 2, 2, 3, 4)
    """

    _name = "Conv"

    def __init__(self, kernel_size: Any, in_channels: int, out_channels: int,
                 activation: Callable = identity, *, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: Any = True,
                 init: Callable = glorot_uniform, rng: Any = None, dtype: Any = np.float32):
        kernel = _kernel(kernel_size, "kernel_size")
        nd = len(kernel)
        cin, cout, groups = int(in_channels), int(out_channels), int(groups)
        _check_groups(self._name, cin, cout, groups)
        self.stride, self.dilation = _ntuple(stride, nd, "stride"), _ntuple(dilation, nd, "dilation")
        self.padding = (padding if isinstance(padding, str)
                        else _ntuple(padding, nd, "padding", lo=0))
        _pad_widths(self.padding, kernel, self.stride, self.dilation)  # validates "same"
        self.groups = groups
        rng = as_rng(rng)
        self.weight = init(rng, (cout, cin // groups) + kernel, dtype)
        self.bias = _bias(bias, rng, cout, dtype)
        self.activation = activation
        self._freeze()

    @property
    def _ndims(self) -> dict[str, int]:  # type: ignore[override]
        return {"weight": len(self.stride) + 2, "bias": 1}

    def __call__(self, x: Any) -> Any:
        ws = _shape(self.weight)
        kernel = ws[2:]
        s = _check_input(self, x, ws[1] * self.groups, len(kernel))
        widths = _pad_widths(self.padding, kernel, self.stride, self.dilation)
        _check_fits(self, x, tuple(n + a + b for n, (a, b) in zip(s[-len(kernel):], widths)),
                    tuple(d * (k - 1) + 1 for k, d in zip(kernel, self.dilation)),
                    "after padding" if any(map(any, widths)) else "")
        y = _conv(x, self.weight, self.bias, self.stride, widths, self.dilation, self.groups)
        return y if self.activation is identity else self.activation(y)

    def _repr_inner(self) -> str:
        nd = len(self.stride)
        ws = _shape(self.weight)[-nd - 2:]
        cout, cg, kernel = ws[0], ws[1], ws[2:]
        act = "" if self.activation is identity else f", {activation_name(self.activation)}"
        pad = repr(self.padding) if isinstance(self.padding, str) else _short(self.padding)
        groups = None if self.groups == 1 or self._name != "Conv" else self.groups
        return (f"{self._name}({kernel}, {cg * self.groups} => {cout}{act}" + _options(
            stride=_short(self.stride) if set(self.stride) != {1} else None,
            padding=pad if pad != 0 else None,
            dilation=_short(self.dilation) if set(self.dilation) != {1} else None,
            groups=groups,
            bias=False if self.bias is None else None) + ")")


@functor("weight", "bias")
class DepthwiseConv(Conv):
    """A :class:`Conv` with one group per input channel (Flux's ``DepthwiseConv``).

    Each input channel is convolved with its own ``out_channels // in_channels``
    kernels (the channel multiplier), as PyTorch's ``Conv2d(in, out, k,
    groups=in)``: ``weight`` has shape ``(out_channels, 1, *kernel_size)``.
    ``out_channels`` must be a multiple of ``in_channels``; other arguments as
    :class:`Conv`.

    >>> import numpy as np
    >>> d = DepthwiseConv((3, 3), 4, 8, rng=0)
    >>> d, d.weight.shape, d(np.zeros((2, 4, 6, 6), np.float32)).shape
    (DepthwiseConv((3, 3), 4 => 8)  # 80 parameters, 0.312 KiB, (8, 1, 3, 3), (2, 8, 4, 4))
    """

    _name = "DepthwiseConv"

    def __init__(self, kernel_size: Any, in_channels: int, out_channels: int,
                 activation: Callable = identity, *, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, bias: Any = True, init: Callable = glorot_uniform,
                 rng: Any = None, dtype: Any = np.float32):
        cin, cout = int(in_channels), int(out_channels)
        if cin < 1 or cout % cin:
            raise ValueError(f"DepthwiseConv: out_channels ({cout}) must be a multiple of "
                             f"in_channels ({cin}) (each input channel gets out / in kernels)")
        super().__init__(kernel_size, cin, cout, activation, stride=stride, padding=padding,
                         dilation=dilation, groups=cin, bias=bias, init=init, rng=rng,
                         dtype=dtype)


@functor("weight", "bias")
class ConvTranspose(Module):
    """Transposed convolution: the adjoint of :class:`Conv` in its input (PyTorch's semantics).

    In 1, 2 or 3 spatial dimensions, as the kernel size's length says.
    ``weight`` has shape ``(in_channels, out_channels // groups, *kernel_size)``.
    The output size per axis is ``(n - 1) * stride - 2 * padding + dilation *
    (k - 1) + output_padding + 1``; ``output_padding`` (smaller than stride or
    dilation) picks among the input sizes that a strided Conv maps to the same size.

    >>> import numpy as np
    >>> t = ConvTranspose(4, 8, 3, stride=2, padding=1, rng=0)
    >>> t, t(np.zeros((1, 8, 5, 5), np.float32)).shape
    (ConvTranspose((4, 4), 8 => 3, stride=2, padding=1)  # 387 parameters, 1.512 KiB, (1, 3, 10, 10))
    """

    def __init__(self, kernel_size: Any, in_channels: int, out_channels: int,
                 activation: Callable = identity, *, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: Any = True,
                 init: Callable = glorot_uniform, rng: Any = None, dtype: Any = np.float32):
        kernel = _kernel(kernel_size, "kernel_size")
        nd = len(kernel)
        cin, cout, groups = int(in_channels), int(out_channels), int(groups)
        _check_groups("ConvTranspose", cin, cout, groups)
        self.stride, self.dilation = _ntuple(stride, nd, "stride"), _ntuple(dilation, nd, "dilation")
        self.padding = _ntuple(padding, nd, "padding", lo=0)
        self.output_padding = _ntuple(output_padding, nd, "output_padding", lo=0)
        if any(e >= s and e >= d for e, s, d in zip(self.output_padding, self.stride,
                                                    self.dilation)):
            raise ValueError(BAD_OUTPUT_PADDING.format(op=_short(self.output_padding),
                                                       stride=_short(self.stride),
                                                       dilation=_short(self.dilation)))
        self.groups = groups
        rng = as_rng(rng)
        self.weight = init(rng, (cin, cout // groups) + kernel, dtype)
        self.bias = _bias(bias, rng, cout, dtype)
        self.activation = activation
        self._freeze()

    @property
    def _ndims(self) -> dict[str, int]:  # type: ignore[override]
        return {"weight": len(self.stride) + 2, "bias": 1}

    def __call__(self, x: Any) -> Any:
        ws = _shape(self.weight)
        kernel = ws[2:]
        nd = len(kernel)
        s = _check_input(self, x, ws[0], nd)
        out = tuple((n - 1) * st - 2 * p + d * (k - 1) + e + 1 for n, k, st, p, e, d in zip(
            s[-nd:], kernel, self.stride, self.padding, self.output_padding, self.dilation))
        if any(n < 1 for n in out):
            raise shape_error(self, x, f"a larger input: the output size would be {out}")
        y = _conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                            self.output_padding, self.dilation, self.groups)
        return y if self.activation is identity else self.activation(y)

    def _repr_inner(self) -> str:
        nd = len(self.stride)
        ws = _shape(self.weight)[-nd - 2:]
        cin, og, kernel = ws[0], ws[1], ws[2:]
        act = "" if self.activation is identity else f", {activation_name(self.activation)}"
        return (f"ConvTranspose({kernel}, {cin} => {og * self.groups}{act}" + _options(
            stride=_short(self.stride) if set(self.stride) != {1} else None,
            padding=_short(self.padding) if any(self.padding) else None,
            output_padding=_short(self.output_padding) if any(self.output_padding) else None,
            dilation=_short(self.dilation) if set(self.dilation) != {1} else None,
            groups=self.groups if self.groups != 1 else None,
            bias=False if self.bias is None else None) + ")")


class _Pool(Module):
    _name = ""
    _fn: Callable = staticmethod(_maxpool)

    def __init__(self, window: Any, stride: Any = None, padding: Any = 0):
        self.window = _kernel(window, "window")
        nd = len(self.window)
        self.stride = self.window if stride is None else _ntuple(stride, nd, "stride")
        self.padding = _ntuple(padding, nd, "padding", lo=0)
        if any(p >= k for p, k in zip(self.padding, self.window)):
            raise ValueError(f"{self._name}: padding {_short(self.padding)} must be smaller than "
                             f"the window {self.window}")
        self._freeze()

    def __call__(self, x: Any) -> Any:
        nd = len(self.window)
        s = _check_input(self, x, None, nd)
        _check_fits(self, x, tuple(n + 2 * p for n, p in zip(s[-nd:], self.padding)),
                    self.window, "after padding" if any(self.padding) else "")
        return type(self)._fn(x, self.window, self.stride, self.padding)

    def _repr_inner(self) -> str:
        return f"{self._name}({self.window}" + _options(
            stride=_short(self.stride) if self.stride != self.window else None,
            padding=_short(self.padding) if any(self.padding) else None) + ")"


@functor(children=())
class MaxPool(_Pool):
    """Maximum over ``window`` with ``stride`` (default: the window) and ``padding``.

    ``window``: an int (2-D) or a tuple whose length is the number of spatial
    axes (``MaxPool((2,))`` on ``(N, C, L)``, ``MaxPool((2, 2, 2))`` on
    ``(N, C, D, H, W)``). Padding counts as ``-inf``; windows that do not fit
    are dropped (floor).

    >>> import numpy as np
    >>> MaxPool(2)(np.arange(25.0).reshape(1, 1, 5, 5))
    array([[[[ 6.,  8.],
             [16., 18.]]]])
    """
    _name = "MaxPool"
    _fn = staticmethod(_maxpool)


@functor(children=())
class MeanPool(_Pool):
    """Mean over ``window`` with ``stride`` (default: the window) and ``padding``.

    ``window`` as :class:`MaxPool`. Padding counts as zeros and windows always
    divide by their full size (Flux and PyTorch's default).

    >>> import numpy as np
    >>> MeanPool((1, 2))(np.arange(4.0).reshape(1, 1, 1, 4))
    array([[[[0.5, 2.5]]]])
    >>> MeanPool((2,))(np.arange(4.0).reshape(1, 1, 4))
    array([[[0.5, 2.5]]])
    """
    _name = "MeanPool"
    _fn = staticmethod(_meanpool)


class _GlobalPool(Module):
    _name = ""

    def __init__(self) -> None:
        self._freeze()

    def _axes(self, x: Any) -> tuple:
        s = _shape(x)
        if len(s) < 3:
            raise shape_error(self, x, "(N, C, *spatial) with at least one spatial axis")
        return tuple(range(2, len(s)))

    def _repr_inner(self) -> str:
        return f"{self._name}()"


@functor(children=())
class GlobalMeanPool(_GlobalPool):
    """Mean over every spatial axis: ``(N, C, *spatial) -> (N, C, 1, ...)``, as Flux.

    Every axis after the first two is spatial, so the input needs its batch axis
    (``(N, C, L)``, ``(N, C, H, W)``, ``(N, C, D, H, W)``...).

    >>> import numpy as np
    >>> GlobalMeanPool()(np.ones((2, 3, 4, 4))).shape
    (2, 3, 1, 1)
    """
    _name = "GlobalMeanPool"

    def __call__(self, x: Any) -> Any:
        return fnp.mean(x, axis=self._axes(x), keepdims=True)


@functor(children=())
class GlobalMaxPool(_GlobalPool):
    """Maximum over every spatial axis: ``(N, C, *spatial) -> (N, C, 1, ...)``, as Flux.

    >>> import numpy as np
    >>> GlobalMaxPool()(np.arange(6.0).reshape(1, 2, 3))
    array([[[2.],
            [5.]]])
    """
    _name = "GlobalMaxPool"

    def __call__(self, x: Any) -> Any:
        return fnp.max(x, axis=self._axes(x), keepdims=True)


class _AdaptivePool(Module):
    _name = ""
    _mode = ""

    def __init__(self, output_size: Any):
        t = ((int(output_size),) * 2 if isinstance(output_size, (int, np.integer))
             else tuple(None if o is None else int(o) for o in output_size))
        if not t or any(o is not None and o < 1 for o in t):
            raise ValueError(f"{self._name}: output_size must be a positive int (2-D) or a "
                             f"tuple with one positive int (or None: keep that size) per "
                             f"spatial axis, got {output_size!r}")
        self.output_size = t
        self._freeze()

    def __call__(self, x: Any) -> Any:
        nd = len(self.output_size)
        s = _check_input(self, x, None, nd)
        first = len(s) - nd
        for i, o in enumerate(self.output_size):
            if o is not None and o != s[first + i]:
                x = _adaptive_axis(x, first + i, o, self._mode)
        return x

    def _repr_inner(self) -> str:
        return f"{self._name}({self.output_size})"


@functor(children=())
class AdaptiveMaxPool(_AdaptivePool):
    """Maximum pooling to a given output size (PyTorch's ``AdaptiveMaxPool1d/2d/3d``).

    ``output_size``: an int (2-D) or one size per spatial axis (``None`` keeps
    that axis). Along an axis of length ``n``, output ``i`` is the maximum over
    ``[floor(i * n / out), ceil((i + 1) * n / out))``, so windows may differ in
    length by one and overlap.

    >>> import numpy as np
    >>> AdaptiveMaxPool((2,))(np.array([[[1.0, 5.0, 2.0, 0.0, 3.0]]]))
    array([[[5., 3.]]])
    """
    _name = "AdaptiveMaxPool"
    _mode = "max"


@functor(children=())
class AdaptiveMeanPool(_AdaptivePool):
    """Mean pooling to a given output size (PyTorch's ``AdaptiveAvgPool1d/2d/3d``).

    Windows as :class:`AdaptiveMaxPool`; each divides by its own length.
    ``AdaptiveMeanPool(1)`` is :class:`GlobalMeanPool` for images.

    >>> import numpy as np
    >>> AdaptiveMeanPool((2,))(np.array([[[1.0, 5.0, 2.0, 0.0, 3.0]]]))
    array([[[2.66666667, 1.66666667]]])
    """
    _name = "AdaptiveMeanPool"
    _mode = "mean"
