"""vmap: in_axes / out_axes forms, axis_size, nesting, errors, and tree.stack/unstack."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import funcflux as ff
from tests.devices import get, put

rng = np.random.default_rng(0)


def close(a, b):
    np.testing.assert_allclose(np.asarray(get(a)), np.asarray(get(b)), rtol=1e-10, atol=1e-12)


def normal(size):
    """Random data on the session's device (``pytest --device strict``/``gpu``)."""
    return put(rng.normal(size=size))


# ----------------------------------------------------------------------------- in_axes
def test_in_axes_int():
    xs = normal((4, 3))
    close(ff.vmap(lambda x: np.sum(x * x))(xs), np.sum(xs * xs, axis=1))
    close(ff.vmap(lambda x: np.sum(x * x), in_axes=1)(xs), np.sum(xs * xs, axis=0))


def test_in_axes_negative():
    xs = normal((2, 3, 5))
    ones = put(np.ones(3))
    out = ff.vmap(lambda x: x @ ones, in_axes=-1)(xs)
    assert out.shape == (5, 2)
    close(out, np.moveaxis(xs, -1, 0) @ ones)


def test_in_axes_none_and_tuple():
    xs = normal((4, 3))
    w = normal(3)
    close(ff.vmap(lambda x, w: x @ w, in_axes=(0, None))(xs, w), xs @ w)
    close(ff.vmap(lambda x, w: x @ w, in_axes=[0, None])(xs, w), xs @ w)  # a list, as in JAX
    close(ff.vmap(lambda w, x: x @ w, in_axes=(None, 1))(w, xs.T), xs @ w)


def test_in_axes_nested_pytree_prefix():
    params = {"w": normal((3, 2)), "b": normal((5, 2))}
    xs = normal((5, 3))
    f = lambda p, x: x @ p["w"] + p["b"]
    out = ff.vmap(f, in_axes=({"w": None, "b": 0}, 0))(params, xs)
    close(out, xs @ params["w"] + params["b"])
    # a whole dict mapped at once, and a tuple argument with per-entry axes
    ps = {"w": normal((5, 3, 2)), "b": normal((5, 2))}
    close(ff.vmap(f)(ps, xs), np.einsum("bi,bij->bj", xs, ps["w"]) + ps["b"])
    pair = (normal((5, 2)), normal((2, 5)))
    close(ff.vmap(lambda t: t[0] * t[1], in_axes=((0, 1),))(pair), pair[0] * pair[1].T)


def test_namedtuple_arguments():
    P = collections.namedtuple("P", "a b")
    p = P(np.arange(3.0), np.ones(3))
    out = ff.vmap(lambda p: P(p.a * 2, p.b + p.a))(p)
    assert isinstance(out, P)
    close(out.a, 2 * np.arange(3.0))
    out = ff.vmap(lambda p: p.a * p.b, in_axes=(P(0, None),))(P(np.arange(3.0), 2.0))
    close(out, 2 * np.arange(3.0))


# ----------------------------------------------------------------------------- out_axes
def test_out_axes_int_and_negative():
    xs = normal((4, 2, 3))
    close(ff.vmap(lambda x: x * 2, out_axes=1)(xs), np.moveaxis(xs * 2, 0, 1))
    close(ff.vmap(lambda x: x * 2, out_axes=-1)(xs), np.moveaxis(xs * 2, 0, -1))
    close(ff.vmap(lambda x: x * 2, in_axes=2, out_axes=2)(xs), xs * 2)


def test_out_axes_none_for_unbatched_outputs():
    xs = normal((4, 3))
    w = put(np.arange(3.0))
    y, c = ff.vmap(lambda x: (x @ w, w * 2), out_axes=(0, None))(xs)
    close(y, xs @ w)
    close(c, w * 2)
    with pytest.raises(ValueError, match=r"out_axes is None at out\[0\].*depends on the mapped"):
        ff.vmap(lambda x: (x @ w, w), out_axes=(None, 0))(xs)


