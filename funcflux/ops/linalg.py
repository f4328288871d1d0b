"""Linear algebra: products (``matmul``, ``einsum``) and the ``numpy.linalg`` functions.

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
which divide by the gaps, never run). Outside a transform each function runs its
LAPACK routine once and returns NumPy's own result type. ``svd``, ``qr`` and
``eig`` instead pack all their outputs into one array (``svd_p``, ``qr_p``,
``eig_p``: one LAPACK call, and rules that read every factor from ``ans``), which
the public function slices apart. Where a derivative is undefined (repeated
singular values or eigenvalues, a singular matrix for ``slogdet``) an identity
*guard* primitive inside the rule checks the concrete values and raises an error
that names the function, instead of producing inf or NaN.

Complex inputs follow JAX: a JVP is the real-linear tangent map and a VJP its
transpose under ``Re sum(x * y)``, so products (``matmul``, ``solve``, ``inv``,
``det``) have no conjugates in their rules, while the Hermitian functions
(``cholesky``, ``eigh``) and ``svd``/``qr``/``eig`` conjugate where their maps do.

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

import functools
import string
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

import funcflux.numpy as fnp

from ..core.dispatch import implements, implements_ufunc
from ..core.backend import array_module
from ..core.primitive import primitive
from ..core.trace import Tracer, concrete
from .common import is_tracer, ndim, norm_axis, shape
from .base import transpose_p
from .base import batch_size, bdim_to_front, move_bdim
from .common import no_out
from .base import unbroadcast

__all__ = [
    "cross",
    "dot",
    "einsum",
    "inner",
    "kron",
    "matmul",
    "matvec",
    "outer",
    "tensordot",
    "vdot",
    "vecdot",
    "vecmat",
]

#: ``funcflux.numpy.linalg``: the traced versions of ``numpy.linalg`` functions.
namespace = types.ModuleType("funcflux.numpy.linalg", "Traced versions of numpy.linalg functions.")

MATMUL_0D = ("matmul: Input operand {i} does not have enough dimensions (has 0, gufunc core "
             "with signature (n?,k),(k,m?)->(n?,m?) requires 1)")
NOT_SQUARE = "{fn}: Last 2 dimensions of the array must be square (got shape {shape})."
TOO_FEW_DIMS = ("{fn}: {ndim}-dimensional array given. Array must be at least "
                "two-dimensional.")


def _linalg(np_func: Any, name: str | None = None) -> Any:
    """Put the decorated function on ``fnp.linalg`` (as ``name``) and route ``np_func`` to it."""
    def deco(fn: Any) -> Any:
        setattr(namespace, name or fn.__name__, fn)
        return implements(np_func)(fn)
    return deco


def _asarray(x: Any) -> Any:
    """Lists and Python numbers become arrays; arrays and traced values pass through."""
    return x if isinstance(x, Tracer) or hasattr(x, "shape") else np.asarray(x)


def _mT(x: Any) -> Any:
    nd = ndim(x)
    # transpose_p directly: swapaxes' axis checks cost more than the transpose itself here.
    return transpose_p(x, axes=tuple(range(nd - 2)) + (nd - 1, nd - 2))


def _sym(x: Any) -> Any:
    return (x + _mT(x)) * 0.5


def _dtype(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    return d if d is not None else np.result_type(x)


def _eye(n: int, like: Any) -> Any:
    """An identity constant in the array module and dtype of ``like``."""
    return array_module(concrete(like)).eye(n, dtype=_dtype(like))


def _ones(n: int, like: Any) -> Any:
    return array_module(concrete(like)).ones((n,), dtype=_dtype(like))


def _check_square(fn: str, a: Any) -> None:
    s = shape(a)
    if len(s) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn=fn, ndim=len(s)))
    if s[-1] != s[-2]:
        raise np.linalg.LinAlgError(NOT_SQUARE.format(fn=fn, shape=s))


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
                x = fnp.reshape(x, s[:1] + (1,) * pad + s[1:])
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
        g = ct * y if nx == 1 else fnp.expand_dims(ct, -1) * y
    elif nx == 1:    # (k,) @ (..., k, m) -> (..., m)
        g = matmul_p(y, ct) if ny == 2 else \
            fnp.squeeze(matmul_p(y, fnp.expand_dims(ct, -1)), -1)
    else:
        g = matmul_p(ct, _mT(y))
    return unbroadcast(g, x)


def _matmul_vjp_y(ct: Any, ans: Any, x: Any, y: Any) -> Any:
    nx, ny = ndim(x), ndim(y)
    if nx == 1:      # (k,) @ (..., k, m) -> (..., m); or (k,) @ (k,) -> ()
        g = ct * x if ny == 1 else fnp.expand_dims(x, -1) * fnp.expand_dims(ct, -2)
    elif ny == 1:    # (..., n, k) @ (k,) -> (..., n)
        g = matmul_p(ct, x) if nx == 2 else \
            fnp.squeeze(matmul_p(fnp.expand_dims(ct, -2), x), -2)
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
        x = fnp.expand_dims(x, -2)
    if ny == 1:
        y = fnp.expand_dims(y, -1)
    x, y = _core_batch([x, y], [0 if dx is not None else None, 0 if dy is not None else None],
                       (2, 2))
    out = matmul_p(x, y)
    if nx == 1 and ny == 1:
        return fnp.squeeze(out, (-2, -1)), 0
    if nx == 1:
        return fnp.squeeze(out, -2), 0
    if ny == 1:
        return fnp.squeeze(out, -1), 0
    return out, 0


matmul_p = primitive("matmul", lambda x, y: array_module(x, y).matmul(x, y))
matmul_p.def_linear(_matmul_vjp_x, _matmul_vjp_y)
matmul_p.def_batch(_matmul_batch)


@_linalg(np.linalg.matmul)
def matmul(x1: Any, x2: Any, /, out: Any = None, **kwargs: Any) -> Any:
    """``x1 @ x2`` with NumPy's rules for 1-D operands and broadcast leading axes.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.sum(a @ np.array([1.0, 2.0])))(np.ones((3, 2)))[0]
    array([1., 2.])
    """
    no_out("matmul", out)
    x1, x2 = _asarray(x1), _asarray(x2)
    for i, x in enumerate((x1, x2)):
        if ndim(x) == 0:
            raise ValueError(MATMUL_0D.format(i=i))
    return matmul_p(x1, x2)


implements_ufunc(np.matmul, matmul)


def _matvec_impl(x1: Any, x2: Any) -> Any:
    return fnp.squeeze(matmul(x1, fnp.expand_dims(x2, -1)), -1)


def matvec(x1: Any, x2: Any, /) -> Any:
    """``np.matvec``: stacked matrices times stacked vectors, ``(..., m, n), (..., n)``."""
    x1, x2 = _asarray(x1), _asarray(x2)
    if ndim(x1) < 2 or ndim(x2) < 1:
        raise ValueError("matvec: needs a matrix (..., m, n) and a vector (..., n)")
    return _matvec_impl(x1, x2)


def vecmat(x1: Any, x2: Any, /) -> Any:
    """``np.vecmat``: stacked (conjugated) vectors times stacked matrices."""
    x1, x2 = _asarray(x1), _asarray(x2)
    if ndim(x1) < 1 or ndim(x2) < 2:
        raise ValueError("vecmat: needs a vector (..., m) and a matrix (..., m, n)")
    return fnp.squeeze(matmul(fnp.expand_dims(fnp.conj(x1), -2), x2), -2)


def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """``np.vecdot``: ``sum(conj(x1) * x2, axis)``."""
    x1, x2 = _asarray(x1), _asarray(x2)
    return fnp.sum(fnp.conj(x1) * x2, axis=axis)


if hasattr(np, "matvec"):
    implements_ufunc(np.matvec, matvec)
    implements_ufunc(np.vecmat, vecmat)
if hasattr(np, "vecdot"):
    implements_ufunc(np.vecdot, vecdot)
    _linalg(np.linalg.vecdot)(vecdot)


# -- products composed of matmul ------------------------------------------------------
@implements(np.tensordot)
def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    """``np.tensordot``: transposes and reshapes around one matrix product (as NumPy does).

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.tensordot(np.ones((2, 3, 4)), np.ones((3, 4, 5)), axes=2).shape
    (2, 5)
    """
    a, b = _asarray(a), _asarray(b)
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
    a2 = fnp.reshape(fnp.transpose(a, tuple(free_a + ax_a)), (-1, k))
    b2 = fnp.reshape(fnp.transpose(b, tuple(ax_b + free_b)), (k, -1))
    return fnp.reshape(matmul_p(a2, b2), out_shape)


@implements(np.dot)
def dot(a: Any, b: Any, out: Any = None) -> Any:
    """``np.dot``: a product for 0-d, ``matmul`` for 1-D and 2-D, ``tensordot`` beyond.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> float(fnp.dot(np.array([1.0, 2.0]), np.array([3.0, 4.0])))
    11.0
    """
    no_out("dot", out)
    a, b = _asarray(a), _asarray(b)
    na, nb = ndim(a), ndim(b)
    if na == 0 or nb == 0:
        return a * b
    if nb <= 2 and (na <= 2 or nb == 1):
        # matmul agrees with dot here: (..., n) @ (n,) and (n,)/(m, n) @ (n, k).
        return matmul_p(a, b)
    return tensordot(a, b, axes=([na - 1], [nb - 2]))


@implements(np.inner)
def inner(a: Any, b: Any) -> Any:
    """``np.inner``: contracts the last axes of ``a`` and ``b``."""
    a, b = _asarray(a), _asarray(b)
    na, nb = ndim(a), ndim(b)
    if na == 0 or nb == 0:
        return a * b
    if nb == 1:
        return matmul_p(a, b)
    return tensordot(a, b, axes=([na - 1], [nb - 1]))


@implements(np.vdot)
def vdot(a: Any, b: Any) -> Any:
    """``np.vdot``: the dot product of the flattened arrays, ``a`` conjugated."""
    a, b = fnp.reshape(fnp.conj(_asarray(a)), (-1,)), fnp.reshape(_asarray(b), (-1,))
    return matmul_p(a, b)


@implements(np.outer)
def outer(a: Any, b: Any, out: Any = None) -> Any:
    """``np.outer``: ``ravel(a)[:, None] * ravel(b)[None, :]``."""
    no_out("outer", out)
    a, b = fnp.reshape(_asarray(a), (-1, 1)), fnp.reshape(_asarray(b), (1, -1))
    return a * b


@_linalg(np.linalg.outer, "outer")
def _linalg_outer(x1: Any, x2: Any, /) -> Any:
    if ndim(x1) != 1 or ndim(x2) != 1:
        raise ValueError("Input arrays must be one-dimensional, but they are "
                         f"x1.ndim={ndim(x1)} and x2.ndim={ndim(x2)}.")
    return outer(x1, x2)



@_linalg(np.linalg.tensordot, "tensordot")
def _linalg_tensordot(x1: Any, x2: Any, /, *, axes: Any = 2) -> Any:
    return tensordot(x1, x2, axes)



@implements(np.kron)
def kron(a: Any, b: Any) -> Any:
    """``np.kron``: interleave the axes of ``a`` and ``b`` by broadcasting, then merge pairs."""
    a, b = _asarray(a), _asarray(b)
    sa, sb = shape(a), shape(b)
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    a = fnp.reshape(a, tuple(v for n in sa for v in (n, 1)))
    b = fnp.reshape(b, tuple(v for n in sb for v in (1, n)))
    return fnp.reshape(a * b, tuple(m * n for m, n in zip(sa, sb)))


@implements(np.cross)
def cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1,
          axis: int | None = None) -> Any:
    """``np.cross`` of 3-vectors (2-vectors, deprecated by NumPy 2, are not supported)."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a = fnp.moveaxis(_asarray(a), axisa, -1)
    b = fnp.moveaxis(_asarray(b), axisb, -1)
    na, nb = shape(a)[-1], shape(b)[-1]
    if (na, nb) != (3, 3):
        raise NotImplementedError(
            f"cross: funcflux supports 3-vectors only; got vectors of length {na} and {nb}. "
            "Pad 2-vectors with a zero third component.")
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    c = fnp.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    return fnp.moveaxis(c, -1, axisc)


