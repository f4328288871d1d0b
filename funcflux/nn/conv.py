"""Convolution and pooling layers on NCHW images: Conv, ConvTranspose, MaxPool, MeanPool, global pools.

Each is a composition of three primitives: ``fnp.patches`` gathers every window
of the last two axes (im2col), a convolution is one ``matmul`` of the weight
with those windows, and pooling is one reduction over the kernel axes.
``ConvTranspose`` runs the same steps backwards (a matmul, then
``fnp.col2im`` adds the windows back). Derivatives of every order, forward
mode and ``vmap`` all come from the rules of those primitives.

Layers accept ``(N, C, H, W)`` batches and also single ``(C, H, W)`` images,
so ``vmap`` over examples works.

>>> import numpy as np
>>> from funcflux import nn
>>> model = nn.Chain(nn.Conv(3, 1, 8, nn.relu, rng=0), nn.MaxPool(2))
>>> model
Chain(Conv((3, 3), 1 => 8, relu), MaxPool((2, 2)))  # 80 parameters, 0.312 KiB
>>> model(np.zeros((5, 1, 28, 28), np.float32)).shape
(5, 8, 13, 13)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import numpy as fnp
from ..functors import functor
from .activations import identity
from .base import Module, activation_name, as_rng, shape_error
from .init import glorot_uniform
from .layers import _bias
from ..ops.common import shape as _shape

__all__ = ["Conv", "ConvTranspose", "MaxPool", "MeanPool", "GlobalMaxPool", "GlobalMeanPool"]

SAME_NEEDS_STRIDE_1 = 'padding="same" needs stride 1 (got stride {stride})'
BAD_OUTPUT_PADDING = ("output_padding {op} must be smaller than the stride {stride} or the "
                      "dilation {dilation} in each axis")


def _pair(v: Any, what: str, lo: int = 1) -> tuple[int, int]:
    t = (int(v), int(v)) if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)
    if len(t) != 2 or any(a < lo for a in t):
        kind = "positive" if lo == 1 else "non-negative"
        raise ValueError(f"{what} must be a {kind} int or a pair of them, got {v!r}")
    return t  # type: ignore[return-value]


def _short(t: tuple) -> Any:
    """``2`` for ``(2, 2)``: how options print."""
    return t[0] if len(set(t)) == 1 else t


def _pad_widths(padding: Any, kernel: tuple, stride: tuple, dilation: tuple) -> tuple:
    """``((top, bottom), (left, right))`` from an int, a pair or ``"same"``."""
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f'padding must be an int, a pair or "same", got {padding!r}')
        if stride != (1, 1):
            raise ValueError(SAME_NEEDS_STRIDE_1.format(stride=_short(stride)))
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    ph, pw = _pair(padding, "padding", lo=0)
    return ((ph, ph), (pw, pw))


def _pad2(x: Any, widths: tuple, value: float = 0.0) -> Any:
    if not any(a or b for a, b in widths):
        return x
    lead = ((0, 0),) * (len(_shape(x)) - 2)
    return fnp.pad(x, lead + tuple(widths), constant_values=value)


def _out_size(n: int, k: int, s: int, d: int) -> int:
    return (n - d * (k - 1) - 1) // s + 1


# ----------------------------------------------------------------------------- functions
def conv2d(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1) -> Any:
    """Cross-correlation of ``x`` ``(..., C, H, W)`` with ``weight`` ``(O, C/groups, kh, kw)``.

    The layer :class:`Conv` without its checks: pad, gather windows, one matmul.

    >>> import numpy as np
    >>> conv2d(np.arange(9.0).reshape(1, 1, 3, 3), np.ones((1, 1, 2, 2)))
    array([[[[ 8., 12.],
             [20., 24.]]]])
    """
    o, cg, kh, kw = _shape(weight)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    x = _pad2(x, _pad_widths(padding, (kh, kw), stride, dilation))
    p = fnp.patches(x, (kh, kw), stride, dilation)  # (..., C, kh, kw, OH, OW)
    s = _shape(p)
    lead, (oh, ow) = s[:-5], s[-2:]
    k = cg * kh * kw
    if groups == 1:
        y = fnp.matmul(fnp.reshape(weight, (o, k)), fnp.reshape(p, lead + (k, oh * ow)))
    else:  # one matmul for all groups: the group axis broadcasts like a batch axis
        y = fnp.matmul(fnp.reshape(weight, (groups, o // groups, k)),
                       fnp.reshape(p, lead + (groups, k, oh * ow)))
    y = fnp.reshape(y, lead + (o, oh, ow))
    return y if bias is None else y + fnp.reshape(bias, (o, 1, 1))


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
    cin, og, kh, kw = _shape(weight)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads = _pair(padding, "padding", lo=0)
    extra = _pair(output_padding, "output_padding", lo=0)
    s = _shape(x)
    lead, (h, w) = s[:-3], s[-2:]
    k = og * kh * kw
    if groups == 1:
        c = fnp.matmul(fnp.swapaxes(fnp.reshape(weight, (cin, k)), 0, 1),
                       fnp.reshape(x, lead + (cin, h * w)))
    else:
        c = fnp.matmul(fnp.swapaxes(fnp.reshape(weight, (groups, cin // groups, k)), 1, 2),
                       fnp.reshape(x, lead + (groups, cin // groups, h * w)))
    c = fnp.reshape(c, lead + (og * groups, kh, kw, h, w))
    full = tuple((n - 1) * st + d * (kk - 1) + 1
                 for n, kk, st, d in zip((h, w), (kh, kw), stride, dilation))
    y = fnp.col2im(c, full, stride, dilation)
    # output_padding adds rows at the end, padding removes them from both ends.
    y = _pad2(y, tuple((0, max(e - p, 0)) for e, p in zip(extra, pads)))
    if any(pads):
        hs, ws = _shape(y)[-2:]
        y = y[..., pads[0]:hs - max(pads[0] - extra[0], 0), pads[1]:ws - max(pads[1] - extra[1], 0)]
    return y if bias is None else y + fnp.reshape(bias, (og * groups, 1, 1))


def _pool(x: Any, reduce: Callable, window: tuple, stride: tuple, pads: tuple, fill: float) -> Any:
    # Kernel axes first: NumPy reduces over leading axes of a contiguous array much faster
    # than over middle ones, or over the strided length-k axes of a (N, C, H/k, k, W/k, k)
    # reshape (even when windows tile the input).
    p = fnp.patches(_pad2(x, tuple((a, a) for a in pads), fill), window, stride, kernel_first=True)
    return reduce(p, axis=(0, 1))


def maxpool2d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Maximum over each window of the last two axes; padding counts as ``-inf``.

    Tied maxima share the gradient equally (``np.max``'s rule).

    >>> import numpy as np
    >>> maxpool2d(np.arange(16.0).reshape(4, 4), 2)
    array([[ 5.,  7.],
           [13., 15.]])
    """
    window = _pair(window, "window")
    stride = window if stride is None else _pair(stride, "stride")
    dt = np.dtype(getattr(x, "dtype", np.float64))
    fill = -np.inf if dt.kind == "f" else np.iinfo(dt).min if dt.kind in "iu" else False
    return _pool(x, fnp.max, window, stride, _pair(padding, "padding", lo=0), fill)


