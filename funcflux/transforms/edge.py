"""The API edge shared by every transform: pytrees in, flat lists of leaves out.

Traces never see pytrees. This module decides which leaves are differentiable,
normalises ``argnums`` and ``in_axes``, and words the errors users see when an
argument is wrong.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..dtypes import float0
from ..ops.common import shape as shape_of
from .. import tree

NO_FLOAT_LEAF = (
    "{fn}: argument {arg} has no floating-point leaf to differentiate (its leaves are "
    "{kinds}). Pass floats, e.g. np.array([2., 1.]) or x.astype(np.float64); integer and "
    "bool arrays are treated as constants."
)
NO_FLOAT_PRIMAL = (
    "{fn}: no primal has a floating-point leaf to differentiate (their leaves are {kinds}). "
    "Pass floats, e.g. x.astype(np.float64); integer and bool arrays are constants."
)
DUPLICATE_ARGNUMS = (
    "{fn}: argnums={argnums!r} names argument {dup} more than once. Each argument is "
    "differentiated once; to get a derivative twice, duplicate the result instead."
)
COMPLEX_OUTPUT = (
    "{fn}: the function's output{where} is complex ({dtype}), but {fn} differentiates "
    "real-valued outputs. For a holomorphic function (z ** 2, np.exp(z), ...) pass "
    "holomorphic=True to get its complex derivative f'(z); otherwise make the output real, "
    "e.g. np.real(out) or np.abs(out) ** 2, or use ff.vjp with a complex cotangent."
)
HOLOMORPHIC_INPUT = (
    "{fn}(holomorphic=True): {where} has dtype {dtype}, but every differentiated input of a "
    "holomorphic function must be complex. Cast it (x.astype(np.complex128)) or drop "
    "holomorphic=True."
)
HOLOMORPHIC_OUTPUT = (
    "{fn}(holomorphic=True): the function's output{where} has dtype {dtype}, but a "
    "holomorphic function's output must be complex. Drop holomorphic=True to differentiate "
    "a real-valued function of complex inputs."
)
FORWARD_COMPLEX_INPUT = (
    "{fn}: {where} is complex ({dtype}); without holomorphic=True {fn} differentiates "
    "functions of real inputs (as in JAX). Pass holomorphic=True for a holomorphic function, "
    "or use ff.jvp with complex tangents, or ff.jacrev."
)


def dtype_of(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    if d is not None:
        return d
    return np.result_type(x) if isinstance(x, (int, float, complex, bool)) else None


def is_float_leaf(x: Any) -> bool:
    """Floating and complex arrays and Python floats are differentiable; ints and bools
    are constants (or, with ``allow_int=True``, get ``float0`` zeros).

    (A bare Python int passed as a whole argument is promoted first: see ``promote_ints``.)
    """
    if isinstance(x, (float, complex)):
        return True
    d = getattr(x, "dtype", None)
    return d is not None and getattr(d, "kind", "") in ("f", "c")


def as_primal(x: Any) -> Any:
    """Python floats become NumPy float64 scalars, so derivatives have a dtype and shape.

    A scalar rather than a 0-d array: CuPy (and the strict stand-in) mix NumPy scalars
    with device arrays but refuse host 0-d arrays, and ``grad(f)(x_gpu, 2.0)`` must work.
    """
    if isinstance(x, (float, complex)) and not isinstance(x, np.generic):
        return np.float64(x) if type(x) is float else np.complex128(x)
    return x


def promote_int(a: Any) -> Any:
    """A differentiated argument that is a bare Python int is read as a float
    (``grad(f)(3)`` is ``grad(f)(3.0)``); ints inside containers stay constants."""
    return float(a) if type(a) is int else a


def promote_ints(args: Sequence[Any]) -> tuple:
    """:func:`promote_int` on each differentiated argument."""
    return tuple(promote_int(a) for a in args)


def as_output(x: Any) -> Any:
    """NumPy scalars (what NumPy returns for 0-d results) become 0-d arrays at the edge,
    so every transform hands back arrays, as for any other shape."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def is_complex(x: Any) -> bool:
    return getattr(dtype_of(x), "kind", "") == "c"


def is_int_leaf(x: Any) -> bool:
    """Integer and bool arrays (and Python ints/bools): what ``allow_int=True`` admits."""
    return getattr(dtype_of(x), "kind", "") in ("i", "u", "b")


def float0_zeros(x: Any) -> Any:
    """The derivative of an integer input under ``allow_int=True``: ``float0`` zeros."""
    return np.zeros(shape_of(x), dtype=float0)


