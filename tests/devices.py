"""Which device the test session runs on (``pytest --device {cpu,strict,gpu}``).

``put(tree)`` moves a tree's arrays to the session's device, ``get(tree)``
brings them back to NumPy for assertions; on ``cpu`` both are the identity.
``conftest.py`` calls :func:`select` once, before collection.
"""
from __future__ import annotations

from typing import Any

NAME = "cpu"


def _same(tree: Any) -> Any:
    return tree


_put = _get = _same


def select(name: str) -> None:
    """Route ``put``/``get`` to device ``name`` (and register the strict stand-in)."""
    global NAME, _put, _get
    NAME = name
    if name == "strict":
        from tests import strict
        strict.register()
        _put, _get = strict.to_strict, strict.from_strict
    elif name == "gpu":
        from funcflux import device
        _put, _get = (lambda t: device.gpu(t, strict=True)), device.cpu
    else:
        _put = _get = _same


def put(tree: Any) -> Any:
    """``tree`` with its NumPy arrays on the session's device."""
    return _put(tree)


def get(tree: Any) -> Any:
    """``tree`` with its device arrays back in NumPy."""
    return _get(tree)


def on_device() -> bool:
    """True when arrays really leave NumPy (``strict`` or ``gpu``)."""
    return NAME != "cpu"
