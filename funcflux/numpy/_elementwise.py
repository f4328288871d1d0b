"""Transitional: the NumPy surface of ``funcflux.ops.elementwise`` (being split out)."""
from ..ops.elementwise import *  # noqa: F401,F403
from ..ops.elementwise import __all__  # noqa: F401
