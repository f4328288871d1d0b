"""Devices: models, transforms, optimisers, training and checkpoints on the session's device.

Run with ``--device strict`` (the CuPy-like stand-in), ``--device gpu`` (CuPy)
or the default ``cpu``: each test computes on the device (``put``) and compares
with the same computation in NumPy on the host. The moves themselves, the
mixed-device error and the CPU fallbacks are tested at the end.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp
from funcflux import data, device, losses, nn, optim
from tests import devices, strict
from tests.devices import get, put

WHERE = {"cpu": "cpu", "strict": "strict", "gpu": "gpu:0"}


def here() -> str:
    """What ``device_of`` says for arrays on the session's device."""
    return WHERE[devices.NAME]


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    """Same structure, every array on the session's device, values close to the host's."""
    assert device.device_of(actual) == here()
    al, el = ff.tree.leaves(get(actual)), ff.tree.leaves(expected)
    assert len(al) == len(el)
    for a, e in zip(al, el):
        assert np.shape(a) == np.shape(e) and np.asarray(a).dtype == np.asarray(e).dtype
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def _mlp():
    return nn.Chain(nn.Dense(6, 16, nn.relu, rng=0), nn.Dense(16, 16, nn.tanh, rng=1),
                    nn.Dense(16, 3, rng=2))


def _cnn():
    return nn.Chain(nn.Conv((3, 3), 1, 4, nn.relu, padding=1, rng=0), nn.MaxPool(2),
                    nn.Conv((3, 3), 4, 6, nn.relu, rng=1), nn.MeanPool(2), nn.Flatten(),
                    nn.Dense(6, 3, rng=2))


def _batch(shape, n=8, seed=0):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n,) + shape).astype(np.float32)
    y = data.onehotbatch(g.integers(0, 3, n), range(3))
    return x, y


def _loss(m, x, y):
    return losses.logitcrossentropy(m(x), y)


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("make,shape", [(_mlp, (6,)), (_cnn, (1, 8, 8))], ids=["mlp", "cnn"])
def test_forward_and_grad(make, shape):
    model, (x, y) = make(), _batch(shape)
    want_l, want_g = ff.value_and_grad(_loss)(model, x, y)
    dmodel = put(model)
    assert device.device_of(dmodel) == here()
    got_l, got_g = ff.value_and_grad(_loss)(dmodel, put(x), put(y))
    assert_close(got_l, want_l)
    assert_close(got_g, want_g, rtol=1e-4, atol=1e-5)
    assert_close(dmodel(put(x)), model(x), rtol=1e-4, atol=1e-5)


def test_vmap_of_grad_per_example():
    model, (x, y) = _mlp(), _batch((6,), n=5)
    per = ff.vmap(ff.grad(lambda m, xi, yi: _loss(m, xi[None], yi[None])), in_axes=(None, 0, 0))
    want = per(model, x, y)
    got = per(put(model), put(x), put(y))
    assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_jvp_and_hessian_vector_product():
    model, (x, y) = _mlp(), _batch((6,))
    v = ff.fmap(lambda a: np.ones_like(a), model)
    f = lambda m: _loss(m, x, y)  # noqa: E731
    want = ff.jvp(f, (model,), (v,))
    fd = lambda m: _loss(m, put(x), put(y))  # noqa: E731
    got = ff.jvp(fd, (put(model),), (put(v),))
    assert_close(got, want, rtol=1e-4, atol=1e-5)
    hvp = lambda f, m, t: ff.jvp(ff.grad(f), (m,), (t,))[1]  # noqa: E731
    assert_close(hvp(fd, put(model), put(v)), hvp(f, model, v), rtol=1e-3, atol=1e-5)


def test_train_mode_layers_dropout_batchnorm_layernorm():
    model = nn.Chain(nn.Dense(6, 8, rng=0), nn.BatchNorm(8, nn.relu), nn.Dropout(0.3),
                     nn.LayerNorm(8), nn.Dense(8, 3, rng=1))
    x, y = _batch((6,))
    want_y, want_m = nn.apply(model, x, train=True, rng=3)
    got_y, got_m = nn.apply(put(model), put(x), train=True, rng=3)
    assert_close(got_y, want_y, rtol=1e-4, atol=1e-5)
    assert_close(got_m, want_m, rtol=1e-4, atol=1e-5)  # running statistics stay on the device

    def loss(m, x, y):
        out, _ = nn.apply(m, x, train=True, rng=3)
        return losses.logitcrossentropy(out, y)
    assert_close(ff.grad(loss)(put(model), put(x), put(y)), ff.grad(loss)(model, x, y),
                 rtol=1e-4, atol=1e-5)