@_linalg(np.linalg.cross, "cross")
def _linalg_cross(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    if shape(x1)[axis] != 3 or shape(x2)[axis] != 3:
        raise ValueError("Both input arrays must be (arrays of) 3-dimensional vectors")
    return cross(x1, x2, axis=axis)



@_linalg(np.linalg.multi_dot)
def multi_dot(arrays: Sequence[Any], *, out: Any = None) -> Any:
    """``np.linalg.multi_dot``, multiplied left to right."""
    no_out("multi_dot", out)
    arrays = [_asarray(x) for x in arrays]
    if len(arrays) < 2:
        raise ValueError("Expecting at least two arrays.")
    res = arrays[0]
    for x in arrays[1:]:
        res = matmul(res, x)
    return res


@_linalg(np.linalg.matrix_transpose)
def matrix_transpose(x: Any, /) -> Any:
    """``np.linalg.matrix_transpose``: swap the last two axes."""
    if ndim(x) < 2:
        raise ValueError("Input array must be at least 2-dimensional")
    return _mT(x)


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
        g = fnp.reshape(g, shape(x))
    dx = getattr(x, "dtype", None)
    if dx is not None and g.dtype != dx:
        g = fnp.astype(g, dx)
    return g


def _einsum_batch(args: list, dims: list, subs: tuple, out: str) -> tuple:
    z = next(_fresh("".join(subs) + out), None)
    if z is None:
        raise NotImplementedError("einsum under vmap needs a free subscript letter, but all "
                                  "52 are in use.")
    new = tuple(s if d is None else s[:d] + z + s[d:] for s, d in zip(subs, dims))
    return einsum_p(*args, subs=new, out=z + out), 0


einsum_p = primitive("einsum", _einsum_impl)
einsum_p.def_linear(_einsum_transpose, variadic=True)
einsum_p.def_batch(_einsum_batch)


@functools.lru_cache(maxsize=512)
def _parse_einsum(subscripts: str, ndims: tuple) -> tuple[tuple, str]:
    """Explicit subscripts for operands of ranks ``ndims``: '...' spelled out in letters."""
    s = subscripts.replace(" ", "")
    if s.count("->") > 1:
        raise ValueError("einsum: subscripts string contains more than one '->'")
    lhs, rhs = s.split("->") if "->" in s else (s, None)
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        more = "more" if len(ndims) > len(terms) else "fewer"
        raise ValueError(f"einsum: {more} operands ({len(ndims)}) were provided than "
                         f"specified in the subscripts string ({len(terms)})")
    for t in terms + ([rhs] if rhs is not None else []):
        bare = t.replace("...", "")
        if not all(c in _LETTERS for c in bare) or t.count("...") > 1:
            raise ValueError(f"einsum: invalid subscript term {t!r}: use letters and at "
                             "most one '...'")
    ranks = []
    for k, (t, nd) in enumerate(zip(terms, ndims)):
        named = len(t.replace("...", ""))
        r = nd - named if "..." in t else 0
        if r < 0 or ("..." not in t and named != nd):
            raise ValueError(f"einsum: operand {k} has {nd} dimension(s) but its subscripts "
                             f"{t!r} name {named}")
        ranks.append(r)
    e = max(ranks, default=0)
    ell = "".join(c for c, _ in zip(_fresh(s), range(e)))
    if len(ell) < e:
        raise ValueError("einsum: too many dimensions for the 52 subscript letters")
    ins = tuple(t.replace("...", ell[e - r:] if r else "") for t, r in zip(terms, ranks))
    if rhs is None:
        counts: dict[str, int] = {}
        for t in terms:
            for c in t.replace("...", ""):
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1))
    else:
        if e and "..." not in rhs:
            raise ValueError("einsum: output has more dimensions than subscripts given in "
                             "einstein sum, but no '...' ellipsis provided to broadcast the "
                             "extra dimensions.")
        out = rhs.replace("...", ell)
        for c in out:
            if out.count(c) > 1:
                raise ValueError(f"einsum: output subscript '{c}' appears more than once")
            if not any(c in t for t in ins):
                raise ValueError(f"einsum: output subscript '{c}' never appears in an input")
    return ins, out