def test_out_axes_pytree_and_broadcast_of_unbatched():
    xs = normal((4, 3))
    out = ff.vmap(lambda x: {"a": x, "b": np.ones(2)}, out_axes={"a": 1, "b": 0})(xs)
    close(out["a"], xs.T)
    close(out["b"], np.ones((4, 2)))  # an unbatched output is repeated along the batch axis


def test_axis_size_with_all_none():
    out = ff.vmap(lambda w: w * 2.0, in_axes=None, axis_size=3)(np.ones(2))
    close(out, np.full((3, 2), 2.0))
    with pytest.raises(ValueError, match="axis_size"):
        ff.vmap(lambda w: w, in_axes=None)(np.ones(2))
    with pytest.raises(ValueError, match="axis_size=5"):
        ff.vmap(lambda x: x, axis_size=5)(np.ones(3))


# ----------------------------------------------------------------------------- nesting
def test_nested_vmap_pairwise_distances():
    a = normal((4, 3))
    b = normal((5, 3))
    dist = lambda x, y: np.sqrt(np.sum((x - y) ** 2))
    D = ff.vmap(lambda x: ff.vmap(lambda y: dist(x, y))(b))(a)
    want = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    assert D.shape == (4, 5)
    close(D, want)
    D2 = ff.vmap(ff.vmap(dist, in_axes=(None, 0)), in_axes=(0, None))(a, b)
    close(D2, want)


def test_vmap_matches_python_loop_with_matmul_and_reductions():
    W = normal((3, 4))
    xs = normal((6, 3))
    f = lambda x: np.max(np.tanh(x @ W)) + np.mean(x.reshape(3, 1) * 2.0)
    close(ff.vmap(f)(xs), np.stack([f(x) for x in xs]))


def test_vmap_per_example_gradients():
    W = normal((3,))
    xs, ys = normal((5, 3)), normal(5)
    loss = lambda w, x, y: (np.tanh(x @ w) - y) ** 2
    g = ff.vmap(ff.grad(loss), in_axes=(None, 0, 0))(W, xs, ys)
    close(g, np.stack([ff.grad(loss)(W, x, y) for x, y in zip(xs, ys)]))


# ----------------------------------------------------------------------------- errors
def test_inconsistent_sizes_names_paths():
    with pytest.raises(ValueError) as e:
        ff.vmap(lambda x, p: x + p["w"])(np.ones(3), {"w": np.ones(4)})
    msg = str(e.value)
    assert "args[0] has size 3" in msg and "args[1]['w'] has size 4" in msg


def test_in_axes_structure_mismatch_names_path():
    f = lambda x, p: x + p["w"]
    with pytest.raises(ValueError, match=r"args\[1\].*\{'b': \*, 'w': \*\}"):
        ff.vmap(f, in_axes=(0, {"w": 0, "b": 0}))(np.ones(3), {"w": np.ones(3)})
    with pytest.raises(ValueError, match=r"args\[1\]\['w'\]"):
        ff.vmap(f, in_axes=(0, {"w": (0,)}))(np.ones(3), {"w": np.ones(3)})
    with pytest.raises(ValueError, match="one entry per positional argument"):
        ff.vmap(f, in_axes=(0,))(np.ones(3), {"w": np.ones(3)})


def test_axis_out_of_range_names_path():
    with pytest.raises(ValueError, match=r"in_axes 1 is out of range.*args\[1\]\['w'\].*\(3,\)"):
        ff.vmap(lambda x, p: x + p["w"], in_axes=(0, {"w": 1}))(np.ones(3), {"w": np.ones(3)})
    with pytest.raises(ValueError, match=r"out_axes 2 is out of range.*out"):
        ff.vmap(lambda x: x, out_axes=2)(np.ones(3))