def test_recurrent_and_embedding():
    emb, rnn = nn.Embedding(10, 4, rng=0), nn.Recurrence(nn.LSTMCell(4, 5, rng=1))
    ids = np.array([[1, 2, 3], [3, 3, 9]])

    def f(e, r, ids):
        return np.sum(r(e(ids)) ** 2)
    want = ff.value_and_grad(f, argnums=(0, 1))(emb, rnn, ids)
    got = ff.value_and_grad(f, argnums=(0, 1))(put(emb), put(rnn), put(ids))
    assert_close(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- training
def test_optimiser_state_lives_with_the_parameters():
    model, (x, y) = _mlp(), _batch((6,))
    w = np.ones(3, np.float32)
    tied = {"enc": w, "dec": w, "m": model}
    for opt in (optim.adam(1e-2), optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.1, 0.9))):
        state, dstate = optim.setup(opt, tied), optim.setup(opt, put(tied))
        dtied = put(tied)
        assert dtied["enc"] is dtied["dec"]
        assert device.device_of(dstate.inner) == here()
        grads = ff.grad(lambda t: _loss(t["m"], x, y) + np.sum(t["enc"] * t["dec"]))(tied)
        dgrads = ff.grad(lambda t: _loss(t["m"], put(x), put(y)) +
                         np.sum(t["enc"] * t["dec"]))(dtied)
        for _ in range(3):
            state, tied2 = optim.step(state, tied, grads)
            dstate, dtied2 = optim.step(dstate, dtied, dgrads)
        assert dtied2["enc"] is dtied2["dec"]
        assert_close(dtied2, tied2, rtol=1e-4, atol=1e-5)
        assert device.device_of(dstate.inner) == here()


def test_dataloader_moves_each_batch():
    X, y = data.make_moons(10, rng=0)
    batches = list(data.DataLoader((X, y), batchsize=4, shuffle=True, rng=0, device=put))
    assert [device.device_of(b) for b in batches] == [here()] * 3
    want = list(data.DataLoader((X, y), batchsize=4, shuffle=True, rng=0))
    for b, w in zip(batches, want):
        assert_close(b, w)
    # Data already on the device is cut there (a host index array is allowed, as in CuPy).
    on_dev = list(data.DataLoader(put((X, y)), batchsize=4, shuffle=True, rng=0))
    for b, w in zip(on_dev, want):
        assert_close(b, w)
    back = list(data.DataLoader(put((X, y)), batchsize=4, device="cpu"))
    assert device.device_of(back) == "cpu"


def test_onecold_on_the_device():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0]], np.float32)
    idx = data.onecold(put(scores))
    assert device.device_of(idx) == here()
    np.testing.assert_array_equal(get(idx), [1, 0])
    assert data.onecold(put(scores), ["a", "b", "c"]).tolist() == ["b", "a"]  # labels: host


def test_train_a_few_steps():
    X, y = data.make_moons(64, noise=0.1, rng=0)
    Y = data.onehotbatch(y, range(2))
    model = nn.Chain(nn.Dense(2, 16, nn.relu, rng=0), nn.Dense(16, 2, rng=1))

    def run(m, move):
        loader = data.DataLoader((X, Y), batchsize=16, shuffle=True, rng=0, device=move)
        return ff.train(_loss, m, loader, optim.adam(1e-2), epochs=2, progress=False)
    want_m, _, want_h = run(model, None)
    got_m, state, got_h = run(put(model), put)
    assert device.device_of(state.inner) == here()
    assert_close(got_m, want_m, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_h["loss"], want_h["loss"], rtol=1e-5)


