"""core/memory.py: the allocator setting a render starts with (peak RSS, docs/performance.md)."""

import platform
import sys

import pytest

from millamusic.core import memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's; elsewhere the allocator keeps its own behaviour")
def test_glibc_takes_the_mmap_threshold():
    assert memory.return_large_frees() is True


def test_other_systems_are_left_alone(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert memory.return_large_frees() is False
