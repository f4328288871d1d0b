"""Functional random numbers: explicit keys with ``jax.random``'s API.

A *key* is a small ``uint32`` array of shape ``(2,)`` (JAX's raw ``PRNGKey``), so it
is an ordinary pytree leaf: it can be stacked, saved with ``ff.save``, put on a GPU
with ``ff.gpu`` and mapped over by ``vmap``. Nothing here holds state: the same key
always gives the same numbers, and new keys come from :func:`split` or
:func:`fold_in`, never from reusing one.

The generator is counter-based: every draw hashes the counters ``0, 1, ...`` under
its key with Threefry-2x32 (the primitive ``funcflux.ops.random.threefry2x32_p``),
as ``jax.random`` does by default, so draws are reproducible across runs, machines
and array libraries (NumPy, CuPy). :func:`key`, :func:`split`, :func:`fold_in`,
:func:`bits`, :func:`uniform`, :func:`bernoulli` and :func:`randint` give JAX's
numbers bit for bit (JAX 0.10's defaults: ``threefry2x32`` with
``jax_threefry_partitionable=True``). :func:`normal` and :func:`truncated_normal` use
JAX's transform of the same uniform bits, with an inverse error function of float32
accuracy (Giles' approximation) in place of XLA's, so they agree with JAX to within
5e-7 and 4e-6 respectively (float32); :func:`categorical` and :func:`permutation`
follow JAX's algorithms and agree with it except on float rounding ties.

Under ``vmap`` a batch of keys (an array of shape ``(B, 2)`` mapped over axis 0)
gives each member its own draw; a key that is not mapped gives every member the same
draw. Under ``jit`` a draw is staged like any other operation. Derivatives flow
through the parameters (``uniform``'s ``minval``/``maxval``, ``bernoulli``'s nothing,
a normal times a traced scale): the bits themselves are integers.

>>> import funcflux as ff
>>> k = ff.random.key(0)
>>> k1, k2 = ff.random.split(k)
>>> ff.random.uniform(k1, (3,)).shape
(3,)
"""
from __future__ import annotations

import math
import operator
from typing import Any, Sequence

import numpy as np

from . import numpy as fnp
from .core.backend import array_module
from .core.trace import Tracer, module_value
from .ops.common import shape as _shape
from .ops.elementwise import stop_gradient
from .ops.random import threefry2x32_p

__all__ = ["key", "PRNGKey", "is_key", "split", "fold_in", "bits", "uniform", "normal",
           "bernoulli", "categorical", "randint", "permutation", "truncated_normal"]

_MASK = 0xFFFFFFFF

BAD_KEY = ("ff.random.{fn}: argument '{arg}' must be a random key, a uint32 array of shape "
           "(2,); got {what}. Make a key with ff.random.key(seed) (seed: an int) and new keys "
           "from it with ff.random.split(key, n).")
KEY_BATCH = ("ff.random.{fn}: argument '{arg}' is a batch of keys of shape {shape}; "
             "ff.random.{fn} takes one key of shape (2,). Map over the batch with ff.vmap: "
             "ff.vmap(lambda k: ff.random.{fn}(k, ...))(keys).")


# ----------------------------------------------------------------------------- helpers
def is_key(x: Any) -> bool:
    """Whether ``x`` is a random key: a ``uint32`` array (or traced value) of shape ``(2,)``.

    >>> import numpy as np, funcflux as ff
    >>> ff.random.is_key(ff.random.key(1)), ff.random.is_key(np.zeros(2))
    (True, False)
    """
    s, d = getattr(x, "shape", None), getattr(x, "dtype", None)
    return s is not None and d is not None and tuple(s) == (2,) and d == np.uint32


