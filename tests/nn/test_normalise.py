"""BatchNorm and LayerNorm against their formulas; PyTorch's running-statistics update."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn
from funcflux.test_util import check_grads

R = np.random.default_rng(0)


def _with(bn, **arrays):
    for k, v in arrays.items():
        bn = ff.tree.at(lambda m, k=k: getattr(m, k), bn, replace=v)
    return bn


def test_batchnorm_inference_uses_running_statistics():
    bn = _with(nn.BatchNorm(3, dtype=np.float64), weight=np.array([1.0, 2.0, 3.0]),
               bias=np.array([0.0, 1.0, -1.0]), running_mean=np.array([0.5, -1.0, 2.0]),
               running_var=np.array([4.0, 1.0, 0.25]))
    x = R.normal(size=(4, 3, 2, 2))
    b = lambda v: v.reshape(1, 3, 1, 1)  # noqa: E731
    want = (x - b(bn.running_mean)) / np.sqrt(b(bn.running_var) + 1e-5) * b(bn.weight) + b(bn.bias)
    np.testing.assert_allclose(bn(x), want, rtol=1e-12)
    x2 = R.normal(size=(5, 3))
    want2 = (x2 - bn.running_mean) / np.sqrt(bn.running_var + 1e-5) * bn.weight + bn.bias
    np.testing.assert_allclose(bn(x2), want2, rtol=1e-12)
    check_grads(lambda bn, x: bn(x), (bn, x), order=2)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 5)])
def test_batchnorm_training_output_and_pytorch_running_update(shape):
    bn = _with(nn.BatchNorm(3, nn.relu, momentum=0.2, dtype=np.float64),
               running_mean=np.array([1.0, 2.0, 3.0]), running_var=np.array([2.0, 3.0, 4.0]),
               weight=np.array([1.5, 1.0, 0.5]), bias=np.array([0.1, 0.2, 0.3]))
    x = R.normal(loc=2.0, scale=3.0, size=shape)
    axes = (0,) + tuple(range(2, len(shape)))
    bs = (1, 3) + (1,) * (len(shape) - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    n = x.size // 3
    y, new = nn.apply(bn, x)
    want = np.maximum((x - mean.reshape(bs)) / np.sqrt(var.reshape(bs) + 1e-5)
                      * bn.weight.reshape(bs) + bn.bias.reshape(bs), 0)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    # PyTorch: running = (1 - momentum) * running + momentum * stat, variance unbiased.
    np.testing.assert_allclose(new.running_mean, 0.8 * np.array([1.0, 2.0, 3.0]) + 0.2 * mean)
    np.testing.assert_allclose(new.running_var,
                               0.8 * np.array([2.0, 3.0, 4.0]) + 0.2 * var * n / (n - 1))
    assert new.weight is bn.weight and new.momentum == 0.2 and new.activation is nn.relu
    assert bn.running_mean.tolist() == [1.0, 2.0, 3.0]  # pure: the input layer is unchanged
    with pytest.raises(AttributeError, match="immutable"):
        new.running_mean = None


def test_batchnorm_training_gradient_and_stop_gradient():
    bn = nn.BatchNorm(3, nn.tanh, dtype=np.float64)
    x = R.normal(size=(5, 3, 2))
    check_grads(lambda bn, x: nn.apply(bn, x)[0], (bn, x), order=2)

    def loss(bn):
        y, new = nn.apply(bn, x)
        return np.sum(y * np.arange(3.0).reshape(1, 3, 1)), new
    (val, new), g = ff.value_and_grad(loss, has_aux=True)(bn)
    # the statistics flow out as plain arrays and take no part in the derivative
    assert type(new.running_mean) is np.ndarray and type(new.running_var) is np.ndarray
    assert not g.running_mean.any() and not g.running_var.any()
    np.testing.assert_allclose(new.running_mean, 0.1 * x.mean(axis=(0, 2)))


def test_batchnorm_float32_state_stays_float32():
    bn = nn.BatchNorm(2)
    y, new = nn.apply(bn, R.normal(size=(4, 2)))  # a float64 batch
    assert new.running_mean.dtype == np.float32 and new.running_var.dtype == np.float32
    y, new = nn.apply(bn, R.normal(size=(4, 2)).astype(np.float32))
    assert y.dtype == np.float32


def test_batchnorm_options_children_and_errors():
    bn = nn.BatchNorm(4)
    assert set(ff.children(bn)) == {"weight", "bias", "running_mean", "running_var"}
    assert set(ff.trainable(bn)) == {"weight", "bias"}
    plain = nn.BatchNorm(2, affine=False, track_stats=False, dtype=np.float64)
    assert plain.weight is None and plain.running_mean is None
    x = R.normal(size=(6, 2))
    want = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    np.testing.assert_allclose(plain(x), want)  # no statistics: always the batch's
    np.testing.assert_allclose(nn.apply(plain, x)[0], want)
    with pytest.raises(ValueError, match=r"^BatchNorm\(4\) got input of shape \(2, 3\); "
                                         r"expected \(N, 4, \.\.\.\)$"):
        bn(np.ones((2, 3)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.apply(bn, np.ones((1, 4)))


def test_layernorm_formula_and_gradients():
    ln = _with(nn.LayerNorm(4, dtype=np.float64), weight=np.array([1.0, 2.0, 0.5, 1.0]),
               bias=np.array([0.0, 0.1, 0.2, 0.3]))
    x = R.normal(size=(3, 4))
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln(x), (x - m) / np.sqrt(v + 1e-5) * ln.weight + ln.bias)
    check_grads(lambda ln, x: ln(x), (ln, x), order=2)
    ln2 = nn.LayerNorm((2, 3), nn.relu, dtype=np.float64)
    x2 = R.normal(size=(5, 2, 3))
    m2, v2 = x2.mean((1, 2), keepdims=True), x2.var((1, 2), keepdims=True)
    np.testing.assert_allclose(ln2(x2), np.maximum((x2 - m2) / np.sqrt(v2 + 1e-5), 0), atol=1e-12)
    assert ln2.weight.shape == (2, 3)
    assert nn.LayerNorm(4, affine=False).weight is None
    with pytest.raises(ValueError, match=r"LayerNorm\(\(2, 3\), relu\) got input of shape "
                                         r"\(5, 3, 2\); expected \(\.\.\., 2, 3\)"):
        ln2(np.ones((5, 3, 2)))
    y, same = nn.apply(ln, x)
    assert same is ln
