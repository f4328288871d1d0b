"""Fused primitives for neural networks, kept for numerical stability and speed.

``logsumexp`` is one primitive; ``softmax`` and ``log_softmax`` are written over
it, so all three stay finite for inputs of any magnitude and their gradients
are exact (``d logsumexp = softmax``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from .common import ndim, norm_axis
from .reductions import _arr, _expand_back, _reduce_batch, sum_p

__all__ = ["logsumexp", "softmax", "log_softmax"]


def _logsumexp_impl(x: Any, axis: tuple | None, keepdims: bool) -> Any:
    xp = array_module(x)
    m = xp.max(x, axis=axis, keepdims=True)
    # An infinite max (all -inf, or a +inf) must not be subtracted: inf - inf is nan.
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    with np.errstate(divide="ignore"):  # log(0) = -inf for an all -inf slice
        out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def _softmax_of(ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    return fnp.exp(x - _expand_back(ans, x, axis, keepdims))


# A primitive for numerical stability: shifted by the max, its derivative is softmax.
logsumexp_p = primitive("logsumexp", _logsumexp_impl)
logsumexp_p.def_vjp(lambda ct, ans, x, axis, keepdims:
                    _expand_back(ct, x, axis, keepdims) * _softmax_of(ans, x, axis, keepdims))
logsumexp_p.def_jvp(lambda t, ans, x, axis, keepdims:
                    sum_p(t * _softmax_of(ans, x, axis, keepdims), axis=axis, keepdims=keepdims))
logsumexp_p.def_batch(_reduce_batch(logsumexp_p))


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """``log(sum(exp(x), axis))``, computed without overflow.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> float(fnp.logsumexp(np.array([1000.0, 1000.0])))  # doctest: +ELLIPSIS
    1000.693...
    """
    x = _arr(x)
    return logsumexp_p(x, axis=norm_axis(axis, ndim(x)), keepdims=bool(keepdims))


def log_softmax(x: Any, axis: Any = -1) -> Any:
    """``x - logsumexp(x, axis)``: log-probabilities along ``axis``.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.log_softmax(np.array([0.0, 1000.0]))
    array([-1000.,     0.])
    """
    return x - logsumexp(x, axis, keepdims=True)


def softmax(x: Any, axis: Any = -1) -> Any:
    """``exp(x - logsumexp(x, axis))``: probabilities along ``axis``.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.softmax(np.array([-1000.0, 1000.0]))
    array([0., 1.])
    """
    return fnp.exp(log_softmax(x, axis))
