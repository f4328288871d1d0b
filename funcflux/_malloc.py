"""Keep freed array memory in the process (glibc), so a training step does not page-fault.

Opt-in: ``ff.tune_allocator()`` or ``FUNCFLUX_MALLOC=keep`` in the environment.
``import funcflux`` alone changes nothing outside funcflux.

Every transform allocates its intermediates fresh and, since the tape is freed as
soon as a gradient is done, returns them to ``malloc`` at the end of each step. With
glibc's defaults that memory goes straight back to the operating system (``munmap``
for blocks over the dynamic mmap threshold, heap trimming for the rest), and the next
step takes it back page by page. Two ``mallopt`` settings stop that: blocks under
32 MiB come from the heap, and up to 64 MiB of free heap stays with the process.
Larger arrays (datasets) are still mapped and unmapped on their own.

Those settings are process-wide (every library in the process gets them, and glibc's
adaptive threshold is switched off), which is why funcflux leaves them to the
application, as NumPy and PyTorch do. They apply only on Linux with glibc, and never
over settings of your own (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or
``GLIBC_TUNABLES`` in the environment). docs/performance.md says what they buy.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
#: The environment variable that opts in at import (``FUNCFLUX_MALLOC=keep``).
ENV = "FUNCFLUX_MALLOC"

#: Whether funcflux changed the allocator's thresholds in this process.
tuned = False


def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc's ``mallopt``); return whether it applies.

    An opt-in for training scripts: funcflux frees every step's intermediates at
    once, and with glibc's defaults the next step faults that memory back in page by
    page (a small CNN's step: about 3,500 page faults and twice the time). After
    this call, blocks under 32 MiB are reused from the heap and up to 64 MiB of free
    heap stays with the process. It is process-wide and cannot be undone, so call it
    from an application, not from a library. It does nothing (and returns ``False``)
    off Linux/glibc or when the environment holds allocator settings of its own.
    ``FUNCFLUX_MALLOC=keep`` makes ``import funcflux`` call it.

    >>> import funcflux as ff
    >>> ff.tune_allocator() in (True, False)
    True
    """
    global tuned
    if tuned:
        return True
    if sys.platform != "linux" or any(k in os.environ for k in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl has no mallopt thresholds
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return tuned


def requested() -> bool:
    """Whether the environment asks for :func:`tune_allocator` at import."""
    return os.environ.get(ENV, "").strip().lower() in ("keep", "1", "true", "yes", "on")
