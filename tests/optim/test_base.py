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
    # the inner state is sgd's own (a plain chain, as in optax)
    assert state.inner_state[0] == optim.EmptyState()


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
    assert state.inner_states["train"][0].mu["enc"]["w"] is None


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


def test_aliases_are_plain_chains_with_optax_state():
    # Regression: every alias was wrapped by inject_hyperparams, so state[0].mu (optax's
    # way to read Adam's moments) raised AttributeError.
    opt = optim.adam(0.1)
    state = opt.init({"w": np.zeros(2)})
    assert isinstance(state, tuple) and len(state) == 2
    assert isinstance(state[0], optim.ScaleByAdamState) and state[1] == optim.EmptyState()
    _, state = opt.update({"w": np.ones(2)}, state)
    assert state[0].count == 1 and state[0].mu["w"].tolist() == pytest.approx([0.1, 0.1])
    assert isinstance(optim.sgd(0.1, momentum=0.9).init(np.zeros(1))[0], optim.TraceState)
    assert isinstance(optim.adamw(0.1).init(np.zeros(1))[1], optim.EmptyState)


def test_inject_hyperparams_state_and_static_args():
    opt = optim.inject_hyperparams(optim.adam)(0.01, b1=0.8)
    state = opt.init(np.zeros(2))
    assert isinstance(state, optim.InjectHyperparamsState)
    assert state.count == 0
    assert state.hyperparams == {"learning_rate": 0.01, "b1": 0.8, "b2": 0.999, "eps": 1e-8,
                                 "eps_root": 0.0}
    assert isinstance(state.inner_state[0], optim.ScaleByAdamState)
    _, state = opt.update(np.ones(2), state)
    assert state.count == 1
    # flags, schedules, masks and None stay out of the state
    sgd = optim.inject_hyperparams(optim.sgd)
    assert set(sgd(0.1, momentum=None, nesterov=True).init(np.zeros(1)).hyperparams) == \
        {"learning_rate"}
    assert "learning_rate" not in sgd(lambda n: 0.1).init(np.zeros(1)).hyperparams
    custom = optim.inject_hyperparams(optim.scale_by_adam, static_args=("b1",))(b1=0.5)
    assert "b1" not in custom.init(np.zeros(1)).hyperparams


def test_inject_hyperparams_reads_array_values_as_floats():
    opt = optim.inject_hyperparams(optim.sgd)(0.1)
    state = opt.init(np.zeros(1, np.float32))
    state = state._replace(hyperparams={"learning_rate": np.asarray(0.5)})  # as from a file
    u, _ = opt.update(np.ones(1, np.float32), state)
    assert u.dtype == np.float32 and float(u[0]) == -0.5


def test_alias_keeps_name_and_doc():
    assert optim.adam.__name__ == "adam" and "Adam" in optim.adam.__doc__
    with pytest.raises(TypeError):
        optim.adam(0.1, bogus=1)


def test_inject_hyperparams_reads_values_written_into_the_state():
    # optax's way to change a learning rate: write into state.hyperparams.
    opt = optim.inject_hyperparams(optim.sgd)(0.1)
    state = opt.init(np.zeros(1))
    u, state = opt.update(np.ones(1), state)
    state.hyperparams["learning_rate"] = 0.5
    u, state = opt.update(np.ones(1), state)
    np.testing.assert_allclose(u, [-0.5])


def test_alias_repr_and_recipe():
    assert repr(optim.adam(1e-3)).startswith("adam(learning_rate=0.001, b1=0.9")
    assert repr(optim.chain(optim.sgd(0.1))).startswith("chain(sgd(learning_rate=0.1")
    opt = optim.adam(1e-3)   # still the plain pair
    assert isinstance(opt, optim.GradientTransformation) and len(opt) == 2


def _unfused(t):
    """``t`` as a hand-made pair (no leafwise declaration): chain runs it tree by tree."""
    return optim.GradientTransformation(t.init, lambda u, s, p=None, f=t.update: f(u, s, p))