def _sublist(sub: Any) -> str:
    return "".join("..." if v is Ellipsis else _LETTERS[int(v)] for v in sub)


@implements(np.einsum)
def einsum(*operands: Any, out: Any = None, optimize: Any = False, dtype: Any = None,
           order: str = "K", casting: str = "safe") -> Any:
    """``np.einsum`` with '...', implicit output and the interleaved (sublist) form.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.einsum('ii->', a))(np.ones((2, 2)))
    array([[1., 0.],
           [0., 1.]])
    """
    no_out("einsum", out)
    if not operands:
        raise ValueError("einsum: no subscripts given")
    if isinstance(operands[0], str):
        subscripts, ops = operands[0], list(operands[1:])
    else:  # einsum(op0, sublist0, op1, sublist1, ..., [sublist_out])
        ops = list(operands[0::2])
        subs_l = list(operands[1::2])
        out_sub = None
        if len(operands) % 2:
            out_sub, ops = ops[-1], ops[:-1]
        subscripts = ",".join(_sublist(s) for s in subs_l)
        if out_sub is not None:
            subscripts += "->" + _sublist(out_sub)
    ops = [_asarray(o) for o in ops]
    if dtype is not None:
        ops = [fnp.astype(o, dtype) for o in ops]
    ins, res = _parse_einsum(subscripts, tuple(ndim(o) for o in ops))
    return einsum_p(*ops, subs=ins, out=res)


@_linalg(np.linalg.trace, "trace")
def _linalg_trace(x: Any, /, *, offset: int = 0, dtype: Any = None) -> Any:
    """``np.linalg.trace`` over the last two axes (offset 0)."""
    if offset:
        raise NotImplementedError("np.linalg.trace on traced values supports offset=0 only")
    r = einsum("...ii->...", x)
    return r if dtype is None else fnp.astype(r, dtype)



@_linalg(np.linalg.diagonal, "diagonal")
def _linalg_diagonal(x: Any, /, *, offset: int = 0) -> Any:
    """``np.linalg.diagonal`` of the last two axes (offset 0)."""
    if offset:
        raise NotImplementedError("np.linalg.diagonal on traced values supports offset=0 only")
    return einsum("...ii->...i", x)



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


@_linalg(np.linalg.inv)
def inv(a: Any) -> Any:
    """``np.linalg.inv`` of a (stack of) square matrices.

    >>> import numpy as np, funcflux as ff, funcflux.numpy as fnp
    >>> ff.grad(lambda a: np.sum(np.linalg.inv(a)))(2.0 * np.eye(2))
    array([[-0.25, -0.25],
           [-0.25, -0.25]])
    """
    a = _asarray(a)
    _check_square("inv", a)
    return inv_p(a)


# -- det and slogdet ------------------------------------------------------------------
def _at_matrix(v: Any) -> Any:
    return fnp.expand_dims(v, (-2, -1))


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
    tau = _at_matrix(fnp.sum(b * e, axis=(-2, -1)))
    sig = _at_matrix(fnp.sum(b * t, axis=(-2, -1)))
    db = -matmul_p(b, matmul_p(_mT(t), b))
    dtau = _at_matrix(fnp.sum(db * e, axis=(-2, -1)))
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
det_p.def_jvp(lambda t, ans, a: fnp.sum(_cofactor(a) * t, axis=(-2, -1)))
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
slogdet_logabs_p.def_jvp(lambda t, ans, a, pk: fnp.real(fnp.sum(_inv_t(a, pk) * t,
                                                                 axis=(-2, -1))), None)
slogdet_logabs_p.def_batch(_with_factors_batch(slogdet_logabs_p))


# For complex input the sign det / |det| moves with the phase: d sign = i Im(tr(a^-1 da)) sign
# (JAX's rule); for real input it is piecewise constant (a slice of the nondiff pack).
slogdet_csign_p = primitive("slogdet_csign", lambda a, pk: pk[..., 0])
slogdet_csign_p.def_vjp(
    lambda ct, ans, a, pk: _at_matrix(1j * fnp.imag(ct * ans)) * _inv_t(a, pk), None)
