"""Devices: move pytrees between NumPy (the CPU) and CuPy (a CUDA GPU).

``gpu(tree)`` puts every array leaf of a model, a batch or an optimiser state
on the GPU as a ``cupy.ndarray``; ``cpu(tree)`` brings them back. Both walk the
tree with ``fmap``, so tied arrays stay tied and a layer's configuration (its
non-children) is left alone. Everything funcflux does afterwards -- every
primitive, its derivatives and batching rules, the layers and optimisers --
computes in the array module of its inputs, so the work stays on the device.

Without CuPy, or without a GPU, ``gpu`` warns once (a :class:`DeviceWarning`)
and returns the tree unchanged, so the same script runs on a laptop; pass
``strict=True`` to make that an error instead.

>>> import numpy as np, funcflux as ff
>>> ff.device.device_of(ff.cpu({"w": np.ones(2)}))
'cpu'
"""
from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np

from .core import backend as _backend
from .core.trace import module_value
from .functors import fleaves, fmap

__all__ = ["gpu", "cpu", "is_available", "device_of", "array_module", "DeviceWarning",
           "DeviceError"]

NO_GPU = ("funcflux.gpu: {why}; the arrays stay on the CPU (NumPy). {fix} Pass strict=True to "
          "make this an error.")
NO_GPU_STRICT = "funcflux.gpu(..., strict=True): {why}. {fix}"
FIX_INSTALL = "Install CuPy for your CUDA version (pip install cupy-cuda12x)."
FIX_DRIVER = ("CuPy needs an NVIDIA GPU with a working CUDA driver (check nvidia-smi and "
              "CUDA_VISIBLE_DEVICES).")
MIXED_TREE = ("device_of: the tree holds arrays on several devices ({devices}), e.g. {first} at "
              "{first_path} and {second} at {second_path}. Move it with ff.gpu(tree) or "
              "ff.cpu(tree) first.")


class DeviceWarning(UserWarning):
    """``gpu`` could not reach a GPU and left the arrays on the CPU."""


class DeviceError(RuntimeError):
    """``gpu(..., strict=True)`` could not reach a GPU."""


# ----------------------------------------------------------------------------- CuPy, lazily
_CUPY: Any = None        # the module once imported (None: not tried yet or absent)
_TRIED = False           # whether the import was tried
_AVAILABLE: bool | None = None
_warned = False


def _cupy() -> Any:
    """The ``cupy`` module, or None when it is not installed (imported on first use only)."""
    global _CUPY, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            import cupy
        except Exception:  # ImportError, or a broken CUDA install raising on import
            cupy = None
        _CUPY = cupy
    return _CUPY


def _register(cp: Any) -> None:
    _backend.register_array_module(cp.ndarray, cp, device=lambda x: f"gpu:{x.device.id}")


def is_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device.

    >>> import funcflux as ff
    >>> isinstance(ff.device.is_available(), bool)
    True
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        cp = _cupy()
        try:
            _AVAILABLE = bool(cp is not None and cp.is_available())
        except Exception:
            _AVAILABLE = False
        if _AVAILABLE:
            # Only now: a registered type turns off array_module's NumPy-only fast path.
            _register(cp)
    return _AVAILABLE


def _why_not() -> dict:
    if _cupy() is None:
        return {"why": "CuPy is not installed", "fix": FIX_INSTALL}
    return {"why": "CuPy finds no CUDA GPU", "fix": FIX_DRIVER}


# ----------------------------------------------------------------------------- moving
def _is_host_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind in "biufc"


def _is_device_array(x: Any) -> bool:
    return type(x) in _backend._MODULES


