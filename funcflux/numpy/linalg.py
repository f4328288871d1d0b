"""``funcflux.numpy.linalg``: ``numpy.linalg``'s functions on traced values.

Each function here has NumPy's signature, argument checks and error texts, and
is what ``np.linalg.<name>`` routes to when it meets a traced value; the
primitives it binds, with their derivative rules (and where derivatives are
undefined, the errors that say so), are in ``funcflux.ops.linalg``. Outside a
transform the decompositions make one LAPACK call and return NumPy's own result
types.

>>> import numpy as np, funcflux as ff, funcflux.numpy as fnp
>>> ff.grad(lambda a: np.linalg.slogdet(a)[1])(np.diag([2.0, 4.0]))
array([[0.5 , 0.  ],
       [0.  , 0.25]])
>>> fnp.linalg.inv(np.diag([2.0, 4.0]))
array([[0.5 , 0.  ],
       [0.  , 0.25]])

``cholesky``, ``eigh``, ``eigvalsh`` and the ``hermitian=True`` forms of ``svd``,
``pinv`` and ``matrix_rank`` read one triangle of their input, like NumPy (LAPACK
also ignores the imaginary part of the diagonal). Under a transform they first
build the Hermitian matrix that triangle stands for (``_from_triangle``, a
composition of ``where``, ``conj`` and a transpose, so the values stay NumPy's
bit for bit) and differentiate the function of that: the derivative matches
finite differences of NumPy's values for any input, and the gradient with
respect to the unread triangle is exactly zero. (JAX instead symmetrises the
whole input, values included, so its results differ from NumPy's for a
non-symmetric input.)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.backend import array_module as _array_module
from ..core.dispatch import implements as _implements
from ..core.trace import concrete as _concrete, module_value as _module_value
from ..ops import base as _B, elementwise as _E, indexing as _I, linalg as _L, reductions as _R
from ..ops.common import (is_tracer as _is_tracer, ndim as _ndim, no_out as _no_out,
                          norm_axis as _norm_axis, shape as _shape)
from ..ops.linalg import (_H, _cholesky_impl, _dtype, _eig_unpack, _eye, _mT, _qr_unpack,
                          _svd_unpack)
from . import _linalg as _P
from ._linalg import _asarray, matmul, vecdot  # noqa: F401 (public here too, as in NumPy)

__all__ = ["cholesky", "cond", "cross", "det", "diagonal", "eig", "eigh", "eigvals", "eigvalsh",
           "inv", "lstsq", "matmul", "matrix_norm", "matrix_power", "matrix_rank",
           "matrix_transpose", "multi_dot", "norm", "outer", "pinv", "qr", "slogdet", "solve",
           "svd", "tensordot", "trace", "vector_norm"]
__all__ += [n for n in ("svdvals", "vecdot") if hasattr(np.linalg, n)]

NOT_SQUARE = "{fn}: Last 2 dimensions of the array must be square (got shape {shape})."
TOO_FEW_DIMS = ("{fn}: {ndim}-dimensional array given. Array must be at least "
                "two-dimensional.")

_implements(np.linalg.matmul)(matmul)
if hasattr(np.linalg, "vecdot"):
    _implements(np.linalg.vecdot)(vecdot)
else:
    del vecdot


def _check_square(fn: str, a: Any) -> None:
    s = _shape(a)
    if len(s) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn=fn, ndim=len(s)))
    if s[-1] != s[-2]:
        raise np.linalg.LinAlgError(NOT_SQUARE.format(fn=fn, shape=s))


def _result_type(sample: Any) -> Any:
    """NumPy's own namedtuple for a multi-output function, so pytree structures match."""
    t = type(sample)
    return t if hasattr(t, "_fields") else (lambda *parts: tuple(parts))