slogdet_csign_p.def_jvp(lambda t, ans, a, pk: 1j * fnp.imag(
    fnp.sum(_inv_t(a, pk) * t, axis=(-2, -1))) * ans, None)
slogdet_csign_p.def_batch(_with_factors_batch(slogdet_csign_p))


def _result_type(sample: Any) -> Any:
    """NumPy's own namedtuple for a multi-output function, so pytree structures match."""
    t = type(sample)
    return t if hasattr(t, "_fields") else (lambda *parts: tuple(parts))


SlogdetResult = _result_type(np.linalg.slogdet(np.eye(1)))


@_linalg(np.linalg.det)
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
    return det_p(a)


@_linalg(np.linalg.slogdet)
def slogdet(a: Any) -> Any:
    """``np.linalg.slogdet`` as ``(sign, logabsdet)``; ``sign`` carries no derivative.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.slogdet(a)[1])(np.diag([2.0, -4.0]))
    array([[ 0.5 ,  0.  ],
           [ 0.  , -0.25]])
    """
    a = _asarray(a)
    _check_square("slogdet", a)
    if not is_tracer(a):  # one LAPACK call when nothing is traced
        return array_module(a).linalg.slogdet(a)
    pk = slogdet_p(a)
    sign = slogdet_csign_p(a, pk) if _dtype(a).kind == "c" else pk[..., 0]
    return SlogdetResult(sign, slogdet_logabs_p(a, pk))


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


@_linalg(np.linalg.solve)
def solve(a: Any, b: Any) -> Any:
    """``np.linalg.solve`` with NumPy 2's shapes: ``b`` is ``(M,)`` or ``(..., M, K)``.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.linalg.solve(2.0 * np.eye(2), np.array([2.0, 4.0]))
    array([1., 2.])
    """
    a, b = _asarray(a), _asarray(b)
    _check_square("solve", a)
    if ndim(b) == 1:
        return fnp.squeeze(solve_p(a, fnp.expand_dims(b, -1)), -1)
    return solve_p(a, b)


# -- one-triangle functions -------------------------------------------------------------
def _from_triangle(a: Any, lower: bool) -> Any:
    """The Hermitian matrix that the lower (or upper) triangle of ``a`` stands for.

    What LAPACK's Hermitian routines see: the other strict triangle is the conjugate
    transpose of the read one, and the diagonal is real (its imaginary part is
    ignored). Built with ``where`` (no arithmetic), so the read entries keep their
    exact values and derivatives reach the read entries only.
    """
    n = shape(a)[-1]
    xp = array_module(concrete(a))
    ones = xp.ones((n, n), dtype=bool)
    unread = xp.triu(ones, 1) if lower else xp.tril(ones, -1)
    if _dtype(a).kind == "c":
        a = fnp.where(xp.eye(n, dtype=bool), fnp.real(a), a)
    return fnp.where(unread, _H(a), a)


# -- cholesky -------------------------------------------------------------------------
def _phi(x: Any) -> Any:
    """The lower triangle of ``x`` with its diagonal halved."""
    n = shape(x)[-1]
    e = _eye(n, x)
    xp = array_module(concrete(x))
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
    p = _phi(matmul_p(_H(low), fnp.conj(ct)))
    return fnp.conj(_herm(matmul_p(_H(linv), matmul_p(p, linv))))


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


@_linalg(np.linalg.cholesky)
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
    if not is_tracer(a):
        return _cholesky_impl(a, upper)
    return cholesky_p(_from_triangle(a, not upper), upper=upper)


# -- eigh -----------------------------------------------------------------------------
def _eig_gaps(w: Any) -> Any:
    """``F[i, j] = 1 / (w[j] - w[i])`` off the diagonal, 0 on it (distinct eigenvalues)."""
    e = _eye(shape(w)[-1], w)
    return (1.0 - e) / (fnp.expand_dims(w, -2) - fnp.expand_dims(w, -1) + e)


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
    return matmul_p(fnp.conj(v) * fnp.expand_dims(ct, -2), _mT(v))


def _eigh_w_jvp(t: Any, ans: Any, a: Any, pk: Any) -> Any:
    # Re diag(v^H t v) is the same for t and t^H, so t needs no symmetrising here.
    v = eigh_v_p(a, pk)
    return fnp.real(fnp.sum(fnp.conj(v) * matmul_p(t, v), axis=-2))


def _eigh_v_vjp(ct: Any, ans: Any, a: Any, pk: Any) -> Any:
    f = _eig_gaps(distinct_eig_p(eigh_w_p(a, pk), fn="eigh"))
    return _herm(matmul_p(fnp.conj(ans), matmul_p(f * matmul_p(_mT(ans), ct), _mT(ans))))


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


EighResult = _result_type(np.linalg.eigh(np.eye(1)))


def _check_uplo(UPLO: str) -> str:
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    return UPLO


@_linalg(np.linalg.eigh)
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
    if not is_tracer(a):  # one LAPACK call when nothing is traced
        return array_module(a).linalg.eigh(a, UPLO=UPLO)
    a = _from_triangle(a, UPLO == "L")
    pk = eigh_p(a, UPLO=UPLO)
    return EighResult(eigh_w_p(a, pk), eigh_v_p(a, pk))


@_linalg(np.linalg.eigvalsh)
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
    if not is_tracer(a):
        return array_module(a).linalg.eigvalsh(a, UPLO=UPLO)
    return eigvalsh_p(_from_triangle(a, UPLO == "L"), UPLO=UPLO)


# -- eig, eigvals (general matrices; complex eigenvalues) ---------------------------------
# eig_p packs (w, V) as [w | V raveled]. NumPy returns real arrays when every eigenvalue is
# real, complex ones otherwise; the rules are the same formulas in either dtype.
def _eig_impl(a: Any) -> Any:
    xp = array_module(a)
    w, v = xp.linalg.eig(a)
    return xp.concatenate([w, v.reshape(a.shape[:-2] + (-1,))], axis=-1)


def _eig_unpack(pk: Any, n: int) -> tuple:
    lead = shape(pk)[:-1]
    return pk[..., :n], fnp.reshape(pk[..., n:], lead + (n, n))


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
    c = solve_p(v, matmul_p(fnp.astype(t, _dtype(v)), v))       # V^-1 dA V
    dw = fnp.diagonal(c, axis1=-2, axis2=-1)
    dv = matmul_p(v, _eig_gaps(distinct_eig_p(w, fn="eig")) * c)
    # NumPy's eigenvectors have unit norm: keep it (the phase stays a gauge).
    dv = dv - v * fnp.expand_dims(fnp.real(fnp.sum(fnp.conj(v) * dv, axis=-2)), -2)
    return fnp.concatenate([dw, fnp.reshape(dv, shape(dw)[:-1] + (-1,))], axis=-1)


