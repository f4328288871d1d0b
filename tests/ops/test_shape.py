"""Shape functions: NumPy signatures and errors, and exact Jacobians of the linear ops."""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp


def traced(f, *args):
    """``f(*args)`` computed on tracers (the value of ``vjp``), not by plain NumPy."""
    return ff.vjp(f, *args)[0]


A = np.arange(24.0).reshape(2, 3, 4)
M = np.arange(12.0).reshape(3, 4)
V = np.arange(5.0)

# Every case is a linear map of its input: its Jacobian is NumPy's f applied to basis vectors.
LINEAR = {
    "reshape": (lambda x: np.reshape(x, (4, -1)), A),
    "ravel": (np.ravel, A),
    "transpose": (lambda x: np.transpose(x, (2, 0, 1)), A),
    "swapaxes": (lambda x: np.swapaxes(x, -1, 0), A),
    "moveaxis": (lambda x: np.moveaxis(x, (0, -1), (1, 0)), A),
    "expand_dims": (lambda x: np.expand_dims(x, (0, -1)), M),
    "squeeze": (lambda x: np.squeeze(x, axis=1), A[:, :1]),
    "broadcast_to": (lambda x: np.broadcast_to(x, (2, 3, 4)), M[:1]),
    "atleast_3d": (np.atleast_3d, V),
    "concatenate": (lambda x: np.concatenate([x, 2 * x[:1]], axis=0), M),
    "concatenate-none": (lambda x: np.concatenate([x, x[0]], axis=None), M),
    "stack": (lambda x: np.stack([x, -x], axis=-1), M),
    "hstack": (lambda x: np.hstack([x, x[:, :2]]), M),
    "vstack": (lambda x: np.vstack([x[0], x]), M),
    "dstack": (lambda x: np.dstack([x, x]), M),
    "column_stack": (lambda x: np.column_stack([x[0], x[1:].T]), M),
    "split": (lambda x: np.split(x, 2, axis=-1)[1], M),
    "array_split": (lambda x: np.array_split(x, 3, axis=1)[0], M),
    "tile": (lambda x: np.tile(x, (2, 1, 2)), M),
    "repeat": (lambda x: np.repeat(x, 2, axis=0), M),
    "repeat-none": (lambda x: np.repeat(x, 3), M[:2]),
    "repeat-counts": (lambda x: np.repeat(x, [2, 0, 1, 3], axis=-1), M),
    "flip": (lambda x: np.flip(x, (0, -1)), A),
    "fliplr": (np.fliplr, M),
    "flipud": (np.flipud, M),
    "roll": (lambda x: np.roll(x, (1, -1, 5), axis=(0, 2, 2)), A),
    "roll-none": (lambda x: np.roll(x, 7), M),
    "rot90": (lambda x: np.rot90(x, 3, axes=(1, 2)), A),
    "pad": (lambda x: np.pad(x, ((1, 0), (0, 2))), M),
    "pad-edge": (lambda x: np.pad(x, 3, mode="edge"), M),
    "pad-reflect": (lambda x: np.pad(x, (7, 6), mode="reflect"), V),
    "pad-symmetric": (lambda x: np.pad(x, ((2, 3), (5, 1)), mode="symmetric"), M),
    "pad-wrap": (lambda x: np.pad(x, (6, 9), mode="wrap"), V),
    "rollaxis": (lambda x: np.rollaxis(x, -1, 1), A),
    "rollaxis-end": (lambda x: np.rollaxis(x, 0, 3), A),
    "append": (lambda x: np.append(x, x[0] * 2), M),
    "append-axis": (lambda x: np.append(x, x[:, :1], axis=-1), M),
    "append-constant": (lambda x: np.append(x, [[0.0, 0.0, 0.0, 0.0]], axis=0), M),
    "hsplit": (lambda x: np.hsplit(x, [1, 3])[1], M),
    "hsplit-1d": (lambda x: np.hsplit(x, [2])[1], V),
    "vsplit": (lambda x: np.vsplit(x, 3)[2], M),
    "dsplit": (lambda x: np.dsplit(x, 2)[1], A),
}


