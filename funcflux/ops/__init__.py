"""THE primitive table, one family per file, with each primitive's rules beside it.

Importing this package declares every primitive (``funcflux.core.primitive.REGISTRY``).
"""
from . import (common, elementwise, reductions, shape, indexing, linalg, softmax, nn,  # noqa: F401
               patches, fft, special, signal)
