"""setup / step / freeze / thaw / adjust: tied arrays, non-trainable children, views."""
import warnings

import numpy as np
import pytest

import funcflux as ff
from funcflux import optim


@ff.functor(children=("w", "stats"), trainable=("w",))
class Layer:
    def __init__(self, w, stats, act="relu"):
        self.w, self.stats, self.act = w, stats, act


@ff.functor(children=("layers",))
class Net:
    def __init__(self, layers):
        self.layers = layers

    def __getitem__(self, i):
        return self.layers[i]


def loss(net, x):
    h = x
    for layer in net.layers:
        h = np.tanh(h @ layer.w + layer.stats)
    return np.sum(h ** 2)


def make_net(tied=False, dtype=np.float64):
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((3, 3)).astype(dtype)
    w1 = w0 if tied else rng.standard_normal((3, 3)).astype(dtype)
    return Net([Layer(w0, np.full(3, 0.1, dtype)), Layer(w1, np.full(3, -0.2, dtype))])


X = np.random.default_rng(2).standard_normal((4, 3))


def test_step_matches_the_explicit_loop():
    net = make_net()
    opt = optim.adam(0.01)
    state = optim.setup(opt, net)
    params = [net.layers[0].w, net.layers[1].w]
    raw_state = opt.init(params)
    for _ in range(3):
        g = ff.grad(loss)(net, X)
        state, net = optim.step(state, net, g)
        u, raw_state = opt.update([g.layers[0].w, g.layers[1].w], raw_state, params)
        params = optim.apply_updates(params, u)
    np.testing.assert_allclose(net.layers[0].w, params[0], rtol=1e-12)
    np.testing.assert_allclose(net.layers[1].w, params[1], rtol=1e-12)


def test_non_trainable_children_are_never_changed():
    net = make_net()
    stats = [l.stats for l in net.layers]
    state = optim.setup(optim.sgd(0.1), net)
    assert len(state.slots) == 2  # the two weights, not the statistics
    for _ in range(2):
        g = ff.grad(loss)(net, X)
        assert np.any(g.layers[0].stats != 0)  # they do have gradients
        state, net = optim.step(state, net, g)
    assert [l.stats for l in net.layers] == stats  # the same objects
    assert all(a is b for a, b in zip([l.stats for l in net.layers], stats))
    assert net.layers[0].act == "relu"


def test_returned_model_is_new_and_old_is_unchanged():
    net = make_net()
    w0 = net.layers[0].w.copy()
    state = optim.setup(optim.sgd(0.1), net)
    _, new = optim.step(state, net, ff.grad(loss)(net, X))
    assert new is not net and new.layers[0] is not net.layers[0]
    np.testing.assert_array_equal(net.layers[0].w, w0)
    assert not np.allclose(new.layers[0].w, w0)


def test_tied_weights_stay_tied_and_gradients_are_summed():
    net = make_net(tied=True)
    opt = optim.adam(0.05)
    state = optim.setup(opt, net)
    assert len(state.slots) == 1 and len(state.slots[0]) == 2
    w = net.layers[0].w
    ref_state = opt.init(w)
    for _ in range(4):
        g = ff.grad(loss)(net, X)
        state, net = optim.step(state, net, g)
        u, ref_state = opt.update(g.layers[0].w + g.layers[1].w, ref_state, w)
        w = optim.apply_updates(w, u)
        assert net.layers[0].w is net.layers[1].w
    np.testing.assert_allclose(net.layers[0].w, w, rtol=1e-12)
    assert "1 tied" in repr(state)


def test_tie_in_a_dict_and_shared_layer_stays_shared():
    layer = Layer(np.ones(2), np.zeros(2))
    model = {"a": layer, "b": layer, "c": np.ones(1)}
    state = optim.setup(optim.sgd(0.1), model)
    assert len(state.slots) == 2
    g = ff.grad(lambda m: np.sum(m["a"].w) + 2 * np.sum(m["b"].w) + np.sum(m["c"]))(model)
    state, new = optim.step(state, model, g)
    assert new["a"] is new["b"]  # the shared layer is rebuilt once
    np.testing.assert_allclose(new["a"].w, [0.7, 0.7])
    assert list(new) == ["a", "b", "c"]


