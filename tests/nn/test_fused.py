"""The fused layer primitives (funcflux.ops.nn): dense, relu, softmax cross-entropy.

Their rules are swept in tests/ops/specs_nn.py; here: argument errors, the
non-finite corners of the shared logsumexp, and that the fused forms agree with
the compositions they replace.
"""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp
from funcflux.ops.nn import dense, relu, softmax_cross_entropy

R = np.random.default_rng(3)


def test_dense_argument_errors():
    w = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"x of shape \(2, 5\) and weight of shape \(3, 4\)"):
        dense(np.ones((2, 5)), w)
    with pytest.raises(ValueError, match=r"weight of shape \(4,\)"):
        dense(np.ones((2, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"x of shape \(\)"):
        dense(np.float64(1.0), w)
    np.testing.assert_allclose(dense([[1.0, 0, 0, 0]], w.tolist(), [1.0, 2, 3]), [[2.0, 3, 4]])


def test_softmax_cross_entropy_argument_errors():
    z = np.zeros((5, 4))
    with pytest.raises(ValueError, match="need a class axis"):
        softmax_cross_entropy(np.float64(0.0), np.float64(1.0))
    with pytest.raises(ValueError, match=r"targets of shape \(5, 3\).*labels of shape \(5,\)"):
        softmax_cross_entropy(z, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"labels of shape \(4,\)"):
        softmax_cross_entropy(z, np.zeros(5, int), axis=0)  # labels have the shape without axis
    with pytest.raises(ValueError, match="targets of shape"):
        softmax_cross_entropy(z, np.zeros(5))  # float labels are not class ids


def test_logsumexp_non_finite_rows():
    x = np.array([[-np.inf, -np.inf], [np.inf, 0.0], [np.nan, 0.0], [0.0, 0.0], [-np.inf, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = fnp.logsumexp(x, axis=1)
    np.testing.assert_array_equal(out, [-np.inf, np.inf, np.nan, np.log(2.0), 0.0])
    assert fnp.logsumexp(x[3:].astype(np.float32), axis=1).dtype == np.float32


def test_cross_entropy_labels_agree_with_probability_form_everywhere():
    # the (N, C) fast path, the general path (other axes, 1-D logits) and the dense form
    z = R.normal(size=(6, 5))
    k = R.integers(0, 5, size=6)
    onehot = np.eye(5)[k]
    np.testing.assert_allclose(softmax_cross_entropy(z, k), softmax_cross_entropy(z, onehot),
                               rtol=1e-12)
    np.testing.assert_allclose(softmax_cross_entropy(z.T, k, axis=0), softmax_cross_entropy(z, k),
                               rtol=1e-12)
    np.testing.assert_allclose(softmax_cross_entropy(z[2], k[2]), softmax_cross_entropy(z, k)[2],
                               rtol=1e-12)
    for axis, zz, kk in [(-1, z, k), (0, z.T, k)]:
        ct = R.normal(size=6)
        g = ff.vjp(lambda z: softmax_cross_entropy(z, kk, axis=axis), zz)[1](ct)[0]
        oh = onehot if axis == -1 else onehot.T
        gd = ff.vjp(lambda z: softmax_cross_entropy(z, oh, axis=axis), zz)[1](ct)[0]
        np.testing.assert_allclose(g, gd, atol=1e-12)
    # unsigned and narrow integer labels are labels too
    np.testing.assert_allclose(softmax_cross_entropy(z, k.astype(np.uint8)),
                               softmax_cross_entropy(z, k), rtol=1e-12)


def test_fused_relu_equals_mask_composition_under_transforms():
    x = R.normal(size=(4, 3))
    f = lambda x: np.sum(np.sin(relu(x)) * x)  # noqa: E731
    g = lambda x: np.sum(np.sin(x * (x > 0)) * x)  # noqa: E731
    np.testing.assert_allclose(ff.grad(f)(x), ff.grad(g)(x), rtol=1e-12)
    np.testing.assert_allclose(ff.hessian(f)(x), ff.hessian(g)(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ff.jacfwd(ff.grad(f))(x), ff.jacrev(ff.grad(g))(x), rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("shape", [(64, 10), (200, 3), (40, 20)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_row_fast_path_matches_the_general_formula(shape, dtype):
    """Class scores (N, C) with short rows take a transposed path; it must agree with the
    plain formulas, fall back on non-finite rows, and never write into the logits."""
    from funcflux.ops import nn as onn  # the fused cross-entropy and its short-row path
    z = (R.standard_normal(shape) * 5).astype(dtype)
    labels = R.integers(0, shape[1], shape[0])
    ct = R.random(shape[0]).astype(dtype)
    z64 = z.astype(np.float64)
    lse = np.log(np.exp(z64 - z64.max(1, keepdims=True)).sum(1)) + z64.max(1)
    keep = z.copy()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fnp.logsumexp(z, axis=1), lse, **tol)
    np.testing.assert_allclose(softmax_cross_entropy(z, labels), lse - z64[np.arange(shape[0]), labels],
                               **tol)
    want = np.exp(z64 - lse[:, None])
    want[np.arange(shape[0]), labels] -= 1
    got = onn.softmax_xent_labels_grad_p(ct, z, labels, axis=1)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_allclose(got, want * ct[:, None], **tol)
    np.testing.assert_array_equal(z, keep)
    z[3, :] = -np.inf  # an all -inf row and a +inf row: the general path's answers
    z[5, 1] = np.inf
    out = fnp.logsumexp(z, axis=1)
    assert out[3] == -np.inf and out[5] == np.inf and np.isfinite(np.delete(out, [3, 5])).all()
