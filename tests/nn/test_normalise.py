"""BatchNorm, LayerNorm, GroupNorm, InstanceNorm against their formulas; PyTorch's running updates."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn
from funcflux.test_util import check_grads
from tests.devices import get, put

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


# ----------------------------------------------------------------------------- GroupNorm
def groupnorm_loop(x, groups, weight, bias, eps=1e-5):
    """Each group of channels of each example by its own mean and biased variance."""
    y = np.empty_like(x)
    cg = x.shape[1] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            part = x[n, g * cg:(g + 1) * cg]
            y[n, g * cg:(g + 1) * cg] = (part - part.mean()) / np.sqrt(part.var() + eps)
    if weight is not None:
        bs = (1, -1) + (1,) * (x.ndim - 2)
        y = y * weight.reshape(bs) + bias.reshape(bs)
    return y


@pytest.mark.parametrize("shape, groups", [((3, 6), 3), ((2, 6, 5), 2), ((2, 4, 3, 2), 4),
                                           ((2, 4, 2, 3, 2), 1)])
def test_groupnorm_formula_gradients_and_vmap(shape, groups):
    c = shape[1]
    gn = _with(nn.GroupNorm(groups, c, dtype=np.float64), weight=R.normal(size=c),
               bias=R.normal(size=c))
    x = R.normal(loc=1.0, scale=2.0, size=shape)
    np.testing.assert_allclose(get(put(gn)(put(x))), groupnorm_loop(x, groups, gn.weight, gn.bias),
                               rtol=1e-10, atol=1e-12)
    check_grads(lambda gn, x: np.tanh(gn(x)), put((gn, x)), order=2)
    xs = np.stack([x, 2 * x + 1])
    np.testing.assert_allclose(ff.vmap(gn)(xs), np.stack([gn(b) for b in xs]), rtol=1e-12)
    y, same = nn.apply(gn, x)  # training mode is the same
    assert same is gn
    np.testing.assert_allclose(y, gn(x))


def test_groupnorm_options_printing_and_errors():
    gn = nn.GroupNorm(2, 4, nn.relu, eps=1e-3, affine=False, dtype=np.float64)
    assert gn.weight is None and gn.bias is None
    x = R.normal(size=(3, 4, 5))
    np.testing.assert_allclose(gn(x), np.maximum(groupnorm_loop(x, 2, None, None, 1e-3), 0))
    assert repr(gn) == "GroupNorm(2, 4, relu; eps=0.001, affine=False)"
    assert repr(nn.GroupNorm(2, 4)) == "GroupNorm(2, 4)  # 8 parameters, 0.031 KiB"
    assert nn.GroupNorm(2, 4)(np.ones((2, 4, 3), np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"^GroupNorm\(2, 4\) got input of shape \(2, 3, 5\); "
                                         r"expected \(N, 4, \.\.\.\)$"):
        nn.GroupNorm(2, 4)(np.ones((2, 3, 5)))
    with pytest.raises(TypeError, match="GroupNorm: activation must be a function"):
        nn.GroupNorm(2, 4, 1e-3)


# ----------------------------------------------------------------------------- InstanceNorm
def instancenorm_loop(x, mean=None, var=None, eps=1e-5):
    """Each (example, channel) by its own statistics, or by the given per-channel ones."""
    y = np.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            m = x[n, c].mean() if mean is None else mean[c]
            v = x[n, c].var() if var is None else var[c]
            y[n, c] = (x[n, c] - m) / np.sqrt(v + eps)
    return y


@pytest.mark.parametrize("shape", [(3, 2, 5), (2, 3, 4, 3), (2, 2, 2, 3, 2)])
def test_instancenorm_formula_gradients_and_vmap(shape):
    x = R.normal(loc=-1.0, scale=3.0, size=shape)
    inorm = nn.InstanceNorm(shape[1], dtype=np.float64)
    assert inorm.weight is None and inorm.running_mean is None   # PyTorch's defaults
    np.testing.assert_allclose(get(inorm(put(x))), instancenorm_loop(x), rtol=1e-10, atol=1e-12)
    aff = _with(nn.InstanceNorm(shape[1], affine=True, dtype=np.float64),
                weight=R.normal(size=shape[1]), bias=R.normal(size=shape[1]))
    bs = (1, -1) + (1,) * (len(shape) - 2)
    np.testing.assert_allclose(aff(x), instancenorm_loop(x) * aff.weight.reshape(bs)
                               + aff.bias.reshape(bs), rtol=1e-10, atol=1e-12)
    check_grads(lambda m, x: np.tanh(m(x)), put((aff, x)), order=2)
    xs = np.stack([x, 2 * x])
    np.testing.assert_allclose(ff.vmap(aff)(xs), np.stack([aff(b) for b in xs]), rtol=1e-12)


def test_instancenorm_running_statistics_as_pytorch():
    inorm = _with(nn.InstanceNorm(3, momentum=0.2, track_stats=True, dtype=np.float64),
                  running_mean=np.array([1.0, 2.0, 3.0]), running_var=np.array([2.0, 3.0, 4.0]))
    x = R.normal(loc=2.0, scale=3.0, size=(4, 3, 5, 2))
    y, new = nn.apply(inorm, x)
    np.testing.assert_allclose(y, instancenorm_loop(x), rtol=1e-10)   # instance statistics
    # PyTorch: the batch average of each instance's mean and unbiased variance
    n = 10
    mean = x.mean(axis=(2, 3)).mean(axis=0)
    var = (x.var(axis=(2, 3)) * n / (n - 1)).mean(axis=0)
    np.testing.assert_allclose(new.running_mean, 0.8 * np.array([1.0, 2.0, 3.0]) + 0.2 * mean)
    np.testing.assert_allclose(new.running_var, 0.8 * np.array([2.0, 3.0, 4.0]) + 0.2 * var)
    assert inorm.running_mean.tolist() == [1.0, 2.0, 3.0]
    # inference uses the running statistics
    np.testing.assert_allclose(new(x), instancenorm_loop(x, new.running_mean, new.running_var))
    assert set(ff.trainable(new)) == {"weight", "bias"}
    g = ff.grad(lambda m: np.sum(nn.apply(m, x)[0] ** 3))(inorm)
    assert not g.running_mean.any() and not g.running_var.any()
    check_grads(lambda x: nn.apply(inorm, x)[0], (x[:2],), order=2)


def test_instancenorm_printing_and_errors():
    assert repr(nn.InstanceNorm(3)) == "InstanceNorm(3)"
    assert repr(nn.InstanceNorm(3, nn.relu, affine=True, track_stats=True)) == (
        "InstanceNorm(3, relu; affine=True, track_stats=True)  # 6 parameters, plus 6 "
        "non-trainable, 0.047 KiB")
    y, new = nn.apply(nn.InstanceNorm(2, track_stats=True), R.normal(size=(2, 2, 3)))
    assert new.running_mean.dtype == np.float32
    with pytest.raises(ValueError, match=r"^InstanceNorm\(3\) got input of shape \(2, 3\); "
                                         r"expected \(N, 3, \*spatial\)"):
        nn.InstanceNorm(3)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.apply(nn.InstanceNorm(3, track_stats=True), np.ones((2, 3, 1)))
