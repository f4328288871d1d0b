"""Dense, Chain, SkipConnection, Parallel, Flatten, Dropout, Embedding: values, grads, errors."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
from funcflux import losses, nn
from funcflux.test_util import check_grads

R = np.random.default_rng(0)


def f64(n=1):
    return dict(dtype=np.float64, rng=n)


# ----------------------------------------------------------------------------- Dense
def test_dense_output_and_gradient_by_hand():
    d = nn.Dense.from_arrays(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.array([1.0, 0, -1]),
                             np.tanh)
    x = np.array([[1.0, -1.0], [0.5, 0.25]])
    z = np.array([[1 - 2 + 1, 3 - 4, 5 - 6 - 1], [0.5 + 0.5 + 1, 1.5 + 1, 2.5 + 1.5 - 1]])
    np.testing.assert_allclose(d(x), np.tanh(z))
    g = ff.grad(lambda d: np.sum(d(x)))(d)
    dz = 1 - np.tanh(z) ** 2  # (N, out)
    np.testing.assert_allclose(g.weight, dz.T @ x)
    np.testing.assert_allclose(g.bias, dz.sum(0))
    assert isinstance(g, nn.Dense) and g.activation is np.tanh
    gx = ff.grad(lambda x: np.sum(d(x)))(x)
    np.testing.assert_allclose(gx, dz @ d.weight)


def test_dense_defaults_and_options():
    d = nn.Dense(4, 3, rng=0)
    assert d.weight.shape == (3, 4) and d.weight.dtype == np.float32
    assert d.bias.shape == (3,) and not d.bias.any()
    assert d(np.ones((2, 4), np.float32)).dtype == np.float32
    nb = nn.Dense(4, 3, bias=False, rng=0)
    assert nb.bias is None and set(ff.children(nb)) == {"weight", "bias"}
    np.testing.assert_allclose(nb(np.ones(4)), nb.weight.sum(1), rtol=1e-6)
    assert nn.Dense(2, 2, bias=np.array([1.0, 2.0])).bias.tolist() == [1.0, 2.0]
    assert d(np.ones((5, 6, 4))).shape == (5, 6, 3)  # any leading axes
    assert d(np.ones(4)).shape == (3,)


def test_dense_check_grads_float64():
    d = nn.Dense(3, 2, nn.softplus, **f64())
    check_grads(lambda d, x: d(x), (d, R.normal(size=(4, 3))), order=2)


def test_dense_shape_error_names_layer_and_shapes():
    with pytest.raises(ValueError, match=r"^Dense\(784 => 256\) got input of shape \(32, 28, 28\); "
                                         r"expected \(\.\.\., 784\)$"):
        nn.Dense(784, 256)(np.zeros((32, 28, 28)))
    with pytest.raises(ValueError, match="shape \\(\\)"):
        nn.Dense(2, 1)(np.float64(1.0))
    with pytest.raises(ValueError, match="Dense\\(3 => 1"):  # also under grad
        ff.grad(lambda x: np.sum(nn.Dense(3, 1)(x)))(np.ones((2, 2)))


def test_dense_matches_plain_definition_for_every_rank_and_bias():
    w, b = R.normal(size=(3, 4)), R.normal(size=3)
    for shape in [(4,), (5, 4), (2, 5, 4), (2, 1, 3, 4)]:
        x = R.normal(size=shape)
        np.testing.assert_allclose(nn.Dense.from_arrays(w, b)(x), x @ w.T + b, rtol=1e-12)
        np.testing.assert_allclose(nn.Dense.from_arrays(w)(x), x @ w.T, rtol=1e-12)
    # a bias of another broadcastable shape (from_arrays does not check it) still adds
    x = R.normal(size=(5, 4))
    np.testing.assert_allclose(nn.Dense.from_arrays(w, np.float64(2.0))(x), x @ w.T + 2.0)
    np.testing.assert_allclose(nn.Dense.from_arrays(w, b[None])(x), x @ w.T + b[None])


def test_dense_dtypes_and_inputs_left_alone():
    w32, b32 = R.normal(size=(3, 4)).astype(np.float32), R.normal(size=3).astype(np.float32)
    x32 = R.normal(size=(5, 4)).astype(np.float32)
    y = nn.Dense.from_arrays(w32, b32)(x32)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x32 @ w32.T + b32, rtol=1e-6)
    # a float64 bias promotes, as x @ w.T + b does (the in-place add would not)
    b64 = b32.astype(np.float64) + 1e-9
    y = nn.Dense.from_arrays(w32, b64)(x32)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, x32 @ w32.T + b64, rtol=1e-6)
    # float64 data through float32 weights computes in float64; gradients keep each dtype
    x64 = x32.astype(np.float64)
    d = nn.Dense.from_arrays(w32, b32, nn.relu)
    assert d(x64).dtype == np.float64
    gd, gx = ff.grad(lambda d, x: np.sum(d(x) ** 2), argnums=(0, 1))(d, x64)
    assert gd.weight.dtype == gd.bias.dtype == np.float32 and gx.dtype == np.float64
    # the bias goes into the fresh product, never into the inputs
    before = [a.copy() for a in (w32, b32, x32)]
    nn.Dense.from_arrays(w32, b32)(x32)
    ff.grad(lambda d: np.sum(d(x32)))(nn.Dense.from_arrays(w32, b32))
    for a, c in zip((w32, b32, x32), before):
        np.testing.assert_array_equal(a, c)


def _unfused_mlp(m, x):
    """The MLP of ``m`` (two Dense layers, relu between) from small NumPy operations."""
    h = x @ m[0].weight.T + m[0].bias
    h = h * (h > 0)
    return h @ m[1].weight.T + m[1].bias


def test_dense_relu_chain_derivatives_match_unfused_composition():
    m = nn.Chain(nn.Dense(4, 6, nn.relu, **f64(1)), nn.Dense(6, 3, **f64(2)))
    x = R.normal(size=(5, 4))
    f = lambda m, x: np.sum(np.tanh(m(x)))  # noqa: E731
    g = lambda m, x: np.sum(np.tanh(_unfused_mlp(m, x)))  # noqa: E731
    np.testing.assert_allclose(f(m, x), g(m, x), rtol=1e-12)
    for a, b in zip(ff.tree.leaves(ff.grad(f, argnums=(0, 1))(m, x)),
                    ff.tree.leaves(ff.grad(g, argnums=(0, 1))(m, x))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ff.hessian(lambda x: f(m, x))(x), ff.hessian(lambda x: g(m, x))(x),
                               rtol=1e-10, atol=1e-12)
    v = ff.fmap(lambda a: R.normal(size=a.shape), m)
    hvp = lambda f: ff.jvp(ff.grad(lambda m: f(m, x)), (m,), (v,))[1]  # noqa: E731
    for a, b in zip(ff.tree.leaves(hvp(f)), ff.tree.leaves(hvp(g))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    jf = ff.jvp(lambda x: f(m, x), (x,), (np.ones_like(x),))
    np.testing.assert_allclose(jf, ff.jvp(lambda x: g(m, x), (x,), (np.ones_like(x),)), rtol=1e-10)
    check_grads(f, (m, x), order=2)


def test_mlp_loss_gradient_equals_hand_derived():
    m = nn.Chain(nn.Dense(6, 8, nn.relu, rng=0), nn.Dense(8, 4, rng=1))
    x = R.normal(size=(16, 6)).astype(np.float32)
    y = R.integers(0, 4, size=16)
    g = ff.grad(lambda m: losses.logitcrossentropy(m(x), y))(m)
    (w1, b1), (w2, b2) = (m[0].weight, m[0].bias), (m[1].weight, m[1].bias)
    h = np.maximum(x @ w1.T + b1, 0)
    z = h @ w2.T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(4, dtype=np.float32)[y]) / len(y)
    dh = (dz @ w2) * (h > 0)
    want = [dh.T @ x, dh.sum(0), dz.T @ h, dz.sum(0)]
    got = [g[0].weight, g[0].bias, g[1].weight, g[1].bias]
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_vmap_over_stacked_dense_weights_or_biases_alone():
    w, b = R.normal(size=(3, 4)), R.normal(size=3)
    ws, bs = R.normal(size=(5, 3, 4)), R.normal(size=(5, 3))
    x = R.normal(size=(2, 4))
    out = ff.vmap(lambda w: nn.Dense.from_arrays(w, b)(x))(ws)
    np.testing.assert_allclose(out, [x @ wi.T + b for wi in ws], rtol=1e-12)
    out = ff.vmap(lambda b: nn.Dense.from_arrays(w, b)(x))(bs)
    np.testing.assert_allclose(out, [x @ w.T + bi for bi in bs], rtol=1e-12)
    out = ff.vmap(lambda w, b: nn.Dense.from_arrays(w, b)(x[0]), in_axes=(2, 1))(
        ws.transpose(1, 2, 0), bs.T)
    np.testing.assert_allclose(out, [x[0] @ wi.T + bi for wi, bi in zip(ws, bs)], rtol=1e-12)


def test_immutable_and_rebuilt_by_fmap_and_tree_at():
    d = nn.Dense(2, 2, nn.relu, rng=0)
    with pytest.raises(AttributeError, match="immutable.*tree.at"):
        d.weight = np.zeros((2, 2))
    with pytest.raises(AttributeError, match="immutable"):
        nn.Chain(d).layers = ()
    d2 = ff.tree.at(lambda m: m.bias, d, replace=np.ones(2, np.float32))
    assert d2.bias.tolist() == [1, 1] and not d.bias.any() and d2.activation is nn.relu
    with pytest.raises(AttributeError, match="immutable"):
        d2.bias = None
    d3 = ff.fmap(lambda a: a.astype(np.float64), d)
    assert d3.weight.dtype == np.float64 and d3.activation is nn.relu
    with pytest.raises(AttributeError, match="immutable"):
        d3.activation = nn.tanh


# ----------------------------------------------------------------------------- Chain
def test_chain_composes_and_differentiates():
    c = nn.Chain(nn.Dense(3, 4, nn.tanh, **f64(1)), nn.Dense(4, 2, **f64(2)))
    x = R.normal(size=(5, 3))
    np.testing.assert_allclose(c(x), c[1](c[0](x)))
    g = ff.grad(lambda c: np.sum(c(x) ** 2))(c)
    assert isinstance(g, nn.Chain) and g[0].weight.shape == (4, 3)
    check_grads(lambda c, x: c(x), (c, x), order=2)


def test_chain_indexing_slicing_names_iteration():
    a, b, c = nn.Dense(2, 3, rng=0), nn.Dense(3, 3, rng=1), nn.Dense(3, 1, rng=2)
    ch = nn.Chain(a, b, c)
    assert ch[0] is a and ch[-1] is c and len(ch) == 3 and list(ch) == [a, b, c]
    sub = ch[1:]
    assert isinstance(sub, nn.Chain) and sub.layers == (b, c)
    named = nn.Chain(enc=a, mid=b, dec=c)
    assert named.enc is a and named["dec"] is c and named[1] is b
    assert named[:2].names == ("enc", "mid") and named[:2].mid is b
    with pytest.raises(AttributeError, match="no attribute or layer named 'nope'"):
        named.nope
    assert nn.Chain([a, b]).layers == (a, b)
    with pytest.raises(TypeError, match="not both"):
        nn.Chain(a, dec=c)
    with pytest.raises(TypeError, match="not callable"):
        nn.Chain(a, 3)
    for bad in ("layers", "apply", "_x"):
        with pytest.raises(ValueError, match="cannot name a layer"):
            nn.Chain(**{bad: a})
    g = ff.grad(lambda m: np.sum(m(np.ones((1, 2)))))(named)
    assert g.enc.weight.shape == (3, 2)  # the gradient is a Chain with the same names


def test_chain_with_functions_and_empty_chain():
    c = nn.Chain(nn.Dense(2, 2, **f64()), np.tanh, lambda x: 2 * x)
    x = np.ones((1, 2))
    np.testing.assert_allclose(c(x), 2 * np.tanh(c[0](x)))
    assert ff.grad(lambda c: np.sum(c(x)))(c)[0].weight.shape == (2, 2)
    assert nn.Chain()(x) is x


def test_apply_threads_state_and_rng_through_containers():
    model = nn.Chain(nn.Dense(3, 4, rng=0), nn.BatchNorm(4), nn.Dropout(0.5),
                     nn.SkipConnection(nn.Chain(nn.BatchNorm(4)), np.add),
                     nn.Parallel(np.add, nn.BatchNorm(4), nn.Dropout(0.5)))
    x = R.normal(size=(8, 3))
    y1, m1 = nn.apply(model, x, rng=0)
    y2, m2 = nn.apply(model, x, rng=0)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, nn.apply(model, x, rng=1)[0])
    for m in (m1[1], m1[3].layers[0], m1[4].layers[0]):
        assert m.running_mean.any()  # each BatchNorm's statistics moved
    assert not model[1].running_mean.any()  # the input model is unchanged
    y, same = nn.apply(model, x, train=False)
    np.testing.assert_allclose(y, model(x))
    assert isinstance(m1, nn.Chain) and isinstance(m1[3], nn.SkipConnection)


# ----------------------------------------------------------------------------- combinators
def test_skip_connection():
    d = nn.Dense(3, 3, **f64())
    s = nn.SkipConnection(d, np.add)
    x = R.normal(size=(2, 3))
    np.testing.assert_allclose(s(x), d(x) + x)
    cat = nn.SkipConnection(d, lambda y, x: np.concatenate([y, x], axis=-1))
    assert cat(x).shape == (2, 6)
    g = ff.grad(lambda s: np.sum(s(x)))(s)
    np.testing.assert_allclose(g.layers.weight, np.ones((3, 1)) * x.sum(0))
    check_grads(lambda s, x: s(x), (s, x), order=1)


def test_parallel():
    a, b = nn.Dense(2, 3, **f64(1)), nn.Dense(2, 3, **f64(2))
    p = nn.Parallel(np.add, a, b)
    x = R.normal(size=(4, 2))
    np.testing.assert_allclose(p(x), a(x) + b(x))
    x2 = R.normal(size=(4, 2))
    np.testing.assert_allclose(p((x, x2)), a(x) + b(x2))
    ys = nn.Parallel(None, a, b)(x)
    assert isinstance(ys, tuple) and len(ys) == 2
    with pytest.raises(ValueError, match="tuple of 3 inputs for 2 layers"):
        p((x, x, x))
    with pytest.raises(TypeError, match="at least one layer"):
        nn.Parallel(np.add)
    check_grads(lambda p, x: p(x), (p, x), order=1)


# ----------------------------------------------------------------------------- Flatten, Dropout
def test_flatten():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(nn.Flatten()(x), x.reshape(2, 12))
    assert ff.grad(lambda x: np.sum(nn.Flatten()(x) * 2))(x).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="Flatten"):
        nn.Flatten()(np.float64(2.0))


def test_dropout_inference_is_identity_training_reproducible():
    x = R.normal(size=(50, 40)).astype(np.float32)
    d = nn.Dropout(0.25)
    assert d(x) is x and nn.apply(d, x, train=False)[0] is x
    y, d2 = nn.apply(d, x, rng=7)
    assert d2 is d and y.dtype == np.float32
    np.testing.assert_array_equal(y, nn.apply(d, x, rng=7)[0])
    np.testing.assert_array_equal(y, nn.apply(d, x, rng=np.random.default_rng(7))[0])
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    assert 0.2 < 1 - kept.mean() < 0.3
    g = ff.grad(lambda x: np.sum(nn.apply(d, x, rng=7)[0]))(x.astype(np.float64))
    np.testing.assert_allclose(g, kept / 0.75)
    assert nn.apply(nn.Dropout(0.0), x, rng=0)[0] is x
    assert not nn.apply(nn.Dropout(1.0), x, rng=0)[0].any()


def test_dropout_errors():
    with pytest.raises(ValueError, match=r"Dropout\(0.5\) in training mode needs random.*key"):
        nn.Dropout(0.5).apply(np.ones(3), train=True)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        nn.Dropout(1.5)


def test_dropout_with_a_key_matches_its_definition():
    """A key draws keep = ff.random.bernoulli(key, 1 - p, x.shape); y = x * keep / (1 - p)."""
    x = R.normal(size=(40, 30))
    k = ff.random.key(3)
    d = nn.Dropout(0.3)
    y, d2 = nn.apply(d, x, rng=k)
    assert d2 is d and y.dtype == np.float64
    keep = ff.random.bernoulli(k, 0.7, x.shape)
    np.testing.assert_array_equal(y, x * np.where(keep, 1 / 0.7, 0.0))
    np.testing.assert_array_equal(y, nn.apply(d, x, rng=k)[0])  # same key, same mask
    assert not np.array_equal(y, nn.apply(d, x, rng=ff.random.key(4))[0])
    assert 0.25 < 1 - keep.mean() < 0.35
    assert nn.apply(d, x.astype(np.float32), rng=k)[0].dtype == np.float32
    g = ff.grad(lambda x: np.sum(nn.apply(d, x, rng=k)[0] ** 2))(x)
    np.testing.assert_allclose(g, np.where(keep, 2 * x / 0.49, 0.0), rtol=1e-12)
    # under jit, the same mask as eagerly
    np.testing.assert_array_equal(ff.jit(lambda x, k: nn.apply(d, x, rng=k)[0])(x, k), y)


def test_dropout_under_vmap_over_keys_gives_each_member_its_mask():
    x = R.normal(size=(6, 5)).astype(np.float32)
    model = nn.Chain(nn.Dense(5, 8, rng=0), nn.Dropout(0.5), nn.Dense(8, 3, rng=1), nn.Dropout(0.5))
    keys = ff.random.split(ff.random.key(0), 4)
    ys = ff.vmap(lambda k: nn.apply(model, x, rng=k)[0])(keys)
    loop = np.stack([nn.apply(model, x, rng=k)[0] for k in keys])
    np.testing.assert_array_equal(ys, loop)
    assert all(not np.array_equal(ys[0], ys[i]) for i in range(1, 4))
    # an unmapped key: the same mask for every member
    xs = np.stack([x] * 3)
    same = ff.vmap(lambda x: nn.apply(model, x, rng=ff.random.key(1))[0])(xs)
    np.testing.assert_array_equal(same[0], same[1])
    np.testing.assert_array_equal(same[0], same[2])
    # a stacked ensemble with Dropout (a functor without children, not a leaf)
    ens = ff.tree.stack([model, model, model])
    assert isinstance(ens.layers[1], nn.Dropout)
    ys = ff.vmap(lambda m, k: nn.apply(m, x, rng=k)[0])(ens, keys[:3])
    np.testing.assert_array_equal(ys, loop[:3])
    # a batch of keys passed without vmap: a clear error that says to vmap
    with pytest.raises(TypeError, match=r"shape \(4, 2\), a batch of random keys.*ff.vmap"):
        nn.apply(model, x, rng=keys)


# ----------------------------------------------------------------------------- Embedding
def test_embedding_lookup_and_accumulated_gradient():
    e = nn.Embedding(5, 3, **f64())
    ids = np.array([[0, 2], [2, 4]])
    np.testing.assert_array_equal(e(ids), e.weight[ids])
    assert e(3).shape == (3,) and e([1, 2]).shape == (2, 3)
    g = ff.grad(lambda e: np.sum(e(ids)))(e)
    np.testing.assert_array_equal(g.weight[:, 0], [1, 0, 2, 0, 1])  # id 2 counted twice
    check_grads(lambda e: e(ids) ** 2, (e,), order=2)
    assert nn.Embedding(5, 3, rng=0).weight.dtype == np.float32


def test_embedding_vmap_over_traced_ids():
    e = nn.Embedding(6, 2, **f64())
    ids = np.array([[1, 2, 3], [5, 5, 0]])
    np.testing.assert_array_equal(ff.vmap(e)(ids), e(ids))
    g = ff.grad(lambda e: np.sum(ff.vmap(e)(ids)))(e)
    np.testing.assert_array_equal(g.weight[:, 1], [1, 1, 1, 1, 0, 2])


def test_embedding_errors():
    e = nn.Embedding(4, 2)
    with pytest.raises(TypeError, match=r"Embedding\(4 => 2\) takes integer ids.*float64"):
        e(np.array([1.0]))
    with pytest.raises(IndexError, match="got id 4; ids must be in \\[0, 4\\)"):
        e(np.array([0, 4]))
    with pytest.raises(IndexError, match="got id -1"):
        e(np.array([-1]))


def test_small_mlp_trains_with_sgd():
    x = R.normal(size=(64, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)  # XOR-like quadrants
    model = nn.Chain(nn.Dense(2, 16, nn.tanh, rng=0), nn.Dense(16, 2, rng=1))

    def loss(m):
        return losses.logitcrossentropy(m(x), y)
    first = float(loss(model))
    for _ in range(150):
        g = ff.grad(loss)(model)
        model = ff.tree.map(lambda p, g: p - 0.5 * g, model, g)
    assert float(loss(model)) < 0.5 * first
    assert model[0].weight.dtype == np.float32


# ----------------------------------------------------------------------------- Bilinear
def bilinear_loop(x1, x2, w, b):
    """PyTorch's definition: y[n, o] = sum_ij x1[n, i] w[o, i, j] x2[n, j] + b[o]."""
    y = np.zeros((x1.shape[0], w.shape[0]))
    for n in range(x1.shape[0]):
        for o in range(w.shape[0]):
            for i in range(w.shape[1]):
                for j in range(w.shape[2]):
                    y[n, o] += x1[n, i] * w[o, i, j] * x2[n, j]
            y[n, o] += 0 if b is None else b[o]
    return y