def _check_key(fn: str, k: Any, arg: str = "key") -> Any:
    if is_key(k):
        return k
    s, d = getattr(k, "shape", None), getattr(k, "dtype", None)
    if s is not None and d == np.uint32 and len(s) >= 2 and s[-1] == 2:
        raise TypeError(KEY_BATCH.format(fn=fn, arg=arg, shape=tuple(s)))
    if s is None or d is None:
        what = f"{type(k).__name__} {k!r}"
        if len(what) > 60:
            what = what[:57] + "..."
    else:
        what = f"an array of shape {tuple(s)} and dtype {np.dtype(d).name}"
    raise TypeError(BAD_KEY.format(fn=fn, arg=arg, what=what))


def _xp(k: Any) -> Any:
    """The array module holding ``k`` (looking through tracers): constants go there."""
    return array_module(module_value(k))


def _norm_shape(fn: str, shape: Any) -> tuple[int, ...]:
    try:
        if isinstance(shape, (int, np.integer)):
            return (operator.index(shape),)
        out = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"ff.random.{fn}: shape must be a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"ff.random.{fn}: shape {out} has a negative size")
    return out


def _counters(fn: str, k: Any, shape: tuple[int, ...]) -> Any:
    n = math.prod(shape)
    if n >= 2 ** 32:
        raise ValueError(f"ff.random.{fn}: at most 2**32 - 1 values per draw, asked for {n} "
                         f"(shape {shape}); split the key and draw in parts.")
    return _xp(k).arange(n, dtype=np.uint32).reshape(shape)


def _bits(fn: str, k: Any, shape: tuple[int, ...], width: int) -> Any:
    """Uniform random ``uint{width}`` bits of ``shape``: JAX's partitionable layout."""
    pairs = threefry2x32_p(k, _counters(fn, k, shape))
    hi, lo = pairs[..., 0], pairs[..., 1]
    if width == 64:
        return fnp.astype(hi, np.uint64) * np.uint64(2 ** 32) + fnp.astype(lo, np.uint64)
    b = fnp.bitwise_xor(hi, lo)
    return b if width == 32 else fnp.astype(b, np.dtype(f"uint{width}"))


def _as(x: Any, dt: np.dtype, xp: Any) -> Any:
    """``x`` (a number, an array or a traced value) as ``dt`` on the module ``xp``."""
    if isinstance(x, Tracer) or (hasattr(x, "dtype") and not isinstance(x, (np.ndarray,
                                                                            np.generic))):
        return x if x.dtype == dt else fnp.astype(x, dt)
    if isinstance(x, (np.ndarray, list, tuple)) and np.ndim(x):
        a = np.asarray(x, dtype=dt)
        return a if xp is np else xp.asarray(a)
    return dt.type(x)


def _float_dtype(fn: str, dtype: Any, complex_ok: bool = False) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind == "f" and dt.itemsize in (2, 4, 8):
        return dt
    if complex_ok and dt.kind == "c":
        return dt
    kinds = "a float (float16, float32, float64)" + (" or complex" if complex_ok else "")
    raise ValueError(f"ff.random.{fn}: dtype must be {kinds} dtype, got {dt.name}")


def _check_broadcast(fn: str, shape: tuple, *param_shapes: tuple) -> None:
    try:
        ok = np.broadcast_shapes(shape, *param_shapes) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"ff.random.{fn}: parameter shapes {list(param_shapes)} do not "
                         f"broadcast to the requested shape {shape}")


