"""Linear algebra: the product primitives (``matmul``, ``einsum``) and those of ``numpy.linalg``.

Two primitives carry every product. ``matmul`` is bilinear and maps onto BLAS;
``dot``, ``inner``, ``vdot``, ``outer``, ``tensordot``, ``kron`` and ``multi_dot``
are exact Python compositions of it with reshapes, transposes and broadcasting.
``einsum`` is a primitive of its own (not a composition) because one einsum can
say what would otherwise take a chain of transposes, reshapes and products, and
because its rules close over einsum: it is multilinear, the transpose for
operand ``i`` is the einsum of the cotangent with the other operands back to
operand ``i``'s subscripts, and batching adds one fresh letter for the batch axis.

The ``numpy.linalg`` primitives (``inv``, ``det``, ``slogdet``, ``solve``,
``cholesky``, ``eigh``) call the stacked LAPACK routines, which broadcast over
leading axes, so each batching rule is a move of the batch axis to the front.
Our primitives have one output each, so ``slogdet`` and ``eigh`` run their
LAPACK routine once in a ``nondiff`` primitive that packs every factor into one
array (``slogdet_p``, ``eigh_p``): a residual that is a plain array at every
level, never differentiated itself. Each output is then a primitive of the input
and that pack (``slogdet_logabs(a, pk)``, ``eigh_w(a, pk)``, ``eigh_v(a, pk)``):
its value is a slice of the pack, its rules are the derivatives with respect to
the input and read the other factors from the pack, so the backward pass does
not decompose again. Separate primitives per output keep a function of the
eigenvalues alone differentiable at repeated eigenvalues (the eigenvector rules,
which divide by the gaps, never run). ``svd``, ``qr`` and ``eig`` instead pack
all their outputs into one array (``svd_p``, ``qr_p``, ``eig_p``: one LAPACK
call, and rules that read every factor from ``ans``), which the public function
slices apart (``_svd_unpack``, ``_qr_unpack``, ``_eig_unpack``). Where a
derivative is undefined (repeated singular values or eigenvalues, a singular
matrix for ``slogdet``) an identity *guard* primitive inside the rule checks the
concrete values and raises an error that names the function, instead of
producing inf or NaN.

Complex inputs follow JAX: a JVP is the real-linear tangent map and a VJP its
transpose under ``Re sum(x * y)``, so products (``matmul``, ``solve``, ``inv``,
``det``) have no conjugates in their rules, while the Hermitian functions
(``cholesky``, ``eigh``) and ``svd``/``qr``/``eig`` conjugate where their maps do.
The one-triangle functions (``cholesky``, ``eigh``, ``eigvalsh``) are bound to
the Hermitian matrix that the triangle they read stands for, which the public
functions build (see ``funcflux.numpy.linalg``).

Binders (normalised parameters, no NumPy-only ones), for the rules of this and
later families and for the surface: ``matmul(a, b)``, ``dot(a, b)``,
``tensordot(a, b, axes=2)``,
``solve(a, b)`` (``b`` of shape ``(M,)`` or ``(..., M, K)``), and ``_mT`` / ``_H``
(the (conjugate) transpose of the last two axes). NumPy's signatures, their
argument checks and error texts are in ``funcflux.numpy._linalg`` and
``funcflux.numpy.linalg``.
"""
from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from ..core.trace import module_value
from .common import ndim, norm_axis, shape
from .base import (astype, is_complex, batch_size, bdim_to_front, expand_dims, move_bdim, reshape,
                   squeeze, sum, transpose, transpose_p, unbroadcast)
from .elementwise import conj, imag, real, where, zeros_like
from .indexing import diagonal
from .shape import concatenate


def _mT(x: Any) -> Any:
    """``x`` with its last two axes swapped (a binder: rules of later families use it)."""
    nd = ndim(x)
    # transpose_p directly: swapaxes' axis checks cost more than the transpose itself here.
    return transpose_p(x, axes=tuple(range(nd - 2)) + (nd - 1, nd - 2))


def _H(x: Any) -> Any:
    """The conjugate transpose of the last two axes."""
    return conj(_mT(x))


def _dtype(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    return d if d is not None else np.result_type(x)


def _eye(n: int, like: Any) -> Any:
    """An identity constant in the array module and dtype of ``like``."""
    return array_module(module_value(like)).eye(n, dtype=_dtype(like))


def _ones(n: int, like: Any) -> Any:
    return array_module(module_value(like)).ones((n,), dtype=_dtype(like))


def _core_batch(args: Sequence[Any], dims: Sequence[int | None], cores: Sequence[int]) -> list:
    """Batch axes to the front, padded so they line up under broadcasting of leading axes.

    For operations that broadcast over all but their ``cores[i]`` trailing axes
    (matmul, solve, the stacked LAPACK routines): each batched argument gets its
    batch axis first, followed by size-1 axes up to the largest number of leading
    axes; unbatched arguments stay as they are (broadcasting pads them on the left).
    """
    lead = max(ndim(x) - (d is not None) - c for x, d, c in zip(args, dims, cores))
    out = []
    for x, d, c in zip(args, dims, cores):
        if d is not None:
            x = move_bdim(x, d, 0)
            s = shape(x)
            pad = lead - (len(s) - 1 - c)
            if pad > 0:
                x = reshape(x, s[:1] + (1,) * pad + s[1:])
        out.append(x)
    return out


def _front_batch(p: Any) -> Any:
    """Batching rule of a one-argument op that broadcasts over leading axes."""
    def rule(args: list, dims: list, **params: Any) -> tuple:
        return p(move_bdim(args[0], dims[0], 0), **params), 0
    return rule


def _with_factors_batch(p: Any) -> Any:
    """Batching rule of ``p(a, pk)``, ``pk`` a decomposition of ``a`` packed by a nondiff
    primitive (``eigh_p``, ``slogdet_p``): both with the batch axis first (an unbatched
    one stands for every member and is broadcast)."""
    def rule(args: list, dims: list, **params: Any) -> tuple:
        return p(*bdim_to_front(args, dims, batch_size(args, dims)), **params), 0
    return rule


# =====================================================================================
# matmul: bilinear, so only the transposes are written (def_linear).
def _matmul_vjp_x(ct: Any, ans: Any, x: Any, y: Any) -> Any:
    nx, ny = ndim(x), ndim(y)
    if ny == 1:      # (..., n, k) @ (k,) -> (..., n); or (k,) @ (k,) -> ()
        g = ct * y if nx == 1 else expand_dims(ct, -1) * y
    elif nx == 1:    # (k,) @ (..., k, m) -> (..., m)
        g = matmul_p(y, ct) if ny == 2 else \
            squeeze(matmul_p(y, expand_dims(ct, -1)), -1)
    else:
        g = matmul_p(ct, _mT(y))
    return unbroadcast(g, x)


def _matmul_vjp_y(ct: Any, ans: Any, x: Any, y: Any) -> Any:
    nx, ny = ndim(x), ndim(y)
    if nx == 1:      # (k,) @ (..., k, m) -> (..., m); or (k,) @ (k,) -> ()
        g = ct * x if ny == 1 else expand_dims(x, -1) * expand_dims(ct, -2)
    elif ny == 1:    # (..., n, k) @ (k,) -> (..., n)
        g = matmul_p(ct, x) if nx == 2 else \
            squeeze(matmul_p(expand_dims(ct, -2), x), -2)
    else:
        g = matmul_p(_mT(x), ct)
    return unbroadcast(g, y)


def _matmul_batch(args: list, dims: list) -> tuple:
    x, y = args
    dx, dy = dims
    nx = ndim(x) - (dx is not None)
    ny = ndim(y) - (dy is not None)
    # A batch of vectors against one matrix is a single matrix-matrix product.
    if dy is None and nx == 1 and ny == 2:
        return matmul_p(move_bdim(x, dx, 0), y), 0          # (b, k) @ (k, m)
    if dx is None and nx == 2 and ny == 1:
        return matmul_p(x, move_bdim(y, dy, 1)), 1          # (n, k) @ (k, b)
    # Otherwise: vectors become matrices (so the batch axis is never mistaken for a
    # vector's), batch axes go in front, and matmul broadcasts over the leading axes.
    if dx is not None:
        x = move_bdim(x, dx, 0)
    if dy is not None:
        y = move_bdim(y, dy, 0)
    if nx == 1:
        x = expand_dims(x, -2)
    if ny == 1:
        y = expand_dims(y, -1)
    x, y = _core_batch([x, y], [0 if dx is not None else None, 0 if dy is not None else None],
                       (2, 2))
    out = matmul_p(x, y)
    if nx == 1 and ny == 1:
        return squeeze(out, (-2, -1)), 0
    if nx == 1:
        return squeeze(out, -2), 0
    if ny == 1:
        return squeeze(out, -1), 0
    return out, 0


def _matmul_impl(x: Any, y: Any) -> Any:
    return array_module(x, y).matmul(x, y)


_matmul_impl.direct = lambda xp: xp.matmul  # type: ignore[attr-defined]  # see elementwise.py
matmul_p = primitive("matmul", _matmul_impl)


def _matmul_abstract(x: Any, y: Any) -> Any:
    xs, ys = shape(x), shape(y)
    if not xs or not ys:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    a = (1,) + xs if len(xs) == 1 else xs
    b = ys + (1,) if len(ys) == 1 else ys
    if a[-1] != b[-2]:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0 "
                         f"(size {b[-2]} is different from {a[-1]}); shapes {xs} and {ys}")
    out = np.broadcast_shapes(a[:-2], b[:-2]) + ((a[-2],) if len(xs) > 1 else ()) + \
        ((b[-1],) if len(ys) > 1 else ())
    dt = np.matmul(np.ones((1, 1), x.dtype), np.ones((1, 1), y.dtype)).dtype
    return abstract.ShapeDtypeStruct(out, dt)


