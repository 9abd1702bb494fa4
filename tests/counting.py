"""Counting work instead of timing it: tests bound what a piece of code does by the number of
function calls it makes, which is the same on every machine and under any load, where a
wall-clock limit is not.

`counting_calls` counts every call made inside its block, Python functions and built-in ones
alike, as cProfile counts them (`pstats.Stats.total_calls`). Work that runs in one C call (a
regular expression, a NumPy operation) counts once: bound those by their input sizes, and memory
with tracemalloc.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class CallCount:
    calls: int = 0  # filled in when the block ends


@contextlib.contextmanager
def counting_calls() -> Iterator[CallCount]:
    """``with counting_calls() as count: ...`` then ``count.calls``: the calls made in the block."""
    count = CallCount()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield count
    finally:
        profiler.disable()
        count.calls = pstats.Stats(profiler).total_calls