def _numpy_jacobian(f, x):
    cols = [np.ravel(f(e.reshape(x.shape))) for e in np.eye(x.size)]
    return np.stack(cols, axis=-1).reshape(np.shape(f(x)) + x.shape)


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_ops_match_numpy_with_exact_jacobians(name):
    f, x = LINEAR[name]
    out = traced(f, x)
    want = f(x)
    assert out.shape == want.shape
    np.testing.assert_array_equal(out, want)
    jac = _numpy_jacobian(f, x)
    np.testing.assert_array_equal(ff.jacrev(f)(x), jac)
    np.testing.assert_array_equal(ff.jacfwd(f)(x), jac)


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_ops_under_vmap(name):
    f, x = LINEAR[name]
    xs = np.stack([x, 2 * x + 1, -x], axis=-1)
    got = ff.vmap(f, in_axes=-1)(xs)
    np.testing.assert_array_equal(got, np.stack([f(xs[..., i]) for i in range(3)]))


# ----------------------------------------------------------------------------- pad
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric", "wrap"])
@pytest.mark.parametrize("width", [0, 1, ((2, 0), (1, 3)), ((5, 4), (0, 9))])
def test_pad_modes_match_numpy(mode, width):
    x = np.arange(1.0, 7.0).reshape(2, 3)
    np.testing.assert_array_equal(traced(lambda v: np.pad(v, width, mode=mode), x),
                                  np.pad(x, width, mode=mode))


def test_pad_constant_values_and_float32():
    x = np.ones((2, 2), dtype=np.float32)
    f = lambda v: np.pad(v, ((1, 0), (0, 2)), constant_values=((1, 2), (3, 4)))
    out, pull = ff.vjp(f, x)
    np.testing.assert_array_equal(out, f(x))
    assert out.dtype == np.float32 and pull(np.ones_like(out))[0].dtype == np.float32
    np.testing.assert_array_equal(pull(np.ones_like(out))[0], np.ones((2, 2)))


def test_pad_errors():
    x = np.ones((2, 3))
    with pytest.raises(NotImplementedError, match="'linear_ramp'"):
        ff.grad(lambda v: np.sum(np.pad(v, 1, mode="linear_ramp")))(x)
    with pytest.raises(NotImplementedError, match="reflect_type='odd'"):
        ff.grad(lambda v: np.sum(np.pad(v, 1, mode="reflect", reflect_type="odd")))(x)
    with pytest.raises(ValueError, match="negative"):
        ff.grad(lambda v: np.sum(np.pad(v, -1)))(x)
    with pytest.raises(TypeError, match="integral"):
        ff.grad(lambda v: np.sum(np.pad(v, 1.5)))(x)
    with pytest.raises(TypeError, match="concrete"):
        ff.grad(lambda v: np.sum(np.pad(v, 1, constant_values=v[0, 0])))(x)
    with pytest.raises(ValueError, match="unsupported keyword"):
        ff.grad(lambda v: np.sum(np.pad(v, 1, stat_length=2)))(x)


# ----------------------------------------------------------------------------- numpy signatures
def test_reshape_infers_and_refuses():
    assert traced(lambda v: v.reshape(-1, 6), A).shape == (4, 6)
    assert traced(lambda v: np.reshape(v, 24), A).shape == (24,)
    with pytest.raises(ValueError, match="cannot reshape"):
        ff.grad(lambda v: np.sum(np.reshape(v, (5, -1))))(A)
    with pytest.raises(ValueError, match="cannot reshape"):
        ff.grad(lambda v: np.sum(np.reshape(v, (-1, -1))))(A)
    with pytest.raises(NotImplementedError, match="order='C'"):
        ff.grad(lambda v: np.sum(np.reshape(v, -1, order="F")))(A)


