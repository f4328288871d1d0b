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

from .core.trace import Tracer, escaped

#: numpy function -> funcflux implementation (``__array_function__``).
FUNCTIONS: dict[Any, Callable[..., Any]] = {}
#: numpy ufunc -> funcflux implementation (``__array_ufunc__``).
UFUNCS: dict[Any, Callable[..., Any]] = {}

NO_RULE = (
    "funcflux has no differentiation rule for numpy.{name}, called here on a traced value "
    "(inside grad, vjp, jvp or vmap). Use a supported function, or define the operation "
    "yourself with ff.custom_vjp / ff.custom_jvp."
)
#: The same for a ufunc, named with its module (``numpy.tanh``, ``scipy.special.erf``).
NO_UFUNC_RULE = NO_RULE.replace("numpy.{name}", "{name}")
TO_NUMPY = (
    "{call} on a traced value would drop it out of the transform (it would become a plain "
    "number or an object array and lose its derivative). Build arrays from traced values "
    "with funcflux.numpy (fnp.array, fnp.stack, fnp.concatenate); to index a NumPy array "
    "with a traced index use fnp.getitem(a, idx) or fnp.take(a, idx); if the value is meant "
    "to be a constant, use ff.stop_gradient on it first. SciPy functions convert their "
    "input this way: inside a transform use funcflux.scipy (funcflux.scipy.linalg.expm, "
    "funcflux.scipy.special.logsumexp...)."
)


def implements(*np_funcs: Any) -> Callable[[Callable], Callable]:
    """Register the decorated function as the traced version of ``np_funcs``."""
    def deco(fn: Callable) -> Callable:
        for f in np_funcs:
            if f is not None:
                FUNCTIONS[f] = fn
        return fn
    return deco


def implements_ufunc(ufunc: Any, fn: Callable) -> Callable:
    """Register ``fn`` as the traced version of ``ufunc`` (and its ``np.`` function)."""
    UFUNCS[ufunc] = fn
    return fn


# ---------------------------------------------------------------------------------
# The families declare their primitives and register their NumPy entries on import.
from .ops import elementwise as _elementwise  # noqa: E402
from .ops import reductions as _reductions  # noqa: E402
from .ops import shape as _shape  # noqa: E402
from .ops import indexing as _indexing  # noqa: E402
from .ops import linalg as _linalg  # noqa: E402
from .ops import softmax as _softmax  # noqa: E402
from .ops import patches as _patches  # noqa: E402
from .ops import nn as _nn  # noqa: E402,F401  (declares the fused layer primitives)
from .ops import signal as _signal  # noqa: E402
from .ops import fft as _fft  # noqa: E402

#: ``fnp.linalg``: the traced versions of ``numpy.linalg`` functions.
linalg = _linalg.namespace
#: ``fnp.fft``: the traced versions of ``numpy.fft`` functions.
fft = _fft.namespace
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

_REDUCE = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min"}


