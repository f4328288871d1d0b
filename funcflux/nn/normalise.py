"""Normalisation layers: BatchNorm (running statistics as non-trainable children), LayerNorm,
GroupNorm and InstanceNorm.

>>> import numpy as np
>>> from funcflux import nn
>>> bn = nn.BatchNorm(3)
>>> bn
BatchNorm(3)  # 6 parameters, plus 6 non-trainable, 0.047 KiB
>>> y, bn2 = nn.apply(bn, np.arange(12.0).reshape(4, 3))
>>> bn2.running_mean.round(2)
array([0.45, 0.55, 0.65], dtype=float32)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..functors import functor
from ..transforms.custom import stop_gradient
from .activations import identity
from .base import Module, activation_name, shape_error
from ..ops.common import shape as _shape

__all__ = ["BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm"]


def _channel_arrays(layer: Any, c: int, dtype: Any, affine: bool, track_stats: bool) -> None:
    """A per-channel scale and shift (``affine``) and running statistics (``track_stats``),
    ``None`` where switched off: BatchNorm's and InstanceNorm's arrays."""
    layer.weight = np.ones(c, dtype) if affine else None
    layer.bias = np.zeros(c, dtype) if affine else None
    layer.running_mean = np.zeros(c, dtype) if track_stats else None
    layer.running_var = np.ones(c, dtype) if track_stats else None


@functor("weight", "bias", "running_mean", "running_var", trainable=("weight", "bias"))
class BatchNorm(Module):
    """Batch normalisation over axis 1 of ``(N, C)`` or ``(N, C, H, W, ...)`` inputs.

    Inference (``layer(x)``) normalises with ``running_mean`` and
    ``running_var``. Training mode (``nn.apply(model, x, train=True)``) normalises
    with the batch's mean and biased variance and returns a layer whose running
    statistics moved as PyTorch's do::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)

    (``n`` values per channel, so the running variance is unbiased). The
    statistics are taken through ``stop_gradient``: no derivative flows into the
    returned running statistics. Then ``activation(weight * x_hat + bias)``.

    ``affine=False`` drops ``weight`` and ``bias`` (``None``); ``track_stats=False``
    keeps no running statistics and always uses the batch's.
    """

    _ndims = {"weight": 1, "bias": 1, "running_mean": 1, "running_var": 1}

    def __init__(self, num_features: int, activation: Callable = identity, *,
                 momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 track_stats: bool = True, dtype: Any = np.float32):
        c = int(num_features)
        _channel_arrays(self, c, dtype, affine, track_stats)
        self.num_features = c
        self.activation = activation
        self.momentum = float(momentum)
        self.eps = float(eps)
        self._freeze()

    def _check(self, x: Any) -> tuple:
        s = _shape(x)
        if len(s) < 2 or s[1] != self.num_features:
            raise shape_error(self, x, f"(N, {self.num_features}, ...)")
        return s

    def _affine(self, x: Any, inv: Any, shift: Any, bshape: tuple) -> Any:
        """``activation(x * (inv * weight) + (shift * inv * weight + bias))`` with the
        per-channel factors folded first, so the big array sees one multiply and one add."""
        scale = inv if self.weight is None else inv * self.weight
        offset = shift * scale if self.bias is None else shift * scale + self.bias
        y = x * np.reshape(scale, bshape) + np.reshape(offset, bshape)
        return y if self.activation is identity else self.activation(y)

    def __call__(self, x: Any) -> Any:
        if self.running_mean is None:
            return self._train(x)[0]
        s = self._check(x)
        bshape = (1, s[1]) + (1,) * (len(s) - 2)
        inv = 1 / np.sqrt(self.running_var + self.eps)
        return self._affine(x, inv, -self.running_mean, bshape)

    def _train(self, x: Any) -> tuple[Any, Any, Any, int]:
        s = self._check(x)
        axes = (0,) + tuple(range(2, len(s)))
        bshape = (1, s[1]) + (1,) * (len(s) - 2)
        c = s[1]
        mean = np.mean(x, axis=axes, keepdims=True)
        xc = x - mean
        var = np.reshape(np.mean(xc * xc, axis=axes), (c,))
        inv = 1 / np.sqrt(var + self.eps)
        y = self._affine(xc, inv, 0.0, bshape)
        return y, np.reshape(mean, (c,)), var, int(np.prod([s[a] for a in axes]))

    def apply(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, "BatchNorm"]:
        if not train:
            return self(x), self
        y, mean, var, n = self._train(x)
        if self.running_mean is None:
            return y, self
        if n < 2:
            raise ValueError(f"{self._repr_inner()} in training mode needs more than one value "
                             f"per channel to estimate a variance; got input of shape "
                             f"{_shape(x)}")
        m = self.momentum
        dtype = self.running_mean.dtype
        mean = stop_gradient(mean)
        var = stop_gradient(var) * (n / (n - 1))
        new = object.__new__(BatchNorm)
        for k, v in self.__dict__.items():
            object.__setattr__(new, k, v)
        object.__setattr__(new, "running_mean", _as((1 - m) * self.running_mean + m * mean, dtype))
        object.__setattr__(new, "running_var", _as((1 - m) * self.running_var + m * var, dtype))
        return y, new

    def _repr_inner(self) -> str:
        parts = [str(self.num_features)]
        if self.activation is not identity:
            parts.append(activation_name(self.activation))
        opts = []
        if self.momentum != 0.1:
            opts.append(f"momentum={self.momentum:g}")
        if self.eps != 1e-5:
            opts.append(f"eps={self.eps:g}")
        if self.weight is None:
            opts.append("affine=False")
        if self.running_mean is None:
            opts.append("track_stats=False")
        return f"BatchNorm({', '.join(parts)}{'; ' + ', '.join(opts) if opts else ''})"


def _as(v: Any, dtype: Any) -> Any:
    """Keep the running statistics in their dtype (a float64 batch must not promote them)."""
    return v if getattr(v, "dtype", dtype) == dtype else v.astype(dtype)


@functor("weight", "bias")
class LayerNorm(Module):
    """Normalise over the trailing ``shape`` axes of each example (PyTorch's normalized_shape).

    ``y = activation((x - mean) / sqrt(var + eps) * weight + bias)``, mean and
    biased variance over the last ``len(shape)`` axes; ``weight`` (ones) and
    ``bias`` (zeros) have shape ``shape`` (``affine=False``: none).

    >>> import numpy as np
    >>> LayerNorm(4)(np.array([[1.0, 2.0, 3.0, 4.0]])).round(3)
    array([[-1.342, -0.447,  0.447,  1.342]])
    """

    def __init__(self, shape: Any, activation: Callable = identity, *, eps: float = 1e-5,
                 affine: bool = True, dtype: Any = np.float32):
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
        self.weight = np.ones(shape, dtype) if affine else None
        self.bias = np.zeros(shape, dtype) if affine else None
        self.shape = shape
        self.activation = activation
        self.eps = float(eps)
        self._freeze()

    def __call__(self, x: Any) -> Any:
        s = _shape(x)
        k = len(self.shape)
        if tuple(s[len(s) - k:]) != self.shape or len(s) < k:
            raise shape_error(self, x, f"(..., {', '.join(map(str, self.shape))})")
        axes = tuple(range(len(s) - k, len(s)))
        mean = np.mean(x, axis=axes, keepdims=True)
        xc = x - mean
        var = np.mean(xc * xc, axis=axes, keepdims=True)
        y = xc / np.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight + self.bias
        return y if self.activation is identity else self.activation(y)

    @property
    def _ndims(self) -> dict[str, int]:  # type: ignore[override]
        return {"weight": len(self.shape), "bias": len(self.shape)}

    def _repr_inner(self) -> str:
        shape = self.shape[0] if len(self.shape) == 1 else self.shape
        parts = [str(shape)]
        if self.activation is not identity:
            parts.append(activation_name(self.activation))
        opts = []
        if self.eps != 1e-5:
            opts.append(f"eps={self.eps:g}")
        if self.weight is None:
            opts.append("affine=False")
        return f"LayerNorm({', '.join(parts)}{'; ' + ', '.join(opts) if opts else ''})"


def _check_activation(layer: str, activation: Any) -> None:
    if not callable(activation):
        raise TypeError(f"{layer}: activation must be a function, got {activation!r} (eps and "
                        f"the other options are keyword arguments: eps=...)")


def _channel_affine(layer: Any, y: Any, ndim: int) -> Any:
    """``activation(y * weight + bias)`` with per-channel (axis 1) weight and bias."""
    if layer.weight is not None:
        bshape = (1, layer.num_channels) + (1,) * (ndim - 2)
        y = y * np.reshape(layer.weight, bshape) + np.reshape(layer.bias, bshape)
    return y if layer.activation is identity else layer.activation(y)


def _opts(opts: list) -> str:
    return "; " + ", ".join(opts) if opts else ""


@functor("weight", "bias")
class GroupNorm(Module):
    """Normalise each example over groups of channels (PyTorch's ``GroupNorm``).

    The ``num_channels`` channels (axis 1 of ``(N, C, ...)``) are split into
    ``num_groups`` consecutive groups; each group of each example is normalised
    by its own mean and biased variance over its channels and every spatial
    position, then ``activation(y * weight + bias)`` with one ``weight`` (ones)
    and ``bias`` (zeros) per channel (``affine=False``: none). The same in
    training and inference. ``num_groups=1`` is a LayerNorm over ``(C, ...)``
    with per-channel affine; ``num_groups=C`` is an InstanceNorm.

    >>> import numpy as np
    >>> g = GroupNorm(2, 4)
    >>> g
    GroupNorm(2, 4)  # 8 parameters, 0.031 KiB
    >>> g(np.arange(8.0).reshape(1, 4, 2)).round(3).tolist()
    [[[-1.342, -0.447], [0.447, 1.342], [-1.342, -0.447], [0.447, 1.342]]]
    """

    _ndims = {"weight": 1, "bias": 1}

    def __init__(self, num_groups: int, num_channels: int, activation: Callable = identity, *,
                 eps: float = 1e-5, affine: bool = True, dtype: Any = np.float32):
        g, c = int(num_groups), int(num_channels)
        if g < 1 or c % g:
            raise ValueError(f"GroupNorm: num_channels ({c}) must be divisible by num_groups "
                             f"({g})")
        _check_activation("GroupNorm", activation)
        self.weight = np.ones(c, dtype) if affine else None
        self.bias = np.zeros(c, dtype) if affine else None
        self.num_groups, self.num_channels = g, c
        self.activation = activation
        self.eps = float(eps)
        self._freeze()

    def __call__(self, x: Any) -> Any:
        s = _shape(x)
        if len(s) < 2 or s[1] != self.num_channels:
            raise shape_error(self, x, f"(N, {self.num_channels}, ...)")
        xg = np.reshape(x, (s[0], self.num_groups, -1))
        mean = np.mean(xg, axis=2, keepdims=True)
        xc = xg - mean
        var = np.mean(xc * xc, axis=2, keepdims=True)
        y = np.reshape(xc / np.sqrt(var + self.eps), s)
        return _channel_affine(self, y, len(s))

    def _repr_inner(self) -> str:
        act = "" if self.activation is identity else f", {activation_name(self.activation)}"
        opts = [f"eps={self.eps:g}"] if self.eps != 1e-5 else []
        if self.weight is None:
            opts.append("affine=False")
        return f"GroupNorm({self.num_groups}, {self.num_channels}{act}{_opts(opts)})"


@functor("weight", "bias", "running_mean", "running_var", trainable=("weight", "bias"))
class InstanceNorm(Module):
    """Normalise each channel of each example over its spatial axes (PyTorch's ``InstanceNorm``).

    Inputs ``(N, C, *spatial)`` with at least one spatial axis (1-, 2- or 3-D).
    ``y = activation((x - mean) / sqrt(var + eps) * weight + bias)`` with the
    mean and biased variance of each ``(n, c)`` slice; ``weight`` and ``bias``
    per channel only with ``affine=True`` (the default is ``False``, as PyTorch
    and Flux).

    ``track_stats=True`` (PyTorch's ``track_running_stats``) keeps running
    statistics: training mode (``nn.apply(model, x, train=True)``) still
    normalises with each instance's statistics and moves ``running_mean`` and
    ``running_var`` towards their batch averages (``momentum``; the variance
    unbiased), as PyTorch; inference then uses the running statistics. Without
    it (the default) training and inference are the same.

    >>> import numpy as np
    >>> InstanceNorm(2)(np.array([[[1.0, 3.0], [0.0, 4.0]]])).round(3).tolist()
    [[[-1.0, 1.0], [-1.0, 1.0]]]
    """

    _ndims = {"weight": 1, "bias": 1, "running_mean": 1, "running_var": 1}

    def __init__(self, num_channels: int, activation: Callable = identity, *, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = False, track_stats: bool = False,
                 dtype: Any = np.float32):
        c = int(num_channels)
        _check_activation("InstanceNorm", activation)
        _channel_arrays(self, c, dtype, affine, track_stats)
        self.num_channels = c
        self.activation = activation
        self.eps = float(eps)
        self.momentum = float(momentum)
        self._freeze()

    def _check(self, x: Any) -> tuple:
        s = _shape(x)
        if len(s) < 3 or s[1] != self.num_channels:
            raise shape_error(self, x, f"(N, {self.num_channels}, *spatial) with at least one "
                                       f"spatial axis")
        return s

    def _instance(self, x: Any) -> tuple:
        s = self._check(x)
        axes = tuple(range(2, len(s)))
        mean = np.mean(x, axis=axes, keepdims=True)
        xc = x - mean
        var = np.mean(xc * xc, axis=axes, keepdims=True)
        y = _channel_affine(self, xc / np.sqrt(var + self.eps), len(s))
        return y, mean, var, int(np.prod(s[2:]))

    def __call__(self, x: Any) -> Any:
        if self.running_mean is None:
            return self._instance(x)[0]
        s = self._check(x)
        bshape = (1, self.num_channels) + (1,) * (len(s) - 2)
        y = ((x - np.reshape(self.running_mean, bshape))
             / np.sqrt(np.reshape(self.running_var, bshape) + self.eps))
        return _channel_affine(self, y, len(s))

    def apply(self, x: Any, *, train: bool = False, rng: Any = None
              ) -> tuple[Any, "InstanceNorm"]:
        if not train or self.running_mean is None:
            return self(x) if not train else self._instance(x)[0], self
        y, mean, var, n = self._instance(x)
        if n < 2:
            raise ValueError(f"{self._repr_inner()} in training mode needs more than one value "
                             f"per channel to estimate a variance; got input of shape "
                             f"{_shape(x)}")
        c = self.num_channels
        # PyTorch's update: the batch average of the per-instance statistics.
        mean = stop_gradient(np.mean(np.reshape(mean, (-1, c)), axis=0))
        var = stop_gradient(np.mean(np.reshape(var, (-1, c)), axis=0)) * (n / (n - 1))
        m, dtype = self.momentum, self.running_mean.dtype
        new = object.__new__(InstanceNorm)
        for k, v in self.__dict__.items():
            object.__setattr__(new, k, v)
        object.__setattr__(new, "running_mean", _as((1 - m) * self.running_mean + m * mean, dtype))
        object.__setattr__(new, "running_var", _as((1 - m) * self.running_var + m * var, dtype))
        return y, new

    def _repr_inner(self) -> str:
        act = "" if self.activation is identity else f", {activation_name(self.activation)}"
        opts = [f"eps={self.eps:g}"] if self.eps != 1e-5 else []
        if self.momentum != 0.1 and self.running_mean is not None:
            opts.append(f"momentum={self.momentum:g}")
        if self.weight is not None:
            opts.append("affine=True")
        if self.running_mean is not None:
            opts.append("track_stats=True")
        return f"InstanceNorm({self.num_channels}{act}{_opts(opts)})"
