"""The fused layer primitives (``relu``, ``dense``, softmax cross-entropy): nothing of NumPy's.

Their binders stay in ``funcflux.ops.nn`` (``funcflux.nn`` and ``funcflux.losses`` call
them); importing that module here declares the primitives with the rest of the surface.
"""
from ..ops import nn as _nn  # noqa: F401