def test_broken_tie_is_an_error():
    net = make_net(tied=True)
    state = optim.setup(optim.sgd(0.1), net)
    untied = ff.tree_at(lambda m: m.layers[1].w, net, replace=net.layers[1].w.copy())
    with pytest.raises(ValueError, match=r"\.layers\[0\]\.w and \.layers\[1\]\.w .*tied"):
        optim.step(state, untied, ff.grad(loss)(untied, X))


def test_view_warns_naming_both_paths():
    w = np.ones((3, 2))
    with pytest.warns(UserWarning, match=r"\['W'\].*\['WT'\].*share memory"):
        optim.setup(optim.sgd(0.1), {"W": w, "WT": w.T})
    with pytest.warns(UserWarning, match=r"\['a'\].*\['row'\]"):
        optim.setup(optim.sgd(0.1), {"a": w, "row": w[0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim.setup(optim.sgd(0.1), {"W": w, "V": w.copy(), "tied": w})  # ties are fine
        base = np.ones(10)
        optim.setup(optim.sgd(0.1), {"a": base[:5], "b": base[5:]})  # disjoint halves


def test_freeze_and_thaw_by_function_path_and_tuple():
    for where in (lambda m: m[0], lambda m: m.layers[0].w, ".layers[0]", ".layers[0].w",
                  ("layers", 0), ("layers", 0, "w")):
        net = make_net()
        state = optim.freeze(optim.setup(optim.adam(0.1), net), where)
        w0, w1 = net.layers[0].w, net.layers[1].w
        for _ in range(2):
            state, net = optim.step(state, net, ff.grad(loss)(net, X))
        assert net.layers[0].w is w0, where
        assert not np.allclose(net.layers[1].w, w1)
        adam_state = state.inner.inner_state[0]
        assert not np.any(adam_state.mu.layers[0].w)  # no moments while frozen
        state = optim.thaw(state, where)
        state, net = optim.step(state, net, ff.grad(loss)(net, X))
        assert not np.allclose(net.layers[0].w, w0)


def test_freeze_selects_nothing():
    state = optim.setup(optim.sgd(0.1), make_net())
    with pytest.raises(ValueError, match="selects no trainable array.*layers"):
        optim.freeze(state, ".layers[5]")
    with pytest.raises(ValueError, match="no trainable"):
        optim.freeze(state, lambda m: m.layers[0].stats)  # not trainable
    with pytest.raises(TypeError, match="path"):
        optim.freeze(state, 3)
    # the path "['w']" must not select "['weights']"
    state = optim.setup(optim.sgd(0.1), {"w": np.ones(1), "weights": np.ones(1)})
    frozen = optim.freeze(state, "['w']").frozen
    assert [ff.tree.keystr(state.paths[k][0]) for k in frozen] == ["['w']"]


def test_adjust_learning_rate():
    net = make_net()
    state = optim.setup(optim.sgd(0.1), net)
    state = optim.adjust(state, 0.0)  # Flux-style positional learning rate
    _, same = optim.step(state, net, ff.grad(loss)(net, X))
    np.testing.assert_array_equal(same.layers[0].w, net.layers[0].w)
    state = optim.adjust(state, learning_rate=1.0)
    assert state.inner.hyperparams["learning_rate"] == 1.0
    g = ff.grad(loss)(net, X)
    _, new = optim.step(state, net, g)
    np.testing.assert_allclose(new.layers[0].w, net.layers[0].w - g.layers[0].w)


def test_adjust_keeps_moments_and_reaches_inside_chains():
    # On a state from opt.init, adjust needs inject_hyperparams (aliases are plain chains,
    # as in optax); through setup it reaches every alias (the test below).
    opt = optim.chain(optim.clip_by_global_norm(10.0), optim.inject_hyperparams(optim.adam)(0.1))
    state = opt.init(np.zeros(2))
    _, state = opt.update(np.ones(2), state)
    new = optim.adjust(state, learning_rate=0.01, b1=0.5)
    inner = new[1]
    assert inner.hyperparams["learning_rate"] == 0.01 and inner.hyperparams["b1"] == 0.5
    assert inner.inner_state[0].mu is state[1].inner_state[0].mu
    assert state[1].hyperparams["learning_rate"] == 0.1  # the old state is unchanged


def test_adjust_errors():
    state = optim.setup(optim.sgd(lambda n: 0.1), {"w": np.ones(1)})
    with pytest.raises(ValueError, match="'learning_rate'.*schedules"):
        optim.adjust(state, learning_rate=0.5)
    with pytest.raises(ValueError, match="'b9'"):
        optim.adjust(optim.adam(0.1).init(np.ones(1)), b9=0.5)


def test_multi_transform_under_setup_sees_the_model():
    net = make_net()
    seen = []

    def labels(m):
        seen.append(m)
        return Net([Layer("frozen", None), Layer("train", None)])

    opt = optim.multi_transform({"train": optim.sgd(0.1), "frozen": optim.set_to_zero()}, labels)
    state = optim.setup(opt, net)
    w0 = net.layers[0].w
    state, net = optim.step(state, net, ff.grad(loss)(net, X))
    assert isinstance(seen[0], Net) and seen[0].layers[0].stats is None  # not trained
    np.testing.assert_array_equal(net.layers[0].w, w0)


def test_grads_with_none_subtree_and_structure_errors():
    model = {"a": {"x": np.ones(1), "y": np.ones(1)}, "b": np.ones(1), "n": 3}
    state = optim.setup(optim.sgd(1.0), model)
    state, new = optim.step(state, model, {"a": None, "b": np.ones(1), "n": None})
    assert new["a"] is model["a"]
    np.testing.assert_array_equal(new["b"], [0.0])
    assert new["n"] == 3
    with pytest.raises(ValueError, match="leaves"):
        optim.step(state, {"b": np.ones(1)}, {"b": np.ones(1)})
    with pytest.raises(ValueError, match="grads"):
        optim.step(state, model, {"a": 1, "b": None})


def test_float32_model_stays_float32():
    net = make_net(dtype=np.float32)
    state = optim.setup(optim.adamw(0.01), net)
    x = X.astype(np.float32)
    for _ in range(2):
        state, net = optim.step(state, net, ff.grad(loss)(net, x))
    assert net.layers[0].w.dtype == np.float32
    assert all(l.dtype == np.float32 for l in ff.tree.leaves(state) if hasattr(l, "dtype"))


def test_state_is_a_pytree():
    net = make_net()
    state = optim.setup(optim.adam(0.1), net)
    leaves, td = ff.tree.flatten(state)
    assert sum(getattr(l, "shape", None) == (3, 3) for l in leaves) == 4  # mu, nu of 2 weights
    again = ff.tree.unflatten(td, leaves)
    assert isinstance(again, optim.OptimiserState) and again.slots == state.slots
    state2, _ = optim.step(again, net, ff.grad(loss)(net, X))
    assert state2.inner.count == 1


def test_with_nn_layers():
    nn = pytest.importorskip("funcflux.nn")
    model = nn.Chain(nn.Dense(3, 4, ff.nn.relu if hasattr(ff.nn, "relu") else np.tanh, rng=0),
                     nn.Dense(4, 1, rng=1))
    state = optim.setup(optim.adam(0.01), model)
    y = np.ones((5, 1))
    x = np.random.default_rng(0).standard_normal((5, 3))
    f = lambda m: np.mean((m(x) - y) ** 2)
    before = f(model)
    for _ in range(20):
        state, model = optim.step(state, model, ff.grad(f)(model))
    assert f(model) < before
    state = optim.freeze(state, lambda m: m[0])
    w = ff.fleaves(model)[0]
    state, model = optim.step(state, model, ff.grad(f)(model))
    assert ff.fleaves(model)[0] is w


def test_setup_makes_every_alias_inside_adjustable():
    # Aliases are plain chains (optax's state); setup rebuilds each alias it finds with
    # inject_hyperparams, through chain, masked and multi_transform, so adjust reaches it.
    net = make_net()
    opt = optim.chain(optim.clip_by_global_norm(10.0),
                      optim.multi_transform({"a": optim.adam(0.1), "s": optim.sgd(0.2)},
                                            lambda m: Net([Layer("a", "a"), Layer("s", "s")])))
    state = optim.setup(opt, net)
    inner = state.inner[1].inner_states
    assert inner["a"].hyperparams["learning_rate"] == 0.1
    assert inner["s"].hyperparams["learning_rate"] == 0.2
    assert isinstance(inner["a"].inner_state[0], optim.ScaleByAdamState)
    state = optim.adjust(state, learning_rate=0.0)
    g = ff.grad(loss)(net, X)
    _, same = optim.step(state, net, g)
    np.testing.assert_array_equal(same.layers[0].w, net.layers[0].w)
    np.testing.assert_array_equal(same.layers[1].w, net.layers[1].w)


def test_adjust_matches_an_optimiser_built_with_the_new_value():
    net = make_net()
    state = optim.setup(optim.adam(0.1, b1=0.8), net)
    ref = optim.inject_hyperparams(optim.adam)(0.1, b1=0.8)
    params = [l.w for l in net.layers]
    ref_state = ref.init(params)
    for i in range(4):
        if i == 2:
            state = optim.adjust(state, learning_rate=0.01, b1=0.5)
            ref_state = optim.adjust(ref_state, learning_rate=0.01, b1=0.5)
        g = ff.grad(loss)(net, X)
        state, net = optim.step(state, net, g)
        u, ref_state = ref.update([l.w for l in g.layers], ref_state, params)
        params = optim.apply_updates(params, u)
    for layer, p in zip(net.layers, params):
        np.testing.assert_allclose(layer.w, p, rtol=1e-12)
    assert state.inner.hyperparams["b1"] == 0.5 and state.inner.inner_state[0].count == 4


def test_adjust_of_a_plain_alias_state_says_how():
    state = optim.adam(0.1).init(np.ones(2))   # optax's state: no hyperparameters in it
    with pytest.raises(ValueError, match=r"inject_hyperparams\(optim.adam\).*optim.setup"):
        optim.adjust(state, learning_rate=0.5)


def test_a_state_replaced_between_steps_is_used():
    # The step reuses what it knew of the state it made; a state rebuilt by the user (here:
    # moments reset by tree.map) must be read again, not taken from that memory.
    net = make_net()
    state = optim.setup(optim.adam(0.1), net)
    g = ff.grad(loss)(net, X)
    state, net2 = optim.step(state, net, g)
    reset = ff.tree.map(lambda x: np.zeros_like(x) if isinstance(x, np.ndarray) else x, state)
    reset = reset._replace(inner=reset.inner._replace(
        inner_state=(reset.inner.inner_state[0]._replace(count=0),
                     *reset.inner.inner_state[1:])))
    fresh = optim.setup(optim.adam(0.1), net2)
    g2 = ff.grad(loss)(net2, X)
    _, a = optim.step(reset, net2, g2)
    _, b = optim.step(fresh, net2, g2)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.w, lb.w)


def test_dict_model_state_edited_in_place_is_used():
    # A model with dicts may have its state edited in place: nothing may be remembered then.
    model = {"w": np.ones(2), "b": np.zeros(1)}
    state = optim.setup(optim.adam(0.1), model)
    g = {"w": np.ones(2), "b": np.ones(1)}
    state, model = optim.step(state, model, g)
    adam = state.inner.inner_state[0]
    adam.mu["w"] = np.full(2, 100.0)   # in place
    _, new = optim.step(state, model, g)
    m = 0.9 * 100.0 + 0.1 * 1.0
    v = 0.999 * adam.nu["w"] + 0.001
    expect = model["w"] - 0.1 * (m / (1 - 0.9 ** 2)) / (np.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)
    np.testing.assert_allclose(new["w"], expect, rtol=1e-6)
