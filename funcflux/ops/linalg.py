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
Our primitives have one output each, so the two-output functions are pairs of
primitives that each run the decomposition: ``slogdet`` is ``slogdet_sign``
(no derivative) and ``slogdet_logabs``; ``eigh`` is ``eigh_w`` (eigenvalues,
computed by ``eigvalsh``) and ``eigh_v``. Outside a transform each runs its
LAPACK routine once and returns NumPy's own result type. ``cholesky`` and ``eigh`` read one
triangle of their input, like NumPy; their derivatives are those of the
function of the symmetric part ``(a + a.T) / 2``, so they assume a symmetric
input (and, for ``eigh``, distinct eigenvalues).
"""
from __future__ import annotations

import functools
import string
import sys
import types
from typing import Any, Sequence

import numpy as np

import funcflux.numpy as fnp

from ..core.backend import array_module
from ..core.primitive import primitive
from ..core.trace import Tracer
from .common import is_tracer, move_bdim, ndim, norm_axis, shape, unbroadcast

__all__ = ["matmul", "dot", "vdot", "inner", "outer", "tensordot", "einsum", "kron", "cross",
           "matvec", "vecmat", "vecdot"]

#: ``funcflux.numpy.linalg``: the traced versions of ``numpy.linalg`` functions.
namespace = types.ModuleType("funcflux.numpy.linalg", "Traced versions of numpy.linalg functions.")
sys.modules[namespace.__name__] = namespace

MATMUL_0D = ("matmul: Input operand {i} does not have enough dimensions (has 0, gufunc core "
             "with signature (n?,k),(k,m?)->(n?,m?) requires 1)")
NOT_SQUARE = "{fn}: Last 2 dimensions of the array must be square (got shape {shape})."
TOO_FEW_DIMS = ("{fn}: {ndim}-dimensional array given. Array must be at least "
                "two-dimensional.")


def _linalg(np_func: Any, name: str | None = None) -> Any:
    """Put the decorated function on ``fnp.linalg`` (as ``name``) and route ``np_func`` to it."""
    def deco(fn: Any) -> Any:
        setattr(namespace, name or fn.__name__, fn)
        return fnp.implements(np_func)(fn)
    return deco


def _asarray(x: Any) -> Any:
    """Lists and Python numbers become arrays; arrays and traced values pass through."""
    return x if isinstance(x, Tracer) or hasattr(x, "shape") else np.asarray(x)


def _mT(x: Any) -> Any:
    nd = ndim(x)
    # transpose_p directly: swapaxes' axis checks cost more than the transpose itself here.
    return fnp._shape.transpose_p(x, axes=tuple(range(nd - 2)) + (nd - 1, nd - 2))


def _sym(x: Any) -> Any:
    return (x + _mT(x)) * 0.5


def _concrete(x: Any) -> Any:
    while isinstance(x, Tracer):
        x = x.aval
    return x


def _dtype(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    return d if d is not None else np.result_type(x)


def _eye(n: int, like: Any) -> Any:
    """An identity constant in the array module and dtype of ``like``."""
    return array_module(_concrete(like)).eye(n, dtype=_dtype(like))


def _ones(n: int, like: Any) -> Any:
    return array_module(_concrete(like)).ones((n,), dtype=_dtype(like))


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
    _no_out("matmul", out)
    x1, x2 = _asarray(x1), _asarray(x2)
    for i, x in enumerate((x1, x2)):
        if ndim(x) == 0:
            raise ValueError(MATMUL_0D.format(i=i))
    return matmul_p(x1, x2)


fnp.implements_ufunc(np.matmul, matmul)


def _matvec_impl(x1: Any, x2: Any) -> Any:
    return fnp.squeeze(matmul(x1, fnp.expand_dims(x2, -1)), -1)


def matvec(x1: Any, x2: Any, /) -> Any:
    """``np.matvec``: stacked matrices times stacked vectors, ``(..., m, n), (..., n)``."""
    x1, x2 = _asarray(x1), _asarray(x2)
    if ndim(x1) < 2 or ndim(x2) < 1:
        raise ValueError("matvec: needs a matrix (..., m, n) and a vector (..., n)")
    return _matvec_impl(x1, x2)


def vecmat(x1: Any, x2: Any, /) -> Any:
    """``np.vecmat``: stacked vectors times stacked matrices, ``(..., m), (..., m, n)``."""
    x1, x2 = _asarray(x1), _asarray(x2)
    if ndim(x1) < 1 or ndim(x2) < 2:
        raise ValueError("vecmat: needs a vector (..., m) and a matrix (..., m, n)")
    return fnp.squeeze(matmul(fnp.expand_dims(x1, -2), x2), -2)


def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """``np.vecdot``: ``sum(x1 * x2, axis)`` (real inputs)."""
    x1, x2 = _asarray(x1), _asarray(x2)
    return fnp.sum(x1 * x2, axis=axis)


if hasattr(np, "matvec"):
    fnp.implements_ufunc(np.matvec, matvec)
    fnp.implements_ufunc(np.vecmat, vecmat)
if hasattr(np, "vecdot"):
    fnp.implements_ufunc(np.vecdot, vecdot)
    _linalg(np.linalg.vecdot)(vecdot)


# -- products composed of matmul ------------------------------------------------------
@fnp.implements(np.tensordot)
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


@fnp.implements(np.dot)
def dot(a: Any, b: Any, out: Any = None) -> Any:
    """``np.dot``: a product for 0-d, ``matmul`` for 1-D and 2-D, ``tensordot`` beyond.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> float(fnp.dot(np.array([1.0, 2.0]), np.array([3.0, 4.0])))
    11.0
    """
    _no_out("dot", out)
    a, b = _asarray(a), _asarray(b)
    na, nb = ndim(a), ndim(b)
    if na == 0 or nb == 0:
        return a * b
    if nb <= 2 and (na <= 2 or nb == 1):
        # matmul agrees with dot here: (..., n) @ (n,) and (n,)/(m, n) @ (n, k).
        return matmul_p(a, b)
    return tensordot(a, b, axes=([na - 1], [nb - 2]))


@fnp.implements(np.inner)
def inner(a: Any, b: Any) -> Any:
    """``np.inner``: contracts the last axes of ``a`` and ``b``."""
    a, b = _asarray(a), _asarray(b)
    na, nb = ndim(a), ndim(b)
    if na == 0 or nb == 0:
        return a * b
    if nb == 1:
        return matmul_p(a, b)
    return tensordot(a, b, axes=([na - 1], [nb - 1]))


@fnp.implements(np.vdot)
def vdot(a: Any, b: Any) -> Any:
    """``np.vdot``: the dot product of the flattened arrays (real inputs)."""
    a, b = fnp.reshape(_asarray(a), (-1,)), fnp.reshape(_asarray(b), (-1,))
    return matmul_p(a, b)


@fnp.implements(np.outer)
def outer(a: Any, b: Any, out: Any = None) -> Any:
    """``np.outer``: ``ravel(a)[:, None] * ravel(b)[None, :]``."""
    _no_out("outer", out)
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



@fnp.implements(np.kron)
def kron(a: Any, b: Any) -> Any:
    """``np.kron``: interleave the axes of ``a`` and ``b`` by broadcasting, then merge pairs."""
    a, b = _asarray(a), _asarray(b)
    sa, sb = shape(a), shape(b)
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    a = fnp.reshape(a, tuple(v for n in sa for v in (n, 1)))
    b = fnp.reshape(b, tuple(v for n in sb for v in (1, n)))
    return fnp.reshape(a * b, tuple(m * n for m, n in zip(sa, sb)))


@fnp.implements(np.cross)
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
    _no_out("multi_dot", out)
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
    # NumPy's plain einsum loop is fastest for small work (the path search costs ~10 us);
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


@fnp.implements(np.einsum)
def einsum(*operands: Any, out: Any = None, optimize: Any = False, dtype: Any = None,
           order: str = "K", casting: str = "safe") -> Any:
    """``np.einsum`` with '...', implicit output and the interleaved (sublist) form.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda a: np.einsum('ii->', a))(np.ones((2, 2)))
    array([[1., 0.],
           [0., 1.]])
    """
    _no_out("einsum", out)
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
def _trace_inv_t(a: Any, t: Any) -> Any:
    """``trace(inv(a) @ t)`` over the last two axes."""
    return fnp.sum(_mT(inv_p(a)) * t, axis=(-2, -1))


def _at_matrix(v: Any) -> Any:
    return fnp.expand_dims(v, (-2, -1))


# det is a primitive, not sign * exp(logabsdet), so that its values are NumPy's exactly.
det_p = primitive("det", _square_impl("det"))
det_p.def_vjp(lambda ct, ans, a: _at_matrix(ct * ans) * _mT(inv_p(a)))
det_p.def_jvp(lambda t, ans, a: ans * _trace_inv_t(a, t))
det_p.def_batch(_front_batch(det_p))

slogdet_sign_p = primitive("slogdet_sign", lambda a: array_module(a).linalg.slogdet(a)[0],
                           nondiff=True)
slogdet_sign_p.def_batch(_front_batch(slogdet_sign_p))
slogdet_logabs_p = primitive("slogdet_logabs", lambda a: array_module(a).linalg.slogdet(a)[1])
slogdet_logabs_p.def_vjp(lambda ct, ans, a: _at_matrix(ct) * _mT(inv_p(a)))
slogdet_logabs_p.def_jvp(lambda t, ans, a: _trace_inv_t(a, t))
slogdet_logabs_p.def_batch(_front_batch(slogdet_logabs_p))


def _result_type(sample: Any) -> Any:
    """NumPy's own namedtuple for a multi-output function, so pytree structures match."""
    t = type(sample)
    return t if hasattr(t, "_fields") else (lambda *parts: tuple(parts))


