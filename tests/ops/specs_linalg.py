"""Spec lines for the linear-algebra family (funcflux/ops/linalg.py).

Matrices that must be invertible are built inside ``fun`` so every draw is well
conditioned: ``_gen`` is nonsymmetric and diagonally dominant (symmetric inputs
would hide a missing transpose in a rule), ``_spd`` is symmetric positive
definite, ``_sym_spread`` is symmetric with eigenvalues at least 6 apart.
Constants take the input's dtype so float32 stays float32.
"""
from __future__ import annotations

import numpy as np

import funcflux as ff
from funcflux.ops import linalg as L
from funcflux.scipy.linalg import expm
from tests.ops.specs import C, F, Spec


def _eye(x):
    # Constants in the array module of x, so that the lines also run with --device strict/gpu.
    return ff.device.array_module(x).eye(x.shape[-1], dtype=x.dtype)


def _gen(x):
    return x + 2 * x.shape[-1] * _eye(x)


def _neg(x):
    """``_gen`` with its first column negated: negative determinant."""
    xp = ff.device.array_module(x)
    return _gen(x) * xp.where(xp.arange(x.shape[-1]) == 0, -1.0, 1.0).astype(x.dtype)


def _spd(x):
    return x @ np.swapaxes(x, -1, -2) + x.shape[-1] * _eye(x)


def _sym_spread(x):
    n = x.shape[-1]
    xp = ff.device.array_module(x)
    return (x + np.swapaxes(x, -1, -2)) / 2 + xp.diag(10.0 * xp.arange(n)).astype(x.dtype)


def _fix_sign(v):
    """Eigenvectors with a nonnegative first row: the sign LAPACK picks is arbitrary."""
    return v * np.sign(v[..., :1, :])


def _spread_sv(x):
    """``x`` (..., m, n) with singular values near 3, 7, 11...: distinct and nonzero."""
    xp = ff.device.array_module(x)
    m, n = x.shape[-2:]
    d = xp.eye(m, n) * (3.0 + 4.0 * xp.arange(n))
    return 0.5 * x + d.astype(x.dtype)


def _gauge(u, vh):
    """Singular vectors with a real, nonnegative first row of U (the phase is a gauge)."""
    p = u[..., :1, :] / np.abs(u[..., :1, :])
    return u * np.conj(p), vh * np.swapaxes(p, -1, -2)


def _svd_gauged(x, **kw):
    u, s, vh = np.linalg.svd(_spread_sv(x), **kw)
    k = s.shape[-1]
    u1, vh1 = _gauge(u[..., :k], vh[..., :k, :])
    return u1, s, vh1


def _rank_deficient(x):
    """``x`` with its last column the sum of the others: rank at most n - 1."""
    xp = ff.device.array_module(x)
    n = x.shape[-1]
    p = xp.eye(n, dtype=x.dtype)
    p[:-1, -1] = 1
    p[-1, -1] = 0
    return x @ p


def _rank_n_minus_2(x):
    """Rank at most n - 2 (zero for n <= 2): the second derivative of det is still defined."""
    xp = ff.device.array_module(x)
    n = x.shape[-1]
    p = xp.eye(n, dtype=x.dtype)
    if n >= 2:
        p[:, -2:] = 0
        p[:-2, -2:] = 1
    return x @ p


def _eig_spread(x):
    """A nonsymmetric matrix with eigenvalues near 0, 4, 8...: real and distinct."""
    xp = ff.device.array_module(x)
    return 0.5 * x + xp.diag(4.0 * xp.arange(x.shape[-1])).astype(x.dtype)


def _eigh_gauged(x):
    w, v = np.linalg.eigh(_herm_spread(x))
    return w, np.abs(v) ** 2


def _rotation(x):
    """3 (superdiagonal - subdiagonal): added to _eig_spread, most eigenvalues turn complex."""
    xp = ff.device.array_module(x)
    n = x.shape[-1]
    return (3.0 * (xp.eye(n, k=1) - xp.eye(n, k=-1))).astype(x.dtype)


def _eig_gauged(x):
    w, v = np.linalg.eig(_eig_spread(x))
    return w, np.abs(v) ** 2


def _hpd(x):
    return x @ np.conj(np.swapaxes(x, -1, -2)) + x.shape[-1] * _eye(x)