# -- the products, in numpy.linalg's forms ----------------------------------------------
@_implements(np.linalg.outer)
def outer(x1: Any, x2: Any, /) -> Any:
    """``np.linalg.outer``: ``np.outer`` of two 1-D arrays."""
    if _ndim(x1) != 1 or _ndim(x2) != 1:
        raise ValueError("Input arrays must be one-dimensional, but they are "
                         f"x1.ndim={_ndim(x1)} and x2.ndim={_ndim(x2)}.")
    return _P.outer(x1, x2)


@_implements(np.linalg.tensordot)
def tensordot(x1: Any, x2: Any, /, *, axes: Any = 2) -> Any:
    """``np.linalg.tensordot``: ``np.tensordot`` with ``axes`` keyword-only."""
    return _P.tensordot(x1, x2, axes)


@_implements(np.linalg.cross)
def cross(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """``np.linalg.cross`` of 3-vectors along ``axis``."""
    if _shape(x1)[axis] != 3 or _shape(x2)[axis] != 3:
        raise ValueError("Both input arrays must be (arrays of) 3-dimensional vectors")
    return _P.cross(x1, x2, axis=axis)


@_implements(np.linalg.multi_dot)
def multi_dot(arrays: Sequence[Any], *, out: Any = None) -> Any:
    """``np.linalg.multi_dot``, multiplied left to right."""
    _no_out("multi_dot", out)
    arrays = [_asarray(x) for x in arrays]
    if len(arrays) < 2:
        raise ValueError("Expecting at least two arrays.")
    res = arrays[0]
    for x in arrays[1:]:
        res = matmul(res, x)
    return res


@_implements(np.linalg.matrix_transpose)
def matrix_transpose(x: Any, /) -> Any:
    """``np.linalg.matrix_transpose``: swap the last two axes."""
    if _ndim(x) < 2:
        raise ValueError("Input array must be at least 2-dimensional")
    return _mT(x)


@_implements(np.linalg.trace)
def trace(x: Any, /, *, offset: int = 0, dtype: Any = None) -> Any:
    """``np.linalg.trace`` over the last two axes (offset 0)."""
    if offset:
        raise NotImplementedError("np.linalg.trace on traced values supports offset=0 only")
    r = _P.einsum("...ii->...", x)
    return r if dtype is None else _B.astype(r, dtype)


@_implements(np.linalg.diagonal)
def diagonal(x: Any, /, *, offset: int = 0) -> Any:
    """``np.linalg.diagonal`` of the last two axes (offset 0)."""
    if offset:
        raise NotImplementedError("np.linalg.diagonal on traced values supports offset=0 only")
    return _P.einsum("...ii->...i", x)


@_implements(np.linalg.inv)
def inv(a: Any) -> Any:
    """``np.linalg.inv`` of a (stack of) square matrices.

    >>> import numpy as np, funcflux as ff, funcflux.numpy as fnp
    >>> ff.grad(lambda a: np.sum(np.linalg.inv(a)))(2.0 * np.eye(2))
    array([[-0.25, -0.25],
           [-0.25, -0.25]])
    """
    a = _asarray(a)
    _check_square("inv", a)
    return _L.inv_p(a)


_SlogdetResult = _result_type(np.linalg.slogdet(np.eye(1)))


@_implements(np.linalg.det)
def det(a: Any) -> Any:
    """``np.linalg.det``; its gradient is the cofactor matrix ``adj(a).T``.

    The gradient (``det(a) * inv(a).T`` where ``a`` is invertible) and the second
    derivative are exact at singular matrices too (as in JAX, the gradient there is
    the cofactor matrix: rank n-1 gives a rank-1 gradient, rank n-2 or less gives 0).
    The third derivative needs an invertible ``a`` and says so otherwise.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(np.linalg.det)(np.array([[1.0, 2.0], [2.0, 4.0]]))  # singular
    array([[ 4., -2.],
           [-2.,  1.]])
    """
    a = _asarray(a)
    _check_square("det", a)
    return _L.det_p(a)


@_implements(np.linalg.slogdet)
def slogdet(a: Any) -> Any:
    """``np.linalg.slogdet`` as ``(sign, logabsdet)``; ``sign`` carries no derivative.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.slogdet(a)[1])(np.diag([2.0, -4.0]))
    array([[ 0.5 ,  0.  ],
           [ 0.  , -0.25]])
    """
    a = _asarray(a)
    _check_square("slogdet", a)
    if not _is_tracer(a):  # one LAPACK call when nothing is traced
        return _array_module(a).linalg.slogdet(a)
    pk = _L.slogdet_p(a)
    sign = _L.slogdet_csign_p(a, pk) if _dtype(a).kind == "c" else pk[..., 0]
    return _SlogdetResult(sign, _L.slogdet_logabs_p(a, pk))


@_implements(np.linalg.solve)
def solve(a: Any, b: Any) -> Any:
    """``np.linalg.solve`` with NumPy 2's shapes: ``b`` is ``(M,)`` or ``(..., M, K)``.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.linalg.solve(2.0 * np.eye(2), np.array([2.0, 4.0]))
    array([1., 2.])
    """
    a, b = _asarray(a), _asarray(b)
    _check_square("solve", a)
    return _L.solve(a, b)


# -- one-triangle functions -------------------------------------------------------------
def _from_triangle(a: Any, lower: bool) -> Any:
    """The Hermitian matrix that the lower (or upper) triangle of ``a`` stands for.

    What LAPACK's Hermitian routines see: the other strict triangle is the conjugate
    transpose of the read one, and the diagonal is real (its imaginary part is
    ignored). Built with ``where`` (no arithmetic), so the read entries keep their
    exact values and derivatives reach the read entries only.
    """
    n = _shape(a)[-1]
    xp = _array_module(_module_value(a))
    ones = xp.ones((n, n), dtype=bool)
    unread = xp.triu(ones, 1) if lower else xp.tril(ones, -1)
    if _dtype(a).kind == "c":
        a = _E.where(xp.eye(n, dtype=bool), _E.real(a), a)
    return _E.where(unread, _H(a), a)


@_implements(np.linalg.cholesky)
def cholesky(a: Any, /, *, upper: bool = False) -> Any:
    """``np.linalg.cholesky``: the lower factor (``upper=True``: the upper one, its ``^H``).

    Like NumPy it reads one triangle (the lower; the upper for ``upper=True``) and
    differentiates the function of that triangle: the other one gets a zero
    gradient. (JAX symmetrises the input instead.)

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.cholesky(a)[1, 1])(np.array([[4.0, 9.0], [2.0, 5.0]]))
    array([[ 0.0625,  0.    ],
           [-0.25  ,  0.25  ]])
    """
    a = _asarray(a)
    _check_square("cholesky", a)
    upper = bool(upper)
    if not _is_tracer(a):
        return _cholesky_impl(a, upper)
    return _L.cholesky_p(_from_triangle(a, not upper), upper=upper)


_EighResult = _result_type(np.linalg.eigh(np.eye(1)))


def _check_uplo(UPLO: str) -> str:
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    return UPLO


@_implements(np.linalg.eigh)
def eigh(a: Any, UPLO: str = "L") -> Any:
    """``np.linalg.eigh`` as ``(eigenvalues, eigenvectors)`` of a symmetric matrix.

    Like NumPy it reads the ``UPLO`` triangle only, and differentiates the function
    of that triangle (the other gets a zero gradient; JAX symmetrises the input
    instead). Eigenvector derivatives need distinct eigenvalues: they divide by the
    gaps, and at repeated eigenvalues they raise an error naming them (JAX returns
    NaN there).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.eigh(a)[0][1])(np.diag([1.0, 3.0]))
    array([[0., 0.],
           [0., 1.]])
    """
    a = _asarray(a)
    _check_square("eigh", a)
    UPLO = _check_uplo(UPLO)
    if not _is_tracer(a):  # one LAPACK call when nothing is traced
        return _array_module(a).linalg.eigh(a, UPLO=UPLO)
    a = _from_triangle(a, UPLO == "L")
    pk = _L.eigh_p(a, UPLO=UPLO)
    return _EighResult(_L.eigh_w_p(a, pk), _L.eigh_v_p(a, pk))


@_implements(np.linalg.eigvalsh)
def eigvalsh(a: Any, UPLO: str = "L") -> Any:
    """``np.linalg.eigvalsh``: the eigenvalues of a symmetric matrix, ascending.

    Reads (and differentiates through) the ``UPLO`` triangle only, like NumPy.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.eigvalsh(a, "U")[1])(np.array([[1.0, 0.0], [7.0, 3.0]]))
    array([[0., 0.],
           [0., 1.]])
    """
    a = _asarray(a)
    _check_square("eigvalsh", a)
    UPLO = _check_uplo(UPLO)
    if not _is_tracer(a):
        return _array_module(a).linalg.eigvalsh(a, UPLO=UPLO)
    return _L.eigvalsh_p(_from_triangle(a, UPLO == "L"), UPLO=UPLO)


_EigResult = _result_type(np.linalg.eig(np.eye(1)))


@_implements(np.linalg.eig)
def eig(a: Any) -> Any:
    """``np.linalg.eig``: ``(eigenvalues, eigenvectors)`` of a general square matrix.

    Eigenvalue derivatives (``dw_i = (V^-1 dA V)_ii``, JAX's rule) need simple
    eigenvalues. Eigenvectors (JAX does not differentiate them) are differentiated
    with NumPy's unit-norm normalisation kept; their phase (sign, for real ones) is
    a gauge, so differentiate functions that do not depend on it, such as
    ``abs(v) ** 2``. Repeated eigenvalues raise. Like NumPy, the outputs are real
    when every eigenvalue is real, complex otherwise.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.eig(a)[0][0])(np.array([[2.0, 1.0], [0.0, 3.0]]))
    array([[ 1.,  0.],
           [-1.,  0.]])
    """
    a = _asarray(a)
    _check_square("eig", a)
    if not _is_tracer(a):
        return _array_module(a).linalg.eig(a)
    w, v = _eig_unpack(_L.eig_p(a), _shape(a)[-1])
    return _EigResult(w, v)


@_implements(np.linalg.eigvals)
def eigvals(a: Any) -> Any:
    """``np.linalg.eigvals``: the eigenvalues of a general matrix (complex when NumPy's are).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.sum(np.linalg.eigvals(a).real))(np.array([[0.0, -1.0], [1.0, 0.0]]))
    array([[1., 0.],
           [0., 1.]])
    """
    a = _asarray(a)
    _check_square("eigvals", a)
    return _L.eigvals_p(a)


_SvdResult = _result_type(np.linalg.svd(np.eye(1)))


@_implements(np.linalg.svd)
def svd(a: Any, full_matrices: bool = True, compute_uv: bool = True,
        hermitian: bool = False) -> Any:
    """``np.linalg.svd``: ``(U, S, Vh)``, or the singular values ``S`` alone.

    Derivatives follow JAX's rules (its ``svd`` JVP) with these limits, each an error
    that says so rather than a NaN or inf:

    - ``U`` and ``Vh`` need distinct singular values (and, for a non-square input,
      nonzero ones): at repeated values the singular vectors are any basis of a
      subspace. The singular values alone (``compute_uv=False``, ``svdvals``) have a
      first derivative everywhere (at repeated values, one valid choice, as JAX's);
      their second derivative needs distinct values too.
    - ``full_matrices=True`` with ``M != N``: the extra columns of ``U`` (rows of
      ``Vh``) have no derivative (any orthonormal completion); the first ``min(M, N)``
      do. Reverse mode works if only those and ``S`` are used; forward mode, which
      computes every tangent, raises. Pass ``full_matrices=False``. (JAX raises for
      ``full_matrices=True`` whenever ``compute_uv`` is set.)
    - For complex input the phases of the singular vectors are a gauge: differentiate
      functions that do not depend on them (JAX's gauge choice is used).
    - ``hermitian=True`` computes as NumPy does, through ``eigh`` / ``eigvalsh`` of the
      lower triangle (whose rules then apply: distinct eigenvalues, and nonzero ones
      for ``U``'s sign to be smooth).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.sum(np.linalg.svd(a, compute_uv=False)))(np.diag([3.0, -2.0]))
    array([[ 1.,  0.],
           [ 0., -1.]])
    """
    a = _asarray(a)
    if _ndim(a) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="svd", ndim=_ndim(a)))
    if not _is_tracer(a):
        return _array_module(a).linalg.svd(a, full_matrices=full_matrices,
                                          compute_uv=compute_uv, hermitian=hermitian)
    if hermitian and not compute_uv:  # NumPy's own steps: |eigvalsh(a)|, descending
        _check_square("svd", a)
        return _R.sort(_E.abs(eigvalsh(a)), axis=-1)[..., ::-1]
    if not compute_uv:
        return _L.svdvals_p(a)
    m, n = _shape(a)[-2:]
    if hermitian:  # NumPy's own steps: eigh, then |w| descending, the signs moved into Vh
        _check_square("svd", a)
        w, v = eigh(a)
        order = _E.stop_gradient(_R.argsort(_E.abs(w), axis=-1)[..., ::-1])
        w = _I.take_along_axis(w, order, axis=-1)
        u = _I.take_along_axis(v, _B.expand_dims(order, -2), axis=-1)
        sgn = _B.astype(_E.stop_gradient(_E.sign(w)), _dtype(u))
        return _SvdResult(u, _E.abs(w), _H(u * _B.expand_dims(sgn, -2)))
    full = bool(full_matrices)
    return _SvdResult(*_svd_unpack(_L.svd_p(a, full_matrices=full), m, n, full))


