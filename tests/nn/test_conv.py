"""Conv, ConvTranspose and the pools against direct loop implementations, plus derivatives."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn
from funcflux.nn.conv import conv2d, conv_transpose2d
from funcflux.test_util import check_grads
from tests.devices import get, put


# ----------------------------------------------------------------------------- references
def conv_loop(x, w, b, stride, pads, dilation, groups):
    """Direct definition: each output is a sum over its window (Python loops over outputs)."""
    n_, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n_, o, oh, ow))
    og = o // groups
    for n in range(n_):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    win = xp[n, g * cg:(g + 1) * cg,
                             i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
                    out[n, oc, i, j] = np.sum(win * w[oc]) + (0 if b is None else b[oc])
    return out


def conv_transpose_loop(x, w, b, stride, padding, output_padding, dilation, groups):
    """Scatter definition: each input pixel adds ``x * w`` into its window of the output."""
    n_, cin, h, wd = x.shape
    _, og, kh, kw = w.shape
    (sh, sw), (dh, dw), (ph, pw), (eh, ew) = stride, dilation, padding, output_padding
    fh, fw = (h - 1) * sh + dh * (kh - 1) + 1 + eh, (wd - 1) * sw + dw * (kw - 1) + 1 + ew
    full = np.zeros((n_, og * groups, fh, fw))
    cg = cin // groups
    for n in range(n_):
        for ci in range(cin):
            g = ci // cg
            for i in range(h):
                for j in range(wd):
                    full[n, g * og:(g + 1) * og, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                         j * sw:j * sw + dw * (kw - 1) + 1:dw] += x[n, ci, i, j] * w[ci]
    out = full[:, :, ph:fh - ph, pw:fw - pw]
    return out if b is None else out + b[:, None, None]


def pool_loop(x, reduce, window, stride, padding, fill):
    kh, kw = window
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=fill)
    oh = (xp.shape[2] - kh) // stride[0] + 1
    ow = (xp.shape[3] - kw) // stride[1] + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = reduce(xp[:, :, i * stride[0]:i * stride[0] + kh,
                                        j * stride[1]:j * stride[1] + kw], axis=(2, 3))
    return out


def _layer_with(layer, w, b):
    return ff.tree_at(lambda m: (m.weight, m.bias), layer, replace=(w, b))


# (kernel, cin, cout, stride, padding, dilation, groups, H, W)
CONV_CASES = [
    ((3, 3), 2, 3, 1, 0, 1, 1, 6, 5),
    ((3, 2), 2, 4, (2, 1), 1, 1, 1, 7, 6),
    ((3, 3), 1, 2, 1, "same", 1, 1, 5, 4),
    ((4, 4), 2, 2, 1, "same", 1, 1, 6, 6),       # even kernel: extra padding bottom/right
    ((3, 3), 2, 2, 1, "same", 2, 1, 7, 6),       # "same" with dilation
    ((2, 3), 3, 2, 2, (1, 2), (2, 1), 1, 7, 8),
    ((3, 3), 4, 6, 1, 1, 1, 2, 5, 5),            # groups
    ((2, 2), 4, 4, 2, 0, 1, 4, 6, 7),            # depthwise, stride 2, floor
    ((1, 1), 3, 2, 1, 0, 1, 1, 3, 3),
]


def _make_conv(case, bias=True, rng=0):
    kernel, cin, cout, stride, padding, dilation, groups, h, w = case
    layer = nn.Conv(kernel, cin, cout, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, bias=bias, rng=rng, dtype=np.float64)
    r = np.random.default_rng(1)
    if bias:
        layer = _layer_with(layer, layer.weight, r.standard_normal(cout))
    x = r.standard_normal((2, cin, h, w))
    return layer, x


def _loop_of(layer, x):
    o, cg, kh, kw = layer.weight.shape
    pads = nn.conv._pad_widths(layer.padding, (kh, kw), layer.stride, layer.dilation)
    return conv_loop(x, layer.weight, layer.bias, layer.stride, pads, layer.dilation, layer.groups)


# ----------------------------------------------------------------------------- Conv
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_loop(case):
    layer, x = _make_conv(case)
    y = get(put(layer)(put(x)))  # on the session's device (pytest --device strict/gpu)
    np.testing.assert_allclose(y, _loop_of(layer, x), rtol=1e-12, atol=1e-12)
    if case[4] == "same":
        assert y.shape[2:] == x.shape[2:]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradients(case):
    layer, x = _make_conv(case)
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
              groups=layer.groups)
    x = x[:1]
    check_grads(lambda x, w, b: conv2d(x, w, b, **kw), put((x, layer.weight, layer.bias)),
                order=1)
    # Reverse-mode gradient against the loop's own finite differences is covered above;
    # also check it against the adjoint identity with the loop: <conv(x), ct> = <x, grad>.
    ct = np.random.default_rng(2).standard_normal(_loop_of(layer, x).shape)
    gx = ff.grad(lambda x: np.sum(layer(x) * ct))(x)
    e = np.zeros_like(x)
    e.flat[3] = 1.0
    zero_b = _layer_with(layer, layer.weight, np.zeros_like(layer.bias))
    assert np.isclose(gx.flat[3], np.sum(_loop_of(zero_b, e) * ct))


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[5], CONV_CASES[6]])
def test_conv_second_order(case):
    layer, x = _make_conv(case)
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
              groups=layer.groups)
    check_grads(lambda x, w, b: np.tanh(conv2d(x, w, b, **kw)),
                put((x[:1] * 0.3, layer.weight, layer.bias)), order=2)


def test_conv_grad_of_layer_object():
    layer, x = _make_conv(CONV_CASES[0])
    g = ff.grad(lambda m: np.sum(m(x) ** 2))(layer)
    assert isinstance(g, nn.Conv) and g.weight.shape == layer.weight.shape
    eps = 1e-6
    w2 = layer.weight.copy()
    w2[1, 0, 2, 1] += eps
    num = (np.sum(_layer_with(layer, w2, layer.bias)(x) ** 2) - np.sum(layer(x) ** 2)) / eps
    assert np.isclose(g.weight[1, 0, 2, 1], num, rtol=1e-4)


def test_conv_without_bias_and_activation():
    layer = nn.Conv(3, 2, 3, nn.relu, bias=False, rng=0, dtype=np.float64)
    assert layer.bias is None
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5))
    pads = ((0, 0), (0, 0))
    np.testing.assert_allclose(layer(x), np.maximum(conv_loop(x, layer.weight, None, (1, 1), pads,
                                                              (1, 1), 1), 0), atol=1e-12)
    assert repr(layer).startswith("Conv((3, 3), 2 => 3, relu, bias=False)")


def test_conv_single_image_and_vmap():
    layer, x = _make_conv(CONV_CASES[1])
    np.testing.assert_allclose(layer(x[0]), layer(x)[0], atol=1e-12)   # (C, H, W) input
    xs = np.random.default_rng(3).standard_normal((3,) + x.shape)      # a batch of batches
    got = ff.vmap(layer)(xs)
    np.testing.assert_allclose(got, np.stack([layer(b) for b in xs]), atol=1e-12)
    got = ff.vmap(layer, in_axes=1, out_axes=1)(np.moveaxis(xs, 0, 1))  # mapped axis inside
    np.testing.assert_allclose(np.moveaxis(got, 1, 0), np.stack([layer(b) for b in xs]), atol=1e-12)
    # Per-example gradients: vmap of grad over single images.
    per = ff.vmap(ff.grad(lambda m, xi: np.sum(m(xi) ** 2)), in_axes=(None, 0))(layer, x)
    for i in range(x.shape[0]):
        gi = ff.grad(lambda m: np.sum(m(x[i:i + 1]) ** 2))(layer)
        np.testing.assert_allclose(per.weight[i], gi.weight, atol=1e-10)
        np.testing.assert_allclose(per.bias[i], gi.bias, atol=1e-10)


def test_vmap_over_stacked_conv_layers():
    layers = [_make_conv(CONV_CASES[6], rng=k)[0] for k in range(3)]
    x = _make_conv(CONV_CASES[6])[1]
    stacked = ff.tree.stack(layers)
    got = ff.vmap(lambda m: m(x))(stacked)
    np.testing.assert_allclose(got, np.stack([m(x) for m in layers]), atol=1e-12)


def test_conv_float32_preserved():
    layer = nn.Conv(3, 2, 4, nn.relu, padding=1, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    assert layer.weight.dtype == layer.bias.dtype == np.float32
    y, g = ff.value_and_grad(lambda m, x: np.sum(m(x) ** 2), argnums=(0, 1))(layer, x)
    assert y.dtype == np.float32
    assert g[0].weight.dtype == g[0].bias.dtype == g[1].dtype == np.float32
    t = ff.jvp(lambda x: layer(x), (x,), (np.ones_like(x),))[1]
    assert t.dtype == np.float32


def test_conv_init_fans_and_printing():
    c = nn.Conv((3, 3), 1, 8, nn.relu, rng=0)
    assert c.weight.shape == (8, 1, 3, 3) and c.bias.shape == (8,)
    limit = np.sqrt(6 / (9 * 1 + 9 * 8))  # Flux: fan_in = 9 * in, fan_out = 9 * out
    assert np.all(np.abs(c.weight) <= limit) and np.abs(c.weight).max() > 0.8 * limit
    assert repr(c) == "Conv((3, 3), 1 => 8, relu)  # 80 parameters, 0.312 KiB"
    c = nn.Conv((3, 5), 4, 8, stride=(2, 1), padding=(1, 2), dilation=2,
                groups=2, rng=0)
    assert c._repr_inner() == "Conv((3, 5), 4 => 8, stride=(2, 1), padding=(1, 2), dilation=2, groups=2)"
    assert nn.Conv(3, 1, 1, padding="same")._repr_inner() == "Conv((3, 3), 1 => 1, padding='same')"
    assert nn.Conv(2, 1, 1, rng=0).weight.dtype == np.float32
    assert nn.Conv(2, 1, 1, init=nn.zeros).weight.sum() == 0


def test_conv_errors():
    c = nn.Conv(3, 3, 8)
    with pytest.raises(ValueError, match=r"Conv\(\(3, 3\), 3 => 8\) got input of shape "
                                         r"\(2, 1, 28, 28\); expected \(N, 3, H, W\)"):
        c(np.zeros((2, 1, 28, 28)))
    with pytest.raises(ValueError, match=r"got input of shape \(28, 28\); expected"):
        c(np.zeros((28, 28)))
    with pytest.raises(ValueError, match=r"expected spatial size at least \(3, 3\)"):
        c(np.zeros((1, 3, 2, 5)))
    with pytest.raises(ValueError, match="after padding"):
        nn.Conv(5, 3, 8, padding=1)(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv(3, 3, 8, groups=2)
    with pytest.raises(ValueError, match='"same" needs stride 1'):
        nn.Conv(3, 3, 8, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be"):
        nn.Conv(3, 3, 8, padding="valid")
    with pytest.raises(ValueError, match="kernel_size must be"):
        nn.Conv((), 3, 8)
    with pytest.raises(ValueError, match=r"stride must be .* a tuple of 3 of them"):
        nn.Conv((3, 3, 3), 3, 8, stride=(1, 2))
    with pytest.raises(ValueError, match="stride must be"):
        nn.Conv(3, 3, 8, stride=0)
    with pytest.raises(AttributeError, match="immutable"):
        c.weight = None


# ----------------------------------------------------------------------------- ConvTranspose
# (kernel, cin, cout, stride, padding, output_padding, dilation, groups, H, W)
CT_CASES = [
    ((3, 3), 2, 3, 1, 0, 0, 1, 1, 3, 4),
    ((3, 2), 2, 2, 2, 1, 1, 1, 1, 3, 3),
    ((4, 4), 3, 2, (2, 3), (1, 2), (1, 0), 1, 1, 3, 2),
    ((2, 3), 2, 2, 1, 0, (1, 1), 2, 1, 3, 3),      # output_padding < dilation
    ((3, 3), 4, 6, 2, 1, 0, 1, 2, 3, 3),           # groups
]


def _make_ct(case):
    kernel, cin, cout, stride, padding, op, dilation, groups, h, w = case
    layer = nn.ConvTranspose(kernel, cin, cout, stride=stride, padding=padding,
                             output_padding=op, dilation=dilation, groups=groups, rng=0,
                             dtype=np.float64)
    r = np.random.default_rng(1)
    layer = _layer_with(layer, layer.weight, r.standard_normal(cout))
    return layer, r.standard_normal((2, cin, h, w))


@pytest.mark.parametrize("case", CT_CASES)
def test_conv_transpose_matches_scatter_loop(case):
    layer, x = _make_ct(case)
    want = conv_transpose_loop(x, layer.weight, layer.bias, layer.stride, layer.padding,
                               layer.output_padding, layer.dilation, layer.groups)
    np.testing.assert_allclose(get(put(layer)(put(x))), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_transpose_is_the_adjoint_of_conv(case):
    conv, x = _make_conv(case, bias=False)
    y = np.random.default_rng(4).standard_normal(conv(x).shape)
    kh, kw = conv.weight.shape[2:]
    pads = nn.conv._pad_widths(conv.padding, (kh, kw), conv.stride, conv.dilation)
    if any(a != b for a, b in pads):
        return  # asymmetric "same" padding has no ConvTranspose counterpart
    p = (pads[0][0], pads[1][0])
    op = tuple(n - ((m - 1) * s - 2 * pp + d * (k - 1) + 1) for n, m, s, pp, d, k in zip(
        x.shape[2:], y.shape[2:], conv.stride, p, conv.dilation, (kh, kw)))
    xt = conv_transpose2d(y, conv.weight, stride=conv.stride, padding=p, output_padding=op,
                          dilation=conv.dilation, groups=conv.groups)
    assert xt.shape == x.shape
    assert np.isclose(np.sum(conv(x) * y), np.sum(x * xt), rtol=1e-12)


@pytest.mark.parametrize("case", CT_CASES)
def test_conv_transpose_gradients(case):
    layer, x = _make_ct(case)
    kw = dict(stride=layer.stride, padding=layer.padding, output_padding=layer.output_padding,
              dilation=layer.dilation, groups=layer.groups)
    check_grads(lambda x, w, b: np.tanh(conv_transpose2d(x, w, b, **kw)),
                put((x[:1] * 0.3, layer.weight, layer.bias)),
                order=2 if case is CT_CASES[1] else 1)


def test_conv_transpose_printing_errors_and_vmap():
    t = nn.ConvTranspose((3, 3), 8, 1, nn.relu, stride=2, output_padding=1)
    assert t._repr_inner() == "ConvTranspose((3, 3), 8 => 1, relu, stride=2, output_padding=1)"
    assert t.weight.shape == (8, 1, 3, 3)
    with pytest.raises(ValueError, match="output_padding 2 must be smaller"):
        nn.ConvTranspose(3, 8, 1, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"ConvTranspose\(\(3, 3\), 8 => 1.*expected \(N, 8, H, W\)"):
        t(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="output size would be"):
        nn.ConvTranspose(1, 1, 1, padding=1)(np.zeros((1, 1, 1, 1)))
    layer, x = _make_ct(CT_CASES[1])
    xs = np.stack([x, 2 * x, -x])
    np.testing.assert_allclose(ff.vmap(layer)(xs), np.stack([layer(b) for b in xs]), atol=1e-12)


# ----------------------------------------------------------------------------- pools
POOL_CASES = [  # window, stride, padding, H, W
    ((2, 2), None, 0, 6, 6),
    ((2, 2), None, 0, 5, 7),          # floor: the last row/column is dropped
    ((3, 3), (2, 2), 1, 7, 6),        # overlapping, padded
    ((3, 2), (1, 2), (1, 0), 4, 5),
    ((2, 3), 3, 0, 4, 9),             # gaps between windows
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool_matches_loop(case):
    window, stride, padding, h, w = case
    layer = nn.MaxPool(window, stride, padding)
    x = np.random.default_rng(0).permutation(2 * 3 * h * w).reshape(2, 3, h, w) / 7.0
    want = pool_loop(x, np.max, layer.window, layer.stride, layer.padding, -np.inf)
    np.testing.assert_array_equal(get(layer(put(x))), want)
    check_grads(layer, (put(x),), order=2)


@pytest.mark.parametrize("case", POOL_CASES)
def test_meanpool_matches_loop(case):
    window, stride, padding, h, w = case
    layer = nn.MeanPool(window, stride, padding)
    x = np.random.default_rng(0).standard_normal((2, 3, h, w))
    want = pool_loop(x, np.mean, layer.window, layer.stride, layer.padding, 0.0)
    np.testing.assert_allclose(get(layer(put(x))), want, atol=1e-12)
    check_grads(layer, (put(x),), order=2)


def test_maxpool_ties_share_the_gradient():
    x = np.array([[[[1.0, 3.0, 0.0], [3.0, 2.0, 5.0], [9.0, 9.0, 9.0]]]])
    g = ff.grad(lambda x: np.sum(nn.MaxPool(2, stride=1)(x)))(x)
    want = np.array([[[[0, 0.5, 0], [0.5, 0, 1], [0.5, 1, 0.5]]]])  # ties split per window
    np.testing.assert_allclose(g, want)


def test_pools_float32_vmap_and_globals():
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 6, 6)).astype(np.float32)
    for layer in (nn.MaxPool(2), nn.MeanPool(3, 2, 1), nn.GlobalMeanPool(), nn.GlobalMaxPool()):
        y, g = ff.value_and_grad(lambda x: np.sum(layer(x) ** 2))(x[0])
        assert y.dtype == g.dtype == np.float32
        np.testing.assert_allclose(ff.vmap(layer)(x), np.stack([layer(b) for b in x]), rtol=1e-6)
    np.testing.assert_allclose(nn.GlobalMeanPool()(x[0]), x[0].mean(axis=(2, 3), keepdims=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(nn.GlobalMaxPool()(x[0]), x[0].max(axis=(2, 3), keepdims=True))


def test_pool_printing_and_errors():
    assert repr(nn.MaxPool((2, 2))) == "MaxPool((2, 2))"
    assert repr(nn.MaxPool(3, stride=2, padding=1)) == "MaxPool((3, 3), stride=2, padding=1)"
    assert repr(nn.MeanPool((2, 1))) == "MeanPool((2, 1))"
    assert repr(nn.GlobalMeanPool()) == "GlobalMeanPool()"
    with pytest.raises(ValueError, match=r"MaxPool\(\(2, 2\)\) got input of shape \(28, 28\)"):
        nn.MaxPool(2)(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="spatial size at least"):
        nn.MaxPool(3)(np.zeros((1, 1, 2, 8)))
    with pytest.raises(ValueError, match="must be smaller than the window"):
        nn.MaxPool(2, padding=2)


def test_small_cnn_trains():
    model = nn.Chain(nn.Conv(3, 1, 4, nn.relu, rng=0), nn.MaxPool(2), nn.Flatten(),
                     nn.Dense(4 * 3 * 3, 2, rng=1))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum(axis=(1, 2)) > 0).astype(int)

    def loss(m):
        z = m(x)
        z = z - np.max(z, axis=1, keepdims=True)
        return -np.mean(z[np.arange(16), y] - np.log(np.sum(np.exp(z), axis=1)))

    first = loss(model)
    for _ in range(30):
        g = ff.grad(loss)(model)
        model = ff.fmap(lambda w, gw: w - 0.1 * gw, model, g)
    assert loss(model) < 0.7 * first


# ----------------------------------------------------------------------------- 1-D and 3-D
def convnd_loop(x, w, b, stride, pads, dilation, groups):
    """Direct definition in any number of spatial axes: a sum over each output's window."""
    nd = w.ndim - 2
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    o, cg, k = w.shape[0], w.shape[1], w.shape[2:]
    out = tuple((xp.shape[2 + i] - dilation[i] * (k[i] - 1) - 1) // stride[i] + 1
                for i in range(nd))
    y = np.zeros((x.shape[0], o) + out)
    og = o // groups
    for n in range(x.shape[0]):
        for oc in range(o):
            g = oc // og
            for pos in np.ndindex(*out):
                win = tuple(slice(p * s, p * s + d * (kk - 1) + 1, d)
                            for p, s, d, kk in zip(pos, stride, dilation, k))
                y[(n, oc) + pos] = (np.sum(xp[(n, slice(g * cg, (g + 1) * cg)) + win] * w[oc])
                                    + (0 if b is None else b[oc]))
    return y