def _herm_spread(x):
    n = x.shape[-1]
    xp = ff.device.array_module(x)
    return (x + np.conj(np.swapaxes(x, -1, -2))) / 2 + xp.diag(10.0 * xp.arange(n)).astype(x.dtype)


def _junk(x, read_lower=True):
    """``3 x`` on the strict triangle that NumPy does NOT read (upper for UPLO='L'), 0 elsewhere.

    Added to a symmetric/Hermitian matrix it makes the input non-symmetric; the values
    do not change, and the derivative must ignore that triangle (issue 13).
    """
    xp = ff.device.array_module(x)
    ones = xp.ones(x.shape[-2:])
    mask = xp.triu(ones, 1) if read_lower else xp.tril(ones, -1)
    return 3 * x * mask.astype(x.dtype)


def _eigh_signed_nonsym(x, uplo):
    w, v = np.linalg.eigh(_sym_spread(x) + _junk(x, uplo == "L"), uplo)
    return w, _fix_sign(v)


def _eigh_gauged_nonherm(x, uplo):
    w, v = np.linalg.eigh(_herm_spread(x) + _junk(x, uplo == "L"), uplo)
    return w, np.abs(v) ** 2


MM = ("matmul",)
TD = ("matmul", "reshape", "transpose")
M = F("a a", lo=-1.0, hi=1.0)      # a square matrix
SM = F("c a a", lo=-1.0, hi=1.0)   # a stack of them

