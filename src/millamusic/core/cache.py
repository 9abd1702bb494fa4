"""Stage cache: entries keyed by a hash of what a stage reads, published atomically.

An entry is a folder `<root>/<stage>/<key>/` holding the stage's files and `entry.json`
(the key's inputs, a content hash of the files, each file's sha256 and size, and a checksum of
entry.json itself). It is built in a temp folder beside it and renamed into place, so a crash
never leaves a half entry and parallel workers can share one cache (the first rename wins; the
loser's identical entry is discarded).

A hit is verified before it is used: entry.json's own checksum, every file's presence and size,
and the bytes of every small file (JSON, MIDI: up to EAGER_VERIFY_BYTES). A large file (audio) is
hashed when it is read (`Entry.verified`, `Entry.copy_verified`), so a render that reads nothing
big from the cache (an unchanged re-render) does not hash a gigabyte it never uses, and corrupt
audio still never flows into a stage or a release: a damaged entry is found, named ("mix.npy
checksum mismatch"), moved aside and the stage recomputed (found late, the render starts over:
pipeline.render). Entries written before per-file records existed are checked against their
content hash, then given the per-file record.

Beside the entries: `last/` remembers each stage's last inputs per song (why a stage re-runs),
`renders/` what each finished render used (`record_render`), and `locks/` the flock every render
holds shared while `cache gc` deletes (`in_use`, `exclusive`; pipeline.cache_admin, docs/cache.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from millamusic.core.errors import RenderError

ENTRY_FILE = "entry.json"
# Folders under the cache root that are not stages: the re-run memos, the locks, the render
# records, and engines' reusable work (kokoro/diffsinger phrases). Everything else is <stage>/<key>/.
NOT_STAGES = frozenset({"last", "locks", "renders", "phrases"})
KEY_RE = re.compile(r"[0-9a-f]{64}")
CACHE_LOCK = "_cache.lock"  # in locks/ beside the album's <slug>.lock files; "_" is never in a slug
EAGER_VERIFY_BYTES = 4 << 20  # files up to this size are hashed on every hit; larger ones when read
HASH_THREADS = 4  # hashlib lets go of the GIL: files hash side by side


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def hash_inputs(inputs: dict) -> str:
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def hash_folder(folder: Path) -> str:
    """Content hash of every file in an entry (names and bytes), independent of where it is."""
    return scan_folder(folder)[0]


def sha256_file(path: Path) -> str:
    """A file's sha256. hashlib lets go of the GIL while it hashes, so files hash side by side on threads."""
    with open(path, "rb") as handle:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+: no Python loop, ~20% faster
            return hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()


def _entry_files(folder: Path) -> dict[str, Path]:
    """An entry's files by name relative to it (what hash_folder reads), sorted."""
    return {p.relative_to(folder).as_posix(): p
            for p in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ENTRY_FILE)}


def scan_folder(folder: Path) -> tuple[str, dict[str, dict]]:
    """(hash_folder(folder), {name: {"sha256", "bytes"}}): each file hashed once, on threads.

    The content hash is the sha256 of every file's name and sha256, so it names the bytes without
    hashing them a second time."""
    names = _entry_files(folder)
    digests = _hash_files(list(names.values()))
    files = {name: {"sha256": digest, "bytes": size} for name, (digest, size) in zip(names, digests)}
    return _content_hash(files), files


def _content_hash(files: dict[str, dict]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]['sha256']}\n".encode())
    return digest.hexdigest()


def _hash_files(paths: list[Path]) -> list[tuple[str, int]]:
    """(sha256, size) of each file, in order, hashed on a few threads."""
    def one(path: Path) -> tuple[str, int]:
        return sha256_file(path), path.stat().st_size

    if len(paths) <= 1:
        return [one(path) for path in paths]
    with ThreadPoolExecutor(max_workers=min(HASH_THREADS, len(paths)), thread_name_prefix="millamusic-hash") as pool:
        return list(pool.map(one, paths))


def _legacy_content_hash(folder: Path) -> str:
    """The content hash as millamusic wrote it before per-file records: names and bytes in one sha256
    (only to check entries written then)."""
    digest = hashlib.sha256()
    for name, path in _entry_files(folder).items():
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _record_checksum(record: dict) -> str:
    """The checksum entry.json carries of itself (every other field, canonical JSON)."""
    rest = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(canonical_json(rest).encode()).hexdigest()


