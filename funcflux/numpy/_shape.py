"""Transitional: the NumPy surface of ``funcflux.ops.shape`` (being split out)."""
from ..ops.shape import *  # noqa: F401,F403
from ..ops.shape import __all__  # noqa: F401
