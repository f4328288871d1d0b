"""``funcflux.numpy``: NumPy's functions on traced values, and the routing to them.

Inside a transform, user code calls plain NumPy. NumPy hands traced values to
us through its two protocols, ``__array_ufunc__`` (``np.tanh(x)``, ``x + 1``
from an ndarray) and ``__array_function__`` (``np.sum``, ``np.concatenate``...);
both look the call up in one table and call the function of the same name
here, which binds a primitive. Operators and ndarray methods on tracers land
here too. A NumPy function with no entry raises a ``TypeError`` that names it,
never a silently undifferentiated result.

This module is also the place to reach for when NumPy cannot dispatch, such as
building an array from a list of traced scalars:

>>> import numpy as np, funcflux as ff, funcflux.numpy as fnp
>>> ff.grad(lambda x: np.sum(fnp.stack([x, 2 * x]) ** 2))(np.array([1.0, 2.0]))
array([10., 20.])

The functions work on plain arrays as well (they compute with NumPy, or with
CuPy on CuPy arrays).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

from ..core import dispatch as _dispatch
from ..core.trace import Tracer, escaped

# The routing table lives below this module and the primitives (funcflux.core.dispatch);
# its names are re-exported here, where users look for them.
FUNCTIONS, UFUNCS = _dispatch.FUNCTIONS, _dispatch.UFUNCS
implements, implements_ufunc = _dispatch.implements, _dispatch.implements_ufunc
NO_RULE, NO_UFUNC_RULE = _dispatch.NO_RULE, _dispatch.NO_UFUNC_RULE
TO_NUMPY = (
    "{call} on a traced value would drop it out of the transform (it would become a plain "
    "number or an object array and lose its derivative). Build arrays from traced values "
    "with funcflux.numpy (fnp.array, fnp.stack, fnp.concatenate); to index a NumPy array "
    "with a traced index use fnp.getitem(a, idx) or fnp.take(a, idx); if the value is meant "
    "to be a constant, use ff.stop_gradient on it first. SciPy functions convert their "
    "input this way: inside a transform use funcflux.scipy (funcflux.scipy.linalg.expm, "
    "funcflux.scipy.special.logsumexp...)."
)


# ---------------------------------------------------------------------------------
# The surface, one module per family of primitives (funcflux/ops/<family>.py holds the
# primitives and their rules; these hold NumPy's signatures and compositions and register
# them in the routing table). linalg and fft are public submodules, as in NumPy.
from . import _elementwise, _reductions, _shape, _indexing, _linalg, _softmax  # noqa: E402
from . import _patches, _signal, _nn  # noqa: E402,F401
from . import linalg, fft  # noqa: E402

__all__: list[str] = ["linalg", "fft"]
for _m in (_elementwise, _reductions, _shape, _indexing, _linalg, _softmax, _patches, _signal):
    for _n in _m.__all__:
        globals()[_n] = getattr(_m, _n)
        __all__.append(_n)
del _m, _n

@implements(np.shape)
def shape(a: Any) -> tuple:
    """``np.shape``: static, so it works on traced values too."""
    return tuple(a.shape) if hasattr(a, "shape") else np.shape(a)


@implements(np.ndim)
def ndim(a: Any) -> int:
    return len(shape(a))


@implements(np.size)
def size(a: Any, axis: int | None = None) -> int:
    s = shape(a)
    return int(np.prod(s)) if axis is None else s[axis]


__all__ += ["shape", "ndim", "size"]


def _scipy_ufunc(ufunc: Any) -> Callable[..., Any] | None:
    """The funcflux version of a ``scipy.special`` ufunc, looked up by name when first met.

    SciPy is never imported here: a SciPy ufunc can only come from an imported
    ``scipy.special``, so its presence in ``sys.modules`` is the test. The dispatch
    table keeps what it finds, so the next call takes the fast path.
    """
    sp = sys.modules.get("scipy.special")
    if sp is None or vars(sp).get(ufunc.__name__) is not ufunc:
        return None
    from ..ops.special import SCIPY_UFUNCS
    return SCIPY_UFUNCS.get(ufunc.__name__)


_dispatch.UFUNC_FALLBACKS.append(_scipy_ufunc)


INDEX_TRICKS = (
    "np.{name}[...] on a traced value: NumPy builds its result with np.array, which has no "
    "hook for traced values, so it cannot keep the derivative. Write {instead}."
)
_INSTEAD = {
    "r_": "fnp.concatenate([a, b]) for np.r_[a, b] (fnp.atleast_1d(s) for a scalar s; "
          "axis=k for np.r_['k', a, b])",
    "c_": "fnp.column_stack([a, b]) for np.c_[a, b] (fnp.concatenate([a, b], axis=-1) "
          "for arrays of 2 or more dimensions)",
}


def _refuse(call: str) -> Callable:
    def refuse(self: Tracer, *a: Any, **k: Any) -> Any:
        if self._trace.dead:  # a tracer kept past its transform: say so, not "convert it"
            raise escaped(self)
        # np.r_ / np.c_ call np.array on each item from AxisConcatenator.__getitem__.
        caller = sys._getframe(1)
        if caller.f_code.co_name == "__getitem__" and "index_tricks" in caller.f_code.co_filename:
            name = "c_" if type(caller.f_locals.get("self")).__name__ == "CClass" else "r_"
            raise TypeError(INDEX_TRICKS.format(name=name, instead=_INSTEAD[name]))
        raise TypeError(TO_NUMPY.format(call=call))
    return refuse


def _bool(self: Tracer) -> bool:
    # Eager tracing: control flow reads the concrete value (vmap's tracer overrides this).
    return bool(self.aval)


def _len(self: Tracer) -> int:
    s = self.shape
    if not s:
        raise TypeError("len() of unsized (0-d) traced value")
    return s[0]


def _iter(self: Tracer) -> Any:
    s = self.shape
    if not s:
        raise TypeError("iteration over a 0-d traced value")
    return (self[i] for i in range(s[0]))


def _method(name: str) -> Callable:
    def m(self: Tracer, *a: Any, **k: Any) -> Any:
        return globals()[name](self, *a, **k)
    m.__name__ = name
    return m


def _reshape_method(self: Tracer, *shape: Any, order: str = "C") -> Any:
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = tuple(shape[0])
    return globals()["reshape"](self, shape, order=order)


def _transpose_method(self: Tracer, *axes: Any) -> Any:
    if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], int)):
        axes = axes[0]
    return globals()["transpose"](self, axes or None)


def _binop(name: str, reflected: bool = False) -> Callable:
    fn = globals()[name]  # every family has loaded by now: resolve once, not per call
    if reflected:
        def op(self: Tracer, other: Any) -> Any:
            return fn(other, self)
    else:
        def op(self: Tracer, other: Any) -> Any:
            return fn(self, other)
    return op


def _install_tracer_face() -> None:
    T = Tracer
    T.__array_ufunc__ = _dispatch.array_ufunc  # type: ignore[attr-defined]
    T.__array_function__ = _dispatch.array_function  # type: ignore[attr-defined]
    T.__array__ = _refuse("np.asarray / np.array")  # type: ignore[attr-defined]
    T.__float__ = _refuse("float()")  # type: ignore[attr-defined]
    T.__complex__ = _refuse("complex()")  # type: ignore[attr-defined]
    T.item = _refuse(".item()")  # type: ignore[attr-defined]
    T.tolist = _refuse(".tolist()")  # type: ignore[attr-defined]
    T.__bool__ = _bool  # type: ignore[attr-defined]
    T.__len__ = _len  # type: ignore[attr-defined]
    T.__iter__ = _iter  # type: ignore[attr-defined]
    T.__hash__ = None  # type: ignore[assignment]  # like ndarray: == is elementwise
    for dunder, name in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                         ("truediv", "true_divide"), ("pow", "power"), ("matmul", "matmul"),
                         ("floordiv", "floor_divide"), ("mod", "mod")]:
        setattr(T, f"__{dunder}__", _binop(name))
        setattr(T, f"__r{dunder}__", _binop(name, reflected=True))
    for dunder, name in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"),
                         ("ge", "greater_equal"), ("eq", "equal"), ("ne", "not_equal")]:
        setattr(T, f"__{dunder}__", _binop(name))
    # As on ndarrays, & | ^ ~ are bitwise (the same as logical on bool masks).
    for dunder, name in [("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor")]:
        setattr(T, f"__{dunder}__", _binop(name))
        setattr(T, f"__r{dunder}__", _binop(name, reflected=True))
    T.__round__ = lambda self, ndigits=None: globals()["round"](self, ndigits or 0)  # type: ignore[attr-defined]
    T.__neg__ = _method("negative")  # type: ignore[attr-defined]
    T.__pos__ = lambda self: self  # type: ignore[attr-defined]
    T.__abs__ = _method("abs")  # type: ignore[attr-defined]
    T.__invert__ = _method("invert")  # type: ignore[attr-defined]
    T.__getitem__ = _method("getitem")  # type: ignore[attr-defined]
    T.__setitem__ = _indexing._setitem  # type: ignore[attr-defined]  # refuses: values are immutable
    for name in ["sum", "mean", "prod", "max", "min", "var", "std", "cumsum", "cumprod",
                 "argmax", "argmin", "clip", "dot", "swapaxes", "squeeze", "ravel", "repeat",
                 "take", "diagonal", "trace", "all", "any", "round", "conj", "nonzero",
                 "argsort", "sort", "conjugate"]:
        setattr(T, name, _method(name))
    T.reshape = _reshape_method  # type: ignore[attr-defined]
    T.transpose = _transpose_method  # type: ignore[attr-defined]
    T.flatten = lambda self, order="C": globals()["reshape"](self, (-1,))  # type: ignore[attr-defined]
    T.astype = lambda self, dtype, copy=True: globals()["astype"](self, dtype)  # type: ignore[attr-defined]
    T.copy = lambda self: self  # type: ignore[attr-defined]  # values are immutable
    T.ndim = property(lambda self: len(self.shape))  # type: ignore[attr-defined]
    T.size = property(lambda self: int(np.prod(self.shape)))  # type: ignore[attr-defined]
    T.T = property(lambda self: globals()["transpose"](self))  # type: ignore[attr-defined]
    T.mT = property(lambda self: globals()["swapaxes"](self, -1, -2))  # type: ignore[attr-defined]
    T.real = property(lambda self: globals()["real"](self))  # type: ignore[attr-defined]
    T.imag = property(lambda self: globals()["imag"](self))  # type: ignore[attr-defined]


_install_tracer_face()


def array(object: Any, dtype: Any = None) -> Any:
    """``np.array`` that also accepts traced values inside (nested) lists and tuples.

    ``np.array([x, y])`` cannot keep a derivative (NumPy would build an object
    array); this stacks the entries with primitives instead.

    >>> import numpy as np, funcflux as ff, funcflux.numpy as fnp
    >>> ff.grad(lambda x: np.sum(fnp.array([[x, 2.0 * x], [x ** 2, 1.0]])))(3.0)
    array(9.)
    """
    def traced(o: Any) -> bool:
        if isinstance(o, Tracer):
            return True
        return isinstance(o, (list, tuple)) and any(traced(e) for e in o)

    if not traced(object):
        from ..core.backend import array_module
        return array_module(object).array(object, dtype=dtype)
    if isinstance(object, Tracer):
        out = object
    else:
        if not len(object):
            raise ValueError("fnp.array: an empty list holds no traced value")
        out = globals()["stack"]([array(o) if traced(o) else np.asarray(o) for o in object])
    return out if dtype is None else globals()["astype"](out, dtype)


__all__.append("array")
