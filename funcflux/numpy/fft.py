"""Traced versions of numpy.fft functions.

Inside ``grad``, ``vjp``, ``jvp`` and ``vmap``, ``np.fft.fft(x)`` and the other
transforms below reach these functions through NumPy's ``__array_function__``;
call them as ``fnp.fft.fft`` where NumPy cannot dispatch. They take NumPy's
arguments (``n``/``s``, ``axis``/``axes``, ``norm``) and give NumPy's values
and dtypes (``float32`` input gives ``complex64``).

>>> import numpy as np, funcflux as ff, funcflux.numpy as fnp
>>> ff.grad(lambda x: np.sum(np.fft.irfft(np.fft.rfft(x), 3) * x))(np.array([1.0, 2.0, 3.0]))
array([2., 4., 6.])
>>> fnp.fft.rfft(np.array([1.0, 2.0, 3.0]))   # plain arrays: NumPy's own function
array([ 6. +0.j       , -1.5+0.8660254j])
"""
from __future__ import annotations

import operator
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.backend import array_module
from ..core.dispatch import implements
from ..ops.common import is_tracer, ndim, no_out, norm_axis, shape
from ..ops.fft import _is_complex, _zero_pad, fft_p
from ..ops.indexing import getitem
from ..ops.shape import roll

__all__ = ["fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2",
           "fftn", "ifftn", "rfftn", "irfftn", "fftshift", "ifftshift"]


def __dir__() -> list[str]:
    """NumPy's names only (as ``dir(np.fft)`` shows its transforms), not the helpers here."""
    return list(__all__)


NORMS = ("backward", "ortho", "forward")
BAD_NORM = 'Invalid norm value {norm}; should be "backward","ortho" or "forward".'
BAD_N = "Invalid number of FFT data points ({n}) specified."
RFFT_COMPLEX = ("np.fft.{name}: the input must be real, got a traced value of dtype {dtype} "
                "(NumPy refuses complex input too). Take np.real(x) first, or use np.fft.fft.")


def _norm(norm: Any) -> str:
    if norm is None:
        return "backward"
    if norm not in NORMS:
        raise ValueError(BAD_NORM.format(norm=norm))
    return norm


def _fit(a: Any, axis: int, n: int) -> Any:
    """Crop or zero-pad ``a`` to ``n`` points along ``axis`` (NumPy's ``n`` argument)."""
    m = shape(a)[axis]
    if m > n:
        return getitem(a, (slice(None),) * axis + (slice(0, n),))
    if m < n:
        return _zero_pad(a, axis, n)
    return a