def entry_problem(folder: Path, record: dict, *, hash_up_to: float = math.inf) -> str | None:
    """What is wrong with the entry at `folder` whose entry.json holds `record`; None if nothing.

    Checks that every recorded file is there with its recorded size and no other file is, and that
    the sha256 of each file of at most `hash_up_to` bytes matches (all of them by default: a single
    flipped byte is found; 0: names and sizes only, a stat per file, cheap, for `status`).
    An entry without per-file records (written by an older millamusic) passes unchecked here:
    read_entry checks it against its content hash."""
    if "files" not in record:
        return None
    files = record["files"]
    if not isinstance(files, dict):
        return f"{ENTRY_FILE}'s file list is damaged"
    present = _entry_files(folder)
    for name, want in files.items():
        path = present.pop(name, None)
        if path is None:
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} is {size} bytes, recorded {want['bytes']}"
    if present:
        return f"{next(iter(present))} is not one of the entry's files"
    names = sorted(name for name, want in files.items() if want["bytes"] <= hash_up_to)
    for name, (digest, _) in zip(names, _hash_files([folder / name for name in names])):
        if digest != files[name]["sha256"]:
            return f"{name} checksum mismatch"
    return None


def read_entry(folder: Path, *, hash_up_to: float = math.inf) -> tuple[dict | None, str | None]:
    """(entry.json's record, None) for a sound entry; (None, what is wrong) for a damaged one;
    (None, None) when there is no entry at `folder`. `hash_up_to`: see entry_problem."""
    if not folder.is_dir():
        return None, None
    try:
        text = (folder / ENTRY_FILE).read_bytes()
    except FileNotFoundError:
        return None, f"{ENTRY_FILE} is missing"
    unreadable = f"{ENTRY_FILE} cannot be read (not the JSON millamusic writes)"
    try:
        record = json.loads(text)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, unreadable
    if not isinstance(record, dict) or not isinstance(record.get("content_hash"), str):
        return None, unreadable
    if "record_sha256" in record and record["record_sha256"] != _record_checksum(record):
        return None, f"{ENTRY_FILE} checksum mismatch"
    if record.get("key") not in (None, folder.name):
        return None, f"{ENTRY_FILE} is another entry's (key {str(record['key'])[:16]}...)"
    if "files" not in record:  # written before per-file records: check the content hash, learn them
        if not hash_up_to:
            return record, None  # (status) a stat-only look cannot check it: the render that uses it will
        if _legacy_content_hash(folder) != record["content_hash"]:
            return None, "files do not match the recorded content hash"
        _, files = scan_folder(folder)
        return {**record, "files": files}, None  # without record_sha256: StageCache.run writes it back
    try:
        problem = entry_problem(folder, record, hash_up_to=hash_up_to)
    except (KeyError, TypeError, AttributeError):  # a record whose fields are not the shapes we write
        return None, unreadable
    return (None, problem) if problem else (record, None)


def owner_tag() -> str:
    """'<pid>@<host>': put into temp names so a later run can tell a dead writer's leftovers
    (a build killed with SIGKILL) from a live writer's work in progress."""
    return f"{os.getpid()}@{_host()}"


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_")


def owner_alive(tag: str) -> bool:
    """Whether the writer named by an owner_tag may still be running. Another host's writers
    always count as alive: we cannot see their processes."""
    pid, _, host = tag.partition("@")
    if host != _host() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(0) also succeeds for a zombie: a killed build's orphaned pool workers stay zombies until
    # init reaps them (forever, in a container whose PID 1 does not), and they write nothing more.
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs (macOS): keep kill(0)'s answer
        return True
    state = stat[stat.rfind(")") + 2:][:1]  # the field after "(command name)"
    return state not in ("Z", "X")


def _is_temp(name: str) -> bool:
    return name.startswith(".") and (".tmp" in name or name.startswith(".old-"))


def _temp_names(folder: Path):
    """Every temp file or folder under `folder`. Never descends into a temp (its writer owns what is
    inside), and a folder that vanishes while it is walked is skipped: other processes publish
    beside us (an album's tracks on Ray swap their folders in while this one sweeps)."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if _is_temp(entry.name):
            yield Path(entry.path)
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if is_dir:
            yield from _temp_names(Path(entry.path))


def sweep_stale_temps(folder: Path) -> int:
    """Remove temp files and folders (names with '.tmp') under `folder` left by dead writers on
    this host; returns how many. Live writers' temps and anything else are left alone."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for path in _temp_names(folder):
        tag = next((part for part in path.name.replace("-", ".").split(".") if "@" in part), None)
        if tag is None or owner_alive(tag):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