if hasattr(np.linalg, "svdvals"):
    @_implements(np.linalg.svdvals)
    def svdvals(x: Any, /) -> Any:
        """``np.linalg.svdvals``: the singular values, descending."""
        return svd(x, compute_uv=False)


_QRResult = _result_type(np.linalg.qr(np.eye(1)))


@_implements(np.linalg.qr)
def qr(a: Any, mode: str = "reduced") -> Any:
    """``np.linalg.qr`` with modes 'reduced', 'complete' and 'r'.

    Differentiable for every shape in 'reduced' and 'r' mode (for M < N through
    ``A = [X | Y]``, ``Q R1 = X``, ``R2 = Q^H Y``; JAX supports M >= N only) and in
    'complete' mode for M <= N. With M > N, 'complete' adds columns of Q that have no
    derivative: reverse mode works while they are unused, forward mode raises.
    'raw' mode is refused on traced values.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.qr(a)[1][0, 0])(np.array([[3.0], [4.0]]))  # R = [[-5]]
    array([[-0.6],
           [-0.8]])
    """
    a = _asarray(a)
    if _ndim(a) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="qr", ndim=_ndim(a)))
    if mode not in ("reduced", "complete", "r", "raw"):
        raise ValueError(f"Unrecognized mode '{mode}'")
    if not _is_tracer(a):
        return _array_module(a).linalg.qr(a, mode=mode)
    if mode == "raw":
        raise NotImplementedError("qr(mode='raw') on traced values: the Householder "
                                  "reflectors have no derivative rule; use 'reduced'.")
    m, n = _shape(a)[-2:]
    q, r = _qr_unpack(_L.qr_p(a, mode="reduced" if mode == "r" else mode), m, n, mode)
    return r if mode == "r" else _QRResult(q, r)