def _one(kind: str, a: Any, n: Any, axis: Any, norm: Any, out: Any) -> Any:
    """The one-axis transform ``kind`` with NumPy's argument handling."""
    if not is_tracer(a):
        a = a if hasattr(a, "shape") else np.asarray(a)
        kw = {} if out is None else {"out": out}  # CuPy's transforms have no out=
        return getattr(array_module(a).fft, kind)(a, n=n, axis=axis, norm=norm, **kw)
    no_out("fft." + kind, out)
    nd = ndim(a)
    if nd == 0:
        raise np.exceptions.AxisError(operator.index(axis), 0)
    axis = norm_axis(operator.index(axis), nd)[0]  # type: ignore[index]
    norm = _norm(norm)
    m = shape(a)[axis]
    if n is None:
        n = 2 * (m - 1) if kind == "irfft" else m
    n = operator.index(n)
    if n < 1:
        raise ValueError(BAD_N.format(n=n))
    if kind == "rfft" and _is_complex(a):
        raise TypeError(RFFT_COMPLEX.format(name=kind, dtype=a.dtype))
    a = _fit(a, axis, n // 2 + 1 if kind == "irfft" else n)
    return fft_p(a, kind=kind, axis=axis, n=n, norm=norm)


@implements(np.fft.fft)
def fft(a: Any, n: int | None = None, axis: int = -1, norm: str | None = None,
        out: Any = None) -> Any:
    """``np.fft.fft``: the one-dimensional discrete Fourier transform.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.fft(x))))(np.array([1.0, 2.0, 3.0, 4.0]))
    array([4., 0., 0., 0.])
    """
    return _one("fft", a, n, axis, norm, out)


@implements(np.fft.ifft)
def ifft(a: Any, n: int | None = None, axis: int = -1, norm: str | None = None,
         out: Any = None) -> Any:
    """``np.fft.ifft``: the one-dimensional inverse discrete Fourier transform.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.ifft(x))))(np.array([1.0, 2.0, 3.0, 4.0]))
    array([1., 0., 0., 0.])
    """
    return _one("ifft", a, n, axis, norm, out)


@implements(np.fft.rfft)
def rfft(a: Any, n: int | None = None, axis: int = -1, norm: str | None = None,
         out: Any = None) -> Any:
    """``np.fft.rfft``: the discrete Fourier transform of real input (``n // 2 + 1`` bins).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.imag(np.fft.rfft(x))))(np.array([1.0, 2.0, 3.0, 4.0]))
    array([ 0., -1.,  0.,  1.])
    """
    return _one("rfft", a, n, axis, norm, out)


@implements(np.fft.irfft)
def irfft(a: Any, n: int | None = None, axis: int = -1, norm: str | None = None,
          out: Any = None) -> Any:
    """``np.fft.irfft``: the inverse of ``rfft``, a real signal of ``n`` points.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda c: np.fft.irfft(c)[0])(np.array([1.0, 2.0, 3.0]))
    array([0.25, 0.5 , 0.25])
    """
    return _one("irfft", a, n, axis, norm, out)


def _cook(a: Any, s: Any, axes: Any, invreal: bool = False) -> tuple[list, list]:
    """NumPy's ``_cook_nd_args``: the lengths and axes of an n-dimensional transform."""
    sh = shape(a)
    shapeless = s is None
    if s is None:
        s = list(sh) if axes is None else [sh[operator.index(ax)] for ax in axes]
    s = list(s)
    if axes is None:
        if not shapeless:
            warnings.warn(
                "`axes` should not be `None` if `s` is not `None` (Deprecated in NumPy 2.0). "
                "In a future version of NumPy, this will raise an error and `s[i]` will "
                "correspond to the size along the transformed axis specified by `axes[i]`. "
                "To retain current behaviour, pass a sequence [0, ..., k-1] to `axes` for an "
                "array of dimension k.", DeprecationWarning, stacklevel=4)
        axes = list(range(-len(s), 0))
    axes = list(axes)
    if len(s) != len(axes):
        raise ValueError("Shape and axes have different lengths.")
    if invreal and shapeless:
        s[-1] = (sh[axes[-1]] - 1) * 2
    if None in s:
        warnings.warn(
            "Passing an array containing `None` values to `s` is deprecated in NumPy 2.0 and "
            "will raise an error in a future version of NumPy. To use the default behaviour "
            "of the corresponding 1-D transform, pass the value matching the default for its "
            "`n` parameter. To use the default behaviour for every axis, the `s` argument can "
            "be omitted.", DeprecationWarning, stacklevel=4)
    s = [sh[ax] if n == -1 else n for n, ax in zip(s, axes)]
    return s, axes


def _many(name: str, base: str, a: Any, s: Any, axes: Any, norm: Any, out: Any) -> Any:
    """The n-dimensional transform ``name`` (of kind ``base``) as NumPy computes it:
    one axis at a time, in NumPy's order."""
    if not is_tracer(a):
        a = a if hasattr(a, "shape") else np.asarray(a)
        kw = {} if out is None else {"out": out}
        return getattr(array_module(a).fft, name)(a, s=s, axes=axes, norm=norm, **kw)
    no_out("fft." + name, out)
    s, axes = _cook(a, s, axes, invreal=base == "irfft")
    if not axes:
        return a
    if base in ("fft", "ifft"):
        for ii in reversed(range(len(axes))):
            a = _one(base, a, s[ii], axes[ii], norm, None)
    elif base == "rfft":
        a = _one("rfft", a, s[-1], axes[-1], norm, None)
        for ii in reversed(range(len(axes) - 1)):
            a = _one("fft", a, s[ii], axes[ii], norm, None)
    else:
        for ii in range(len(axes) - 1):
            a = _one("ifft", a, s[ii], axes[ii], norm, None)
        a = _one("irfft", a, s[-1], axes[-1], norm, None)
    return a


@implements(np.fft.fftn)
def fftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
         norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.fftn``: the n-dimensional discrete Fourier transform.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.fftn(x))))(np.ones((2, 2)))
    array([[4., 0.],
           [0., 0.]])
    """
    return _many("fftn", "fft", a, s, axes, norm, out)


@implements(np.fft.ifftn)
def ifftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.ifftn``: the n-dimensional inverse discrete Fourier transform.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.ifftn(x))))(np.ones((2, 2)))
    array([[1., 0.],
           [0., 0.]])
    """
    return _many("ifftn", "ifft", a, s, axes, norm, out)


