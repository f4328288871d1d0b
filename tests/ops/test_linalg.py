"""Hand-written tests for the linear-algebra family: shapes, NumPy semantics, errors.

The spec sweep (specs_linalg.py) checks every rule numerically; these cover what a
table cannot: every matmul rank pairing against NumPy, vmap on each operand,
einsum subscript forms, results that are pairs, and the error messages.
"""
from __future__ import annotations

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp
from funcflux.test_util import check_grads

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.uniform(-1.0, 1.0, shape)


def gen(n, *lead):
    """A nonsymmetric, well-conditioned matrix (stack)."""
    return rand(*lead, n, n) + 2 * n * np.eye(n)


def spd(n, *lead):
    x = rand(*lead, n, n)
    return x @ np.swapaxes(x, -1, -2) + n * np.eye(n)


# matmul: (x shape, y shape) for every rank pairing, with broadcasting of leading axes.
MATMUL_SHAPES = [
    ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
    ((5, 2, 3), (3,)), ((3,), (5, 3, 4)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)), ((1, 2, 3), (5, 3, 4)), ((6, 1, 2, 3), (5, 3, 4)),
    ((5, 2, 3), (6, 1, 3, 4)),
]


@pytest.mark.parametrize("sx,sy", MATMUL_SHAPES, ids=str)
def test_matmul_values_and_grads(sx, sy):
    x, y = rand(*sx), rand(*sy)
    out, _ = ff.vjp(lambda a, b: a @ b, x, y)
    np.testing.assert_allclose(out, x @ y, rtol=1e-12)
    check_grads(lambda a, b: np.matmul(a, b), (x, y), order=2)


@pytest.mark.parametrize("sx,sy", MATMUL_SHAPES, ids=str)
@pytest.mark.parametrize("which", ["x", "y", "both"])
def test_matmul_vmap_matches_loop(sx, sy, which):
    n = 3
    xs, ys = rand(n, *sx), rand(n, *sy)
    for ax in range(len(sx) + 1):
        in_x = ax if which in ("x", "both") else None
        in_y = (len(sy) - ax % (len(sy) + 1)) % (len(sy) + 1) if which in ("y", "both") else None
        bx = np.moveaxis(xs, 0, in_x) if in_x is not None else xs[0]
        by = np.moveaxis(ys, 0, in_y) if in_y is not None else ys[0]
        got = ff.vmap(lambda a, b: a @ b, in_axes=(in_x, in_y))(bx, by)
        want = np.stack([(xs[i] if in_x is not None else xs[0]) @
                         (ys[i] if in_y is not None else ys[0]) for i in range(n)])
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"in_axes={(in_x, in_y)}")
        # and the batched backward pass
        g = ff.grad(lambda a, b: np.sum(np.tanh(a @ b)), argnums=(0, 1))
        got_g = ff.vmap(g, in_axes=(in_x, in_y))(bx, by)
        for k, (gb, in_k) in enumerate(zip(got_g, (in_x, in_y))):
            want_k = np.stack([g(xs[i] if in_x is not None else xs[0],
                                 ys[i] if in_y is not None else ys[0])[k] for i in range(n)])
            np.testing.assert_allclose(gb, want_k, rtol=1e-10, atol=1e-12)


def test_matmul_of_0d_raises_like_numpy():
    x = np.ones(3)
    with pytest.raises(ValueError, match="does not have enough dimensions"):
        ff.grad(lambda s: np.sum(np.matmul(s, x)))(2.0)
    with pytest.raises(ValueError, match="operand 1 does not have enough dimensions"):
        ff.grad(lambda v: np.sum(v @ np.float64(2.0)))(x)
    with pytest.raises(ValueError, match="does not have enough dimensions"):
        fnp.matmul(np.float64(1.0), x)


def test_matmul_shape_mismatch_raises():
    with pytest.raises(ValueError, match="mismatch"):
        ff.grad(lambda a: np.sum(a @ np.ones(4)))(np.ones((2, 3)))


def test_matmul_float32_cotangent_with_float64_partner():
    x32 = rand(2, 3).astype(np.float32)
    g = ff.grad(lambda a: np.sum(a @ np.ones(3)))(x32)
    assert g.dtype == np.float32


# ----------------------------------------------------------------------------- dot & co
DOT_SHAPES = [((), (2, 3)), ((3,), ()), ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)),
              ((2, 3), (3, 4)), ((5, 2, 3), (3,)), ((3,), (5, 3, 4)), ((5, 2, 3), (3, 4)),
              ((2, 3), (5, 3, 4)), ((5, 2, 3), (6, 3, 4))]


@pytest.mark.parametrize("sx,sy", DOT_SHAPES, ids=str)
def test_dot_matches_numpy(sx, sy):
    x, y = rand(*sx), rand(*sy)
    out, _ = ff.vjp(np.dot, x, y)
    np.testing.assert_allclose(out, np.dot(x, y), rtol=1e-12)
    check_grads(np.dot, (x, y), order=1)


def test_dot_method_on_traced_value():
    x, y = rand(2, 3), rand(3, 4)
    g = ff.grad(lambda a: np.sum(a.dot(y)))(x)
    np.testing.assert_allclose(g, np.ones((2, 4)) @ y.T)


@pytest.mark.parametrize("sx,sy", [((), (3,)), ((3,), (3,)), ((2, 3), (3,)), ((2, 3), (4, 3)),
                                   ((5, 2, 3), (4, 3)), ((3,), (5, 4, 3))], ids=str)
def test_inner_matches_numpy(sx, sy):
    x, y = rand(*sx), rand(*sy)
    out, _ = ff.vjp(np.inner, x, y)
    np.testing.assert_allclose(out, np.inner(x, y), rtol=1e-12)
    check_grads(np.inner, (x, y), order=1)


@pytest.mark.parametrize("axes,sy", [(0, (2, 5)), (1, (2, 5)), (2, (4, 2, 5)),
                                     (([1], [0]), (4, 5)), (([0, 2], [2, 1]), (2, 2, 3)),
                                     (((-1,), (-3,)), (2, 4, 3))], ids=str)