def _eig_vjp(ct: Any, ans: Any, a: Any) -> Any:
    n = shape(a)[-1]
    w, v = _eig_unpack(ans, n)
    gw, gv = _eig_unpack(ct, n)
    # The transpose of _eig_jvp under <x, y> = Re sum(x * y).
    rho = fnp.real(fnp.sum(gv * v, axis=-2))
    gv = gv - fnp.conj(v) * fnp.expand_dims(rho, -2)
    k = _eig_gaps(distinct_eig_p(w, fn="eig")) * matmul_p(_mT(v), gv) + \
        _eye(n, v) * fnp.expand_dims(gw, -1)
    g = solve_p(_mT(v), matmul_p(k, _mT(v)))
    return fnp.real(g) if _dtype(a).kind != "c" else g


eig_p = primitive("eig", _eig_impl)
eig_p.def_vjp(_eig_vjp)
eig_p.def_jvp(_eig_jvp)
eig_p.def_batch(_front_batch(eig_p))


def _eigvals_jvp(t: Any, ans: Any, a: Any) -> Any:
    _, v = _eig_unpack(eig_p(a), shape(a)[-1])
    dw = fnp.diagonal(solve_p(v, matmul_p(fnp.astype(t, _dtype(v)), v)), axis1=-2, axis2=-1)
    return dw if _dtype(ans).kind == "c" else fnp.real(dw)


def _eigvals_vjp(ct: Any, ans: Any, a: Any) -> Any:
    n = shape(a)[-1]
    _, v = _eig_unpack(eig_p(a), n)
    g = solve_p(_mT(v), matmul_p(_eye(n, v) * fnp.expand_dims(fnp.astype(ct, _dtype(v)), -1),
                                 _mT(v)))
    return fnp.real(g) if _dtype(a).kind != "c" else g


eigvals_p = primitive("eigvals", lambda a: array_module(a).linalg.eigvals(a))
eigvals_p.def_vjp(_eigvals_vjp)
eigvals_p.def_jvp(_eigvals_jvp)
eigvals_p.def_batch(_front_batch(eigvals_p))

EigResult = _result_type(np.linalg.eig(np.eye(1)))


@_linalg(np.linalg.eig)
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
    if not is_tracer(a):
        return array_module(a).linalg.eig(a)
    w, v = _eig_unpack(eig_p(a), shape(a)[-1])
    return EigResult(w, v)


@_linalg(np.linalg.eigvals)
def eigvals(a: Any) -> Any:
    """``np.linalg.eigvals``: the eigenvalues of a general matrix (complex when NumPy's are).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.sum(np.linalg.eigvals(a).real))(np.array([[0.0, -1.0], [1.0, 0.0]]))
    array([[1., 0.],
           [0., 1.]])
    """
    a = _asarray(a)
    _check_square("eigvals", a)
    return eigvals_p(a)


# -- svd ------------------------------------------------------------------------------
# svd_p packs (U, s, Vh) of the reduced decomposition into one array, U and Vh raveled
# and s between them (cast to U's dtype): one LAPACK call gives every output, and the
# rules read all three factors from ``ans`` instead of recomputing the decomposition.
def _H(x: Any) -> Any:
    return fnp.conj(_mT(x))


def _svd_impl(a: Any, full_matrices: bool) -> Any:
    xp = array_module(a)
    u, s, vh = xp.linalg.svd(a, full_matrices=full_matrices)
    lead = a.shape[:-2]
    return xp.concatenate([u.reshape(lead + (-1,)), s.astype(u.dtype),
                           vh.reshape(lead + (-1,))], axis=-1)


def _svd_pack(u: Any, s: Any, vh: Any) -> Any:
    lead = shape(u)[:-2]
    return fnp.concatenate([fnp.reshape(u, lead + (-1,)), fnp.astype(s, _dtype(u)),
                            fnp.reshape(vh, lead + (-1,))], axis=-1)


def _svd_unpack(pk: Any, m: int, n: int, full: bool = False) -> tuple:
    k = min(m, n)
    ku, kv = (m, n) if full else (k, k)
    lead = shape(pk)[:-1]
    u = fnp.reshape(pk[..., :m * ku], lead + (m, ku))
    s = fnp.real(pk[..., m * ku:m * ku + k])
    vh = fnp.reshape(pk[..., m * ku + k:], lead + (kv, n))
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
    z = fnp.zeros_like(s[..., :1])
    return distinct_sv_p(fnp.concatenate([s, z], axis=-1), fn="svd (non-square)")[..., :-1]


def _safe_inv(s: Any) -> Any:
    """``1 / s`` with 0 where ``s == 0`` (JAX's choice for the phase term of a zero value)."""
    zero = s == 0
    return fnp.where(zero, 0.0, 1.0 / fnp.where(zero, 1.0, s))


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
    ds = fnp.real(fnp.diagonal(ds_mat, axis1=-2, axis2=-1))
    sc = _checked_sv(s, m, n)
    f = fnp.astype(_eig_gaps(sc * sc), _dtype(a))
    srow, scol = fnp.expand_dims(sc, -2), fnp.expand_dims(sc, -1)
    dss, sds = ds_mat * srow, scol * ds_mat
    omega_u = f * (dss + _H(dss))
    if _dtype(a).kind == "c":   # the phase gauge: JAX's choice, Im(diag(U^H dA V)) / s
        omega_u = omega_u + 0.5 * (ds_mat - _H(ds_mat)) * _eye(shape(s)[-1], a) * \
            fnp.expand_dims(_safe_inv(sc), -1)
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
        gs = gs + fnp.sum(zero_cotangent_p(extra, fn=_complement_msg(a)), axis=(-2, -1),
                          keepdims=True)[..., 0] * 0
        gu, gvh = gu[..., :k], gvh[..., :k, :]
    # The transpose of _svd_jvp under <x, y> = Re sum(x * y): conj of the adjoint of conj(ct).
    gu, gvh = fnp.conj(gu), fnp.conj(gvh)
    sc = _checked_sv(s, m, n)
    f = fnp.astype(_eig_gaps(sc * sc), _dtype(a))
    srow, scol = fnp.expand_dims(sc, -2), fnp.expand_dims(sc, -1)
    v, gv = _H(vh), _H(gvh)
    j = f * matmul_p(_H(u), gu)
    k = f * matmul_p(vh, gv)
    inner_m = (j + _H(j)) * srow + scol * (k + _H(k)) + \
        _eye(shape(s)[-1], a) * fnp.expand_dims(fnp.astype(gs, _dtype(a)), -1)
    if _dtype(a).kind == "c":
        d = fnp.diagonal(matmul_p(_H(u), gu), axis1=-2, axis2=-1)
        inner_m = inner_m + _eye(shape(s)[-1], a) * fnp.expand_dims(
            1j * fnp.imag(d) * _safe_inv(sc), -1)
    if m > n:
        gus = gu / srow
        g = matmul_p(matmul_p(u, inner_m) + gus - matmul_p(u, matmul_p(_H(u), gus)), vh)
    elif n > m:
        sgvh = _H(gv) / scol
        g = matmul_p(u, matmul_p(inner_m, vh) + sgvh - matmul_p(matmul_p(sgvh, v), vh))
    else:
        g = matmul_p(u, matmul_p(inner_m, vh))
    return fnp.conj(g)


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
    return fnp.real(fnp.sum(fnp.conj(u) * matmul_p(t, _H(vh)), axis=-2))


