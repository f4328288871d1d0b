"""Activation functions: plain functions of NumPy calls, stable for inputs of any size.

Each one is written with NumPy functions on its argument, so it runs at NumPy's
speed on plain arrays and is differentiated and vectorised when the argument
is traced (NumPy hands tracers to funcflux). None of them overflows at
``|x| = 1000`` and their gradients there are exact (0 or 1, never nan):

- ``sigmoid`` and ``softplus`` go through ``np.logaddexp``, whose derivative
  ``exp(x - logaddexp(x, y))`` never overflows;
- branches that would overflow are never evaluated on the large side
  (``elu`` takes ``expm1`` of ``min(x, 0)``), because ``np.where`` passes a zero
  cotangent to the unselected branch and ``0 * inf`` would be nan;
- kinks take the derivative of the branch Flux and PyTorch take: ``relu'(0) = 0``
  (``relu`` is a primitive of its own; ``np.maximum(x, 0)`` would give 0.5, funcflux's
  rule for ties), ``leakyrelu'(0) = a``, ``hardtanh'(±1) = 1``.

>>> import numpy as np
>>> from funcflux import nn
>>> nn.relu(np.array([-1.0, 2.0]))
array([0., 2.])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import numpy as fnp
from ..ops.nn import relu_p as _relu

__all__ = ["identity", "relu", "sigmoid", "σ", "logsigmoid", "tanh", "softplus", "softsign",
           "gelu", "leakyrelu", "elu", "selu", "swish", "hardtanh", "softmax", "logsoftmax",
           "logsumexp"]


def identity(x: Any) -> Any:
    """``x`` unchanged (the default activation of every layer)."""
    return x


def relu(x: Any) -> Any:
    """``max(x, 0)``, with derivative 0 at 0 (as Flux and PyTorch); ``relu(-inf) = 0``.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(relu(x)))(np.array([-1.0, 0.0, 1.0]))
    array([0., 0., 1.])
    """
    # One fused primitive (funcflux.ops.nn): a single pass forward, compare and multiply back.
    return _relu(x)


def sigmoid(x: Any) -> Any:
    """``1 / (1 + exp(-x))``, computed as ``exp(-logaddexp(0, -x))`` so it never overflows.

    >>> import numpy as np
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    return np.exp(-np.logaddexp(0, -x))


σ = sigmoid  # Flux's spelling


def logsigmoid(x: Any) -> Any:
    """``log(sigmoid(x)) = -softplus(-x)``, finite for any ``x``."""
    return -np.logaddexp(0, -x)


def tanh(x: Any) -> Any:
    """``np.tanh`` (named here so models print ``Dense(2 => 3, tanh)``)."""
    return np.tanh(x)


def softplus(x: Any) -> Any:
    """``log(1 + exp(x))`` as ``logaddexp(x, 0)``: no overflow, derivative ``sigmoid(x)``.

    >>> import numpy as np
    >>> softplus(np.array([-1000.0, 1000.0]))
    array([   0., 1000.])
    """
    return np.logaddexp(x, 0)


def softsign(x: Any) -> Any:
    """``x / (1 + |x|)``."""
    return x / (1 + np.abs(x))


_GELU_C = float(np.sqrt(2 / np.pi))


def gelu(x: Any) -> Any:
    """GELU with the tanh approximation (Flux's ``gelu`` default):
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    The exact form needs ``erf``, which NumPy lacks; the approximation differs
    from it by less than 1e-3.

    >>> import numpy as np
    >>> gelu(np.array([0.0, 1.0])).round(4)
    array([0.    , 0.8412])
    """
    return 0.5 * x * (1 + np.tanh(_GELU_C * (x + 0.044715 * (x * x * x))))


def leakyrelu(x: Any, a: float = 0.01) -> Any:
    """``x`` where positive, ``a * x`` elsewhere (derivative ``a`` at 0).

    Use ``functools.partial(leakyrelu, a=0.2)`` or a lambda for another slope.
    """
    return np.where(x > 0, x, a * x)


def _negative_part(x: Any) -> Any:
    # min(x, 0) whose derivative at 0 is 1 (the left branch), and that never lets
    # exp see a large positive value.
    return np.where(x > 0, 0, x)


def elu(x: Any, alpha: float = 1.0) -> Any:
    """``x`` where positive, ``alpha * (exp(x) - 1)`` elsewhere."""
    return np.where(x > 0, x, alpha * np.expm1(_negative_part(x)))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x: Any) -> Any:
    """Scaled ELU with the self-normalising constants (``scale * elu(x, alpha)``)."""
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(_negative_part(x)))


def swish(x: Any) -> Any:
    """``x * sigmoid(x)`` (also called SiLU)."""
    return x * sigmoid(x)


def hardtanh(x: Any) -> Any:
    """``x`` clipped to ``[-1, 1]`` (derivative 1 on the closed interval, 0 outside)."""
    return np.where(x < -1, -1, np.where(x > 1, 1, x))


def softmax(x: Any, axis: Any = -1) -> Any:
    """``exp(x) / sum(exp(x))`` along ``axis`` (default: the last, the class axis).

    >>> import numpy as np
    >>> softmax(np.array([[-1000.0, 1000.0]]))
    array([[0., 1.]])
    """
    return fnp.softmax(x, axis)


def logsoftmax(x: Any, axis: Any = -1) -> Any:
    """``x - logsumexp(x, axis, keepdims=True)``: log-probabilities along ``axis``."""
    return fnp.log_softmax(x, axis)


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """``log(sum(exp(x), axis))`` without overflow (all axes by default, as NumPy/SciPy).

    >>> import numpy as np
    >>> float(logsumexp(np.array([1000.0, 1000.0]))).__round__(4)
    1000.6931
    """
    return fnp.logsumexp(x, axis=axis, keepdims=keepdims)
