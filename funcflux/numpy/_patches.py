"""Transitional: the NumPy surface of ``funcflux.ops.patches`` (being split out)."""
from ..ops.patches import *  # noqa: F401,F403
from ..ops.patches import __all__  # noqa: F401
