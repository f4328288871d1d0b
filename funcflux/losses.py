"""Loss functions (Flux's definitions), each ``loss(yhat, y, *, agg=np.mean, ...)``.

``agg`` reduces the per-example (or per-element) losses: ``np.mean`` by default,
``np.sum``, any callable, or ``None`` for no reduction. Targets ``y`` have the
prediction's shape (one-hot or probabilities for the cross-entropies); the
cross-entropies also take integer class labels with the class axis removed
(shape ``(N,)`` for ``(N, C)`` predictions). ``label_smoothing=a`` replaces
targets by ``y * (1 - a) + a / C`` (``a / 2`` for the binary losses). The class
axis is ``axis=-1`` (batch-first; Flux's ``dims``).

A target whose shape differs from the prediction's is an error, not a
broadcast: ``(N, 1)`` predictions against ``(N,)`` targets would otherwise
silently give an ``(N, N)`` loss.

>>> import numpy as np
>>> from funcflux import losses
>>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
>>> float(losses.logitcrossentropy(logits, np.array([0, 1]))).__round__(4)
0.1671
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import numpy as fnp
from .nn.activations import relu
from .nn.base import array_module_of
from .ops.nn import softmax_cross_entropy
from .ops.common import shape as _shape

__all__ = ["mse", "mae", "crossentropy", "logitcrossentropy", "binarycrossentropy",
           "logitbinarycrossentropy", "huber_loss", "kldivergence", "hinge_loss",
           "squared_hinge_loss", "label_smoothing"]

Agg = Callable[[Any], Any] | None

SHAPES_DIFFER = ("{loss}: prediction of shape {yhat} and target of shape {y} differ; give "
                 "targets of the prediction's shape{labels} (reshape rather than broadcast).")

EMPTY_MEAN = ("{loss}: the prediction has shape {shape}, with no examples; their mean is "
              "undefined (NaN). Skip empty batches (DataLoader(..., partial=False) when "
              "sharding), or pass agg=np.sum, which gives 0.")


def _dtype(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    d = np.dtype(d) if d is not None else np.result_type(x)
    return d if d.kind == "f" else np.dtype(np.float64)


def _reduce(name: str, agg: Agg, loss: Any, yhat: Any) -> Any:
    if agg is np.mean or agg is fnp.mean:  # the default: funcflux's mean, past NumPy's dispatch
        if 0 in _shape(loss):
            raise ValueError(EMPTY_MEAN.format(loss=name, shape=_shape(yhat)))
        return fnp.mean(loss)
    return loss if agg is None else agg(loss)


def _same_shape(name: str, yhat: Any, y: Any, labels: str = "") -> Any:
    if _shape(yhat) != _shape(y):
        raise ValueError(SHAPES_DIFFER.format(loss=name, yhat=_shape(yhat), y=_shape(y),
                                              labels=labels))
    return y


def _as_float(y: Any, dtype: Any) -> Any:
    kind = getattr(getattr(y, "dtype", None), "kind", None)
    if kind is None:
        return np.asarray(y, dtype)
    return y if kind == "f" else y.astype(dtype)


def label_smoothing(y: Any, a: float, *, axis: int = -1, binary: bool = False) -> Any:
    """``y * (1 - a) + a / C`` (C classes along ``axis``), or ``+ a / 2`` with ``binary=True``."""
    if not 0 <= a <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {a}")
    n = 2 if binary else _shape(y)[axis]
    return y * (1 - a) + a / n


def _labels(name: str, yhat: Any, y: Any, axis: int) -> tuple[Any, bool]:
    """``(y, True)`` for integer class labels (range-checked), else ``(y, False)``."""
    s = _shape(yhat)
    if not s:
        raise ValueError(f"{name}: the prediction needs a class axis; got a scalar")
    ax = axis % len(s)
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    kind = getattr(getattr(y, "dtype", None), "kind", None)
    if kind in ("i", "u") and _shape(y) == s[:ax] + s[ax + 1:]:
        c = s[ax]
        if isinstance(y, np.ndarray) and y.size and (y.min() < 0 or y.max() >= c):
            bad = y[(y < 0) | (y >= c)].flat[0]
            raise IndexError(f"{name}: class label {bad} is out of range for {c} classes "
                             f"(axis {axis} of the prediction, shape {s})")
        return y, True
    return y, False


def _class_targets(name: str, yhat: Any, y: Any, axis: int, smoothing: float) -> Any:
    """Probability targets of ``yhat``'s shape from one-hot/probabilities or integer labels."""
    y, labels = _labels(name, yhat, y, axis)
    return _targets(name, yhat, y, labels, axis, smoothing)


def _targets(name: str, yhat: Any, y: Any, labels: bool, axis: int, smoothing: float) -> Any:
    s = _shape(yhat)
    ax = axis % len(s)
    dtype = _dtype(yhat)
    if labels:
        c = s[ax]
        classes = array_module_of(yhat).arange(c).reshape((c,) + (1,) * (len(s) - 1 - ax))
        onehot = np.expand_dims(y, ax) == classes  # traced labels (vmap) compare too
        y = onehot.astype(dtype)
    else:
        _same_shape(name, yhat, y, f", or integer labels of shape {s[:ax] + s[ax + 1:]}")
        y = _as_float(y, dtype)
    return label_smoothing(y, smoothing, axis=ax) if smoothing else y


def _eps(yhat: Any, eps: float | None) -> float:
    return float(np.finfo(_dtype(yhat)).eps) if eps is None else eps


