"""Album builds killed with SIGKILL and resumed, and two builds of one album at once (album_build.py).

Each build is a real `millamusic album` process. The kill test reads the build's progress and
kills its whole process group (worker processes too) after a randomly chosen stage line; the
seed is in every failure message, and MILLAMUSIC_KILL_SEED=<seed> replays the same kills.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from millamusic.core.cache import ENTRY_FILE, hash_folder
from millamusic.release.provenance import unsigned_bytes
from tests.test_album_build import make_album

pytestmark = [pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups"),
              pytest.mark.slow]  # album builds killed and resumed: 25-30 s each

PUBLISHED = ("masters", "stems", "lyrics")  # what publish() copies out of the cache, file by file
AUDIO = (".wav", ".flac", ".mp3")
# Deterministic for the same inputs (release.json holds a timestamp and timings, report.html cache hits).
SAME_BYTES = (*AUDIO, ".lrc", ".ttml", ".txt", ".mid")


def _comparable(path: Path) -> bytes:
    """A published file's bytes; a master's without its C2PA manifest, which is salted and signed
    afresh by every build that exports it (release.provenance.unsigned_bytes)."""
    return unsigned_bytes(path) if path.suffix in AUDIO else path.read_bytes()
# "  {who:<28.28} {stage:<18} {state}" from cli.album: one line per finished stage
STAGE_LINE = re.compile(r"^  (?P<who>.{28}) (?P<stage>\S+) +(?P<state>cached|done \(.*\))\s*$")
TIMEOUT = 300  # seconds for one build; a build of this album takes a few seconds


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("millamusic")  # the console script (no `python -m millamusic`)
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from millamusic.cli import main; sys.exit(main())"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MILLAMUSIC_CACHE"}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="200", NO_COLOR="1")  # one unwrapped line per stage
    return env


def _command(album: Path, out: Path, cache: Path, jobs: int) -> list[str]:
    return [*_cli(), "album", str(album), "--out", str(out), "--cache-dir", str(cache), "--jobs", str(jobs)]


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            cwd=cwd, start_new_session=True)


def _stages(output: str) -> list[tuple[str, str, str]]:
    """(who, stage, state) of every stage line in a build's output."""
    return [(m["who"].strip(), m["stage"], m["state"]) for m in map(STAGE_LINE.match, output.splitlines()) if m]


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"build did not finish in {TIMEOUT} s:\n{output}")
    _wait_group_gone(process.pid)
    return process.returncode, output


def _build(album: Path, out: Path, cache: Path, jobs: int = 1) -> str:
    code, output = _finish(_start(_command(album, out, cache, jobs), album.parent))
    assert code == 0, output
    return output


def _group_members(pgid: int) -> list[str]:
    """Processes of group `pgid` that still run (zombies excluded: they write nothing)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():  # no procfs: ask the kernel about the whole group
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [f"group {pgid}"]
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(f"{stat.parent.name} ({fields[0]})")
    return members


def _wait_group_gone(pgid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (members := _group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not members, f"processes of the build's group {pgid} still running: {members}"


def _run_and_kill(command: list[str], cwd: Path, after_stages: int, delay: float) -> tuple[bool, str]:
    """Start a build; after its `after_stages`-th stage line (0: its first line) and `delay`
    seconds, SIGKILL its process group. Returns (killed, everything it printed)."""
    process = _start(command, cwd)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    stages, sent = 0, False
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"build printed nothing new for {TIMEOUT} s:\n{''.join(seen)}")
        if line is None:
            break
        seen.append(line)
        stages += bool(STAGE_LINE.match(line))
        if not sent and stages >= after_stages:
            time.sleep(delay)  # the reader keeps draining the pipe meanwhile
            if process.poll() is None:  # not reaped yet: the group id is still ours to signal
                os.killpg(process.pid, signal.SIGKILL)  # the CLI, its pool's workers and its manager
            sent = True
    process.wait(timeout=TIMEOUT)
    reader.join(timeout=TIMEOUT)
    _wait_group_gone(process.pid)
    return process.returncode == -signal.SIGKILL, "".join(seen)


def _files(out: Path, folders=(*PUBLISHED, "album")) -> dict[str, Path]:
    """Relative path -> path of every file under out/<folder> for `folders`."""
    return {p.relative_to(out).as_posix(): p for folder in folders if (out / folder).is_dir()
            for p in sorted((out / folder).rglob("*")) if p.is_file()}


def _hidden(*roots: Path) -> list[str]:
    """Every file or folder whose name starts with '.' (temp files, half-built cache entries)."""
    return sorted(str(p) for root in roots if root.is_dir() for p in root.rglob(".*"))


def _is_temp(path: Path) -> bool:
    return ".tmp" in path.name or path.name.startswith(".old-")


def _assert_sound_after_kill(out: Path, cache: Path, reference: dict[str, bytes], context: str) -> None:
    """What a killed build leaves: only finished files under their final names (each the same
    bytes a full build writes), temp names starting with '.', and only complete cache entries."""
    from millamusic.pipeline.stages import STAGES
    from millamusic.release.pcm import decode

    for hidden in map(Path, _hidden(out, cache)):
        assert _is_temp(hidden) or any(_is_temp(parent) for parent in hidden.parents), \
            f"{context}: {hidden} is hidden but not a temp name the next build sweeps"
    for relative, path in _files(out).items():
        if any(part.startswith(".") for part in Path(relative).parts):
            continue  # a temp file (checked above)
        assert relative in reference, f"{context}: {relative} is not a file a finished build publishes"
        if path.name == "release.json":
            json.loads(path.read_text())  # written whole or not at all
        if path.suffix in AUDIO:
            audio = decode(path)  # the whole file decodes
            assert audio.samples.size > 0, f"{context}: {relative} has no audio"
        if path.suffix in SAME_BYTES:
            assert _comparable(path) == reference[relative], f"{context}: {relative} differs from a full build's"
    for stage in (*STAGES, "album_master"):
        for entry in sorted((cache / stage).iterdir()) if (cache / stage).is_dir() else []:
            if entry.name.startswith("."):
                continue  # a half-built entry under a temp name (checked above)
            record = entry / ENTRY_FILE
            assert record.is_file(), f"{context}: cache entry {entry} has no {ENTRY_FILE}: a half entry is visible"
            assert json.loads(record.read_text())["content_hash"] == hash_folder(entry), \
                f"{context}: cache entry {entry} does not hold the files it was published with"


def _assert_same_as_reference(out: Path, cache: Path, reference: dict[str, bytes], context: str) -> None:
    files = _files(out)
    assert sorted(files) == sorted(reference), f"{context}: published files differ from a full build's"
    different = [relative for relative, path in files.items()
                 if path.suffix in SAME_BYTES and _comparable(path) != reference[relative]]
    assert not different, f"{context}: not byte-identical to an uninterrupted build: {different}"
    masters = [relative for relative in files if relative.startswith("masters/") and relative.endswith(AUDIO)]
    assert len(masters) == 3 * 4, f"{context}: expected 4 audio masters per track, got {masters}"
    leftovers = _hidden(out, cache)
    assert not leftovers, f"{context}: temp files left behind: {leftovers}"


def _writers(paths: list[str]) -> dict[str, str]:
    """The state of each temp name's writer (its owner tag's pid), to tell why it was not swept."""
    states = {}
    for path in paths:
        tag = next((part for part in Path(path).name.replace("-", ".").split(".") if "@" in part), None)
        pid = tag.partition("@")[0] if tag else ""
        if pid.isdigit():
            stat = Path(f"/proc/{pid}/stat")
            try:
                text = stat.read_text()
                states[pid] = {"Z": "zombie (dead, not reaped yet)"}.get(text[text.rfind(")") + 2], "running")
            except OSError:
                states[pid] = "gone"
    return states


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted build: (album spec, published file bytes, its stage lines)."""
    base = tmp_path_factory.mktemp("album-resume")
    album = make_album(base / "songs")
    out = base / "reference"
    output = _build(album, out, base / "reference-cache")
    lines = _stages(output)
    assert lines and all(state.startswith("done") for *_, state in lines), output
    published = {relative: _comparable(path) for relative, path in _files(out).items()}
    assert not _hidden(out, base / "reference-cache"), _hidden(out, base / "reference-cache")
    return album, published, lines