@implements(np.fft.rfftn)
def rfftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.rfftn``: the n-dimensional transform of real input (halved last axis).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.rfftn(x))))(np.ones((2, 2)))
    array([[3., 1.],
           [0., 0.]])
    """
    return _many("rfftn", "rfft", a, s, axes, norm, out)


@implements(np.fft.irfftn)
def irfftn(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
           norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.irfftn``: the inverse of ``rfftn``, a real array.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda c: np.fft.irfftn(c)[0, 0])(np.ones((2, 2)))
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    return _many("irfftn", "irfft", a, s, axes, norm, out)


@implements(np.fft.fft2)
def fft2(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = (-2, -1),
         norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.fft2``: ``fftn`` over the last two axes by default.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.fft2(x))))(np.ones((2, 2)))
    array([[4., 0.],
           [0., 0.]])
    """
    return _many("fft2", "fft", a, s, axes, norm, out)


@implements(np.fft.ifft2)
def ifft2(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = (-2, -1),
          norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.ifft2``: ``ifftn`` over the last two axes by default.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.ifft2(x))))(np.ones((2, 2)))
    array([[1., 0.],
           [0., 0.]])
    """
    return _many("ifft2", "ifft", a, s, axes, norm, out)


@implements(np.fft.rfft2)
def rfft2(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = (-2, -1),
          norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.rfft2``: ``rfftn`` over the last two axes by default.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(np.real(np.fft.rfft2(x))))(np.ones((2, 2)))
    array([[3., 1.],
           [0., 0.]])
    """
    return _many("rfft2", "rfft", a, s, axes, norm, out)


@implements(np.fft.irfft2)
def irfft2(a: Any, s: Sequence[int] | None = None, axes: Sequence[int] | None = (-2, -1),
           norm: str | None = None, out: Any = None) -> Any:
    """``np.fft.irfft2``: ``irfftn`` over the last two axes by default.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda c: np.fft.irfft2(c)[0, 0])(np.ones((2, 2)))
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    return _many("irfft2", "irfft", a, s, axes, norm, out)


def _shift(x: Any, axes: Any, sign: int) -> Any:
    """NumPy's fftshift (``sign=1``) and ifftshift (``sign=-1``): a roll by half of each axis."""
    sh = shape(x)
    if axes is None:
        axes = tuple(range(len(sh)))
        shift: Any = [sign * (n // 2) for n in sh]
    elif isinstance(axes, (int, np.integer)):
        shift = sign * (sh[axes] // 2)
    else:
        shift = [sign * (sh[ax] // 2) for ax in axes]
    return roll(x, shift, axes)


@implements(np.fft.fftshift)
def fftshift(x: Any, axes: int | Sequence[int] | None = None) -> Any:
    """``np.fft.fftshift``: the zero-frequency bin moved to the centre (a ``roll``).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.fft.fftshift(x)[0])(np.array([1.0, 2.0, 3.0]))
    array([0., 0., 1.])
    """
    if not is_tracer(x):
        x = x if hasattr(x, "shape") else np.asarray(x)
        return array_module(x).fft.fftshift(x, axes=axes)
    return _shift(x, axes, 1)


@implements(np.fft.ifftshift)
def ifftshift(x: Any, axes: int | Sequence[int] | None = None) -> Any:
    """``np.fft.ifftshift``: the inverse of ``fftshift`` (a ``roll`` the other way).

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.fft.ifftshift(x)[0])(np.array([1.0, 2.0, 3.0]))
    array([0., 1., 0.])
    """
    if not is_tracer(x):
        x = x if hasattr(x, "shape") else np.asarray(x)
        return array_module(x).fft.ifftshift(x, axes=axes)
    return _shift(x, axes, -1)