SPECS = [
    # matmul: every rank combination, broadcasting, and each way in
    Spec(MM, lambda x, y: x @ y, [F("a b"), F("b c")], id="matmul-2-2"),
    Spec(MM, lambda x, y: x @ y, [F("b"), F("b c")], id="matmul-1-2"),
    Spec(MM, lambda x, y: x @ y, [F("a b"), F("b")], id="matmul-2-1"),
    Spec(MM, lambda x, y: x @ y, [F("b"), F("b")], id="matmul-1-1"),
    Spec(MM, lambda x, y: x @ y, [F("d a b"), F("b c")], id="matmul-3-2"),
    Spec(MM, lambda x, y: x @ y, [F("a b"), F("d b c")], id="matmul-2-3"),
    Spec(MM, lambda x, y: x @ y, [F("b"), F("d b c")], id="matmul-1-3"),
    Spec(MM, lambda x, y: x @ y, [F("d a b"), F("b")], id="matmul-3-1"),
    Spec(MM, lambda x, y: np.matmul(x, y), [F("d 1 a b"), F("e b c")], id="matmul-broadcast-4-3"),
    Spec(MM, lambda x, y: np.matmul(x, y), [F("1 a b"), F("d b c")], id="matmul-broadcast-1"),
    Spec(MM, lambda x, y: np.linalg.matmul(x, y), [F("d a b"), F("d b c")], id="linalg.matmul"),
    Spec(MM, lambda x, y: np.matvec(x, y), [F("d a b"), F("b")], id="matvec"),
    Spec(MM, lambda x, y: np.vecmat(x, y), [F("d a"), F("a b")], id="vecmat"),
    Spec("sum", lambda x, y: np.vecdot(x, y), [F("d a"), F("a")], id="vecdot"),
    Spec("sum", lambda x, y: np.linalg.vecdot(x, y, axis=0), [F("a d"), F("a 1")],
         id="linalg.vecdot"),
    # products composed of matmul
    Spec("multiply", lambda x, y: np.dot(x, y), [F(""), F("a b")], id="dot-0d"),
    Spec(MM, lambda x, y: np.dot(x, y), [F("a"), F("a")], id="dot-1-1"),
    Spec(MM, lambda x, y: np.dot(x, y), [F("a b"), F("b c")], id="dot-2-2"),
    Spec(MM, lambda x, y: np.dot(x, y), [F("d a b"), F("b")], id="dot-3-1"),
    Spec(TD, lambda x, y: np.dot(x, y), [F("b"), F("d b c")], id="dot-1-3"),
    Spec(TD, lambda x, y: np.dot(x, y), [F("d a b"), F("e b c")], id="dot-3-3"),
    Spec(TD, lambda x, y: np.dot(x, y), [F("a b"), F("d b c")], id="dot-2-3"),
    Spec(MM, lambda x, y: np.inner(x, y), [F("a b"), F("b")], id="inner-2-1"),
    Spec(TD, lambda x, y: np.inner(x, y), [F("d a b"), F("c b")], id="inner-3-2"),
    Spec(("matmul", "reshape"), lambda x, y: np.vdot(x, y), [F("a b"), F("b a")], id="vdot"),
    Spec(("multiply", "reshape"), lambda x, y: np.outer(x, y), [F("a b"), F("c")], id="outer"),
    Spec(("multiply", "reshape"), lambda x, y: np.linalg.outer(x, y), [F("a"), F("c")],
         id="linalg.outer"),
    Spec(TD, lambda x, y: np.tensordot(x, y), [F("a b c"), F("b c d")], id="tensordot-2"),
    Spec(TD, lambda x, y: np.tensordot(x, y, axes=0), [F("a b"), F("c")], id="tensordot-0"),
    Spec(TD, lambda x, y: np.tensordot(x, y, axes=([0, 2], [2, 1])), [F("a b c"), F("d c a")],
         id="tensordot-pairs"),
    Spec(TD, lambda x, y: np.linalg.tensordot(x, y, axes=1), [F("a b"), F("b c")],
         id="linalg.tensordot"),
    Spec(("multiply", "reshape"), lambda x, y: np.kron(x, y), [F("a b"), F("c d")], id="kron-2-2"),
    Spec(("multiply", "reshape"), lambda x, y: np.kron(x, y), [F("a"), F("c d")], id="kron-1-2"),
    Spec(("getitem", "concatenate"), lambda x, y: np.cross(x, y), [F("a 3"), F("3")], id="cross"),
    Spec(("getitem", "concatenate"), lambda x, y: np.cross(x, y, axisa=0, axisc=0),
         [F("3 a"), F("a 3")], id="cross-axes"),
    Spec(("getitem", "concatenate"), lambda x, y: np.linalg.cross(x, y), [F("a 3"), F("a 3")],
         id="linalg.cross"),
    Spec(MM, lambda x, y, z: np.linalg.multi_dot([x, y, z]), [F("a"), F("a b"), F("b c")],
         id="multi_dot"),
    Spec("transpose", lambda x: np.linalg.matrix_transpose(x), [F("a b c")],
         id="matrix_transpose"),
    # einsum
    Spec("einsum", lambda x, y: np.einsum("ij,jk->ik", x, y), [F("a b"), F("b c")],
         id="einsum-matmul"),
    Spec("einsum", lambda x, y: np.einsum("ij,jk", x, y), [F("a b"), F("b c")],
         id="einsum-implicit"),
    Spec("einsum", lambda x: np.einsum("ji", x), [F("a b")], id="einsum-implicit-transpose"),
    Spec("einsum", lambda x: np.einsum("ijk->kij", x), [F("a b c")], id="einsum-permute"),
    Spec("einsum", lambda x: np.einsum("ij->", x), [F("a b")], id="einsum-sum"),
    Spec("einsum", lambda x: np.einsum("ij->j", x), [F("a b")], id="einsum-sum-axis"),
    Spec("einsum", lambda x: np.einsum("ii->i", x), [M], id="einsum-diagonal"),
    Spec("einsum", lambda x: np.einsum("ii", x), [M], id="einsum-trace"),
    Spec("einsum", lambda x: np.einsum("iji->j", x), [F("a b a")], id="einsum-repeat-split"),
    Spec("einsum", lambda x, y: np.einsum("iij,j->ij", x, y), [F("a a b"), F("b")],
         id="einsum-diagonal-with-other"),
    Spec("einsum", lambda x, y: np.einsum("i,j->ij", x, y), [F("a"), F("b")], id="einsum-outer"),
    Spec("einsum", lambda x, y: np.einsum("i,i", x, y), [F("a"), F("a")], id="einsum-dot"),
    Spec("einsum", lambda x, y: np.einsum("bij,bjk->bik", x, y), [F("d a b"), F("d b c")],
         id="einsum-batched"),
    Spec("einsum", lambda x, y: np.einsum("...ij,...jk->...ik", x, y), [F("d 1 a b"), F("e b c")],
         id="einsum-ellipsis-broadcast"),
    Spec("einsum", lambda x, y: np.einsum("ai,ai->i", x, y), [F("1 b"), F("a b")],
         id="einsum-summed-broadcast"),
    Spec("einsum", lambda x: np.einsum("i...->...", x), [F("a b c")], id="einsum-ellipsis-last"),
    Spec("einsum", lambda x, y, z: np.einsum("ij,jk,kl->il", x, y, z),
         [F("a b"), F("b c"), F("c d")], id="einsum-three"),
    Spec("einsum", lambda x, y: np.einsum(x, [0, 1], y, [1, 2], [0, 2]), [F("a b"), F("b c")],
         id="einsum-sublist"),
    Spec("einsum", lambda x: np.linalg.trace(x), [F("c a a")], id="linalg.trace"),
    Spec("einsum", lambda x: np.linalg.diagonal(x), [F("c a a")], id="linalg.diagonal"),
    # numpy.linalg
    Spec("inv", lambda x: np.linalg.inv(_gen(x)), [M], id="inv"),
    Spec("inv", lambda x: np.linalg.inv(_gen(x)), [SM], id="inv-stack"),
    Spec(("det", "det_svd", "cofactor", "cofactor_d"), lambda x: np.linalg.det(_neg(x)), [M], id="det"),
    Spec(("det", "det_svd", "cofactor", "cofactor_d"), lambda x: np.linalg.det(_gen(x)), [SM],
         id="det-stack"),
    Spec(("det", "det_svd", "cofactor", "cofactor_d", "nonsingular"), lambda x: np.linalg.det(_gen(x)),
         [F("a a", lo=-1, hi=1)], order=3, sizes=(1, 3), id="det-order3"),
    # at singular matrices (the gradient is the cofactor matrix, as in JAX)
    Spec(("det", "det_svd", "cofactor", "cofactor_d"), lambda x: np.linalg.det(_rank_deficient(x)), [SM],
         id="det-singular"),
    Spec(("det", "det_svd", "cofactor", "cofactor_d"), lambda x: np.linalg.det(_rank_n_minus_2(x)), [M],
         id="det-singular-rank-n-2"),
    Spec(("slogdet", "slogdet_logabs", "invertible"), lambda x: np.linalg.slogdet(_neg(x))[1], [M],
         id="slogdet-logabsdet"),
    Spec(("slogdet", "slogdet_logabs"), lambda x: np.linalg.slogdet(_spd(x)).logabsdet, [SM],
         id="slogdet-stack"),
    Spec("slogdet", lambda x: np.linalg.slogdet(_neg(x))[0], [SM], nondiff=True,
         id="slogdet-sign"),
    Spec("solve", lambda x, b: np.linalg.solve(_gen(x), b), [M, F("a")], id="solve-vector"),
    Spec("solve", lambda x, b: np.linalg.solve(_gen(x), b), [M, F("a k")], id="solve-matrix"),
    Spec("solve", lambda x, b: np.linalg.solve(_gen(x), b), [SM, F("a k")], id="solve-stack-a"),
    Spec("solve", lambda x, b: np.linalg.solve(_gen(x), b), [M, F("c a k")], id="solve-stack-b"),
    Spec("solve", lambda x, b: np.linalg.solve(_gen(x), b), [SM, F("a")],
         id="solve-vector-stack"),
    Spec("solve", lambda x, b: np.linalg.solve(_gen(x), b), [F("c 1 a a", lo=-1, hi=1),
                                                             F("e a k")], id="solve-broadcast"),
    Spec("cholesky", lambda x: np.linalg.cholesky(_spd(x)), [M], id="cholesky"),
    Spec("cholesky", lambda x: np.linalg.cholesky(_spd(x), upper=True), [SM],
         id="cholesky-upper-stack"),
    Spec(("eigh", "eigh_w"), lambda x: np.linalg.eigh(_sym_spread(x))[0], [M], id="eigh-w"),
    Spec(("eigh", "eigh_v"), lambda x: _fix_sign(np.linalg.eigh(_sym_spread(x))[1]), [M],
         id="eigh-v"),
    Spec(("eigh", "eigh_w", "eigh_v"), lambda x: np.linalg.eigh(_sym_spread(x), UPLO="U"), [SM],
         id="eigh-stack-upper"),
    Spec("eigvalsh", lambda x: np.linalg.eigvalsh(_sym_spread(x)), [SM], id="eigvalsh"),
    # non-symmetric inputs: NumPy reads one triangle, the derivative must too (issue 13)
    Spec("eigvalsh", lambda x: np.linalg.eigvalsh(_sym_spread(x) + _junk(x)), [M],
         id="eigvalsh-nonsym"),
    Spec("eigvalsh", lambda x: np.linalg.eigvalsh(_sym_spread(x) + _junk(x, False), UPLO="U"),
         [SM], id="eigvalsh-nonsym-upper-stack"),
    Spec(("eigh", "eigh_w", "eigh_v"), lambda x: _eigh_signed_nonsym(x, "L"), [M],
         id="eigh-nonsym"),
    Spec(("eigh", "eigh_w", "eigh_v"), lambda x: _eigh_signed_nonsym(x, "U"), [SM],
         id="eigh-nonsym-upper-stack"),
    Spec("cholesky", lambda x: np.linalg.cholesky(_spd(x) + _junk(x)), [M],
         id="cholesky-nonsym"),
    Spec("cholesky", lambda x: np.linalg.cholesky(_spd(x) + _junk(x, False), upper=True), [SM],
         id="cholesky-upper-nonsym-stack"),
    Spec("eigh_w", lambda x: np.linalg.svd(_sym_spread(x) + _junk(x), hermitian=True,
                                           compute_uv=False), [M], id="svdvals-hermitian-nonsym"),
    Spec("pinv", lambda x: np.linalg.pinv(_spd(x) + _junk(x), hermitian=True), [M],
         id="pinv-hermitian-nonsym"),
    Spec(MM, lambda x: np.linalg.matrix_power(x, 3), [M], id="matrix_power-3"),
    Spec(("matmul", "inv"), lambda x: np.linalg.matrix_power(_gen(x), -2), [SM],
         id="matrix_power-neg"),
    Spec("broadcast_to", lambda x: np.linalg.matrix_power(x, 0), [M], id="matrix_power-0"),
    # norm: vector orders, matrix orders, axes and keepdims
    Spec("sqrt", lambda x: np.linalg.norm(x), [F("a b")], id="norm"),
    Spec("sqrt", lambda x: np.linalg.norm(x, keepdims=True), [F("a b")], id="norm-keepdims"),
    Spec("sqrt", lambda x: np.linalg.norm(x, axis=1), [F("a b c")], id="norm-axis"),
    Spec("sqrt", lambda x: np.linalg.norm(x, 2, axis=-1, keepdims=True), [F("a b")],
         id="norm-2-keepdims"),
    Spec("absolute", lambda x: np.linalg.norm(x, 1), [F("a", distinct=True)], id="norm-1"),
    Spec("max", lambda x: np.linalg.norm(x, np.inf, axis=0), [F("a b", distinct=True)],
         id="norm-inf"),
    Spec("min", lambda x: np.linalg.norm(x, -np.inf), [F("a", distinct=True)], id="norm-neginf"),
    Spec("power", lambda x: np.linalg.norm(x, 3), [F("a", lo=0.2, hi=2.0)], id="norm-p"),
    Spec("not_equal", lambda x: np.linalg.norm(x, 0), [F("a")], nondiff=True, id="norm-0"),
    Spec("sqrt", lambda x: np.linalg.norm(x, "fro"), [F("a b")], id="norm-fro"),
    Spec("sqrt", lambda x: np.linalg.norm(x, "fro", axis=(0, 2), keepdims=True), [F("a b c")],
         id="norm-fro-axes"),
    Spec("max", lambda x: np.linalg.norm(x, 1), [F("a b", distinct=True)], id="norm-matrix-1"),
    Spec("max", lambda x: np.linalg.norm(x, np.inf, axis=(2, 0)), [F("a b c", distinct=True)],
         id="norm-matrix-inf"),
    Spec("min", lambda x: np.linalg.norm(x, -1, axis=(1, 2), keepdims=True),
         [F("a b c", distinct=True)], id="norm-matrix-neg1"),
    Spec("eigvalsh", lambda x: np.linalg.norm(x, 2, axis=(0, 1)), [F("a b c")],
         id="norm-matrix-2"),
    Spec("sqrt", lambda x: np.linalg.vector_norm(x, axis=(0, 2)), [F("a b c")],
         id="vector_norm-axes"),
    Spec("absolute", lambda x: np.linalg.vector_norm(x, ord=1), [F("a b", distinct=True)],
         id="vector_norm-1"),
    Spec("sqrt", lambda x: np.linalg.matrix_norm(x, keepdims=True), [F("c a b")],
         id="matrix_norm"),
    # svd: (U, S, Vh) with distinct, nonzero singular values; U's phase fixed by _gauge
    Spec(("svd", "distinct_singular_values"),
         lambda x: _svd_gauged(x, full_matrices=False), [F("a b", lo=-1, hi=1)], id="svd"),
    Spec(("svd", "distinct_singular_values"),
         lambda x: _svd_gauged(x, full_matrices=False), [F("c a b", lo=-1, hi=1)],
         id="svd-stack"),
    Spec(("svd", "distinct_singular_values"), lambda x: _svd_gauged(x), [M],
         id="svd-square-full"),
    Spec("svdvals", lambda x: np.linalg.svd(_spread_sv(x), compute_uv=False),
         [F("c a b", lo=-1, hi=1)], id="svd-compute_uv-False"),
    Spec("svdvals", lambda x: np.linalg.svdvals(_spread_sv(x)), [F("a b", lo=-1, hi=1)],
         id="svdvals"),
    # the cotangent guard of svd(full_matrices=True) on non-square input (an identity)
    Spec("zero_cotangent", lambda x: L.zero_cotangent_p(x * 0.0, fn="unused"), [F("a b")],
         id="zero_cotangent"),
    Spec("svdvals", lambda x: np.linalg.norm(_spread_sv(x), "nuc"), [F("a b", lo=-1, hi=1)],
         id="norm-nuc"),
    Spec("svdvals", lambda x: np.linalg.norm(_spread_sv(x), -2, axis=(2, 0), keepdims=True),
         [F("a c b", lo=-1, hi=1)], id="norm-neg2"),
    Spec("svdvals", lambda x: np.linalg.cond(_spread_sv(x)), [F("c a b", lo=-1, hi=1)],
         id="cond"),
    Spec("svdvals", lambda x: np.linalg.cond(_spread_sv(x), -2), [F("a b", lo=-1, hi=1)],
         id="cond-neg2"),
    Spec(("inv", "max"), lambda x: np.linalg.cond(_gen(x), np.inf), [M], id="cond-inf"),
    Spec("svdvals", lambda x: np.linalg.matrix_rank(_rank_deficient(x)), [SM], nondiff=True,
         id="matrix_rank"),
    Spec("pinv", lambda x: np.linalg.pinv(_spread_sv(x)), [F("c a b", lo=-1, hi=1)], id="pinv"),
    Spec("pinv", lambda x: np.linalg.pinv(_spread_sv(x), rtol=1e-10), [F("a b", lo=-1, hi=1)],
         id="pinv-rtol"),
    Spec("pinv", lambda x, b: np.linalg.lstsq(_spread_sv(x), b)[0],
         [F("a b", lo=-1, hi=1), F("a k")], id="lstsq"),
    Spec(("pinv", "svdvals"), lambda x, b: np.linalg.lstsq(_spread_sv(x), b)[::3],
         [F("a b", lo=-1, hi=1), F("a")], id="lstsq-s"),
    # qr: LAPACK's own gauge is smooth, so Q and R are checked as they come
    Spec("qr", lambda x: np.linalg.qr(_spread_sv(x)), [F("a b", lo=-1, hi=1)], id="qr"),
    Spec("qr", lambda x: np.linalg.qr(_spread_sv(x), mode="r"), [F("c a b", lo=-1, hi=1)],
         id="qr-r-stack"),
    Spec("qr", lambda x: np.linalg.qr(_spread_sv(x), mode="complete"),
         [F("a 4", lo=-1, hi=1)], id="qr-complete-wide"),
    # eig: eigenvalues and gauge-free |v|^2; eigenvalue order is LAPACK's, kept by spreading
    Spec(("eig", "distinct_eigenvalues"), _eig_gauged, [M], id="eig"),
    Spec(("eig", "distinct_eigenvalues"), _eig_gauged, [SM], id="eig-stack"),
    Spec(("eigvals", "eig"), lambda x: np.linalg.eigvals(_eig_spread(x)), [SM], id="eigvals"),
    Spec(("eigvals", "eig"), lambda x: np.linalg.eigvals(_eig_spread(x) + _rotation(x)), [M],
         id="eigvals-complex-output"),
    Spec("expm", expm, [M], id="expm"),
    Spec("expm", lambda x: expm(x), [SM], id="expm-stack"),
    # complex inputs (JAX's convention: a VJP is the transpose, no conjugate)
    Spec(MM, lambda x, y: x @ y, [C("a b"), C("b c")], id="matmul-complex"),
    Spec(MM, lambda x, y: x @ y, [F("a b"), C("b")], id="matmul-real-complex"),
    Spec("einsum", lambda x, y: np.einsum("ij,jk->ik", x, y), [C("a b"), F("b c")],
         id="einsum-complex"),
    Spec(("matmul", "conjugate"), lambda x, y: np.vdot(x, y), [C("a b"), C("b a")],
         id="vdot-complex"),
    Spec("sum", lambda x, y: np.vecdot(x, y), [C("d a"), C("a")], id="vecdot-complex"),
    Spec("inv", lambda x: np.linalg.inv(_gen(x)), [C("c a a", lo=-1, hi=1)], id="inv-complex"),
    Spec("solve", lambda x, b: np.linalg.solve(_gen(x), b), [C("a a", lo=-1, hi=1), C("a k")],
         id="solve-complex"),
    Spec(("det", "det_svd", "cofactor", "cofactor_d"), lambda x: np.linalg.det(_gen(x)),
         [C("c a a", lo=-1, hi=1)], id="det-complex"),
    Spec(("det", "det_svd", "cofactor", "cofactor_d"), lambda x: np.linalg.det(_rank_deficient(x)),
         [C("a a", lo=-1, hi=1)], id="det-singular-complex"),
    Spec(("slogdet", "slogdet_logabs", "slogdet_csign"), lambda x: np.linalg.slogdet(_gen(x)),
         [C("c a a", lo=-1, hi=1)], id="slogdet-complex"),
    Spec("cholesky", lambda x: np.linalg.cholesky(_hpd(x)), [C("c a a", lo=-1, hi=1)],
         id="cholesky-complex"),
    Spec("eigvalsh", lambda x: np.linalg.eigvalsh(_herm_spread(x)), [C("a a", lo=-1, hi=1)],
         id="eigvalsh-complex"),
    Spec(("eigh", "eigh_w", "eigh_v"), _eigh_gauged, [C("c a a", lo=-1, hi=1)],
         id="eigh-complex"),
    Spec(("eigh", "eigh_w", "eigh_v"), lambda x: _eigh_gauged_nonherm(x, "L"),
         [C("a a", lo=-1, hi=1)],
         id="eigh-nonherm-complex"),
    Spec(("eigh", "eigh_w", "eigh_v"), lambda x: _eigh_gauged_nonherm(x, "U"),
         [C("c a a", lo=-1, hi=1)], id="eigh-nonherm-upper-complex"),
    Spec("cholesky", lambda x: np.linalg.cholesky(_hpd(x) + _junk(x)), [C("a a", lo=-1, hi=1)],
         id="cholesky-nonherm-complex"),
    Spec("cholesky", lambda x: np.linalg.cholesky(_hpd(x) + _junk(x, False), upper=True),
         [C("c a a", lo=-1, hi=1)], id="cholesky-upper-nonherm-complex"),
    Spec("sqrt", lambda x: np.linalg.norm(x), [C("a b")], id="norm-complex"),
    Spec("eigvalsh", lambda x: np.linalg.norm(x, 2), [C("a b")], id="norm-2-complex"),
    Spec(("svd", "distinct_singular_values"), lambda x: _svd_gauged(x, full_matrices=False),
         [C("c a b", lo=-1, hi=1)], id="svd-complex"),
    Spec("svdvals", lambda x: np.linalg.svd(_spread_sv(x), compute_uv=False),
         [C("a b", lo=-1, hi=1)], id="svdvals-complex"),
    Spec("pinv", lambda x: np.linalg.pinv(_spread_sv(x)), [C("a b", lo=-1, hi=1)],
         id="pinv-complex"),
    Spec("qr", lambda x: np.linalg.qr(_spread_sv(x)), [C("c a b", lo=-1, hi=1)],
         id="qr-complex"),
    Spec(("eig", "distinct_eigenvalues"), _eig_gauged, [C("c a a", lo=-1, hi=1)],
         id="eig-complex"),
    Spec("expm", expm, [C("c a a", lo=-1, hi=1)], id="expm-complex"),
]
