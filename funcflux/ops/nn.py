"""Fused primitives for the layers of an MLP, kept for speed.

``relu``, ``dense`` (``x @ w.T + b``) and ``softmax_cross_entropy`` are the layers of an
MLP as single primitives (PyTorch's relu, linear and cross_entropy), doing the array work
of hand-written NumPy. The cross-entropy takes its logsumexp from ``ops/softmax.py``.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from ..core.trace import module_value
from .common import ndim, norm_axis
from .base import astype, reshape_p, transpose_p
from .base import batch_size, bdim_to_front, elementwise_batch, move_bdim
from .common import shape as _shape
from .base import unbroadcast
from .elementwise import exp
from .linalg import _mT, matmul_p
from .common import as_array as _arr
from .reductions import sum_p
from .softmax import _exp_shifted_t, _logsumexp_impl, _lse_keepdims, _short_rows, logsumexp_p

__all__: list[str] = []

# The layers of an MLP as single primitives.
#
# Built from small primitives, a Dense + relu + cross-entropy step runs a transpose, a
# matmul, an add, a compare, a multiply, a logsumexp, a subtraction, a one-hot product and
# two sums, each allocating and dispatching, forward and backward. The three primitives
# below do what a careful NumPy programmer writes instead (one GEMM with the bias added in
# place; the loss from logsumexp and the picked logit; softmax minus one-hot backward).
# Their rules are written with primitives like any other, so every derivative of them,
# under vmap too, keeps working.


def _cast(g: Any, like: Any) -> Any:
    """``g`` in ``like``'s dtype (a float32 argument gets a float32 cotangent or tangent)."""
    d = getattr(like, "dtype", None)
    return g if d is None or g.dtype == d else astype(g, d)


# -- relu --------------------------------------------------------------------------------
def _relu_mask(g: Any, ans: Any, x: Any) -> Any:
    # Derivative 0 at 0 (as Flux and PyTorch). The comparison is piecewise constant (no
    # derivative of its own), and a bool mask keeps g's dtype.
    return g * (ans > 0)


# A primitive for speed: one pass forward and two backward (compare, multiply), where
# x * (x > 0) costs two forward and np.maximum's tie-aware rule more backward.
relu_p = primitive("relu", lambda x: array_module(x).maximum(x, 0))
relu_p.def_abstract(abstract.elementwise(relu_p.impl))
relu_p.def_vjp(_relu_mask)
relu_p.def_jvp(_relu_mask)
relu_p.def_batch(elementwise_batch(relu_p))


def relu(x: Any) -> Any:
    """``max(x, 0)`` elementwise, with derivative 0 at 0; NaN stays NaN, ``relu(-inf) = 0``.

    >>> import numpy as np
    >>> from funcflux.ops.nn import relu
    >>> relu(np.array([-np.inf, -1.0, 0.0, 2.0], np.float32))
    array([0., 0., 0., 2.], dtype=float32)
    """
    return relu_p(_arr(x))


# -- dense --------------------------------------------------------------------------------
DENSE_SHAPES = ("dense: x of shape {x} and weight of shape {w} do not fit: the weight is "
                "(out_features, in_features) and x (..., in_features).")


def _dense_impl(x: Any, w: Any, b: Any = None) -> Any:
    xp = array_module(x, w, b)
    s = x.shape
    if len(s) > 2:  # one GEMM over all leading axes (matmul would loop over them)
        y = xp.matmul(x.reshape(math.prod(s[:-1]), s[-1]), w.T).reshape(s[:-1] + w.shape[:1])
    else:
        y = xp.matmul(x, w.T)
    if b is not None:
        # y is fresh: add in place unless the bias would promote it (float64 bias, float32 x).
        if b.dtype == y.dtype or np.result_type(y.dtype, b.dtype) == y.dtype:
            y += b
        else:
            y = y + b
    return y


