"""A strict stand-in device for the test suite: CuPy's rules, computed by NumPy.

GPUs are rarely available where funcflux is built, so CuPy-readiness is proven
with this stand-in (``pytest --device strict``). ``StrictArray`` wraps an
``ndarray`` but is *not* one, and behaves the way ``cupy.ndarray`` does where
that matters for portability:

- no implicit conversion to NumPy: ``np.asarray(x)`` (``__array__``) raises;
  ``x.get()`` is the explicit copy to the host, as in CuPy;
- no mixing with NumPy arrays: an operation with a ``numpy.ndarray`` operand
  (even 0-d) raises ``TypeError``; Python numbers and NumPy scalars mix fine;
- NumPy's functions dispatch to the stand-in's own module (``__array_ufunc__``
  and ``__array_function__``), and unknown operand types get
  ``NotImplemented``, so funcflux's tracers take over as they do with CuPy;
- reductions return 0-d arrays, never NumPy scalars;
- its module ``strict_np`` offers only names that CuPy offers too (NumPy
  functions missing from CuPy raise ``AttributeError`` there), and
  ``strict_np.asarray``/``array`` are the only doors from the host.

Any ``np.`` call on device data inside funcflux therefore fails here first.
"""
from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

from funcflux.core.backend import register_array_module, unregister_array_module

# Public NumPy names that CuPy 14 does not provide (computed once against cupy-cuda12x 14.2:
# set(dir(numpy)) - set(dir(cupy))); the stand-in refuses them so that code using them
# fails here rather than on the first GPU run.
NOT_IN_CUPY = frozenset("""
False_ ScalarType True_ asmatrix block bmat busday_count busday_offset busdaycalendar bytes_
char character clongdouble complex256 core ctypeslib datetime64 datetime_as_string
datetime_data dtypes einsum_path emath errstate f2py flexible float128 frompyfunc fromregex
geomspace get_include getbufsize geterr geterrcall histogram_bin_edges info insert is_busday
isnat little_endian longdouble ma matrix matvec memmap nanpercentile nanquantile ndenumerate
nditer nested_iters object_ polyder polydiv polyint rec recarray record sctypeDict setbufsize
seterr seterrcall show_runtime spacing str_ strings test timedelta64 typecodes unstack vecdot
vecmat void
""".split())
NOT_IN_CUPY_LINALG = frozenset("""
diagonal matrix_norm multi_dot outer svdvals tensordot test trace vecdot vector_norm
""".split())
# cupy.ndarray's public methods and attributes (the stand-in forwards only these).
CUPY_METHODS = frozenset("""
T all any argmax argmin argpartition argsort astype base byteswap choose clip compress conj
conjugate copy cumprod cumsum device diagonal dot dtype dump dumps fill flags flat flatten get
imag item itemsize mT max mean min nbytes ndim nonzero partition prod ptp put ravel real repeat
reshape round searchsorted set shape size sort squeeze std strides sum swapaxes take tobytes
tofile tolist trace transpose var view
""".split())
# Keyword arguments NumPy's functions take and CuPy 14's do not (from inspect.signature of
# both; CuPy functions with **kwargs left out). Passed by keyword, they fail here as on CuPy.
CUPY_LACKS_KWARG = {
    "all": "where", "amax": "initial where", "amin": "initial where", "any": "where",
    "arange": "device like", "argpartition": "kind order", "argsort": "order stable",
    "array": "object ndmax like", "asanyarray": "device like", "asarray": "device like",
    "ascontiguousarray": "like", "asfortranarray": "like", "astype": "device",
    "broadcast_arrays": "subok", "broadcast_to": "subok", "clip": "min max", "copy": "subok",
    "count_nonzero": "keepdims", "delete": "obj", "empty": "device like",
    "empty_like": "device", "eye": "device like", "flip": "m", "fliplr": "m", "flipud": "m",
    "full": "device like", "full_like": "device", "identity": "like", "indices": "sparse",
    "isin": "kind", "lexsort": "axis", "linspace": "device", "max": "initial where",
    "mean": "where", "min": "initial where", "nanmax": "initial where", "nanmean": "where",
    "nanmin": "initial where", "nanprod": "initial where", "nanstd": "where mean correction",
    "nansum": "initial where", "nanvar": "where mean correction", "ones": "device like",
    "ones_like": "device", "partition": "kind order", "percentile": "weights",
    "prod": "initial where", "quantile": "weights", "reshape": "shape", "rot90": "m",
    "sort": "order stable", "stack": "arrays", "std": "where mean correction",
    "sum": "initial where", "take": "mode", "take_along_axis": "arr", "tri": "like",
    "trim_zeros": "axis", "unique": "sorted", "unravel_index": "shape",
    "var": "where mean correction", "zeros": "device like", "zeros_like": "device",
    "linalg.cholesky": "upper", "linalg.matrix_power": "a",
    "linalg.matrix_rank": "A hermitian rtol", "linalg.pinv": "hermitian rtol",
    "linalg.svd": "hermitian",
}
# The module functions that copy host data to the device (cupy.asarray and friends).
HOST_TO_DEVICE = frozenset(["asarray", "array", "asanyarray", "ascontiguousarray",
                            "asfortranarray"])