@pytest.mark.parametrize("name", ["adam", "nadam", "radam", "adamw", "lamb", "lion", "sgd",
                                  "rmsprop", "adagrad", "adadelta"])
def test_fused_chain_gives_the_numbers_of_its_members_in_turn(name):
    # chain runs leafwise members in one loop per leaf, folding the learning rate into
    # Adam's scalars; the numbers must be those of the members applied one after another.
    blocks = {
        "adam": lambda: [optim.scale_by_adam(), optim.scale_by_learning_rate(0.1)],
        "nadam": lambda: [optim.scale_by_adam(nesterov=True), optim.scale_by_learning_rate(0.1)],
        "radam": lambda: [optim.scale_by_radam(b2=0.9), optim.scale_by_learning_rate(0.1)],
        "adamw": lambda: [optim.scale_by_adam(eps_root=1e-8), optim.add_decayed_weights(0.1),
                          optim.scale_by_learning_rate(lambda n: 0.1 / (n + 1))],
        "lamb": lambda: [optim.scale_by_adam(), optim.add_decayed_weights(0.1),
                         optim.scale_by_trust_ratio(), optim.scale_by_learning_rate(0.1)],
        "lion": lambda: [optim.scale_by_lion(), optim.scale_by_learning_rate(0.1)],
        "sgd": lambda: [optim.trace(0.9, nesterov=True), optim.scale(2.0), optim.scale(-0.05)],
        "rmsprop": lambda: [optim.scale_by_stddev(), optim.scale_by_learning_rate(0.1),
                            optim.trace(0.5)],
        "adagrad": lambda: [optim.scale_by_rss(), optim.identity(),
                            optim.scale_by_learning_rate(0.1)],
        "adadelta": lambda: [optim.scale_by_adadelta(), optim.clip(0.01),
                             optim.scale_by_learning_rate(1.0)],
    }[name]
    fused = optim.chain(*blocks())
    plain = optim.chain(*map(_unfused, blocks()))
    assert isinstance(fused.update, optim.leafwise.Leafwise)
    assert not isinstance(plain.update, optim.leafwise.Leafwise)
    rng = np.random.default_rng(0)
    p = {"w": rng.standard_normal((3, 2)).astype(np.float32), "b": rng.standard_normal(2),
         "n": 4}
    sf, sp = fused.init(p), plain.init(p)
    for _ in range(8):  # (radam rectifies from step 6 with b2 = 0.9)
        g = {"w": rng.standard_normal((3, 2)).astype(np.float32),
             "b": rng.standard_normal(2), "n": None}
        uf, sf = fused.update(g, sf, p)
        up, sp = plain.update(g, sp, p)
        assert uf["n"] is None and uf["w"].dtype == np.float32
        for k in ("w", "b"):
            np.testing.assert_allclose(uf[k], up[k], rtol=1e-6 if k == "w" else 1e-13)
        p = optim.apply_updates(p, uf)
    for a, b in zip(ff.tree.leaves(sf), ff.tree.leaves(sp)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_named_chain_keeps_states_by_name():
    opt = optim.named_chain(("clip", optim.clip_by_global_norm(1.0)), ("adam", optim.adam(0.1)))
    ref = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(0.1))
    p = {"w": np.zeros(2)}
    s, r = opt.init(p), ref.init(p)
    assert set(s) == {"clip", "adam"} and isinstance(s["adam"][0], optim.ScaleByAdamState)
    for _ in range(2):
        u, s = opt.update({"w": np.array([3.0, 4.0])}, s)
        v, r = ref.update({"w": np.array([3.0, 4.0])}, r)
        np.testing.assert_array_equal(u["w"], v["w"])
    with pytest.raises(ValueError, match="repeat"):
        optim.named_chain(("a", optim.sgd(1.0)), ("a", optim.sgd(1.0)))
    with pytest.raises(TypeError, match="pair"):
        optim.named_chain(optim.sgd(1.0))
    # under setup, the alias inside is made adjustable
    state = optim.setup(opt, p)
    assert optim.adjust(state, learning_rate=0.5).inner["adam"].hyperparams["learning_rate"] \
        == 0.5
