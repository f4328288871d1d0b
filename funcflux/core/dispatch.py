"""The routing table: which funcflux function NumPy hands a traced value to.

NumPy hands traced values back to funcflux through its two protocols,
``__array_ufunc__`` (``np.tanh(x)``, ``a + x`` with ``a`` an ndarray) and
``__array_function__`` (``np.sum``, ``np.concatenate``...). Both handlers here look
the NumPy callable up in one table: ``UFUNCS`` or ``FUNCTIONS``. The table sits below
the primitives (``funcflux.ops``) and the NumPy surface (``funcflux.numpy``), which
fill it on import with ``implements`` and ``implements_ufunc``; nothing here knows
what any entry computes. ``funcflux.numpy`` installs the handlers on ``Tracer``.

A callable with no entry raises a ``TypeError`` that names it (with its module:
``numpy.fft.hfft``, ``scipy.special.struve``), never a silently undifferentiated
result. ``UFUNC_FALLBACKS`` lets a higher layer find entries lazily (SciPy's
ufuncs, looked up by name without importing SciPy).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np

#: numpy function -> funcflux implementation (``__array_function__``).
FUNCTIONS: dict[Any, Callable[..., Any]] = {}
#: numpy ufunc -> funcflux implementation (``__array_ufunc__``).
UFUNCS: dict[Any, Callable[..., Any]] = {}
#: ``fallback(ufunc) -> implementation or None``, asked in order for a ufunc not in
#: ``UFUNCS``; a found implementation joins ``UFUNCS``.
UFUNC_FALLBACKS: list[Callable[[Any], Callable[..., Any] | None]] = []

NO_RULE = (
    "funcflux has no differentiation rule for numpy.{name}, called here on a traced value "
    "(inside grad, vjp, jvp or vmap). Use a supported function, or define the operation "
    "yourself with ff.custom_vjp / ff.custom_jvp."
)
#: The same for a ufunc, named with its module (``numpy.tanh``, ``scipy.special.erf``).
NO_UFUNC_RULE = NO_RULE.replace("numpy.{name}", "{name}")
OUT_ARG = ("{name}(..., out=...) cannot write into an array inside a transform: arrays are "
           "values here. Drop out= and use the result.")
UFUNC_KWARGS = ("{name} on traced values does not support {kws}=; apply it without and "
                "convert the result.")

# ufunc.reduce methods that have a traced version: the ufunc -> the numpy function.
_REDUCE = {np.add: np.sum, np.multiply: np.prod, np.maximum: np.max, np.minimum: np.min}


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


def array_ufunc(self: Any, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
    """``Tracer.__array_ufunc__``: the table's entry for ``ufunc``, or an error naming it."""
    if not kwargs and method == "__call__":  # the common case, kept short: np.tanh(x)
        fn = UFUNCS.get(ufunc)
        if fn is not None:
            return fn(*inputs)
    out = kwargs.pop("out", None)
    if out is not None and any(o is not None for o in (out if isinstance(out, tuple) else (out,))):
        raise TypeError(OUT_ARG.format(name=ufunc_name(ufunc)))
    if method == "__call__":
        fn = UFUNCS.get(ufunc)
        for fallback in UFUNC_FALLBACKS:
            if fn is not None:
                break
            fn = fallback(ufunc)
            if fn is not None:
                UFUNCS[ufunc] = fn
        if fn is None:
            raise TypeError(NO_UFUNC_RULE.format(name=ufunc_name(ufunc)))
        bad = {k: v for k, v in kwargs.items() if not (k == "dtype" and v is None) and
               not (k == "where" and v is True) and not (k == "casting" and v == "same_kind")}
        if bad:
            raise TypeError(UFUNC_KWARGS.format(name=ufunc_name(ufunc), kws=", ".join(bad)))
        return fn(*inputs)
    if method == "reduce" and ufunc in _REDUCE and _REDUCE[ufunc] in FUNCTIONS:
        axis = kwargs.pop("axis", 0)
        keepdims = kwargs.pop("keepdims", False)
        return FUNCTIONS[_REDUCE[ufunc]](inputs[0], axis=axis, keepdims=keepdims)
    raise TypeError(NO_UFUNC_RULE.format(name=f"{ufunc_name(ufunc)}.{method}"))


def array_function(self: Any, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
    """``Tracer.__array_function__``: the table's entry for ``func``, or an error naming it."""
    fn = FUNCTIONS.get(func)
    if fn is None:
        mod = getattr(func, "__module__", "numpy") or "numpy"
        name = func.__name__ if mod in ("numpy", "numpy._core.fromnumeric") else \
            f"{mod.replace('numpy.', '', 1) if mod.startswith('numpy.') else mod}.{func.__name__}"
        if ".linalg" in mod:
            name = f"linalg.{func.__name__}"
        raise TypeError(NO_RULE.format(name=name))
    return fn(*args, **kwargs)


def ufunc_name(ufunc: Any) -> str:
    """``ufunc`` with the public module that holds it, for messages: ``scipy.special.erf``."""
    name = ufunc.__name__
    if getattr(np, name, None) is ufunc:
        return f"numpy.{name}"
    best = None
    for modname, mod in list(sys.modules.items()):
        # (a private module is skipped: ``"._" in`` because funcflux.numpy's ``any`` is np.any)
        if mod is None or "._" in "." + modname:
            continue
        try:
            held = vars(mod).get(name)
        except TypeError:  # not a module (some packages put other objects here)
            continue
        if held is ufunc and (best is None or len(modname) < len(best)):
            best = modname
    return f"{best}.{name}" if best else f"the ufunc {name!r}"