# ----------------------------------------------------------------------------- regression
def mse(yhat: Any, y: Any, *, agg: Agg = np.mean) -> Any:
    """Mean squared error ``agg((yhat - y)^2)``.

    >>> float(mse(np.array([1.0, 2.0]), np.array([1.0, 4.0])))
    2.0
    """
    d = yhat - _same_shape("mse", yhat, y)
    return _reduce("mse", agg, d * d, yhat)


def mae(yhat: Any, y: Any, *, agg: Agg = np.mean) -> Any:
    """Mean absolute error ``agg(|yhat - y|)``."""
    return _reduce("mae", agg, np.abs(yhat - _same_shape("mae", yhat, y)), yhat)


def huber_loss(yhat: Any, y: Any, *, agg: Agg = np.mean, delta: float = 1.0) -> Any:
    """``d^2 / 2`` where ``|d| < delta``, else ``delta (|d| - delta / 2)``, ``d = yhat - y``."""
    d = yhat - _same_shape("huber_loss", yhat, y)
    a = np.abs(d)
    return _reduce("huber_loss", agg,
                   np.where(a < delta, 0.5 * (d * d), delta * (a - 0.5 * delta)), yhat)


# ----------------------------------------------------------------------------- classification
def crossentropy(yhat: Any, y: Any, *, axis: int = -1, agg: Agg = np.mean,
                 eps: float | None = None, label_smoothing: float = 0.0) -> Any:
    """``agg(-sum(y * log(yhat + eps), axis))`` for predicted *probabilities* ``yhat``.

    ``eps`` defaults to the machine epsilon of ``yhat``'s dtype (as Flux). Prefer
    :func:`logitcrossentropy` on logits: it is exact and stable.
    """
    y = _class_targets("crossentropy", yhat, y, axis, label_smoothing)
    return _reduce("crossentropy", agg,
                   -np.sum(y * np.log(yhat + _eps(yhat, eps)), axis=axis), yhat)


def logitcrossentropy(yhat: Any, y: Any, *, axis: int = -1, agg: Agg = np.mean,
                      label_smoothing: float = 0.0) -> Any:
    """``agg(-sum(y * logsoftmax(yhat, axis), axis))`` for *logits* ``yhat`` (stable).

    One fused primitive computes the per-example losses (``logsumexp`` minus the
    label's logit; backward, softmax minus the targets): integer labels never
    become one-hot floats, unless ``label_smoothing`` asks for dense targets.

    >>> float(logitcrossentropy(np.array([[0.0, 1000.0]]), np.array([0])))
    1000.0
    """
    y, labels = _labels("logitcrossentropy", yhat, y, axis)
    if label_smoothing or not labels:  # dense targets
        y = _targets("logitcrossentropy", yhat, y, labels, axis, label_smoothing)
    return _reduce("logitcrossentropy", agg, softmax_cross_entropy(yhat, y, axis), yhat)


def kldivergence(yhat: Any, y: Any, *, axis: int = -1, agg: Agg = np.mean,
                 eps: float | None = None) -> Any:
    """``agg(sum(y * log(y) - y * log(yhat + eps), axis))``: KL(y || yhat), ``0 log 0 = 0``."""
    y = _class_targets("kldivergence", yhat, y, axis, 0.0)
    pos = y > 0
    ylogy = np.where(pos, y * np.log(np.where(pos, y, 1)), 0)
    return _reduce("kldivergence", agg,
                   np.sum(ylogy - y * np.log(yhat + _eps(yhat, eps)), axis=axis), yhat)


def _binary_targets(name: str, yhat: Any, y: Any, smoothing: float) -> Any:
    y = _as_float(_same_shape(name, yhat, y), _dtype(yhat))
    return label_smoothing(y, smoothing, binary=True) if smoothing else y


def binarycrossentropy(yhat: Any, y: Any, *, agg: Agg = np.mean, eps: float | None = None,
                       label_smoothing: float = 0.0) -> Any:
    """``agg(-y log(yhat + eps) - (1 - y) log(1 - yhat + eps))`` for probabilities ``yhat``."""
    y = _binary_targets("binarycrossentropy", yhat, y, label_smoothing)
    e = _eps(yhat, eps)
    return _reduce("binarycrossentropy", agg,
                   -(y * np.log(yhat + e) + (1 - y) * np.log(1 - yhat + e)), yhat)


def logitbinarycrossentropy(yhat: Any, y: Any, *, agg: Agg = np.mean,
                            label_smoothing: float = 0.0) -> Any:
    """Binary cross-entropy on logits: ``agg((1 - y) * yhat + softplus(-yhat))`` (stable)."""
    y = _binary_targets("logitbinarycrossentropy", yhat, y, label_smoothing)
    return _reduce("logitbinarycrossentropy", agg, (1 - y) * yhat + np.logaddexp(0, -yhat),
                   yhat)


def hinge_loss(yhat: Any, y: Any, *, agg: Agg = np.mean) -> Any:
    """``agg(max(0, 1 - yhat * y))`` for targets in {-1, 1}."""
    return _reduce("hinge_loss", agg, relu(1 - yhat * _same_shape("hinge_loss", yhat, y)), yhat)


def squared_hinge_loss(yhat: Any, y: Any, *, agg: Agg = np.mean) -> Any:
    """``agg(max(0, 1 - yhat * y)^2)`` for targets in {-1, 1}."""
    m = relu(1 - yhat * _same_shape("squared_hinge_loss", yhat, y))
    return _reduce("squared_hinge_loss", agg, m * m, yhat)