# ---------------------------------------------------------------------------------
# The NumPy face of every tracer.
def _array_ufunc(self: Tracer, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
    if not kwargs and method == "__call__":  # the common case, kept short: np.tanh(x)
        fn = UFUNCS.get(ufunc)
        if fn is not None:
            return fn(*inputs)
    out = kwargs.pop("out", None)
    if out is not None and any(o is not None for o in (out if isinstance(out, tuple) else (out,))):
        raise TypeError(f"{_ufunc_name(ufunc)}(..., out=...) cannot write into an array "
                        "inside a transform: arrays are values here. Drop out= and use the result.")
    if method == "__call__":
        fn = UFUNCS.get(ufunc)
        if fn is None:
            fn = _scipy_ufunc(ufunc)
        if fn is None:
            raise TypeError(NO_UFUNC_RULE.format(name=_ufunc_name(ufunc)))
        bad = {k: v for k, v in kwargs.items() if not (k == "dtype" and v is None) and
               not (k == "where" and v is True) and not (k == "casting" and v == "same_kind")}
        if bad:
            raise TypeError(f"{_ufunc_name(ufunc)} on traced values does not support "
                            f"{', '.join(bad)}=; apply it without and convert the result.")
        return fn(*inputs)
    if method == "reduce" and ufunc in _REDUCE:
        axis = kwargs.pop("axis", 0)
        keepdims = kwargs.pop("keepdims", False)
        return globals()[_REDUCE[ufunc]](inputs[0], axis=axis, keepdims=keepdims)
    raise TypeError(NO_UFUNC_RULE.format(name=f"{_ufunc_name(ufunc)}.{method}"))


def _scipy_ufunc(ufunc: Any) -> Callable[..., Any] | None:
    """The funcflux version of a ``scipy.special`` ufunc, looked up by name when first met.

    SciPy is never imported here: a SciPy ufunc can only come from an imported
    ``scipy.special``, so its presence in ``sys.modules`` is the test. Found entries
    join ``UFUNCS``, so the next call takes the fast path.
    """
    sp = sys.modules.get("scipy.special")
    if sp is None or vars(sp).get(ufunc.__name__) is not ufunc:
        return None
    from .ops.special import SCIPY_UFUNCS
    fn = SCIPY_UFUNCS.get(ufunc.__name__)
    if fn is not None:
        UFUNCS[ufunc] = fn
    return fn


def _ufunc_name(ufunc: Any) -> str:
    """``ufunc`` with the public module that holds it, for messages: ``scipy.special.erf``."""
    name = ufunc.__name__
    if getattr(np, name, None) is ufunc:
        return f"numpy.{name}"
    best = None
    for modname, mod in list(sys.modules.items()):
        # (a private module is skipped: ``"._" in`` because this module's ``any`` is np.any)
        if mod is None or "._" in "." + modname:
            continue
        try:
            held = vars(mod).get(name)
        except TypeError:  # not a module (some packages put other objects here)
            continue
        if held is ufunc and (best is None or len(modname) < len(best)):
            best = modname
    return f"{best}.{name}" if best else f"the ufunc {name!r}"


def _array_function(self: Tracer, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
    fn = FUNCTIONS.get(func)
    if fn is None:
        mod = getattr(func, "__module__", "numpy") or "numpy"
        name = func.__name__ if mod in ("numpy", "numpy._core.fromnumeric") else \
            f"{mod.replace('numpy.', '', 1) if mod.startswith('numpy.') else mod}.{func.__name__}"
        if ".linalg" in mod:
            name = f"linalg.{func.__name__}"
        raise TypeError(NO_RULE.format(name=name))
    return fn(*args, **kwargs)


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


def _repr(self: Tracer) -> str:
    return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"


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
    T.__array_ufunc__ = _array_ufunc  # type: ignore[attr-defined]
    T.__array_function__ = _array_function  # type: ignore[attr-defined]
    T.__array__ = _refuse("np.asarray / np.array")  # type: ignore[attr-defined]
    T.__float__ = _refuse("float()")  # type: ignore[attr-defined]
    T.__complex__ = _refuse("complex()")  # type: ignore[attr-defined]
    T.item = _refuse(".item()")  # type: ignore[attr-defined]
    T.tolist = _refuse(".tolist()")  # type: ignore[attr-defined]
    T.__bool__ = _bool  # type: ignore[attr-defined]
    T.__len__ = _len  # type: ignore[attr-defined]
    T.__iter__ = _iter  # type: ignore[attr-defined]
    T.__repr__ = _repr  # type: ignore[attr-defined]
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
        from .core.backend import array_module
        return array_module(object).array(object, dtype=dtype)
    if isinstance(object, Tracer):
        out = object
    else:
        if not len(object):
            raise ValueError("fnp.array: an empty list holds no traced value")
        out = globals()["stack"]([array(o) if traced(o) else np.asarray(o) for o in object])
    return out if dtype is None else globals()["astype"](out, dtype)


__all__.append("array")