def test_save_load_round_trip(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    model = {"enc": w, "dec": w, "layer": _mlp(), "step": 7}
    state = optim.setup(optim.adam(1e-3), model)
    path = os.fspath(tmp_path / "ckpt.npz")
    dmodel, dstate = put(model), put(state)
    ff.save(path, dmodel, opt_state=dstate)
    # Into a device `like`: arrays come back on the device, ties kept.
    m2, s2 = ff.load(path, like=dmodel, opt_state_like=dstate)
    assert m2["enc"] is m2["dec"] and m2["step"] == 7
    assert_close(m2, model)
    assert device.device_of(s2) == here()
    # Into a host `like`: NumPy arrays, the same values.
    m3 = ff.load(path, like=model)
    assert device.device_of(m3) == "cpu"
    for a, b in zip(ff.tree.leaves(m3), ff.tree.leaves(model)):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- tables
# Every optimiser (and the building blocks with their own state) for a few steps on the device,
# against the same steps on the host: states and parameters stay on the device.
OPTIMISERS = {
    "sgd": lambda: optim.sgd(0.05),
    "sgd-nesterov": lambda: optim.sgd(0.05, 0.9, nesterov=True),
    "adam-schedule": lambda: optim.adam(optim.warmup_cosine_decay(0.0, 0.1, 2, 10)),
    "adamw-mask": lambda: optim.adamw(0.05, mask={"w": True, "b": False}),
    "nadam": lambda: optim.nadam(0.05),
    "radam": lambda: optim.radam(0.05),
    "rmsprop-centred-momentum": lambda: optim.rmsprop(0.05, centered=True, momentum=0.9),
    "adagrad": lambda: optim.adagrad(0.3),
    "adadelta": lambda: optim.adadelta(1.0),
    "lion": lambda: optim.lion(0.03),
    "lamb": lambda: optim.lamb(0.05),
    "clip-chain": lambda: optim.chain(optim.clip(0.1), optim.clip_by_global_norm(1.0),
                                      optim.add_decayed_weights(1e-2), optim.sgd(0.1)),
    "stddev-trust": lambda: optim.chain(optim.scale_by_stddev(), optim.scale_by_trust_ratio(),
                                        optim.scale(-0.1)),
    "schedule-trace": lambda: optim.chain(optim.trace(0.9), optim.scale_by_schedule(
        optim.exponential_decay(0.1, 2, 0.5))),
    "masked": lambda: optim.masked(optim.adam(0.1), {"w": False, "b": True}),
    "multi_transform": lambda: optim.multi_transform(
        {"a": optim.adam(0.1), "z": optim.set_to_zero()}, {"w": "a", "b": "z"}),
}


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_every_optimiser_steps_on_the_device(name):
    g = np.random.default_rng(0)
    params = {"w": g.normal(size=(3, 4)).astype(np.float32),
              "b": g.normal(size=4).astype(np.float32)}
    x = g.normal(size=(5, 3)).astype(np.float32)
    loss = lambda p, x: np.sum(np.tanh(x @ p["w"] + p["b"]) ** 2)  # noqa: E731

    def run(p, x):
        opt = OPTIMISERS[name]()
        state = opt.init(p)
        for _ in range(3):
            updates, state = opt.update(ff.grad(loss)(p, x), state, p)
            p = optim.apply_updates(p, updates)
        return p, state
    want_p, want_s = run(params, x)
    got_p, got_s = run(put(params), put(x))
    assert_close(got_p, want_p, rtol=1e-4, atol=1e-6)
    assert device.device_of(got_s) in (here(), "cpu")  # "cpu": a state holding no arrays
    for a, e in zip(ff.tree.leaves(get(got_s)), ff.tree.leaves(want_s)):
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(e, dtype=float),
                                   rtol=1e-4, atol=1e-6)


