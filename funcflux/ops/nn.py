"""Fused primitives for neural networks, kept for numerical stability and speed.

``logsumexp`` is one primitive; ``softmax`` and ``log_softmax`` are written over
it, so all three stay finite for inputs of any magnitude and their gradients
are exact (``d logsumexp = softmax``).

``relu``, ``dense`` (``x @ w.T + b``) and ``softmax_cross_entropy`` are the
layers of an MLP as single primitives (PyTorch's relu, linear and
cross_entropy), doing the array work of hand-written NumPy. ``patches`` and
``col2im`` carry convolution and pooling.
"""
from __future__ import annotations

import functools
import math
import operator
from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from ..core.trace import concrete
from .common import batch_size, bdim_to_front, elementwise_batch, move_bdim, ndim, norm_axis
from .common import shape as _shape
from .common import unbroadcast
from .linalg import _mT, matmul_p
from .reductions import _arr, _expand_back, _reduce_batch, sum_p

__all__ = ["logsumexp", "softmax", "log_softmax"]


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


# =====================================================================================
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
    return g if d is None or g.dtype == d else fnp.astype(g, d)


# -- relu --------------------------------------------------------------------------------
def _relu_mask(g: Any, ans: Any, x: Any) -> Any:
    # Derivative 0 at 0 (as Flux and PyTorch). The comparison is piecewise constant (no
    # derivative of its own), and a bool mask keeps g's dtype.
    return g * (ans > 0)


# A primitive for speed: one pass forward and two backward (compare, multiply), where
# x * (x > 0) costs two forward and np.maximum's tie-aware rule more backward.
relu_p = primitive("relu", lambda x: array_module(x).maximum(x, 0))
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
    return a if len(s) == 2 else fnp._shape.reshape_p(a, shape=(math.prod(s[:-1]), s[-1]))


def _dense_vjp_x(ct: Any, ans: Any, x: Any, w: Any, b: Any = None) -> Any:
    if ndim(ct) <= 2:
        g = matmul_p(ct, w)
    else:  # ct @ w as dense(ct, w.T): one GEMM over the leading axes
        g = dense_p(ct, fnp._shape.transpose_p(w, axes=(1, 0)))
    return _cast(g, x)


def _dense_vjp_w(ct: Any, ans: Any, x: Any, w: Any, b: Any = None) -> Any:
    if ndim(x) == 1:  # an outer product
        g = fnp._shape.reshape_p(ct, shape=(_shape(ct)[0], 1)) * x
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
        x2 = fnp._shape.reshape_p(x, shape=((n,) if dx is not None else ()) +
                                  (math.prod(lead), k))
        y = matmul_p(x2, wt)                         # (n, M, out)
        y = fnp._shape.reshape_p(y, shape=(n,) + lead + _shape(y)[-1:])
    if b is not None:
        if db is not None:
            b = move_bdim(b, db, 0)
            b = fnp._shape.reshape_p(b, shape=(n,) + (1,) * len(lead) + _shape(b)[-1:])
        y = y + b
    return y, 0


# A primitive for speed: one GEMM into a fresh array and the bias added in place, where
# x @ w.T + b costs a transpose, a matmul and an add (with its own allocation) forward
# and a sum and two transposes more backward.
dense_p = primitive("dense", _dense_impl)
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
    classes = array_module(concrete(labels)).arange(c).reshape((c,) + (1,) * (ndim(z) - 1 - axis))
    return fnp._shape.reshape_p(labels, shape=_expand_shape(labels, axis)) == classes


def _expand_shape(a: Any, axis: int) -> tuple:
    s = _shape(a)
    return s[:axis] + (1,) + s[axis:]


# The partial derivatives of the loss along the class axis, d loss / d z and d loss / d y.
def _dz_labels(z: Any, labels: Any, axis: int) -> Any:
    return fnp.exp(z - _lse(z, axis)) - _onehot(labels, z, axis)


def _dz(z: Any, y: Any, axis: int) -> Any:
    return fnp.exp(z - _lse(z, axis)) * sum_p(y, axis=(axis,), keepdims=True) - y


def _dy(z: Any, y: Any, axis: int) -> Any:
    return _lse(z, axis) - z


def _softmax_jac(z: Any, u: Any, axis: int) -> Any:
    """The Jacobian of softmax along ``axis`` (symmetric) applied to ``u``."""
    s = fnp.exp(z - _lse(z, axis))
    su = s * u
    return su - s * sum_p(su, axis=(axis,), keepdims=True)


def _ct_e(ct: Any, axis: int) -> Any:
    """A per-example cotangent with the class axis put back (size 1)."""
    return fnp._shape.reshape_p(ct, shape=_expand_shape(ct, axis))


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
softmax_xent_p.def_vjp(_xent_vjp(0, _dz), _xent_vjp(1, _dy))
softmax_xent_p.def_jvp(_xent_jvp(_dz), _xent_jvp(_dy))
softmax_xent_p.def_batch(_xent_batch(softmax_xent_p))
# Integer labels are indices: no derivative (None in both tables). The backward pass is a
# primitive of its own, ct * (softmax - onehot) without the one-hot array (as PyTorch has a
# cross_entropy backward kernel); its rules, for higher orders, are compositions.
softmax_xent_labels_p = primitive("softmax_cross_entropy_labels", _xent_labels_impl)
softmax_xent_labels_grad_p = primitive("softmax_cross_entropy_labels_grad",
                                       _xent_labels_grad_impl)
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