SlogdetResult = _result_type(np.linalg.slogdet(np.eye(1)))


@_linalg(np.linalg.det)
def det(a: Any) -> Any:
    """``np.linalg.det``; its gradient is ``det(a) * inv(a).T`` (a must be invertible)."""
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
    return SlogdetResult(slogdet_sign_p(a), slogdet_logabs_p(a))


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


# -- cholesky -------------------------------------------------------------------------
def _phi(x: Any) -> Any:
    """The lower triangle of ``x`` with its diagonal halved."""
    n = shape(x)[-1]
    e = _eye(n, x)
    xp = array_module(_concrete(x))
    return x * (xp.tril(xp.ones((n, n), dtype=_dtype(x))) - 0.5 * e)


def _cholesky_jvp(t: Any, ans: Any, a: Any) -> Any:
    linv = inv_p(ans)
    return matmul_p(ans, _phi(matmul_p(linv, matmul_p(_sym(t), _mT(linv)))))


def _cholesky_vjp(ct: Any, ans: Any, a: Any) -> Any:
    linv = inv_p(ans)
    p = _phi(matmul_p(_mT(ans), ct))
    return _sym(matmul_p(_mT(linv), matmul_p(p, linv)))


cholesky_p = primitive("cholesky", _square_impl("cholesky"))
cholesky_p.def_vjp(_cholesky_vjp)
cholesky_p.def_jvp(_cholesky_jvp)
cholesky_p.def_batch(_front_batch(cholesky_p))