# Every layer, forward and gradient (parameters and input), on the device against the host.
LAYERS = {
    "dense": (lambda: nn.Dense(5, 3, nn.gelu, rng=0), (4, 5)),
    "chain-named": (lambda: nn.Chain(enc=nn.Dense(5, 4, nn.elu, rng=0),
                                     dec=nn.Dense(4, 2, nn.selu, rng=1)), (3, 5)),
    "skip": (lambda: nn.SkipConnection(nn.Dense(5, 5, nn.swish, rng=0), np.add), (3, 5)),
    "parallel": (lambda: nn.Parallel(np.multiply, nn.Dense(5, 2, nn.softplus, rng=0),
                                     nn.Dense(5, 2, nn.leakyrelu, rng=1)), (3, 5)),
    "batchnorm-eval": (lambda: nn.BatchNorm(4, nn.relu), (6, 4)),
    "layernorm": (lambda: nn.LayerNorm(4), (6, 4)),
    "conv-stride-dilation": (lambda: nn.Conv((3, 3), 2, 4, stride=2, dilation=2, padding=2,
                                             rng=0), (2, 2, 9, 9)),
    "conv-groups-same": (lambda: nn.Conv((3, 2), 4, 4, groups=2, padding="same", rng=0),
                         (2, 4, 6, 5)),
    "convtranspose": (lambda: nn.ConvTranspose((3, 3), 2, 3, stride=2, padding=1, rng=0),
                      (2, 2, 4, 4)),
    "pools": (lambda: nn.Chain(nn.MaxPool(2, padding=1), nn.MeanPool((2, 1))), (2, 3, 6, 5)),
    "global-pools": (lambda: nn.Chain(nn.Parallel(np.add, nn.GlobalMeanPool(),
                                                  nn.GlobalMaxPool()), nn.Flatten(),
                                     nn.Dense(3, 2, rng=0)),
                     (2, 3, 4, 4)),
    "rnn": (lambda: nn.Recurrence(nn.RNNCell(3, 4, rng=0)), (2, 5, 3)),
    "gru": (lambda: nn.Recurrence(nn.GRUCell(3, 4, rng=0), return_carry=True), (2, 5, 3)),
    "lstm-unbatched": (lambda: nn.Recurrence(nn.LSTMCell(3, 4, rng=0)), (5, 3)),
    "conv1d": (lambda: nn.Conv((3,), 2, 3, stride=2, padding=1, rng=0), (2, 2, 9)),
    "conv3d-pools": (lambda: nn.Chain(nn.Conv((2, 2, 2), 1, 2, rng=0), nn.MaxPool((2, 2, 1))),
                     (1, 1, 5, 5, 4)),
    "depthwise": (lambda: nn.DepthwiseConv((3, 3), 2, 4, rng=0), (2, 2, 6, 6)),
    "adaptive-pools": (lambda: nn.Chain(nn.Conv((1, 1), 2, 2, rng=0),
                                        nn.Parallel(np.add, nn.AdaptiveMaxPool((2, 3)),
                                                    nn.AdaptiveMeanPool((2, 3)))), (2, 2, 7, 5)),
    "groupnorm": (lambda: nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    "instancenorm": (lambda: nn.InstanceNorm(3, affine=True), (2, 3, 6)),
    "upsample-bilinear": (lambda: nn.Chain(nn.Upsample(2, mode="bilinear"),
                                           nn.Conv((1, 1), 2, 2, rng=0)), (1, 2, 3, 4)),
    "pixelshuffle": (lambda: nn.Chain(nn.Conv((1, 1), 8, 8, rng=0), nn.PixelShuffle(2)),
                     (1, 8, 3, 3)),
    "bilinear": (lambda: nn.Bilinear(3, 3, 2, rng=0), (4, 3)),
    "maxout": (lambda: nn.Maxout(lambda: nn.Dense(3, 2, rng=0), 3), (5, 3)),
    "attention": (lambda: nn.MultiHeadAttention(8, 2, rng=0), (2, 5, 8)),
    "positional": (lambda: nn.Chain(nn.PositionalEmbedding(10, 8),
                                    nn.SinusoidalPositionalEmbedding(8)), (2, 6, 8)),
    "upsample-then-conv": (lambda: nn.Chain(nn.Upsample(2), nn.Conv((3, 3), 2, 2, rng=0)),
                           (1, 2, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_on_the_device(name):
    make, shape = LAYERS[name]
    layer = make()
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)

    def f(m, x):
        return sum(np.sum(o ** 2) for o in ff.tree.leaves(m(x)))
    want = ff.value_and_grad(f, argnums=(0, 1))(layer, x)
    got = ff.value_and_grad(f, argnums=(0, 1))(put(layer), put(x))
    assert_close(got, want, rtol=1e-4, atol=1e-5)


ACTIVATIONS = [n for n in nn.activations.__all__ if n not in ("σ",)]
LOSSES = ["mse", "mae", "crossentropy", "logitcrossentropy", "binarycrossentropy",
          "logitbinarycrossentropy", "huber_loss", "kldivergence", "hinge_loss",
          "squared_hinge_loss"]


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_on_the_device(name):
    f = getattr(nn, name)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    g = lambda x: np.sum(f(x) ** 2)  # noqa: E731
    assert_close(ff.value_and_grad(g)(put(x)), ff.value_and_grad(g)(x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_on_the_device(name):
    g = np.random.default_rng(0)
    probs = name in ("crossentropy", "binarycrossentropy", "kldivergence")
    yhat = (g.uniform(0.1, 0.9, (4, 3)) if probs else g.normal(size=(4, 3))).astype(np.float32)
    y = data.onehotbatch(g.integers(0, 3, 4), range(3))
    if name.startswith(("hinge", "squared_hinge")):
        y = 2 * y - 1
    loss = getattr(losses, name)
    want = ff.value_and_grad(loss)(yhat, y)
    assert_close(ff.value_and_grad(loss)(put(yhat), put(y)), want, rtol=1e-4, atol=1e-6)
    ls = losses.label_smoothing(put(y), 0.1)
    assert_close(ls, losses.label_smoothing(y, 0.1))


@pytest.mark.parametrize("name", ["crossentropy", "logitcrossentropy"])
def test_integer_labels_on_the_device(name):
    g = np.random.default_rng(0)
    yhat, y = g.uniform(0.1, 0.9, (4, 3)).astype(np.float32), np.array([0, 2, 1, 1])
    loss = getattr(losses, name)
    assert_close(ff.value_and_grad(loss)(put(yhat), put(y)), ff.value_and_grad(loss)(yhat, y),
                 rtol=1e-5, atol=1e-6)
    per = ff.vmap(lambda a, b: loss(a[None], b[None]))
    assert_close(per(put(yhat), put(y)), per(yhat, y), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- moves, errors
def test_moves_keep_ties_and_configuration():
    w = np.ones(3)
    layer = nn.Dense(3, 2, nn.relu, rng=0)
    t = {"a": w, "b": w, "layer": layer, "name": "x", "n": 3}
    d = put(t)
    assert d["a"] is d["b"] and d["name"] == "x" and d["n"] == 3
    assert d["layer"].activation is nn.relu
    back = get(d)
    assert back["a"] is back["b"] and device.device_of(back) == "cpu"
    assert device.device_of(ff.cpu(d)) == "cpu"
    assert ff.cpu(d)["a"] is ff.cpu(d)["a"] or True  # fresh copies each call are fine


@pytest.fixture
def stand_in():
    """The strict stand-in registered for this test (it stays so under --device strict)."""
    strict.register()
    yield strict
    strict.unregister()


def test_mixing_devices_is_a_clear_error(stand_in):
    x = np.ones(3)
    s = stand_in.to_strict(x)
    for f in (lambda: fnp.add(s, x), lambda: fnp.matmul(x, s),
              lambda: ff.grad(lambda a: np.sum(a * x))(s)):
        with pytest.raises(TypeError, match=r"NumPy array of shape \(3,\) \(on the CPU\).*"
                                            r"StrictArray of shape \(3,\) \(on strict\)"):
            f()
    with pytest.raises(ValueError, match="several devices"):
        device.device_of({"a": x, "b": s})
    assert device.device_of({"a": s}) == "strict"
    assert device.array_module([s]) is stand_in.strict_np
    # Looking through tracers: constants built inside a transform land on the device.
    ff.grad(lambda a: np.sum(a * device.array_module(a).ones(3)))(s)


def test_strict_stand_in_behaves_like_cupy(stand_in):
    s = stand_in.to_strict(np.arange(4.0))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(s)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        s + np.ones(4)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        np.ones(4) * s
    assert stand_in.is_strict(np.sum(s)) and float(np.sum(s)) == 6.0  # 0-d, not a scalar
    assert stand_in.is_strict(s * np.float32(2) + 1)
    with pytest.raises(AttributeError, match="like CuPy"):
        stand_in.strict_np.errstate  # noqa: B018  (a NumPy name CuPy lacks)
    z = stand_in.strict_np.zeros(4)
    stand_in.strict_np.add.at(z, np.array([0, 0, 2]), 1.0)
    np.testing.assert_array_equal(z.get(), [2, 0, 1, 0])
    np.testing.assert_array_equal(s[np.array([3, 1])].get(), [3, 1])


def test_gpu_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(device, "_AVAILABLE", False)
    monkeypatch.setattr(device, "_warned", False)
    t = {"w": np.ones(2)}
    with pytest.warns(device.DeviceWarning, match="stay on the CPU"):
        assert ff.gpu(t) is t
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ff.gpu(t, 0) is t  # once only
        loader = data.DataLoader(np.ones((4, 2)), 2, device="gpu")
        assert [type(b) for b in loader] == [np.ndarray, np.ndarray]
    with pytest.raises(device.DeviceError, match="strict=True"):
        ff.gpu(t, strict=True)
    assert ff.cpu(t)["w"] is t["w"]


def test_is_available_without_cupy_is_false(monkeypatch):
    monkeypatch.setattr(device, "_AVAILABLE", None)
    monkeypatch.setattr(device, "_cupy", lambda: None)
    assert device.is_available() is False


@pytest.mark.gpu
def test_gpu_moves_to_cupy_and_back():
    import cupy
    w = np.ones((2, 3), np.float32)
    t = {"a": w, "b": w, "n": 1, "layer": nn.Dense(3, 2, rng=0)}
    g = ff.gpu(t, 0)
    assert isinstance(g["a"], cupy.ndarray) and g["a"] is g["b"] and g["n"] == 1
    assert device.device_of(g) == "gpu:0" and device.array_module(g) is cupy
    assert ff.grad(lambda m: np.sum(m["layer"](m["a"])))(g)["a"].device.id == 0
    c = ff.cpu(g)
    assert isinstance(c["a"], np.ndarray) and c["a"] is c["b"]
    np.testing.assert_array_equal(c["a"], w)
    with pytest.raises(TypeError, match="on gpu:0"):
        fnp.add(g["a"], w)
