"""What is already published, and where a stage's re-run memo lives: the rules publishing and the
render stamp share. Stdlib only: the stamp checks these before anything heavy loads (pipeline.stamp)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def stage_label(slug: str, variant: str | None) -> str:
    """The label a stage's re-run memo is kept under (core.cache: last/<label>/<stage>.json): the
    song's slug, or "<slug>.<variant>" for a delivery profile's run of the stage ("master[apple]")."""
    return slug if variant is None else f"{slug}.{variant}"


class PublishedRelease:
    """What a song's release.json (from an earlier render) says is published, to leave what is
    already in place alone: an unchanged re-render rewrites nothing, a new mastering target leaves
    the stems alone, and files that stay are hard-linked into the new masters folder, not copied.

    A published file counts as in place when release.json lists it with the sha256 and size this
    render would give it, and on disk it has that size and was last modified no later than
    release.json was written (the quick check make and rsync use: the published copy is not
    hashed again). A file edited, replaced or truncated after its release is published afresh;
    `millamusic check` hashes every file against release.json."""

    def __init__(self, root: Path, record: dict | None, written_ns: int, sha256: str | None = None):
        self.root, self.record, self.written_ns = root, record or {}, written_ns
        self.sha256 = sha256  # of release.json's bytes; None when it cannot be read

    @classmethod
    def read(cls, root: Path, path: Path) -> PublishedRelease:
        try:
            with open(path, "rb") as handle:
                written_ns = os.fstat(handle.fileno()).st_mtime_ns
                data = handle.read()
            record = json.loads(data)
        except (OSError, ValueError):
            return cls(root, None, 0)
        if not isinstance(record, dict):
            return cls(root, None, 0)
        return cls(root, record, written_ns, hashlib.sha256(data).hexdigest())

    def holds(self, destination: Path, want: dict) -> bool:
        listed = (self.record.get("files") or {}).get(Path(os.path.relpath(destination, self.root)).as_posix())
        if listed != want:
            return False
        try:
            stat = destination.stat()
        except OSError:
            return False
        return stat.st_size == want["bytes"] and stat.st_mtime_ns <= self.written_ns

    def first_moved(self) -> str | None:
        """The first file release.json lists that is no longer in place (its name as listed); None when
        every one is."""
        return next((name for name, want in (self.record.get("files") or {}).items()
                     if not self.holds(self.root / name, want)), None)

    def folder_is(self, folder: Path, names: set[str]) -> bool:
        """Whether `folder` holds exactly `names` (hidden temp names aside)."""
        try:
            return {p.name for p in folder.iterdir() if not p.name.startswith(".")} == names
        except OSError:
            return False
