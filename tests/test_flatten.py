"""Functor classes flatten and rebuild through functions generated once per class."""
from __future__ import annotations

import builtins
import collections
import dataclasses
import gc
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import funcflux as ff
from funcflux import nn, optim


def _mlp() -> nn.Chain:
    return nn.Chain(nn.Dense(3, 4, nn.relu, rng=0), nn.BatchNorm(4), nn.Dense(4, 2, rng=1))


def _loss(m, x, y):
    return np.mean((m(x) - y) ** 2)


X, Y = np.ones((5, 3), np.float32), np.zeros((5, 2), np.float32)


class _CountCompiles:
    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.names: list[str] = []
        real = builtins.compile

        def counting(source, filename, *args, **kwargs):
            self.names.append(str(filename))
            return real(source, filename, *args, **kwargs)

        monkeypatch.setattr(builtins, "compile", counting)


def test_no_code_is_generated_while_training(monkeypatch):
    """Regression: the rebuild code said to be compiled once per structure was compiled
    again at every step (each step's flatten made a new structure object)."""
    model, opt = _mlp(), optim.adam(0.01)
    state = opt.init(model)
    counter = _CountCompiles(monkeypatch)
    for _ in range(4):
        g = ff.grad(_loss)(model, X, Y)
        sgd = ff.tree.map(lambda p, gp: p - 0.1 * gp, model, g)
        updates, state = opt.update(g, state, model)
        model = optim.apply_updates(sgd, updates)
        lv, td = ff.tree.flatten(model)
        model = ff.fmap(lambda a: a, ff.tree.unflatten(td, lv))
    assert counter.names == []


def test_flatten_and_unflatten_are_generated_once_per_class(monkeypatch):
    counter = _CountCompiles(monkeypatch)

    @ff.functor("w")
    class Scale:
        def __init__(self, w, tag="s"):
            self.w, self.tag = w, tag

    assert len(counter.names) == 2 and all("Scale" in n for n in counter.names)
    s = Scale(np.ones(2))
    for _ in range(3):
        lv, td = ff.tree.flatten(s)
        s = ff.fmap(lambda a: a * 2, ff.tree.unflatten(td, lv))
    assert len(counter.names) == 2
    np.testing.assert_array_equal(s.w, 8.0)
    assert s.tag == "s"


def test_a_step_frees_its_arrays_with_the_garbage_collector_off():
    """Regression: walks left reference cycles (closures that call themselves, the
    compiled rebuilds) holding a step's arrays until the garbage collector ran."""
    model = _mlp()
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            g = ff.grad(_loss)(model, X, Y)
            new = ff.tree.map(lambda p, gp: p - 0.1 * gp, model, g)
            lv, td = ff.tree.flatten(new)
            new = ff.fmap(lambda a: a + 0, ff.tree.unflatten(td, lv))
            new = ff.tree.at(lambda m: m.layers[0].bias, new, replace_fn=lambda b: b * 1)
            refs = [weakref.ref(a) for a in ff.tree.leaves((g, model, lv))
                    if isinstance(a, np.ndarray)]
            del g, lv, td
            model, new = new, None
            alive = [r() for r in refs if r() is not None]
            assert not alive, f"{len(alive)} of {len(refs)} arrays outlived the step"
    finally:
        gc.enable()


def test_generated_source_names_its_class():
    d = nn.Dense(2, 3, rng=0)
    nt = ff.tree._node_type(d)
    assert nt.flatten.__name__ == "flatten_Dense"
    assert nt.unflatten.__code__.co_filename == "<generated unflatten for Dense>"
    assert "'weight'" in nt.unflatten.__source__
    assert nt.functor.children == ("weight", "bias") and nt.functor.trainable is None