def _rows(a: Any) -> Any:
    """``a`` of shape ``(..., k)`` as a matrix ``(n, k)``."""
    s = _shape(a)
    return a if len(s) == 2 else reshape_p(a, shape=(math.prod(s[:-1]), s[-1]))


def _dense_vjp_x(ct: Any, ans: Any, x: Any, w: Any, b: Any = None) -> Any:
    if ndim(ct) <= 2:
        g = matmul_p(ct, w)
    else:  # ct @ w as dense(ct, w.T): one GEMM over the leading axes
        g = dense_p(ct, transpose_p(w, axes=(1, 0)))
    return _cast(g, x)


def _dense_vjp_w(ct: Any, ans: Any, x: Any, w: Any, b: Any = None) -> Any:
    if ndim(x) == 1:  # an outer product
        g = reshape_p(ct, shape=(_shape(ct)[0], 1)) * x
    else:  # ct^T @ x with the leading axes of both flattened
        g = matmul_p(_mT(_rows(ct)), _rows(x))
    return _cast(g, w)


# The fast variants (def_fast_vjp): the same products with NumPy directly, for the
# first-order gradient of every training step, where the general rules above pay the
# primitives' dispatch. They see NumPy arrays of any rank the primitive accepts.
def _np_cast(g: Any, like: Any) -> Any:
    """``_cast`` on NumPy arrays: ``like``'s dtype, a complex ``g`` of a real ``like``
    giving its real part (as ``astype_p`` does)."""
    d = like.dtype
    if g.dtype == d:
        return g
    if g.dtype.kind == "c" and d.kind != "c":
        g = g.real
    return g.astype(d)


def _np_rows(a: Any) -> Any:
    s = a.shape
    return a if len(s) == 2 else a.reshape(math.prod(s[:-1]), s[-1])


def _dense_fast_x(ct: Any, ans: Any, x: Any, w: Any, b: Any = None) -> Any:
    if ct.ndim <= 2:
        return _np_cast(ct @ w, x)
    return _np_cast(_np_rows(ct) @ w, x).reshape(x.shape)


def _dense_fast_w(ct: Any, ans: Any, x: Any, w: Any, b: Any = None) -> Any:
    if x.ndim == 1:
        return _np_cast(np.multiply.outer(ct, x), w)
    ct, x = _np_rows(ct), _np_rows(x)
    # In the weight's memory order, so that an update w - lr * g runs over two arrays
    # of one layout (a column-major weight, as nn.Dense keeps, gets a column-major g).
    g = (x.T @ ct).T if w.flags.f_contiguous and not w.flags.c_contiguous else ct.T @ x
    return _np_cast(g, w)


def _dense_fast_b(ct: Any, ans: Any, x: Any, w: Any, b: Any) -> Any:
    return _np_cast(np.add.reduce(_np_rows(ct), axis=0) if ct.ndim > 1 else ct, b)


def _dense_batch(args: list, dims: list) -> tuple:
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    dx, dw = dims[0], dims[1]
    db = dims[2] if len(args) > 2 else None
    if dw is None and db is None:
        # Leading axes of x are free: the batch axis stays where it is, unless it is last.
        if dx == ndim(x) - 1:
            x, dx = move_bdim(x, dx, 0), 0
        return dense_p(x, *args[1:]), dx
    # Stacked weights and/or biases (ensembles): one batched matmul, one broadcast add.
    n = batch_size(args, dims)
    x = move_bdim(x, dx, 0)
    lead = _shape(x)[1 if dx is not None else 0:-1]
    if dw is None:
        y = dense_p(x, w)                            # ([n,] *lead, out)
    else:
        wt = _mT(move_bdim(w, dw, 0))                # (n, in, out)
        k = _shape(x)[-1]
        x2 = reshape_p(x, shape=((n,) if dx is not None else ()) +
                                  (math.prod(lead), k))
        y = matmul_p(x2, wt)                         # (n, M, out)
        y = reshape_p(y, shape=(n,) + lead + _shape(y)[-1:])
    if b is not None:
        if db is not None:
            b = move_bdim(b, db, 0)
            b = reshape_p(b, shape=(n,) + (1,) * len(lead) + _shape(b)[-1:])
        y = y + b
    return y, 0