matmul_p.def_abstract(_matmul_abstract)
matmul_p.def_linear(_matmul_vjp_x, _matmul_vjp_y)
matmul_p.def_batch(_matmul_batch)


def matmul(a: Any, b: Any) -> Any:
    """``a @ b`` (NumPy's rules for 1-D operands, leading axes broadcast): binds ``matmul_p``."""
    return matmul_p(a, b)


def dot(a: Any, b: Any) -> Any:
    """``np.dot``'s product: elementwise for a 0-d operand, ``matmul`` for 1-D and 2-D,
    ``tensordot`` of the last axis of ``a`` with the second-to-last of ``b`` beyond."""
    na, nb = ndim(a), ndim(b)
    if na == 0 or nb == 0:
        return a * b
    if nb <= 2 and (na <= 2 or nb == 1):
        # matmul agrees with dot here: (..., n) @ (n,) and (n,)/(m, n) @ (n, k).
        return matmul_p(a, b)
    return tensordot(a, b, axes=([na - 1], [nb - 2]))


def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    """``np.tensordot``: transposes and reshapes around one matrix product (as NumPy does).

    ``axes``: an int ``n`` (the last ``n`` axes of ``a`` with the first ``n`` of ``b``)
    or a pair of axis lists.

    >>> import numpy as np
    >>> tensordot(np.ones((2, 3, 4)), np.ones((3, 4, 5))).shape
    (2, 5)
    """
    sa, sb = shape(a), shape(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > len(sa) or n > len(sb):
            raise ValueError(f"tensordot: axes={n} is out of range for shapes {sa} and {sb}")
        ax_a, ax_b = list(range(len(sa) - n, len(sa))), list(range(n))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
        if len(ax_a) != len(ax_b):
            raise ValueError("tensordot: shape-mismatch for sum (axes lists differ in length)")
        ax_a = list(norm_axis(ax_a, len(sa)) or ())
        ax_b = list(norm_axis(ax_b, len(sb)) or ())
    for i, j in zip(ax_a, ax_b):
        if sa[i] != sb[j]:
            raise ValueError(f"tensordot: shape-mismatch for sum (axis {i} of {sa} vs axis {j} "
                             f"of {sb})")
    free_a = [i for i in range(len(sa)) if i not in ax_a]
    free_b = [j for j in range(len(sb)) if j not in ax_b]
    k = int(np.prod([sa[i] for i in ax_a]))
    out_shape = tuple(sa[i] for i in free_a) + tuple(sb[j] for j in free_b)
    a2 = reshape(transpose(a, tuple(free_a + ax_a)), (-1, k))
    b2 = reshape(transpose(b, tuple(ax_b + free_b)), (k, -1))
    return reshape(matmul_p(a2, b2), out_shape)


# =====================================================================================
# einsum: one multilinear primitive with fully explicit subscripts (no '...').
_LETTERS = string.ascii_letters


def _einsum_optimize(ops: Sequence[Any], subs: tuple) -> Any:
    # NumPy's plain einsum loop is fastest for small work (the path search has a fixed cost);
    # contraction-order search and BLAS pay off for three or more operands, or once the
    # loop would visit more than 2**16 index combinations.
    if len(ops) > 2:
        return "greedy"
    sizes: dict[str, int] = {}
    for o, s in zip(ops, subs):
        for c, n in zip(s, shape(o)):
            sizes[c] = max(sizes.get(c, 1), n)
    return "greedy" if int(np.prod(list(sizes.values()))) > 1 << 16 else False


def _einsum_impl(*ops: Any, subs: tuple, out: str) -> Any:
    xp = array_module(*ops)
    return xp.einsum(",".join(subs) + "->" + out, *ops, optimize=_einsum_optimize(ops, subs))


def _letter_sizes(terms: Sequence[tuple[Any, str]]) -> dict:
    sizes: dict[str, int] = {}
    for x, sub in terms:
        for c, n in zip(sub, shape(x)):
            if n != 1 or c not in sizes:
                sizes[c] = n
    return sizes


def _fresh(used: str) -> Any:
    return iter(c for c in _LETTERS if c not in used)


def _einsum_transpose(i: int, ct: Any, ans: Any, *ops: Any, subs: tuple, out: str) -> Any:
    """Cotangent of operand ``i``: the einsum of ``ct`` with the other operands.

    Three details make it exact for every subscript pattern: an index that operand
    ``i`` repeats ('ii->i', a diagonal) is written back through an identity matrix
    with a fresh letter; an index only operand ``i`` has (summed there alone, as in
    'ij->i') comes back through a vector of ones; an axis where operand ``i`` has
    size 1 but others are larger (broadcast) is summed and kept as size 1.
    """
    x, sub = ops[i], subs[i]
    terms = [(ct, out)] + [(o, s) for j, (o, s) in enumerate(zip(ops, subs)) if j != i]
    sizes = _letter_sizes(terms + [(x, sub)])
    present = _letter_sizes(terms)
    fresh = _fresh("".join(subs) + out)
    res, seen, extra = [], set(), []
    for c, n in zip(sub, shape(x)):
        if n == 1 and sizes[c] != 1:
            continue                            # broadcast axis: summed, reinserted below
        if c in seen:
            d = next(fresh)
            extra.append((_eye(n, ct), c + d))  # diagonal: x[..i..i..] gets ct[..i..]
            res.append(d)
            continue
        seen.add(c)
        if present.get(c) != n:
            # only x spans c (summed there alone, or broadcast in the others): ct is
            # constant along c, and a vector of ones gives the axis its length
            extra.append((_ones(n, ct), c))
        res.append(c)
    terms += extra
    g = einsum_p(*[t for t, _ in terms], subs=tuple(s for _, s in terms), out="".join(res))
    if len(res) != ndim(x):
        g = reshape(g, shape(x))
    dx = getattr(x, "dtype", None)
    if dx is not None and g.dtype != dx:
        g = astype(g, dx)
    return g


def _einsum_batch(args: list, dims: list, subs: tuple, out: str) -> tuple:
    z = next(_fresh("".join(subs) + out), None)
    if z is None:
        raise NotImplementedError("einsum under vmap needs a free subscript letter, but all "
                                  "52 are in use.")
    new = tuple(s if d is None else s[:d] + z + s[d:] for s, d in zip(subs, dims))
    return einsum_p(*args, subs=new, out=z + out), 0


einsum_p = primitive("einsum", _einsum_impl)


def _einsum_abstract(*ops: Any, subs: tuple, out: str) -> Any:
    sizes: dict = {}
    for o, sub in zip(ops, subs):
        for c, n in zip(sub, shape(o)):
            if sizes.setdefault(c, n) != n and 1 not in (n, sizes[c]):
                raise ValueError(f"einsum: size of label '{c}' differs between operands "
                                 f"({sizes[c]} and {n})")
            sizes[c] = max(sizes[c], n)
    return abstract.ShapeDtypeStruct(tuple(sizes[c] for c in out),
                                     np.result_type(*[o.dtype for o in ops]))


einsum_p.def_abstract(_einsum_abstract)
einsum_p.def_linear(_einsum_transpose, variadic=True)
einsum_p.def_batch(_einsum_batch)


# =====================================================================================
# numpy.linalg
def _square_impl(name: str) -> Any:
    def impl(a: Any, **params: Any) -> Any:
        return getattr(array_module(a).linalg, name)(a, **params)
    return impl


# -- inv: a primitive (one LAPACK call; the rules reuse the inverse) ---------------------
inv_p = primitive("inv", _square_impl("inv"))
inv_p.def_vjp(lambda ct, ans, a: -matmul_p(_mT(ans), matmul_p(ct, _mT(ans))))
inv_p.def_jvp(lambda t, ans, a: -matmul_p(ans, matmul_p(t, ans)))
inv_p.def_batch(_front_batch(inv_p))


# -- det and slogdet ------------------------------------------------------------------
def _at_matrix(v: Any) -> Any:
    return expand_dims(v, (-2, -1))


# -- guards: identity primitives whose impl refuses values where a derivative is undefined.
# They sit inside rules, so they run on concrete values in every transform (under vmap on
# the whole batch) and the error names the function instead of returning inf or NaN.
def _guard(name: str, test: Any) -> Any:
    def impl(x: Any, fn: str) -> Any:
        test(x, fn)
        return x
    p = primitive(name, impl)
    p.def_vjp(lambda ct, ans, x, fn: ct)
    p.def_jvp(lambda t, ans, x, fn: t)
    p.def_batch(lambda args, dims, fn: (p(move_bdim(args[0], dims[0], 0), fn=fn), 0))
    p.def_abstract(lambda x, fn: x)  # eval_shape asks the type only; the check needs values
    return p


def _tol(x: Any) -> float:
    return float(max(x.shape[-1], 1) * np.finfo(x.dtype).eps)


SINGULAR = "{fn} (here the matrix of shape {shape} is singular)."


def _test_nonsingular(a: Any, fn: str) -> None:
    xp = array_module(a)
    s = xp.linalg.svd(a, compute_uv=False)
    if bool(xp.any(s[..., -1] <= _tol(a) * s[..., 0])):
        raise np.linalg.LinAlgError(SINGULAR.format(fn=fn, shape=tuple(a.shape)))


nonsingular_p = _guard("nonsingular", _test_nonsingular)


def _invertible_impl(a: Any, pk: Any, fn: str) -> Any:
    # The sign saved by the forward slogdet (pk, see slogdet_p), not a new decomposition:
    # it catches exactly singular matrices (logabsdet -inf); near them the derivative is
    # finite and as accurate as the conditioning allows.
    if bool(array_module(pk).any(pk[..., 0] == 0)):
        raise np.linalg.LinAlgError(SINGULAR.format(fn=fn, shape=tuple(a.shape)))
    return a


# A guard like those above, reading its verdict off slogdet's pack.
invertible_p = primitive("invertible", _invertible_impl)
invertible_p.def_vjp(lambda ct, ans, a, pk, fn: ct, None)
invertible_p.def_jvp(lambda t, ans, a, pk, fn: t, None)
invertible_p.def_abstract(lambda a, pk, fn: a)
invertible_p.def_batch(_with_factors_batch(invertible_p))
_SLOGDET_SINGULAR = ("the derivative of slogdet's logabsdet is undefined at a singular matrix "
                     "(logabsdet is -inf there; JAX returns NaN/inf); det's derivatives are "
                     "defined everywhere")


# -- det: a primitive, not sign * exp(logabsdet), so that its values are NumPy's exactly.
# Its gradient is the cofactor matrix C = adj(a).T, which stays defined at singular
# matrices (JAX returns it too): computed from the SVD a = U diag(s) Vh as
# C = det(U) det(Vh) conj(U) diag(p) conj(Vh), with p_i the product of the s_k, k != i.
def _excluded_products(s: Any) -> Any:
    """``Q[..., i, j]``: the product of ``s[..., k]`` over ``k`` not in ``{i, j}``.

    No division (s may hold zeros): row ``i`` is ``s`` with ``s_i`` set to 1, and the
    exclusive product at ``j`` is prefix times suffix. ``Q[..., i, i] = prod_{k != i} s_k``.
    """
    xp = array_module(s)
    n = s.shape[-1]
    m = xp.where(xp.eye(n, dtype=bool), 1, xp.broadcast_to(s[..., None, :], s.shape[:-1] + (n, n)))
    ones = xp.ones(m.shape[:-1] + (1,), dtype=m.dtype)
    pre = xp.concatenate([ones, xp.cumprod(m[..., :-1], axis=-1)], axis=-1)
    suf = xp.concatenate([ones, xp.cumprod(xp.flip(m, -1)[..., :-1], axis=-1)], axis=-1)
    return pre * xp.flip(suf, -1)


# The SVD is computed once per det node that is differentiated: det_svd_p packs it (nondiff,
# like eigh_p) as [U | Vh | s | det(U) det(Vh)], shape (..., n, 2n + 2), and the cofactor
# primitives read it, so their own derivatives (second and third order) decompose no more.
def _det_svd_impl(a: Any) -> Any:
    xp = array_module(a)
    u, s, vh = xp.linalg.svd(a)
    c = xp.linalg.det(u) * xp.linalg.det(vh)
    col = s.shape + (1,)
    return xp.concatenate([u, vh, s[..., None].astype(u.dtype),
                           xp.broadcast_to(c[..., None, None], col).astype(u.dtype)], axis=-1)


def _svd_parts(pk: Any) -> tuple:
    xp = array_module(pk)
    n = pk.shape[-2]
    u, vh, s, c = pk[..., :n], pk[..., n:2 * n], pk[..., 2 * n], pk[..., :1, 2 * n + 1:]
    return xp, xp.conj(u), xp.real(s) if s.dtype.kind == "c" else s, xp.conj(vh), c


def _cofactor_impl(a: Any, pk: Any) -> Any:
    xp, u, s, vh, c = _svd_parts(pk)
    p = xp.diagonal(_excluded_products(s), axis1=-2, axis2=-1)
    return c * ((u * p[..., None, :].astype(u.dtype)) @ vh)


def _cofactor_d_impl(a: Any, e: Any, pk: Any) -> Any:
    """The derivative of the cofactor matrix at ``a`` along ``e`` (exact at singular ``a``).

    With ``a + e = U (diag(s) + F) Vh``, the adjugate of a diagonal matrix moves by
    ``G(F)``: ``G_ii = sum_{k != i} Q_ik F_kk`` and ``G_ij = -Q_ij F_ij`` off the diagonal.
    """
    xp, u, s, vh, c = _svd_parts(pk)
    n = s.shape[-1]
    q = _excluded_products(s) * (1 - xp.eye(n, dtype=s.dtype))
    f = xp.swapaxes(u, -1, -2) @ e @ xp.swapaxes(vh, -1, -2)   # U^H e Vh^H (u, vh conj'd)
    fd = xp.diagonal(f, axis1=-2, axis2=-1)
    g = xp.eye(n, dtype=s.dtype) * (q.astype(f.dtype) @ fd[..., None]) - q * xp.swapaxes(f, -1, -2)
    return c * (u @ g @ vh)


_DET3_SINGULAR = "funcflux computes the third derivative of det at invertible matrices only"


def _cofactor_dd(a: Any, e: Any, t: Any) -> Any:
    """Third derivative of det as a matrix: ``d/da cofactor_d(a, e)`` along ``t``.

    Written with inv (so defined for invertible ``a`` only, which the guard checks);
    symmetric in ``e`` and ``t``, so it serves the JVP and the VJP alike.
    """
    a = nonsingular_p(a, fn=_DET3_SINGULAR)
    d = _at_matrix(det_p(a))
    b = _mT(inv_p(a))
    tau = _at_matrix(sum(b * e, axis=(-2, -1)))
    sig = _at_matrix(sum(b * t, axis=(-2, -1)))
    db = -matmul_p(b, matmul_p(_mT(t), b))
    dtau = _at_matrix(sum(db * e, axis=(-2, -1)))
    bet = matmul_p(b, _mT(e))
    return d * (sig * (tau * b - matmul_p(bet, b)) + dtau * b + tau * db
                - matmul_p(matmul_p(db, _mT(e)), b) - matmul_p(bet, db))


det_svd_p = primitive("det_svd", _det_svd_impl, nondiff=True)
det_svd_p.def_batch(_front_batch(det_svd_p))
cofactor_p = primitive("cofactor", _cofactor_impl)
cofactor_p.def_vjp(lambda ct, ans, a, pk: cofactor_d_p(a, ct, pk), None)  # symmetric Hessian
cofactor_p.def_jvp(lambda t, ans, a, pk: cofactor_d_p(a, t, pk), None)
cofactor_p.def_batch(_with_factors_batch(cofactor_p))
cofactor_d_p = primitive("cofactor_d", _cofactor_d_impl)
cofactor_d_p.def_vjp(lambda ct, ans, a, e, pk: _cofactor_dd(a, e, ct),
                     lambda ct, ans, a, e, pk: cofactor_d_p(a, ct, pk), None)
cofactor_d_p.def_jvp(lambda t, ans, a, e, pk: _cofactor_dd(a, e, t),
                     lambda t, ans, a, e, pk: cofactor_d_p(a, t, pk), None)
cofactor_d_p.def_batch(lambda args, dims: (cofactor_d_p(*_core_batch(args, dims, (2, 2, 2))), 0))


def _cofactor(a: Any) -> Any:
    """The cofactor matrix ``adj(a).T``, from one SVD of ``a``."""
    return cofactor_p(a, det_svd_p(a))


det_p = primitive("det", _square_impl("det"))
det_p.def_vjp(lambda ct, ans, a: _at_matrix(ct) * _cofactor(a))
det_p.def_jvp(lambda t, ans, a: sum(_cofactor(a) * t, axis=(-2, -1)))
det_p.def_batch(_front_batch(det_p))

# slogdet_p packs (sign, logabsdet) as [..., 2] in the sign's dtype: one LU, read by the
# output primitives and by the guard of their rules (see the module docstring).
def _slogdet_impl(a: Any) -> Any:
    xp = array_module(a)
    sign, logabs = xp.linalg.slogdet(a)
    return xp.stack([sign, xp.asarray(logabs).astype(sign.dtype)], axis=-1)


def _inv_t(a: Any, pk: Any) -> Any:
    """``inv(a)^T``, after checking ``a`` is invertible (the derivative of logabsdet)."""
    return _mT(inv_p(invertible_p(a, pk, fn=_SLOGDET_SINGULAR)))


slogdet_p = primitive("slogdet", _slogdet_impl, nondiff=True)
slogdet_p.def_batch(_front_batch(slogdet_p))
slogdet_logabs_p = primitive("slogdet_logabs", lambda a, pk: array_module(pk).real(pk[..., 1]))
slogdet_logabs_p.def_vjp(lambda ct, ans, a, pk: _at_matrix(ct) * _inv_t(a, pk), None)
slogdet_logabs_p.def_jvp(lambda t, ans, a, pk: real(sum(_inv_t(a, pk) * t,
                                                                 axis=(-2, -1))), None)
slogdet_logabs_p.def_batch(_with_factors_batch(slogdet_logabs_p))


# For complex input the sign det / |det| moves with the phase: d sign = i Im(tr(a^-1 da)) sign
# (JAX's rule); for real input it is piecewise constant (a slice of the nondiff pack).
slogdet_csign_p = primitive("slogdet_csign", lambda a, pk: pk[..., 0])
slogdet_csign_p.def_vjp(
    lambda ct, ans, a, pk: _at_matrix(1j * imag(ct * ans)) * _inv_t(a, pk), None)
slogdet_csign_p.def_jvp(lambda t, ans, a, pk: 1j * imag(
    sum(_inv_t(a, pk) * t, axis=(-2, -1))) * ans, None)
slogdet_csign_p.def_batch(_with_factors_batch(slogdet_csign_p))


# -- solve ----------------------------------------------------------------------------
def _solve_vjp_b(ct: Any, ans: Any, a: Any, b: Any) -> Any:
    return unbroadcast(solve_p(_mT(a), ct), b)


def _solve_vjp_a(ct: Any, ans: Any, a: Any, b: Any) -> Any:
    return unbroadcast(-matmul_p(solve_p(_mT(a), ct), _mT(ans)), a)


solve_p = primitive("solve", lambda a, b: array_module(a, b).linalg.solve(a, b))
solve_p.def_vjp(_solve_vjp_a, _solve_vjp_b)
solve_p.def_jvp(lambda t, ans, a, b: -solve_p(a, matmul_p(t, ans)),
                lambda t, ans, a, b: solve_p(a, t))
solve_p.def_batch(lambda args, dims: (solve_p(*_core_batch(args, dims, (2, 2))), 0))


def solve(a: Any, b: Any) -> Any:
    """``x`` with ``a @ x == b``, NumPy 2's shapes: ``b`` is ``(M,)`` or ``(..., M, K)``.

    >>> import numpy as np
    >>> solve(2.0 * np.eye(2), np.array([2.0, 4.0]))
    array([1., 2.])
    """
    if ndim(b) == 1:
        return squeeze(solve_p(a, expand_dims(b, -1)), -1)
    return solve_p(a, b)


# -- cholesky -------------------------------------------------------------------------
def _phi(x: Any) -> Any:
    """The lower triangle of ``x`` with its diagonal halved."""
    n = shape(x)[-1]
    e = _eye(n, x)
    xp = array_module(module_value(x))
    return x * (xp.tril(xp.ones((n, n), dtype=_dtype(x))) - 0.5 * e)


def _herm(x: Any) -> Any:
    """The Hermitian part ``(x + x^H) / 2`` (the symmetric part for real ``x``)."""
    return (x + _H(x)) * 0.5


# Complex inputs follow JAX: the rules are those of the function of herm(a), with the
# conjugate transposes there; a VJP is the transpose under Re sum(x * y), i.e. the
# conjugate of the adjoint applied to conj(ct).
# With upper=True the output is U = L^H, so dU = dL^H and U's cotangent is L's as ct^H.
def _cholesky_jvp(t: Any, ans: Any, a: Any, upper: bool) -> Any:
    low = _H(ans) if upper else ans
    linv = inv_p(low)
    dlow = matmul_p(low, _phi(matmul_p(linv, matmul_p(_herm(t), _H(linv)))))
    return _H(dlow) if upper else dlow


def _cholesky_vjp(ct: Any, ans: Any, a: Any, upper: bool) -> Any:
    low, ct = (_H(ans), _H(ct)) if upper else (ans, ct)
    linv = inv_p(low)
    p = _phi(matmul_p(_H(low), conj(ct)))
    return conj(_herm(matmul_p(_H(linv), matmul_p(p, linv))))


def _cholesky_impl(a: Any, upper: bool) -> Any:
    xp = array_module(a)
    if not upper:
        return xp.linalg.cholesky(a)
    if xp is np and np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        return np.linalg.cholesky(a, upper=True)  # reads the upper triangle itself
    # CuPy (no ``upper``): the upper triangle of a is the lower one of a^H; U = L^H.
    herm = xp.conj(xp.swapaxes(a, -1, -2))
    return xp.conj(xp.swapaxes(xp.linalg.cholesky(herm), -1, -2))


cholesky_p = primitive("cholesky", _cholesky_impl)
cholesky_p.def_vjp(_cholesky_vjp)
cholesky_p.def_jvp(_cholesky_jvp)
cholesky_p.def_batch(_front_batch(cholesky_p))


# -- eigh -----------------------------------------------------------------------------
def _eig_gaps(w: Any) -> Any:
    """``F[i, j] = 1 / (w[j] - w[i])`` off the diagonal, 0 on it (distinct eigenvalues)."""
    e = _eye(shape(w)[-1], w)
    return (1.0 - e) / (expand_dims(w, -2) - expand_dims(w, -1) + e)


# eigh runs LAPACK once: eigh_p packs (w, V) as one array [w; V] of shape (..., n+1, n),
# marked nondiff, so that it is a plain array (or a batch tracer) at every level: a residual
# the rules read, never differentiated itself. eigh_w_p(a, P) and eigh_v_p(a, P) slice it;
# their rules are the derivatives with respect to a, and they read the other factor from P
# through the other primitive, so higher orders differentiate it too. Two primitives, not
# one: a function of the eigenvalues alone never runs eigh_v's rules, whose eigenvalue gaps
# are undefined at repeated eigenvalues. eigvalsh (no eigenvectors forward) runs eigh_p in
# its rules, the one decomposition of its backward pass.
def _eigh_impl(a: Any, UPLO: str) -> Any:
    xp = array_module(a)
    w, v = xp.linalg.eigh(a, UPLO=UPLO)
    return xp.concatenate([xp.expand_dims(w, -2).astype(v.dtype), v], axis=-2)


def _eigh_w_impl(a: Any, pk: Any) -> Any:
    w = pk[..., 0, :]
    return array_module(pk).real(w) if w.dtype.kind == "c" else w


def _eigh_w_vjp(ct: Any, ans: Any, a: Any, pk: Any) -> Any:
    v = eigh_v_p(a, pk)
    return matmul_p(conj(v) * expand_dims(ct, -2), _mT(v))


def _eigh_w_jvp(t: Any, ans: Any, a: Any, pk: Any) -> Any:
    # Re diag(v^H t v) is the same for t and t^H, so t needs no symmetrising here.
    v = eigh_v_p(a, pk)
    return real(sum(conj(v) * matmul_p(t, v), axis=-2))


def _eigh_v_vjp(ct: Any, ans: Any, a: Any, pk: Any) -> Any:
    f = _eig_gaps(distinct_eig_p(eigh_w_p(a, pk), fn="eigh"))
    return _herm(matmul_p(conj(ans), matmul_p(f * matmul_p(_mT(ans), ct), _mT(ans))))


def _eigh_v_jvp(t: Any, ans: Any, a: Any, pk: Any) -> Any:
    f = _eig_gaps(distinct_eig_p(eigh_w_p(a, pk), fn="eigh"))
    return matmul_p(ans, f * matmul_p(_H(ans), matmul_p(_herm(t), ans)))


eigh_p = primitive("eigh", _eigh_impl, nondiff=True)
eigh_p.def_batch(_front_batch(eigh_p))
eigh_w_p = primitive("eigh_w", _eigh_w_impl)
eigh_w_p.def_vjp(_eigh_w_vjp, None)
eigh_w_p.def_jvp(_eigh_w_jvp, None)
eigh_w_p.def_batch(_with_factors_batch(eigh_w_p))
eigh_v_p = primitive("eigh_v", lambda a, pk: pk[..., 1:, :])
eigh_v_p.def_vjp(_eigh_v_vjp, None)
eigh_v_p.def_jvp(_eigh_v_jvp, None)
eigh_v_p.def_batch(_with_factors_batch(eigh_v_p))
eigvalsh_p = primitive("eigvalsh",
                       lambda a, UPLO: array_module(a).linalg.eigvalsh(a, UPLO=UPLO))
eigvalsh_p.def_vjp(lambda ct, ans, a, UPLO: _eigh_w_vjp(ct, ans, a, eigh_p(a, UPLO=UPLO)))
eigvalsh_p.def_jvp(lambda t, ans, a, UPLO: _eigh_w_jvp(t, ans, a, eigh_p(a, UPLO=UPLO)))
eigvalsh_p.def_batch(_front_batch(eigvalsh_p))


# -- eig, eigvals (general matrices; complex eigenvalues) ---------------------------------
# eig_p packs (w, V) as [w | V raveled]. NumPy returns real arrays when every eigenvalue is
# real, complex ones otherwise; the rules are the same formulas in either dtype.
def _eig_impl(a: Any) -> Any:
    xp = array_module(a)
    w, v = xp.linalg.eig(a)
    return xp.concatenate([w, v.reshape(a.shape[:-2] + (-1,))], axis=-1)


def _eig_unpack(pk: Any, n: int) -> tuple:
    lead = shape(pk)[:-1]
    return pk[..., :n], reshape(pk[..., n:], lead + (n, n))


REPEATED_EIG = ("{fn}: the eigenvector derivative divides by eigenvalue gaps and is undefined "
                "at repeated eigenvalues (here {vals}). Differentiate the eigenvalues alone "
                "(eigvals, eigvalsh), or perturb the input.")


def _test_distinct_eig(w: Any, fn: str) -> None:
    xp = array_module(w)
    n = w.shape[-1]
    d = xp.where(xp.eye(n, dtype=bool), xp.inf, xp.abs(w[..., :, None] - w[..., None, :]))
    scale = xp.maximum(xp.max(xp.abs(w), axis=-1), xp.finfo(w.dtype).tiny)[..., None, None]
    bad = d <= _tol(w) * scale
    if bool(xp.any(bad)):
        idx = np.argwhere(np.asarray(bad.get() if hasattr(bad, "get") else bad))[0]
        row = w[tuple(idx[:-2])]
        row = row.get() if hasattr(row, "get") else np.asarray(row)
        i, j = int(idx[-2]), int(idx[-1])
        raise np.linalg.LinAlgError(REPEATED_EIG.format(
            fn=fn, vals=f"w[{i}] = {row[i].item()!r} and w[{j}] = {row[j].item()!r}"))


distinct_eig_p = _guard("distinct_eigenvalues", _test_distinct_eig)


def _eig_jvp(t: Any, ans: Any, a: Any) -> Any:
    n = shape(a)[-1]
    w, v = _eig_unpack(ans, n)
    c = solve_p(v, matmul_p(astype(t, _dtype(v)), v))       # V^-1 dA V
    dw = diagonal(c, axis1=-2, axis2=-1)
    dv = matmul_p(v, _eig_gaps(distinct_eig_p(w, fn="eig")) * c)
    # NumPy's eigenvectors have unit norm: keep it (the phase stays a gauge).
    dv = dv - v * expand_dims(real(sum(conj(v) * dv, axis=-2)), -2)
    return concatenate([dw, reshape(dv, shape(dw)[:-1] + (-1,))], axis=-1)


def _eig_vjp(ct: Any, ans: Any, a: Any) -> Any:
    n = shape(a)[-1]
    w, v = _eig_unpack(ans, n)
    gw, gv = _eig_unpack(ct, n)
    # The transpose of _eig_jvp under <x, y> = Re sum(x * y).
    rho = real(sum(gv * v, axis=-2))
    gv = gv - conj(v) * expand_dims(rho, -2)
    k = _eig_gaps(distinct_eig_p(w, fn="eig")) * matmul_p(_mT(v), gv) + \
        _eye(n, v) * expand_dims(gw, -1)
    g = solve_p(_mT(v), matmul_p(k, _mT(v)))
    return real(g) if _dtype(a).kind != "c" else g


eig_p = primitive("eig", _eig_impl)
eig_p.def_vjp(_eig_vjp)
eig_p.def_jvp(_eig_jvp)
eig_p.def_batch(_front_batch(eig_p))


def _eigvals_jvp(t: Any, ans: Any, a: Any) -> Any:
    _, v = _eig_unpack(eig_p(a), shape(a)[-1])
    dw = diagonal(solve_p(v, matmul_p(astype(t, _dtype(v)), v)), axis1=-2, axis2=-1)
    return dw if _dtype(ans).kind == "c" else real(dw)


def _eigvals_vjp(ct: Any, ans: Any, a: Any) -> Any:
    n = shape(a)[-1]
    _, v = _eig_unpack(eig_p(a), n)
    g = solve_p(_mT(v), matmul_p(_eye(n, v) * expand_dims(astype(ct, _dtype(v)), -1),
                                 _mT(v)))
    return real(g) if _dtype(a).kind != "c" else g


def _eigvals_impl(a: Any) -> Any:
    return array_module(a).linalg.eigvals(a)


# NumPy's eig and eigvals of a real matrix return real arrays when every eigenvalue is
# real, complex ones otherwise, and the rules follow that dtype: the type of the result
# depends on the values, so a staged program (jit) cannot hold them
# (funcflux.transforms.staging asks impl.values_decide_type(*args) and refuses).
_eig_impl.values_decide_type = lambda a: not is_complex(a)  # type: ignore[attr-defined]
_eigvals_impl.values_decide_type = _eig_impl.values_decide_type  # type: ignore[attr-defined]
eigvals_p = primitive("eigvals", _eigvals_impl)
eigvals_p.def_vjp(_eigvals_vjp)
eigvals_p.def_jvp(_eigvals_jvp)
eigvals_p.def_batch(_front_batch(eigvals_p))


# -- svd ------------------------------------------------------------------------------
# svd_p packs (U, s, Vh) of the reduced decomposition into one array, U and Vh raveled
# and s between them (cast to U's dtype): one LAPACK call gives every output, and the
# rules read all three factors from ``ans`` instead of recomputing the decomposition.
def _svd_impl(a: Any, full_matrices: bool) -> Any:
    xp = array_module(a)
    u, s, vh = xp.linalg.svd(a, full_matrices=full_matrices)
    lead = a.shape[:-2]
    return xp.concatenate([u.reshape(lead + (-1,)), s.astype(u.dtype),
                           vh.reshape(lead + (-1,))], axis=-1)


def _svd_pack(u: Any, s: Any, vh: Any) -> Any:
    lead = shape(u)[:-2]
    return concatenate([reshape(u, lead + (-1,)), astype(s, _dtype(u)),
                            reshape(vh, lead + (-1,))], axis=-1)


def _svd_unpack(pk: Any, m: int, n: int, full: bool = False) -> tuple:
    k = min(m, n)
    ku, kv = (m, n) if full else (k, k)
    lead = shape(pk)[:-1]
    u = reshape(pk[..., :m * ku], lead + (m, ku))
    s = real(pk[..., m * ku:m * ku + k])
    vh = reshape(pk[..., m * ku + k:], lead + (kv, n))
    return u, s, vh


REPEATED_SV = (
    "{fn}: the derivative of U and Vh is undefined where singular values repeat{zero} "
    "(here {vals}): the singular vectors are then any basis of a subspace. Differentiate "
    "a function that does not depend on that choice through svdvals or "
    "svd(compute_uv=False), or perturb the input.")


def _test_distinct_sv(s: Any, fn: str) -> None:
    # s (..., k) descending; for a non-square matrix a trailing 0 is appended by the
    # caller, since a zero singular value there leaves its vector free too.
    xp = array_module(s)
    gaps = s[..., :-1] - s[..., 1:]
    tol = _tol(s) * xp.maximum(s[..., :1], xp.finfo(s.dtype).tiny)
    bad = gaps <= tol
    if bool(xp.any(bad)):
        i = np.argwhere(np.asarray(bad.get() if hasattr(bad, "get") else bad))[0]
        row = s[tuple(i[:-1])]
        row = row.get() if hasattr(row, "get") else np.asarray(row)
        j = int(i[-1])
        vals = f"s[{j}] = {float(row[j])!r} and s[{j + 1}] = {float(row[j + 1])!r}"
        raise np.linalg.LinAlgError(REPEATED_SV.format(
            fn=fn, vals=vals, zero=", or a singular value is 0 (non-square input)"
            if "non-square" in fn else ""))


distinct_sv_p = _guard("distinct_singular_values", _test_distinct_sv)


def _checked_sv(s: Any, m: int, n: int) -> Any:
    if m == n:
        return distinct_sv_p(s, fn="svd")
    z = zeros_like(s[..., :1])
    return distinct_sv_p(concatenate([s, z], axis=-1), fn="svd (non-square)")[..., :-1]


def _safe_inv(s: Any) -> Any:
    """``1 / s`` with 0 where ``s == 0`` (JAX's choice for the phase term of a zero value)."""
    zero = s == 0
    return where(zero, 0.0, 1.0 / where(zero, 1.0, s))


def _svd_factors(ans: Any, a: Any, full_matrices: bool) -> tuple:
    m, n = shape(a)[-2:]
    u, s, vh = _svd_unpack(ans, m, n, full_matrices)
    k = min(m, n)
    return m, n, u[..., :k], s, vh[..., :k, :]


def _svd_jvp(t: Any, ans: Any, a: Any, full_matrices: bool) -> Any:
    if full_matrices and shape(a)[-1] != shape(a)[-2]:
        raise NotImplementedError(_complement_msg(a))
    m, n, u, s, vh = _svd_factors(ans, a, False)
    v = _H(vh)
    ds_mat = matmul_p(_H(u), matmul_p(t, v))
    ds = real(diagonal(ds_mat, axis1=-2, axis2=-1))
    sc = _checked_sv(s, m, n)
    f = astype(_eig_gaps(sc * sc), _dtype(a))
    srow, scol = expand_dims(sc, -2), expand_dims(sc, -1)
    dss, sds = ds_mat * srow, scol * ds_mat
    omega_u = f * (dss + _H(dss))
    if _dtype(a).kind == "c":   # the phase gauge: JAX's choice, Im(diag(U^H dA V)) / s
        omega_u = omega_u + 0.5 * (ds_mat - _H(ds_mat)) * _eye(shape(s)[-1], a) * \
            expand_dims(_safe_inv(sc), -1)
    du = matmul_p(u, omega_u)
    dv = matmul_p(v, f * (sds + _H(sds)))
    if m > n:
        dav = matmul_p(t, v)
        du = du + (dav - matmul_p(u, matmul_p(_H(u), dav))) / srow
    if n > m:
        dahu = matmul_p(_H(t), u)
        dv = dv + (dahu - matmul_p(v, matmul_p(vh, dahu))) / srow
    return _svd_pack(du, ds, _H(dv))


def _svd_vjp(ct: Any, ans: Any, a: Any, full_matrices: bool) -> Any:
    m, n, u, s, vh = _svd_factors(ans, a, full_matrices)
    gu, gs, gvh = _svd_unpack(ct, m, n, full_matrices)
    k = min(m, n)
    if full_matrices and m != n:
        # Reverse mode reaches here with zeros for the extra columns of U (rows of Vh) when
        # only S and the first min(M, N) are used: their contribution is then exactly zero.
        extra = gu[..., k:] if m > n else gvh[..., k:, :]
        # (+ 0 * guard(...): the guard stays on the data path, so it always runs.)
        gs = gs + sum(zero_cotangent_p(extra, fn=_complement_msg(a)), axis=(-2, -1),
                          keepdims=True)[..., 0] * 0
        gu, gvh = gu[..., :k], gvh[..., :k, :]
    # The transpose of _svd_jvp under <x, y> = Re sum(x * y): conj of the adjoint of conj(ct).
    gu, gvh = conj(gu), conj(gvh)
    sc = _checked_sv(s, m, n)
    f = astype(_eig_gaps(sc * sc), _dtype(a))
    srow, scol = expand_dims(sc, -2), expand_dims(sc, -1)
    v, gv = _H(vh), _H(gvh)
    j = f * matmul_p(_H(u), gu)
    k = f * matmul_p(vh, gv)
    inner_m = (j + _H(j)) * srow + scol * (k + _H(k)) + \
        _eye(shape(s)[-1], a) * expand_dims(astype(gs, _dtype(a)), -1)
    if _dtype(a).kind == "c":
        d = diagonal(matmul_p(_H(u), gu), axis1=-2, axis2=-1)
        inner_m = inner_m + _eye(shape(s)[-1], a) * expand_dims(
            1j * imag(d) * _safe_inv(sc), -1)
    if m > n:
        gus = gu / srow
        g = matmul_p(matmul_p(u, inner_m) + gus - matmul_p(u, matmul_p(_H(u), gus)), vh)
    elif n > m:
        sgvh = _H(gv) / scol
        g = matmul_p(u, matmul_p(inner_m, vh) + sgvh - matmul_p(matmul_p(sgvh, v), vh))
    else:
        g = matmul_p(u, matmul_p(inner_m, vh))
    return conj(g)


svd_p = primitive("svd", _svd_impl)
svd_p.def_vjp(_svd_vjp)
svd_p.def_jvp(_svd_jvp)
svd_p.def_batch(_front_batch(svd_p))

FULL_NONSQUARE = (
    "svd(full_matrices=True) of a non-square matrix (shape {shape}): the extra {what} are "
    "any orthonormal completion that LAPACK picks, so they have no derivative. Pass "
    "full_matrices=False (the reduced U and Vh are differentiable), or use only the "
    "singular values (svdvals or compute_uv=False).")


def _complement_msg(a: Any) -> str:
    m, n = shape(a)[-2:]
    return FULL_NONSQUARE.format(
        shape=tuple(shape(a)), what=f"{m - n} columns of U" if m > n else f"{n - m} rows of Vh")


def _test_zero(ct: Any, fn: str) -> None:
    if bool(array_module(ct).any(ct != 0)):
        raise NotImplementedError(fn)


zero_cotangent_p = _guard("zero_cotangent", _test_zero)


def _svdvals_jvp(t: Any, ans: Any, a: Any) -> Any:
    m, n = shape(a)[-2:]
    u, _, vh = _svd_unpack(svd_p(a, full_matrices=False), m, n)
    return real(sum(conj(u) * matmul_p(t, _H(vh)), axis=-2))


def _svdvals_vjp(ct: Any, ans: Any, a: Any) -> Any:
    m, n = shape(a)[-2:]
    u, _, vh = _svd_unpack(svd_p(a, full_matrices=False), m, n)
    g = matmul_p(conj(u) * expand_dims(astype(ct, _dtype(a)), -2), conj(vh))
    return g


svdvals_p = primitive("svdvals", lambda a: array_module(a).linalg.svd(a, compute_uv=False))
svdvals_p.def_vjp(_svdvals_vjp)
svdvals_p.def_jvp(_svdvals_jvp)
svdvals_p.def_batch(_front_batch(svdvals_p))


# -- qr -------------------------------------------------------------------------------
# qr_p packs the reduced (Q, R) (raveled, side by side) for the reason svd_p does.
def _qr_impl(a: Any, mode: str) -> Any:
    q, r = array_module(a).linalg.qr(a, mode=mode)
    lead = a.shape[:-2]
    return array_module(a).concatenate([q.reshape(lead + (-1,)), r.reshape(lead + (-1,))],
                                       axis=-1)


def _qr_unpack(pk: Any, m: int, n: int, mode: str = "reduced") -> tuple:
    k = m if mode == "complete" else min(m, n)
    lead = shape(pk)[:-1]
    return (reshape(pk[..., :m * k], lead + (m, k)),
            reshape(pk[..., m * k:], lead + (k, n)))


def _tril_strict(x: Any) -> Any:
    n = shape(x)[-1]
    xp = array_module(module_value(x))
    return x * xp.tril(xp.ones((n, n), dtype=np.finfo(_dtype(x)).dtype), -1)


def _qr_tall_jvp(q: Any, r: Any, t: Any) -> tuple:
    """(dQ, dR) for M >= N (J. Townsend's derivation, as JAX's QR JVP)."""
    w = _mT(solve_p(_mT(r), _mT(t)))                  # dA R^-1
    c = matmul_p(_H(q), w)
    low = _tril_strict(c)
    om = low - _H(low)
    if _dtype(c).kind == "c":
        om = om + 1j * _eye(shape(c)[-1], real(c)) * imag(c)
    return matmul_p(q, om - c) + w, matmul_p(c - om, r)


def _qr_tall_vjp(q: Any, r: Any, gq: Any, gr: Any) -> Any:
    # The transpose of _qr_tall_jvp under <x, y> = Re sum(x * y): conj of its adjoint at
    # conj(ct), with M = Q^H gQ - gR R^H.
    gq, gr = conj(gq), conj(gr)
    mm = matmul_p(_H(q), gq) - matmul_p(gr, _H(r))
    nn = _tril_strict(mm - _H(mm)) - mm
    if _dtype(mm).kind == "c":
        nn = nn + 1j * _eye(shape(mm)[-1], real(mm)) * imag(mm)
    x = gq + matmul_p(q, nn)
    return conj(_H(solve_p(r, _H(x))))               # x R^-H, conjugated


def _qr_jvp(t: Any, ans: Any, a: Any, mode: str) -> Any:
    m, n = shape(a)[-2:]
    if mode == "complete" and m > n:
        raise NotImplementedError(QR_COMPLETE.format(shape=tuple(shape(a)), extra=m - n))
    q, r = _qr_unpack(ans, m, n)
    if m >= n:
        dq, dr = _qr_tall_jvp(q, r, t)
    else:  # A = [X | Y]: Q R1 = X (square), R2 = Q^H Y
        dq, dr1 = _qr_tall_jvp(q, r[..., :m], t[..., :m])
        y = a[..., m:]
        dr = concatenate([dr1, matmul_p(_H(dq), y) + matmul_p(_H(q), t[..., m:])], axis=-1)
    lead = shape(dq)[:-2]
    return concatenate([reshape(dq, lead + (-1,)), reshape(dr, lead + (-1,))],
                           axis=-1)


def _qr_vjp(ct: Any, ans: Any, a: Any, mode: str) -> Any:
    m, n = shape(a)[-2:]
    q, r = _qr_unpack(ans, m, n, mode)
    gq, gr = _qr_unpack(ct, m, n, mode)
    if mode == "complete" and m > n:
        # Zero cotangents for the extra columns of Q (see _svd_vjp); R's extra rows are 0.
        msg = QR_COMPLETE.format(shape=tuple(shape(a)), extra=m - n)
        gr = gr[..., :n, :] + sum(zero_cotangent_p(gq[..., n:], fn=msg), axis=(-2, -1),
                                      keepdims=True) * 0
        q, r, gq = q[..., :n], r[..., :n, :], gq[..., :n]
    if m >= n:
        return _qr_tall_vjp(q, r, gq, gr)
    y, gr2 = a[..., m:], gr[..., m:]
    gx = _qr_tall_vjp(q, r[..., :m], gq + conj(matmul_p(y, _mT(gr2))), gr[..., :m])
    return concatenate([gx, matmul_p(conj(q), gr2)], axis=-1)


qr_p = primitive("qr", _qr_impl)
qr_p.def_vjp(_qr_vjp)
qr_p.def_jvp(_qr_jvp)
qr_p.def_batch(_front_batch(qr_p))


QR_COMPLETE = ("qr(mode='complete') of a matrix with more rows than columns (shape {shape}): "
               "the last {extra} columns of Q are any orthonormal completion that LAPACK "
               "picks, so they have no derivative. Use mode='reduced'.")


# -- pinv (lstsq builds on it) -----------------------------------------------------------
def _pinv_impl(a: Any, rcond: float) -> Any:
    # NumPy's own steps, written against the array module (CuPy's pinv lacks rtol).
    xp = array_module(a)
    u, s, vh = xp.linalg.svd(a, full_matrices=False)
    large = s > rcond * xp.max(s, axis=-1, keepdims=True)
    sinv = xp.where(large, 1 / xp.where(large, s, 1), 0).astype(s.dtype)
    return xp.conj(xp.swapaxes(vh, -1, -2)) @ (sinv[..., None] * xp.conj(xp.swapaxes(u, -1, -2)))


def _pinv_jvp(t: Any, ans: Any, a: Any, rcond: float) -> Any:
    # Golub and Pereyra (1973), as JAX's pinv JVP: exact where the rank is locally constant.
    m, n = shape(a)[-2:]
    p, th = ans, _H(t)
    return (-matmul_p(p, matmul_p(t, p))
            + matmul_p(matmul_p(p, _H(p)), matmul_p(th, _eye(m, a) - matmul_p(a, p)))
            + matmul_p(_eye(n, a) - matmul_p(p, a), matmul_p(th, matmul_p(_H(p), p))))


def _pinv_vjp(ct: Any, ans: Any, a: Any, rcond: float) -> Any:
    m, n = shape(a)[-2:]
    p = ans
    gt = _mT(ct)
    return (-matmul_p(_mT(p), matmul_p(ct, _mT(p)))
            + conj(matmul_p(_eye(m, a) - matmul_p(a, p), matmul_p(gt, matmul_p(p, _H(p)))))
            + conj(matmul_p(matmul_p(_H(p), p), matmul_p(gt, _eye(n, a) - matmul_p(p, a)))))


pinv_p = primitive("pinv", _pinv_impl)
pinv_p.def_vjp(_pinv_vjp)
pinv_p.def_jvp(_pinv_jvp)
pinv_p.def_batch(_front_batch(pinv_p))



# -- expm (public as funcflux.scipy.linalg.expm) ------------------------------------------
# Pade [13/13] with scaling and squaring (Higham 2005), for inputs SciPy cannot take.
_PADE13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
           129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
           40840800.0, 960960.0, 16380.0, 182.0, 1.0)