def test_bilinear_matches_definition_and_gradients():
    from tests.devices import get, put
    layer = nn.Bilinear(3, 4, 2, **f64())
    layer = ff.tree.at(lambda m: m.bias, layer, replace=R.normal(size=2))
    x1, x2 = R.normal(size=(5, 3)), R.normal(size=(5, 4))
    want = bilinear_loop(x1, x2, layer.weight, layer.bias)
    np.testing.assert_allclose(get(put(layer)(put(x1), put(x2))), want, rtol=1e-12)
    np.testing.assert_allclose(layer((x1, x2)), want, rtol=1e-12)        # Flux's tuple input
    np.testing.assert_allclose(layer(x1[0], x2[0]), want[0], rtol=1e-12)  # unbatched
    np.testing.assert_allclose(layer(R.normal(size=(2, 5, 3)), R.normal(size=(2, 5, 4))).shape,
                               (2, 5, 2))
    check_grads(lambda m, a, b: np.tanh(m(a, b)), put((layer, x1, x2)), order=2)
    got = ff.vmap(layer)(x1, x2)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    same = nn.Bilinear(3, 3, 2, np.tanh, bias=False, **f64())
    x = R.normal(size=(4, 3))
    np.testing.assert_allclose(same(x), np.tanh(bilinear_loop(x, x, same.weight, None)),
                               rtol=1e-12)
    chain = nn.Chain(nn.Parallel(None, nn.Dense(2, 3, **f64()), nn.Dense(2, 4, **f64())), layer)
    assert chain(R.normal(size=(6, 2))).shape == (6, 2)


