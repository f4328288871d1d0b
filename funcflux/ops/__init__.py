"""THE primitive table, one family per file, with each primitive's rules beside it.

Each family file holds its primitives (impl, VJP, JVP and batching rules on adjacent
lines, fast NumPy variants declared beside them) and the *binders* its rules and the
NumPy surface call: functions with normalised parameters that bind a primitive. Nothing
here knows NumPy's signatures or registers in the routing table; ``funcflux.numpy``
(above this package) does both. The families import one another in one order, each
only from those before it: ``common`` (plain helpers), ``base`` (reshape, transpose,
broadcast_to, sum, astype and the rule helpers), ``elementwise``, ``indexing``,
``shape``, ``reductions``, ``softmax``, ``special``, ``linalg``, then ``nn``,
``patches``, ``signal``, ``fft`` and ``random`` (the Threefry bit generator).

Importing this package declares every primitive (``funcflux.core.primitive.REGISTRY``).
"""
from . import common, base, elementwise, indexing, shape, reductions  # noqa: F401
from . import softmax, special, linalg, nn, patches, signal, fft  # noqa: F401
from . import random  # noqa: F401
