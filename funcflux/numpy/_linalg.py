"""Transitional: the NumPy surface of ``funcflux.ops.linalg`` (being split out)."""
from ..ops.linalg import *  # noqa: F401,F403
from ..ops.linalg import __all__  # noqa: F401