_NOVALUE: Any = getattr(np, "_NoValue", None)


@_implements(np.linalg.pinv)
def pinv(a: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = _NOVALUE) -> Any:
    """``np.linalg.pinv`` (``rcond``/``rtol`` as NumPy); differentiable where the rank is
    locally constant (the Golub-Pereyra formula, as JAX), e.g. at full rank.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.sum(np.linalg.pinv(a)))(np.array([[2.0]]))
    array([[-0.25]])
    """
    a = _asarray(a)
    if _ndim(a) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="pinv", ndim=_ndim(a)))
    if rcond is None:
        rcond = 1e-15 if rtol is _NOVALUE else \
            (max(_shape(a)[-2:]) * np.finfo(_dtype(a)).eps if rtol is None else rtol)
    elif rtol is not _NOVALUE:
        raise ValueError("`rtol` and `rcond` can't be both set.")
    if not isinstance(rcond, (int, float, np.floating, np.integer)):
        raise NotImplementedError("pinv on traced values takes a scalar rcond/rtol")
    if hermitian:  # NumPy reads the lower triangle only (through eigh)
        _check_square("pinv", a)
        a = _from_triangle(a, True)
    return _L.pinv_p(a, rcond=float(rcond))


def _rank_from_sv(s: Any, tol: Any) -> Any:
    return _B.sum(_B.astype(s > tol, np.int64), axis=-1)