def _svdvals_vjp(ct: Any, ans: Any, a: Any) -> Any:
    m, n = shape(a)[-2:]
    u, _, vh = _svd_unpack(svd_p(a, full_matrices=False), m, n)
    g = matmul_p(fnp.conj(u) * fnp.expand_dims(fnp.astype(ct, _dtype(a)), -2), fnp.conj(vh))
    return g


svdvals_p = primitive("svdvals", lambda a: array_module(a).linalg.svd(a, compute_uv=False))
svdvals_p.def_vjp(_svdvals_vjp)
svdvals_p.def_jvp(_svdvals_jvp)
svdvals_p.def_batch(_front_batch(svdvals_p))


SvdResult = _result_type(np.linalg.svd(np.eye(1)))


@_linalg(np.linalg.svd)
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
    if ndim(a) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="svd", ndim=ndim(a)))
    if not is_tracer(a):
        return array_module(a).linalg.svd(a, full_matrices=full_matrices,
                                          compute_uv=compute_uv, hermitian=hermitian)
    if hermitian and not compute_uv:  # NumPy's own steps: |eigvalsh(a)|, descending
        _check_square("svd", a)
        return fnp.sort(fnp.abs(eigvalsh(a)), axis=-1)[..., ::-1]
    if not compute_uv:
        return svdvals_p(a)
    m, n = shape(a)[-2:]
    if hermitian:  # NumPy's own steps: eigh, then |w| descending, the signs moved into Vh
        _check_square("svd", a)
        w, v = eigh(a)
        order = fnp.stop_gradient(fnp.argsort(fnp.abs(w), axis=-1)[..., ::-1])
        w = fnp.take_along_axis(w, order, axis=-1)
        u = fnp.take_along_axis(v, fnp.expand_dims(order, -2), axis=-1)
        sgn = fnp.astype(fnp.stop_gradient(fnp.sign(w)), _dtype(u))
        return SvdResult(u, fnp.abs(w), _H(u * fnp.expand_dims(sgn, -2)))
    full = bool(full_matrices)
    return SvdResult(*_svd_unpack(svd_p(a, full_matrices=full), m, n, full))


if hasattr(np.linalg, "svdvals"):
    @_linalg(np.linalg.svdvals)
    def svdvals(x: Any, /) -> Any:
        """``np.linalg.svdvals``: the singular values, descending."""
        return svd(x, compute_uv=False)


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
    return (fnp.reshape(pk[..., :m * k], lead + (m, k)),
            fnp.reshape(pk[..., m * k:], lead + (k, n)))


def _tril_strict(x: Any) -> Any:
    n = shape(x)[-1]
    xp = array_module(concrete(x))
    return x * xp.tril(xp.ones((n, n), dtype=np.finfo(_dtype(x)).dtype), -1)


def _qr_tall_jvp(q: Any, r: Any, t: Any) -> tuple:
    """(dQ, dR) for M >= N (J. Townsend's derivation, as JAX's QR JVP)."""
    w = _mT(solve_p(_mT(r), _mT(t)))                  # dA R^-1
    c = matmul_p(_H(q), w)
    low = _tril_strict(c)
    om = low - _H(low)
    if _dtype(c).kind == "c":
        om = om + 1j * _eye(shape(c)[-1], fnp.real(c)) * fnp.imag(c)
    return matmul_p(q, om - c) + w, matmul_p(c - om, r)


def _qr_tall_vjp(q: Any, r: Any, gq: Any, gr: Any) -> Any:
    # The transpose of _qr_tall_jvp under <x, y> = Re sum(x * y): conj of its adjoint at
    # conj(ct), with M = Q^H gQ - gR R^H.
    gq, gr = fnp.conj(gq), fnp.conj(gr)
    mm = matmul_p(_H(q), gq) - matmul_p(gr, _H(r))
    nn = _tril_strict(mm - _H(mm)) - mm
    if _dtype(mm).kind == "c":
        nn = nn + 1j * _eye(shape(mm)[-1], fnp.real(mm)) * fnp.imag(mm)
    x = gq + matmul_p(q, nn)
    return fnp.conj(_H(solve_p(r, _H(x))))               # x R^-H, conjugated


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
        dr = fnp.concatenate([dr1, matmul_p(_H(dq), y) + matmul_p(_H(q), t[..., m:])], axis=-1)
    lead = shape(dq)[:-2]
    return fnp.concatenate([fnp.reshape(dq, lead + (-1,)), fnp.reshape(dr, lead + (-1,))],
                           axis=-1)


def _qr_vjp(ct: Any, ans: Any, a: Any, mode: str) -> Any:
    m, n = shape(a)[-2:]
    q, r = _qr_unpack(ans, m, n, mode)
    gq, gr = _qr_unpack(ct, m, n, mode)
    if mode == "complete" and m > n:
        # Zero cotangents for the extra columns of Q (see _svd_vjp); R's extra rows are 0.
        msg = QR_COMPLETE.format(shape=tuple(shape(a)), extra=m - n)
        gr = gr[..., :n, :] + fnp.sum(zero_cotangent_p(gq[..., n:], fn=msg), axis=(-2, -1),
                                      keepdims=True) * 0
        q, r, gq = q[..., :n], r[..., :n, :], gq[..., :n]
    if m >= n:
        return _qr_tall_vjp(q, r, gq, gr)
    y, gr2 = a[..., m:], gr[..., m:]
    gx = _qr_tall_vjp(q, r[..., :m], gq + fnp.conj(matmul_p(y, _mT(gr2))), gr[..., :m])
    return fnp.concatenate([gx, matmul_p(fnp.conj(q), gr2)], axis=-1)


qr_p = primitive("qr", _qr_impl)
qr_p.def_vjp(_qr_vjp)
qr_p.def_jvp(_qr_jvp)
qr_p.def_batch(_front_batch(qr_p))


QR_COMPLETE = ("qr(mode='complete') of a matrix with more rows than columns (shape {shape}): "
               "the last {extra} columns of Q are any orthonormal completion that LAPACK "
               "picks, so they have no derivative. Use mode='reduced'.")


