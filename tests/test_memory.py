"""core/memory.py: freed memory handed back after each stage (peak RSS, docs/performance.md)."""

import platform
import sys

import numpy as np
import pytest

from millamusic.core import memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's; elsewhere the allocator keeps its own behaviour")
def test_freed_heap_memory_goes_back_to_the_system():
    first = np.ones(1 << 17)  # 1 MiB, mmapped; freeing it raises glibc's mmap threshold past 1 MiB,
    del first  # so what follows comes from the heap, as a render's arrays do once it has freed a few
    freed, kept = [], []
    for _ in range(400):  # 400 x 512 KiB freed, each with a kept 32 KiB array after it: holes, not the top
        freed.append(np.ones(1 << 16))
        kept.append(np.ones(1 << 12))
    del freed
    before = _rss_kib()
    assert memory.release_free_memory() is True
    assert before - _rss_kib() > 100 * 1024, "malloc_trim gave back less than half of the 200 MiB freed"
    assert len(kept) == 400


def test_other_systems_are_left_alone(monkeypatch):
    memory._malloc_trim.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    try:
        assert memory.release_free_memory() is False
    finally:
        memory._malloc_trim.cache_clear()
