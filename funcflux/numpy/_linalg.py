"""NumPy's products: ``matmul``, ``dot``, ``tensordot``, ``einsum`` and the rest, with their
signatures, argument checks and error texts, bound to the primitives of ``funcflux.ops.linalg``.

``numpy.linalg``'s own functions are in the submodule ``funcflux.numpy.linalg``.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.dispatch import implements, implements_ufunc
from ..ops.base import astype, expand_dims, moveaxis, reshape, squeeze, sum as _sum
from ..ops.common import as_array as _asarray, ndim, no_out, shape
from ..ops.elementwise import conj
from ..ops.linalg import _LETTERS, _fresh, einsum_p, matmul_p
from ..ops.linalg import tensordot as _tensordot
from ..ops.shape import stack

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

MATMUL_0D = ("matmul: Input operand {i} does not have enough dimensions (has 0, gufunc core "
             "with signature (n?,k),(k,m?)->(n?,m?) requires 1)")


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


def matvec(x1: Any, x2: Any, /) -> Any:
    """``np.matvec``: stacked matrices times stacked vectors, ``(..., m, n), (..., n)``."""
    x1, x2 = _asarray(x1), _asarray(x2)
    if ndim(x1) < 2 or ndim(x2) < 1:
        raise ValueError("matvec: needs a matrix (..., m, n) and a vector (..., n)")
    return squeeze(matmul(x1, expand_dims(x2, -1)), -1)


def vecmat(x1: Any, x2: Any, /) -> Any:
    """``np.vecmat``: stacked (conjugated) vectors times stacked matrices."""
    x1, x2 = _asarray(x1), _asarray(x2)
    if ndim(x1) < 1 or ndim(x2) < 2:
        raise ValueError("vecmat: needs a vector (..., m) and a matrix (..., m, n)")
    return squeeze(matmul(expand_dims(conj(x1), -2), x2), -2)


def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """``np.vecdot``: ``sum(conj(x1) * x2, axis)``."""
    x1, x2 = _asarray(x1), _asarray(x2)
    return _sum(conj(x1) * x2, axis=axis)


if hasattr(np, "matvec"):
    implements_ufunc(np.matvec, matvec)
    implements_ufunc(np.vecmat, vecmat)
if hasattr(np, "vecdot"):
    implements_ufunc(np.vecdot, vecdot)


# -- products composed of matmul ------------------------------------------------------
@implements(np.tensordot)
def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    """``np.tensordot``: transposes and reshapes around one matrix product (as NumPy does).

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.tensordot(np.ones((2, 3, 4)), np.ones((3, 4, 5)), axes=2).shape
    (2, 5)
    """
    return _tensordot(_asarray(a), _asarray(b), axes)


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
    return _tensordot(a, b, axes=([na - 1], [nb - 2]))


@implements(np.inner)
def inner(a: Any, b: Any) -> Any:
    """``np.inner``: contracts the last axes of ``a`` and ``b``."""
    a, b = _asarray(a), _asarray(b)
    na, nb = ndim(a), ndim(b)
    if na == 0 or nb == 0:
        return a * b
    if nb == 1:
        return matmul_p(a, b)
    return _tensordot(a, b, axes=([na - 1], [nb - 1]))


@implements(np.vdot)
def vdot(a: Any, b: Any) -> Any:
    """``np.vdot``: the dot product of the flattened arrays, ``a`` conjugated."""
    a, b = reshape(conj(_asarray(a)), (-1,)), reshape(_asarray(b), (-1,))
    return matmul_p(a, b)


@implements(np.outer)
def outer(a: Any, b: Any, out: Any = None) -> Any:
    """``np.outer``: ``ravel(a)[:, None] * ravel(b)[None, :]``."""
    no_out("outer", out)
    a, b = reshape(_asarray(a), (-1, 1)), reshape(_asarray(b), (1, -1))
    return a * b


@implements(np.kron)
def kron(a: Any, b: Any) -> Any:
    """``np.kron``: interleave the axes of ``a`` and ``b`` by broadcasting, then merge pairs."""
    a, b = _asarray(a), _asarray(b)
    sa, sb = shape(a), shape(b)
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    a = reshape(a, tuple(v for n in sa for v in (n, 1)))
    b = reshape(b, tuple(v for n in sb for v in (1, n)))
    return reshape(a * b, tuple(m * n for m, n in zip(sa, sb)))


@implements(np.cross)
def cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1,
          axis: int | None = None) -> Any:
    """``np.cross`` of 3-vectors (2-vectors, deprecated by NumPy 2, are not supported)."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a = moveaxis(_asarray(a), axisa, -1)
    b = moveaxis(_asarray(b), axisb, -1)
    na, nb = shape(a)[-1], shape(b)[-1]
    if (na, nb) != (3, 3):
        raise NotImplementedError(
            f"cross: funcflux supports 3-vectors only; got vectors of length {na} and {nb}. "
            "Pad 2-vectors with a zero third component.")
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    c = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)
    return moveaxis(c, -1, axisc)


# -- einsum ---------------------------------------------------------------------------
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


def _sublist(sub: Sequence[Any]) -> str:
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
        ops = [astype(o, dtype) for o in ops]
    ins, res = _parse_einsum(subscripts, tuple(ndim(o) for o in ops))
    return einsum_p(*ops, subs=ins, out=res)