# A primitive for speed: one GEMM into a fresh array and the bias added in place, where
# x @ w.T + b costs a transpose, a matmul and an add (with its own allocation) forward
# and a sum and two transposes more backward.
dense_p = primitive("dense", _dense_impl)


def _dense_abstract(x: Any, w: Any, b: Any = None) -> Any:
    # one row through the layer: its width and dtype (w and b are parameter-sized)
    def small(a: Any) -> Any:
        return abstract.standin(a) if type(a) is abstract.ShapeDtypeStruct else a
    row = np.ones((1, _shape(x)[-1]), x.dtype)
    y = _dense_impl(row, small(w), small(b))
    return abstract.ShapeDtypeStruct(_shape(x)[:-1] + y.shape[-1:], y.dtype)


dense_p.def_abstract(_dense_abstract)
def _dense_vjp_b(ct: Any, ans: Any, x: Any, w: Any, b: Any) -> Any:
    return unbroadcast(ct, b)


dense_p.def_vjp(_dense_vjp_x, _dense_vjp_w, _dense_vjp_b)
dense_p.def_fast_vjp(_dense_fast_x, _dense_fast_w, _dense_fast_b)
# Affine, not multilinear: each tangent enters without the bias (so no def_linear).
dense_p.def_jvp(lambda t, ans, x, w, b=None: _cast(dense_p(t, w), ans),
                lambda t, ans, x, w, b=None: _cast(dense_p(x, t), ans),
                lambda t, ans, x, w, b: _cast(t, ans))
dense_p.def_batch(_dense_batch)


def dense(x: Any, w: Any, b: Any = None) -> Any:
    """``x @ w.T + b``: ``x`` of shape ``(..., in)``, ``w`` ``(out, in)``, ``b`` ``(out,)``.

    ``b=None`` adds no bias. Dtypes promote as ``x @ w.T + b`` does.

    >>> import numpy as np
    >>> from funcflux.ops.nn import dense
    >>> dense(np.ones((2, 3)), np.arange(6.0).reshape(2, 3), np.array([0.5, -0.5]))
    array([[ 3.5, 11.5],
           [ 3.5, 11.5]])
    """
    x, w = _arr(x), _arr(w)
    sx, sw = _shape(x), _shape(w)
    if len(sw) != 2 or not sx or sx[-1] != sw[1]:
        raise ValueError(DENSE_SHAPES.format(x=sx, w=sw))
    if b is None:
        return dense_p(x, w)
    b = _arr(b)
    if _shape(b) != sw[:1]:  # another broadcastable bias: added after the fused product
        return dense_p(x, w) + b
    return dense_p(x, w, b)


# -- softmax cross-entropy -----------------------------------------------------------------
XENT_SHAPES = ("softmax_cross_entropy: logits of shape {z} and targets of shape {y} do not "
               "fit: give targets of the logits' shape, or integer labels of shape {labels}.")


def _xent_labels_impl(z: Any, labels: Any, axis: int) -> Any:
    xp = array_module(z, labels)
    lse = _lse_keepdims(z, (axis,))
    if z.ndim == 2 and axis == 1:  # (N, C): one fancy index, where take_along_axis builds several
        return lse[:, 0] - z[xp.arange(z.shape[0]), labels]
    picked = xp.take_along_axis(z, xp.expand_dims(labels, axis), axis)
    return xp.squeeze(lse - picked, axis=axis)


