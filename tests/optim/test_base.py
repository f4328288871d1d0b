"""The pair, chain, apply_updates, masks, multi_transform, inject_hyperparams."""
import numpy as np
import pytest

import funcflux as ff
from funcflux import optim


@ff.functor(children=("w", "stats"), trainable=("w",))
class Layer:
    def __init__(self, w, stats, name="layer"):
        self.w, self.stats, self.name = w, stats, name


def test_pair_and_alias():
    assert optim.Optimiser is optim.GradientTransformation
    opt = optim.sgd(0.1)
    assert isinstance(opt, optim.GradientTransformation)
    init, update = opt  # a NamedTuple: unpacks like optax's
    assert callable(init) and callable(update)


def test_chain_state_is_tuple_of_states():
    opt = optim.chain(optim.scale_by_adam(), optim.scale(-0.1))
    state = opt.init({"w": np.zeros(2)})
    assert isinstance(state, tuple) and len(state) == 2
    assert isinstance(state[0], optim.ScaleByAdamState) and state[1] == optim.EmptyState()
    u, state = opt.update({"w": np.ones(2)}, state)
    np.testing.assert_allclose(u["w"], -0.1, rtol=1e-6)


def test_chain_errors():
    with pytest.raises(TypeError, match="calling it"):
        optim.chain(optim.adam)
    opt = optim.chain(optim.scale(1.0))
    with pytest.raises(ValueError, match="2 parts for 1"):
        opt.update(np.ones(1), (optim.EmptyState(), optim.EmptyState()))


def test_identity_and_set_to_zero():
    g = {"a": np.ones(2), "b": None}
    assert optim.identity().update(g, optim.EmptyState())[0] is g
    u, _ = optim.set_to_zero().update(g, optim.EmptyState())
    np.testing.assert_array_equal(u["a"], [0.0, 0.0])
    assert u["b"] is None


def test_apply_updates_keeps_dtype_and_skips_none():
    p = {"w": np.float32([1, 2]), "n": 3, "s": "text", "z": None}
    new = optim.apply_updates(p, {"w": np.array([0.5, 0.5]), "n": None, "s": None, "z": None})
    assert new["w"].dtype == np.float32
    np.testing.assert_array_equal(new["w"], [1.5, 2.5])
    assert new["n"] == 3 and new["s"] == "text" and new["z"] is None
    assert p["w"].tolist() == [1, 2]  # the input is not mutated


def test_apply_updates_none_subtree():
    p = {"a": {"x": np.ones(1), "y": np.ones(1)}, "b": np.ones(1)}
    new = optim.apply_updates(p, {"a": None, "b": np.ones(1)})
    assert new["a"]["x"] is p["a"]["x"]
    np.testing.assert_array_equal(new["b"], [2.0])


def test_apply_updates_never_changes_non_trainable_children():
    layer = Layer(np.ones(2), np.zeros(2))
    grads = ff.grad(lambda m: np.sum(m.w * 2 + m.stats * 3))(layer)
    assert grads.stats is not None  # grad differentiates every float leaf...
    opt = optim.sgd(1.0)
    u, _ = opt.update(grads, opt.init(layer), layer)
    new = optim.apply_updates(layer, u)
    assert new.stats is layer.stats  # ...but the optimiser leaves statistics alone
    np.testing.assert_array_equal(new.w, [-1.0, -1.0])
    assert new.name == "layer"


def test_global_norm():
    assert optim.global_norm({"a": np.array([3.0]), "b": [np.array([4.0]), None]}) == 5.0
    assert optim.global_norm({}) == 0.0


def test_masked_callable_and_prefix():
    p = {"w": np.ones(2), "b": {"x": np.ones(1), "y": np.ones(1)}}
    g = ff.tree.map(np.ones_like, p)
    opt = optim.masked(optim.sgd(1.0), lambda params: {"w": True, "b": False})
    state = opt.init(p)
    assert isinstance(state, optim.MaskedState)
    u, state = opt.update(g, state, p)
    np.testing.assert_array_equal(u["w"], [-1.0, -1.0])
    assert u["b"]["x"] is g["b"]["x"]  # passed through unchanged
    # the inner state only covers the masked-in leaves
    assert state.inner_state.inner_state[0] == optim.EmptyState()


