"""Transitional: the NumPy surface of ``funcflux.ops.softmax`` (being split out)."""
from ..ops.softmax import *  # noqa: F401,F403
from ..ops.softmax import __all__  # noqa: F401
