"""``funcflux.scipy.linalg``: SciPy's linear-algebra functions, differentiable, without SciPy.

SciPy's own functions call ``np.asarray`` on their input, which a traced value
refuses; call these instead inside a transform. They work on plain arrays too.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import funcflux.numpy as fnp
from funcflux.ops import linalg as _linalg

__all__ = ["expm"]


def expm(A: Any) -> Any:
    """The matrix exponential of ``A`` (shape ``(..., n, n)``, real or complex).

    Computed with SciPy's ``scipy.linalg.expm`` when SciPy is installed and ``A`` is a
    NumPy array, otherwise with a Pade [13/13] approximant with scaling and squaring
    (Higham 2005). Differentiable in both modes at every order: the derivative along
    ``E`` is the Frechet derivative, the top-right block of
    ``expm([[A, E], [0, A]])``. Batches under ``vmap``.

    >>> import numpy as np, funcflux as ff
    >>> from funcflux.scipy.linalg import expm
    >>> expm(np.zeros((2, 2)))
    array([[1., 0.],
           [0., 1.]])
    >>> float(ff.grad(lambda t: expm(t * np.array([[0.0, 1.0], [-1.0, 0.0]]))[0, 1])(0.0))
    1.0
    """
    A = A if hasattr(A, "shape") else np.asarray(A)
    s = tuple(A.shape)
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"expm: expected a square matrix or a stack of them (..., n, n), "
                         f"got shape {s}")
    if A.dtype.kind not in "fc":
        A = fnp.astype(A, np.float64)
    return _linalg.expm_p(A)