def test_axis_errors():
    with pytest.raises(np.exceptions.AxisError, match="out of bounds"):
        ff.grad(lambda v: np.sum(np.flip(v, 3)))(A)
    with pytest.raises(np.exceptions.AxisError):
        ff.grad(lambda v: np.sum(np.expand_dims(v, 4)))(A)
    with pytest.raises(np.exceptions.AxisError):
        ff.grad(lambda v: np.sum(np.concatenate([v, v], axis=-4)))(A)
    with pytest.raises(np.exceptions.AxisError):
        ff.grad(lambda v: np.sum(np.roll(v, 1, axis=5)))(A)
    with pytest.raises(ValueError, match="repeated axis"):
        ff.grad(lambda v: np.sum(np.transpose(v, (0, 0, 1))))(A)
    with pytest.raises(ValueError, match="axes don't match"):
        ff.grad(lambda v: np.sum(np.transpose(v, (0, 1))))(A)
    with pytest.raises(ValueError, match="same number"):
        ff.grad(lambda v: np.sum(np.moveaxis(v, (0, 1), 2)))(A)
    with pytest.raises(ValueError, match="size not equal to one"):
        ff.grad(lambda v: np.sum(np.squeeze(v, 0)))(A)


def test_join_and_split_errors():
    with pytest.raises(ValueError, match="zero-dimensional"):
        ff.grad(lambda v: np.sum(np.concatenate([v, v])))(1.0)
    with pytest.raises(ValueError, match="same shape"):
        ff.grad(lambda v: np.sum(np.stack([v, v[:1]])))(V)
    with pytest.raises(TypeError, match="out="):
        ff.grad(lambda v: np.sum(np.concatenate([v, v], out=np.zeros(10))))(V)
    with pytest.raises(ValueError, match="equal division"):
        ff.grad(lambda v: np.sum(np.split(v, 2)[0]))(V)
    with pytest.raises(ValueError, match="larger than 0"):
        ff.grad(lambda v: np.sum(np.array_split(v, 0)[0]))(V)
    with pytest.raises(ValueError, match="negative"):
        ff.grad(lambda v: np.sum(np.repeat(v, -1)))(V)
    with pytest.raises(ValueError, match="broadcast"):
        ff.grad(lambda v: np.sum(np.repeat(v, [1, 2])))(V)
    with pytest.raises(ValueError, match="2-d"):
        ff.grad(lambda v: np.sum(np.fliplr(v)))(V)


def test_split_pieces_match_numpy():
    for spec in (3, [1, 4], [2, 2, 10], [-2]):
        got = traced(lambda v: tuple(np.array_split(v, spec, axis=1)), np.arange(30.0).reshape(3, 10))
        want = np.array_split(np.arange(30.0).reshape(3, 10), spec, axis=1)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_split_gradient_accumulates_pieces():
    g = ff.grad(lambda v: sum(np.sum(p) * (i + 1) for i, p in enumerate(np.split(v, [2, 3]))))(V)
    np.testing.assert_array_equal(g, [1, 1, 2, 3, 3])


@pytest.mark.parametrize("fn", [np.atleast_1d, np.atleast_2d, np.atleast_3d])
@pytest.mark.parametrize("x", [np.float64(2.0), V, M, A])
def test_atleast(fn, x):
    x = np.asarray(x)
    assert traced(fn, x).shape == fn(x).shape
    both = traced(lambda v: fn(v, v), x)
    assert isinstance(both, tuple) and both[1].shape == fn(x).shape


def test_broadcast_arrays():
    a, b = traced(lambda x, y: np.broadcast_arrays(x, y), M[:, :1], V[:4])
    assert a.shape == b.shape == (3, 4)
    with pytest.raises(ValueError):
        ff.grad(lambda v: np.sum(np.broadcast_to(v, (2, 4))))(V[:3])


def test_hstack_vstack_column_stack_shapes():
    for f in (np.hstack, np.vstack, np.column_stack, np.dstack):
        for parts in ((V, V), (M, M), (V[:3], M[:, :2]) if f in (np.column_stack, np.hstack) else (M, M)):
            if f is np.hstack and parts[0].ndim != parts[1].ndim:
                continue
            np.testing.assert_array_equal(traced(lambda x, y: f([x, y]), *parts), f(list(parts)))


def test_concatenate_dtype_and_mixed_inputs():
    x32 = np.ones(2, dtype=np.float32)
    out, pull = ff.vjp(lambda v: np.concatenate([v, np.zeros(3)]), x32)
    assert out.dtype == np.float64
    assert pull(np.arange(5.0))[0].dtype == np.float32
    assert traced(lambda v: np.concatenate([v, v], dtype=np.float32), V).dtype == np.float32


