"""``ff.debug``: looking at values inside transforms, ``jit`` included.

``ff.debug.print(fmt, *args, **kwargs)`` prints ``fmt.format(...)`` with the values of
the call; inside ``jit`` it is part of the staged program, so it prints on every call
(Python's ``print`` there runs only while tracing). See
:func:`funcflux.transforms.staging.debug_print`.
"""
from __future__ import annotations

from .transforms.staging import debug_print as print  # noqa: A001 (JAX's name)

__all__ = ["print"]