def leafpath(root: str, i: int, path: Any) -> str:
    return "%s[%d]%s" % (root, i, "".join(map(str, path)))


def check_inputs(fn: str, nums: Sequence[int], dyn: Sequence[Any], holomorphic: bool,
                 allow_int: bool, forward: bool = False) -> None:
    """The dtype checks for the differentiated arguments ``dyn`` (``args[nums]``).

    JAX's rules: with ``holomorphic`` every differentiated leaf is complex; an
    argument with no float leaf is an error unless ``allow_int``; forward-mode
    Jacobians (``forward``) refuse complex inputs unless ``holomorphic``.
    """
    for i, a in zip(nums, dyn):
        leaves = tree.leaves_with_path(a)
        if leaves and not allow_int and not any(is_float_leaf(x) for _, x in leaves):
            raise TypeError(NO_FLOAT_LEAF.format(fn=fn, arg=i,
                                                 kinds=leaf_kinds([x for _, x in leaves])))
        for path, x in leaves:
            where = leafpath("args", i, path)
            if holomorphic and is_float_leaf(x) and not is_complex(x):
                raise TypeError(HOLOMORPHIC_INPUT.format(fn=fn, where=where, dtype=dtype_of(x)))
            if forward and not holomorphic and is_complex(x):
                raise TypeError(FORWARD_COMPLEX_INPUT.format(fn=fn, where=where,
                                                             dtype=dtype_of(x)))


def check_output(fn: str, holomorphic: bool, x: Any, where: str = "") -> None:
    """Reverse-mode derivatives of a whole function (grad, jacrev) need a real output, or
    a complex one with ``holomorphic=True`` (JAX's rule)."""
    c = is_complex(x)
    if holomorphic and not c:
        raise TypeError(HOLOMORPHIC_OUTPUT.format(fn=fn, where=where, dtype=dtype_of(x)))
    if c and not holomorphic:
        raise TypeError(COMPLEX_OUTPUT.format(fn=fn, where=where, dtype=dtype_of(x)))


def normalise_argnums(fn: str, argnums: int | Sequence[int], nargs: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not isinstance(a, int) or not -nargs <= a < nargs:
            raise ValueError(f"{fn}: argnums={argnums!r} is out of range for a call with "
                             f"{nargs} positional argument(s).")
    out = tuple(a % nargs for a in nums)
    if len(set(out)) != len(out):
        dup = next(a for a in out if out.count(a) > 1)
        raise ValueError(DUPLICATE_ARGNUMS.format(fn=fn, argnums=argnums, dup=dup))
    return out


def split_args(fun: Callable, args: tuple, nums: tuple[int, ...]) -> tuple[Callable, tuple]:
    """``fun`` as a function of ``args[nums]`` only, with the rest fixed."""
    def partial(*dyn: Any) -> Any:
        full = list(args)
        for i, v in zip(nums, dyn):
            full[i] = v
        return fun(*full)
    return partial, tuple(args[i] for i in nums)


def leaf_kinds(leaves: list) -> str:
    kinds = sorted({str(dtype_of(x)) if dtype_of(x) is not None else type(x).__name__
                    for x in leaves})
    return ", ".join(kinds) if kinds else "none"


def owned(results: list, given: Sequence[Any]) -> list:
    """``results`` (derivative leaves about to reach the user) as ordinary arrays, in place.

    A NumPy leaf that is read-only (a broadcast view, say ``grad(np.sum)``) or
    that may share memory with an array the user gave (``given``) or with an
    earlier result is copied; the others, the usual case, pass untouched and
    keep their layout. Other array types (CuPy) pass as they are. NumPy points a
    view's ``base`` at the array that owns the memory, so ``base`` (or the array
    itself) identifies the memory a leaf lives in.
    """
    seen: dict[int, list] = {}
    given_keys = None
    for k, g in enumerate(results):
        if not isinstance(g, np.ndarray):
            continue
        b = g.base
        key = id(g) if b is None else id(b)
        if g.flags.writeable:
            if given_keys is None:
                given_keys = {id(u) if u.base is None else id(u.base)
                              for u in given if isinstance(u, np.ndarray)}
            others = seen.get(key)
            if key not in given_keys and (
                    others is None or not any(np.may_share_memory(g, o) for o in others)):
                if others is None:
                    seen[key] = [g]
                else:
                    others.append(g)
                continue
        g = results[k] = g.copy(order="K")
        seen[id(g)] = [g]
    return results