def convnd_transpose_loop(x, w, b, stride, padding, output_padding, dilation, groups):
    """Scatter definition in any number of spatial axes."""
    nd = w.ndim - 2
    cin, og, k = w.shape[0], w.shape[1], w.shape[2:]
    full = tuple((x.shape[2 + i] - 1) * stride[i] + dilation[i] * (k[i] - 1) + 1
                 + output_padding[i] for i in range(nd))
    y = np.zeros((x.shape[0], og * groups) + full)
    cg = cin // groups
    for n in range(x.shape[0]):
        for ci in range(cin):
            g = ci // cg
            for pos in np.ndindex(*x.shape[2:]):
                win = tuple(slice(p * s, p * s + d * (kk - 1) + 1, d)
                            for p, s, d, kk in zip(pos, stride, dilation, k))
                y[(n, slice(g * og, (g + 1) * og)) + win] += x[(n, ci) + pos] * w[ci]
    y = y[(Ellipsis,) + tuple(slice(p, f - p) for p, f in zip(padding, full))]
    return y if b is None else y + b.reshape((-1,) + (1,) * nd)


def poolnd_loop(x, reduce, window, stride, padding, fill):
    nd = len(window)
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in padding), constant_values=fill)
    out = tuple((xp.shape[2 + i] - window[i]) // stride[i] + 1 for i in range(nd))
    y = np.zeros(x.shape[:2] + out)
    for pos in np.ndindex(*out):
        win = tuple(slice(p * s, p * s + k) for p, s, k in zip(pos, stride, window))
        y[(Ellipsis,) + pos] = reduce(xp[(Ellipsis,) + win], axis=tuple(range(2, 2 + nd)))
    return y


# (kernel, cin, cout, stride, padding, dilation, groups, spatial)
ND_CASES = [
    ((3,), 2, 3, 1, 0, 1, 1, (7,)),
    ((2,), 4, 6, 2, 1, 2, 2, (9,)),
    ((3,), 2, 2, 1, "same", 1, 1, (5,)),
    ((2, 2, 2), 2, 3, 1, 0, 1, 1, (3, 4, 3)),
    ((3, 2, 2), 2, 4, (2, 1, 1), (1, 0, 1), (1, 2, 1), 2, (5, 4, 3)),
    ((2, 3, 2), 1, 2, 1, "same", 1, 1, (3, 4, 3)),
]


def _make_nd(case, rng=0):
    kernel, cin, cout, stride, padding, dilation, groups, spatial = case
    layer = nn.Conv(kernel, cin, cout, stride=stride, padding=padding, dilation=dilation,
                    groups=groups, rng=rng, dtype=np.float64)
    r = np.random.default_rng(1)
    layer = _layer_with(layer, layer.weight, r.standard_normal(cout))
    return layer, r.standard_normal((2, cin) + spatial)


def _nd_loop_of(layer, x):
    pads = nn.conv._pad_widths(layer.padding, layer.weight.shape[2:], layer.stride,
                               layer.dilation)
    return convnd_loop(x, layer.weight, layer.bias, layer.stride, pads, layer.dilation,
                       layer.groups)


@pytest.mark.parametrize("case", ND_CASES)
def test_conv_1d_3d_match_loop(case):
    layer, x = _make_nd(case)
    y = get(put(layer)(put(x)))
    np.testing.assert_allclose(y, _nd_loop_of(layer, x), rtol=1e-12, atol=1e-12)
    if case[4] == "same":
        assert y.shape[2:] == x.shape[2:]
    fn = {1: nn.conv.conv1d, 3: nn.conv.conv3d}[len(case[0])]
    y2 = fn(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
            dilation=layer.dilation, groups=layer.groups)
    np.testing.assert_allclose(y2, y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer(x[0]), y[0], atol=1e-12)         # no batch axis


@pytest.mark.parametrize("case", [ND_CASES[1], ND_CASES[4]])
def test_conv_1d_3d_second_order(case):
    layer, x = _make_nd(case)
    check_grads(lambda x, m: np.tanh(m(x)), put((x[:1] * 0.3, layer)), order=2)


def test_conv_1d_3d_vmap_and_printing():
    for case in (ND_CASES[1], ND_CASES[4]):
        layer, x = _make_nd(case)
        xs = np.stack([x, -x, 2 * x])
        np.testing.assert_allclose(ff.vmap(layer)(xs), np.stack([layer(b) for b in xs]),
                                   atol=1e-12)
        stacked = ff.tree.stack([layer, _make_nd(case, rng=3)[0]])
        np.testing.assert_allclose(ff.vmap(lambda m: m(x))(stacked)[0], layer(x), atol=1e-12)
    assert nn.Conv((3,), 1, 4)._repr_inner() == "Conv((3,), 1 => 4)"
    c = nn.Conv((3, 3, 3), 2, 4, nn.relu, stride=(1, 2, 2), padding=1, rng=0)
    assert repr(c) == ("Conv((3, 3, 3), 2 => 4, relu, stride=(1, 2, 2), padding=1)  "
                       "# 220 parameters, 0.859 KiB")
    assert c.weight.shape == (4, 2, 3, 3, 3)
    stacked = ff.tree.stack([nn.Conv((3,), 1, 4), nn.Conv((3,), 1, 4)])
    assert repr(stacked).startswith("Conv((3,), 1 => 4)  # 2 stacked, 16 parameters each")


def test_conv_1d_3d_errors():
    with pytest.raises(ValueError, match=r"Conv\(\(3,\), 2 => 4\) got input of shape "
                                         r"\(1, 3, 8\); expected \(N, 2, L\) or \(2, L\)"):
        nn.Conv((3,), 2, 4)(np.zeros((1, 3, 8)))
    with pytest.raises(ValueError, match=r"expected \(N, 2, D, H, W\) or \(2, D, H, W\)"):
        nn.Conv((3, 3, 3), 2, 4)(np.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match=r"spatial size at least \(3, 3, 3\)"):
        nn.Conv((3, 3, 3), 2, 4)(np.zeros((1, 2, 8, 2, 8)))
    with pytest.raises(ValueError, match=r"conv1d: weight of shape \(2, 1, 3, 3\) is not a 1-D"):
        nn.conv.conv1d(np.zeros((1, 1, 5)), np.zeros((2, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"padding must be .* tuple of 1 of them"):
        nn.Conv((3,), 2, 4, padding=(1, 1))


# (kernel, cin, cout, stride, padding, output_padding, dilation, groups, spatial)
CT_ND_CASES = [
    ((3,), 2, 3, 2, 1, 1, 1, 1, (4,)),
    ((2,), 4, 2, 1, 0, 0, 2, 2, (3,)),
    ((2, 3, 2), 2, 2, (2, 1, 2), (0, 1, 1), (1, 0, 0), 1, 1, (2, 3, 2)),
]


@pytest.mark.parametrize("case", CT_ND_CASES)
def test_conv_transpose_1d_3d(case):
    kernel, cin, cout, stride, padding, op, dilation, groups, spatial = case
    layer = nn.ConvTranspose(kernel, cin, cout, stride=stride, padding=padding,
                             output_padding=op, dilation=dilation, groups=groups, rng=0,
                             dtype=np.float64)
    r = np.random.default_rng(1)
    layer = _layer_with(layer, layer.weight, r.standard_normal(cout))
    x = r.standard_normal((2, cin) + spatial)
    want = convnd_transpose_loop(x, layer.weight, layer.bias, layer.stride, layer.padding,
                                 layer.output_padding, layer.dilation, layer.groups)
    np.testing.assert_allclose(get(put(layer)(put(x))), want, rtol=1e-12, atol=1e-12)
    fn = {1: nn.conv.conv_transpose1d, 3: nn.conv.conv_transpose3d}[len(kernel)]
    np.testing.assert_allclose(fn(x, layer.weight, layer.bias, stride=layer.stride,
                                  padding=layer.padding, output_padding=layer.output_padding,
                                  dilation=layer.dilation, groups=layer.groups), want, atol=1e-12)
    check_grads(lambda x, m: np.tanh(m(x)), put((x[:1] * 0.3, layer)), order=2)
    xs = np.stack([x, -x])
    np.testing.assert_allclose(ff.vmap(layer)(xs), np.stack([layer(b) for b in xs]), atol=1e-12)
    assert layer._repr_inner().startswith(f"ConvTranspose({kernel}, {cin} => {cout}")


# window, stride, padding, spatial
POOL_ND_CASES = [
    ((2,), None, 0, (7,)),
    ((3,), 2, 1, (8,)),
    ((2, 2, 2), None, 0, (4, 5, 4)),
    ((3, 2, 2), (2, 1, 2), (1, 0, 1), (5, 3, 4)),
]


@pytest.mark.parametrize("case", POOL_ND_CASES)
def test_pools_1d_3d_match_loop(case):
    window, stride, padding, spatial = case
    x = np.random.default_rng(0).permutation(2 * 3 * int(np.prod(spatial))).reshape(
        (2, 3) + spatial) / 7.0
    for cls, red, fill, fns in ((nn.MaxPool, np.max, -np.inf, (nn.conv.maxpool1d,
                                                               nn.conv.maxpool3d)),
                                (nn.MeanPool, np.mean, 0.0, (nn.conv.meanpool1d,
                                                             nn.conv.meanpool3d))):
        layer = cls(window, stride, padding)
        want = poolnd_loop(x, red, layer.window, layer.stride, layer.padding, fill)
        np.testing.assert_allclose(get(layer(put(x))), want, atol=1e-12)
        fn = fns[0] if len(window) == 1 else fns[1]
        np.testing.assert_allclose(fn(x, window, stride, padding), want, atol=1e-12)
        check_grads(layer, (put(x[:1]),), order=2)
        np.testing.assert_allclose(ff.vmap(layer)(x), np.stack([layer(b) for b in x]))
    assert repr(nn.MaxPool((2,))) == "MaxPool((2,))"
    assert repr(nn.MeanPool((2, 2, 2), stride=1)) == "MeanPool((2, 2, 2), stride=1)"
    with pytest.raises(ValueError, match=r"MaxPool\(\(2,\)\) got input of shape \(2, 3, 4, 4\)"
                                         r"; expected \(N, C, L\) or \(C, L\)"):
        nn.MaxPool((2,))(np.zeros((2, 3, 4, 4)))


def test_global_pools_any_number_of_spatial_axes():
    r = np.random.default_rng(0)
    for spatial in [(5,), (3, 4), (2, 3, 4)]:
        x = r.standard_normal((2, 3) + spatial)
        axes = tuple(range(2, x.ndim))
        np.testing.assert_allclose(get(nn.GlobalMeanPool()(put(x))),
                                   x.mean(axis=axes, keepdims=True))
        np.testing.assert_array_equal(get(nn.GlobalMaxPool()(put(x))),
                                      x.max(axis=axes, keepdims=True))
        check_grads(nn.GlobalMeanPool(), (x,), order=2)
    with pytest.raises(ValueError, match=r"GlobalMaxPool\(\) got input of shape \(2, 3\); "
                                         r"expected \(N, C, \*spatial\)"):
        nn.GlobalMaxPool()(np.zeros((2, 3)))


# ----------------------------------------------------------------------------- DepthwiseConv
def test_depthwise_conv_is_conv_with_one_group_per_channel():
    d = nn.DepthwiseConv((3, 3), 3, 6, nn.relu, padding=1, rng=0, dtype=np.float64)
    assert d.weight.shape == (6, 1, 3, 3) and d.groups == 3 and isinstance(d, nn.Conv)
    r = np.random.default_rng(2)
    d = _layer_with(d, d.weight, r.standard_normal(6))
    x = r.standard_normal((2, 3, 5, 4))
    pads = ((1, 1), (1, 1))
    want = np.maximum(convnd_loop(x, d.weight, d.bias, (1, 1), pads, (1, 1), 3), 0)
    np.testing.assert_allclose(get(put(d)(put(x))), want, atol=1e-12)
    # output channel j sees input channel j // 2 alone (channel multiplier 2)
    for j in range(6):
        xj = x[:, j // 2:j // 2 + 1]
        one = convnd_loop(xj, d.weight[j:j + 1], d.bias[j:j + 1], (1, 1), pads, (1, 1), 1)
        np.testing.assert_allclose(want[:, j], np.maximum(one[:, 0], 0), atol=1e-12)
    check_grads(lambda x, m: m(x), (x[:1], d), order=2)
    assert repr(d) == "DepthwiseConv((3, 3), 3 => 6, relu, padding=1)  # 60 parameters, 0.469 KiB"
    d1 = nn.DepthwiseConv((3,), 2, 2, rng=0)
    assert d1(np.zeros((4, 2, 7), np.float32)).shape == (4, 2, 5)
    g = ff.grad(lambda m: np.sum(m(np.ones((1, 2, 7), np.float32)) ** 2))(d1)
    assert isinstance(g, nn.DepthwiseConv) and g.weight.shape == (2, 1, 3)
    with pytest.raises(ValueError, match=r"out_channels \(5\) must be a multiple of in_channels"):
        nn.DepthwiseConv(3, 2, 5)


# ----------------------------------------------------------------------------- adaptive pools
def adaptive_loop(x, out, reduce):
    """PyTorch's definition: output i of an axis of length n reduces
    [floor(i * n / out), ceil((i + 1) * n / out))."""
    nd = len(out)
    sp = x.shape[-nd:]
    y = np.zeros(x.shape[:-nd] + tuple(out))
    for pos in np.ndindex(*out):
        win = tuple(slice(int(np.floor(i * n / o)), int(np.ceil((i + 1) * n / o)))
                    for i, n, o in zip(pos, sp, out))
        y[(Ellipsis,) + pos] = reduce(x[(Ellipsis,) + win], axis=tuple(range(-nd, 0)))
    return y


ADAPTIVE_CASES = [  # output size, input spatial size
    ((3,), (7,)),
    ((4,), (8,)),       # equal windows
    ((5,), (3,)),       # more outputs than inputs: overlapping windows
    ((2, 3), (5, 7)),
    ((1, 1), (4, 6)),
    ((2, 2, 3), (4, 5, 7)),
]


@pytest.mark.parametrize("out, spatial", ADAPTIVE_CASES)
def test_adaptive_pools_match_index_formula(out, spatial):
    x = np.random.default_rng(0).permutation(2 * 3 * int(np.prod(spatial))).reshape(
        (2, 3) + spatial) / 5.0
    for cls, red in ((nn.AdaptiveMaxPool, np.max), (nn.AdaptiveMeanPool, np.mean)):
        layer = cls(out)
        want = adaptive_loop(x, out, red)
        np.testing.assert_allclose(get(layer(put(x))), want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(layer(x[0]), want[0], rtol=1e-12)  # no batch axis
        check_grads(layer, (put(x[:1]),), order=2)
        np.testing.assert_allclose(ff.vmap(layer)(x), np.stack([layer(b) for b in x]),
                                   rtol=1e-12)


def test_adaptive_pools_options_dtype_printing_errors():
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5)).astype(np.float32)
    np.testing.assert_allclose(nn.AdaptiveMeanPool(1)(x), nn.GlobalMeanPool()(x), atol=1e-6)
    y = nn.AdaptiveMaxPool((None, 2))(x)          # None keeps that axis
    np.testing.assert_array_equal(y, adaptive_loop(x, (6, 2), np.max))
    assert y.dtype == nn.AdaptiveMeanPool((4, 3))(x).dtype == np.float32
    assert repr(nn.AdaptiveMaxPool((2, 2))) == "AdaptiveMaxPool((2, 2))"
    assert repr(nn.AdaptiveMeanPool(3)) == "AdaptiveMeanPool((3, 3))"
    assert repr(nn.AdaptiveMeanPool((4,))) == "AdaptiveMeanPool((4,))"
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool\(\(2, 2\)\) got input of shape "
                                         r"\(3, 4\); expected \(N, C, H, W\) or \(C, H, W\)"):
        nn.AdaptiveMaxPool((2, 2))(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="AdaptiveMeanPool: output_size must be"):
        nn.AdaptiveMeanPool((0, 2))
