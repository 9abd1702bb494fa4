"""Stage cache: entries keyed by a hash of what a stage reads, published atomically.

An entry is a folder `<root>/<stage>/<key>/` holding the stage's files and `entry.json`
(the key's inputs and a content hash of the files). It is built in a temp folder beside
it and renamed into place, so a crash never leaves a half entry and parallel workers can
share one cache (the first rename wins; the loser's identical entry is discarded).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ENTRY_FILE = "entry.json"


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def hash_inputs(inputs: dict) -> str:
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def hash_folder(folder: Path) -> str:
    """Content hash of every file in an entry (names and bytes), independent of where it is."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ENTRY_FILE):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


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


def sweep_stale_temps(folder: Path) -> int:
    """Remove temp files and folders (names with '.tmp') under `folder` left by dead writers on
    this host; returns how many. Live writers' temps and anything else are left alone."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for path in folder.rglob(".*"):
        if ".tmp" not in path.name and not path.name.startswith(".old-"):
            continue
        tag = next((part for part in path.name.replace("-", ".").split(".") if "@" in part), None)
        if tag is None or owner_alive(tag):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass(frozen=True)
class Entry:
    stage: str
    key: str
    path: Path
    content_hash: str
    hit: bool  # True: found in the cache; False: computed now
    why: str  # why it was computed ("" on a hit)


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def lookup(self, stage: str, inputs: dict) -> Entry | None:
        """The published entry for `inputs`, or None; computes and records nothing."""
        key = hash_inputs({"stage": stage, **inputs})
        final = self.root / stage / key
        if not (final / ENTRY_FILE).is_file():
            return None
        return Entry(stage, key, final, json.loads((final / ENTRY_FILE).read_text())["content_hash"], True, "")

    def run(self, stage: str, inputs: dict, produce: Callable[[Path], None], *, force: bool = False,
            label: str = "", context: dict | None = None,
            explain: Callable[[dict | None], str] | None = None) -> Entry:
        """Return the entry for `inputs`, calling `produce(folder)` only when it is missing (or forced).

        `context` (what the caller wants to compare next time, e.g. the song's source files) is
        remembered with the inputs; `explain(previous)` turns the last remembered {"inputs",
        "context"} (None: never run) into the reason it runs now (default: `why`)."""
        found = None if force else self.lookup(stage, inputs)
        if found is not None:
            self._remember(stage, label, inputs, context)
            return found
        key = hash_inputs({"stage": stage, **inputs})
        final = self.root / stage / key
        if force:
            why = "forced (--force)"
        else:
            why = explain(self.previous(stage, label)) if explain else self.why(stage, label, inputs)
        temp = self.root / stage / f".tmp-{key[:16]}-{owner_tag()}-{uuid.uuid4().hex[:8]}"
        temp.mkdir(parents=True)
        try:
            produce(temp)
            content_hash = hash_folder(temp)
            (temp / ENTRY_FILE).write_text(json.dumps({"stage": stage, "key": key, "content_hash": content_hash,
                                                       "inputs": inputs}, indent=1, sort_keys=True, default=str))
            _fsync_tree(temp)
            if force and final.exists():  # a forced re-run replaces the old entry
                retired = final.with_name(f".old-{key[:16]}-{owner_tag()}-{uuid.uuid4().hex[:8]}")
                os.rename(final, retired)
                os.rename(temp, final)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                try:
                    os.rename(temp, final)
                except OSError:  # another worker published the same key first: theirs stands, ours goes
                    shutil.rmtree(temp, ignore_errors=True)
                    content_hash = json.loads((final / ENTRY_FILE).read_text())["content_hash"]
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._remember(stage, label, inputs, context)
        return Entry(stage, key, final, content_hash, False, why)

    def sweep(self) -> int:
        """Remove half-built entries left by killed runs on this host (see sweep_stale_temps)."""
        return sweep_stale_temps(self.root)

    # --- explaining re-runs -------------------------------------------------------------------
    def _last_path(self, stage: str, label: str) -> Path:
        return self.root / "last" / (label or "_") / f"{stage}.json"

    def _remember(self, stage: str, label: str, inputs: dict, context: dict | None = None) -> None:
        path = self._last_path(stage, label)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp-{owner_tag()}-{uuid.uuid4().hex[:8]}")
        temp.write_text(canonical_json({"inputs": inputs, "context": context}))
        os.replace(temp, path)

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