@_implements(np.linalg.matrix_rank)
def matrix_rank(A: Any, tol: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """``np.linalg.matrix_rank``: an integer, so it carries no derivative."""
    A = _asarray(A)
    if _ndim(A) < 2:
        return _B.astype(_R.any(A != 0), np.int64)
    if hermitian:  # NumPy's S: |eigvalsh(A)| of the lower triangle (any order serves here)
        _check_square("matrix_rank", A)
        s = _E.abs(eigvalsh(_E.stop_gradient(A)))
    else:
        s = _L.svdvals_p(_E.stop_gradient(A))
    if tol is None:
        r = max(_shape(A)[-2:]) * np.finfo(_dtype(s)).eps if rtol is None else rtol
        tol = _R.max(s, axis=-1, keepdims=True) * r
    else:
        tol = _B.expand_dims(_asarray(tol), -1)
    return _rank_from_sv(s, tol)


_LstsqResult = _result_type(np.linalg.lstsq(np.eye(1), np.ones(1), rcond=None))


@_implements(np.linalg.lstsq)
def lstsq(a: Any, b: Any, rcond: Any = None) -> Any:
    """``np.linalg.lstsq`` as ``(x, residuals, rank, s)``.

    ``x`` is ``pinv(a, rcond) @ b``, differentiable in ``a`` and ``b`` where the rank is
    locally constant (full rank); ``residuals`` and ``s`` are differentiable too;
    ``rank`` is an integer (no derivative). Under vmap, residuals are returned when
    every matrix of the batch has full column rank (NumPy's shape rule).
    """
    a, b = _asarray(a), _asarray(b)
    if _ndim(a) != 2 or _ndim(b) not in (1, 2):
        raise np.linalg.LinAlgError(
            f"lstsq: {_ndim(a)}-dimensional a and {_ndim(b)}-dimensional b given; a must be "
            "two-dimensional and b one- or two-dimensional.")
    m, n = _shape(a)
    if _shape(b)[0] != m:
        raise np.linalg.LinAlgError("Incompatible dimensions")
    dt = np.result_type(_dtype(a), _dtype(b), np.float64 if _dtype(a).kind in "iub" else _dtype(a))
    a, b = _B.astype(a, dt), _B.astype(b, dt)
    if rcond is None:
        rcond = np.finfo(dt).eps * max(m, n)
    x = _L.matmul_p(_L.pinv_p(a, rcond=float(rcond)), b)
    s = _L.svdvals_p(a)
    rank = _rank_from_sv(_E.stop_gradient(s), _R.max(_E.stop_gradient(s)) * rcond)
    rdt = np.finfo(dt).dtype
    full_rank = m > n and bool(_array_module(_concrete(rank)).all(_concrete(rank) == n))
    if full_rank:
        r = b - _L.matmul_p(a, x)
        resid = _B.sum(_E.real(_E.conj(r) * r), axis=0)
        if _ndim(b) == 1:
            resid = _B.reshape(resid, (1,))
    else:
        resid = _array_module(_module_value(a)).zeros((0,), dtype=rdt)
    return _LstsqResult(x, resid, _B.astype(rank, np.int32), s)


@_implements(np.linalg.cond)
def cond(x: Any, p: Any = None) -> Any:
    """``np.linalg.cond``: ``s_max / s_min`` for p None, 2 (-2: the inverse), else
    ``norm(x, p) * norm(inv(x), p)``; differentiable where the values are distinct.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.cond(a))(np.diag([4.0, 2.0]))
    array([[ 0.5,  0. ],
           [ 0. , -1. ]])
    """
    x = _asarray(x)
    if _ndim(x) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="cond", ndim=_ndim(x)))
    if p is None or p == 2 or p == -2:
        s = _L.svdvals_p(x)
        return s[..., -1] / s[..., 0] if p == -2 else s[..., 0] / s[..., -1]
    _check_square("cond", x)
    return norm(x, p, axis=(-2, -1)) * norm(inv(x), p, axis=(-2, -1))


