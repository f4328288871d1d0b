"""The API edge shared by every transform: pytrees in, flat lists of leaves out.

Traces never see pytrees. This module decides which leaves are differentiable,
normalises ``argnums`` and ``in_axes``, and words the errors users see when an
argument is wrong.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..core.trace import Tracer
from .. import tree

NO_FLOAT_LEAF = (
    "{fn}: argument {arg} has no floating-point leaf to differentiate (its leaves are "
    "{kinds}). Pass floats, e.g. np.array([2., 1.]) or x.astype(np.float64); integer and "
    "bool arrays are treated as constants."
)
COMPLEX_UNSUPPORTED = (
    "{fn}: {what} at {path} is complex ({dtype}). funcflux does not differentiate complex "
    "functions yet; split the value into real and imaginary parts."
)


def dtype_of(x: Any) -> Any:
    d = getattr(x, "dtype", None)
    if d is not None:
        return d
    return np.result_type(x) if isinstance(x, (int, float, complex, bool)) else None


def is_float_leaf(x: Any) -> bool:
    """Floating arrays and Python floats are differentiable; ints and bools are constants.

    (A bare Python int passed as a whole argument is promoted first: see ``promote_ints``.)
    """
    if isinstance(x, (float, complex)):  # complex is refused later, with its own message
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


def promote_ints(args: Sequence[Any]) -> tuple:
    """A differentiated argument that is a bare Python int is read as a float
    (``grad(f)(3)`` is ``grad(f)(3.0)``); ints inside containers stay constants."""
    return tuple(float(a) if type(a) is int else a for a in args)


def as_output(x: Any) -> Any:
    """NumPy scalars (what NumPy returns for 0-d results) become 0-d arrays at the edge,
    so every transform hands back arrays, as for any other shape."""
    return np.asarray(x) if isinstance(x, np.generic) else x


def check_not_complex(fn: str, what: str, path: Any, x: Any) -> None:
    """Raise for a complex leaf; ``path`` is a key path or an already written string."""
    d = dtype_of(x)
    if d is not None and getattr(d, "kind", "") == "c":
        where = path if isinstance(path, str) else tree.keystr(path)
        raise NotImplementedError(COMPLEX_UNSUPPORTED.format(fn=fn, what=what, path=where,
                                                             dtype=d))


def is_complex(x: Any) -> bool:
    return getattr(dtype_of(x), "kind", "") == "c"


def check_args_not_complex(fn: str, nums: Sequence[int], dyn: Sequence[Any],
                           root: str = "args") -> None:
    """The complex check for the differentiated arguments, naming ``args[i]...``."""
    what = "the argument" if root == "args" else "the input"
    for i, a in zip(nums, dyn):
        for path, x in tree.leaves_with_path(a):
            check_not_complex(fn, what, "%s[%d]%s" % (root, i, "".join(map(str, path))), x)


def normalise_argnums(fn: str, argnums: int | Sequence[int], nargs: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not isinstance(a, int) or not -nargs <= a < nargs:
            raise ValueError(f"{fn}: argnums={argnums!r} is out of range for a call with "
                             f"{nargs} positional argument(s).")
    return tuple(a % nargs for a in nums)


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


def shape_of(x: Any) -> tuple:
    s = getattr(x, "shape", None)
    return tuple(s) if s is not None else np.shape(x)


def is_tracer(x: Any) -> bool:
    return isinstance(x, Tracer)