# ----------------------------------------------------------------------------- keys
def key(seed: Any) -> Any:
    """A random key from an integer ``seed``: a ``uint32`` array of shape ``(2,)``.

    The key holds the seed's 64 bits as two words, ``[seed >> 32, seed & 0xFFFFFFFF]``
    (JAX's ``PRNGKey``; a 32-bit integer array seed gets a zero high word). Seeds in
    ``[0, 2**32)`` give JAX's keys in its default mode, other Python ints JAX's keys
    with ``jax_enable_x64``. The seed may be a traced integer (inside ``vmap`` or ``jit``).

    >>> import funcflux as ff
    >>> ff.random.key(42)
    array([ 0, 42], dtype=uint32)
    """
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"ff.random.key: seed must be an integer, got {seed!r}")
    if isinstance(seed, int):
        if not -2 ** 63 <= seed < 2 ** 64:
            raise ValueError(f"ff.random.key: seed {seed} does not fit in 64 bits")
        return np.array([(seed >> 32) & _MASK, seed & _MASK], dtype=np.uint32)
    d = getattr(seed, "dtype", None)
    if d is None or np.dtype(d).kind not in "iu":
        raise TypeError(f"ff.random.key: seed must be an integer (a Python int or an integer "
                        f"array of shape ()), got {type(seed).__name__} "
                        f"{'of dtype ' + np.dtype(d).name if d is not None else repr(seed)}")
    if _shape(seed) != ():
        raise TypeError(f"ff.random.key: seed must be a scalar, got shape {_shape(seed)}; for "
                        "many keys use ff.random.split(key, n) or ff.vmap(ff.random.key)(seeds)")
    lo = fnp.astype(seed, np.uint32)
    hi = (lo * np.uint32(0) if np.dtype(d).itemsize <= 4
          else fnp.astype(fnp.floor_divide(seed, 2 ** 32), np.uint32))
    return fnp.stack([hi, lo])


PRNGKey = key  # JAX's older name; both give the raw uint32 key


def split(key: Any, num: int | Sequence[int] = 2) -> Any:
    """``num`` new keys from ``key``, along a new leading axis: shape ``(num, 2)``.

    ``num`` may be a tuple of sizes (keys of shape ``num + (2,)``). The children are
    independent of each other and of ``key``; use each key for one purpose only.

    >>> import funcflux as ff
    >>> ff.random.split(ff.random.key(0))
    array([[1797259609, 2579123966],
           [ 928981903, 3453687069]], dtype=uint32)
    """
    k = _check_key("split", key)
    shape = _norm_shape("split", num)
    return threefry2x32_p(k, _counters("split", k, shape))


def fold_in(key: Any, data: Any) -> Any:
    """A new key from ``key`` and an integer ``data`` (a step number, a rank, an index).

    ``data`` is taken modulo ``2**32``; it may be traced (``fold_in(key, i)`` inside
    ``vmap`` over ``i``). Different data give independent keys.

    >>> import funcflux as ff
    >>> ff.random.fold_in(ff.random.key(0), 7)
    array([2716826189,  292468403], dtype=uint32)
    """
    k = _check_key("fold_in", key)
    if _shape(data) != ():
        raise TypeError(f"ff.random.fold_in: data must be a scalar integer, got shape "
                        f"{_shape(data)}; map over many with ff.vmap(ff.random.fold_in, "
                        "in_axes=(None, 0))(key, data)")
    d = getattr(data, "dtype", None)
    if isinstance(data, (bool, np.bool_)) or (d is not None and np.dtype(d).kind not in "iu") \
            or (d is None and not isinstance(data, (int, np.integer))):
        raise TypeError(f"ff.random.fold_in: data must be an integer, got {data!r}")
    xp = _xp(k)
    if d is None or isinstance(data, (np.ndarray, np.generic)):
        data = xp.asarray(int(data) % 2 ** 32, dtype=np.uint32)
    else:
        data = fnp.astype(data, np.uint32)
    return threefry2x32_p(k, data)


# ----------------------------------------------------------------------------- draws
def bits(key: Any, shape: Sequence[int] = (), dtype: Any = None) -> Any:
    """Uniform random bits: unsigned integers of ``dtype`` (``uint32`` by default).

    >>> import funcflux as ff
    >>> ff.random.bits(ff.random.key(0), (3,))
    array([4070199207, 4202968722, 1427181096], dtype=uint32)
    """
    k = _check_key("bits", key)
    dt = np.dtype(np.uint32 if dtype is None else dtype)
    if dt.kind != "u":
        raise ValueError(f"ff.random.bits: dtype must be an unsigned integer dtype, got {dt.name}")
    return _bits("bits", k, _norm_shape("bits", shape), dt.itemsize * 8)


