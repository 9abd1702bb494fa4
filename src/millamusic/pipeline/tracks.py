"""One track of an album build, as a worker runs it (in this process, a process pool or on Ray)."""

from __future__ import annotations

import queue as queues
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from millamusic.pipeline.render import render

# --- one track (in this process, or in a worker: module-level function, picklable arguments) ------


def render_track(song, render_options, progress, until: str | None, album_masters: dict | None, earlier: tuple):
    """Render one track (`pipeline.render`) while holding its lock. `progress(stage, state)` gets
    every finished stage."""

    with _track_lock(render_options.cache_dir, song.slug):
        return render(song, render_options, lambda stage, state: state != "start" and progress(stage, state),
                      until=until, album_masters=album_masters, earlier=earlier)


class QueueProgress:
    """A worker's progress callback: (track index, stage, state) onto the parent's queue."""

    def __init__(self, queue, index: int):
        self.queue, self.index = queue, index

    def __call__(self, stage: str, state: str) -> None:
        self.queue.put((self.index, stage, state))


@contextmanager
def _track_lock(cache_dir: Path, slug: str) -> Iterator[None]:
    """One build at a time renders a given track on this machine: a second build started on the
    same catalogue waits, then finds the stages in the cache instead of computing them twice.
    (Without the lock results would still be correct: publishing is atomic and idempotent.)"""
    try:
        import fcntl  # fcntl: POSIX only
    except ImportError:  # Windows: no flock; rely on idempotent publishing alone
        yield
        return
    folder = Path(cache_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{slug}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def drain(queue, report) -> None:
    while True:
        try:
            index, stage, state = queue.get_nowait()
        except queues.Empty:
            return
        report(index, stage, state)
