"""ff.tree.transpose and ff.tree.reduce (JAX's jax.tree.transpose / jax.tree.reduce)."""
from __future__ import annotations

import collections
import operator

import numpy as np
import pytest

import funcflux as ff


def test_reduce():
    t = {"a": 1, "b": (2, 3), "c": None, "d": [4]}
    assert ff.tree.reduce(operator.add, t) == 10
    assert ff.tree.reduce(operator.add, t, initializer=100) == 110
    assert ff.tree.reduce(lambda acc, x: acc + [x], t, initializer=[]) == [1, 2, 3, 4]
    assert ff.tree.reduce(max, [], initializer=-1) == -1
    assert ff.tree.reduce(operator.add, 5) == 5
    # is_leaf stops the walk: tuples count as leaves here
    assert ff.tree.reduce(lambda a, b: a + len(b), {"x": (1, 2), "y": (3,)}, initializer=0,
                          is_leaf=lambda x: isinstance(x, tuple)) == 3
    arrays = {"w": np.ones((2, 2)), "b": np.arange(3.0)}
    assert ff.tree.reduce(lambda a, x: a + np.sum(x), arrays, initializer=0.0) == 7.0
    with pytest.raises(TypeError, match="no leaf and no initializer"):
        ff.tree.reduce(operator.add, {"a": None})


def test_reduce_under_grad():
    g = ff.grad(lambda p: ff.tree.reduce(lambda a, x: a + np.sum(x ** 2), p, initializer=0.0))
    p = {"w": np.array([1.0, 2.0]), "b": np.array(3.0)}
    out = g(p)
    np.testing.assert_allclose(out["w"], [2.0, 4.0])
    np.testing.assert_allclose(out["b"], 6.0)


def test_transpose():
    outer = ff.tree.structure([0, 0, 0])
    inner = ff.tree.structure({"x": 0, "y": (0, 0)})
    t = [{"x": i, "y": (10 * i, 100 * i)} for i in range(3)]
    out = ff.tree.transpose(outer, inner, t)
    assert out == {"x": [0, 1, 2], "y": ([0, 10, 20], [0, 100, 200])}
    # and back
    assert ff.tree.transpose(inner, outer, out) == t
    # inner_treedef=None: the first inner tree's structure
    assert ff.tree.transpose(outer, None, t) == out
    P = collections.namedtuple("P", "a b")
    got = ff.tree.transpose(ff.tree.structure(P(0, 0)), ff.tree.structure((0, 0)),
                            P((1, 2), (3, 4)))
    assert got == (P(1, 3), P(2, 4))


def test_transpose_errors():
    outer = ff.tree.structure([0, 0])
    inner = ff.tree.structure((0, 0))
    with pytest.raises(ValueError, match=r"inner tree 1 .* has structure PyTreeDef\(\(\*, \*, \*\)\)"):
        ff.tree.transpose(outer, inner, [(1, 2), (1, 2, 3)])
    with pytest.raises(ValueError, match="tree.transpose's pytree"):
        ff.tree.transpose(outer, inner, ((1, 2), (3, 4)))
    with pytest.raises(ValueError, match="cannot be inferred"):
        ff.tree.transpose(ff.tree.structure([]), None, [])