_THETA13 = 5.371920351148152


def _expm_pade(a: Any) -> Any:
    xp = array_module(a)
    n = a.shape[-1]
    norm1 = xp.max(xp.sum(xp.abs(a), axis=-2), axis=-1)
    sc = xp.maximum(0, xp.ceil(xp.log2(xp.maximum(norm1, 1e-300) / _THETA13)))
    steps = int(xp.max(sc)) if sc.size else 0
    x = a / (2.0 ** sc)[..., None, None].astype(a.dtype)
    b = _PADE13
    eye = xp.eye(n, dtype=a.dtype)
    x2 = x @ x
    x4 = x2 @ x2
    x6 = x4 @ x2
    u = x @ (x6 @ (b[13] * x6 + b[11] * x4 + b[9] * x2)
             + b[7] * x6 + b[5] * x4 + b[3] * x2 + b[1] * eye)
    v = x6 @ (b[12] * x6 + b[10] * x4 + b[8] * x2) + b[6] * x6 + b[4] * x4 + b[2] * x2 + b[0] * eye
    r = xp.linalg.solve(v - u, v + u)
    for i in range(steps):  # matrices that need fewer squarings keep their value
        r = xp.where((i < sc)[..., None, None], r @ r, r)
    return r


_SCIPY_EXPM: list = []