def meanpool2d(x: Any, window: Any, stride: Any = None, padding: Any = 0) -> Any:
    """Mean over each window of the last two axes; padding counts as zeros (in the count too).

    >>> import numpy as np
    >>> meanpool2d(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    window = _pair(window, "window")
    stride = window if stride is None else _pair(stride, "stride")
    return _pool(x, fnp.mean, window, stride, _pair(padding, "padding", lo=0), 0.0)


# ----------------------------------------------------------------------------- layers
def _check_image(layer: Any, x: Any, channels: int | None) -> tuple:
    s = _shape(x)
    c = "C" if channels is None else str(channels)
    if len(s) not in (3, 4) or (channels is not None and s[-3] != channels):
        raise shape_error(layer, x, f"(N, {c}, H, W) or ({c}, H, W)")
    return s


def _check_fits(layer: Any, x: Any, spatial: tuple, span: tuple, note: str) -> None:
    if any(n < k for n, k in zip(spatial, span)):
        raise shape_error(layer, x, f"spatial size at least {span} {note}".rstrip())


def _options(**opts: Any) -> str:
    return "".join(f", {k}={v}" for k, v in opts.items() if v is not None)


@functor("weight", "bias")
class Conv(Module):
    """2-D convolution (cross-correlation, as Flux and PyTorch) on ``(N, C, H, W)`` images.

    ``weight`` has shape ``(out_channels, in_channels // groups, kh, kw)`` and
    ``bias`` ``(out_channels,)`` (``None`` with ``bias=False``). ``kernel_size``,
    ``stride``, ``dilation``: an int or a pair; ``padding``: an int, a pair
    (zeros added on both sides) or ``"same"`` (output size = input size; stride 1;
    an odd total puts the extra row at the bottom/right). Weights come from
    ``init(rng, shape, dtype)``, Glorot uniform by default, as Flux.

    >>> import numpy as np
    >>> c = Conv((3, 3), 2, 4, stride=2, padding=1, rng=0)
    >>> c, c(np.zeros((1, 2, 9, 9), np.float32)).shape
    (Conv((3, 3), 2 => 4, stride=2, padding=1)  # 76 parameters, 0.297 KiB, (1, 4, 5, 5))
    """

    _ndims = {"weight": 4, "bias": 1}

    def __init__(self, kernel_size: Any, in_channels: int, out_channels: int,
                 activation: Callable = identity, *, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: Any = True,
                 init: Callable = glorot_uniform, rng: Any = None, dtype: Any = np.float32):
        kernel = _pair(kernel_size, "kernel_size")
        cin, cout, groups = int(in_channels), int(out_channels), int(groups)
        if groups < 1 or cin % groups or cout % groups:
            raise ValueError(f"Conv: in_channels ({cin}) and out_channels ({cout}) must both be "
                             f"divisible by groups ({groups})")
        self.stride, self.dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding", lo=0)
        _pad_widths(self.padding, kernel, self.stride, self.dilation)  # validates "same"
        self.groups = groups
        rng = as_rng(rng)
        self.weight = init(rng, (cout, cin // groups) + kernel, dtype)
        self.bias = _bias(bias, rng, cout, dtype)
        self.activation = activation
        self._freeze()

    def __call__(self, x: Any) -> Any:
        cout, cg, kh, kw = _shape(self.weight)
        s = _check_image(self, x, cg * self.groups)
        widths = _pad_widths(self.padding, (kh, kw), self.stride, self.dilation)
        _check_fits(self, x, tuple(n + a + b for n, (a, b) in zip(s[-2:], widths)),
                    tuple(d * (k - 1) + 1 for k, d in zip((kh, kw), self.dilation)),
                    "after padding" if any(map(any, widths)) else "")
        y = conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                   dilation=self.dilation, groups=self.groups)
        return y if self.activation is identity else self.activation(y)

    def _repr_inner(self) -> str:
        cout, cg, kh, kw = _shape(self.weight)[-4:]
        act = "" if self.activation is identity else f", {activation_name(self.activation)}"
        pad = repr(self.padding) if isinstance(self.padding, str) else _short(self.padding)
        return (f"Conv({(kh, kw)}, {cg * self.groups} => {cout}{act}" + _options(
            stride=_short(self.stride) if self.stride != (1, 1) else None,
            padding=pad if pad != 0 else None,
            dilation=_short(self.dilation) if self.dilation != (1, 1) else None,
            groups=self.groups if self.groups != 1 else None,
            bias=False if self.bias is None else None) + ")")


@functor("weight", "bias")
class ConvTranspose(Module):
    """Transposed convolution: the adjoint of :class:`Conv` in its input (PyTorch's semantics).

    ``weight`` has shape ``(in_channels, out_channels // groups, kh, kw)``. The
    output size per axis is ``(H - 1) * stride - 2 * padding + dilation * (k - 1)
    + output_padding + 1``; ``output_padding`` (smaller than stride or dilation)
    picks among the input sizes that a strided Conv maps to the same size.

    >>> import numpy as np
    >>> t = ConvTranspose(4, 8, 3, stride=2, padding=1, rng=0)
    >>> t, t(np.zeros((1, 8, 5, 5), np.float32)).shape
    (ConvTranspose((4, 4), 8 => 3, stride=2, padding=1)  # 387 parameters, 1.512 KiB, (1, 3, 10, 10))
    """

    _ndims = {"weight": 4, "bias": 1}

    def __init__(self, kernel_size: Any, in_channels: int, out_channels: int,
                 activation: Callable = identity, *, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: Any = True,
                 init: Callable = glorot_uniform, rng: Any = None, dtype: Any = np.float32):
        kernel = _pair(kernel_size, "kernel_size")
        cin, cout, groups = int(in_channels), int(out_channels), int(groups)
        if groups < 1 or cin % groups or cout % groups:
            raise ValueError(f"ConvTranspose: in_channels ({cin}) and out_channels ({cout}) must "
                             f"both be divisible by groups ({groups})")
        self.stride, self.dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
        self.padding = _pair(padding, "padding", lo=0)
        self.output_padding = _pair(output_padding, "output_padding", lo=0)
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

    def __call__(self, x: Any) -> Any:
        cin, og, kh, kw = _shape(self.weight)
        s = _check_image(self, x, cin)
        out = tuple((n - 1) * st - 2 * p + d * (k - 1) + e + 1 for n, k, st, p, e, d in zip(
            s[-2:], (kh, kw), self.stride, self.padding, self.output_padding, self.dilation))
        if any(n < 1 for n in out):
            raise shape_error(self, x, f"a larger input: the output size would be {out}")
        y = conv_transpose2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             output_padding=self.output_padding, dilation=self.dilation,
                             groups=self.groups)
        return y if self.activation is identity else self.activation(y)

    def _repr_inner(self) -> str:
        cin, og, kh, kw = _shape(self.weight)[-4:]
        act = "" if self.activation is identity else f", {activation_name(self.activation)}"
        return (f"ConvTranspose({(kh, kw)}, {cin} => {og * self.groups}{act}" + _options(
            stride=_short(self.stride) if self.stride != (1, 1) else None,
            padding=_short(self.padding) if self.padding != (0, 0) else None,
            output_padding=_short(self.output_padding) if self.output_padding != (0, 0) else None,
            dilation=_short(self.dilation) if self.dilation != (1, 1) else None,
            groups=self.groups if self.groups != 1 else None,
            bias=False if self.bias is None else None) + ")")


class _Pool(Module):
    _name = ""
    _fn: Callable = staticmethod(maxpool2d)

    def __init__(self, window: Any, stride: Any = None, padding: Any = 0):
        self.window = _pair(window, "window")
        self.stride = self.window if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding", lo=0)
        if any(p >= k for p, k in zip(self.padding, self.window)):
            raise ValueError(f"{self._name}: padding {_short(self.padding)} must be smaller than "
                             f"the window {self.window}")
        self._freeze()

    def __call__(self, x: Any) -> Any:
        s = _check_image(self, x, None)
        _check_fits(self, x, tuple(n + 2 * p for n, p in zip(s[-2:], self.padding)), self.window,
                    "after padding" if any(self.padding) else "")
        return type(self)._fn(x, self.window, self.stride, self.padding)

    def _repr_inner(self) -> str:
        return f"{self._name}({self.window}" + _options(
            stride=_short(self.stride) if self.stride != self.window else None,
            padding=_short(self.padding) if any(self.padding) else None) + ")"


@functor(children=())
class MaxPool(_Pool):
    """Maximum over ``window`` (int or pair) with ``stride`` (default: the window) and ``padding``.

    Padding counts as ``-inf``; windows that do not fit are dropped (floor).

    >>> import numpy as np
    >>> MaxPool(2)(np.arange(25.0).reshape(1, 1, 5, 5))
    array([[[[ 6.,  8.],
             [16., 18.]]]])
    """
    _name = "MaxPool"
    _fn = staticmethod(maxpool2d)


@functor(children=())
class MeanPool(_Pool):
    """Mean over ``window`` (int or pair) with ``stride`` (default: the window) and ``padding``.

    Padding counts as zeros and windows always divide by their full size (Flux
    and PyTorch's default).

    >>> import numpy as np
    >>> MeanPool((1, 2))(np.arange(4.0).reshape(1, 1, 1, 4))
    array([[[[0.5, 2.5]]]])
    """
    _name = "MeanPool"
    _fn = staticmethod(meanpool2d)


class _GlobalPool(Module):
    _name = ""

    def __init__(self) -> None:
        self._freeze()

    def _repr_inner(self) -> str:
        return f"{self._name}()"


@functor(children=())
class GlobalMeanPool(_GlobalPool):
    """Mean over the whole image: ``(N, C, H, W) -> (N, C, 1, 1)``, as Flux.

    >>> import numpy as np
    >>> GlobalMeanPool()(np.ones((2, 3, 4, 4))).shape
    (2, 3, 1, 1)
    """
    _name = "GlobalMeanPool"

    def __call__(self, x: Any) -> Any:
        _check_image(self, x, None)
        return fnp.mean(x, axis=(-2, -1), keepdims=True)


@functor(children=())
class GlobalMaxPool(_GlobalPool):
    """Maximum over the whole image: ``(N, C, H, W) -> (N, C, 1, 1)``, as Flux."""
    _name = "GlobalMaxPool"

    def __call__(self, x: Any) -> Any:
        _check_image(self, x, None)
        return fnp.max(x, axis=(-2, -1), keepdims=True)
