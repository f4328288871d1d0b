"""ff.train: learning, equivalence with the explicit loop, callbacks, history, progress."""
import sys
import types

import numpy as np
import pytest

import funcflux as ff
from funcflux import data, losses, nn, optim
from funcflux.train import EpochInfo, StopTraining


def _mlp(rng, sizes=(2, 16, 16, 2)):
    g = np.random.default_rng(rng)
    return {f"W{i}": (g.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))} | \
           {f"b{i}": np.zeros(b, np.float32) for i, b in enumerate(sizes[1:])}


def _forward(p, x):
    h = np.tanh(x @ p["W0"] + p["b0"])
    h = np.tanh(h @ p["W1"] + p["b1"])
    return h @ p["W2"] + p["b2"]


def _ce(p, x, y):
    return losses.logitcrossentropy(_forward(p, x), y)


def test_learns_moons_with_a_plain_numpy_mlp():
    X, y = data.make_moons(400, noise=0.1, rng=0)
    p0 = _mlp(1)
    p, state, hist = ff.train(_ce, p0, data.DataLoader((X, y), batchsize=32, shuffle=True, rng=0),
                              optim.adam(1e-2), epochs=40, progress=False)
    Xt, yt = data.make_moons(400, noise=0.1, rng=1)
    acc = np.mean(data.onecold(_forward(p, Xt)) == yt)
    assert acc >= 0.97, acc
    assert len(hist["loss"]) == 40 and hist["loss"][-1] < hist["loss"][0] / 5
    assert p["W0"].dtype == np.float32
    assert not np.array_equal(p["W0"], p0["W0"]) and np.array_equal(p0["W0"], _mlp(1)["W0"])


def test_learns_moons_with_layers():
    X, y = data.make_moons(300, noise=0.1, rng=2)
    model = nn.Chain(nn.Dense(2, 16, np.tanh, rng=1), nn.Dense(16, 16, np.tanh, rng=2),
                     nn.Dense(16, 2, rng=3))
    loss = lambda m, x, y: losses.logitcrossentropy(m(x), y)
    m, _, _ = ff.train(loss, model, data.DataLoader((X, y), batchsize=32, shuffle=True, rng=0),
                       optim.adam(1e-2), epochs=30, progress=False)
    assert type(m) is nn.Chain and m[0].activation is np.tanh
    assert np.mean(data.onecold(m(X)) == y) >= 0.97


def test_same_as_the_explicit_loop():
    X, y = data.make_moons(64, noise=0.1, rng=0)
    loader = data.DataLoader((X, y), batchsize=16)
    opt = optim.sgd(0.1, momentum=0.9)
    p = _mlp(0)
    state = opt.init(p)
    for _ in range(2):
        for xb, yb in loader:
            g = ff.grad(_ce)(p, xb, yb)
            updates, state = opt.update(g, state, p)
            p = optim.apply_updates(p, updates)
    q, _, _ = ff.train(_ce, _mlp(0), loader, opt, epochs=2, progress=False)
    for k in p:
        np.testing.assert_allclose(q[k], p[k], rtol=1e-6)


def _linear_problem():
    X = np.linspace(-1, 1, 40)[:, None]
    return X, 2 * X + 1, lambda p, x, y: np.mean((x * p["a"] + p["b"] - y) ** 2)


def test_history_aux_and_callback_info():
    X, Y, mse = _linear_problem()

    def loss(p, x, y):
        l = mse(p, x, y)
        return l, {"mae": np.mean(np.abs(x * p["a"] + p["b"] - y)), "loss": l * 2,
                   "ignored": np.ones(3)}

    seen = []
    p, _, hist = ff.train(loss, {"a": np.zeros(1), "b": np.zeros(1)},
                          data.DataLoader((X, Y), batchsize=10), optim.sgd(0.1), epochs=3,
                          has_aux=True, callbacks=[seen.append], progress=False)
    assert sorted(hist) == ["aux_loss", "loss", "mae"]
    assert all(len(v) == 3 for v in hist.values())
    np.testing.assert_allclose(hist["aux_loss"], 2 * np.array(hist["loss"]))
    assert [i.epoch for i in seen] == [1, 2, 3] and [i.step for i in seen] == [4, 8, 12]
    assert isinstance(seen[0], EpochInfo) and seen[-1].model is p
    assert seen[1].loss == hist["loss"][1] and seen[-1].history is hist
    assert isinstance(seen[-1].state, optim.OptimiserState)


