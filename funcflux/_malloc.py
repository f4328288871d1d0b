"""Keep freed array memory in the process (glibc), so a training step does not page-fault.

Every transform allocates its intermediates fresh and, since the tape is freed as
soon as a gradient is done, returns them to ``malloc`` at the end of each step. With
glibc's defaults that memory goes straight back to the operating system (``munmap``
for blocks over the dynamic mmap threshold, heap trimming for the rest), and the next
step takes it back page by page: a small convnet's step was measured at 3,500 minor
page faults and twice the time. Two ``mallopt`` settings stop that: blocks under
32 MiB come from the heap, and up to 64 MiB of free heap stays with the process.
Larger arrays (datasets) are still mapped and unmapped on their own.

This is process-wide, so it is done once, at import, only where it applies (Linux
with glibc), never over settings of your own (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` in the environment), and not at all
with ``FUNCFLUX_MALLOC=system``.
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

#: Whether funcflux changed the allocator's thresholds in this process.
tuned = False


def tune() -> bool:
    """Apply the two thresholds once; return whether they are in effect."""
    global tuned
    if tuned:
        return True
    if (sys.platform != "linux" or os.environ.get("FUNCFLUX_MALLOC", "").lower() == "system"
            or any(k in os.environ for k in _USER_SETTINGS)):
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