def _xent_labels_grad_impl(ct: Any, z: Any, labels: Any, axis: int) -> Any:
    # The backward pass as hand-written NumPy computes it: softmax into a fresh array, one
    # subtracted at each label, then scaled by the cotangent, in place.
    xp = array_module(ct, z, labels)
    if _short_rows(z, axis) and type(ct) is np.ndarray:
        r = _exp_shifted_t(z)
        if r is not None:  # the softmax from one exp pass, then as below
            e, s, _ = r
            e /= s
            p = e.T
            p[np.arange(p.shape[0]), labels] -= 1
            p *= ct[:, None]
            return p
    p = xp.exp(z - _lse_keepdims(z, (axis,)))
    if p.ndim == 2 and axis == 1:
        p[xp.arange(p.shape[0]), labels] -= 1
    else:
        c = p.shape[axis]
        p -= xp.expand_dims(labels, axis) == xp.arange(c).reshape((c,) + (1,) * (p.ndim - 1 - axis))
    p *= xp.expand_dims(ct, axis)
    return p


def _xent_impl(z: Any, y: Any, axis: int) -> Any:
    # -sum(y * log_softmax(z)) = lse * sum(y) - sum(y * z): exact for any y (label
    # smoothing, rows not summing to one), with no log-softmax array in between.
    xp = array_module(z, y)
    lse = _logsumexp_impl(z, (axis,), False)
    return lse * xp.sum(y, axis=axis) - xp.sum(y * z, axis=axis)


def _lse(z: Any, axis: int) -> Any:
    return logsumexp_p(z, axis=(axis,), keepdims=True)


def _onehot(labels: Any, z: Any, axis: int) -> Any:
    """A bool mask of ``z``'s shape, true at each label along ``axis``."""
    c = _shape(z)[axis]
    classes = array_module(module_value(labels)).arange(c).reshape((c,) + (1,) * (ndim(z) - 1 - axis))
    return reshape_p(labels, shape=_expand_shape(labels, axis)) == classes


def _expand_shape(a: Any, axis: int) -> tuple:
    s = _shape(a)
    return s[:axis] + (1,) + s[axis:]


# The partial derivatives of the loss along the class axis, d loss / d z and d loss / d y.
def _dz_labels(z: Any, labels: Any, axis: int) -> Any:
    return exp(z - _lse(z, axis)) - _onehot(labels, z, axis)


def _dz(z: Any, y: Any, axis: int) -> Any:
    return exp(z - _lse(z, axis)) * sum_p(y, axis=(axis,), keepdims=True) - y


def _dy(z: Any, y: Any, axis: int) -> Any:
    return _lse(z, axis) - z


def _softmax_jac(z: Any, u: Any, axis: int) -> Any:
    """The Jacobian of softmax along ``axis`` (symmetric) applied to ``u``."""
    s = exp(z - _lse(z, axis))
    su = s * u
    return su - s * sum_p(su, axis=(axis,), keepdims=True)


def _ct_e(ct: Any, axis: int) -> Any:
    """A per-example cotangent with the class axis put back (size 1)."""
    return reshape_p(ct, shape=_expand_shape(ct, axis))


def _xent_vjp(i: int, partial: Any) -> Any:
    def rule(ct: Any, ans: Any, z: Any, y: Any, axis: int) -> Any:
        return _cast(_ct_e(ct, axis) * partial(z, y, axis), (z, y)[i])
    return rule


def _xent_jvp(partial: Any) -> Any:
    def rule(t: Any, ans: Any, z: Any, y: Any, axis: int) -> Any:
        return _cast(sum_p(t * partial(z, y, axis), axis=(axis,), keepdims=False), ans)
    return rule


def _xent_batch(p: Any) -> Any:
    def rule(args: list, dims: list, axis: int) -> tuple:
        return p(*bdim_to_front(args, dims, batch_size(args, dims)), axis=axis + 1), 0
    return rule


# Primitives for speed: the loss from logsumexp and the picked (or y-weighted) logit, and
# the backward pass softmax minus the targets, a handful of passes over the logits as
# hand-written NumPy makes, with no log-softmax or one-hot floats in between.
softmax_xent_p = primitive("softmax_cross_entropy", _xent_impl)
softmax_xent_p.def_abstract(lambda z, y, axis: abstract.ShapeDtypeStruct(
    abstract.reduced_shape(_shape(z), (axis,), False), np.result_type(z.dtype, y.dtype)))