@pytest.mark.parametrize("how", ["return", "raise"])
def test_early_stopping_callback(how):
    X, Y, mse = _linear_problem()

    def stop_at_3(info):
        if info.epoch == 3:
            if how == "raise":
                raise StopTraining
            return True
        return None

    calls = []
    _, _, hist = ff.train(mse, {"a": np.zeros(1), "b": np.zeros(1)},
                          data.DataLoader((X, Y), batchsize=10), optim.sgd(0.1), epochs=50,
                          callbacks=[stop_at_3, calls.append], progress=False)
    assert len(hist["loss"]) == 3
    assert len(calls) == (3 if how == "return" else 2)  # a raise skips the later callbacks


def test_stop_training_inside_loss_keeps_steps():
    X, Y, mse = _linear_problem()
    n = [0]

    def loss(p, x, y):
        n[0] += 1
        if n[0] == 6:
            raise StopTraining
        return mse(p, x, y)

    p, _, hist = ff.train(loss, {"a": np.zeros(1), "b": np.zeros(1)},
                          data.DataLoader((X, Y), batchsize=10), optim.sgd(0.1), epochs=5,
                          progress=False)
    assert len(hist["loss"]) == 2  # one full epoch, one partial (1 step)
    assert p["a"][0] != 0


def test_functional_nontrainable_and_tied():
    @ff.functor(children=("w", "stats"), trainable=("w",))
    class Layer:
        def __init__(self, w, stats):
            self.w, self.stats = w, stats

    w = np.ones(3)
    model = {"enc": Layer(w, np.zeros(3)), "dec": Layer(w, np.zeros(3))}
    x = np.arange(12.0).reshape(4, 3)
    loss = lambda m, x: np.sum((x * m["enc"].w - 1) ** 2) + np.sum(m["dec"].w * m["dec"].stats)
    m, state, _ = ff.train(loss, model, data.DataLoader(x, batchsize=2), optim.sgd(0.01),
                           epochs=2, progress=False)
    assert m["enc"].w is m["dec"].w and not np.array_equal(m["enc"].w, w)
    assert m["enc"].stats is model["enc"].stats  # non-trainable: the very same array
    assert model["enc"].w is w and w.tolist() == [1, 1, 1]


def test_resume_with_state_and_batches_not_tuples():
    X, Y, mse = _linear_problem()
    loss = lambda p, b: mse(p, b["x"], b["y"])
    loader = data.DataLoader({"x": X, "y": Y}, batchsize=8)
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    p, state, _ = ff.train(loss, p0, loader, optim.adam(0.1), epochs=2, progress=False)
    p, state, _ = ff.train(loss, p, loader, state, epochs=2, progress=False)
    q, _, _ = ff.train(loss, p0, loader, optim.adam(0.1), epochs=4, progress=False)
    np.testing.assert_allclose(p["a"], q["a"])


def test_rng_passed_to_loss_reproducibly():
    X, Y, mse = _linear_problem()
    seen = []

    def loss(p, x, y, rng):
        keep = rng.random(x.shape) < 0.8
        seen.append(keep.sum())
        return mse(p, x * keep, y)

    loader = data.DataLoader((X, Y), batchsize=10)
    a = ff.train(loss, {"a": np.zeros(1), "b": np.zeros(1)}, loader, optim.sgd(0.1),
                 progress=False, rng=3)[0]
    b = ff.train(loss, {"a": np.zeros(1), "b": np.zeros(1)}, loader, optim.sgd(0.1),
                 progress=False, rng=np.random.default_rng(3))[0]
    assert seen[:4] == seen[4:] and a["a"] == b["a"]