# -- matrix_power ---------------------------------------------------------------------
@_implements(np.linalg.matrix_power)
def matrix_power(a: Any, n: int) -> Any:
    """``np.linalg.matrix_power`` by repeated squaring (``inv`` first for ``n < 0``)."""
    a = _asarray(a)
    _check_square("matrix_power", a)
    if not isinstance(n, (int, np.integer)):
        raise TypeError("exponent must be an integer")
    n = int(n)
    if n == 0:
        return _B.broadcast_to(_eye(_shape(a)[-1], a), _shape(a)) + 0.0 * a
    if n < 0:
        a, n = inv(a), -n
    res = None
    while True:
        if n & 1:
            res = a if res is None else _L.matmul_p(res, a)
        n >>= 1
        if not n:
            return res
        a = _L.matmul_p(a, a)


# -- norm (a composition) ---------------------------------------------------------------
def _sqrt_sum_sq(x: Any, axis: tuple, keepdims: bool) -> Any:
    """``sqrt(sum(x**2))`` whose derivative at 0 is 0 (a subgradient), not NaN.

    sqrt's derivative is infinite at 0, so the naive chain rule gives 0 * inf = NaN
    at the zero vector (JAX and autograd return NaN there). We choose 0, like
    ``abs`` at 0, so ``norm(x) ** 2`` has the right gradient everywhere; the square
    root is taken of a value that is never 0, so no NaN appears at any order.
    """
    s = _B.sum(_E.real(_E.conj(x) * x) if _dtype(x).kind == "c" else x * x,
                axis=axis, keepdims=keepdims)
    pos = s > 0
    return _E.where(pos, _E.sqrt(_E.where(pos, s, 1.0)), 0.0)