@_linalg(np.linalg.cholesky)
def cholesky(a: Any, /, *, upper: bool = False) -> Any:
    """``np.linalg.cholesky``: the lower factor (``upper=True``: its transpose).

    Like NumPy it reads the lower triangle; the derivative is that of the symmetric
    part of ``a``, so give it a symmetric positive-definite matrix.
    """
    a = _asarray(a)
    _check_square("cholesky", a)
    low = cholesky_p(a)
    return _mT(low) if upper else low


# -- eigh -----------------------------------------------------------------------------
def _eig_gaps(w: Any) -> Any:
    """``F[i, j] = 1 / (w[j] - w[i])`` off the diagonal, 0 on it (distinct eigenvalues)."""
    e = _eye(shape(w)[-1], w)
    return (1.0 - e) / (fnp.expand_dims(w, -2) - fnp.expand_dims(w, -1) + e)


def _eigh_w_vjp(ct: Any, ans: Any, a: Any, UPLO: str) -> Any:
    v = eigh_v_p(a, UPLO=UPLO)
    return matmul_p(v * fnp.expand_dims(ct, -2), _mT(v))


def _eigh_w_jvp(t: Any, ans: Any, a: Any, UPLO: str) -> Any:
    # diag(v.T t v) is the same for t and t.T, so t needs no symmetrising here.
    v = eigh_v_p(a, UPLO=UPLO)
    return fnp.sum(v * matmul_p(t, v), axis=-2)