def test_tensordot_matches_numpy(axes, sy):
    x, y = rand(3, 4, 2), rand(*sy)
    f = lambda a, b: np.tensordot(a, b, axes=axes)
    out, _ = ff.vjp(f, x, y)
    np.testing.assert_allclose(out, np.tensordot(x, y, axes=axes), rtol=1e-12)
    check_grads(f, (x, y), order=1)


def test_tensordot_shape_mismatch():
    with pytest.raises(ValueError, match="shape-mismatch"):
        fnp.tensordot(np.ones((2, 3)), np.ones((4, 5)), axes=1)


def test_vdot_outer_kron_cross_values():
    x, y = rand(2, 3), rand(3, 2)
    assert np.allclose(fnp.vdot(x, y), np.vdot(x, y))
    assert np.allclose(fnp.outer(x, y), np.outer(x, y))
    for sa, sb in [((2, 3), (4, 1)), ((3,), (2, 2)), ((2, 1, 3), (2, 2)), ((), (3,))]:
        a, b = rand(*sa), rand(*sb)
        np.testing.assert_allclose(fnp.kron(a, b), np.kron(a, b))
    a, b = rand(4, 3), rand(3)
    np.testing.assert_allclose(fnp.cross(a, b), np.cross(a, b))
    a, b = rand(3, 4), rand(4, 3)
    np.testing.assert_allclose(fnp.cross(a, b, axisa=0, axisc=0),
                               np.cross(a, b, axisa=0, axisc=0))
    check_grads(np.cross, (rand(2, 3), rand(2, 3)), order=2)


