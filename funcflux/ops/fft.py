"""Discrete Fourier transforms: the one primitive under the ``numpy.fft`` functions.

One primitive, ``fft``, transforms one axis, with ``kind`` one of ``"fft"``,
``"ifft"``, ``"rfft"`` and ``"irfft"``. NumPy's n-dimensional functions are
themselves loops of these one-axis transforms (``numpy/fft/_pocketfft.py``), so
composing the primitive in NumPy's order gives NumPy's values bit for bit; the
``n``/``s`` cropping and zero-padding are ``getitem`` and ``pad``, and
``fftshift``/``ifftshift`` are ``roll`` (NumPy's signatures are in the surface's
``numpy/fft.py``).

Every transform is linear, so only the transposes are written (``def_linear``)
and the JVPs follow. Transposes use JAX's convention for complex values: the
cotangent pairs with a value through ``Re(sum(a * b))`` (no conjugation), so
``grad`` of a real function of a complex ``z`` is the conjugate of the
steepest-ascent direction, as in JAX. With that pairing

- ``fft`` and ``ifft`` are symmetric matrices: each is its own transpose (same
  ``norm``);
- ``rfft`` of ``n`` real points keeps the first ``n // 2 + 1`` outputs of
  ``fft``: its transpose zero-pads the cotangent back to ``n``, applies
  ``fft`` and keeps the real part;
- ``irfft`` reads a Hermitian half-spectrum: bins ``1 .. (n - 1) // 2`` stand
  for themselves and their mirror images, bin 0 (and bin ``n / 2`` for even
  ``n``) only for themselves, and it ignores their imaginary parts. Its
  transpose is therefore not ``rfft``: it is ``conj(rfft(ct))`` with the
  mirrored bins doubled, that ``rfft`` taken with the opposite ``norm`` (so its
  scale is ``irfft``'s).

A real input's cotangent is the real part of the transpose.

A spectral loss, differentiated (its gradient is ``2 Re(conj(X_k) W[k])`` summed
over the penalised bins ``k``, ``W`` the DFT matrix):

>>> import numpy as np, funcflux as ff
>>> def high_frequency_energy(x):              # energy above the two lowest frequencies
...     return np.sum(np.abs(np.fft.rfft(x)[2:]) ** 2)
>>> x = np.array([1.0, 2.0, 0.5, -1.0, 0.5, 3.0])
>>> ff.grad(high_frequency_energy)(x)
array([-10. ,   5.5,   0.5,  -2. ,  -2.5,   8.5])
>>> ff.grad(lambda x: np.sum(np.abs(np.fft.fft(x)) ** 2))(x) / x  # Parseval: 2 * n * x
array([12., 12., 12., 12., 12., 12.])
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.backend import array_module
from ..core.primitive import primitive
from ..core.trace import module_value
from .base import astype
from .common import ndim, shape
from .elementwise import conj, real
from .shape import pad

__all__ = ["fft_p"]

SWAP_NORM = {"backward": "forward", "ortho": "ortho", "forward": "backward"}


def _is_complex(x: Any) -> bool:
    return getattr(getattr(x, "dtype", None), "kind", "") == "c"


# =====================================================================================
# The primitive: one axis, kind in fft / ifft / rfft / irfft. ``n`` is the transform
# length: the input's length along ``axis`` except for irfft, whose input has
# ``n // 2 + 1`` points and whose output has ``n``.
def _fft_impl(x: Any, kind: str, axis: int, n: int, norm: str) -> Any:
    return getattr(array_module(x).fft, kind)(x, n=n, axis=axis, norm=norm)


fft_p = primitive("fft", _fft_impl)


def _real_like(r: Any, x: Any) -> Any:
    """The cotangent ``r`` for input ``x``: its real part when ``x`` is real, in x's dtype.

    (NumPy transforms float16 in complex64, so a float16 input's cotangent needs the cast.)
    """
    if not _is_complex(x):
        r = real(r)
    d = getattr(x, "dtype", None)
    return r if d is None or r.dtype == d else astype(r, d)


def _zero_pad(ct: Any, axis: int, n: int) -> Any:
    widths = [(0, 0)] * ndim(ct)
    widths[axis] = (0, n - shape(ct)[axis])
    return pad(ct, widths)


def _hermitian_weights(r: Any, axis: int, n: int) -> Any:
    """1 for bin 0 (and bin n/2 for even n), 2 for the bins that stand for their mirrors."""
    m = n // 2 + 1
    w = np.full(m, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    rdt = np.finfo(r.dtype).dtype
    w = array_module(module_value(r)).asarray(w.astype(rdt))
    return w.reshape((m,) + (1,) * (ndim(r) - axis - 1))


def _fft_transpose(ct: Any, ans: Any, x: Any, kind: str, axis: int, n: int, norm: str) -> Any:
    if kind in ("fft", "ifft"):  # symmetric matrices
        r = fft_p(ct, kind=kind, axis=axis, n=n, norm=norm)
    elif kind == "rfft":         # the first n // 2 + 1 rows of fft
        if shape(ct)[axis] < n:
            ct = _zero_pad(ct, axis, n)
        r = fft_p(ct, kind="fft", axis=axis, n=n, norm=norm)
    else:                        # irfft: see the module docstring
        r = fft_p(ct, kind="rfft", axis=axis, n=n, norm=SWAP_NORM[norm])
        r = conj(r) * _hermitian_weights(r, axis, n)
    return _real_like(r, x)


def _fft_batch(args: Sequence[Any], dims: Sequence[int | None], kind: str, axis: int, n: int,
               norm: str) -> tuple:
    d = dims[0]
    return fft_p(args[0], kind=kind, axis=axis + (d <= axis), n=n, norm=norm), d


fft_p.def_linear(_fft_transpose)
fft_p.def_batch(_fft_batch)