def gpu(tree: Any, device: Any = None, *, strict: bool = False) -> Any:
    """``tree`` with every NumPy array leaf moved to the GPU (a ``cupy.ndarray``).

    Args:
      tree: a model, a batch, an optimiser state: any pytree or functor.
      device: the GPU, an int or a ``cupy.cuda.Device``; by default CuPy's
        current device. Arrays already on another GPU are copied there.
      strict: raise :class:`DeviceError` instead of warning when there is no
        GPU to move to.

    Without CuPy or without a GPU this warns once and returns ``tree``
    unchanged (NumPy arrays keep working everywhere).
    """
    if not is_available():
        if strict:
            raise DeviceError(NO_GPU_STRICT.format(**_why_not()))
        _warn_once()
        return tree
    cp = _cupy()
    dev = cp.cuda.Device(device) if isinstance(device, (int, np.integer)) else device
    if dev is None:
        dev = cp.cuda.Device()

    def move(x: Any) -> Any:
        if _is_host_array(x):
            with dev:
                return cp.asarray(x)
        if isinstance(x, cp.ndarray) and x.device.id != dev.id:
            with dev:
                return x.copy()
        return x
    return fmap(move, tree)


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(NO_GPU.format(**_why_not()), DeviceWarning, stacklevel=3)


def cpu(tree: Any) -> Any:
    """``tree`` with every device array leaf brought back to the CPU as a NumPy array.

    NumPy arrays and other leaves are left as they are (ties stay tied).

    >>> import numpy as np, funcflux as ff
    >>> ff.cpu([np.arange(2.0), "config"])
    [array([0., 1.]), 'config']
    """
    if not _backend._MODULES:  # nothing but NumPy can exist
        return tree
    return fmap(lambda x: x.get() if _is_device_array(x) else x, tree)


def _to_like(a: np.ndarray, like: Any) -> Any:
    """The host array ``a`` moved to the device (and GPU) where ``like`` lives."""
    xp = _backend.array_module(like)
    if xp is np:
        return a
    dev = getattr(like, "device", None)
    if hasattr(dev, "__enter__"):  # a cupy.cuda.Device: allocate on like's GPU
        with dev:
            return xp.asarray(a)
    return xp.asarray(a)


# ----------------------------------------------------------------------------- asking
def device_of(tree: Any) -> str:
    """Where the arrays of ``tree`` live: ``"cpu"``, ``"gpu:0"``, ``"gpu:1"``...

    A tree without arrays is on the CPU. A tree with arrays on several devices
    is a ``ValueError`` naming two of them and their paths.

    >>> import numpy as np, funcflux as ff
    >>> ff.device.device_of({"w": np.zeros(2), "act": "relu"})
    'cpu'
    """
    found: dict[str, Any] = {}
    for x in fleaves(tree):
        if isinstance(x, np.ndarray):
            found.setdefault("cpu", x)
        elif _is_device_array(x):
            found.setdefault(_backend.device_name(x), x)
    if not found:
        return "cpu"
    if len(found) == 1:
        return next(iter(found))
    from . import tree as _tree
    names = list(found)
    paths = {}
    for p, x in _tree.flatten_with_path(tree)[0]:
        for n in names[:2]:
            if x is found[n] and n not in paths:
                paths[n] = _tree.keystr(p) or "<root>"
    raise ValueError(MIXED_TREE.format(devices=", ".join(names), first=names[0],
                                       first_path=paths.get(names[0], "?"), second=names[1],
                                       second_path=paths.get(names[1], "?")))


def array_module(tree: Any) -> Any:
    """The array module of ``tree``'s arrays: ``numpy``, or ``cupy`` on the GPU.

    Use it to build constants next to your data (``xp.eye(n)``) in code that
    should run on either device; inside ``grad``/``vmap`` it looks through the
    traced values to the arrays they stand for.

    >>> import numpy as np, funcflux as ff
    >>> ff.device.array_module([np.ones(2)]) is np
    True
    """
    leaves = []
    for x in fleaves(tree):
        x = module_value(x)  # inside a transform: a value of the array type being traced
        if isinstance(x, np.ndarray) or _is_device_array(x):
            leaves.append(x)
    return _backend.array_module(*leaves)


# A program that imported CuPy before funcflux may pass CuPy arrays straight in, without
# ff.gpu: register them now. (Importing CuPy ourselves would cost every user start-up time.)
if "cupy" in sys.modules:
    is_available()