# ----------------------------------------------------------------------------- einsum
EINSUM_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ba", [(2, 3)]),
    ("Ba", [(2, 3)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("iij->j", [(3, 3, 2)]),
    ("iji->ij", [(3, 2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij->j", [(2, 3)]),
    ("i,i", [(3,), (3,)]),
    ("i,j->ij", [(3,), (2,)]),
    ("...ij,...jk->...ik", [(5, 1, 2, 3), (4, 3, 2)]),
    ("...ii->...i", [(2, 3, 3)]),
    ("ij...", [(2, 3, 4)]),
    ("i...->...", [(2, 3, 4)]),
    ("ai,ai->i", [(1, 3), (4, 3)]),
    ("ai,bi->ab", [(1, 3), (4, 3)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("i,i,i->", [(3,), (3,), (3,)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("iij,jk->ik", [(3, 3, 2), (2, 4)]),
    (",ij->ij", [(), (2, 3)]),
]


@pytest.mark.parametrize("subs,shapes", EINSUM_CASES, ids=[c[0] for c in EINSUM_CASES])
def test_einsum_values_grads_vmap(subs, shapes):
    ops = [rand(*s) for s in shapes]
    f = lambda *a: np.einsum(subs, *a)
    out, _ = ff.vjp(f, *ops)
    np.testing.assert_allclose(out, np.einsum(subs, *ops), rtol=1e-12)
    check_grads(f, tuple(ops), order=2)
    # vmap over the last axis of the first operand (a fresh letter in the batched einsum)
    n = 2
    batch = [rand(*shapes[0], n)] + ops[1:]
    got = ff.vmap(f, in_axes=(-1,) + (None,) * (len(ops) - 1))(*batch)
    want = np.stack([np.einsum(subs, batch[0][..., i], *ops[1:]) for i in range(n)])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_einsum_sublist_form_and_dtype():
    x, y = rand(2, 3), rand(3, 4)
    np.testing.assert_allclose(fnp.einsum(x, [0, 1], y, [1, 2], [0, 2]), x @ y)
    np.testing.assert_allclose(fnp.einsum(x, [Ellipsis, 1], y, [1, 2]), x @ y)
    g = ff.grad(lambda a: np.sum(np.einsum("ij,jk->ik", a, y)))(x.astype(np.float32))
    assert g.dtype == np.float32


def test_einsum_errors_like_numpy():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="no '...' ellipsis"):
        fnp.einsum("...i,...i->i", x, x)
    with pytest.raises(ValueError, match="more operands"):
        fnp.einsum("ij", x, x)
    with pytest.raises(ValueError, match="never appears"):
        fnp.einsum("ij->k", x)
    with pytest.raises(ValueError, match="name"):
        fnp.einsum("ijk", x)
    with pytest.raises(TypeError, match="out="):
        fnp.einsum("ij", x, out=np.empty((2, 3)))


def test_einsum_second_order_through_diagonal():
    # hessian of sum(diag(A)**3) = 6 * diag(A) on the (i,i,i,i) entries
    a = rand(3, 3)
    h = ff.hessian(lambda m: np.sum(np.einsum("ii->i", m) ** 3))(a)
    want = np.zeros((3, 3, 3, 3))
    for i in range(3):
        want[i, i, i, i] = 6 * a[i, i]
    np.testing.assert_allclose(h, want, atol=1e-12)


# ----------------------------------------------------------------------------- numpy.linalg
def test_linalg_namespace():
    for name in ["inv", "det", "slogdet", "solve", "cholesky", "eigh", "eigvalsh", "norm",
                 "matrix_power", "multi_dot"]:
        assert callable(getattr(fnp.linalg, name)), name
    import funcflux.numpy.linalg as L  # importable as a module too
    assert L is fnp.linalg


def test_slogdet_sign_and_pairs():
    a = gen(3)
    a[:, 0] *= -1
    sign, logabs = ff.vjp(lambda m: np.linalg.slogdet(m), a)[0]
    assert sign == -1.0
    np.testing.assert_allclose(logabs, np.log(abs(np.linalg.det(a))))
    res = fnp.linalg.slogdet(a)
    assert type(res) is type(np.linalg.slogdet(a)) and res.sign == -1.0
    # the sign carries no derivative; logabsdet's gradient is inv(a).T
    g = ff.grad(lambda m: np.linalg.slogdet(m).sign * 0.0 + np.linalg.slogdet(m).logabsdet)(a)
    np.testing.assert_allclose(g, np.linalg.inv(a).T, rtol=1e-10)
    g = ff.grad(lambda m: np.linalg.slogdet(m)[0])(a)
    assert not np.any(g)


def test_hessian_of_logdet():
    a = gen(3)
    h = ff.hessian(lambda m: np.linalg.slogdet(m)[1])(a)
    ai = np.linalg.inv(a)
    want = -np.einsum("li,jk->ijkl", ai, ai)
    np.testing.assert_allclose(h, want, rtol=1e-9, atol=1e-12)
    h2 = ff.hessian(lambda m: np.log(np.abs(np.linalg.det(m))))(a)
    np.testing.assert_allclose(h2, want, rtol=1e-8, atol=1e-12)


def test_det_and_inv_grads_nonsymmetric():
    a = gen(3)
    np.testing.assert_allclose(ff.grad(np.linalg.det)(a), np.linalg.det(a) * np.linalg.inv(a).T,
                               rtol=1e-10)
    check_grads(np.linalg.inv, (gen(3, 2),), order=2)


@pytest.mark.parametrize("sa,sb", [((3, 3), (3,)), ((3, 3), (3, 2)), ((4, 3, 3), (3,)),
                                   ((4, 3, 3), (3, 2)), ((3, 3), (4, 3, 2)),
                                   ((5, 1, 3, 3), (4, 3, 1))], ids=str)
def test_solve_numpy2_shapes(sa, sb):
    a = rand(*sa) + 6 * np.eye(3)
    b = rand(*sb)
    out, _ = ff.vjp(np.linalg.solve, a, b)
    want = np.linalg.solve(a, b)
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-12)
    check_grads(np.linalg.solve, (a, b), order=2)


def test_cholesky_gradient_is_lower_triangular_and_matches_fd():
    a = spd(3)
    f = lambda m: np.sum(np.linalg.cholesky(m) ** 2 * np.arange(9.0).reshape(3, 3))
    g = ff.grad(f)(a)
    np.testing.assert_array_equal(g, np.tril(g))  # NumPy reads the lower triangle only
    d = rand(3, 3)
    d = d + d.T  # along a symmetric direction, the triangle's gradient is the full answer
    fd = (f(a + 1e-6 * d) - f(a - 1e-6 * d)) / 2e-6
    np.testing.assert_allclose(np.sum(g * d), fd, rtol=1e-6)
    check_grads(lambda x: np.linalg.cholesky(x @ x.T + 3 * np.eye(3)), (rand(3, 3),), order=2)
    np.testing.assert_allclose(fnp.linalg.cholesky(a, upper=True), np.linalg.cholesky(a).T)


def test_eigh_reconstructs_and_differentiates():
    x = rand(4, 4)
    sym = lambda m: (m + m.T) / 2 + np.diag([0.0, 10.0, 20.0, 30.0])
    w, v = fnp.linalg.eigh(sym(x))
    np.testing.assert_allclose((v * w) @ v.T, sym(x), atol=1e-12)
    # sum(w) = trace: gradient is the identity (through the symmetrisation: I)
    np.testing.assert_allclose(ff.grad(lambda m: np.sum(np.linalg.eigh(sym(m))[0]))(x),
                               np.eye(4), atol=1e-12)
    # v diag(w) v^T is the input itself: its Jacobian through eigh is the identity map
    def f(m):
        w, v = np.linalg.eigh(sym(m))
        return (v * w) @ v.T
    check_grads(f, (x,), order=2)
    jac = ff.jacrev(f)(x)
    np.testing.assert_allclose(jac, ff.jacrev(sym)(x), atol=1e-9)


def test_eigh_vmap_is_one_batched_call():
    xs = rand(5, 3, 3)
    xs = xs + np.swapaxes(xs, -1, -2) + np.diag([0.0, 10.0, 20.0])
    got = ff.vmap(lambda m: np.linalg.eigh(m)[0], in_axes=2)(np.moveaxis(xs, 0, 2))
    np.testing.assert_allclose(got, np.linalg.eigvalsh(xs), rtol=1e-12)


def test_matrix_power():
    a = gen(3) / 6
    for n in [0, 1, 2, 3, 5, -1, -3]:
        np.testing.assert_allclose(fnp.linalg.matrix_power(a, n), np.linalg.matrix_power(a, n),
                                   rtol=1e-10)
    check_grads(lambda m: np.linalg.matrix_power(m, 5), (a,), order=2)


# ----------------------------------------------------------------------------- norm
NORM_CASES = [
    ((5,), {}), ((5,), {"ord": 1}), ((5,), {"ord": 2}), ((5,), {"ord": np.inf}),
    ((5,), {"ord": -np.inf}), ((5,), {"ord": 3}), ((5,), {"ord": 0}),
    ((2, 3, 4), {}), ((2, 3, 4), {"keepdims": True}), ((2, 3, 4), {"axis": 1}),
    ((2, 3, 4), {"axis": -1, "ord": 1, "keepdims": True}),
    ((3, 4), {"ord": "fro"}), ((3, 4), {"ord": 1}), ((3, 4), {"ord": -1}),
    ((3, 4), {"ord": np.inf}), ((3, 4), {"ord": -np.inf}), ((3, 4), {"ord": 2}),
    ((2, 3, 4), {"ord": 2, "axis": (2, 0), "keepdims": True}),
    ((2, 3, 4), {"ord": "fro", "axis": (0, 1)}),
]


@pytest.mark.parametrize("shape,kw", NORM_CASES, ids=str)
def test_norm_matches_numpy(shape, kw):
    x = rand(*shape)
    out, _ = ff.vjp(lambda a: np.linalg.norm(a, **kw), x)
    want = np.linalg.norm(x, **kw)
    assert np.shape(out) == np.shape(want)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    if kw.get("ord") != 0:
        check_grads(lambda a: np.linalg.norm(a, **kw), (x,), order=2)


def test_norm_gradient_at_zero_is_zero_not_nan():
    z = np.zeros(3)
    np.testing.assert_array_equal(ff.grad(np.linalg.norm)(z), z)
    np.testing.assert_array_equal(ff.grad(lambda x: np.linalg.norm(x) ** 2)(z), z)
    assert np.all(np.isfinite(ff.hessian(np.linalg.norm)(z)))
    np.testing.assert_array_equal(ff.grad(lambda x: np.linalg.norm(x, "fro"))(np.zeros((2, 2))),
                                  np.zeros((2, 2)))


def test_norm_errors():
    with pytest.raises(ValueError, match="Invalid norm order"):
        fnp.linalg.norm(np.ones((2, 2)), "bad")
    with pytest.raises(ValueError, match="Improper number of dimensions"):
        fnp.linalg.norm(np.ones((2, 2, 2)), 1)


def test_square_matrix_errors():
    with pytest.raises(np.linalg.LinAlgError, match="square"):
        fnp.linalg.inv(np.ones((2, 3)))
    with pytest.raises(np.linalg.LinAlgError, match="at least"):
        fnp.linalg.det(np.ones(3))


def test_unrouted_linalg_function_names_itself():
    with pytest.raises(TypeError, match="linalg.tensorinv"):
        ff.grad(lambda a: np.sum(np.linalg.tensorinv(a, ind=1)))(np.eye(2))


def test_jacrev_of_inverse_batched():
    a = gen(3)
    jac = ff.jacrev(np.linalg.inv)(a)
    ai = np.linalg.inv(a)
    np.testing.assert_allclose(jac, -np.einsum("ik,lj->ijkl", ai, ai), rtol=1e-10, atol=1e-14)
    jf = ff.jacfwd(np.linalg.inv)(a)
    np.testing.assert_allclose(jf, jac, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("fn", ["inv", "det", "slogdet", "cholesky", "eigvalsh"])
def test_linalg_vmap_any_axis(fn):
    xs = np.stack([spd(3) for _ in range(4)])
    f = getattr(np.linalg, fn)
    for axis in range(3):
        got = ff.vmap(lambda m: f(m), in_axes=axis)(np.moveaxis(xs, 0, axis))
        want = f(xs)
        for g, w in zip(got if fn == "slogdet" else [got], want if fn == "slogdet" else [want]):
            np.testing.assert_allclose(g, w, rtol=1e-12)


def test_cross_of_2_vectors_is_refused():
    with pytest.raises(NotImplementedError, match="3-vectors"):
        fnp.cross(np.ones(2), np.ones(2))


# ----------------------------------------------------------------------------- det at singular
def cofactor_by_minors(a):
    n = a.shape[-1]
    c = np.zeros_like(a)
    for i in range(n):
        for j in range(n):
            c[i, j] = (-1) ** (i + j) * np.linalg.det(np.delete(np.delete(a, i, 0), j, 1))
    return c


def low_rank(n, r, dtype=float):
    x = rand(n, r) @ rand(r, n)
    return x.astype(dtype) if dtype is not complex else x + 1j * (rand(n, r) @ rand(r, n))


@pytest.mark.parametrize("rank", [3, 2, 1, 0])
def test_det_gradient_at_singular_matrices_is_the_cofactor_matrix(rank):
    # Regression: grad(det) raised a bare LinAlgError at singular matrices. JAX returns the
    # cofactor matrix (its det JVP, jax/_src/numpy/linalg.py _cofactor_solve): rank n-1
    # gives a rank-1 gradient, rank <= n-2 gives 0.
    a = low_rank(4, rank) if rank else np.zeros((4, 4))
    g = ff.grad(np.linalg.det)(a)
    np.testing.assert_allclose(g, cofactor_by_minors(a), atol=1e-12)
    if rank <= 2:
        np.testing.assert_allclose(g, 0.0, atol=1e-12)
    _, t = ff.jvp(np.linalg.det, (a,), (np.ones((4, 4)),))
    np.testing.assert_allclose(t, np.sum(cofactor_by_minors(a)), atol=1e-12)
    check_grads(np.linalg.det, (a,), order=2)          # the second derivative too


def test_det_singular_complex_and_batched():
    a = np.stack([low_rank(3, 2, complex), low_rank(3, 1, complex), gen(3)])
    g = ff.grad(lambda m: np.real(np.sum(np.linalg.det(m))))(a)
    # JAX's convention: grad of Re f(z), f holomorphic, is f'(z) (d/dx - i d/dy of Re f)
    want = np.stack([cofactor_by_minors(m) for m in a])
    np.testing.assert_allclose(g, want, atol=1e-12)
    check_grads(np.linalg.det, (a,), order=2)
    got = ff.vmap(ff.grad(lambda m: np.real(np.linalg.det(m))), in_axes=0)(a)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_det_third_derivative():
    check_grads(np.linalg.det, (gen(3),), order=3)
    with pytest.raises(np.linalg.LinAlgError, match="third derivative of det"):
        ff.jacfwd(ff.hessian(np.linalg.det))(low_rank(3, 2))


def test_slogdet_at_singular_matrix():
    a = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])  # exactly singular
    sign, logabs = ff.vjp(np.linalg.slogdet, a)[0]
    assert sign == 0.0 and np.isneginf(logabs)   # NumPy's (and JAX's) values
    # JAX gives NaN/inf here; the derivative of log|det| is undefined: an error says so.
    with pytest.raises(np.linalg.LinAlgError, match="slogdet's logabsdet is undefined"):
        ff.grad(lambda m: np.linalg.slogdet(m)[1])(a)


def test_slogdet_complex_sign_is_differentiable():
    a = gen(3) + 1j * rand(3, 3)
    sign = fnp.linalg.slogdet(a)[0]
    res = ff.vjp(np.linalg.slogdet, a)[0]
    np.testing.assert_allclose(res[0], sign, rtol=1e-12)
    check_grads(lambda m: np.linalg.slogdet(m), (a,), order=2)


# ----------------------------------------------------------------------------- svd
@pytest.mark.parametrize("shp", [(4, 4), (5, 3), (3, 5), (2, 4, 3)], ids=str)
@pytest.mark.parametrize("full", [True, False])
def test_svd_values_match_numpy(shp, full):
    a = rand(*shp)
    for compute_uv in (True, False):
        got = ff.vjp(lambda x, cu=compute_uv: np.linalg.svd(x, full_matrices=full,
                                                             compute_uv=cu), a)[0]
        want = np.linalg.svd(a, full_matrices=full, compute_uv=compute_uv)
        if compute_uv:
            assert type(got) is type(want)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("shp", [(4, 4), (5, 3), (3, 5)], ids=str)
def test_svd_reconstruction_and_invariants(shp):
    a = rand(*shp)
    k = min(shp)

    def f(x):
        u, s, vh = np.linalg.svd(x, full_matrices=False)
        return (u * s) @ vh, s, u * np.sign(u[:1]), vh * np.sign(u[:1]).T
    check_grads(f, (a,), order=2)
    # U S Vh is the input: its Jacobian is the identity map
    jac = ff.jacrev(lambda x: f(x)[0])(a)
    np.testing.assert_allclose(jac, np.eye(a.size).reshape(shp + shp), atol=1e-10)
    assert k == f(a)[1].shape[0]


def test_svd_full_matrices_non_square():
    a = rand(4, 2)
    # reverse mode: only S and the first min(M, N) columns used -> fine
    g = ff.grad(lambda x: np.sum(np.linalg.svd(x)[1]))(a)
    u, _, vh = np.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(g, u @ vh, atol=1e-12)
    ff.grad(lambda x: np.sum(np.linalg.svd(x)[0][:, :2] ** 3))(a)
    # the extra columns have no derivative: an error, not a number
    with pytest.raises(NotImplementedError, match="full_matrices=False"):
        ff.grad(lambda x: np.sum(np.linalg.svd(x)[0] ** 3))(a)
    with pytest.raises(NotImplementedError, match="extra 2 rows of Vh"):
        ff.jvp(lambda x: np.linalg.svd(x)[1], (a.T,), (np.ones((2, 4)),))


def test_svd_repeated_singular_values_raise_naming_them():
    with pytest.raises(np.linalg.LinAlgError, match=r"repeat.*s\[0\] = 1.0 and s\[1\] = 1.0"):
        ff.grad(lambda x: np.sum(np.linalg.svd(x)[0] ** 3))(np.eye(3))
    with pytest.raises(np.linalg.LinAlgError, match="singular value is 0"):
        ff.jvp(lambda x: np.linalg.svd(x, full_matrices=False)[0],
               (np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),), (np.ones((3, 2)),))
    # singular values alone: first derivative defined (JAX's value: diag(U^T dA V))
    np.testing.assert_allclose(
        ff.grad(lambda x: np.sum(np.linalg.svd(x, compute_uv=False)))(np.eye(3)), np.eye(3))


def test_svd_vmap_and_hermitian():
    xs = rand(3, 4, 2)
    got = ff.vmap(lambda x: np.linalg.svd(x, full_matrices=False)[1], in_axes=2)(
        np.moveaxis(xs, 0, 2))
    np.testing.assert_allclose(got, np.linalg.svd(xs, compute_uv=False), rtol=1e-12)
    h = spd(3)
    np.testing.assert_allclose(
        ff.vjp(lambda x: np.linalg.svd(x, hermitian=True, compute_uv=False), h)[0],
        np.linalg.svd(h, hermitian=True, compute_uv=False), rtol=1e-12)
    # hermitian=True, compute_uv=True: NumPy's values (through eigh), differentiable
    x = rand(2, 4, 4)
    sym = x + np.swapaxes(x, -1, -2)
    for got, want in zip(ff.vjp(lambda m: np.linalg.svd(m, hermitian=True), sym)[0],
                         np.linalg.svd(sym, hermitian=True)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)

    def f(m):
        u, s, vh = np.linalg.svd((m + np.swapaxes(m, -1, -2)) / 2, hermitian=True)
        sg = np.sign(u[..., :1, :])
        return u * sg, s, vh * np.swapaxes(sg, -1, -2)
    check_grads(f, (x,), order=2)


def test_eigh_repeated_eigenvalues_raise_naming_them():
    # Regression: the eigenvector rules divided by zero gaps (inf, then NaN gradients).
    with pytest.raises(np.linalg.LinAlgError, match=r"eigh.*w\[0\] = 1.0 and w\[1\] = 1.0"):
        ff.grad(lambda a: np.sum(np.linalg.eigh(a)[1] ** 3))(np.eye(3))
    # eigenvalues alone: first derivative defined (JAX's value)
    np.testing.assert_allclose(ff.grad(lambda a: np.sum(np.linalg.eigh(a)[0]))(np.eye(3)),
                               np.eye(3))


def _count_lapack(monkeypatch, *names):
    """Count calls of ``np.linalg.<name>`` on arrays (the LAPACK calls of the impls; the
    user's call on a traced value dispatches to funcflux and is not counted)."""
    calls = dict.fromkeys(names, 0)
    for name in names:
        def counted(*a, _f=getattr(np.linalg, name), _n=name, **k):
            calls[_n] += isinstance(a[0], np.ndarray)
            return _f(*a, **k)
        monkeypatch.setattr(np.linalg, name, counted)
    return calls


def test_eigh_decomposes_once_forward_and_never_backward(monkeypatch):
    """The backward pass reads eigh's factors saved by the forward pass (it used to run
    eigvalsh and eigh forward, then eigh or eigvalsh again for each output's rule)."""
    x = rand(4, 4)
    a = x + x.T + np.diag([0.0, 3.0, 6.0, 9.0])
    t = rand(4, 4)

    def f(m):
        w, v = np.linalg.eigh(m)
        return np.sum(w ** 2) + np.sum(v ** 3)

    want = ff.grad(f)(a), ff.jvp(f, (a,), (t,))[1], ff.hessian(f)(a)
    calls = _count_lapack(monkeypatch, "eigh", "eigvalsh")
    got = ff.grad(f)(a)
    assert calls == {"eigh": 1, "eigvalsh": 0}
    got_t = ff.jvp(f, (a,), (t,))[1]
    assert calls == {"eigh": 2, "eigvalsh": 0}
    got_h = ff.hessian(f)(a)  # forward over reverse: still one decomposition
    assert calls == {"eigh": 3, "eigvalsh": 0}
    np.testing.assert_array_equal(got, want[0])
    np.testing.assert_array_equal(got_t, want[1])
    np.testing.assert_array_equal(got_h, want[2])
    # the traced values are NumPy's eigh, bit for bit
    w, v = ff.vjp(lambda m: np.linalg.eigh(m), a)[0]
    np.testing.assert_array_equal(w, np.linalg.eigh(a)[0])
    np.testing.assert_array_equal(v, np.linalg.eigh(a)[1])


def test_eigvalsh_backward_runs_one_eigh(monkeypatch):
    """eigvalsh computes no eigenvectors forward; its backward pass needs them once."""
    x = rand(3, 3)
    calls = _count_lapack(monkeypatch, "eigh", "eigvalsh")
    ff.grad(lambda m: np.sum(np.linalg.eigvalsh(m) ** 2))(x + x.T)
    assert calls == {"eigh": 1, "eigvalsh": 1}


def test_det_derivatives_share_one_svd(monkeypatch):
    """det's rules read one SVD (the cofactor matrix stays exact at singular matrices):
    the gradient takes one. The Hessian (forward over reverse) takes two, one for the
    tangent of det's value and one for its reverse rule, whose own derivative reads the
    same SVD (it used to decompose a third time)."""
    a = gen(3)
    want = ff.grad(np.linalg.det)(a), ff.hessian(np.linalg.det)(a)
    calls = _count_lapack(monkeypatch, "svd")
    got = ff.grad(np.linalg.det)(a)
    assert calls == {"svd": 1}
    got_h = ff.hessian(np.linalg.det)(a)
    assert calls == {"svd": 3}
    np.testing.assert_array_equal(got, want[0])
    np.testing.assert_array_equal(got_h, want[1])


def test_slogdet_decomposes_once(monkeypatch):
    """One LU forward for both outputs, and none in the backward pass's singularity
    check (it used to run slogdet for the sign, the logabsdet and the check)."""
    a = gen(3)
    want = ff.grad(lambda m: np.linalg.slogdet(m)[1])(a)
    calls = _count_lapack(monkeypatch, "slogdet")
    got = ff.grad(lambda m: np.linalg.slogdet(m)[1] * np.linalg.slogdet(m)[0])(a)
    assert calls == {"slogdet": 2}  # one per call of np.linalg.slogdet in the function
    np.testing.assert_array_equal(got * np.sign(np.linalg.det(a)), want)
    ff.grad(lambda m: np.linalg.slogdet(m)[1])(a)
    assert calls == {"slogdet": 3}
    c = a + 1j * gen(3)
    ff.grad(lambda m: np.real(np.linalg.slogdet(m)[0]) + np.linalg.slogdet(m)[1] * 0)(c)
    assert calls == {"slogdet": 5}


@pytest.mark.parametrize("shape,kw", [((3, 4), {"ord": "nuc"}), ((3, 4), {"ord": -2}),
                                      ((2, 3, 4), {"ord": "nuc", "axis": (0, 2)}),
                                      ((2, 3, 4), {"ord": -2, "axis": (1, 2),
                                                   "keepdims": True})], ids=str)
def test_norm_from_singular_values(shape, kw):
    x = rand(*shape)
    out = ff.vjp(lambda a: np.linalg.norm(a, **kw), x)[0]
    np.testing.assert_allclose(out, np.linalg.norm(x, **kw), rtol=1e-12)
    check_grads(lambda a: np.linalg.norm(a, **kw), (x,), order=2)


@pytest.mark.parametrize("p", [None, 2, -2, "fro", "nuc", 1, -1, np.inf, -np.inf])
def test_cond_matches_numpy(p):
    a = gen(3)
    np.testing.assert_allclose(ff.vjp(lambda x: np.linalg.cond(x, p), a)[0],
                               np.linalg.cond(a, p), rtol=1e-12)
    if p not in (1, -1, np.inf, -np.inf):
        check_grads(lambda x: np.linalg.cond(x, p), (a,), order=2)


def test_matrix_rank_pinv_lstsq_match_numpy():
    a = rand(5, 3)
    deficient = rand(5, 2) @ rand(2, 3)
    for m in (a, deficient, a.T, np.zeros((2, 2))):
        assert ff.vjp(np.linalg.matrix_rank, m)[0] == np.linalg.matrix_rank(m)
        assert ff.vjp(lambda x: np.linalg.matrix_rank(x, tol=0.5), m)[0] == \
            np.linalg.matrix_rank(m, tol=0.5)
        for kw in ({}, {"rcond": 1e-3}, {"rtol": 1e-3}, {"rtol": None}):
            np.testing.assert_allclose(ff.vjp(lambda x, kw=kw: np.linalg.pinv(x, **kw), m)[0],
                                       np.linalg.pinv(m, **kw), rtol=1e-10, atol=1e-12)
    assert np.all(ff.grad(lambda x: np.linalg.matrix_rank(x) * 1.0)(a) == 0)
    for m, b in [(a, rand(5)), (a, rand(5, 2)), (a.T, rand(3)), (deficient, rand(5))]:
        got = ff.vjp(lambda x, y: np.linalg.lstsq(x, y), m, b)[0]
        want = np.linalg.lstsq(m, b)
        assert len(got) == 4
        for g, w in zip(got, want):
            g, w = np.asarray(g), np.asarray(w)
            assert g.shape == w.shape and g.dtype == w.dtype, (g, w)
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    check_grads(lambda x, y: np.linalg.lstsq(x, y)[:2], (a, rand(5, 2)), order=2)
    with pytest.raises(ValueError, match="can't be both set"):
        fnp.linalg.pinv(a, rcond=1e-3, rtol=1e-3)


# ----------------------------------------------------------------------------- qr
@pytest.mark.parametrize("shp", [(3, 3), (5, 3), (3, 5), (2, 4, 3), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("mode", ["reduced", "complete", "r"])
def test_qr_values_and_grads(shp, mode):
    a = rand(*shp)
    got = ff.vjp(lambda x: np.linalg.qr(x, mode=mode), a)[0]
    want = np.linalg.qr(a, mode=mode)
    for g, w in zip(*(([got], [want]) if mode == "r" else (got, want))):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    if mode == "complete" and shp[-2] > shp[-1]:
        return  # below
    check_grads(lambda x: np.linalg.qr(x, mode=mode), (a,), order=2)


def test_qr_complete_tall_and_raw():
    a = rand(4, 2)
    check_grads(lambda x: np.linalg.qr(x, mode="complete")[0][:, :2], (a,), order=2,
                modes=("rev",))
    with pytest.raises(NotImplementedError, match="mode='reduced'"):
        ff.grad(lambda x: np.sum(np.linalg.qr(x, mode="complete")[0] ** 3))(a)
    with pytest.raises(NotImplementedError, match="last 2 columns of Q"):
        ff.jvp(lambda x: np.linalg.qr(x, mode="complete"), (a,), (a,))
    with pytest.raises(NotImplementedError, match="raw"):
        ff.grad(lambda x: np.sum(np.linalg.qr(x, mode="raw")[0]))(a)


# ----------------------------------------------------------------------------- eig
def test_eig_values_dtypes_and_errors():
    real_w = gen(3)
    rot = np.array([[0.0, -1.0], [1.0, 0.0]]) + 0.1 * rand(2, 2)
    for a in (real_w, rot, gen(3) + 1j * rand(3, 3)):
        w, v = ff.vjp(np.linalg.eig, a)[0]
        w0, v0 = np.linalg.eig(a)
        assert w.dtype == w0.dtype and v.dtype == v0.dtype
        np.testing.assert_allclose(w, w0, rtol=1e-12)
        np.testing.assert_allclose(v, v0, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ff.vjp(np.linalg.eigvals, a)[0], np.linalg.eigvals(a),
                                   rtol=1e-12)
        check_grads(np.linalg.eigvals, (a,), order=2)
        check_grads(lambda x: np.abs(np.linalg.eig(x)[1]) ** 2, (a,), order=2)
    # [[1 + a, 5], [e, 3 + d]]: the eigenvalue 3 solves (l - 1 - a)(l - 3 - d) = 5 e, so by
    # hand dl/da = 0, dl/dd = 1, dl/de = 5 / (3 - 1) = 2.5, and 0 along the entry 5
    g = ff.grad(lambda x: np.linalg.eigvals(x)[1])(np.array([[1.0, 5.0], [0.0, 3.0]]))
    np.testing.assert_allclose(g, [[0.0, 0.0], [2.5, 1.0]], atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError, match="repeated eigenvalues"):
        ff.grad(lambda x: np.sum(np.linalg.eig(x)[1] ** 2))(np.eye(2))


# ----------------------------------------------------------------------------- complex
def test_conjugating_products_match_numpy():
    x, y = rand(3) + 1j * rand(3), rand(3) + 1j * rand(3)
    m = rand(3, 2) + 1j * rand(3, 2)
    np.testing.assert_allclose(ff.vjp(np.vdot, x, y)[0], np.vdot(x, y))
    np.testing.assert_allclose(ff.vjp(np.vecdot, x, y)[0], np.vecdot(x, y))
    np.testing.assert_allclose(ff.vjp(np.vecmat, x, m)[0], np.vecmat(x, m))
    np.testing.assert_allclose(ff.vjp(lambda a: np.linalg.norm(a), x)[0], np.linalg.norm(x))
    np.testing.assert_allclose(ff.vjp(lambda a: np.linalg.norm(a, 2), m)[0],
                               np.linalg.norm(m, 2))


# -- one-triangle functions (issue 13): NumPy reads one triangle; so do the derivatives ----
def _nonsym_spread(n, lower, *lead, complex_=False):
    """Symmetric (Hermitian) with eigenvalues ~10 apart, plus junk in the triangle that
    ``UPLO`` / ``upper`` makes NumPy ignore (``lower``: the junk is in the upper part)."""
    x = rand(*lead, n, n) + (1j * rand(*lead, n, n) if complex_ else 0)
    h = (x + np.conj(np.swapaxes(x, -1, -2))) / 2 + np.diag(10.0 * np.arange(n))
    junk = 5 * (rand(*lead, n, n) + (1j * rand(*lead, n, n) if complex_ else 0))
    keep = np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool))
    return np.where(keep, h, junk)


def _nonsym_pd(n, lower, *lead, complex_=False):
    x = rand(*lead, n, n) + (1j * rand(*lead, n, n) if complex_ else 0)
    h = x @ np.conj(np.swapaxes(x, -1, -2)) + n * np.eye(n)
    junk = 5 * (rand(*lead, n, n) + (1j * rand(*lead, n, n) if complex_ else 0))
    keep = np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool))
    return np.where(keep, h, junk)


def _gauge_free(wv):
    """Eigenvalues and |v|^2 (v * conj(v)): invariant under each eigenvector's phase."""
    w, v = wv
    return w, np.real(v * np.conj(v))


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("uplo", ["L", "U"])
def test_eigh_differentiates_the_triangle_numpy_reads(uplo, complex_):
    # Regression (issue 13, found with HIPS autograd's check_grads on eigh(a, 'U')): the
    # rules were those of the symmetrised input while the values read one triangle, so
    # derivatives disagreed with finite differences of NumPy's own values.
    a = _nonsym_spread(4, uplo == "L", complex_=complex_)
    check_grads(lambda m: _gauge_free(np.linalg.eigh(m, uplo)), (a,), order=2)
    check_grads(lambda m: np.linalg.eigvalsh(m, UPLO=uplo), (a,), order=2)
    # batched, and under vmap
    b = _nonsym_spread(3, uplo == "L", 2, complex_=complex_)
    check_grads(lambda m: _gauge_free(np.linalg.eigh(m, UPLO=uplo)), (b,), order=1)
    check_grads(ff.vmap(lambda m: np.linalg.eigvalsh(m, uplo)), (b,), order=1)


def test_eigh_symmetric_point_nonsymmetric_direction():
    # autograd's failing case in miniature: at a symmetric S, a non-symmetric direction V.
    s = _nonsym_spread(4, True)
    s = np.tril(s) + np.tril(s, -1).T
    v = np.triu(rand(4, 4), 1)
    f = lambda m: np.linalg.eigvalsh(m)[2]
    _, t = ff.jvp(f, (s,), (v,))
    assert t == 0.0  # the strict upper triangle is not read
    _, t = ff.jvp(lambda m: np.linalg.eigvalsh(m, "U")[2], (s,), (v,))
    fd = (np.linalg.eigvalsh(s + 1e-6 * v, "U")[2] - np.linalg.eigvalsh(s - 1e-6 * v, "U")[2]) / 2e-6
    np.testing.assert_allclose(t, fd, rtol=1e-6)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("upper", [False, True])
def test_cholesky_differentiates_the_triangle_numpy_reads(upper, complex_):
    a = _nonsym_pd(4, not upper, complex_=complex_)
    val, _ = ff.jvp(lambda m: np.linalg.cholesky(m, upper=upper), (a,), (a,))
    np.testing.assert_array_equal(val, np.linalg.cholesky(a, upper=upper))
    check_grads(lambda m: np.linalg.cholesky(m, upper=upper), (a,), order=2)
    b = _nonsym_pd(3, not upper, 2, complex_=complex_)
    check_grads(ff.vmap(lambda m: np.linalg.cholesky(m, upper=upper)), (b,), order=1)


@pytest.mark.parametrize("fn", ["eigh", "eigvalsh", "cholesky", "cholesky-upper",
                                "svd-hermitian", "svdvals-hermitian", "pinv-hermitian"])
@pytest.mark.parametrize("complex_", [False, True])
def test_gradient_wrt_the_unread_triangle_is_exactly_zero(fn, complex_):
    upper = fn in ("cholesky-upper",)
    a = (_nonsym_pd if fn.startswith(("cholesky", "pinv"))
         else _nonsym_spread)(4, not upper, complex_=complex_)
    f = {"eigh": lambda m: np.sum(_gauge_free(np.linalg.eigh(m))[1] * np.arange(4.0)),
         "eigvalsh": lambda m: np.linalg.eigvalsh(m) @ np.arange(4.0),
         "cholesky": lambda m: np.sum(np.abs(np.linalg.cholesky(m)) ** 2 * np.arange(16.0).reshape(4, 4)),
         "cholesky-upper": lambda m: np.sum(np.abs(np.linalg.cholesky(m, upper=True)) ** 2
                                            * np.arange(16.0).reshape(4, 4)),
         "svd-hermitian": lambda m: np.sum(np.linalg.svd(m, hermitian=True)[1] * np.arange(4.0)),
         "svdvals-hermitian": lambda m: np.linalg.svd(m, hermitian=True, compute_uv=False)
         @ np.arange(4.0),
         "pinv-hermitian": lambda m: np.sum(np.abs(np.linalg.pinv(m, hermitian=True)) ** 2),
         }[fn]
    g = ff.grad(f)(a)
    unread = np.triu(np.ones((4, 4), bool), 1) if not upper else np.tril(np.ones((4, 4), bool), -1)
    assert np.all(g[unread] == 0), g
    assert np.any(g[~unread] != 0)
    if complex_:  # LAPACK ignores the imaginary part of the diagonal: so does the gradient
        assert np.all(np.imag(np.diagonal(g)) == 0)


@pytest.mark.parametrize("complex_", [False, True])
def test_hermitian_flag_values_match_numpy_on_nonhermitian_input(complex_):
    # svd(hermitian=True) and pinv(hermitian=True) compute from the lower triangle (through
    # eigh/eigvalsh): traced values must be NumPy's, not the SVD of the whole matrix.
    a = _nonsym_pd(4, True, complex_=complex_)
    for f in [lambda m: np.linalg.svd(m, hermitian=True, compute_uv=False),
              lambda m: np.linalg.pinv(m, hermitian=True)]:
        np.testing.assert_allclose(ff.vjp(f, a)[0], f(a), rtol=1e-12, atol=1e-14)
    check_grads(lambda m: np.linalg.svd(m, hermitian=True, compute_uv=False), (a,), order=2)
    check_grads(lambda m: np.linalg.pinv(m, hermitian=True), (a,), order=1)


def test_complex_diagonal_imaginary_part_is_ignored_like_numpy():
    a = _nonsym_spread(3, True, complex_=True) + 1j * np.diag([1.0, 2.0, 3.0])
    b = a.copy()
    b[np.diag_indices(3)] = a.diagonal().real
    np.testing.assert_array_equal(np.linalg.eigvalsh(a), np.linalg.eigvalsh(b))
    np.testing.assert_array_equal(ff.vjp(np.linalg.eigvalsh, a)[0], np.linalg.eigvalsh(a))
    _, t = ff.jvp(np.linalg.eigvalsh, (a,), (1j * np.eye(3),))
    np.testing.assert_array_equal(t, np.zeros(3))