# =====================================================================================
# Sliding windows for convolution and pooling.
#
# ``patches`` gathers every window of the trailing ``k`` axes (im2col): for an input
# ``(..., H, W)`` and kernel ``(kh, kw)`` it returns ``(..., kh, kw, OH, OW)`` with
# ``out[..., i, j, p, q] = x[..., i*dh + p*sh, j*dw + q*sw]``. A convolution is then one
# matmul, and pooling one reduction over the kernel axes. It is linear; its transpose
# ``col2im`` adds each window back where it came from, and the transpose of that is
# ``patches`` again, so every derivative of a convolution, of any order and under vmap,
# is made of these two and matmul. Leading axes are left alone, which is the whole
# batching rule: move the vmapped axis among them. ``kernel_first=True`` puts the
# kernel axes in front instead, ``(kh, kw, ..., OH, OW)``: NumPy reduces over leading
# axes several times faster, which is what pooling does.
#
# Two primitives for speed: a strided view and one copy (im2col), and kh*kw strided
# slice-adds (col2im), each vectorised over everything but the kernel offsets.

WINDOWS_TOO_BIG = ("{fn}: a window of {span} (kernel {kernel}, dilation {dilation}) does not "
                   "fit in the input's trailing axes {spatial}")


def _out_size(n: int, k: int, s: int, d: int) -> int:
    return (n - d * (k - 1) - 1) // s + 1


@functools.lru_cache(maxsize=256)
def _view_geometry(shape: tuple, strides: tuple, kernel: tuple, stride: tuple,
                   dilation: tuple, kernel_first: bool) -> tuple:
    """Shape and byte strides of the windows view of an array with ``shape`` and ``strides``."""
    k = len(kernel)
    sp, sst = shape[-k:], strides[-k:]
    out = tuple(_out_size(n, kk, s, d) for n, kk, s, d in zip(sp, kernel, stride, dilation))
    kst = tuple(a * d for a, d in zip(sst, dilation))
    ost = tuple(a * s for a, s in zip(sst, stride))
    if kernel_first:
        return kernel + shape[:-k] + out, kst + strides[:-k] + ost
    return shape[:-k] + kernel + out, strides[:-k] + kst + ost


def _patches_impl(x: Any, kernel: tuple, stride: tuple, dilation: tuple, kernel_first: bool
                  ) -> Any:
    xp = array_module(x)
    shape, strides = _view_geometry(x.shape, x.strides, kernel, stride, dilation, kernel_first)
    if xp is np and x.flags.c_contiguous:  # the ndarray constructor: as_strided checks far more
        view = np.ndarray(shape, x.dtype, x, 0, strides)
    else:
        view = xp.lib.stride_tricks.as_strided(x, shape, strides)
    return xp.ascontiguousarray(view)


@functools.lru_cache(maxsize=256)
def _col2im_plan(shape: tuple, kernel: tuple, stride: tuple, dilation: tuple, out_sp: tuple,
                 kernel_first: bool) -> tuple:
    """Whether the result can start empty, and per kernel offset: (target, source, add?)."""
    k = len(kernel)
    # Windows that do not overlap are assigned rather than added; when they also
    # leave no gaps the result needs no zeros first.
    disjoint = all(d * (kk - 1) < s for kk, s, d in zip(kernel, stride, dilation))
    tiles = disjoint and all(kk == s and n == s * o
                             for kk, s, n, o in zip(kernel, stride, shape, out_sp))
    steps = []
    for off in np.ndindex(*kernel):
        where = (Ellipsis,) + tuple(slice(i * d, i * d + s * (o - 1) + 1, s)
                                    for i, s, d, o in zip(off, stride, dilation, out_sp))
        part = off if kernel_first else (Ellipsis,) + off + (slice(None),) * k
        # The first offset writes into zeros, so it can assign too.
        steps.append((where, part, not disjoint and any(off)))
    return tiles, tuple(steps)


def _col2im_impl(c: Any, shape: tuple, kernel: tuple, stride: tuple, dilation: tuple,
                 kernel_first: bool) -> Any:
    xp = array_module(c)
    k = len(kernel)
    lead = c.shape[k:-k] if kernel_first else c.shape[:-2 * k]
    tiles, steps = _col2im_plan(shape, kernel, stride, dilation, c.shape[-k:], kernel_first)
    out = (xp.empty if tiles else xp.zeros)(lead + shape, dtype=c.dtype)
    for where, part, add in steps:
        if add:
            out[where] += c[part]
        else:
            out[where] = c[part]
    return out