def test_masked_stateful_inner_holds_none_elsewhere():
    p = {"w": np.ones(2), "b": np.ones(1)}
    opt = optim.masked(optim.scale_by_adam(), {"w": True, "b": False})
    s = opt.init(p)
    assert s.inner_state.mu["b"] is None and s.inner_state.mu["w"].shape == (2,)
    u, s = opt.update(ff.tree.map(np.ones_like, p), s, p)
    np.testing.assert_array_equal(u["b"], [1.0])


def test_multi_transform():
    p = {"enc": {"w": np.ones(2)}, "head": {"w": np.ones(2), "b": np.ones(1)}}
    labels = {"enc": "frozen", "head": "train"}  # a prefix of the params
    opt = optim.multi_transform({"train": optim.adam(0.1), "frozen": optim.set_to_zero()},
                                labels)
    state = opt.init(p)
    assert isinstance(state, optim.MultiTransformState)
    assert set(state.inner_states) == {"train", "frozen"}
    g = ff.tree.map(np.ones_like, p)
    for _ in range(2):
        u, state = opt.update(g, state, p)
        p = optim.apply_updates(p, u)
    np.testing.assert_array_equal(p["enc"]["w"], [1.0, 1.0])
    np.testing.assert_allclose(p["head"]["w"], [0.8, 0.8], rtol=1e-6)
    assert state.inner_states["train"].inner_state[0].mu["enc"]["w"] is None


def test_multi_transform_label_function_and_errors():
    p = {"w": np.ones(2), "b": np.ones(1), "n": 3}
    opt = optim.multi_transform(
        {"decay": optim.sgd(1.0), "plain": optim.sgd(0.5)},
        lambda params: ff.tree.map_with_path(
            lambda path, x: "plain" if path[-1].key == "b" else "decay", params))
    u, _ = opt.update({"w": np.ones(2), "b": np.ones(1), "n": None}, opt.init(p), p)
    np.testing.assert_array_equal(u["w"], [-1.0, -1.0])
    np.testing.assert_array_equal(u["b"], [-0.5])
    assert u["n"] is None
    bad = optim.multi_transform({"a": optim.sgd(1.0)}, {"w": "a", "b": "zz", "n": "a"})
    with pytest.raises(ValueError, match=r"\['b'\] has label 'zz'"):
        bad.init(p)


def test_inject_hyperparams_state_and_static_args():
    opt = optim.adam(0.01, b1=0.8)
    state = opt.init(np.zeros(2))
    assert isinstance(state, optim.InjectHyperparamsState)
    assert state.count == 0
    assert state.hyperparams == {"learning_rate": 0.01, "b1": 0.8, "b2": 0.999, "eps": 1e-8,
                                 "eps_root": 0.0}
    assert isinstance(state.inner_state[0], optim.ScaleByAdamState)
    _, state = opt.update(np.ones(2), state)
    assert state.count == 1
    # flags, schedules, masks and None stay out of the state
    assert set(optim.sgd(0.1, momentum=None, nesterov=True).init(np.zeros(1)).hyperparams) == \
        {"learning_rate"}
    assert "learning_rate" not in optim.sgd(lambda n: 0.1).init(np.zeros(1)).hyperparams
    custom = optim.inject_hyperparams(optim.scale_by_adam, static_args=("b1",))(b1=0.5)
    assert "b1" not in custom.init(np.zeros(1)).hyperparams


def test_inject_hyperparams_reads_array_values_as_floats():
    opt = optim.sgd(0.1)
    state = opt.init(np.zeros(1, np.float32))
    state = state._replace(hyperparams={"learning_rate": np.asarray(0.5)})  # as from a file
    u, _ = opt.update(np.ones(1, np.float32), state)
    assert u.dtype == np.float32 and float(u[0]) == -0.5


def test_alias_keeps_name_and_doc():
    assert optim.adam.__name__ == "adam" and "Adam" in optim.adam.__doc__
    with pytest.raises(TypeError):
        optim.adam(0.1, bogus=1)
