"""The structural primitives every rule reaches for, and the helpers that make rules short.

Five primitives move and re-type data without computing: ``reshape``,
``transpose``, ``broadcast_to``, ``sum`` and ``astype``. They are closed under
their own rules (the transpose of a broadcast is a sum, of a sum a broadcast, of
a reshape a reshape, of a transpose the inverse transpose, of a cast a cast), so
they sit here, below every family, and each family's rules import them without
an import cycle. The families then stack in one order, each importing only the
ones before it: base, elementwise, indexing, shape, reductions, softmax and
special, linalg, then nn, patches, signal and fft (``funcflux/ops/__init__.py``).

Binders
-------
Beside each primitive sits a *binder*: a function with normalised parameters
that binds it (``reshape(x, shape)`` resolves one ``-1`` and skips a no-op,
``sum(x, axis, keepdims)`` accepts a negative or scalar axis, ``moveaxis`` and
``expand_dims``/``squeeze`` are a transpose and reshapes). Rules call binders and
primitives, never ``funcflux.numpy``: NumPy's signatures (``out=``, ``dtype=``,
``order=``, NumPy's error texts, lists as arrays) belong to the surface, which
calls these binders in turn (JAX's split between ``lax`` and ``jax.numpy``).

Rule helpers
------------
- ``unbroadcast(ct, x)``: sum a cotangent back to the shape (and dtype) of ``x``,
  undoing NumPy broadcasting; every binary VJP ends with it. A real ``x`` takes
  the real part of a complex cotangent.
- ``elementwise_batch(prim)``: the batching rule of any broadcasting op.
- ``move_bdim``, ``bdim_to_front``, ``batch_size``: batch axes for the other families.
- ``reduction(name)``, ``reduce_batch(p)``, ``expand_back(ct, x, axis, keepdims)``:
  a reduction primitive ``p(x, axis=, keepdims=)``, its batching rule, and a
  reduction's cotangent reshaped to broadcast against its input.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Callable, Sequence

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from .common import ndim, norm_axis, shape

__all__ = ["reshape_p", "transpose_p", "broadcast_to_p", "sum_p", "astype_p", "astype_nondiff",
           "reshape", "transpose", "moveaxis", "expand_dims", "squeeze", "broadcast_to", "sum",
           "astype", "unbroadcast", "move_bdim", "bdim_to_front", "batch_size",
           "elementwise_batch", "reduction", "reduce_batch", "expand_back", "is_complex",
           "resolve_shape", "sum_transpose", "broadcast_to_impl", "one_axis"]


def is_complex(x: Any) -> bool:
    """Whether ``x`` (an array, a tracer or a Python number) holds complex values."""
    return isinstance(x, complex) or getattr(getattr(x, "dtype", None), "kind", "") == "c"


# -- reshape ---------------------------------------------------------------------------
def _reshape_impl(x: Any, shape: tuple) -> Any:
    m = getattr(x, "reshape", None)  # the method skips NumPy's Python-level wrapper
    return m(shape) if m is not None else array_module(x).reshape(x, shape)


_reshape_impl.method = ("reshape", ("shape",))  # type: ignore[attr-defined]  # see reduction
reshape_p = primitive("reshape", _reshape_impl)
reshape_p.def_abstract(lambda x, shape: abstract.ShapeDtypeStruct(
    resolve_shape(_shape_of(x), shape), x.dtype))
reshape_p.def_linear(lambda ct, ans, x, shape: reshape_p(ct, shape=_shape_of(x)))
reshape_p.def_batch(lambda args, dims, shape: (
    reshape_p(move_bdim(args[0], dims[0], 0), shape=(args[0].shape[dims[0]],) + shape), 0))

_shape_of = shape  # the binders below take a parameter named shape


def resolve_shape(old: tuple, new: Any) -> tuple:
    """``new`` as a tuple of ints with one ``-1`` inferred from the size of ``old``
    (NumPy's ``ValueError`` when the sizes differ)."""
    new = (new,) if isinstance(new, (int, np.integer)) and not isinstance(new, bool) else \
        tuple(int(n) for n in new)
    if -1 in new:
        known = int(math.prod([n for n in new if n != -1]))
        size = int(math.prod(old))
        if new.count(-1) > 1 or (known == 0 and size) or (known and size % known):
            raise ValueError(f"cannot reshape array of size {size} into shape {new}")
        fill = size // known if known else 0
        new = tuple(fill if n == -1 else n for n in new)
    if int(math.prod(new)) != int(math.prod(old)):
        raise ValueError(f"cannot reshape array of size {int(math.prod(old))} into shape {new}")
    return new


def reshape(x: Any, shape: Any) -> Any:
    """``x`` with shape ``shape`` (one ``-1`` inferred); ``x`` itself when it has it."""
    old = _shape_of(x)
    new = resolve_shape(old, shape)
    return x if new == old else reshape_p(x, shape=new)


def expand_dims(x: Any, axis: Any) -> Any:
    """``x`` with length-1 axes inserted at ``axis`` (an int or a tuple, negative allowed)."""
    s = list(_shape_of(x))
    axes = norm_axis(axis, len(s) + (1 if isinstance(axis, (int, np.integer)) else len(axis)))
    for ax in sorted(axes):
        s.insert(ax, 1)
    return reshape_p(x, shape=tuple(s))


def squeeze(x: Any, axis: Any = None) -> Any:
    """``x`` without its length-1 axes (those in ``axis``; every one for ``None``)."""
    s = _shape_of(x)
    axes = tuple(i for i, n in enumerate(s) if n == 1) if axis is None else norm_axis(axis, len(s))
    for ax in axes:
        if s[ax] != 1:
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    new = tuple(n for i, n in enumerate(s) if i not in axes)
    return x if new == s else reshape_p(x, shape=new)


# -- transpose -------------------------------------------------------------------------
def _transpose_impl(x: Any, axes: tuple) -> Any:
    m = getattr(x, "transpose", None)
    return m(axes) if m is not None else array_module(x).transpose(x, axes)


_transpose_impl.method = ("transpose", ("axes",))  # type: ignore[attr-defined]  # see reduction
transpose_p = primitive("transpose", _transpose_impl)
transpose_p.def_abstract(lambda x, axes: abstract.ShapeDtypeStruct(
    tuple(x.shape[a] for a in axes), x.dtype))
transpose_p.def_linear(lambda ct, ans, x, axes: transpose_p(ct, axes=tuple(np.argsort(axes).tolist())))
transpose_p.def_batch(lambda args, dims, axes: (
    transpose_p(move_bdim(args[0], dims[0], 0), axes=(0,) + tuple(a + 1 for a in axes)), 0))


def transpose(x: Any, axes: Any = None) -> Any:
    """``x`` with its axes permuted (``None``: reversed); ``x`` itself for the identity."""
    nd = ndim(x)
    axes = tuple(range(nd))[::-1] if axes is None else norm_axis(axes, nd)
    if len(axes) != nd:
        raise ValueError("axes don't match array")
    return x if axes == tuple(range(nd)) else transpose_p(x, axes=axes)


def moveaxis(x: Any, source: Any, destination: Any) -> Any:
    """``x`` with axes ``source`` moved to ``destination`` (ints or tuples), as a transpose."""
    nd = ndim(x)
    src, dst = norm_axis(source, nd), norm_axis(destination, nd)
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number of elements")
    order = [n for n in range(nd) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(x, tuple(order))


# -- broadcast_to ----------------------------------------------------------------------
def broadcast_to_impl(x: Any, shape: tuple) -> Any:
    """``broadcast_to_p``'s computation, for NumPy fast rules that want it directly."""
    if type(x) is np.ndarray and x.flags.c_contiguous and x.size:
        # A read-only strided view built directly: np.broadcast_to's checks cost far
        # more, and this runs for the cotangent of every sum and mean.
        xs, lead = x.shape, len(shape) - x.ndim
        if lead >= 0 and all(n == 1 or n == m for n, m in zip(xs, shape[lead:])):
            strides = (0,) * lead + tuple(0 if n == 1 else st
                                          for n, st in zip(xs, x.strides))
            out = np.ndarray(shape, x.dtype, x, 0, strides)
            out.flags.writeable = False
            return out
    return array_module(x).broadcast_to(x, shape)


broadcast_to_p = primitive("broadcast_to", broadcast_to_impl)


def _broadcast_to_abstract(x: Any, shape: tuple) -> Any:
    if np.broadcast_shapes(_shape_of(x), shape) != tuple(shape):
        raise ValueError(f"cannot broadcast an array of shape {_shape_of(x)} to {shape}")
    return abstract.ShapeDtypeStruct(shape, x.dtype)


broadcast_to_p.def_abstract(_broadcast_to_abstract)
broadcast_to_p.def_linear(lambda ct, ans, x, shape: unbroadcast(ct, x))


def _broadcast_batch(args: list, dims: list, shape: tuple) -> tuple:
    x = move_bdim(args[0], dims[0], 0)
    n, rest = _shape_of(x)[0], _shape_of(x)[1:]
    x = reshape_p(x, shape=(n,) + (1,) * (len(shape) - len(rest)) + rest) if len(rest) < len(shape) else x
    return broadcast_to_p(x, shape=(n,) + shape), 0


broadcast_to_p.def_batch(_broadcast_batch)


def broadcast_to(x: Any, shape: Any) -> Any:
    """``x`` broadcast to ``shape`` (NumPy's rules); ``x`` itself when it has that shape."""
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
    old = _shape_of(x)
    if old == shape:
        return x
    if len(shape) < len(old) or np.broadcast_shapes(old, shape) != shape:
        raise ValueError(f"cannot broadcast an array of shape {old} to shape {shape}")
    return broadcast_to_p(x, shape=shape)


# -- reductions: the factory, the batching rule, and sum ------------------------------------
def reduce_batch(p: Any) -> Callable:
    """Batching rule of a reduction ``p(x, axis=, keepdims=)``: batch axis first, axes shifted."""
    def rule(args: list, dims: list, axis: tuple | None, keepdims: bool) -> tuple:
        x = move_bdim(args[0], dims[0], 0)
        nd = ndim(x) - 1
        ax = tuple(range(1, nd + 1)) if axis is None else tuple(a + 1 for a in axis)
        return p(x, axis=ax, keepdims=keepdims), 0
    return rule


def reduction(name: str, **kw: Any) -> Any:
    """A primitive ``name(x, axis=, keepdims=)`` computed by the array module's ``name``,
    with its batching rule (``axis``: ``None`` or a tuple of non-negative ints)."""
    def impl(x: Any, axis: Any, keepdims: bool) -> Any:
        method = getattr(x, name, None)  # ndarray/CuPy methods skip NumPy's dispatch layer
        if method is not None:
            return method(axis=axis, keepdims=keepdims)
        return getattr(array_module(x), name)(x, axis=axis, keepdims=keepdims)
    # A staged program calls the array's method directly (what impl calls, less a frame):
    # ``impl.method`` is (name, the parameters passed by position). See transforms/staging.
    impl.method = (name, ())  # type: ignore[attr-defined]
    p = primitive(name, impl, **kw)
    p.def_batch(reduce_batch(p))
    p.def_abstract(abstract.reduction(impl))
    return p


def expand_back(ct: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    """``ct`` of a reduction of ``x`` over ``axis``, reshaped so that it broadcasts against ``x``."""
    if keepdims:
        return ct
    if axis is None:
        s = (1,) * ndim(x)
    else:
        ls = list(_shape_of(x))
        for a in axis:
            ls[a] = 1
        s = tuple(ls)
    # reshape_p directly: the shape is known to fit (this runs in every reduction's rules)
    return ct if _shape_of(ct) == s else reshape_p(ct, shape=s)


sum_p = reduction("sum")


def sum_transpose(ct: Any, ans: Any, x: Any, axis: tuple | None, keepdims: bool) -> Any:
    ct = expand_back(ct, x, axis, keepdims)
    return ct if _shape_of(ct) == _shape_of(x) else broadcast_to_p(ct, shape=_shape_of(x))


sum_p.def_linear(sum_transpose)


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001 (NumPy's name)
    """The sum of ``x`` over ``axis`` (``None``: all; an int or tuple, negative allowed)."""
    return sum_p(x, axis=norm_axis(axis, ndim(x)), keepdims=bool(keepdims))


# -- astype ----------------------------------------------------------------------------
def _astype_impl(x: Any, dtype: Any) -> Any:
    if np.dtype(dtype).kind not in "c" and is_complex(x):
        # Complex to real keeps the real part (NumPy's value, without its ComplexWarning).
        # It also makes the rules below JAX's: the transpose of real -> complex is the
        # real part of a complex cotangent, and of complex -> real it is the real ct as
        # a complex one.
        x = array_module(x).real(x)
    return x.astype(dtype) if hasattr(x, "astype") else np.asarray(x, dtype=dtype)


astype_p = primitive("astype", _astype_impl)
astype_p.def_abstract(lambda x, dtype: abstract.ShapeDtypeStruct(_shape_of(x), dtype))
astype_p.def_vjp(lambda ct, ans, x, dtype: astype_p(ct, dtype=x.dtype) if hasattr(x, "dtype") else ct)
astype_p.def_jvp(lambda t, ans, x, dtype: astype_p(t, dtype=dtype))
astype_p.def_batch(lambda args, dims, dtype: (astype_p(args[0], dtype=dtype), dims[0]))
astype_nondiff = primitive("astype_nondiff", _astype_impl, nondiff=True)
astype_nondiff.def_abstract(astype_p.abstract)
astype_nondiff.def_batch(lambda args, dims, dtype: (astype_nondiff(args[0], dtype=dtype), dims[0]))


def astype(x: Any, dtype: Any) -> Any:
    """``x.astype(dtype)``: differentiable between float and complex dtypes, else constant.

    Complex to real keeps the real part (NumPy's value, without its warning).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda z: astype(z, np.float64) * 2.0)(np.complex128(1 + 1j))
    array(2.+0.j)
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return astype_p(x, dtype=dtype)
    return astype_nondiff(x, dtype=dtype)


# -- rule helpers ----------------------------------------------------------------------
def unbroadcast(ct: Any, x: Any) -> Any:
    """Sum ``ct`` over the axes that broadcasting added or stretched for ``x``."""
    try:  # arrays and tracers (the common case) have shapes
        target, s = x.shape, ct.shape
    except AttributeError:
        target, s = _shape_of(x), _shape_of(ct)
    if s != target:
        target, s = tuple(target), tuple(s)
        lead = len(s) - len(target)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(target) if n == 1 and s[i + lead] != 1)
        if axes:
            # Stretched axes only: keepdims gives the target shape with no reshape after.
            ct = sum_p(ct, axis=axes, keepdims=not lead)
        if _shape_of(ct) != target:
            ct = reshape_p(ct, shape=target)
    dx = getattr(x, "dtype", None)
    if dx is not None and getattr(ct, "dtype", dx) != dx:
        # astype_p: a complex cotangent of a real input casts to its real part (JAX's
        # convention, the transpose of the real -> complex inclusion).
        ct = astype_p(ct, dtype=dx)
    return ct


def move_bdim(x: Any, d: int | None, to: int = 0) -> Any:
    """Move batch axis ``d`` of ``x`` to position ``to`` (no-op when already there)."""
    if d is None or d == to:
        return x
    return moveaxis(x, d, to)


def bdim_to_front(args: Sequence[Any], dims: Sequence[int | None], size: int | None = None
                  ) -> list:
    """Every argument with its batch axis first; unmapped ones broadcast when ``size`` given."""
    out = []
    for x, d in zip(args, dims):
        if d is None:
            if size is not None:
                x = broadcast_to(x, (size,) + _shape_of(x))
        else:
            x = move_bdim(x, d, 0)
        out.append(x)
    return out


def batch_size(args: Sequence[Any], dims: Sequence[int | None]) -> int:
    for x, d in zip(args, dims):
        if d is not None:
            return _shape_of(x)[d]
    raise ValueError("no batched argument")


def elementwise_batch(prim: Callable) -> Callable:
    """Batching rule for broadcasting ops: align every batch axis at the front."""
    def rule(args: Sequence[Any], dims: Sequence[int | None], **params: Any) -> tuple:
        nds = [ndim(x) - (d is not None) for x, d in zip(args, dims)]
        out_nd = max(nds)
        first = next(d for d in dims if d is not None)
        # Fast path: every argument is batched on the same axis with full rank.
        if all(d == first and n == out_nd for d, n in zip(dims, nds)):
            return prim(*args, **params), first
        new = []
        for x, d, n in zip(args, dims, nds):
            if d is not None:
                x = move_bdim(x, d, 0)
                if n < out_nd:
                    s = _shape_of(x)
                    x = reshape_p(x, shape=(s[0],) + (1,) * (out_nd - n) + s[1:])
            new.append(x)
        return prim(*new, **params), 0
    return rule


def one_axis(axis: Any, nd: int) -> int:
    """A single axis as a non-negative int (``AxisError`` when out of range)."""
    try:
        a = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer or None here, got {axis!r}") from None
    return norm_axis(a, nd)[0]