def test_errors():
    X, Y, mse = _linear_problem()
    p = {"a": np.zeros(1), "b": np.zeros(1)}
    gen = iter([(X, Y)])
    with pytest.raises(ValueError, match="no batches in epoch 2"):
        ff.train(mse, p, gen, optim.sgd(0.1), epochs=2, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        ff.train(mse, p, [(X, Y)], optim.sgd(0.1), epochs=-1)
    with pytest.raises(TypeError, match="callbacks"):
        ff.train(mse, p, [(X, Y)], optim.sgd(0.1), callbacks=[1])


# ----------------------------------------------------------------------------- state in aux
def _bn_net():
    return nn.Chain(nn.Dense(2, 16, rng=0), nn.BatchNorm(16, nn.relu), nn.Dropout(0.1),
                    nn.Dense(16, 2, rng=1))


def _bn_loss(m, x, y, rng):
    logits, new_m = nn.apply(m, x, rng=rng)           # training mode: moved statistics
    return losses.logitcrossentropy(logits, y), new_m


def _explicit_bn_loop(epochs):
    """The documented explicit loop (docs/training.md, "Layers with state")."""
    X, Y = data.make_moons(256, noise=0.1, rng=0)
    net = _bn_net()
    state = optim.setup(optim.adam(1e-2), net)
    rng = np.random.default_rng(0)
    loader = data.DataLoader((X, Y), batchsize=32, shuffle=True, rng=0)
    for _ in range(epochs):
        for x, y in loader:
            (_, with_stats), grads = ff.value_and_grad(_bn_loss, has_aux=True)(net, x, y, rng)
            state, net = optim.step(state, with_stats, grads)
    return net, (X, Y)


def _same_model(a, b):
    la, lb = ff.tree.leaves(a), ff.tree.leaves(b)
    assert ff.tree.structure(a) == ff.tree.structure(b) and len(la) == len(lb)
    for u, v in zip(la, lb):
        np.testing.assert_array_equal(u, v)


def test_aux_model_carries_batchnorm_statistics_like_the_explicit_loop():
    # Regression: ff.train dropped the model returned as aux; running_mean stayed 0.
    explicit, (X, Y) = _explicit_bn_loop(3)
    loader = data.DataLoader((X, Y), batchsize=32, shuffle=True, rng=0)
    net, _, _ = ff.train(_bn_loss, _bn_net(), loader, optim.adam(1e-2), epochs=3,
                         has_aux=True, rng=0, progress=False)
    assert not np.all(net[1].running_mean == 0)
    _same_model(net, explicit)
    assert np.mean(data.onecold(net(X)) == Y) >= 0.85   # test mode uses the statistics


def test_aux_dict_with_model_entry_and_metrics():
    explicit, (X, Y) = _explicit_bn_loop(2)

    def loss(m, x, y, rng):
        value, new_m = _bn_loss(m, x, y, rng)
        return value, {"model": new_m, "batch": x.shape[0]}

    loader = data.DataLoader((X, Y), batchsize=32, shuffle=True, rng=0)
    net, _, hist = ff.train(loss, _bn_net(), loader, optim.adam(1e-2), epochs=2,
                            has_aux=True, rng=0, progress=False)
    _same_model(net, explicit)
    assert sorted(hist) == ["batch", "loss"] and hist["batch"] == [32.0, 32.0]


def test_aux_model_entry_of_another_structure_is_an_error():
    X, Y, mse = _linear_problem()
    p = {"a": np.zeros(1), "b": np.zeros(1)}
    with pytest.raises(ValueError, match=r"aux\['model'\].*structure"):
        ff.train(lambda p, x, y: (mse(p, x, y), {"model": {"a": p["a"]}}), p, [(X, Y)],
                 optim.sgd(0.1), has_aux=True, progress=False)


def test_aux_that_only_looks_like_the_model_is_not_stepped():
    # A metrics dict with the model's keys but other shapes stays a metric.
    X, Y, mse = _linear_problem()
    p = {"a": np.zeros(3), "b": np.zeros(1)}
    loss = lambda p, x, y: (mse(p, x, y), {"a": np.sum(p["a"]), "b": np.zeros(1)})
    q, _, hist = ff.train(loss, p, [(X, Y)], optim.sgd(0.1), has_aux=True, progress=False)
    ref, _, _ = ff.train(mse, p, [(X, Y)], optim.sgd(0.1), progress=False)
    _same_model(q, ref)
    assert "a" in hist


# ----------------------------------------------------------------------------- faults
def test_non_finite_loss_stops_naming_epoch_and_step():
    X, Y, mse = _linear_problem()
    calls = [0]

    def loss(p, x, y):
        calls[0] += 1
        return mse(p, x, y) * (np.nan if calls[0] == 7 else 1.0)   # epoch 2, step 3

    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    loader = data.DataLoader((X, Y), batchsize=10)
    with pytest.raises(FloatingPointError, match="nan at epoch 2, step 3") as info:
        ff.train(loss, p0, loader, optim.sgd(0.1), epochs=5, progress=False)
    model, state, hist = info.value.train_result
    ref, _, _ = ff.train(mse, p0, list(loader) + list(loader)[:2], optim.sgd(0.1),
                         progress=False)
    _same_model(model, ref)                 # the NaN step was not applied
    assert len(hist["loss"]) == 2 and isinstance(state, optim.OptimiserState)
    with pytest.raises(FloatingPointError, match="inf at epoch 1, step 1"):
        ff.train(lambda p, x, y: mse(p, x, y) + np.inf, p0, loader, optim.sgd(0.1),
                 progress=False)


@pytest.mark.parametrize("where", ["loss", "callback"])
def test_keyboard_interrupt_keeps_the_finished_steps(where):
    X, Y, mse = _linear_problem()
    calls = [0]

    def loss(p, x, y):
        calls[0] += 1
        if where == "loss" and calls[0] == 7:    # Ctrl-C during step 3 of epoch 2
            raise KeyboardInterrupt
        return mse(p, x, y)

    def callback(info):
        if where == "callback" and info.epoch == 2:
            raise KeyboardInterrupt

    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    loader = data.DataLoader((X, Y), batchsize=10)
    with pytest.raises(KeyboardInterrupt) as info:
        ff.train(loss, p0, loader, optim.adam(0.1), epochs=5, callbacks=[callback],
                 progress=False)
    model, state, hist = info.value.train_result
    steps = 6 if where == "loss" else 8
    ref, ref_state, _ = ff.train(mse, p0, (list(loader) * 2)[:steps], optim.adam(0.1),
                                 progress=False)
    _same_model(model, ref)
    assert state.inner.count == ref_state.inner.count == steps
    assert len(hist["loss"]) == 2            # epoch 1, and epoch 2's finished steps
    # the work can be resumed from there
    more, _, _ = ff.train(mse, model, loader, state, progress=False)
    assert more["a"][0] != model["a"][0]


def test_other_exceptions_keep_the_work_too():
    X, Y, mse = _linear_problem()

    def loss(p, x, y):
        if p["a"][0] != 0:
            raise RuntimeError("boom")
        return mse(p, x, y)

    with pytest.raises(RuntimeError, match="boom") as info:
        ff.train(loss, {"a": np.zeros(1), "b": np.zeros(1)}, [(X, Y)] * 3, optim.sgd(0.1),
                 progress=False)
    model, _, hist = info.value.train_result
    assert model["a"][0] != 0 and len(hist["loss"]) == 1


def test_list_batches_are_splatted_like_tuples():
    # Regression: [x, y] was passed as one argument ("missing 1 required positional argument").
    X, Y, mse = _linear_problem()
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    a, _, _ = ff.train(mse, p0, [[X, Y]], optim.sgd(0.1), progress=False)
    b, _, _ = ff.train(mse, p0, [(X, Y)], optim.sgd(0.1), progress=False)
    c, _, _ = ff.train(mse, p0, data.DataLoader([X, Y], batchsize=40), optim.sgd(0.1),
                       progress=False)
    _same_model(a, b)
    _same_model(c, b)


@pytest.mark.parametrize("opt", [None, optim.adam, "adam", (1, 2)])
def test_opt_that_is_not_an_optimiser(opt):
    X, Y, mse = _linear_problem()
    with pytest.raises(TypeError, match=r"ff.train: opt is a .*optim.adam\(1e-3\)"):
        ff.train(mse, {"a": np.zeros(1)}, [(X, Y)], opt, progress=False)
    with pytest.raises(TypeError, match="optim.setup: opt is a"):
        optim.setup(opt, {"a": np.zeros(1)})


# ----------------------------------------------------------------------------- progress
class _FakeBar:
    instances: list = []

    def __init__(self, total=None, **kw):
        self.total, self.n, self.closed, self.postfix = total, 0, False, None
        _FakeBar.instances.append(self)

    def update(self, k):
        self.n += k

    def set_description(self, d, refresh=True):
        self.desc = d

    def set_postfix(self, refresh=True, **kw):
        self.postfix = kw

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tqdm(monkeypatch):
    mod = types.ModuleType("tqdm")
    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = _FakeBar
    mod.auto = auto
    monkeypatch.setitem(sys.modules, "tqdm", mod)
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    _FakeBar.instances = []
    return _FakeBar


def test_progress_bar_with_tqdm(fake_tqdm):
    X, Y, mse = _linear_problem()
    ff.train(mse, {"a": np.zeros(1), "b": np.zeros(1)}, data.DataLoader((X, Y), batchsize=10),
             optim.sgd(0.1), epochs=3)
    (bar,) = fake_tqdm.instances
    assert bar.total == 12 and bar.n == 12 and bar.closed
    assert bar.desc == "epoch 3/3" and "loss" in bar.postfix


def test_progress_false_is_silent(fake_tqdm, capsys):
    X, Y, mse = _linear_problem()
    ff.train(mse, {"a": np.zeros(1), "b": np.zeros(1)}, data.DataLoader((X, Y), batchsize=10),
             optim.sgd(0.1), epochs=2, progress=False)
    assert fake_tqdm.instances == []
    assert capsys.readouterr() == ("", "")


def test_silent_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, Y, mse = _linear_problem()
    _, _, hist = ff.train(mse, {"a": np.zeros(1), "b": np.zeros(1)}, [(X, Y)], optim.sgd(0.1),
                          epochs=2)
    assert len(hist["loss"]) == 2 and capsys.readouterr() == ("", "")


# -- ff.train(jit=True) ------------------------------------------------------------------
def test_jit_trains_like_the_eager_loop():
    X, y = data.make_moons(70, noise=0.1, rng=0)  # 70 = 4 batches of 16 and a short one
    loader = data.DataLoader((X, y), batchsize=16, partial=True)
    model = nn.Chain(nn.Dense(2, 8, np.tanh, rng=1), nn.Dense(8, 2, rng=2))
    loss = lambda m, x, y: losses.logitcrossentropy(m(x), y)
    for opt in (optim.adam(1e-2), optim.sgd(0.1, momentum=0.9)):
        me, se, he = ff.train(loss, model, loader, opt, epochs=3, progress=False)
        mj, sj, hj = ff.train(loss, model, loader, opt, epochs=3, progress=False, jit=True)
        for a, b in zip(ff.tree.leaves(me), ff.tree.leaves(mj)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            assert a.dtype == b.dtype
        np.testing.assert_allclose(he["loss"], hj["loss"], rtol=1e-5)
        for a, b in zip(ff.tree.leaves(se), ff.tree.leaves(sj)):
            assert type(a) is type(b)  # the step count stays a Python int


def test_jit_with_aux_metrics():
    X, Y, mse = _linear_problem()
    loss = lambda p, x, y: (mse(p, x, y), {"mae": np.mean(np.abs(x * p["a"] + p["b"] - y))})
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    loader = data.DataLoader((X, Y), batchsize=10)
    _, _, he = ff.train(loss, p0, loader, optim.sgd(0.1), epochs=2, has_aux=True,
                        progress=False)
    _, _, hj = ff.train(loss, p0, loader, optim.sgd(0.1), epochs=2, has_aux=True,
                        progress=False, jit=True)
    np.testing.assert_allclose(he["mae"], hj["mae"], rtol=1e-10)


def test_jit_non_finite_loss_stops_before_the_step():
    X, Y, mse = _linear_problem()
    X = X.copy()
    X[25] = np.nan  # batch 3 of each epoch
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    loader = data.DataLoader((X, Y), batchsize=10)
    with pytest.raises(FloatingPointError, match="nan at epoch 1, step 3") as info:
        ff.train(mse, p0, loader, optim.sgd(0.1), progress=False, jit=True)
    model, _, _ = info.value.train_result
    ref, _, _ = ff.train(mse, p0, list(loader)[:2], optim.sgd(0.1), progress=False)
    _same_model(model, ref)


def test_jit_refuses_a_numpy_rng_and_says_to_pass_a_key():
    X, Y, mse = _linear_problem()
    with pytest.raises(ValueError, match="rng=.*same dropout mask.*ff.random.key"):
        ff.train(lambda p, x, y, rng: mse(p, x, y), {"a": np.zeros(1), "b": np.zeros(1)},
                 [(X, Y)], optim.sgd(0.1), rng=0, jit=True, progress=False)


def test_a_key_gives_each_step_its_own_dropout_mask_eagerly_and_under_jit():
    X, y = data.make_moons(64, noise=0.1, rng=0)
    model = nn.Chain(nn.Dense(2, 16, np.tanh, rng=1), nn.Dropout(0.5), nn.Dense(16, 2, rng=2))

    def loss(m, x, y, rng):
        out, _ = nn.apply(m, x, train=True, rng=rng)
        return losses.logitcrossentropy(out, y)
    batches = [(X, y)] * 4
    key = ff.random.key(7)
    eager = ff.train(loss, model, batches, optim.adam(1e-2), epochs=2, rng=key, progress=False)
    staged = ff.train(loss, model, batches, optim.adam(1e-2), epochs=2, rng=key,
                      progress=False, jit=True)
    np.testing.assert_allclose(staged[2]["loss"], eager[2]["loss"], rtol=1e-5)
    for a, b in zip(ff.tree.leaves(staged[0]), ff.tree.leaves(eager[0])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # step k's key is fold_in(key, k): the same loop by hand gives the same model
    state, m = optim.setup(optim.adam(1e-2), model), model
    for k in range(8):
        g = ff.grad(loss)(m, X, y, ff.random.fold_in(key, k))
        state, m = optim.step(state, m, g)
    for a, b in zip(ff.tree.leaves(m), ff.tree.leaves(eager[0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and the masks differ from step to step: not the run with one key for every step
    state, m1 = optim.setup(optim.adam(1e-2), model), model
    for k in range(8):
        state, m1 = optim.step(state, m1, ff.grad(loss)(m1, X, y, key))
    assert not np.allclose(m1.layers[0].weight, m.layers[0].weight)


# -- validation (val_data=) and plot_history ---------------------------------------------
def _val_problem():
    X, Y, mse = _linear_problem()
    return (X[:30], Y[:30]), (X[30:], Y[30:]), mse


def test_validation_is_the_mean_loss_over_val_batches_after_each_epoch():
    (X, Y), (Xv, Yv), mse = _val_problem()
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    val = data.DataLoader((Xv, Yv), batchsize=4)
    seen = []
    p, _, hist = ff.train(mse, p0, data.DataLoader((X, Y), batchsize=10), optim.sgd(0.1),
                          epochs=3, progress=False, val_data=val,
                          callbacks=[lambda info: seen.append((info.model, info.val_loss))])
    assert len(hist["loss"]) == len(hist["val_loss"]) == 3
    for (m, v), h in zip(seen, hist["val_loss"]):   # the model at the end of each epoch
        want = np.mean([float(mse(m, xb, yb)) for xb, yb in val])
        assert v == h and abs(v - want) <= 1e-12 * abs(want)
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    # training is not changed by validation
    q, _, h2 = ff.train(mse, p0, data.DataLoader((X, Y), batchsize=10), optim.sgd(0.1),
                        epochs=3, progress=False)
    _same_model(p, q)
    assert h2["loss"] == hist["loss"] and "val_loss" not in h2


def test_val_every_val_loss_and_aux_metrics():
    (X, Y), (Xv, Yv), mse = _val_problem()
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    loss = lambda p, x, y: (mse(p, x, y), {"mae": np.mean(np.abs(x * p["a"] + p["b"] - y))})
    _, _, hist = ff.train(loss, p0, [(X, Y)], optim.sgd(0.1), epochs=5, has_aux=True,
                          progress=False, val_data=[(Xv, Yv)], val_every=2)
    assert [np.isnan(v) for v in hist["val_loss"]] == [True, False, True, False, False]
    assert [np.isnan(v) for v in hist["val_mae"]] == [True, False, True, False, False]
    assert len(hist["mae"]) == 5
    # an explicit val_loss (here: the mean absolute error)
    _, _, hist = ff.train(mse, p0, [(X, Y)], optim.sgd(0.1), epochs=2, progress=False,
                          val_data=[(Xv, Yv)],
                          val_loss=lambda p, x, y: np.mean(np.abs(x * p["a"] + p["b"] - y)))
    assert hist["val_loss"][0] != hist["loss"][0]


def test_validation_under_jit_matches_eager():
    (X, Y), (Xv, Yv), mse = _val_problem()
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    args = (mse, p0, data.DataLoader((X, Y), batchsize=10), optim.sgd(0.1))
    kw = dict(epochs=3, progress=False, val_data=data.DataLoader((Xv, Yv), batchsize=7))
    _, _, he = ff.train(*args, **kw)
    _, _, hj = ff.train(*args, jit=True, **kw)
    np.testing.assert_allclose(hj["val_loss"], he["val_loss"], rtol=1e-12)


def test_validation_errors():
    (X, Y), (Xv, Yv), mse = _val_problem()
    p0 = {"a": np.zeros(1), "b": np.zeros(1)}
    with pytest.raises(ValueError, match="val_every"):
        ff.train(mse, p0, [(X, Y)], optim.sgd(0.1), val_data=[(Xv, Yv)], val_every=0)
    with pytest.raises(ValueError, match="val_data gave no batches") as info:
        ff.train(mse, p0, [(X, Y)], optim.sgd(0.1), val_data=[], progress=False)
    assert len(info.value.train_result[2]["loss"]) == 1   # the epoch's steps are kept
    Xn = Xv.copy()
    Xn[0] = np.nan
    with pytest.raises(FloatingPointError, match="validation loss is nan at epoch 1"):
        ff.train(mse, p0, [(X, Y)], optim.sgd(0.1), val_data=[(Xn, Yv)], progress=False)


def test_plot_history(tmp_path):
    pytest.importorskip("matplotlib")
    hist = {"loss": [1.0, 0.5, 0.25], "val_loss": [float("nan"), 0.6, 0.3],
            "acc": [0.5, 0.7, 0.9], "note": "not a curve"}
    path = tmp_path / "history.png"
    fig = ff.plot_history(hist, path)
    assert path.stat().st_size > 0
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "acc"]
    lines = {ln.get_label(): ln for ln in fig.axes[0].lines}
    assert list(lines["val_loss"].get_xdata()) == [2, 3]        # the NaN epoch left out
    assert list(lines["loss"].get_ydata()) == [1.0, 0.5, 0.25]
    fig = ff.plot_history(hist, keys=["loss"], logy=True)
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"
    with pytest.raises(KeyError, match="not in the history"):
        ff.plot_history(hist, keys=["val_acc"])


def test_plot_history_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install funcflux\[examples\]"):
        ff.plot_history({"loss": [1.0]})


@pytest.mark.parametrize("jit", [False, True])
def test_interrupted_train_resumes_exactly_from_train_result_and_loader_state(tmp_path, jit):
    g = np.random.default_rng(4)
    X = g.normal(size=(40, 2))
    Y = X @ np.array([[1.5], [-0.5]])
    p0 = {"w": np.zeros((2, 1)), "c": np.zeros(1)}
    mse = lambda p, x, y: np.mean((x @ p["w"] + p["c"] - y) ** 2)  # noqa: E731
    make = lambda: data.DataLoader((X, Y), batchsize=6, shuffle=True, rng=2)  # noqa: E731
    straight, _, _ = ff.train(mse, p0, make(), optim.adam(0.05), epochs=3, progress=False,
                              jit=jit)

    calls = [0]

    def interrupted(p, x, y):
        calls[0] += 1
        if calls[0] == 11:            # step 4 of epoch 2 (7 batches per epoch)
            raise KeyboardInterrupt
        return mse(p, x, y)

    loader = make()
    with pytest.raises(KeyboardInterrupt) as info:
        ff.train(interrupted, p0, loader, optim.adam(0.05), epochs=3, progress=False)
    model, state, _ = info.value.train_result
    assert loader.state_dict()["batch"] == 3      # the interrupted batch is not counted
    path = tmp_path / "run.npz"
    ff.save(path, {"model": model, "data": loader.state_dict()}, opt_state=state)

    loader = make()
    saved, state = ff.load(path, like={"model": p0, "data": loader.state_dict()},
                           opt_state_like=optim.setup(optim.adam(0.05), p0))
    loader.load_state_dict(saved["data"])
    resumed, _, _ = ff.train(mse, saved["model"], loader, state, epochs=2, progress=False,
                             jit=jit)
    for k in p0:
        np.testing.assert_allclose(resumed[k], straight[k], rtol=1e-13)