class CorruptEntry(Exception):
    """A cache entry's file failed its checksum when it was read (Entry.verified): the render that
    read it moves the entry aside and starts over (pipeline.render), so the stage is recomputed."""

    def __init__(self, entry: "Entry", problem: str):
        super().__init__(f"cache entry {entry.stage}/{entry.key[:16]}: {problem}")
        self.entry, self.problem = entry, problem


@dataclass(frozen=True)
class Entry:
    stage: str
    key: str
    path: Path
    content_hash: str
    hit: bool  # True: found in the cache; False: computed now
    why: str  # why it was computed ("" on a hit)
    files: dict = field(default_factory=dict, compare=False, repr=False)  # name -> {"sha256", "bytes"}
    checked: set = field(default_factory=set, compare=False, repr=False)  # names hashed since it was found

    def verified(self, name: str) -> Path:
        """The path of the entry's file `name`, its bytes checked against entry.json first (once):
        CorruptEntry if they differ. What a stage reads from an earlier stage's entry goes through here."""
        if name not in self.checked and name in self.files:
            path = self.path / name
            if sha256_file(path) != self.files[name]["sha256"]:
                raise CorruptEntry(self, f"{name} checksum mismatch")
            self.checked.add(name)
        return self.path / name

    def copy_verified(self, name: str, destination: Path) -> str:
        """Copy the entry's file `name` to `destination`, checking its bytes against entry.json as
        they stream through (one read for both); returns their sha256. CorruptEntry if they differ."""
        digest = hashlib.sha256()
        with open(self.path / name, "rb") as source, open(destination, "wb") as target:
            while chunk := source.read(1 << 22):
                digest.update(chunk)
                target.write(chunk)
        sha256 = digest.hexdigest()
        if name in self.files and sha256 != self.files[name]["sha256"]:
            raise CorruptEntry(self, f"{name} checksum mismatch")
        self.checked.add(name)
        return sha256


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.retired: dict[str, str] = {}  # key -> what was wrong, for entries `retire` moved aside

    def lookup(self, stage: str, inputs: dict, *, verify: bool = False) -> Entry | None:
        """The published entry for `inputs`, or None; computes and records nothing.

        Always checks that entry.json is sound and every file is there at its recorded size (a
        stat per file); `verify` also hashes every file (see entry_problem). A damaged entry is
        reported as missing here and left in place: `run` moves it aside and recomputes it."""
        key = hash_inputs({"stage": stage, **inputs})
        final = self.root / stage / key
        record, _ = read_entry(final, hash_up_to=math.inf if verify else 0)
        return None if record is None else Entry(stage, key, final, record["content_hash"], True, "",
                                                 record.get("files", {}))

    def run(self, stage: str, inputs: dict, produce: Callable[[Path], None], *, force: bool = False,
            label: str = "", context: dict | None = None,
            explain: Callable[[dict | None], str] | None = None) -> Entry:
        """Return the entry for `inputs`, calling `produce(folder)` only when it is missing (or forced).

        A hit is verified first (sizes, and the bytes of files up to EAGER_VERIFY_BYTES; larger ones
        when read, see Entry.verified); a damaged entry is moved aside and recomputed, and the Entry's
        `why` says so ("cache entry corrupt: mix.npy checksum mismatch; recomputed"). An entry that
        `retire` moved aside in this run is explained the same way. `context` (what the caller wants to
        compare next time, e.g. the song's source files) is remembered with the inputs;
        `explain(previous)` turns the last remembered {"inputs", "context"} (None: never run) into the
        reason it runs now (default: `why`)."""
        key = hash_inputs({"stage": stage, **inputs})
        final = self.root / stage / key
        problem = self.retired.get(key)
        if not force:
            record, found = read_entry(final, hash_up_to=EAGER_VERIFY_BYTES)
            if record is not None:
                self._upgrade(final, record)
                self._remember(stage, label, inputs, context)
                small = {name for name, file in record["files"].items() if file["bytes"] <= EAGER_VERIFY_BYTES}
                return Entry(stage, key, final, record["content_hash"], True, "", record["files"], small)
            if found is not None:
                problem = found
                self._retire(final, key)  # out of the way, atomically: no reader sees it from now on
        if force:
            why = "forced (--force)"
        elif problem is not None:
            why = f"cache entry corrupt: {problem}; recomputed"
        else:
            why = explain(self.previous(stage, label)) if explain else self.why(stage, label, inputs)
        temp = self.root / stage / f".tmp-{key[:16]}-{owner_tag()}-{uuid.uuid4().hex[:8]}"
        temp.mkdir(parents=True)
        try:
            produce(temp)
            content_hash, files = scan_folder(temp)
            record = {"stage": stage, "key": key, "content_hash": content_hash, "files": files, "inputs": inputs}
            record = json.loads(canonical_json(record))  # as it reads back (default=str), so its checksum holds
            record["record_sha256"] = _record_checksum(record)
            (temp / ENTRY_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
            _fsync_tree(temp)
            if force and final.exists():  # a forced re-run replaces the old entry
                self._retire(final, key)
                os.rename(temp, final)
            else:
                try:
                    os.rename(temp, final)
                except OSError:  # another worker published the same key first: theirs stands, ours goes
                    theirs, _ = read_entry(final, hash_up_to=0)
                    if theirs is None:
                        if not final.exists():
                            raise  # not a lost race: the rename itself failed
                        self._retire(final, key)  # a damaged entry appeared in the way: ours replaces it
                        os.rename(temp, final)
                    else:
                        shutil.rmtree(temp, ignore_errors=True)
                        content_hash, files = theirs["content_hash"], theirs.get("files", {})
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._remember(stage, label, inputs, context)
        self.retired.pop(key, None)
        # hashed just now as they were stored: nothing to check again when a later stage reads them
        return Entry(stage, key, final, content_hash, False, why, files, set(files))

    def retire(self, entry: Entry, problem: str) -> None:
        """Move a damaged entry aside (found when a file was read: Entry.verified); the next `run`
        for its inputs recomputes it and says why."""
        self.retired[entry.key] = problem
        self._retire(entry.path, entry.key)

    def _retire(self, final: Path, key: str) -> None:
        """Move an entry aside with one rename (readers see it whole or not at all), then delete it.
        The temp name is swept (see sweep_stale_temps) if we die before the delete."""
        retired = final.with_name(f".old-{key[:16]}-{owner_tag()}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(final, retired)
        except FileNotFoundError:
            return  # another worker moved it first
        shutil.rmtree(retired, ignore_errors=True)

    def _upgrade(self, final: Path, record: dict) -> None:
        """Write back the per-file records that read_entry learnt while it verified an entry written
        before they existed, so a later mismatch names the file. Best effort: a read-only cache
        stays as it is."""
        if "record_sha256" in record:
            return
        try:
            upgraded = {**record, "record_sha256": _record_checksum(record)}
            # beside the entry, not in it: a reader verifying the entry meanwhile must not see an extra file
            temp = final.with_name(f".{final.name[:16]}-{ENTRY_FILE}.tmp-{owner_tag()}-{uuid.uuid4().hex[:8]}")
            try:
                temp.write_text(json.dumps(upgraded, indent=1, sort_keys=True))
                os.replace(temp, final / ENTRY_FILE)
            finally:
                temp.unlink(missing_ok=True)
        except OSError:
            pass

    def sweep(self) -> int:
        """Remove half-built entries left by killed runs on this host (see sweep_stale_temps)."""
        return sweep_stale_temps(self.root)

    # --- who uses the cache: locks, render records, published entries --------------------------
    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Held (shared) by every render and album build for as long as it runs: `cache gc` takes the
        same lock exclusively, so it never deletes an entry a running render is about to read or
        replace, and a render started during a gc waits the few seconds it takes."""
        with _flock(self.root, exclusive=False, wait=True):
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by `cache gc --delete` while it deletes; CacheBusy at once when a render holds in_use."""
        with _flock(self.root, exclusive=True, wait=False):
            yield

    def record_render(self, label: str, keys: list[str], release: str | None) -> Path:
        """Write renders/<label>/<time>-<pid>.json: which entries (by key) a finished render used and the
        release it published. `cache gc --keep-last N` keeps the entries of each song's last N records."""
        folder = self.root / "renders" / label
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time_ns()
        path = folder / f"{now:020d}-{os.getpid()}.json"
        _replace_with(path, canonical_json({"label": label, "time_ns": now, "keys": sorted(set(keys)),
                                            "release": release}))
        return path

    def render_records(self) -> dict[str, list["RenderRecord"]]:
        """label -> its render records, newest first. A record that cannot be read is skipped: it is a
        hint for gc, and gc keeps what current releases and re-run memos name anyway."""
        found: dict[str, list[RenderRecord]] = {}
        for path in sorted((self.root / "renders").glob("*/*.json")):
            try:
                data = json.loads(path.read_text())
                record = RenderRecord(str(data["label"]), int(data["time_ns"]), tuple(data["keys"]),
                                      data.get("release"), path)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.setdefault(record.label, []).append(record)
        return {label: sorted(records, key=lambda r: r.time_ns, reverse=True) for label, records in found.items()}

    def remembered_keys(self) -> dict[str, str]:
        """key -> label of the entry each stage's last run for a label used (the re-run memos in last/)."""
        keys = {}
        for path in sorted((self.root / "last").glob("*/*.json")):
            previous = self.previous(path.stem, path.parent.name)
            if previous is not None and isinstance(previous.get("inputs"), dict):
                keys[hash_inputs({"stage": path.stem, **previous["inputs"]})] = path.parent.name
        return keys

    def published_entries(self) -> Iterator[tuple[str, str, Path]]:
        """(stage, key, folder) of every published entry: temps and the folders in NOT_STAGES left out."""
        try:
            stages = sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in NOT_STAGES
                            and not p.name.startswith("."))
        except FileNotFoundError:
            return
        for stage in stages:
            for folder in sorted(stage.iterdir()):
                if KEY_RE.fullmatch(folder.name) and folder.is_dir():
                    yield stage.name, folder.name, folder

    def discard(self, folder: Path) -> None:
        """Delete a published entry: one rename out of the way (a reader sees it whole or not at all),
        then the delete (its temp name is swept if we die in between)."""
        self._retire(folder, folder.name)

    # --- explaining re-runs -------------------------------------------------------------------
    def _last_path(self, stage: str, label: str) -> Path:
        return self.root / "last" / (label or "_") / f"{stage}.json"

    def _remember(self, stage: str, label: str, inputs: dict, context: dict | None = None) -> None:
        path = self._last_path(stage, label)
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace_with(path, canonical_json({"inputs": inputs, "context": context}))

    def previous(self, stage: str, label: str) -> dict | None:
        """What the last run of this stage for `label` read: {"inputs", "context"}; None if never run."""
        path = self._last_path(stage, label)
        try:
            remembered = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return remembered if "inputs" in remembered else {"inputs": remembered, "context": None}  # older memo

    def why(self, stage: str, label: str, inputs: dict) -> str:
        """Name the inputs that changed since this song's last render of the stage."""
        previous = self.previous(stage, label)
        if previous is None:
            return "not rendered before"
        changed = changed_keys(previous["inputs"], inputs)
        return f"changed: {', '.join(changed)}" if changed else "entry missing from the cache"


def changed_keys(previous: dict, inputs: dict) -> list[str]:
    """The top-level input names whose values differ (as stored: canonical JSON)."""
    current = json.loads(canonical_json(inputs))
    return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _replace_with(path: Path, text: str) -> None:
    """Write `text` to a temp beside `path` (a name sweep_stale_temps knows), then rename it onto `path`:
    readers see the old file or the new one. A failed write (a full disk) leaves no half file behind."""
    temp = path.with_name(f".{path.name}.tmp-{owner_tag()}-{uuid.uuid4().hex[:8]}")
    try:
        temp.write_text(text)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@dataclass(frozen=True)
class RenderRecord:
    """One finished render of a song (StageCache.record_render): the entries it used, by key."""
    label: str  # the song's slug
    time_ns: int
    keys: tuple[str, ...]
    release: str | None  # the release.json it published
    path: Path


class CacheBusy(RenderError):
    """`cache gc --delete` found a render or album build using the cache (StageCache.in_use)."""


@contextmanager
def _flock(root: Path, *, exclusive: bool, wait: bool) -> Iterator[None]:
    """flock on locks/_cache.lock: the album build's mechanism (pipeline.tracks), one lock per cache."""
    try:
        import fcntl  # fcntl: POSIX only
    except ImportError:  # Windows: no flock; gc there is only safe with no render running (docs/cache.md)
        yield
        return
    folder = Path(root) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / CACHE_LOCK, "a+") as handle:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(handle, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusy(f"a render or album build is using the cache {root} now; nothing was deleted. "
                            "Fix: run `millamusic cache gc --delete` again when it has finished") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