def test_plain_dataclass_and_slotted_functors_round_trip():
    @ff.functor("w")
    @dataclasses.dataclass(frozen=True)
    class Frozen:
        w: np.ndarray
        name: str = "f"

    @ff.functor
    @dataclasses.dataclass
    class Every:
        a: np.ndarray
        b: np.ndarray

    @ff.functor("w")
    class Slotted:
        __slots__ = ("w", "tag", "unset")

        def __init__(self, w):
            self.w, self.tag = w, "t"

    @ff.functor
    class Plain:
        def __init__(self, a, b):
            self.a, self.b = a, b

    for obj, names in [(Frozen(np.ones(2)), ["w"]), (Every(np.ones(1), np.ones(2)), ["a", "b"]),
                       (Slotted(np.ones(3)), ["w"]), (Plain(np.ones(1), [np.ones(2)]), ["a", "b"])]:
        new = ff.tree.map(lambda a: a * 3, obj)
        assert type(new) is type(obj) and list(ff.children(new)) == names
        for a in ff.tree.leaves(new):
            np.testing.assert_array_equal(a, 3.0)
        assert ff.tree.structure(new) == ff.tree.structure(obj)
    assert ff.tree.map(lambda a: a, Frozen(np.ones(2), "g")).name == "g"
    s = ff.tree.map(lambda a: a, Slotted(np.ones(3)))
    assert s.tag == "t" and not hasattr(s, "unset")


def test_a_missing_child_is_named():
    @ff.functor("w", "b")
    class Half:
        def __init__(self):
            self.w = np.ones(2)

    with pytest.raises(AttributeError, match=r"Half is a functor with children \('w', 'b'\).*'b'"):
        ff.tree.leaves(Half())


def test_tree_map_and_fmap_agree_on_dict_order():
    t = {"b": np.ones(1), "a": [np.ones(2)], "c": {"z": 1.0, "y": 2.0}}
    by_map = ff.tree.map(lambda x: x, t)
    by_fmap = ff.fmap(lambda x: x, t)
    assert list(by_map) == list(by_fmap) == ["a", "b", "c"]
    assert list(by_map["c"]) == list(by_fmap["c"]) == ["y", "z"]
    assert list(ff.tree_at(lambda t: t["b"], t, replace=0)) == ["a", "b", "c"]


# ----------------------------------------------------------------------------- random trees
@ff.functor("a", "b")
class _Node:
    def __init__(self, a, b, tag="n"):
        self.a, self.b, self.tag = a, b, tag


_Pair = collections.namedtuple("_Pair", ["x", "y"])


def _trees(shared: np.ndarray) -> st.SearchStrategy:
    leaf = st.one_of(st.just(shared),  # a tied array: the same object at several places
                     st.integers(1, 3).map(lambda n: np.arange(float(n))), st.none())
    return st.recursive(leaf, lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from("dcba"), kids, max_size=3),
        st.tuples(kids, kids).map(lambda t: _Pair(*t)),
        st.tuples(kids, kids).map(lambda t: _Node(*t))), max_leaves=8)


def _layout(t):
    """Types, dict key order and leaf values, as nested Python data."""
    if isinstance(t, np.ndarray):
        return ("array", t.tolist())
    if isinstance(t, dict):
        return ("dict", [(k, _layout(v)) for k, v in t.items()])
    if isinstance(t, _Node):
        return ("node", _layout(t.a), _layout(t.b), t.tag)
    if isinstance(t, (list, tuple)):
        return (type(t).__name__, [_layout(c) for c in t])
    return ("leaf", t)


@given(st.data())
def test_tree_map_fmap_and_fsplit_rebuild_alike(data):
    """One way to rebuild: tree.map, fmap, tree.at and fsplit give the same trees, dict
    order included, on random nests of functor nodes, None, lists, dicts, namedtuples and
    tied arrays; fmap keeps the ties."""
    shared = np.ones(2)
    t = data.draw(_trees(shared))
    by_map = ff.tree.map(lambda a: a * 2, t)
    by_fmap = ff.fmap(lambda a: a * 2, t)
    assert _layout(by_map) == _layout(by_fmap)
    assert ff.tree.structure(by_map) == ff.tree.structure(t)
    children, rebuild = ff.fsplit(t)  # one level: the top node as tree.map rebuilds it
    top = rebuild(children)
    assert type(top) is type(t) and (not isinstance(t, dict) or list(top) == list(by_map))
    if ff.tree.leaves(t):
        first = ff.tree.at(lambda u: ff.tree.leaves(u)[0], t, replace_fn=lambda a: a * 2)
        assert _layout(ff.tree.structure(first).unflatten(ff.tree.leaves(first))) == \
            _layout(first)
    tied = [a for a in ff.fleaves(by_fmap) if isinstance(a, np.ndarray) and
            a.tolist() == [2.0, 2.0]]
    assert len(tied) <= 1 or all(a is tied[0] for a in tied)