def test_concatenate_jvp_of_one_argument():
    # Regression: the tangent of one piece sits among zeros, not among the other primals.
    f = lambda x, y: np.concatenate([x, y])
    _, t = ff.jvp(f, (V, 10 + V), (np.ones(5), np.zeros(5)))
    np.testing.assert_array_equal(t, [1] * 5 + [0] * 5)
    _, t = ff.jvp(lambda x: f(x, 10 + V), (V,), (np.ones(5),))
    np.testing.assert_array_equal(t, [1] * 5 + [0] * 5)


def test_roll_and_rot90_match_numpy():
    for shift, axis in ((3, None), (-1, 0), ((1, 2), (0, 1)), ((1, 1), (1, 1)), (0, 1), (4, 1)):
        np.testing.assert_array_equal(traced(lambda v: np.roll(v, shift, axis), M), np.roll(M, shift, axis))
    for k in range(-2, 6):
        for axes in ((0, 1), (1, 0), (2, 0), (-1, -2)):
            np.testing.assert_array_equal(traced(lambda v: np.rot90(v, k, axes), A), np.rot90(A, k, axes))
    with pytest.raises(ValueError, match="different"):
        ff.grad(lambda v: np.sum(np.rot90(v, 1, (1, 1))))(A)


def test_flip_of_scalar_and_axis_none():
    assert float(traced(np.flip, np.float64(3.0))) == 3.0
    np.testing.assert_array_equal(traced(np.flip, A), np.flip(A))


def test_tile_and_repeat_match_numpy():
    for reps in (1, 3, (2,), (2, 1), (1, 2, 3), (0, 2)):
        np.testing.assert_array_equal(traced(lambda v: np.tile(v, reps), M), np.tile(M, reps))
    for reps, axis in ((2, None), (0, 0), ([1], 1), ([0, 1, 2], 0), (np.array([3, 0, 0, 1]), -1)):
        np.testing.assert_array_equal(traced(lambda v: np.repeat(v, reps, axis), M),
                                      np.repeat(M, reps, axis))


def test_tracer_shape_methods():
    f = lambda v: v.reshape((4, 6)).T.swapaxes(0, 1).ravel().repeat(2).squeeze()
    np.testing.assert_array_equal(traced(f, A), f(A))
    np.testing.assert_array_equal(traced(lambda v: v.transpose(1, 0, 2).flatten(), A),
                                  A.transpose(1, 0, 2).flatten())


def test_shape_functions_accept_plain_arrays():
    np.testing.assert_array_equal(fnp.pad(M, 1, mode="reflect"), np.pad(M, 1, mode="reflect"))
    np.testing.assert_array_equal(fnp.roll(M, 1, 1), np.roll(M, 1, 1))
    np.testing.assert_array_equal(fnp.tile([1, 2], 2), np.tile([1, 2], 2))
    np.testing.assert_array_equal(fnp.repeat(M, [1, 2, 0], axis=0), np.repeat(M, [1, 2, 0], axis=0))


def test_rollaxis_and_splits_match_numpy_and_their_errors():
    for axis, start in [(0, 0), (2, 0), (1, 3), (-1, -2), (0, 2)]:
        assert traced(lambda x, a=axis, s=start: np.rollaxis(x, a, s), A).shape == \
            np.rollaxis(A, axis, start).shape
    with pytest.raises(np.exceptions.AxisError, match="'start' arg requires"):
        ff.grad(lambda x: np.sum(np.rollaxis(x, 0, 5)))(A)
    with pytest.raises(ValueError, match="hsplit only works on arrays of 1 or more dimensions"):
        ff.grad(lambda x: np.sum(np.hsplit(x, 1)[0]))(2.0)
    with pytest.raises(ValueError, match="vsplit only works on arrays of 2 or more dimensions"):
        ff.grad(lambda x: np.sum(np.vsplit(x, 1)[0]))(V)
    with pytest.raises(ValueError, match="dsplit only works on arrays of 3 or more dimensions"):
        ff.grad(lambda x: np.sum(np.dsplit(x, 1)[0]))(M)
    with pytest.raises(ValueError, match="equal division"):
        ff.grad(lambda x: np.sum(np.hsplit(x, 3)[0]))(M)
    assert len(traced(lambda x: np.vsplit(x, [1]), M)) == 2