QRResult = _result_type(np.linalg.qr(np.eye(1)))


@_linalg(np.linalg.qr)
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
    if ndim(a) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="qr", ndim=ndim(a)))
    if mode not in ("reduced", "complete", "r", "raw"):
        raise ValueError(f"Unrecognized mode '{mode}'")
    if not is_tracer(a):
        return array_module(a).linalg.qr(a, mode=mode)
    if mode == "raw":
        raise NotImplementedError("qr(mode='raw') on traced values: the Householder "
                                  "reflectors have no derivative rule; use 'reduced'.")
    m, n = shape(a)[-2:]
    q, r = _qr_unpack(qr_p(a, mode="reduced" if mode == "r" else mode), m, n, mode)
    return r if mode == "r" else QRResult(q, r)


# -- pinv, lstsq, matrix_rank, cond ------------------------------------------------------
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
            + fnp.conj(matmul_p(_eye(m, a) - matmul_p(a, p), matmul_p(gt, matmul_p(p, _H(p)))))
            + fnp.conj(matmul_p(matmul_p(_H(p), p), matmul_p(gt, _eye(n, a) - matmul_p(p, a)))))


pinv_p = primitive("pinv", _pinv_impl)
pinv_p.def_vjp(_pinv_vjp)
pinv_p.def_jvp(_pinv_jvp)
pinv_p.def_batch(_front_batch(pinv_p))

_NOVALUE: Any = getattr(np, "_NoValue", None)


@_linalg(np.linalg.pinv)
def pinv(a: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = _NOVALUE) -> Any:
    """``np.linalg.pinv`` (``rcond``/``rtol`` as NumPy); differentiable where the rank is
    locally constant (the Golub-Pereyra formula, as JAX), e.g. at full rank.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.sum(np.linalg.pinv(a)))(np.array([[2.0]]))
    array([[-0.25]])
    """
    a = _asarray(a)
    if ndim(a) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="pinv", ndim=ndim(a)))
    if rcond is None:
        rcond = 1e-15 if rtol is _NOVALUE else \
            (max(shape(a)[-2:]) * np.finfo(_dtype(a)).eps if rtol is None else rtol)
    elif rtol is not _NOVALUE:
        raise ValueError("`rtol` and `rcond` can't be both set.")
    if not isinstance(rcond, (int, float, np.floating, np.integer)):
        raise NotImplementedError("pinv on traced values takes a scalar rcond/rtol")
    if hermitian:  # NumPy reads the lower triangle only (through eigh)
        _check_square("pinv", a)
        a = _from_triangle(a, True)
    return pinv_p(a, rcond=float(rcond))


def _rank_from_sv(s: Any, tol: Any) -> Any:
    return fnp.sum(fnp.astype(s > tol, np.int64), axis=-1)