def _seed() -> str:
    return os.environ.get("MILLAMUSIC_KILL_SEED") or str(random.SystemRandom().randrange(1_000_000))


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_build_resumes_to_identical_masters(reference, tmp_path, jobs):
    album, published, stage_lines = reference
    seed = _seed()
    rng = random.Random(f"{seed}:{jobs}")
    out, cache = tmp_path / "out", tmp_path / "cache"
    command = _command(album, out, cache, jobs)
    finished: set[tuple[str, str]] = set()  # (track, stage) lines printed: entries in the cache by then
    kills = []
    for _ in range(2):  # killed, resumed and killed again, then resumed to the end
        after, delay = rng.randrange(len(stage_lines)), round(rng.uniform(0.0, 0.4), 3)
        killed, output = _run_and_kill(command, album.parent, after, delay)
        kills.append(f"after stage line {after} + {delay} s: {'killed' if killed else 'had already finished'}")
        context = f"--jobs {jobs}, MILLAMUSIC_KILL_SEED={seed}, {'; then '.join(kills)}"
        if not killed:
            assert "record " in output, f"{context}: the build neither finished nor was killed:\n{output}"
        finished |= {(who, stage) for who, stage, _ in _stages(output)}
        _assert_sound_after_kill(out, cache, published, context)
    context = (f"--jobs {jobs}, MILLAMUSIC_KILL_SEED={seed}, {'; then '.join(kills)}; "
               f"writers of the temp files when the last build started: {_writers(_hidden(out, cache))}")
    code, output = _finish(_start(command, album.parent))
    assert code == 0, f"{context}: the resumed build failed:\n{output}"
    _assert_same_as_reference(out, cache, published, context)
    states = {(who, stage): state for who, stage, state in _stages(output)}
    assert set(states) == {(who, stage) for who, stage, _ in stage_lines}, f"{context}:\n{output}"
    redone = sorted(f"{who} {stage}" for who, stage in finished if states[who, stage] != "cached")
    assert not redone, f"{context}: stages finished before the kill ran again: {redone}\n{output}"
    record = json.loads((out / "album" / "short-album" / "release.json").read_text())
    if any(who != "album" for who, _ in finished):
        assert sum(track["cache_hits"] for track in record["tracks"]) >= 1, f"{context}: no cache hits\n{output}"


def test_two_builds_at_once_share_the_catalogue_and_cache(reference, tmp_path):
    album, published, _ = reference
    out, cache = tmp_path / "out", tmp_path / "cache"
    builds = [_start(_command(album, out, cache, jobs), album.parent) for jobs in (1, 2)]
    results = [_finish(build) for build in builds]
    for jobs, (code, output) in zip((1, 2), results):
        assert code == 0, f"the --jobs {jobs} build of two at once failed:\n{output}"
    _assert_same_as_reference(out, cache, published, "two builds at once")
