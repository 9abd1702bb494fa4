"""Give a finished stage's freed memory back to the system: a render's peak RSS.

A render makes many short-lived audio arrays of 1-60 MB, on two threads (backing and vocals), each
with its own glibc arena. Memory freed there stays with the process, so a stage's peak was still
counted while later stages ran. `malloc_trim(0)` after each stage hands every arena's free pages
back. An earlier setting, a fixed 1 MiB mmap threshold, also kept RSS under 1 GB, but made every
array a fresh mapping the kernel zero-fills page by page: ~3M page faults and +5 s of system time
in a 3-minute render (docs/performance.md). Allocation never changes what is computed.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache


@cache
def _malloc_trim():
    """glibc's malloc_trim, or None (macOS, Windows, musl: their allocators keep their own ways)."""
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system now (~2-20 ms after a stage). True when glibc
    did it; False where there is no malloc_trim."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


