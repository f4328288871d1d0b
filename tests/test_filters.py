"""ff.partition / ff.combine and the array filters (Equinox's semantics)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import funcflux as ff

rng = np.random.default_rng(5)


def test_filters():
    assert ff.is_array(np.ones(2)) and ff.is_array(np.float32(1.0)) and ff.is_array(np.arange(3))
    assert not ff.is_array(1.0) and not ff.is_array("a") and not ff.is_array(None)
    assert ff.is_inexact_array(np.ones(2)) and ff.is_inexact_array(np.ones(2, np.complex64))
    assert not ff.is_inexact_array(np.arange(2)) and not ff.is_inexact_array(2.5)
    assert ff.is_array_like(1) and ff.is_array_like(True) and ff.is_array_like(np.ones(1))
    assert not ff.is_array_like("relu") and not ff.is_array_like(None)
    seen = []
    ff.grad(lambda x: seen.append((ff.is_array(x), ff.is_inexact_array(x))) or np.sum(x))(np.ones(2))
    assert seen == [(True, True)]  # a traced value is an array


def test_partition_and_combine_round_trip_with_holes():
    t = {"w": np.ones(2), "n": np.arange(3), "act": "relu", "hole": None, "k": 3.0,
         "nested": [np.zeros(1), (None, "x")]}
    kept, rest = ff.partition(t, ff.is_inexact_array)
    assert kept["act"] is None and kept["n"] is None and kept["k"] is None
    assert kept["hole"] is None and rest["hole"] is None
    assert rest["w"] is None and rest["nested"][0] is None and rest["nested"][1] == (None, "x")
    assert kept["w"] is t["w"]
    back = ff.combine(kept, rest)
    assert ff.tree.structure(back) == ff.tree.structure(t)
    for a, b in zip(ff.tree.leaves(back), ff.tree.leaves(t)):
        assert a is b
    # bools, a prefix tree of filters, replace=
    k, r = ff.partition(t, True)
    assert ff.tree.leaves(r) == []
    k, r = ff.partition({"a": np.ones(1), "b": np.ones(2)}, {"a": True, "b": ff.is_array_like})
    assert r == {"a": None, "b": None}
    k, r = ff.partition({"a": np.ones(1), "b": "s"}, ff.is_array, replace=0)
    assert k["b"] == 0 and r["a"] == 0
    # three trees: the first non-None wins
    assert ff.combine((None, 1, None), (2, 5, None), (9, 9, 4)) == (2, 1, 4)


def test_grad_over_part_of_a_model_is_one_line():
    model = ff.nn.Chain(ff.nn.Dense(3, 4, ff.nn.tanh), ff.nn.BatchNorm(4), ff.nn.Dense(4, 1))
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 1))

    def loss(m, x, y):
        return np.mean((m(x) - y) ** 2)
    params, static = ff.partition(model, ff.is_inexact_array)
    grads = ff.grad(lambda p: loss(ff.combine(p, static), x, y))(params)
    full = ff.grad(loss)(model, x, y)
    for a, b in zip(ff.tree.leaves(grads), ff.tree.leaves(full), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert type(grads) is type(model)
    # a filter tree that freezes the first layer: its weights land in the static half
    spec = ff.tree.map(lambda _: False, model)
    spec = ff.tree_at(lambda m: m.layers[2], spec, replace=ff.is_inexact_array)
    p2, s2 = ff.partition(model, spec)
    g2 = ff.grad(lambda p: loss(ff.combine(p, s2), x, y))(p2)
    np.testing.assert_allclose(g2.layers[2].weight, full.layers[2].weight, rtol=1e-12)
    assert g2.layers[0].weight is None
    # the model itself comes back intact
    again = ff.combine(params, static)
    np.testing.assert_allclose(again(x), model(x))


def test_functor_dataclass_and_is_leaf():
    @ff.functor
    @dataclasses.dataclass
    class Pair:
        a: object
        b: object
    p = Pair(np.ones(2), "name")
    k, r = ff.partition(p, ff.is_array)
    assert isinstance(k, Pair) and k.b is None and r.a is None and r.b == "name"
    assert ff.combine(k, r).b == "name"
    # is_leaf: a whole tuple is one leaf, kept or not as a unit
    t = {"pair": (np.ones(1), np.ones(1)), "x": np.ones(1)}
    k, r = ff.partition(t, lambda v: isinstance(v, tuple), is_leaf=lambda v: isinstance(v, tuple))
    assert isinstance(k["pair"], tuple) and k["x"] is None and r["pair"] is None


def test_errors():
    with pytest.raises(TypeError, match=r"filter_spec must be a bool.*found a str at \['a'\]"):
        ff.partition({"a": 1}, {"a": "yes"})
    with pytest.raises(ValueError, match="not a prefix"):
        ff.partition({"a": 1}, {"b": True})
    with pytest.raises(TypeError, match="returned int, not a bool"):
        ff.partition({"a": 1}, lambda v: 1)
    with pytest.raises(ValueError, match="combine: the trees differ in structure"):
        ff.combine({"a": 1}, {"b": 2})
    with pytest.raises(TypeError, match="at least one"):
        ff.combine()


def test_the_static_half_of_a_model_prints():
    from funcflux import nn
    m = nn.Chain(nn.Dense(3, 2, nn.relu, rng=0), nn.Embedding(5, 3))
    _, static = ff.partition(m, ff.is_inexact_array)
    assert repr(static) == "Chain(Dense(weight=None, bias=None), Embedding(weight=None))"
