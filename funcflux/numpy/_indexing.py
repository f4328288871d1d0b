"""Transitional: the NumPy surface of ``funcflux.ops.indexing`` (being split out)."""
from ..ops.indexing import *  # noqa: F401,F403
from ..ops.indexing import __all__  # noqa: F401
from ..ops.indexing import _setitem  # noqa: F401,E402