def test_control_flow_on_batched_value():
    def f(x):
        if x > 0:
            return x
        return -x
    with pytest.raises(TypeError, match=r"vmap.*np\.where"):
        ff.vmap(f)(np.array([1.0, -1.0]))
    with pytest.raises(TypeError, match=r"vmap.*np\.where"):
        ff.vmap(ff.grad(f))(np.array([1.0, -1.0]))
    with pytest.raises(TypeError, match=r"vmap"):
        ff.vmap(lambda x: float(x))(np.array([1.0, -1.0]))
    # the fix the message suggests
    close(ff.vmap(lambda x: np.where(x > 0, x, -x))(np.array([1.0, -2.0])), [1.0, 2.0])


def test_control_flow_on_unbatched_value_is_fine():
    w = np.array(2.0)
    out = ff.vmap(lambda x, w: x * w if w > 0 else -x, in_axes=(0, None))(np.ones(3), w)
    close(out, np.full(3, 2.0))


# ----------------------------------------------------------------------------- stack / unstack
def test_tree_stack_unstack_roundtrip():
    trees = [{"w": normal((2, 3)), "b": (normal(3), None)} for _ in range(4)]
    st = ff.tree.stack(trees)
    assert st["w"].shape == (4, 2, 3) and st["b"][0].shape == (4, 3) and st["b"][1] is None
    back = ff.tree.unstack(st)
    assert len(back) == 4
    for t, u in zip(trees, back):
        close(t["w"], u["w"])
        close(t["b"][0], u["b"][0])
    st1 = ff.tree.stack(trees, axis=1)
    assert st1["w"].shape == (2, 4, 3)
    close(ff.tree.unstack(st1, axis=1)[2]["w"], trees[2]["w"])
    close(ff.tree.unstack({"w": st["w"]}, axis=-3)[1]["w"], trees[1]["w"])


def test_tree_stack_for_ensembles_with_vmap():
    models = [{"w": normal(3), "b": normal(())} for _ in range(5)]
    ens = ff.tree.stack(models)
    x = normal(3)
    f = lambda m, x: np.tanh(x @ m["w"] + m["b"])
    close(ff.vmap(f, in_axes=(0, None))(ens, x), [f(m, x) for m in models])
    # gradients of a stacked ensemble, differentiated through stack itself
    g = ff.grad(lambda ms: np.sum(ff.vmap(f, in_axes=(0, None))(ff.tree.stack(ms), x)))(models)
    for m, gm in zip(models, g):
        close(gm["w"], ff.grad(f)(m, x)["w"])


def test_tree_stack_errors():
    with pytest.raises(ValueError, match=r"tree 1.*\['b'\]|tree 1"):
        ff.tree.stack([{"w": np.ones(2)}, {"w": np.ones(2), "b": np.ones(1)}])
    with pytest.raises(ValueError):
        ff.tree.stack([{"w": np.ones(2)}, {"w": np.ones(3)}])
    with pytest.raises(ValueError, match="at least one"):
        ff.tree.stack([])
    with pytest.raises(ValueError, match=r"\['b'\] has 3"):
        ff.tree.unstack({"w": np.ones((2, 1)), "b": np.ones(3)})


def test_vmap_outputs_are_writable_arrays_that_do_not_alias_inputs():
    """vmap of grad where a gradient does not depend on the mapped input (an unbatched
    output) used to hand back a read-only broadcast view; an input returned as it is
    aliased the user's array."""
    w, xs = np.ones(3), np.arange(12.0).reshape(4, 3)
    g = ff.vmap(ff.grad(lambda w, x: np.sum(w)), in_axes=(None, 0))(w, xs)
    assert g.shape == (4, 3) and g.flags.writeable
    g *= 2.0
    np.testing.assert_array_equal(g, 2.0 * np.ones((4, 3)))
    same = ff.vmap(lambda x: x)(xs)
    assert same.flags.writeable and not np.shares_memory(same, xs)
    const = ff.vmap(lambda x: 1.0, axis_size=3)(xs[:3])
    assert const.flags.writeable
