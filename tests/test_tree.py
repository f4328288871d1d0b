"""Pytrees: flatten/unflatten, maps, paths, the registry, ravel, and their error messages."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import funcflux as ff
from funcflux import tree

Point = collections.namedtuple("Point", ["x", "y"])


def test_flatten_unflatten_roundtrip():
    t = {"b": (1, [2, 3]), "a": {"z": 4, "y": None}, "c": Point(5, 6)}
    leaves, td = tree.flatten(t)
    assert leaves == [4, 1, 2, 3, 5, 6]  # dict keys sorted: a (y: None, z), b, c
    assert tree.unflatten(td, leaves) == t
    assert td.num_leaves == 6
    assert td.unflatten(leaves) == t
    assert tree.structure(t) == tree.structure(tree.map(lambda x: x * 10, t))


def test_dict_keys_sorted_and_unflatten_order():
    leaves, td = tree.flatten({"b": 1, "a": 2, "c": 3})
    assert leaves == [2, 1, 3]
    assert list(tree.unflatten(td, [20, 10, 30])) == ["a", "b", "c"]
    # unorderable keys keep insertion order
    assert tree.leaves({1: "x", "a": "y"}) == ["x", "y"]


def test_ordered_and_default_dicts():
    od = collections.OrderedDict([("b", 1), ("a", 2)])
    assert tree.leaves(od) == [1, 2]  # insertion order kept
    back = tree.map(lambda v: v * 2, od)
    assert isinstance(back, collections.OrderedDict) and list(back.items()) == [("b", 2), ("a", 4)]
    dd = collections.defaultdict(list, {"b": 1, "a": 2})
    back = tree.map(lambda v: v + 1, dd)
    assert isinstance(back, collections.defaultdict) and back.default_factory is list
    assert dict(back) == {"a": 3, "b": 2}


def test_none_is_an_empty_subtree():
    assert tree.leaves(None) == []
    assert tree.leaves([None, 1, (None,)]) == [1]
    assert tree.map(lambda x: x + 1, [None, 1, {"a": None}]) == [None, 2, {"a": None}]
    assert tree.structure([None, 1]) != tree.structure([1, 1])


def test_namedtuple():
    p = Point(np.ones(2), 3.0)
    leaves, td = tree.flatten(p)
    assert len(leaves) == 2
    out = tree.unflatten(td, [1, 2])
    assert isinstance(out, Point) and out == Point(1, 2)
    paths = [tree.keystr(k) for k, _ in tree.leaves_with_path({"p": p})]
    assert paths == ["['p'].x", "['p'].y"]


def test_leaves_structure_and_is_leaf():
    t = {"a": [1, 2], "b": (3,)}
    assert tree.leaves(t) == [1, 2, 3]
    assert tree.leaves(t, is_leaf=lambda x: isinstance(x, list)) == [[1, 2], 3]
    assert repr(tree.structure(t)) == "PyTreeDef({'a': [*, *], 'b': (*,)})"
    assert tree.all_equal_structure(t, {"a": [0, 0], "b": (0,)})
    assert not tree.all_equal_structure(t, {"a": [0], "b": (0,)})
    assert hash(tree.structure(t)) == hash(tree.structure({"b": (9,), "a": [7, 8]}))


def test_map_several_trees():
    a = {"x": 1, "y": (2, 3)}
    b = {"x": 10, "y": (20, 30)}
    assert tree.map(lambda u, v: u + v, a, b) == {"x": 11, "y": (22, 33)}
    # a leaf of the first tree takes the whole subtree of the others
    assert tree.map(lambda u, v: (u, v), [1], [[2, 3]]) == [(1, [2, 3])]


def test_map_structure_mismatch_names_path():
    with pytest.raises(ValueError, match=r"\['y'\].*\(\*, \*\)"):
        tree.map(lambda u, v: u + v, {"x": 1, "y": (2, 3)}, {"x": 1, "y": (2,)})
    with pytest.raises(ValueError, match=r"\['y'\] is of type list"):
        tree.map(lambda u, v: u + v, {"x": 1, "y": (2, 3)}, {"x": 1, "y": [2, 3]})
    with pytest.raises(ValueError, match=r"<root> has structure \{'x': \*\}"):
        tree.map(lambda u, v: u + v, {"x": 1, "y": 2}, {"x": 1})


def test_flatten_with_path_and_keystr():
    t = {"layers": [{"w": 1, "b": 2}], "scale": 3}
    pl, td = tree.flatten_with_path(t)
    assert [tree.keystr(p) for p, _ in pl] == ["['layers'][0]['b']", "['layers'][0]['w']",
                                               "['scale']"]
    assert [x for _, x in pl] == tree.leaves(t)
    assert tree.keystr(()) == "<root>"
    k = pl[0][0]
    assert isinstance(k[0], tree.DictKey) and isinstance(k[1], tree.SequenceKey)


def test_map_with_path():
    t = {"w": 1.0, "b": [2.0, 3.0]}
    out = tree.map_with_path(lambda p, x: tree.keystr(p), t)
    assert out == {"w": "['w']", "b": ["['b'][0]", "['b'][1]"]}
    out = tree.map_with_path(lambda p, x, y: x + y, t, {"w": 1.0, "b": [1.0, 1.0]})
    assert out == {"w": 2.0, "b": [3.0, 4.0]}


def test_register_custom_node():
    class Linear:
        def __init__(self, w, b, name):
            self.w, self.b, self.name = w, b, name

    tree.register(Linear, lambda m: ((m.w, m.b), m.name),
                  lambda name, ch: Linear(ch[0], ch[1], name),
                  keys=lambda m, aux: [tree.AttrKey("w"), tree.AttrKey("b")])
    m = Linear(np.ones(2), np.zeros(1), "fc")
    leaves, td = tree.flatten(m)
    assert len(leaves) == 2
    m2 = tree.unflatten(td, [np.full(2, 3.0), np.ones(1)])
    assert isinstance(m2, Linear) and m2.name == "fc" and m2.w[0] == 3.0
    assert [tree.keystr(p) for p, _ in tree.leaves_with_path([m])] == ["[0].w", "[0].b"]
    # aux data is part of the structure
    assert tree.structure(m) != tree.structure(Linear(1, 2, "other"))
    # and gradients come back as the same class
    g = ff.grad(lambda m: np.sum(m.w * 2.0) + np.sum(m.b))(m)
    assert isinstance(g, Linear) and g.name == "fc"
    np.testing.assert_allclose(g.w, [2.0, 2.0])


def test_register_default_keys():
    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

    tree.register(Pair, lambda p: ((p.a, p.b), None), lambda aux, ch: Pair(*ch))
    assert [tree.keystr(p) for p, _ in tree.leaves_with_path(Pair(1, 2))] == ["[0]", "[1]"]


def test_unflatten_wrong_number_of_leaves():
    td = tree.structure({"a": 1, "b": 2})
    with pytest.raises(ValueError, match="too few leaves"):
        tree.unflatten(td, [1])
    with pytest.raises(ValueError, match="too many leaves"):
        tree.unflatten(td, [1, 2, 3])


def test_flatten_up_to_root_name():
    td = tree.structure((0, {"w": 0}))
    with pytest.raises(ValueError, match=r"args\[1\] has structure"):
        tree.flatten_up_to(td, (1, {"v": 2}), "the argument", root="args")


def test_ravel_roundtrip_and_dtypes():
    t = {"a": np.arange(3.0), "b": np.ones((2, 2), dtype=np.float32), "c": 5.0}
    v, unravel = tree.ravel(t)
    assert v.shape == (8,) and v.dtype == np.float64
    back = unravel(v)
    assert back["b"].dtype == np.float32 and back["b"].shape == (2, 2)
    np.testing.assert_allclose(back["a"], t["a"])
    with pytest.raises(ValueError, match="length 8"):
        unravel(np.ones(3))
    v32, _ = tree.ravel({"a": np.ones(2, np.float32), "n": 1})
    assert v32.dtype == np.float32  # Python scalars are weak
    assert tree.ravel({})[0].shape == (0,)


def test_ravel_is_differentiable():
    t = {"a": np.array([1.0, 2.0]), "b": np.array(3.0)}
    g = ff.grad(lambda t: np.sum(tree.ravel(t)[0] ** 2))(t)
    np.testing.assert_allclose(g["a"], [2.0, 4.0])
    np.testing.assert_allclose(g["b"], 6.0)
    v, unravel = tree.ravel(t)
    gv = ff.grad(lambda v: np.sum(unravel(v)["a"] * unravel(v)["b"]))(v)
    np.testing.assert_allclose(gv, [3.0, 3.0, 3.0])


def test_ravel_keeps_tied_arrays_tied():
    # Regression: a tied array took two entries and unravel untied it (Flux.destructure: one).
    from funcflux import nn
    w = np.arange(6.0).reshape(2, 3)
    t = {"enc": w, "dec": w, "b": np.ones(2), "s": 2.0, "s2": 2.0}
    v, unravel = tree.ravel(t)
    assert v.shape == (6 + 2 + 2,)
    back = unravel(v + 1)
    assert back["enc"] is back["dec"] and back["enc"] is not w
    np.testing.assert_array_equal(back["enc"], w + 1)
    assert back["s"] == back["s2"] == 3.0          # equal scalars are not ties
    emb = nn.Embedding(5, 3, rng=0)
    lm = nn.Chain(emb, nn.Dense.from_arrays(emb.weight))
    v, unravel = tree.ravel(lm)
    assert v.size == 15                             # the table once (the Dense has no bias)
    lm2 = unravel(v * 2)
    assert lm2[0].weight is lm2[1].weight
    # a gradient through unravel sums over the tied places
    v, unravel = tree.ravel(t)
    gv = ff.grad(lambda v: np.sum(unravel(v)["enc"]) + 2 * np.sum(unravel(v)["dec"]))(v)
    np.testing.assert_allclose(unravel(gv)["enc"], np.full((2, 3), 3.0))
    np.testing.assert_allclose(unravel(gv)["b"], 0.0)


def test_rebuilt_models_walk_as_fresh_ones():
    """A model rebuilt by unflatten walks as any other tree: None and containers at leaf
    positions are not leaves of flatten."""
    import funcflux as ff
    from funcflux import nn, optim
    model = nn.Chain(nn.Parallel(np.add, nn.GlobalMeanPool(), nn.GlobalMaxPool()), nn.Flatten(),
                     nn.Dense(3, 2, rng=0))
    leaves, td = ff.tree.flatten(model)
    assert leaves[0] is np.add and len(leaves) == 3
    g = ff.tree.unflatten(td, [None, np.ones((2, 3)), np.ones(2)])  # a gradient
    assert len(ff.tree.leaves(g)) == 2                          # None is an empty subtree
    seen = []
    ff.tree.map(lambda w, gw: seen.append(gw is None), model, g)
    assert seen == [True, False, False]                         # ... and a leaf for map
    pairs = ff.tree.unflatten(td, [(1, 2), (3, 4), (5, 6)])
    assert ff.tree.leaves(pairs) == [1, 2, 3, 4, 5, 6]          # containers are walked into
    exact = ff.tree.unflatten(td, [np.add, np.ones((2, 3)), np.ones(2)])
    assert ff.tree.leaves(exact)[0] is np.add and ff.tree.structure(exact) == td
    # The optimisers' walks along the same structure
    bn = nn.Chain(nn.Dense(2, 3, rng=0), nn.BatchNorm(3))
    state = optim.adam(0.1).init(bn)
    grads = ff.tree.map(np.ones_like, bn)
    for _ in range(2):
        updates, state = optim.adam(0.1).update(grads, state, bn)
        new = optim.apply_updates(bn, updates)
        np.testing.assert_array_equal(new.layers[1].running_mean, bn.layers[1].running_mean)
        assert not np.array_equal(new.layers[0].weight, bn.layers[0].weight)
        bn = new


def test_tree_does_not_import_functors():
    """Layer order: tree comes before functors, so tree.py never imports it (tree.at is
    written with tree's own registry)."""
    import ast
    import inspect
    src = inspect.getsource(tree)
    names = [n.module or "" for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import)
              for a in n.names]
    assert not [n for n in names if "functors" in n]
    assert ff.tree.at is ff.tree_at