@_linalg(np.linalg.matrix_rank)
def matrix_rank(A: Any, tol: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """``np.linalg.matrix_rank``: an integer, so it carries no derivative."""
    A = _asarray(A)
    if ndim(A) < 2:
        return fnp.astype(fnp.any(A != 0), np.int64)
    if hermitian:  # NumPy's S: |eigvalsh(A)| of the lower triangle (any order serves here)
        _check_square("matrix_rank", A)
        s = fnp.abs(eigvalsh(fnp.stop_gradient(A)))
    else:
        s = svdvals_p(fnp.stop_gradient(A))
    if tol is None:
        r = max(shape(A)[-2:]) * np.finfo(_dtype(s)).eps if rtol is None else rtol
        tol = fnp.max(s, axis=-1, keepdims=True) * r
    else:
        tol = fnp.expand_dims(_asarray(tol), -1)
    return _rank_from_sv(s, tol)


LstsqResult = _result_type(np.linalg.lstsq(np.eye(1), np.ones(1), rcond=None))


@_linalg(np.linalg.lstsq)
def lstsq(a: Any, b: Any, rcond: Any = None) -> Any:
    """``np.linalg.lstsq`` as ``(x, residuals, rank, s)``.

    ``x`` is ``pinv(a, rcond) @ b``, differentiable in ``a`` and ``b`` where the rank is
    locally constant (full rank); ``residuals`` and ``s`` are differentiable too;
    ``rank`` is an integer (no derivative). Under vmap, residuals are returned when
    every matrix of the batch has full column rank (NumPy's shape rule).
    """
    a, b = _asarray(a), _asarray(b)
    if ndim(a) != 2 or ndim(b) not in (1, 2):
        raise np.linalg.LinAlgError(
            f"lstsq: {ndim(a)}-dimensional a and {ndim(b)}-dimensional b given; a must be "
            "two-dimensional and b one- or two-dimensional.")
    m, n = shape(a)
    if shape(b)[0] != m:
        raise np.linalg.LinAlgError("Incompatible dimensions")
    dt = np.result_type(_dtype(a), _dtype(b), np.float64 if _dtype(a).kind in "iub" else _dtype(a))
    a, b = fnp.astype(a, dt), fnp.astype(b, dt)
    if rcond is None:
        rcond = np.finfo(dt).eps * max(m, n)
    x = matmul_p(pinv_p(a, rcond=float(rcond)), b)
    s = svdvals_p(a)
    rank = _rank_from_sv(fnp.stop_gradient(s), fnp.max(fnp.stop_gradient(s)) * rcond)
    rdt = np.finfo(dt).dtype
    full_rank = m > n and bool(array_module(concrete(rank)).all(concrete(rank) == n))
    if full_rank:
        r = b - matmul_p(a, x)
        resid = fnp.sum(fnp.real(fnp.conj(r) * r), axis=0)
        if ndim(b) == 1:
            resid = fnp.reshape(resid, (1,))
    else:
        resid = array_module(concrete(a)).zeros((0,), dtype=rdt)
    return LstsqResult(x, resid, fnp.astype(rank, np.int32), s)


@_linalg(np.linalg.cond)
def cond(x: Any, p: Any = None) -> Any:
    """``np.linalg.cond``: ``s_max / s_min`` for p None, 2 (-2: the inverse), else
    ``norm(x, p) * norm(inv(x), p)``; differentiable where the values are distinct.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.linalg.cond(a))(np.diag([4.0, 2.0]))
    array([[ 0.5,  0. ],
           [ 0. , -1. ]])
    """
    x = _asarray(x)
    if ndim(x) < 2:
        raise np.linalg.LinAlgError(TOO_FEW_DIMS.format(fn="cond", ndim=ndim(x)))
    if p is None or p == 2 or p == -2:
        s = svdvals_p(x)
        return s[..., -1] / s[..., 0] if p == -2 else s[..., 0] / s[..., -1]
    _check_square("cond", x)
    return norm(x, p, axis=(-2, -1)) * norm(inv(x), p, axis=(-2, -1))


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
    e = fnp.astype(e, np.result_type(_dtype(a), _dtype(e)))
    a = fnp.astype(a, _dtype(e))
    top = fnp.concatenate([a, e], axis=-1)
    bottom = fnp.concatenate([fnp.zeros_like(a), a], axis=-1)
    return expm_p(fnp.concatenate([top, bottom], axis=-2))[..., :n, n:]


expm_p = primitive("expm", _expm_impl)
expm_p.def_jvp(lambda t, ans, a: _expm_frechet(a, t))
# The transpose of E -> L(A, E) under sum(x * y) is G -> L(A^T, G).
expm_p.def_vjp(lambda ct, ans, a: fnp.astype(_expm_frechet(_mT(a), ct), _dtype(a))
               if _dtype(a).kind == "c" else fnp.real(_expm_frechet(_mT(a), ct)))
expm_p.def_batch(_front_batch(expm_p))


# -- matrix_power ---------------------------------------------------------------------
@_linalg(np.linalg.matrix_power)
def matrix_power(a: Any, n: int) -> Any:
    """``np.linalg.matrix_power`` by repeated squaring (``inv`` first for ``n < 0``)."""
    a = _asarray(a)
    _check_square("matrix_power", a)
    if not isinstance(n, (int, np.integer)):
        raise TypeError("exponent must be an integer")
    n = int(n)
    if n == 0:
        return fnp.broadcast_to(_eye(shape(a)[-1], a), shape(a)) + 0.0 * a
    if n < 0:
        a, n = inv(a), -n
    res = None
    while True:
        if n & 1:
            res = a if res is None else matmul_p(res, a)
        n >>= 1
        if not n:
            return res
        a = matmul_p(a, a)


# -- norm (a composition) ---------------------------------------------------------------
def _sqrt_sum_sq(x: Any, axis: tuple, keepdims: bool) -> Any:
    """``sqrt(sum(x**2))`` whose derivative at 0 is 0 (a subgradient), not NaN.

    sqrt's derivative is infinite at 0, so the naive chain rule gives 0 * inf = NaN
    at the zero vector (JAX and autograd return NaN there). We choose 0, like
    ``abs`` at 0, so ``norm(x) ** 2`` has the right gradient everywhere; the square
    root is taken of a value that is never 0, so no NaN appears at any order.
    """
    s = fnp.sum(fnp.real(fnp.conj(x) * x) if _dtype(x).kind == "c" else x * x,
                axis=axis, keepdims=keepdims)
    pos = s > 0
    return fnp.where(pos, fnp.sqrt(fnp.where(pos, s, 1.0)), 0.0)


def _vector_norm(x: Any, ord: Any, axis: tuple, keepdims: bool) -> Any:
    if ord is None or ord == 2:
        return _sqrt_sum_sq(x, axis, keepdims)
    if ord == np.inf:
        return fnp.max(fnp.abs(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return fnp.min(fnp.abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        return fnp.sum(fnp.astype(fnp.not_equal(x, 0), _dtype(x)), axis=axis, keepdims=keepdims)
    if ord == 1:
        return fnp.sum(fnp.abs(x), axis=axis, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")  # NumPy's type # noqa: TRY004
    p = float(ord)
    return fnp.sum(fnp.abs(x) ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def _matrix_norm(x: Any, ord: Any, axis: tuple, keepdims: bool) -> Any:
    r, c = axis
    if ord is None or ord == "fro":
        return _sqrt_sum_sq(x, axis, keepdims)
    if ord in (1, -1, np.inf, -np.inf):
        inner_ax, outer_ax = (r, c) if ord in (1, -1) else (c, r)
        sums = fnp.sum(fnp.abs(x), axis=inner_ax, keepdims=True)
        red = fnp.max if ord in (1, np.inf) else fnp.min
        res = red(sums, axis=outer_ax, keepdims=True)
    elif ord == 2:
        # The largest singular value: the square root of the top eigenvalue of the Gram
        # matrix, accurate relative to itself (not so the smallest, hence no ord=-2).
        y = fnp.moveaxis(x, (r, c), (-2, -1))
        m, n = shape(y)[-2:]
        gram = matmul_p(_H(y), y) if m >= n else matmul_p(y, _H(y))
        top = eigvalsh_p(gram, UPLO="L")[..., -1]
        res = fnp.sqrt(fnp.maximum(top, 0.0))
        if keepdims:
            res = fnp.expand_dims(res, (r, c))
        return res
    elif ord in (-2, "nuc"):
        sv = svdvals_p(fnp.moveaxis(x, (r, c), (-2, -1)))
        res = fnp.sum(sv, axis=-1) if ord == "nuc" else sv[..., -1]
        if keepdims:
            res = fnp.expand_dims(res, (r, c))
        return res
    else:
        raise ValueError(f"Invalid norm order {ord!r} for matrices")
    return res if keepdims else fnp.squeeze(res, axis)


@_linalg(np.linalg.norm)
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
        x = fnp.astype(x, np.float64)
    nd = ndim(x)
    if axis is None:
        if ord is None:
            res = _sqrt_sum_sq(fnp.reshape(x, (-1,)), (0,), False)
            return fnp.reshape(res, (1,) * nd) if keepdims else res
        if nd not in (1, 2):
            raise ValueError("Improper number of dimensions to norm.")
        axis = tuple(range(nd))
    ax = norm_axis(axis, nd)
    if len(ax) == 1:
        return _vector_norm(x, ord, ax, bool(keepdims))
    if len(ax) == 2:
        return _matrix_norm(x, ord, ax, bool(keepdims))
    raise ValueError("Improper number of dimensions to norm.")


@_linalg(np.linalg.vector_norm)
def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Any:
    """``np.linalg.vector_norm``: the norm over ``axis`` (all axes when None)."""
    x = _asarray(x)
    nd = ndim(x)
    if axis is None:
        res = _vector_norm(fnp.reshape(x, (-1,)), ord, (0,), False)
        return fnp.reshape(res, (1,) * nd) if keepdims else res
    ax = norm_axis(axis, nd)
    if len(ax) > 1:  # several axes: flatten them into one, last
        rest = [i for i in range(nd) if i not in ax]
        y = fnp.transpose(x, tuple(rest) + ax)
        y = fnp.reshape(y, tuple(shape(x)[i] for i in rest) + (-1,))
        res = _vector_norm(y, ord, (len(rest),), False)
        if keepdims:
            res = fnp.expand_dims(res, ax)
        return res
    return _vector_norm(x, ord, ax, bool(keepdims))


@_linalg(np.linalg.matrix_norm)
def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Any:
    """``np.linalg.matrix_norm`` over the last two axes."""
    x = _asarray(x)
    if ndim(x) < 2:
        raise ValueError("matrix_norm needs an array of at least 2 dimensions")
    return norm(x, ord=ord, axis=(-2, -1), keepdims=keepdims)
