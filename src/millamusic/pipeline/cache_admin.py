"""Seeing and trimming the stage cache: `millamusic cache` and `millamusic cache gc`.

What is kept: every entry a current release names (release.json's stage keys: the release under
OUT/masters/ and the one each render record points at), the entries of each song's last N renders
(render records, `StageCache.record_render`) and the entry each stage's last run used (the re-run
memos, so an interrupted render's finished stages survive). Everything else may go, oldest first.

Sizes count each file once however many hard links it has (export entries share their files with
masters/<slug>/<profile>/); bytes freed count only files whose every link goes. A preview's stages are
remembered as "<slug>.<range>", so they count under their song.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from millamusic.core.cache import NOT_STAGES, StageCache, sweep_stale_temps
from millamusic.core.errors import SpecError, SpecProblem

UNKNOWN = "(no render record)"  # entries no record or memo ties to a song: older takes, older millamusic


@dataclass(frozen=True)
class EntryUse:
    stage: str
    key: str
    path: str
    song: str  # slug, or UNKNOWN
    bytes: int  # its files' sizes, a file hard-linked from an earlier-listed entry not counted again
    freeable: int  # what deleting it alone gives back: files with no other link anywhere
    linked: int  # of `bytes`, files with other hard links (published masters share them)
    kept: str  # why gc keeps it ("" when it may go): "release", "last 1 render(s)", "last run"
    needed: bool  # used by the latest render of its song (or named by a current release)
    last_used: float  # unix time: its newest render record, else when it was published


@dataclass(frozen=True)
class CacheUsage:
    root: str
    entries: tuple[EntryUse, ...]
    other_bytes: int  # engines' reusable phrases, memos, records, locks
    keep_last: int

    @property
    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries) + self.other_bytes

    @property
    def needed_bytes(self) -> int:
        return sum(e.bytes for e in self.entries if e.needed)

    def rows(self) -> list[dict]:
        """Per song and stage: entries, bytes, bytes the latest renders need."""
        table: dict[tuple[str, str], dict] = {}
        for e in self.entries:
            row = table.setdefault((e.song, e.stage), {"song": e.song, "stage": e.stage, "entries": 0, "bytes": 0,
                                                      "linked_bytes": 0, "needed_bytes": 0})
            row["entries"] += 1
            row["bytes"] += e.bytes
            row["linked_bytes"] += e.linked
            row["needed_bytes"] += e.bytes if e.needed else 0
        return [table[k] for k in sorted(table, key=lambda k: (k[0] == UNKNOWN, k))]

    def to_dict(self) -> dict:
        return {"cache": self.root, "total_bytes": self.total_bytes, "needed_bytes": self.needed_bytes,
                "linked_bytes": sum(e.linked for e in self.entries), "other_bytes": self.other_bytes,
                "rows": self.rows()}


@dataclass(frozen=True)
class GcPlan:
    usage: CacheUsage
    remove: tuple[EntryUse, ...]  # oldest first
    freed_bytes: int
    max_size: int | None

    @property
    def after_bytes(self) -> int:
        return self.usage.total_bytes - self.freed_bytes

    @property
    def over_max_size(self) -> bool:
        return self.max_size is not None and self.after_bytes > self.max_size

    def to_dict(self) -> dict:
        return {"cache": self.usage.root, "total_bytes": self.usage.total_bytes, "freed_bytes": self.freed_bytes,
                "after_bytes": self.after_bytes, "max_size": self.max_size, "over_max_size": self.over_max_size,
                "remove": [asdict(e) for e in self.remove]}


# --- reading the cache ------------------------------------------------------------------------


def cache_usage(cache_dir: Path, out_root: Path | None, *, keep_last: int = 1) -> CacheUsage:
    """Every published entry of the cache at `cache_dir`, whom it belongs to and whether gc keeps it.
    `out_root`: where releases are published (masters/<slug>/release.json), or None."""
    check_keep_last(keep_last)
    cache = StageCache(cache_dir)
    records = cache.render_records()
    memo = cache.remembered_keys()
    owner: dict[str, str] = {key: _song(label) for key, label in memo.items()}
    latest: set[str] = set()
    kept: dict[str, str] = {key: "last run" for key in memo}
    last_used: dict[str, float] = {}
    releases = _release_paths(out_root)
    for label, newest_first in records.items():
        for index, record in enumerate(newest_first):
            for key in record.keys:
                owner.setdefault(key, _song(label))
                last_used[key] = max(last_used.get(key, 0.0), record.time_ns / 1e9)
                if index < keep_last:
                    kept[key] = f"last {keep_last} render(s)"
                if index == 0:
                    latest.add(key)
        releases |= {Path(r.release) for r in newest_first if r.release}
    for release in sorted(releases):
        for key, slug in _release_keys(release):
            kept[key] = "release"
            latest.add(key)
            owner.setdefault(key, slug)

    seen: dict[tuple[int, int], int] = {}  # (device, inode) -> links met so far
    entries = []
    for stage, key, folder in cache.published_entries():
        fresh = linked = 0
        files = _files(folder)
        for ident, size, links in files:
            if ident not in seen:
                fresh += size
                linked += size if links > 1 else 0
            seen[ident] = seen.get(ident, 0) + 1
        freeable = sum(size for _, size, links in files if links <= 1)
        entries.append(EntryUse(stage, key, str(folder), owner.get(key, UNKNOWN), fresh, freeable, linked,
                                kept.get(key, ""), key in latest or key in memo, last_used.get(key) or _mtime(folder)))
    return CacheUsage(str(cache_dir), tuple(entries), _other_bytes(cache_dir, seen), keep_last)


def plan_gc(cache_dir: Path, out_root: Path | None, *, keep_last: int = 1, max_size: int | None = None) -> GcPlan:
    """What `cache gc` removes: every entry nothing keeps, oldest first; with `max_size`, only as many
    of those as it takes to bring the cache under it (kept entries are never removed for it)."""
    usage = cache_usage(cache_dir, out_root, keep_last=keep_last)
    candidates = sorted((e for e in usage.entries if not e.kept), key=lambda e: (e.last_used, e.stage, e.key))
    remove, freed, links_gone = [], 0, {}
    for entry in candidates:
        if max_size is not None and usage.total_bytes - freed <= max_size:
            break
        remove.append(entry)
        for ident, size, links in _files(Path(entry.path)):  # a file frees space when its last link goes
            links_gone[ident] = links_gone.get(ident, 0) + 1
            freed += size if links_gone[ident] == links else 0
    return GcPlan(usage, tuple(remove), freed, max_size)


def run_gc(cache_dir: Path, out_root: Path | None, *, keep_last: int = 1, max_size: int | None = None) -> GcPlan:
    """plan_gc, then delete its entries (each atomically: renamed aside, then removed), all while holding
    the cache exclusively (CacheBusy if a render or album build uses it): planned under the lock, no
    render can start, finish or record a take between the plan and the deletes. Also drops render
    records past each song's last N (but each song's newest record per release still there, so
    releases in another --out stay known) and the temps of dead writers. Returns the plan carried out."""
    cache = StageCache(cache_dir)
    if not cache.root.is_dir():
        return plan_gc(cache_dir, out_root, keep_last=keep_last, max_size=max_size)  # no folder made to lock it
    with cache.exclusive():
        plan = plan_gc(cache_dir, out_root, keep_last=keep_last, max_size=max_size)
        sweep_stale_temps(cache.root)
        for entry in plan.remove:
            cache.discard(Path(entry.path))
        for newest_first in cache.render_records().values():
            releases: set[str] = set()
            for index, record in enumerate(newest_first):
                newest_of_release = record.release not in releases and Path(record.release or "").is_file()
                releases.add(record.release)
                if index >= keep_last and not newest_of_release:
                    record.path.unlink(missing_ok=True)
    return plan


# --- user input -----------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str) -> int:
    """'2GB', '500MB', '1.5G', '2GiB', '123' (bytes) -> bytes; SpecError (exit 2) otherwise.
    GB is 10**9, GiB 2**30."""
    match = _SIZE_RE.fullmatch(text or "")
    if match is None or float(match[1]) <= 0:
        raise SpecError([SpecProblem("--max-size", None, None, "max-size", text,
                                     "not a size above zero",
                                     "give bytes with a unit: 2GB, 500MB, 1.5GiB or 800000000")],
                        subject="the command line")
    number, unit, binary = float(match[1]), match[2].lower(), match[3]
    return int(number * (1024 if binary else 1000) ** _UNITS[unit])


def check_keep_last(keep_last: int) -> None:
    if keep_last < 1:
        raise SpecError([SpecProblem("--keep-last", None, None, "keep-last", keep_last,
                                     "gc keeps at least each song's latest render (what the next render reuses)",
                                     "give 1 or more (1: the latest render only)")],
                        subject="the command line")


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# --- helpers ---------------------------------------------------------------------------------------


def _song(label: str) -> str:
    return label.split(".", 1)[0]  # "slug.spotify" (a profile's run) -> slug; slugs have no dots


def _release_paths(out_root: Path | None) -> set[Path]:
    if out_root is None:
        return set()
    return {p.resolve() for p in Path(out_root).glob("masters/*/release.json")}


def _release_keys(path: Path) -> list[tuple[str, str]]:
    """(key, slug) of every stage a release.json names; [] for a release that is gone or unreadable
    (then only the render records and memos protect its entries)."""
    try:
        record = json.loads(Path(path).read_text())
        slug = Path(path).parent.name
        return [(stage["key"], slug) for stage in record["stages"].values() if isinstance(stage.get("key"), str)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _files(folder: Path) -> list[tuple[tuple[int, int], int, int]]:
    """((device, inode), size, links) of each file of an entry."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                stat = os.stat(os.path.join(root, name), follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append(((stat.st_dev, stat.st_ino), stat.st_size, stat.st_nlink))
    return found


def _other_bytes(cache_dir: Path, seen: dict) -> int:
    total = 0
    for name in sorted(NOT_STAGES):
        for ident, size, _ in _files(Path(cache_dir) / name):
            total += 0 if ident in seen else size
            seen[ident] = 1
    return total


def _mtime(folder: Path) -> float:
    try:
        return folder.stat().st_mtime
    except FileNotFoundError:
        return time.time()