def test_bilinear_printing_and_errors():
    b = nn.Bilinear(3, 4, 2)
    assert b.weight.shape == (2, 3, 4) and b.bias.shape == (2,) and b.weight.dtype == np.float32
    assert repr(b) == "Bilinear((3, 4) => 2)  # 26 parameters, 0.102 KiB"
    assert repr(nn.Bilinear(2, 2, 1, nn.relu, bias=False)).startswith(
        "Bilinear((2, 2) => 1, relu; bias=False)")
    with pytest.raises(ValueError, match=r"Bilinear\(\(3, 4\) => 2\) got inputs of shapes \(5, 3\) "
                                         r"and \(5, 3\); expected \(\.\.\., 3\) and \(\.\.\., 4\)"):
        b(np.ones((5, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"same leading axes"):
        b(np.ones((5, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="takes two inputs"):
        b((np.ones(3), np.ones(4), np.ones(4)))
    assert nn.Bilinear(3, 4, 2)(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)).dtype \
        == np.float32


# ----------------------------------------------------------------------------- Maxout
def test_maxout_is_the_elementwise_maximum():
    from tests.devices import get, put
    layers = [nn.Dense(3, 4, **f64(k)) for k in range(3)]
    m = nn.Maxout(*layers)
    x = R.normal(size=(5, 3))
    want = np.max(np.stack([d(x) for d in layers]), axis=0)
    np.testing.assert_allclose(get(put(m)(put(x))), want, rtol=1e-12)
    check_grads(lambda m, x: m(x), put((m, x)), order=2)
    # the gradient reaches each layer where it wins
    g = ff.grad(lambda m: np.sum(m(x)))(m)
    winner = np.argmax(np.stack([d(x) for d in layers]), axis=0)   # (5, 4)
    for k, d in enumerate(layers):
        np.testing.assert_allclose(g.layers[k].bias, (winner == k).sum(0))
    np.testing.assert_allclose(ff.vmap(m)(x), want, rtol=1e-12)
    assert repr(m).startswith("Maxout(Dense(3 => 4), Dense(3 => 4), Dense(3 => 4))  # 48 param")


def test_maxout_constructor_apply_and_errors():
    seeds = iter(range(10))
    m = nn.Maxout(lambda: nn.Dense(2, 3, rng=next(seeds)), 4)
    assert len(m.layers) == 4 and not np.allclose(m.layers[0].weight, m.layers[1].weight)
    drop = nn.Maxout(nn.Chain(nn.Dense(2, 3, **f64()), nn.Dropout(0.5)), nn.Dense(2, 3, **f64(2)))
    x = R.normal(size=(4, 2))
    y1, new = nn.apply(drop, x, rng=0)
    y2, _ = nn.apply(drop, x, rng=0)
    np.testing.assert_array_equal(y1, y2)            # rng threaded to the members
    assert isinstance(new, nn.Maxout) and len(new.layers) == 2
    with pytest.raises(ValueError, match=r"outputs have different shapes \[\(4, 3\), \(4, 2\)\]"):
        nn.Maxout(nn.Dense(2, 3), nn.Dense(2, 2))(x)
    with pytest.raises(TypeError, match="at least one layer"):
        nn.Maxout()
    with pytest.raises(TypeError, match="layer 1 is a str"):
        nn.Maxout(nn.Dense(2, 3), "relu")