def test_tree_at_on_a_model_and_namedtuple():
    from funcflux import nn
    m = nn.Chain(nn.Dense(2, 3, rng=0), nn.Dense(3, 1, rng=1))
    new = tree.at(lambda m: (m.layers[0].bias, m.layers[1]), m,
                  replace=(np.ones(3, np.float32), nn.Dense(3, 4, rng=2)))
    assert new.layers[1].weight.shape == (4, 3) and new.layers[0].bias.tolist() == [1, 1, 1]
    assert m.layers[0].bias.tolist() == [0, 0, 0]           # the input is unchanged
    p = tree.at(lambda p: p.y, Point(1, [2]), replace_fn=lambda v: v + [3])
    assert p == Point(1, [2, 3])
    with pytest.raises(ValueError, match="not a node"):
        tree.at(lambda t: 5, [1, 2], replace=0)


def test_flatten_key_and_unflattener_agree_with_flatten_and_unflatten():
    import collections
    from funcflux import nn
    Pair = collections.namedtuple("Pair", "a b")
    trees = [
        {"w": np.ones(2), "b": [np.zeros(1), (3, None)]},
        {"w": np.ones(2), "b": [np.zeros(1), (3, None), 4]},
        {"w": np.ones(2), "c": [np.zeros(1), (3, None)]},
        Pair(np.ones(1), {"x": (1.0,)}),
        nn.Chain(nn.Dense(2, 3, nn.relu, rng=0), nn.Dense(3, 1, rng=1)),
        nn.Chain(nn.Dense(2, 3, rng=0), nn.Dense(3, 1, rng=1)),  # another activation: aux
        (np.ones(3),), 5.0, None, [],
    ]
    for t in trees:
        leaves, td = ff.tree.flatten(t)
        kl, skel, auxes = ff.tree.flatten_key(t)
        assert len(kl) == len(leaves) and all(a is b for a, b in zip(kl, leaves))
        hash(skel)
        rebuilt = ff.tree.unflattener(td)(leaves)
        assert ff.tree.structure(rebuilt) == td
        assert all(a is b for a, b in zip(ff.tree.leaves(rebuilt), leaves))
    for s in trees:
        for t in trees:
            same = ff.tree.structure(s) == ff.tree.structure(t)
            _, ks, ka = ff.tree.flatten_key(s)
            _, kt, kb = ff.tree.flatten_key(t)
            assert same == (ks == kt and ka == kb), (s, t)