MIXED = ("strict device: a numpy.ndarray of shape {shape} met a StrictArray in {where}. Like "
         "CuPy, the strict device refuses implicit host-to-device copies: move the array with "
         "xp.asarray (xp = array_module(device_value)) or ff.gpu, or build it in the device's "
         "module.")
TO_HOST = ("Implicit conversion of a StrictArray to a NumPy array is not allowed (as in CuPy): "
           "call .get() to copy it to the host explicitly (or ff.cpu(tree)).")


class StrictArray:
    """An array on the strict stand-in device (wraps an ``ndarray`` it never leaks)."""

    __slots__ = ("_a",)
    __array_priority__ = 100  # CuPy's value: below funcflux tracers (1000)

    def __init__(self, a: np.ndarray):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"StrictArray wraps an ndarray, got {type(a).__name__}")
        self._a = a

    # -- what CuPy refuses -------------------------------------------------------------
    def __array__(self, *a: Any, **k: Any) -> Any:
        raise TypeError(TO_HOST)

    # -- attributes --------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    device = property(lambda self: "strict")
    T = property(lambda self: StrictArray(self._a.T))
    mT = property(lambda self: StrictArray(self._a.mT))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        """A NumPy copy on the host (CuPy's ``ndarray.get``)."""
        return np.array(self._a, order=order)

    def set(self, arr: np.ndarray) -> None:
        if not isinstance(arr, np.ndarray) or arr.shape != self.shape or arr.dtype != self.dtype:
            raise TypeError("StrictArray.set needs a NumPy array of the same shape and dtype")
        self._a[...] = arr

    def __getattr__(self, name: str) -> Any:
        if name not in CUPY_METHODS:
            raise AttributeError(f"StrictArray (like cupy.ndarray) has no attribute {name!r}")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args: Any, **kwargs: Any) -> Any:
            return _wrap(attr(*_unwrap(args, f".{name}()"), **_unwrap(kwargs, f".{name}()")))
        return method

    # -- conversions CuPy allows (they synchronise and copy one value) -----------------
    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __complex__(self) -> complex:
        return complex(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (_wrap(self._a[i]) for i in range(self._a.shape[0]))

    def __repr__(self) -> str:
        return f"strict({self._a!r})"

    __str__ = __repr__
    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> "StrictArray":
        return StrictArray(self._a.copy())

    def __deepcopy__(self, memo: dict) -> "StrictArray":
        return StrictArray(self._a.copy())

    def __reduce__(self) -> Any:
        return (_from_host, (self._a,))

    # -- indexing ------------------------------------------------------------------------
    def __getitem__(self, idx: Any) -> Any:
        return _wrap(self._a[_index(idx)])

    def __setitem__(self, idx: Any, value: Any) -> None:
        self._a[_index(idx)] = _unwrap(value, "x[...] = value")

    # -- NumPy's protocols: dispatch to the stand-in's module, as CuPy does --------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        for x in inputs + tuple(kwargs.get("out", ()) or ()):
            if not isinstance(x, (StrictArray, np.ndarray, np.generic, int, float, complex,
                                  bool)):
                return NotImplemented  # a tracer (or another array type) takes over
        if method != "__call__":
            return NotImplemented
        f = getattr(strict_np, ufunc.__name__, None)
        if f is None:
            return NotImplemented
        return f(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        for t in types:
            if t is not StrictArray and not issubclass(t, np.ndarray):
                return NotImplemented
        m = func.__module__ or ""
        mod = strict_np.linalg if ".linalg" in m else strict_np.fft if m == "numpy.fft" \
            else strict_np
        f = getattr(mod, func.__name__, None)
        if f is None:
            return NotImplemented
        return f(*args, **kwargs)


def _binop(name: str, reflected: bool = False) -> Any:
    def op(self: StrictArray, other: Any) -> Any:
        if not isinstance(other, (StrictArray, np.ndarray, np.generic, int, float, complex,
                                  bool)):
            return NotImplemented  # a tracer: its reflected operator runs
        f = getattr(strict_np, name)
        return f(other, self) if reflected else f(self, other)
    return op


for _d, _n in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
               ("truediv", "true_divide"), ("floordiv", "floor_divide"), ("mod", "remainder"),
               ("pow", "power"), ("matmul", "matmul"), ("and", "bitwise_and"),
               ("or", "bitwise_or"), ("xor", "bitwise_xor"), ("lshift", "left_shift"),
               ("rshift", "right_shift"), ("divmod", "divmod")]:
    setattr(StrictArray, f"__{_d}__", _binop(_n))
    setattr(StrictArray, f"__r{_d}__", _binop(_n, reflected=True))
for _d, _n in [("lt", "less"), ("le", "less_equal"), ("gt", "greater"),
               ("ge", "greater_equal"), ("eq", "equal"), ("ne", "not_equal")]:
    setattr(StrictArray, f"__{_d}__", _binop(_n))
for _d, _n in [("neg", "negative"), ("pos", "positive"), ("abs", "absolute"),
               ("invert", "invert")]:
    setattr(StrictArray, f"__{_d}__", (lambda n: lambda self: getattr(strict_np, n)(self))(_n))


def _inplace(name: str) -> Any:
    def op(self: StrictArray, other: Any) -> StrictArray:
        getattr(strict_np, name)(self, other, out=self)
        return self
    return op


for _d, _n in [("iadd", "add"), ("isub", "subtract"), ("imul", "multiply"),
               ("itruediv", "true_divide")]:
    setattr(StrictArray, f"__{_d}__", _inplace(_n))


# ----------------------------------------------------------------------------- wrapping
def _from_host(a: Any) -> StrictArray:
    return StrictArray(np.array(a))


def _unwrap(x: Any, where: str) -> Any:
    """Device values to their ndarray; a NumPy array is an error (no implicit copies)."""
    t = type(x)
    if t is StrictArray:
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError(MIXED.format(shape=x.shape, where=where))
    if t is list or t is tuple:
        return t(_unwrap(v, where) for v in x)
    if t is dict:
        return {k: _unwrap(v, where) for k, v in x.items()}
    return x


def _from_any(x: Any) -> Any:
    t = type(x)
    if t is StrictArray:
        return x._a
    if t is list or t is tuple:
        return t(_from_any(v) for v in x)
    if t is dict:
        return {k: _from_any(v) for k, v in x.items()}
    return x


def _index(idx: Any) -> Any:
    """An index for the wrapped array: device arrays unwrap; host index arrays are allowed
    (CuPy copies NumPy and list indices to the device)."""
    t = type(idx)
    if t is StrictArray:
        return idx._a
    if t is tuple:
        return tuple(_index(i) for i in idx)
    return idx


def _wrap(r: Any) -> Any:
    if isinstance(r, np.ndarray):
        return StrictArray(r)
    if isinstance(r, np.generic):  # CuPy's reductions give 0-d arrays, not scalars
        return StrictArray(np.asarray(r))
    t = type(r)
    if t is list:
        return [_wrap(v) for v in r]
    if isinstance(r, tuple):
        items = [_wrap(v) for v in r]
        return t(*items) if hasattr(t, "_fields") else t(items)
    return r


def _function(name: str, f: Any, qualname: str | None = None) -> Any:
    host_ok = name in HOST_TO_DEVICE
    where = f"strict_np.{qualname or name}"
    lacks = frozenset(CUPY_LACKS_KWARG.get(qualname or name, "").split())

    @functools.wraps(f)
    def fn(*args: Any, **kwargs: Any) -> Any:
        if lacks and not lacks.isdisjoint(kwargs):
            k = sorted(lacks.intersection(kwargs))[0]
            raise TypeError(f"{where}() got an unexpected keyword argument {k!r} (CuPy's "
                            f"{qualname or name} has no such parameter)")
        if host_ok:  # the doors from the host: NumPy data is copied in
            return _wrap(np.asarray(f(*_from_any(args), **_from_any(kwargs))))
        return _wrap(f(*_unwrap(args, where), **_unwrap(kwargs, where)))
    return fn


class _Ufunc:
    """A NumPy ufunc seen through the stand-in (``__call__``, ``at``, ``reduce``...)."""

    def __init__(self, uf: np.ufunc):
        self._uf = uf
        self.__name__ = uf.__name__
        self.nin, self.nout, self.nargs = uf.nin, uf.nout, uf.nargs
        self.types, self.identity = uf.types, uf.identity
        where = f"strict_np.{uf.__name__}"
        self._call = _function(uf.__name__, uf)
        for m in ("reduce", "accumulate", "outer", "reduceat"):
            setattr(self, m, _function(f"{uf.__name__}.{m}", getattr(uf, m)))

        def at(a: StrictArray, indices: Any, b: Any = None) -> None:
            if type(a) is not StrictArray:
                raise TypeError(f"{where}.at: the target must be a StrictArray")
            args = (_index(indices),) + (() if b is None else (_unwrap(b, where + ".at"),))
            uf.at(a._a, *args)
        self.at = at

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        if out is not None:  # in place: write into the wrapped array
            outs = out if isinstance(out, tuple) else (out,)
            if any(type(o) is not StrictArray for o in outs):
                raise TypeError(f"strict_np.{self.__name__}: out= must be StrictArrays")
            kwargs = dict(kwargs, out=tuple(o._a for o in outs))
            self._uf(*_unwrap(args, f"strict_np.{self.__name__}"), **kwargs)
            return out
        return self._call(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<strict ufunc {self.__name__}>"


class _Module(types.ModuleType):
    """A module mirroring a NumPy (sub)module through the stand-in, with CuPy's names only."""

    def __init__(self, name: str, source: Any, refused: frozenset, prefix: str = ""):
        super().__init__(name)
        self._prefix = prefix
        self._source = source
        self._refused = refused

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in self._refused:
            raise AttributeError(f"{self.__name__} (like CuPy) has no attribute {name!r}")
        attr = getattr(self._source, name)
        if isinstance(attr, np.ufunc):
            out: Any = _Ufunc(attr)
        elif isinstance(attr, types.ModuleType):
            out = _Module(f"{self.__name__}.{name}", attr,
                          NOT_IN_CUPY_LINALG if name == "linalg" else frozenset(),
                          prefix=f"{self._prefix}{name}.")
        elif isinstance(attr, type) or not callable(attr):
            out = attr  # dtypes, constants, classes (finfo, dtype)
        else:
            out = _function(name, attr, self._prefix + name)
        setattr(self, name, out)  # cache: the next lookup is a plain attribute
        return out


strict_np = _Module("strict_np", np, NOT_IN_CUPY)
strict_np.ndarray = StrictArray  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- moving
_registrations = 0


def register() -> None:
    """Make funcflux's ``array_module`` answer ``strict_np`` for strict arrays.

    Calls nest: each ``register`` needs one ``unregister``, so a test that pairs them
    leaves a ``--device strict`` session (registered once at start) registered.
    """
    global _registrations
    _registrations += 1
    register_array_module(StrictArray, strict_np, device=lambda x: "strict")


def unregister() -> None:
    global _registrations
    _registrations = max(_registrations - 1, 0)
    if not _registrations:
        unregister_array_module(StrictArray)


def to_strict(tree: Any) -> Any:
    """Every NumPy array leaf of ``tree`` moved to the strict device (ties stay tied)."""
    import funcflux as ff
    return ff.fmap(lambda x: StrictArray(np.array(x)) if isinstance(x, np.ndarray) else x, tree)


def from_strict(tree: Any) -> Any:
    """Every strict array leaf of ``tree`` back to NumPy (ties stay tied)."""
    import funcflux as ff
    return ff.fmap(lambda x: x.get() if type(x) is StrictArray else x, tree)


def is_strict(x: Any) -> bool:
    return type(x) is StrictArray

