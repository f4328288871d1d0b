"""Initialisers: ``init(rng, shape, dtype=np.float32) -> array``.

Every initialiser has that signature: ``rng`` is a random key
(``ff.random.key(0)``), a seed, a ``np.random.Generator`` or ``None`` (fresh
entropy), ``shape`` a tuple. A key draws with ``ff.random`` (on the key's device,
and traceable: ``ff.vmap(lambda k: init(k, shape))(keys)`` gives one array per
key); the others draw with NumPy. Layers call ``init(rng, shape, dtype)`` for their
weights, so any function of that form can be passed as ``init=``. ``normal(std)``
and ``uniform(scale)`` *return* an initialiser; the Glorot and Kaiming ones take
``gain=`` as a keyword
(``functools.partial(kaiming_normal, gain=1.0)``).

Fans follow PyTorch's weight layout ``(out, in, *kernel)``: ``fan_in = in *
prod(kernel)``, ``fan_out = out * prod(kernel)``; a vector has ``fan_in =
fan_out = len``.

>>> import numpy as np
>>> from funcflux import nn
>>> w = nn.glorot_uniform(0, (3, 2))
>>> w.shape, w.dtype, bool(np.all(np.abs(w) <= np.sqrt(6 / 5)))
((3, 2), dtype('float32'), True)
>>> import funcflux as ff
>>> nn.glorot_uniform(ff.random.key(0), (3, 2)).dtype
dtype('float32')
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import random
from .base import as_rng, as_rng_or_key

__all__ = ["glorot_uniform", "glorot_normal", "kaiming_uniform", "kaiming_normal", "zeros",
           "ones", "normal", "uniform", "fans"]

Init = Callable[..., Any]


def fans(shape: tuple) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` laid out ``(out, in, *kernel)``."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _shape(shape: Any) -> tuple:
    return (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)


def _cast(a: np.ndarray, dtype: Any) -> np.ndarray:
    return np.asarray(a, dtype=dtype)


def _uniform(rng: Any, shape: tuple, dtype: Any, limit: float) -> Any:
    """Uniform on ``[-limit, limit)``: with ``ff.random`` for a key, else NumPy."""
    rng = as_rng_or_key(rng, "nn.init")
    if rng is None or isinstance(rng, np.random.Generator):
        return _cast(as_rng(rng).uniform(-limit, limit, shape), dtype)
    return random.uniform(rng, shape, dtype, -limit, limit)


def _normal(rng: Any, shape: tuple, dtype: Any, std: float, mean: float = 0.0) -> Any:
    """Normal with ``mean`` and ``std``: with ``ff.random`` for a key, else NumPy."""
    rng = as_rng_or_key(rng, "nn.init")
    if rng is None or isinstance(rng, np.random.Generator):
        return _cast(as_rng(rng).normal(mean, std, shape), dtype)
    dt = np.dtype(dtype)
    return random.normal(rng, shape, dt) * dt.type(std) + dt.type(mean)


def glorot_uniform(rng: Any, shape: Any, dtype: Any = np.float32, *,
                   gain: float = 1.0) -> np.ndarray:
    """Uniform on ``±gain * sqrt(6 / (fan_in + fan_out))`` (Flux's default for weights)."""
    shape = _shape(shape)
    fi, fo = fans(shape)
    limit = gain * math.sqrt(6.0 / (fi + fo))
    return _uniform(rng, shape, dtype, limit)


def glorot_normal(rng: Any, shape: Any, dtype: Any = np.float32, *,
                  gain: float = 1.0) -> np.ndarray:
    """Normal with std ``gain * sqrt(2 / (fan_in + fan_out))``."""
    shape = _shape(shape)
    fi, fo = fans(shape)
    return _normal(rng, shape, dtype, gain * math.sqrt(2.0 / (fi + fo)))


def kaiming_uniform(rng: Any, shape: Any, dtype: Any = np.float32, *,
                    gain: float = math.sqrt(2)) -> np.ndarray:
    """Uniform on ``±gain * sqrt(3 / fan_in)`` (He initialisation; gain sqrt(2) suits relu)."""
    shape = _shape(shape)
    limit = gain * math.sqrt(3.0 / fans(shape)[0])
    return _uniform(rng, shape, dtype, limit)


def kaiming_normal(rng: Any, shape: Any, dtype: Any = np.float32, *,
                   gain: float = math.sqrt(2)) -> np.ndarray:
    """Normal with std ``gain / sqrt(fan_in)``."""
    shape = _shape(shape)
    return _normal(rng, shape, dtype, gain / math.sqrt(fans(shape)[0]))


def zeros(rng: Any, shape: Any, dtype: Any = np.float32) -> np.ndarray:
    """All zeros (``rng`` is ignored)."""
    return np.zeros(_shape(shape), dtype=dtype)


def ones(rng: Any, shape: Any, dtype: Any = np.float32) -> np.ndarray:
    """All ones (``rng`` is ignored)."""
    return np.ones(_shape(shape), dtype=dtype)


def normal(std: float = 0.01, mean: float = 0.0) -> Init:
    """An initialiser drawing from ``N(mean, std^2)``.

    >>> normal(0.5)(0, (2, 2)).dtype
    dtype('float32')
    """
    def init(rng: Any, shape: Any, dtype: Any = np.float32) -> np.ndarray:
        return _normal(rng, _shape(shape), dtype, std, mean)
    init.__name__ = f"normal(std={std})"
    return init


def uniform(scale: float = 0.05) -> Init:
    """An initialiser drawing uniformly from ``[-scale, scale]``."""
    def init(rng: Any, shape: Any, dtype: Any = np.float32) -> np.ndarray:
        return _uniform(rng, _shape(shape), dtype, scale)
    init.__name__ = f"uniform(scale={scale})"
    return init