softmax_xent_p.def_vjp(_xent_vjp(0, _dz), _xent_vjp(1, _dy))
softmax_xent_p.def_jvp(_xent_jvp(_dz), _xent_jvp(_dy))
softmax_xent_p.def_batch(_xent_batch(softmax_xent_p))
# Integer labels are indices: no derivative (None in both tables). The backward pass is a
# primitive of its own, ct * (softmax - onehot) without the one-hot array (as PyTorch has a
# cross_entropy backward kernel); its rules, for higher orders, are compositions.
softmax_xent_labels_p = primitive("softmax_cross_entropy_labels", _xent_labels_impl)
softmax_xent_labels_grad_p = primitive("softmax_cross_entropy_labels_grad",
                                       _xent_labels_grad_impl)
softmax_xent_labels_p.def_abstract(lambda z, labels, axis: abstract.ShapeDtypeStruct(
    abstract.reduced_shape(_shape(z), (axis,), False), z.dtype))
softmax_xent_labels_grad_p.def_abstract(lambda ct, z, labels, axis: abstract.ShapeDtypeStruct(
    _shape(z), np.result_type(ct.dtype, z.dtype)))
softmax_xent_labels_p.def_vjp(
    lambda ct, ans, z, labels, axis: _cast(softmax_xent_labels_grad_p(ct, z, labels, axis=axis), z),
    None)
softmax_xent_labels_p.def_jvp(_xent_jvp(_dz_labels), None)
softmax_xent_labels_p.def_batch(_xent_batch(softmax_xent_labels_p))
# Linear in ct; in z, ct times the softmax Jacobian.
softmax_xent_labels_grad_p.def_vjp(
    lambda g, ans, ct, z, labels, axis: _cast(
        sum_p(g * _dz_labels(z, labels, axis), axis=(axis,), keepdims=False), ct),
    lambda g, ans, ct, z, labels, axis: _cast(_softmax_jac(z, _ct_e(ct, axis) * g, axis), z),
    None)
softmax_xent_labels_grad_p.def_jvp(
    lambda t, ans, ct, z, labels, axis: _cast(softmax_xent_labels_grad_p(t, z, labels, axis=axis),
                                              ans),
    lambda t, ans, ct, z, labels, axis: _cast(_ct_e(ct, axis) * _softmax_jac(z, t, axis), ans),
    None)
softmax_xent_labels_grad_p.def_batch(_xent_batch(softmax_xent_labels_grad_p))


def softmax_cross_entropy(logits: Any, targets: Any, axis: int = -1) -> Any:
    """``-sum(targets * log_softmax(logits, axis), axis)``, one loss per example.

    ``targets`` are probabilities (or any weights) of the logits' shape, or
    integer class labels of that shape without ``axis``. Stable for logits of
    any magnitude; labels are not range-checked here (``losses.logitcrossentropy``
    does that).

    >>> import numpy as np
    >>> from funcflux.ops.nn import softmax_cross_entropy
    >>> z = np.array([[0.0, 1000.0], [0.0, 0.0]])
    >>> softmax_cross_entropy(z, np.array([0, 1])).round(4).tolist()
    [1000.0, 0.6931]
    """
    z, y = _arr(logits), _arr(targets)
    sz, sy = _shape(z), _shape(y)
    if not sz:
        raise ValueError("softmax_cross_entropy: the logits need a class axis; got a scalar")
    ax = norm_axis(operator.index(axis), len(sz))[0]
    if y.dtype.kind in "iu" and sy == sz[:ax] + sz[ax + 1:]:
        return softmax_xent_labels_p(z, y, axis=ax)
    if sy != sz:
        raise ValueError(XENT_SHAPES.format(z=sz, y=sy, labels=sz[:ax] + sz[ax + 1:]))
    return softmax_xent_p(z, y, axis=ax)
