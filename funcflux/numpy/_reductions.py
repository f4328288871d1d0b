"""Transitional: the NumPy surface of ``funcflux.ops.reductions`` (being split out)."""
from ..ops.reductions import *  # noqa: F401,F403
from ..ops.reductions import __all__  # noqa: F401