def _patches_batch(args: list, dims: list, kernel: tuple, **p: Any) -> tuple:
    out = patches_p(move_bdim(args[0], dims[0], 0), kernel=kernel, **p)
    return out, len(kernel) if p["kernel_first"] else 0


def _col2im_batch(args: list, dims: list, kernel: tuple, **p: Any) -> tuple:
    to = len(kernel) if p["kernel_first"] else 0  # the batch axis goes among the leading axes
    return col2im_p(move_bdim(args[0], dims[0], to), kernel=kernel, **p), 0


patches_p = primitive("patches", _patches_impl)
col2im_p = primitive("col2im", _col2im_impl)
patches_p.def_linear(lambda ct, ans, x, kernel, **p: col2im_p(
    ct, shape=_shape(x)[ndim(x) - len(kernel):], kernel=kernel, **p))
col2im_p.def_linear(lambda ct, ans, c, shape, **p: patches_p(ct, **p))
patches_p.def_batch(_patches_batch)
col2im_p.def_batch(_col2im_batch)


def _tuple(v: Any, k: int, what: str, fn: str) -> tuple:
    t = (int(v),) * k if isinstance(v, (int, np.integer)) else tuple(int(a) for a in v)
    if len(t) != k or any(a < 1 for a in t):
        raise ValueError(f"{fn}: {what} must be a positive int or a tuple of {k} positive ints, "
                         f"got {v!r}")
    return t


def _window_params(fn: str, kernel: Any, stride: Any, dilation: Any) -> tuple:
    try:
        return _window_params_cached(fn, kernel, stride, dilation)
    except TypeError:  # unhashable (a list): normalise without the cache
        return _window_params_cached.__wrapped__(fn, kernel, stride, dilation)


@functools.lru_cache(maxsize=256)
def _window_params_cached(fn: str, kernel: Any, stride: Any, dilation: Any) -> tuple:
    kernel = (int(kernel),) if isinstance(kernel, (int, np.integer)) else tuple(kernel)
    k = len(kernel)
    return (_tuple(kernel, k, "kernel", fn), _tuple(stride, k, "stride", fn),
            _tuple(dilation, k, "dilation", fn))


def patches(x: Any, kernel: Any, stride: Any = 1, dilation: Any = 1, *,
            kernel_first: bool = False) -> Any:
    """Every window of the trailing ``len(kernel)`` axes (im2col): ``(..., *kernel, *out)``.

    ``out[..., i, j, p, q] = x[..., i*dilation + p*stride, j*dilation + q*stride]``
    (per axis); ``out`` is the number of whole windows that fit. With
    ``kernel_first=True`` the kernel axes come first, ``(*kernel, ..., *out)``,
    which makes reductions over them (pooling) several times faster in NumPy.
    Linear; the transpose is :func:`col2im`.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.patches(np.arange(5.0), 2, stride=2)
    array([[0., 2.],
           [1., 3.]])
    """
    x = _arr(x)
    kernel, stride, dilation = _window_params("patches", kernel, stride, dilation)
    k = len(kernel)
    s = _shape(x)
    if len(s) < k or any(d * (kk - 1) + 1 > n for kk, d, n in zip(kernel, dilation, s[len(s) - k:])):
        raise ValueError(WINDOWS_TOO_BIG.format(
            fn="patches", span=tuple(d * (kk - 1) + 1 for kk, d in zip(kernel, dilation)),
            kernel=kernel, dilation=dilation, spatial=s[max(len(s) - k, 0):]))
    return patches_p(x, kernel=kernel, stride=stride, dilation=dilation,
                     kernel_first=bool(kernel_first))


def col2im(cols: Any, shape: Any, stride: Any = 1, dilation: Any = 1, *,
           kernel_first: bool = False) -> Any:
    """Add windows ``(..., *kernel, *out)`` back into an array ``(..., *shape)``.

    The transpose of :func:`patches`.

    ``shape`` is the trailing shape of the result; the kernel is read off
    ``cols`` (its first axes with ``kernel_first=True``, as :func:`patches`
    lays them out). Where windows overlap their values add up.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.col2im(np.ones((2, 2)), (3,))
    array([1., 2., 1.])
    """
    cols = _arr(cols)
    sp = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    k = len(sp)
    s = _shape(cols)
    if len(s) < 2 * k:
        raise ValueError(f"col2im: cols of shape {s} has too few axes for {k} kernel and {k} "
                         f"window axes")
    kernel = s[:k] if kernel_first else s[len(s) - 2 * k:len(s) - k]
    _, stride, dilation = _window_params("col2im", kernel, stride, dilation)
    want = tuple(_out_size(n, kk, st, d) for n, kk, st, d in zip(sp, kernel, stride, dilation))
    if s[len(s) - k:] != want:
        raise ValueError(f"col2im: windows {s[len(s) - k:]} do not match shape {sp} with kernel "
                         f"{kernel}, stride {stride}, dilation {dilation} (which give {want})")
    return col2im_p(cols, shape=sp, kernel=kernel, stride=stride, dilation=dilation,
                    kernel_first=bool(kernel_first))


__all__ += ["patches", "col2im"]
