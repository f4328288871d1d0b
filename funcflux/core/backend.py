"""Which array library holds a value: NumPy by default, others by registration.

Every primitive's ``impl`` asks ``array_module(*args)`` for the module to call, so
the same implementation runs on NumPy, on CuPy, and on the test suite's strict
stand-in device. ``funcflux.device`` registers CuPy's array type when CuPy is
in use; nothing here imports CuPy.

An operation that mixes a NumPy array with a registered device array raises a
``TypeError`` naming both devices (CuPy itself refuses implicit host-to-device
copies; the check here says where the two values live and how to fix it).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

import numpy as np

# Types that are NumPy's (or plain Python numbers): the common case, checked first.
_NUMPY_TYPES = (np.ndarray, np.generic, float, int, bool, complex)
_MODULES: dict[type, ModuleType] = {}
_DEVICES: dict[type, Callable[[Any], str]] = {}

MIXED = ("funcflux: one operation mixes arrays on two devices: a NumPy array of shape {hshape} "
         "(on the CPU) and a {dtype_name} of shape {dshape} (on {device}). Move them to one "
         "device first: ff.gpu(tree) puts arrays on the GPU, ff.cpu(tree) brings them back; "
         "constants made with np.* inside a function need the array module of the inputs "
         "(ff.device.array_module(x)).")


def register_array_module(array_type: type, module: Any,
                          device: Callable[[Any], str] | None = None) -> None:
    """Declare that values of ``array_type`` are computed with ``module``.

    ``device(x)`` names the device an array lives on (``"gpu:0"``), for error
    messages and ``ff.device.device_of``. Registered arrays must offer ``.get()``
    returning a NumPy copy (CuPy's convention), which ``ff.cpu`` uses.
    """
    _MODULES[array_type] = module
    _DEVICES[array_type] = device or (lambda x: type(x).__module__.split(".")[0])


def unregister_array_module(array_type: type) -> None:
    """Undo :func:`register_array_module` (the NumPy fast path returns when none is left)."""
    _MODULES.pop(array_type, None)
    _DEVICES.pop(array_type, None)


def device_name(x: Any) -> str:
    """``"cpu"`` for NumPy values and Python numbers, else the registered device's name."""
    f = _DEVICES.get(type(x))
    return "cpu" if f is None else f(x)


def array_module(*xs: Any) -> Any:
    """The array module (``numpy``, ``cupy``, ...) that holds the arrays among ``xs``."""
    if not _MODULES:  # nothing but NumPy registered: the common case costs one check
        return np
    mod = dev = host = None
    for x in xs:
        if isinstance(x, np.ndarray):
            host = x
        elif mod is None and not isinstance(x, _NUMPY_TYPES) and x is not None:
            mod = _MODULES.get(type(x))
            dev = x
    if mod is None:
        return np
    if host is not None:
        raise TypeError(MIXED.format(hshape=host.shape, dtype_name=_qualname(dev),
                                     dshape=tuple(dev.shape), device=device_name(dev)))
    return mod


def _qualname(x: Any) -> str:
    t = type(x)
    return f"{t.__module__}.{t.__name__}"