def uniform(key: Any, shape: Sequence[int] = (), dtype: Any = np.float32,
            minval: Any = 0.0, maxval: Any = 1.0) -> Any:
    """Uniform floats in ``[minval, maxval)`` of ``shape`` and ``dtype`` (float32).

    The mantissa bits of each value are random bits, so ``uniform(key, s)`` takes the
    values ``i * 2**-23`` (float32). ``minval`` and ``maxval`` broadcast against
    ``shape`` and may be traced: the result is ``minval + (maxval - minval) * u``, so
    derivatives reach them.

    >>> import funcflux as ff
    >>> ff.random.uniform(ff.random.key(0), (3,))
    array([0.947667  , 0.9785799 , 0.33229148], dtype=float32)
    """
    k = _check_key("uniform", key)
    dt = _float_dtype("uniform", dtype)
    shape = _norm_shape("uniform", shape)
    fi = np.finfo(dt)
    nbits, nmant = fi.bits, fi.nmant
    b = _bits("uniform", k, shape, nbits)
    # JAX sets the exponent of 1.0 under the top nmant bits and subtracts 1: the same
    # value as the top bits times 2**-nmant, which is exact in dt.
    mant = fnp.floor_divide(b, np.dtype(f"uint{nbits}").type(2 ** (nbits - nmant)))
    u = fnp.astype(mant, dt) * dt.type(2.0 ** -nmant)
    if _is_number(minval, 0.0) and _is_number(maxval, 1.0):
        return u
    xp = _xp(k)
    lo, hi = _as(minval, dt, xp), _as(maxval, dt, xp)
    _check_broadcast("uniform", shape, _shape(lo), _shape(hi))
    if dt.itemsize < 8:
        # One rounding, as XLA's fused multiply-add: u * span is exact in float64.
        f64 = np.dtype(np.float64)
        scaled = fnp.astype(fnp.astype(u, f64) * fnp.astype(hi - lo, f64)
                            + fnp.astype(lo, f64), dt)
    else:
        scaled = u * (hi - lo) + lo
    return fnp.maximum(lo, scaled)


