"""Transitional: the NumPy surface of ``funcflux.ops.signal`` (being split out)."""
from ..ops.signal import *  # noqa: F401,F403
from ..ops.signal import __all__  # noqa: F401