def _eigh_v_vjp(ct: Any, ans: Any, a: Any, UPLO: str) -> Any:
    f = _eig_gaps(eigh_w_p(a, UPLO=UPLO))
    return _sym(matmul_p(ans, matmul_p(f * matmul_p(_mT(ans), ct), _mT(ans))))


def _eigh_v_jvp(t: Any, ans: Any, a: Any, UPLO: str) -> Any:
    f = _eig_gaps(eigh_w_p(a, UPLO=UPLO))
    return matmul_p(ans, f * matmul_p(_mT(ans), matmul_p(_sym(t), ans)))


eigh_w_p = primitive("eigh_w", lambda a, UPLO: array_module(a).linalg.eigvalsh(a, UPLO=UPLO))
eigh_w_p.def_vjp(_eigh_w_vjp)
eigh_w_p.def_jvp(_eigh_w_jvp)
eigh_w_p.def_batch(_front_batch(eigh_w_p))
eigh_v_p = primitive("eigh_v", lambda a, UPLO: array_module(a).linalg.eigh(a, UPLO=UPLO)[1])
eigh_v_p.def_vjp(_eigh_v_vjp)
eigh_v_p.def_jvp(_eigh_v_jvp)
eigh_v_p.def_batch(_front_batch(eigh_v_p))


EighResult = _result_type(np.linalg.eigh(np.eye(1)))


def _check_uplo(UPLO: str) -> str:
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    return UPLO


@_linalg(np.linalg.eigh)
def eigh(a: Any, UPLO: str = "L") -> Any:
    """``np.linalg.eigh`` as ``(eigenvalues, eigenvectors)`` of a symmetric matrix.

    The derivative assumes ``a`` symmetric with distinct eigenvalues (eigenvector
    derivatives divide by eigenvalue gaps).

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
    return EighResult(eigh_w_p(a, UPLO=UPLO), eigh_v_p(a, UPLO=UPLO))


@_linalg(np.linalg.eigvalsh)
def eigvalsh(a: Any, UPLO: str = "L") -> Any:
    """``np.linalg.eigvalsh``: the eigenvalues of a symmetric matrix, ascending."""
    a = _asarray(a)
    _check_square("eigvalsh", a)
    return eigh_w_p(a, UPLO=_check_uplo(UPLO))


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
    s = fnp.sum(x * x, axis=axis, keepdims=keepdims)
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
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
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
        gram = matmul_p(_mT(y), y) if m >= n else matmul_p(y, _mT(y))
        top = eigh_w_p(gram, UPLO="L")[..., -1]
        res = fnp.sqrt(fnp.maximum(top, 0.0))
        if keepdims:
            res = fnp.expand_dims(res, (r, c))
        return res
    elif ord in (-2, "nuc"):
        raise NotImplementedError(
            f"norm(ord={ord!r}) of a matrix needs singular values, which funcflux does not "
            "differentiate yet.")
    else:
        raise ValueError(f"Invalid norm order {ord!r} for matrices")
    return res if keepdims else fnp.squeeze(res, axis)


@_linalg(np.linalg.norm)
def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """``np.linalg.norm``: vector norms (ord None/2, 1, inf, -inf, 0, p) and matrix norms
    ('fro', 1, -1, inf, -inf, 2).

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


def _no_out(name: str, out: Any) -> None:
    if out is not None:
        raise TypeError(f"np.{name}(..., out=...) is not supported on traced values: arrays "
                        "are values inside a transform. Drop out= and use the result.")