def _vector_norm(x: Any, ord: Any, axis: tuple, keepdims: bool) -> Any:
    if ord is None or ord == 2:
        return _sqrt_sum_sq(x, axis, keepdims)
    if ord == np.inf:
        return _R.max(_E.abs(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return _R.min(_E.abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        return _B.sum(_B.astype(_E.not_equal(x, 0), _dtype(x)), axis=axis, keepdims=keepdims)
    if ord == 1:
        return _B.sum(_E.abs(x), axis=axis, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")  # NumPy's type # noqa: TRY004
    p = float(ord)
    return _B.sum(_E.abs(x) ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def _matrix_norm(x: Any, ord: Any, axis: tuple, keepdims: bool) -> Any:
    r, c = axis
    if ord is None or ord == "fro":
        return _sqrt_sum_sq(x, axis, keepdims)
    if ord in (1, -1, np.inf, -np.inf):
        inner_ax, outer_ax = (r, c) if ord in (1, -1) else (c, r)
        sums = _B.sum(_E.abs(x), axis=inner_ax, keepdims=True)
        red = _R.max if ord in (1, np.inf) else _R.min
        res = red(sums, axis=outer_ax, keepdims=True)
    elif ord == 2:
        # The largest singular value: the square root of the top eigenvalue of the Gram
        # matrix, accurate relative to itself (not so the smallest, hence no ord=-2).
        y = _B.moveaxis(x, (r, c), (-2, -1))
        m, n = _shape(y)[-2:]
        gram = _L.matmul_p(_H(y), y) if m >= n else _L.matmul_p(y, _H(y))
        top = _L.eigvalsh_p(gram, UPLO="L")[..., -1]
        res = _E.sqrt(_E.maximum(top, 0.0))
        if keepdims:
            res = _B.expand_dims(res, (r, c))
        return res
    elif ord in (-2, "nuc"):
        sv = _L.svdvals_p(_B.moveaxis(x, (r, c), (-2, -1)))
        res = _B.sum(sv, axis=-1) if ord == "nuc" else sv[..., -1]
        if keepdims:
            res = _B.expand_dims(res, (r, c))
        return res
    else:
        raise ValueError(f"Invalid norm order {ord!r} for matrices")
    return res if keepdims else _B.squeeze(res, axis)


@_implements(np.linalg.norm)
def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """``np.linalg.norm``: vector norms (ord None/2, 1, inf, -inf, 0, p) and matrix norms
    ('fro', 1, -1, inf, -inf, 2, -2, 'nuc'; the last three from singular values, whose
    derivatives need the extreme ones to be simple, see ``svd``).

    At ``x = 0`` the 2-norm and 'fro' have derivative 0 (a subgradient) rather than NaN.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(np.linalg.norm)(np.array([3.0, 4.0]))
    array([0.6, 0.8])
    >>> ff.grad(np.linalg.norm)(np.zeros(2))
    array([0., 0.])
    """
    x = _asarray(x)
    if _dtype(x).kind not in "fc":
        x = _B.astype(x, np.float64)
    nd = _ndim(x)
    if axis is None:
        if ord is None:
            res = _sqrt_sum_sq(_B.reshape(x, (-1,)), (0,), False)
            return _B.reshape(res, (1,) * nd) if keepdims else res
        if nd not in (1, 2):
            raise ValueError("Improper number of dimensions to norm.")
        axis = tuple(range(nd))
    ax = _norm_axis(axis, nd)
    if len(ax) == 1:
        return _vector_norm(x, ord, ax, bool(keepdims))
    if len(ax) == 2:
        return _matrix_norm(x, ord, ax, bool(keepdims))
    raise ValueError("Improper number of dimensions to norm.")


@_implements(np.linalg.vector_norm)
def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Any:
    """``np.linalg.vector_norm``: the norm over ``axis`` (all axes when None)."""
    x = _asarray(x)
    nd = _ndim(x)
    if axis is None:
        res = _vector_norm(_B.reshape(x, (-1,)), ord, (0,), False)
        return _B.reshape(res, (1,) * nd) if keepdims else res
    ax = _norm_axis(axis, nd)
    if len(ax) > 1:  # several axes: flatten them into one, last
        rest = [i for i in range(nd) if i not in ax]
        y = _B.transpose(x, tuple(rest) + ax)
        y = _B.reshape(y, tuple(_shape(x)[i] for i in rest) + (-1,))
        res = _vector_norm(y, ord, (len(rest),), False)
        if keepdims:
            res = _B.expand_dims(res, ax)
        return res
    return _vector_norm(x, ord, ax, bool(keepdims))


@_implements(np.linalg.matrix_norm)
def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Any:
    """``np.linalg.matrix_norm`` over the last two axes."""
    x = _asarray(x)
    if _ndim(x) < 2:
        raise ValueError("matrix_norm needs an array of at least 2 dimensions")
    return norm(x, ord=ord, axis=(-2, -1), keepdims=keepdims)
