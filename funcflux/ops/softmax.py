"""The softmax family: ``logsumexp`` as one primitive for numerical stability.

``softmax`` and ``log_softmax`` are written over it, so all three stay finite for
inputs of any magnitude and their gradients are exact (``d logsumexp = softmax``).
The binders here (``logsumexp(x, axis, keepdims)``, ``log_softmax(x, axis)``,
``softmax(x, axis)``) take arrays; the NumPy surface (``numpy/_softmax.py``) holds
the public functions of the same names.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from .common import ndim, norm_axis
from .base import expand_back as _expand_back, reduce_batch as _reduce_batch, sum_p
from .elementwise import exp


def _short_rows(x: Any, axis: Any) -> bool:
    """Whether ``x`` is a NumPy ``(N, C)`` array reduced over a short axis 1 (class scores)."""
    return (type(x) is np.ndarray and x.ndim == 2 and axis in (1, (1,))
            and x.shape[1] <= 64 and x.shape[0] >= 2 * x.shape[1])


def _exp_shifted_t(z: Any) -> Any:
    """For a NumPy ``(N, C)`` ``z`` with short rows: ``(e, s, m)`` where ``m`` is each row's
    max, ``e = exp(z - m)`` transposed to ``(C, N)`` and ``s`` its row sums; or None when
    some max is not finite. NumPy reduces over a short last axis several times slower than
    over the first, so this works on a transposed copy."""
    e = z.T.copy()  # C-ordered (C, N), never a view of z: it is overwritten below
    m = np.maximum.reduce(e, axis=0)  # the ufunc's own reduce: no Python-level wrapper
    if not np.logical_and.reduce(np.isfinite(m)):
        return None
    e -= m
    np.exp(e, out=e)
    return e, np.add.reduce(e, axis=0), m


def _lse_keepdims(x: Any, axis: tuple | None) -> Any:
    """``logsumexp`` over ``axis``, the reduced axes kept with size 1."""
    if _short_rows(x, axis):
        r = _exp_shifted_t(x)
        if r is not None:
            _, s, m = r
            out = np.log(s)
            out += m
            return out[:, None]
    xp = array_module(x)
    m = x.max(axis=axis, keepdims=True)  # the method skips NumPy's dispatch layer
    if xp is np and np.isfinite(m).all():
        # The common case, checked on the host only (on a GPU the check would wait for
        # it): a finite max leaves a sum of at least 1, so no fix-up and no log(0).
        return np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    # An infinite max (all -inf, or a +inf) must not be subtracted: inf - inf is nan.
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    with np.errstate(divide="ignore"):  # log(0) = -inf for an all -inf slice
        return xp.log(xp.exp(x - m).sum(axis=axis, keepdims=True)) + m


def _logsumexp_impl(x: Any, axis: tuple | None, keepdims: bool) -> Any:
    out = _lse_keepdims(x, axis)
    return out if keepdims else array_module(out).squeeze(out, axis=axis)


def _softmax_of(ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    return exp(x - _expand_back(ans, x, axis, keepdims))


# A primitive for numerical stability: shifted by the max, its derivative is softmax.
logsumexp_p = primitive("logsumexp", _logsumexp_impl)
logsumexp_p.def_abstract(abstract.reduction(_logsumexp_impl))
logsumexp_p.def_vjp(lambda ct, ans, x, axis, keepdims:
                    _expand_back(ct, x, axis, keepdims) * _softmax_of(ans, x, axis, keepdims))
logsumexp_p.def_jvp(lambda t, ans, x, axis, keepdims:
                    sum_p(t * _softmax_of(ans, x, axis, keepdims), axis=axis, keepdims=keepdims))
logsumexp_p.def_batch(_reduce_batch(logsumexp_p))


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """``log(sum(exp(x), axis))``, computed without overflow (``axis``: an int, a tuple or
    ``None``, negative allowed)."""
    return logsumexp_p(x, axis=norm_axis(axis, ndim(x)), keepdims=bool(keepdims))


def log_softmax(x: Any, axis: Any = -1) -> Any:
    """``x - logsumexp(x, axis)``: log-probabilities along ``axis``."""
    return x - logsumexp(x, axis, keepdims=True)


def softmax(x: Any, axis: Any = -1) -> Any:
    """``exp(x - logsumexp(x, axis))``: probabilities along ``axis``."""
    return exp(log_softmax(x, axis))