def _is_number(x: Any, value: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == value


# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011): single precision.
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                   0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def _horner(coeffs: tuple, w: Any, dt: np.dtype) -> Any:
    p = dt.type(coeffs[0])
    for c in coeffs[1:]:
        p = p * w + dt.type(c)
    return p


def _erfinv(x: Any, dt: np.dtype) -> Any:
    """The inverse error function on ``(-1, 1)``, to float32 accuracy."""
    w = -fnp.log1p(-x * x)
    central = _horner(_ERFINV_CENTRAL, w - dt.type(2.5), dt)
    # sqrt of max(w, 5): the branch not taken stays finite, so no 0 * inf in derivatives.
    tail = _horner(_ERFINV_TAIL, fnp.sqrt(fnp.maximum(w, dt.type(5.0))) - dt.type(3.0), dt)
    return fnp.where(w < dt.type(5.0), central, tail) * x


# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7.
_ERF_P = 0.3275911
_ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def _erf(x: Any, dt: np.dtype) -> Any:
    """The error function, to about 1.5e-7 (written for both signs, so both branches keep
    exact derivatives at 0)."""
    def positive(z: Any) -> Any:
        t = dt.type(1.0) / (dt.type(1.0) + dt.type(_ERF_P) * z)
        return dt.type(1.0) - _horner(_ERF_A, t, dt) * t * fnp.exp(-z * z)
    return fnp.where(x >= 0, positive(fnp.maximum(x, dt.type(0))),
                     -positive(fnp.maximum(-x, dt.type(0))))


def _normal_real(k: Any, shape: tuple, dt: np.dtype) -> Any:
    lo = np.nextafter(dt.type(-1.0), dt.type(0.0))
    u = uniform(k, shape, dt, lo, 1.0)
    return dt.type(math.sqrt(2.0)) * _erfinv(u, dt)


def normal(key: Any, shape: Sequence[int] = (), dtype: Any = np.float32) -> Any:
    """Standard normal values of ``shape`` and ``dtype`` (float32; complex dtypes give
    ``(x + iy) / sqrt(2)``, unit variance).

    As ``jax.random.normal``: ``sqrt(2) * erfinv(u)`` for ``u`` uniform in ``(-1, 1)``;
    erfinv is accurate to float32 (about 1e-7 relative, in float64 too). Scale and shift
    it for other means and deviations (``mu + sigma * normal(key, s)``).

    >>> import funcflux as ff
    >>> ff.random.normal(ff.random.key(0), (2, 3)).shape
    (2, 3)
    """
    k = _check_key("normal", key)
    dt = _float_dtype("normal", dtype, complex_ok=True)
    shape = _norm_shape("normal", shape)
    if dt.kind == "c":
        real = np.dtype(np.float32 if dt.itemsize == 8 else np.float64)
        kr, ki = split(k)
        z = fnp.astype(_normal_real(kr, shape, real), dt) \
            + fnp.astype(_normal_real(ki, shape, real), dt) * dt.type(1j)
        return z / dt.type(math.sqrt(2.0))
    return _normal_real(k, shape, dt)


def truncated_normal(key: Any, lower: Any, upper: Any, shape: Sequence[int] | None = None,
                     dtype: Any = np.float32) -> Any:
    """Standard normal values conditioned on ``lower < x < upper``.

    ``lower`` and ``upper`` broadcast together (and against ``shape``, which defaults to
    their broadcast shape). As JAX: the inverse CDF of a uniform between the bounds' CDF
    values, clipped into the open interval (closed, when a bound is traced).

    >>> import numpy as np, funcflux as ff
    >>> x = ff.random.truncated_normal(ff.random.key(0), -1.0, 2.0, (1000,))
    >>> bool(np.all((x > -1) & (x < 2)))
    True
    """
    k = _check_key("truncated_normal", key)
    dt = _float_dtype("truncated_normal", dtype)
    xp = _xp(k)
    lo, hi = _as(lower, dt, xp), _as(upper, dt, xp)
    if shape is None:
        shape = np.broadcast_shapes(_shape(lo), _shape(hi))
    else:
        shape = _norm_shape("truncated_normal", shape)
        _check_broadcast("truncated_normal", shape, _shape(lo), _shape(hi))
    sqrt2 = dt.type(math.sqrt(2.0))
    a, b = _erf(lo / sqrt2, dt), _erf(hi / sqrt2, dt)
    u = uniform(k, shape, dt, minval=a, maxval=b)
    # Inside (-1, 1), so that infinite bounds give finite values.
    edge = np.nextafter(dt.type(1.0), dt.type(0.0))
    u = fnp.clip(u, -edge, edge)
    out = sqrt2 * _erfinv(u, dt)
    return fnp.clip(out, _inside(lo, np.inf), _inside(hi, -np.inf))


def _inside(bound: Any, toward: float) -> Any:
    """The next float after a concrete bound, toward the interval; a traced bound as is."""
    if isinstance(bound, Tracer):
        return stop_gradient(bound)
    xp = array_module(bound)
    return xp.nextafter(bound, bound.dtype.type(toward) if hasattr(bound, "dtype") else toward)


def bernoulli(key: Any, p: Any = 0.5, shape: Sequence[int] | None = None) -> Any:
    """Booleans that are ``True`` with probability ``p`` (``uniform(key, shape) < p``).

    ``p`` is a float or a float array (its dtype sets the uniform's); ``shape`` defaults
    to ``p``'s shape and must broadcast with it.

    >>> import funcflux as ff
    >>> ff.random.bernoulli(ff.random.key(0), 0.5, (4,))
    array([False, False,  True,  True])
    """
    k = _check_key("bernoulli", key)
    d = getattr(p, "dtype", None)
    if d is not None and np.dtype(d).kind != "f":
        raise TypeError(f"ff.random.bernoulli: p must be a float or a float array, got dtype "
                        f"{np.dtype(d).name}")
    dt = np.dtype(np.float32) if d is None else np.dtype(d)
    p = _as(p, dt, _xp(k))
    if shape is None:
        shape = _shape(p)
    else:
        shape = _norm_shape("bernoulli", shape)
        _check_broadcast("bernoulli", shape, _shape(p))
    return uniform(k, shape, dt) < p


def categorical(key: Any, logits: Any, axis: int = -1,
                shape: Sequence[int] | None = None) -> Any:
    """Indices drawn with probabilities ``softmax(logits, axis)`` (int32).

    The Gumbel-max trick, as JAX: ``argmax(logits + gumbel, axis)``. ``shape`` defaults
    to ``logits``' shape without ``axis``; a longer shape draws several samples per
    distribution (its leading axes).

    >>> import numpy as np, funcflux as ff
    >>> ff.random.categorical(ff.random.key(0), np.array([-5.0, -5.0, 5.0]), shape=(5,))
    array([2, 2, 2, 2, 2], dtype=int32)
    """
    k = _check_key("categorical", key)
    if not hasattr(logits, "shape"):
        logits = np.asarray(logits)
    dt = np.dtype(logits.dtype)
    if dt.kind != "f":
        dt = np.dtype(np.float32)
        logits = fnp.astype(logits, dt)
    nd = len(_shape(logits))
    if nd == 0:
        raise ValueError("ff.random.categorical: logits need at least one axis (the classes)")
    ax = axis + nd if axis < 0 else axis
    if not 0 <= ax < nd:
        raise ValueError(f"ff.random.categorical: axis {axis} is out of range for logits of "
                         f"shape {_shape(logits)}")
    batch = tuple(s for i, s in enumerate(_shape(logits)) if i != ax)
    if shape is None:
        shape = batch
    else:
        shape = _norm_shape("categorical", shape)
        _check_broadcast("categorical", shape, batch)
    prefix = shape[:len(shape) - len(batch)]
    gshape = list(shape[len(prefix):])
    gshape.insert(ax, _shape(logits)[ax])
    tiny = np.finfo(dt).tiny
    u = uniform(k, prefix + tuple(gshape), dt, minval=tiny, maxval=1.0)
    gumbel = -fnp.log(-fnp.log(u))
    scores = gumbel + fnp.reshape(logits, (1,) * len(prefix) + _shape(logits))
    return fnp.astype(fnp.argmax(scores, axis=ax - nd), np.int32)


def randint(key: Any, shape: Sequence[int], minval: Any, maxval: Any,
            dtype: Any = np.int32) -> Any:
    """Integers uniform in ``[minval, maxval)`` (int32 by default).

    As JAX: twice the dtype's bits per value reduced modulo the span, whose bias is at
    most ``span * (2**n mod span) / 2**(2n)``; ``maxval <= minval`` gives ``minval``.

    >>> import funcflux as ff
    >>> ff.random.randint(ff.random.key(0), (5,), 0, 10)
    array([9, 0, 2, 3, 1], dtype=int32)
    """
    k = _check_key("randint", key)
    dt = np.dtype(dtype)
    if dt.kind not in "iu":
        raise TypeError(f"ff.random.randint: dtype must be an integer dtype, got {dt.name}")
    shape = _norm_shape("randint", shape)
    # Fewer than 32 bits would bias the result: draw int32s in the dtype's range, as JAX.
    sdt = dt if dt.itemsize >= 4 else np.dtype(np.int32)
    info, out_info = np.iinfo(sdt), np.iinfo(dt)
    xp = _xp(k)
    lo, hi = _int_arg(minval, xp), _int_arg(maxval, xp)
    _check_broadcast("randint", shape, _shape(lo), _shape(hi))
    work = shape or (1,)  # whole arrays: NumPy warns on wrapping scalars, never on arrays
    lo = fnp.broadcast_to(lo, work)
    hi = fnp.broadcast_to(hi, work)
    if sdt is not dt:
        lo = fnp.clip(lo, out_info.min, out_info.max)
        hi = fnp.clip(hi, out_info.min, out_info.max + 1)
    hi_out = hi > info.max
    lo = fnp.astype(fnp.clip(lo, info.min, info.max), sdt)
    hi = fnp.astype(fnp.clip(hi, info.min, info.max), sdt)
    nbits = info.bits
    udt = np.dtype(f"uint{nbits}")
    k1, k2 = split(k)
    higher, lower = _bits("randint", k1, work, nbits), _bits("randint", k2, work, nbits)
    one = udt.type(1)
    span = fnp.astype(hi, udt) - fnp.astype(lo, udt)
    span = fnp.where(hi <= lo, one, span)
    span = fnp.where(hi_out & (hi > lo), span + one, span)
    mult = udt.type(2 ** (nbits // 2)) % span
    mult = (mult * mult) % span
    offset = ((higher % span) * mult + lower % span) % span
    out = fnp.astype(lo + fnp.astype(offset, sdt), dt)
    return fnp.reshape(out, shape)


def _int_arg(x: Any, xp: Any) -> Any:
    """An integer bound as an int64 array (or traced value) on ``xp``."""
    if isinstance(x, Tracer) or (hasattr(x, "dtype") and not isinstance(x, (np.ndarray,
                                                                            np.generic))):
        if np.dtype(x.dtype).kind not in "iu":
            return fnp.astype(x, np.int64)
        return x
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        a = a.astype(np.int64)
    return a if xp is np else xp.asarray(a)


def permutation(key: Any, x: Any, axis: int = 0) -> Any:
    """A random permutation of ``range(x)`` (``x`` an int), or of ``x``'s entries along
    ``axis`` (the same shuffle for every slice).

    As JAX: a stable sort by random 32-bit keys, repeated when collisions are likely.

    >>> import numpy as np, funcflux as ff
    >>> p = ff.random.permutation(ff.random.key(0), 6)
    >>> sorted(p.tolist())
    [0, 1, 2, 3, 4, 5]
    """
    k = _check_key("permutation", key)
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        if x < 0:
            raise ValueError(f"ff.random.permutation: x must be non-negative, got {x}")
        return _shuffle(k, _xp(k).arange(int(x), dtype=np.int32), 0)
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    nd = len(_shape(x))
    if nd == 0:
        raise TypeError("ff.random.permutation: x must be an integer or an array with at "
                        f"least one axis, got an array of shape {_shape(x)}")
    ax = axis + nd if axis < 0 else axis
    if not 0 <= ax < nd:
        raise ValueError(f"ff.random.permutation: axis {axis} is out of range for shape "
                         f"{_shape(x)}")
    if nd == 1:
        return _shuffle(k, x, 0)
    idx = _shuffle(k, _xp(k).arange(_shape(x)[ax], dtype=np.int32), 0)
    return fnp.take(x, idx, axis=ax)


def _shuffle(k: Any, x: Any, axis: int) -> Any:
    n = math.prod(_shape(x))
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(2 ** 32 - 1))
    for _ in range(rounds):
        keys = split(k)
        k, sub = keys[0], keys[1]
        order = fnp.argsort(_bits("permutation", sub, _shape(x), 32), axis=axis, kind="stable")
        x = fnp.take_along_axis(x, order, axis=axis)
    return x
