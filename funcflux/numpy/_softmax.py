"""``logsumexp``, ``softmax`` and ``log_softmax``: stable for inputs of any magnitude.

Each is written over the ``logsumexp`` primitive of ``funcflux.ops.softmax``; lists and
Python numbers are taken as arrays (constants).
"""
from __future__ import annotations

from typing import Any

from ..ops.common import ndim, norm_axis
from ..ops.elementwise import exp
from ..ops.common import as_array as _arr
from ..ops.softmax import logsumexp_p

__all__ = ["logsumexp", "softmax", "log_softmax"]


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
    return exp(log_softmax(x, axis))
