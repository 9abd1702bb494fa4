"""The state of one render: its song, options and cache, and each stage run through that cache."""

from __future__ import annotations

import errno
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from millamusic.core.audio import Audio, load_pcm24
from millamusic.core.cache import CorruptEntry, Entry, StageCache
from millamusic.core.errors import MillaError, RenderError, disk_fault, is_disk_fault
from millamusic.core.memory import release_free_memory
from millamusic.pipeline.published import stage_label
from millamusic.pipeline.stages import STAGE_VERSIONS, RenderOptions, explain
from millamusic.spec.song import Song


@dataclass(frozen=True)
class StageReport:
    name: str
    cached: bool
    seconds: float
    why: str  # why it ran ("" when cached)


T = TypeVar("T")

Progress = Callable[[str, str], None]  # (stage, "start" | "done: ...") for the CLI's display


@dataclass
class Run:
    song: Song
    options: RenderOptions
    cache: StageCache
    progress: Progress
    sources: dict = field(default_factory=dict)  # the song's files, remembered with each stage (status.song_sources)
    reports: list[StageReport] = field(default_factory=list)
    entries: dict[str, Entry] = field(default_factory=dict)

    def all_stems(self) -> "_StemFiles":
        return _StemFiles({**self.stem_files(self.entries["backing"], "backing.json"),
                           **self.stem_files(self.entries["vocals"], "vocals.json")})

    @staticmethod
    def stem_files(entry: Entry, listing: str) -> dict[str, Callable[[], Path]]:
        """name -> its FLAC's path (checked against the entry when asked), for the stems `listing` names."""
        names = json.loads((entry.path / listing).read_text())["stems"]
        return {name: lambda name=name: entry.verified(f"{name}.flac") for name in names}

    def in_order(self) -> list[StageReport]:
        """The stage reports in the order of a serial render (stages side by side finish in any order)."""
        rank = {"compose": 0, "backing": 1, "vocals": 2, "stems": 3}  # the rest run one after another
        return sorted(self.reports, key=lambda report: rank.get(report.name, 4))

    def stage(self, name: str, inputs: dict, produce: Callable[[Path], None], *, variant: str | None = None) -> Entry:
        """Run (or reuse) one stage. A `variant` (a delivery profile) is a separate run of the same
        stage: it is reported as "name[variant]" and remembered apart for "why did it re-run"."""
        label = stage_label(self.song.slug, variant)
        shown = name if variant is None else f"{name}[{variant}]"
        self.progress(shown, "start")
        started = time.perf_counter()

        inputs = {"version": STAGE_VERSIONS[name], **inputs}
        try:
            entry = self.cache.run(name, inputs, produce, force=self.options.force, label=label, context=self.sources,
                                   explain=lambda previous: explain(name, previous, inputs, self.sources))
        except (MillaError, CorruptEntry):
            raise  # already says what is wrong and maps to its own exit code (a SpecError stays 2); see render
        except OSError as error:  # the machine, not the song (a full disk, a read-only folder): say what to do
            if not (is_disk_fault(error) or error.errno in MACHINE_FAULTS):
                error.add_note(f"millamusic: in stage {name!r} of {self.song.path}")
                raise
            where = self.cache.root.resolve()
            raise RenderError(f"stage {name!r} failed for {self.song.path}: " + disk_fault(
                error, f"its cache entry in {where / name}", where,
                "Nothing was published and no half entry was kept; the stages before it stay cached."
            )) from error
        except Exception as error:  # a bug, ours or a library's: it keeps its traceback (exit 70), named here
            error.add_note(f"millamusic: in stage {name!r} of {self.song.path}{_low_disk_hint(self.cache.root)}")
            raise
        if not entry.hit:
            release_free_memory()  # the stage's freed arrays back to the system: peak RSS (core/memory.py)
        report = StageReport(shown, entry.hit, time.perf_counter() - started, entry.why)
        self.reports.append(report)
        self.entries[shown] = entry
        self.progress(shown, "cached" if entry.hit else f"done ({entry.why})")
        return entry


def once_more_if_corrupt(cache: StageCache, song_path, progress: Progress | None, attempt: Callable[[], T]) -> T:
    """attempt() (a render or a preview), once more if it read a corrupt cache entry (CorruptEntry: a file
    a stage, or publish, read failed its checksum). The damaged entry is moved aside and everything starts
    over: the stages before it are cache hits, it is recomputed (saying why), and nothing was published
    from it. Corrupt again: that entry is moved aside too, and RenderError asks for one more run."""
    try:
        return attempt()
    except CorruptEntry as corrupt:
        first = corrupt
    cache.retire(first.entry, first.problem)
    if progress is not None:
        progress(first.entry.stage, f"cache entry corrupt: {first.problem}; moved aside, rendering again")
    try:
        return attempt()
    except CorruptEntry as again:
        cache.retire(again.entry, again.problem)
        raise RenderError(f"{song_path}: {again} (after recomputing {first.entry.stage}); it was moved aside: "
                          "run the same command again") from again


class _StemFiles(Mapping):
    """Stems read from their cache entries when asked for, one at a time and not kept: the mix goes
    through them stem by stem, so it holds one at a time instead of all of them (a 3-minute stem is
    70 MB as float32; a song has up to a dozen)."""

    def __init__(self, paths: dict[str, Callable[[], Path]]):
        self._paths = paths  # name -> the verified .flac path (Entry.verified)

    def __getitem__(self, name: str) -> Audio:
        return load_pcm24(self._paths[name]())

    def __iter__(self):
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


STEM_SOURCES = "stems.json"  # the stems entry's list of the stem WAVs publish writes (StemWav)


@dataclass(frozen=True)
class StemWav:
    """One stem as publishing writes it, stems/<slug>/<name>.wav: the 24-bit WAV of the FLAC `file` of
    the `stage` entry `key` (core.audio.pcm24_wav). The stems entry lists these instead of holding the
    WAVs, which would be a second copy of the same samples; `sha256` and `bytes` (of the WAV) let
    publish leave an unchanged stem alone without decoding it, and check what it wrote."""

    name: str
    stage: str  # "backing" or "vocals"
    key: str  # that entry's key
    file: str  # "<name>.flac"
    source_sha256: str  # of that file, as its entry.json records it
    sha256: str
    bytes: int

    @classmethod
    def listed(cls, entry: Entry) -> dict[str, "StemWav"]:
        """name -> StemWav, from a stems entry (its listing checked against entry.json first)."""
        listed = json.loads(entry.verified(STEM_SOURCES).read_text())["stems"]
        return {name: cls(name=name, **fields) for name, fields in listed.items()}


# Besides a full disk (errors.is_disk_fault): what the machine, not the song or the code, causes.
MACHINE_FAULTS = (errno.EACCES, errno.EPERM, errno.EIO)

LOW_DISK_BYTES = 256 << 20  # less free than this where the cache lies: about one long song's stems


def _low_disk_hint(folder: Path) -> str:
    """Libraries that do not say "disk full" (libsndfile, LAME) fail with their own words: when the
    disk is nearly full, say so beside them."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if free >= LOW_DISK_BYTES:
        return ""
    return (f" (the disk that holds {folder} has only {free >> 20} MiB free: if the stage was writing, a full disk "
            "is the likely cause. Fix: free space there, then run the same command again)")
