import os
from pathlib import Path

import pytest

from millamusic.core.cache import StageCache


def test_miss_then_hit_and_why(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def produce(folder):
        calls.append(1)
        (folder / "out.txt").write_text("hello")

    first = cache.run("mix", {"a": 1, "b": 2}, produce, label="song")
    second = cache.run("mix", {"a": 1, "b": 2}, produce, label="song")
    assert (first.hit, second.hit, len(calls)) == (False, True, 1)
    assert first.key == second.key and first.content_hash == second.content_hash
    assert first.why == "not rendered before"
    third = cache.run("mix", {"a": 1, "b": 3}, produce, label="song")
    assert not third.hit and third.why == "changed: b"
    forced = cache.run("mix", {"a": 1, "b": 3}, produce, force=True, label="song")
    assert not forced.hit and forced.why.startswith("forced") and len(calls) == 3


def test_failed_stage_leaves_no_entry_and_no_temp(tmp_path):
    cache = StageCache(tmp_path)

    def explode(folder):
        (folder / "half.npy").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.run("master", {"x": 1}, explode)
    assert os.listdir(tmp_path / "master") == []


def test_content_hash_ignores_location(tmp_path):
    a = StageCache(tmp_path / "a").run("s", {"k": 1}, lambda f: (f / "x").write_text("same"))
    b = StageCache(tmp_path / "b").run("s", {"k": 1}, lambda f: (f / "x").write_text("same"))
    assert a.content_hash == b.content_hash


def test_sweep_removes_only_dead_writers_temps(tmp_path):
    import subprocess
    import sys

    from millamusic.core.cache import owner_tag, sweep_stale_temps

    dead = subprocess.run([sys.executable, "-c", "from millamusic.core.cache import owner_tag; print(owner_tag())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / f".tmp-0123456789abcdef-{dead}-aaaa0000").mkdir()
    (tmp_path / f".song.wav.{dead}.beef.tmp.wav").write_bytes(b"half")
    live = tmp_path / f".song.flac.{owner_tag()}.cafe.tmp.flac"
    live.write_bytes(b"being written")
    other_host = tmp_path / ".song.mp3.1@some_other_host.f00d.tmp.mp3"
    other_host.write_bytes(b"?")
    kept = tmp_path / "song.wav"
    kept.write_bytes(b"master")
    assert sweep_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([live.name, other_host.name, "song.wav", "stage"])


def test_sweep_walks_past_a_folder_that_vanishes_and_never_into_a_live_temp(tmp_path, monkeypatch):
    """Another process publishes beside the sweep (an album's tracks on Ray): a folder it swaps
    away while the sweep walks is skipped, not an error; what a live writer's temp holds is its own."""
    from millamusic.core import cache
    from millamusic.core.cache import owner_tag, sweep_stale_temps

    live = tmp_path / "masters" / f".track-one.tmp-{owner_tag()}-a3c7"
    (live / "spotify").mkdir(parents=True)
    (live / "spotify" / f".x.{owner_tag()}.tmp.wav").write_bytes(b"mine")
    (tmp_path / "masters" / "track-two" / "spotify").mkdir(parents=True)
    real_scandir = os.scandir

    def vanishing(path):
        if Path(path).name == "track-two":  # swapped away by its publisher between listing and walking
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_scandir(path)

    monkeypatch.setattr(cache.os, "scandir", vanishing)
    assert sweep_stale_temps(tmp_path) == 0
    assert (live / "spotify" / f".x.{owner_tag()}.tmp.wav").is_file()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombie detection reads /proc")
def test_a_zombie_writer_counts_as_dead(tmp_path):
    """A killed build's orphaned workers stay zombies until reaped: their temps must be swept."""
    import subprocess
    import time

    from millamusic.core.cache import owner_alive, owner_tag

    child = subprocess.Popen(["true"])  # exits at once; not reaped until wait()
    try:
        deadline = time.monotonic() + 10
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        tag = owner_tag().replace(str(os.getpid()), str(child.pid), 1)
        assert not owner_alive(tag)
        assert owner_alive(owner_tag())  # this process is alive
    finally:
        child.wait()
    assert not owner_alive(tag)  # reaped: gone
