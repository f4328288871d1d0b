"""Upsample and PixelShuffle against PyTorch's definitions written out element by element."""
from __future__ import annotations

import math

import numpy as np
import pytest

import funcflux as ff
from funcflux import nn
from funcflux.test_util import check_grads
from tests.devices import get, put

R = np.random.default_rng(0)


def source(d, n, out, ratio, mode, align_corners):
    """PyTorch's source position of output ``d`` along an axis: ``[(index, weight), ...]``."""
    if mode == "nearest":
        return [(min(math.floor(d * ratio), n - 1), 1.0)]
    if align_corners:
        src = d * (n - 1) / (out - 1) if out > 1 else 0.0
    else:
        src = max((d + 0.5) * ratio - 0.5, 0.0)
    i0 = min(math.floor(src), n - 1)
    i1 = min(i0 + 1, n - 1)
    return [(i0, 1.0 - (src - i0)), (i1, src - i0)]


def upsample_loop(x, out, ratios, mode, align_corners=False):
    """Every output element as a weighted sum over the corners of its source cell."""
    nd = len(out)
    sp = x.shape[-nd:]
    y = np.zeros(x.shape[:-nd] + tuple(out))
    for pos in np.ndindex(*out):
        per_axis = [source(d, n, o, r, mode, align_corners)
                    for d, n, o, r in zip(pos, sp, out, ratios)]
        for corner in np.ndindex(*[len(p) for p in per_axis]):
            idx = tuple(per_axis[a][c][0] for a, c in enumerate(corner))
            w = np.prod([per_axis[a][c][1] for a, c in enumerate(corner)])
            y[(Ellipsis,) + pos] += w * x[(Ellipsis,) + idx]
    return y


def test_pytorch_documented_values():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # torch.nn.Upsample(scale_factor=2, mode="bilinear"), align_corners False and True
    want = [[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5],
            [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]]
    np.testing.assert_allclose(nn.Upsample(2, mode="bilinear")(x)[0, 0], want)
    t = 1 / 3
    want = [[1, 1 + t, 2 - t, 2], [2 - t, 2, 2 + t, 3 - t],
            [2 + t, 3 - t, 3, 3 + t], [3, 3 + t, 4 - t, 4]]
    np.testing.assert_allclose(nn.Upsample(2, mode="bilinear", align_corners=True)(x)[0, 0], want)
    np.testing.assert_array_equal(nn.Upsample(2)(x)[0, 0], np.repeat(np.repeat(x[0, 0], 2, 0), 2, 1))
    # a size that is not a multiple: nearest takes floor(i * 3 / 5) = 0, 0, 1, 1, 2
    v = np.array([[[1.0, 2.0, 3.0]]])
    np.testing.assert_array_equal(nn.Upsample(size=5)(v)[0, 0], [1, 1, 2, 2, 3])
    np.testing.assert_allclose(nn.Upsample(size=5, mode="linear")(v)[0, 0],
                               [1.0, 1.4, 2.0, 2.6, 3.0])


CASES = [  # mode, input spatial, scale_factor, size, align_corners
    ("nearest", (3,), 2, None, False),
    ("nearest", (3, 4), None, (5, 9), False),
    ("nearest", (2, 3, 2), (2, 1.5, 3), None, False),
    ("linear", (4,), 2.5, None, False),
    ("linear", (4,), None, 7, True),
    ("bilinear", (3, 4), 2, None, False),
    ("bilinear", (3, 2), None, (5, 5), True),
    ("bilinear", (4, 4), (0.5, 1.5), None, False),       # downsampling one axis
    ("trilinear", (2, 3, 2), (2, 1, 3), None, False),
]


@pytest.mark.parametrize("mode, spatial, scale, size, align", CASES)
def test_upsample_matches_definition(mode, spatial, scale, size, align):
    nd = len(spatial)
    x = R.normal(size=(2, 3) + spatial)
    layer = nn.Upsample(scale, size=size, mode=mode, align_corners=align)
    if size is not None:
        out = (size,) * nd if np.ndim(size) == 0 else size
        ratios = [n / o for n, o in zip(spatial, out)]
    else:
        sc = (scale,) * nd if np.ndim(scale) == 0 else scale
        out = tuple(math.floor(n * f) for n, f in zip(spatial, sc))
        ratios = [1 / f for f in sc]
    want = upsample_loop(x, out, ratios, mode, align)
    y = get(layer(put(x)))
    assert y.shape == (2, 3) + tuple(out)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    check_grads(layer, (put(x[:1]),), order=2)
    xs = np.stack([x, 2 * x])
    np.testing.assert_allclose(ff.vmap(layer)(xs), np.stack([layer(b) for b in xs]), atol=1e-12)
    if layer.spatial_dims is not None:
        np.testing.assert_allclose(layer(x[0]), want[0], atol=1e-12)   # no batch axis


