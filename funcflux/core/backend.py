"""Which array library holds a value: NumPy by default, others by registration.

Every primitive's ``impl`` asks ``array_module(*args)`` for the module to call, so
the same implementation runs on NumPy, on CuPy, and on the test suite's strict
stand-in device. ``funcflux.device`` registers CuPy's array type when it is
imported; nothing here imports CuPy.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

# Types that are NumPy's (or plain Python numbers): the common case, checked first.
_NUMPY_TYPES = (np.ndarray, np.generic, float, int, bool, complex)
_MODULES: dict[type, ModuleType] = {}


def register_array_module(array_type: type, module: ModuleType) -> None:
    """Declare that values of ``array_type`` are computed with ``module``."""
    _MODULES[array_type] = module


def array_module(*xs: Any) -> Any:
    """The array module (``numpy``, ``cupy``, ...) that holds the arrays among ``xs``."""
    if not _MODULES:  # nothing but NumPy registered: the common case costs one check
        return np
    for x in xs:
        if not isinstance(x, _NUMPY_TYPES) and x is not None:
            mod = _MODULES.get(type(x))
            if mod is not None:
                return mod
    return np
