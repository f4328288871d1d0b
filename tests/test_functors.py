"""Functor registry and the fmap family (issue: functors and layers)."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest

import funcflux as ff


@ff.functor("weight", "bias")
@dataclasses.dataclass(frozen=True)
class Affine:
    weight: np.ndarray
    bias: np.ndarray
    activation: str = "identity"


@ff.functor
class Plain:
    def __init__(self, a, b):
        self.a = a
        self.b = b


@ff.functor(children=("w", "stats"), trainable=("w",))
class WithStats:
    def __init__(self, w, stats, momentum=0.1):
        self.w, self.stats, self.momentum = w, stats, momentum


@ff.functor
class Slotted:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y


class NT(NamedTuple):
    p: np.ndarray
    q: int


def test_selected_children_and_config_kept():
    m = Affine(np.ones((2, 3)), np.zeros(2), "relu")
    assert list(ff.children(m)) == ["weight", "bias"]
    assert ff.tree.leaves(m)[0] is m.weight and len(ff.tree.leaves(m)) == 2
    m2 = ff.fmap(lambda a: a + 1, m)
    assert isinstance(m2, Affine) and m2.activation == "relu"
    np.testing.assert_array_equal(m2.bias, np.ones(2))
    assert m.bias[0] == 0  # the input is unchanged


def test_all_fields_children_for_plain_and_slotted_classes():
    p = Plain(np.ones(1), [np.zeros(2)])
    assert list(ff.children(p)) == ["a", "b"]
    s = ff.fmap(lambda a: a * 3, Slotted(np.ones(1), np.ones(2)))
    assert isinstance(s, Slotted) and s.y.tolist() == [3.0, 3.0]


def test_trainable_subset_and_validation():
    m = WithStats(np.ones(2), np.zeros(2))
    assert set(ff.trainable(m)) == {"w"}
    assert set(ff.children(m)) == {"w", "stats"}
    assert set(ff.trainable(Plain(1, 2))) == {"a", "b"}
    with pytest.raises(ValueError, match="trainable"):
        ff.functor(children=("a",), trainable=("b",))


def test_children_of_containers_and_leaves():
    assert ff.children((1, 2)) == (1, 2)
    assert ff.children([1]) == [1]
    assert ff.children({"k": 1}) == {"k": 1}
    assert ff.children(np.ones(2)) == {}
    assert ff.isleaf(np.ones(2)) and ff.isleaf(3.0) and not ff.isleaf((1,)) and not ff.isleaf(None)


def test_fsplit_rebuild_keeps_non_children():
    m = Affine(np.ones((2, 3)), np.zeros(2), "tanh")
    ch, rebuild = ff.fsplit(m)
    new = rebuild({"weight": ch["weight"] * 0, "bias": ch["bias"]})
    assert new.activation == "tanh" and not new.weight.any()


def test_fmap_tied_arrays_and_shared_layers_stay_shared():
    w = np.ones((2, 2))
    layer = Affine(w, np.zeros(2))
    model = [layer, layer, Affine(w, np.ones(2))]
    out = ff.fmap(lambda a: a.astype(np.float32), model)
    assert out[0] is out[1]
    assert out[0].weight is out[2].weight
    assert out[2].weight.dtype == np.float32
    calls = []
    ff.fmap(lambda a: calls.append(1) or a, model)
    assert len(calls) == 3  # w once, two distinct biases


def test_fmap_cache_off_maps_every_occurrence():
    w = np.ones(2)
    out = ff.fmap(lambda a: a.copy(), {"a": w, "b": w}, cache=False)
    assert out["a"] is not out["b"]


def test_fmap_views_are_separate_objects():
    w = np.ones((2, 3))
    out = ff.fmap(lambda a: a * 2, {"W": w, "Wt": w.T})
    out["W"][0, 0] = 7.0
    assert out["Wt"][0, 0] == 2.0  # the view was mapped on its own: the tie is gone


def test_fmap_several_trees_and_exclude():
    a = Affine(np.ones(2), np.ones(1))
    b = Affine(np.full(2, 2.0), np.full(1, 3.0))
    s = ff.fmap(lambda x, y: x + y, a, b)
    np.testing.assert_array_equal(s.weight, [3.0, 3.0])
    out = ff.fmap(lambda layer: "swapped", [a, (b, 1.0)], exclude=lambda x: isinstance(x, Affine))
    assert out == ["swapped", ("swapped", 1.0)]
    with pytest.raises(ValueError, match="structure"):
        ff.fmap(lambda x, y: x, {"a": 1}, {"b": 1})


def test_fmapstructure_fleaves_fcollect():
    w = np.ones(2)
    m = Plain(w, (w, NT(np.zeros(3), 4)))
    assert ff.fmapstructure(lambda x: getattr(x, "shape", x), m) == {"a": (2,), "b": ((2,), ((3,), 4))}
    leaves = ff.fleaves(m)
    assert len(leaves) == 3 and leaves[0] is w
    nodes = ff.fcollect(m)
    assert nodes[0] is m and any(n is w for n in nodes)
    assert ff.fcollect(m, exclude=lambda x: isinstance(x, tuple))[-1] == m.b


def test_tree_at_replace_and_replace_fn():
    model = [Affine(np.ones(2), np.zeros(1)), Affine(np.ones(2), np.zeros(1))]
    out = ff.tree.at(lambda m: m[0].weight, model, replace=np.zeros(2))
    assert not out[0].weight.any() and out[1].weight.all() and model[0].weight.all()
    out = ff.tree.at(lambda m: (m[0].bias, m[1].bias), model, replace_fn=lambda b: b + 5)
    assert out[0].bias[0] == 5 and out[1].bias[0] == 5
    swapped = ff.tree.at(lambda m: m[1], model, replace="layer")
    assert swapped[1] == "layer" and swapped[0] is not model[0]


def test_tree_at_matches_by_position_not_value():
    t = {"a": 0, "b": 0}
    assert ff.tree.at(lambda t: t["a"], t, replace=1) == {"a": 1, "b": 0}


def test_tree_at_errors():
    with pytest.raises(TypeError, match="exactly one"):
        ff.tree.at(lambda t: t[0], [1])
    with pytest.raises(ValueError, match="not a node"):
        ff.tree.at(lambda t: 5, [1], replace=2)
    with pytest.raises(ValueError, match="2 nodes"):
        ff.tree.at(lambda t: (t[0], t[1]), [1, 2], replace=[1])


def test_grad_through_functor_model_has_model_structure():
    m = Affine(np.ones((2, 3)), np.zeros(2), "relu")
    g = ff.grad(lambda m, x: np.sum(m.weight @ x + m.bias))(m, np.arange(3.0))
    assert isinstance(g, Affine) and g.activation == "relu"
    np.testing.assert_allclose(g.weight, np.tile(np.arange(3.0), (2, 1)))
    np.testing.assert_allclose(g.bias, np.ones(2))


def test_paths_name_fields():
    m = {"layers": [Affine(np.ones(1), np.ones(1))]}
    paths = [ff.tree.keystr(p) for p, _ in ff.tree.flatten_with_path(m)[0]]
    assert paths == ["['layers'][0].weight", "['layers'][0].bias"]


def test_tree_at_unsorted_dict_keys():
    # Regression: the proxy's dicts are key-sorted; the original's are in insertion order.
    assert ff.tree.at(lambda t: t["b"], {"w": 1.0, "b": 2.0}, replace=5.0) == {"w": 1.0, "b": 5.0}