def test_upsample_dtype_printing_and_errors():
    x = R.normal(size=(1, 2, 3, 3)).astype(np.float32)
    assert nn.Upsample(2, mode="bilinear")(x).dtype == np.float32
    g = ff.grad(lambda x: np.sum(nn.Upsample(2, mode="bilinear")(x) ** 2))(x)
    assert g.dtype == np.float32
    assert repr(nn.Upsample(2)) == "Upsample(2)"
    assert repr(nn.Upsample(size=(4, 4), mode="bilinear", align_corners=True)) == \
        "Upsample(size=(4, 4), mode='bilinear', align_corners=True)"
    assert repr(nn.Upsample((2, 3), mode="bilinear")) == "Upsample((2.0, 3.0), mode='bilinear')"
    with pytest.raises(ValueError, match="exactly one of scale_factor and size"):
        nn.Upsample()
    with pytest.raises(ValueError, match="mode must be one of"):
        nn.Upsample(2, mode="bicubic")
    with pytest.raises(ValueError, match=r"mode 'bilinear' resizes 2 spatial axes, but size "
                                         r"\(4, 4, 4\) has 3"):
        nn.Upsample(size=(4, 4, 4), mode="bilinear")
    with pytest.raises(ValueError, match=r"Upsample\(2, mode='bilinear'\) got input of shape "
                                         r"\(1, 2, 3, 4, 5\); expected \(N, C, H, W\) or \(C, H, W\)"):
        nn.Upsample(2, mode="bilinear")(np.zeros((1, 2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"expected \(N, C, \*spatial\)"):
        nn.Upsample(2)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="align_corners only applies to the linear modes"):
        nn.Upsample(2, align_corners=True)


# ----------------------------------------------------------------------------- PixelShuffle
def pixel_shuffle_loop(x, r):
    """PyTorch: out[n, c, h * r + i, w * r + j] = x[n, c * r * r + i * r + j, h, w]."""
    n_, crr, h, w = x.shape
    c = crr // (r * r)
    y = np.zeros((n_, c, h * r, w * r))
    for n in range(n_):
        for ch in range(c):
            for i in range(r):
                for j in range(r):
                    y[n, ch, i::r, j::r] = x[n, ch * r * r + i * r + j]
    return y


@pytest.mark.parametrize("r, c", [(2, 1), (2, 3), (3, 2), (1, 4)])
def test_pixel_shuffle_matches_definition(r, c):
    x = R.normal(size=(2, c * r * r, 3, 2))
    layer = nn.PixelShuffle(r)
    want = pixel_shuffle_loop(x, r)
    np.testing.assert_array_equal(get(layer(put(x))), want)
    np.testing.assert_array_equal(layer(x[1]), want[1])     # a single image
    check_grads(lambda x: np.tanh(layer(x)), (put(x[:1]),), order=2)
    np.testing.assert_array_equal(ff.vmap(layer)(x[:, None]), want[:, None])


def test_pixel_shuffle_printing_and_errors():
    assert repr(nn.PixelShuffle(3)) == "PixelShuffle(3)"
    with pytest.raises(ValueError, match=r"PixelShuffle\(2\) got input of shape \(1, 6, 3, 3\); "
                                         r"expected \(N, C \* 4, H, W\)"):
        nn.PixelShuffle(2)(np.zeros((1, 6, 3, 3)))
    with pytest.raises(ValueError, match="upscale_factor must be a positive int"):
        nn.PixelShuffle(0)
    model = nn.Chain(nn.Conv(3, 2, 8, padding=1, rng=0), nn.PixelShuffle(2))
    assert model(np.zeros((1, 2, 5, 5), np.float32)).shape == (1, 2, 10, 10)
