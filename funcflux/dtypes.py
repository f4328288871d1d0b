"""Dtypes that funcflux adds to NumPy's: ``float0``, the dtype of integer inputs' gradients.

``float0`` is JAX's convention: a NumPy void dtype of item size 0, so an array of
it has a shape but no bytes and no values. ``grad(f, allow_int=True)`` returns
such an array for an integer (or bool) input, whose derivative is structurally
zero: a tangent cannot move an integer.

>>> import numpy as np, funcflux as ff
>>> g = ff.grad(lambda x, n: x * n, argnums=(0, 1), allow_int=True)(2.0, np.array(3))
>>> g[1].dtype == ff.dtypes.float0, g[1].shape, g[1].nbytes
(True, (), 0)
"""
from __future__ import annotations

import numpy as np

#: The dtype of the zero gradients of integer and bool inputs (``allow_int=True``).
float0: np.dtype = np.dtype([("float0", np.void, 0)])

__all__ = ["float0"]