def _expm_impl(a: Any) -> Any:
    if type(a) is np.ndarray:
        if not _SCIPY_EXPM:
            try:  # SciPy's own expm when installed (imported here, never at import time)
                from scipy.linalg import expm as f
            except ImportError:
                f = None
            _SCIPY_EXPM.append(f)
        if _SCIPY_EXPM[0] is not None and a.size:
            return np.asarray(_SCIPY_EXPM[0](a), dtype=a.dtype)
    return _expm_pade(a)


def _expm_frechet(a: Any, e: Any) -> Any:
    """The Frechet derivative of expm at ``a`` along ``e``: expm([[a, e], [0, a]])[:n, n:]."""
    n = shape(a)[-1]
    e = astype(e, np.result_type(_dtype(a), _dtype(e)))
    a = astype(a, _dtype(e))
    top = concatenate([a, e], axis=-1)
    bottom = concatenate([zeros_like(a), a], axis=-1)
    return expm_p(concatenate([top, bottom], axis=-2))[..., :n, n:]


expm_p = primitive("expm", _expm_impl)
expm_p.def_jvp(lambda t, ans, a: _expm_frechet(a, t))
# The transpose of E -> L(A, E) under sum(x * y) is G -> L(A^T, G).
expm_p.def_vjp(lambda ct, ans, a: astype(_expm_frechet(_mT(a), ct), _dtype(a))
               if _dtype(a).kind == "c" else real(_expm_frechet(_mT(a), ct)))
expm_p.def_batch(_front_batch(expm_p))
