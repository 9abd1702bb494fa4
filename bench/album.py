"""Time an album build (`millamusic album`): cold with --jobs 1 and --jobs 2, then cache-hit rebuilds.

    python bench/album.py [--tracks 6] [--seconds 60] [--repeats 3] [--jobs 1,2] [--json out.json]

Builds, in a temp folder, an album of --tracks songs of about --seconds each, made with the
embedded engines (arranger + singer) from the example songs in songs/: the songs of
songs/northern-signals.yaml in turn, each variant with its own title ("... (Take 2)") and seed.
Each song keeps its tempo, key, chords and lyrics, but its structure is cut to a radio edit of
about --seconds at its tempo: its sections in order while they fit, then its instrumental
outro cut to the bars left (an instrumental section that does not fit is cut to fit; the
lyric sheet keeps only the blocks of the sections kept, so every header still names a
section). The album spec lists the tracks with their own ISRCs (FI-MLA-26-9xxxx, made up for
the bench), album loudness and the spotify profile, like songs/northern-signals.yaml.

Every build runs the CLI in a subprocess (`python -m millamusic album SPEC --out DIR
--cache-dir DIR --jobs N`), so the figures include what a user waits for: start-up, spec
loading, spawning workers, the album master, the record and report. Times are wall seconds
(time.perf_counter) from starting the process to its exit.

  warm-up    a 1-track album of ~30 s (not counted): imports, page cache, font cache.
  cold       for each --jobs value, a build into a fresh out folder with a fresh cache dir
             (every stage computed); median of --cold-repeats runs (default 1).
  cached     the same command again (same cache, same out): every stage a cache hit (checked
             from the progress lines); median of --repeats runs, for each --jobs value.

While a build runs, a sampler thread reads /proc/<pid>/status (VmHWM, VmRSS) and
/proc/<pid>/stat (CPU time) of the CLI process and every descendant every --sample seconds:
the peak RSS of the parent and of each child process (workers, and the multiprocessing
manager and resource tracker, told apart by their size), and the peak of the sum of RSS over
the tree. CPU seconds of the whole tree come from resource.getrusage(RUSAGE_CHILDREN) (exact:
every process is waited for); CPU s / wall s over 1 at --jobs 1 is the pipeline's own threads
(arranger parts, singer takes, MP3 encodes, loudness meters). Each progress line the CLI prints is time-stamped as it arrives,
which splits a build into its phases (start-up to the first finished stage; the tracks up to
their mixes; the album master, in the parent; masters, export and publishing; the album record
and report, until exit). Stage times per track are the gaps between a track's lines. From the
--jobs 1 phases it prints the ceiling Amdahl allows (the parent's phases stay serial).

Other processes on the machine spoil the figures: /proc/stat's busy time minus the build's and
this script's CPU is printed per build as "background ... cores", with a warning over 0.15 and
then an estimate for free cores from per-process CPU time (the parent's plus the busiest worker
of each pool). On a shared machine `nice -n -10 python bench/album.py` (as root) keeps the other
load off the builds.

Then the masters (.wav, .flac, .mp3 under masters/) of the cold builds are compared byte for
byte, the first --jobs value's against each other's. The summary gives the speed-up (cold jobs 1
wall / cold jobs N wall; the project's target is >= 1.8x for --jobs 2 on 2 cores), the wall
time per track, peak memory, and the machine (CPU count and model, memory), Python and
millamusic versions. --keep keeps the temp folder; --json writes every figure. The default run
takes about 4 minutes on 2 cores and about 6.5 GB in the temp folder (two caches, two catalogues).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from ruamel.yaml import YAML

import millamusic
from millamusic.compose import compose
from millamusic.music.lyrics import parse_sheet
from millamusic.release.provenance import unsigned_bytes
from millamusic.spec.album import load_album
from millamusic.spec.song import load_song

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ALBUM = ROOT / "songs" / "northern-signals.yaml"
MASTER_SUFFIXES = (".wav", ".flac", ".mp3")
CLI = [sys.executable, "-m", "millamusic"]


# --------------------------------------------------------------------------- the album


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.width = 4096
    return yaml


def radio_edit(structure: list, sung: set[str], bars: int) -> list[dict]:
    """The song's sections, in order, cut to about `bars` bars (see the module doc)."""
    kept: list[dict] = []
    left = bars
    for section in structure:
        is_sung = section["section"].lower() in sung
        if section["bars"] <= left:
            kept.append(dict(section))
            left -= section["bars"]
            continue
        if is_sung and not any(s["section"].lower() in sung for s in kept):
            kept.append(dict(section))  # a song needs sung lines (export writes timed lyrics): run over
            left = 0
        elif not is_sung and left >= 1:  # instrumental: cut it to fit
            kept.append(_cut(section, left))
            left = 0
        break
    last = structure[-1]
    if left >= 1 and last["section"].lower() not in sung and kept[-1]["section"] != last["section"]:
        kept.append(_cut(last, min(left, last["bars"])))  # the outro, cut to the bars left
    return kept


def _cut(section, bars: int) -> dict:
    cut = dict(section)
    cut["bars"] = bars
    cut["chords"] = list(section["chords"])[:bars]
    return cut


def write_song(source: Path, folder: Path, *, title: str, seed: int, seconds: float) -> Path:
    """A variant of the example song `source` in `folder`: its own title and seed, cut to ~`seconds`."""
    yaml = _yaml()
    spec = yaml.load(source.read_text())
    base = source.resolve().parent
    lyrics_path = (base / spec["lyrics"]).resolve()
    blocks, _ = parse_sheet(lyrics_path.read_text(), file=str(lyrics_path))
    sung = {block.header.lower() for block in blocks if block.lines}
    beats_per_bar = int(str(spec.get("time_signature", "4/4")).split("/")[0])
    target_bars = max(1, round(seconds * float(spec["tempo"]) / 60.0 / beats_per_bar))
    structure = radio_edit(list(spec["structure"]), sung, target_bars)
    names = {section["section"].lower() for section in structure}
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    sheet = [f"# {title}: the blocks of {lyrics_path.name} whose sections this edit keeps", ""]
    for block in blocks:
        if block.header.lower() in names:
            sheet += [f"[{block.header}]", *(line.text for line in block.lines), ""]
    (folder / f"{slug}.txt").write_text("\n".join(sheet), encoding="utf-8")

    spec["title"] = title
    spec["seed"] = seed
    spec["structure"] = structure
    spec["lyrics"] = f"{slug}.txt"
    for name in ("artist_profile", "artwork", "melody", "reference", "soundfont"):
        if spec.get(name):
            spec[name] = copy_input(base / spec[name], folder)
    release = spec.get("release") or {}
    for name in ("isrc", "track", "track_total"):  # the album gives these
        release.pop(name, None)
    path = folder / f"{slug}.yaml"
    with open(path, "w", encoding="utf-8") as handle:
        yaml.dump(spec, handle)
    return path


def copy_input(source: Path, folder: Path) -> str:
    """`source` copied into the bench catalogue (the folder above the spec folder: a spec may not
    reach outside it), as the spec's relative path to it."""
    inputs = folder.parent / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    target = inputs / source.name
    if not target.exists():
        shutil.copy2(source.resolve(), target)
    return f"../inputs/{source.name}"


def write_album(folder: Path, tracks: int, seconds: float, title: str = "Bench Signals") -> Path:
    """An album spec in `folder` of `tracks` variants of the example album's songs, ~`seconds` each."""
    yaml = _yaml()
    example = yaml.load(EXAMPLE_ALBUM.read_text())
    sources = [(EXAMPLE_ALBUM.parent / item["song"]).resolve() for item in example["tracks"]]
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(tracks):
        source = sources[index % len(sources)]
        take = index // len(sources) + 1
        original = yaml.load(source.read_text())
        path = write_song(source, folder, title=f"{original['title']} (Take {take})",
                          seed=int(original.get("seed", 0)) + 1000 * take, seconds=seconds)
        items.append({"song": path.name, "isrc": f"FI-MLA-26-9{index + 1:04d}"})
    album = {
        "title": title, "artist": str(example["artist"]), "year": int(example["year"]),
        "upc": str(example["upc"]), "label": str(example["label"]), "copyright": str(example["copyright"]),
        "artwork": copy_input(EXAMPLE_ALBUM.parent / example["artwork"], folder),
        "master": {"profiles": list(example["master"]["profiles"]), "loudness": str(example["master"]["loudness"])},
        "tracks": items,
    }
    path = folder / "album.yaml"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# Made by bench/album.py from the example songs; see its docstring.\n")
        yaml.dump(album, handle)
    return path


def describe_album(path: Path) -> list[tuple[str, str, float, int, int]]:
    """(title, form, seconds, bars, sung lines) per track, as the composer sees it."""
    album = load_album(path)  # validates every song, its lyrics against its sections, the ISRCs
    rows = []
    for track in album.tracks:
        score = compose(load_song(track.song.path))
        form = " ".join(f"{''.join(w if w.isdigit() else w[0] for w in s.section.split())}:{s.bars}"
                        for s in track.song.spec.structure)
        rows.append((track.song.spec.title, form, score.total_seconds, len(score.bars), len(score.lines)))
    return rows


# --------------------------------------------------------------------------- one build, measured


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        text = _read(f"/proc/{pid}/task/{task}/children")
        if text:
            found += [int(p) for p in text.split()]
    return found


@dataclass
class Proc:
    pid: int
    cmdline: str
    first_seen: float
    hwm_kb: int = 0
    rss_kb: int = 0
    cpu_s: float = 0.0

    @property
    def kind(self) -> str:
        if "resource_tracker" in self.cmdline:
            return "resource tracker"
        if "spawn_main" in self.cmdline or "multiprocessing" in self.cmdline:
            # the multiprocessing manager imports nothing of ours: a small process; workers import numpy & co.
            return "worker" if self.hwm_kb >= 60 * 1024 else "mp helper"
        return "child"


class TreeSampler(threading.Thread):
    """Peak RSS (VmHWM) and CPU time of a process and its descendants, from /proc, until stopped."""

    def __init__(self, pid: int, interval: float, started: float):
        super().__init__(daemon=True)
        self.root, self.interval, self.started = pid, interval, started
        self.procs: dict[int, Proc] = {}
        self.peak_tree_kb = 0
        self.peak_alive = 0
        self._halt = threading.Event()
        self._ticks = os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def sample(self) -> None:
        todo, seen, total = [self.root], set(), 0
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            status = _read(f"/proc/{pid}/status")
            stat = _read(f"/proc/{pid}/stat")
            if status is None or stat is None:
                continue
            proc = self.procs.get(pid)
            if proc is None:
                cmd = (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()
                proc = self.procs[pid] = Proc(pid, cmd, time.perf_counter() - self.started)
            hwm = re.search(r"VmHWM:\s+(\d+)", status)
            rss = re.search(r"VmRSS:\s+(\d+)", status)
            if hwm:
                proc.hwm_kb = max(proc.hwm_kb, int(hwm.group(1)))
            if rss:
                proc.rss_kb = int(rss.group(1))
                total += proc.rss_kb
            fields = stat.rsplit(")", 1)[1].split()
            proc.cpu_s = max(proc.cpu_s, (int(fields[11]) + int(fields[12])) / self._ticks)  # utime + stime
            todo += _children(pid)
        self.peak_tree_kb = max(self.peak_tree_kb, total)
        self.peak_alive = max(self.peak_alive, len(seen))


@dataclass
class Event:
    t: float  # seconds since the process started
    number: int  # track number; 0 for the album
    stage: str
    state: str


@dataclass
class Build:
    jobs: int
    kind: str  # cold | cached
    wall_s: float
    cpu_s: float
    rc: int
    events: list[Event]
    parent: Proc | None
    children: list[Proc]
    peak_tree_kb: int
    other_cpu_s: float = 0.0  # CPU time of processes outside the build (and this script) meanwhile
    steal_s: float = 0.0  # time the hypervisor gave our vCPUs to someone else
    record: dict = field(default_factory=dict)

    @property
    def background_cores(self) -> float:
        return (self.other_cpu_s + self.steal_s) / self.wall_s if self.wall_s else 0.0

    @property
    def all_cached(self) -> bool:
        # publish says "unchanged: masters/<slug>/ already holds this release" when it writes nothing
        return bool(self.events) and all(e.state == "cached" or e.state.startswith(("warning", "unchanged"))
                                         for e in self.events)


def _parse(line: str) -> tuple[int, str, str] | None:
    """A progress line of `millamusic album`: '  NN title(28)  stage(18)  state'."""
    if len(line) < 2 + 28 + 1 or not line.startswith("  "):
        return None
    who, rest = line[2:30], line[31:]
    parts = rest.split(None, 1)
    if len(parts) != 2:
        return None
    stage, state = parts
    who = who.strip()
    if who == "album":
        return 0, stage, state.strip()
    number = who.split(" ", 1)[0]
    return (int(number), stage, state.strip()) if number.isdigit() else None


class BuildFailed(Exception):
    pass


def _cpu_ticks() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in (_read("/proc/stat") or "cpu 0 0 0 0 0 0 0 0").splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields + [0] * (8 - len(fields))
    return user + nice + system + irq + softirq, steal


def run_build(spec: Path, out: Path, cache: Path, jobs: int, kind: str, interval: float, log: Path) -> Build:
    env = dict(os.environ)
    env.pop("MILLAMUSIC_CACHE", None)
    env["COLUMNS"] = "200"  # rich: one progress line per event
    command = CLI + ["album", str(spec), "--out", str(out), "--cache-dir", str(cache), "--jobs", str(jobs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    ticks_before = _cpu_ticks()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = TreeSampler(process.pid, interval, started)
    sampler.start()
    events: list[Event] = []
    stdout_lines: list[str] = []
    reader = threading.Thread(target=lambda: stdout_lines.extend(process.stdout), daemon=True)
    reader.start()
    with open(log, "a") as handle:
        handle.write(f"\n### {' '.join(command)}\n")
        for line in process.stderr:
            now = time.perf_counter() - started
            handle.write(f"{now:8.2f} {line}")
            parsed = _parse(line.rstrip("\n"))
            if parsed:
                events.append(Event(now, *parsed))
        rc = process.wait()
        wall = time.perf_counter() - started
        reader.join()
        handle.write("".join(stdout_lines))
    sampler.stop()
    ticks_after = _cpu_ticks()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    own = (self_after.ru_utime - self_before.ru_utime) + (self_after.ru_stime - self_before.ru_stime)
    tick = os.sysconf("SC_CLK_TCK")
    busy = (ticks_after[0] - ticks_before[0]) / tick
    other = max(0.0, busy - cpu - own)
    steal = (ticks_after[1] - ticks_before[1]) / tick
    if rc != 0:
        raise BuildFailed(f"build failed (exit {rc}): {' '.join(command)}\nits output: {log}")
    record_path = next((out / "album").glob("*/release.json"), None)
    record = json.loads(record_path.read_text()) if record_path else {}
    procs = sorted(sampler.procs.values(), key=lambda p: p.first_seen)
    parent = sampler.procs.get(process.pid)
    children = [p for p in procs if p.pid != process.pid]
    return Build(jobs, kind, wall, cpu, rc, events, parent, children, sampler.peak_tree_kb, other, steal, record)


# --------------------------------------------------------------------------- analysis


def phases(build: Build) -> list[tuple[str, float]]:
    """(phase, wall seconds) from the time-stamped progress lines."""
    events = build.events
    if not events:
        return [("whole build", build.wall_s)]
    album = [e for e in events if e.number == 0]
    first = events[0].t
    rows = [("start-up, spec load, spawn (to 1st stage done)", first)]
    if album:
        master_done = album[-1].t
        before = [e for e in events if e.t < album[0].t and e.number]
        after = [e for e in events if e.t > master_done and e.number]
        mixes_done = before[-1].t if before else first
        rows.append(("tracks to their mixes (rest of)", mixes_done - first))
        rows.append(("album master (parent, serial)", album[0].t - mixes_done))
        if len(album) > 1:
            rows.append(("more album masters", master_done - album[0].t))
        end = after[-1].t if after else master_done
        rows.append(("masters, export, publish", end - master_done))
    else:
        end = events[-1].t
        rows.append(("tracks", end - first))
    rows.append(("album record + report, exit", build.wall_s - end))
    return rows


def stage_seconds(build: Build) -> dict[str, tuple[float, int]]:
    """Per stage: (wall seconds summed over tracks, how many tracks measured), from the gaps between
    progress lines. --jobs 1: the gap since the previous line of the build (stages run back to back;
    the first line, start-up, is left out). --jobs N: the gap since the same track's previous line in
    the same phase; a track's first line in a phase (which includes waiting for a worker and its
    start-up) is left out. After the album master a track's first line (lyrics) also includes
    reloading its cached stages, whose lines are not printed again."""
    totals: dict[str, tuple[float, int]] = {}
    previous: Event | None = None
    last: dict[int, float] = {}
    for event in build.events:
        if event.state.startswith("warning"):
            continue
        if event.number == 0:
            last.clear()  # a new phase
            previous = event
            continue
        if build.jobs == 1:
            since = previous.t if previous is not None else None
        else:
            since = last.get(event.number)
        if since is not None:
            name = re.sub(r"\[.*\]", "", event.stage)
            seconds, count = totals.get(name, (0.0, 0))
            totals[name] = (seconds + event.t - since, count + 1)
        last[event.number] = event.t
        previous = event
    return totals


def cpu_critical_path(build: Build) -> float | None:
    """Wall seconds the build would take if every process had a core of its own: the parent's CPU
    time plus, for each process pool (workers started together), its busiest worker's CPU time.
    Start-up and imports in the workers are in their CPU time; waiting on I/O is not counted."""
    workers = sorted((p for p in build.children if p.kind == "worker"), key=lambda p: p.first_seen)
    if build.parent is None or not workers:
        return None
    pools: list[list[Proc]] = []
    for proc in workers:
        if pools and proc.first_seen - pools[-1][0].first_seen < 1.0:
            pools[-1].append(proc)
        else:
            pools.append([proc])
    return build.parent.cpu_s + sum(max(p.cpu_s for p in pool) for pool in pools)


def master_files(out: Path) -> dict[str, str]:
    root = out / "masters"
    # without the C2PA manifest, which is never the same twice (a fresh salt and nonce per signing)
    return {str(p.relative_to(root)): hashlib.sha256(unsigned_bytes(p)).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in MASTER_SUFFIXES}


def machine() -> dict:
    cpuinfo = _read("/proc/cpuinfo") or ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    mhz = re.search(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = _read("/proc/meminfo") or ""
    total = re.search(r"MemTotal:\s+(\d+)", meminfo)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        version = metadata.version("millamusic")
    except metadata.PackageNotFoundError:
        version = millamusic.__version__
    return {
        "cpu_count": os.cpu_count(), "cpus_usable": usable,
        "cpu_model": model.group(1).strip() if model else platform.processor() or platform.machine(),
        "cpu_mhz": float(mhz.group(1)) if mhz else None,
        "memory_gib": round(int(total.group(1)) / 2**20, 1) if total else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "millamusic": version,
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                     "NUMBA_NUM_THREADS") if k in os.environ},
    }


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0, help="about how long each song is")
    parser.add_argument("--repeats", type=int, default=3, help="cache-hit rebuilds per --jobs value (median)")
    parser.add_argument("--cold-repeats", type=int, default=1, help="cold builds per --jobs value (median)")
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values; the first is the baseline")
    parser.add_argument("--sample", type=float, default=0.2, help="seconds between /proc samples")
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (and say where)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    jobs_list = [int(j) for j in args.jobs.split(",") if j.strip()]
    if not jobs_list or min(jobs_list) < 1:
        parser.error("--jobs: one or more numbers >= 1, e.g. 1,2")

    info = machine()
    print(f"machine: {info['cpu_count']} CPUs ({info['cpus_usable']} usable), {info['cpu_model']}"
          + (f" @ {info['cpu_mhz']:.0f} MHz" if info["cpu_mhz"] else "")
          + (f", {info['memory_gib']} GiB" if info["memory_gib"] else ""))
    print(f"python {info['python']} ({sys.executable}), millamusic {info['millamusic']}, {info['platform']}")
    if info["threads_env"]:
        print(f"thread env: {info['threads_env']}")

    work = Path(tempfile.mkdtemp(prefix="millamusic-bench-album-"))
    log = work / "builds.log"
    try:
        spec = write_album(work / "spec", args.tracks, args.seconds)
        rows = describe_album(spec)
        audio_s = sum(r[2] for r in rows)
        print(f"\nalbum: {len(rows)} tracks, {audio_s:.0f} s of audio (embedded engines: arranger + singer; "
              f"album loudness, spotify)")
        for title, form, seconds, bars, lines in rows:
            print(f"  {title:<32} {seconds:5.1f} s  {bars:3d} bars  {lines:2d} sung lines  {form}")

        if not args.no_warmup:
            warm = write_album(work / "warmup-spec", 1, min(args.seconds, 30.0), title="Bench Warm-up")
            started = time.perf_counter()
            run_build(warm, work / "warmup-out", work / "warmup-cache", 1, "warm-up", args.sample, log)
            print(f"\nwarm-up (1 track, not counted): {time.perf_counter() - started:.1f} s")

        cold: dict[int, list[Build]] = {}
        cached: dict[int, list[Build]] = {}
        outs: dict[int, Path] = {}
        for jobs in jobs_list:
            for repeat in range(args.cold_repeats):
                out, cache = work / f"out-j{jobs}-{repeat}", work / f"cache-j{jobs}-{repeat}"
                build = run_build(spec, out, cache, jobs, "cold", args.sample, log)
                cold.setdefault(jobs, []).append(build)
                outs.setdefault(jobs, out)
                print(f"cold   --jobs {jobs}: {build.wall_s:7.1f} s wall, {build.cpu_s:7.1f} s CPU"
                      f"{_background(build)}")
            out, cache = outs[jobs], work / f"cache-j{jobs}-0"
            for _ in range(args.repeats):
                build = run_build(spec, out, cache, jobs, "cached", args.sample, log)
                cached.setdefault(jobs, []).append(build)
                print(f"cached --jobs {jobs}: {build.wall_s:7.1f} s wall, {build.cpu_s:7.1f} s CPU"
                      f"{_background(build)}" + ("" if build.all_cached else "  (NOT every stage cached!)"))

        report(args, info, rows, audio_s, jobs_list, cold, cached, outs)
        if args.json:
            args.json.write_text(json.dumps({
                "machine": info, "tracks": [dict(zip(("title", "form", "seconds", "bars", "lines"), r)) for r in rows],
                "builds": [_build_dict(b) for builds in (*cold.values(), *cached.values()) for b in builds],
            }, indent=1))
            print(f"figures: {args.json}")
    except BuildFailed as error:
        args.keep = True  # keep the log and the outputs to look at
        print(error, file=sys.stderr)
        raise SystemExit(1)
    finally:
        if args.keep:
            print(f"kept: {work} (progress log: {log})")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _background(build: Build) -> str:
    """Other processes' CPU use (and steal) during the build, in cores; a warning when it is not small."""
    cores = build.background_cores
    text = f", background {cores:.2f} cores"
    return text + ("  <- the machine was busy: figures not clean" if cores > 0.15 else "")


def _build_dict(build: Build) -> dict:
    return {
        "jobs": build.jobs, "kind": build.kind, "wall_s": build.wall_s, "cpu_s": build.cpu_s,
        "all_cached": build.all_cached, "phases": phases(build), "stage_seconds": stage_seconds(build),
        "parent": vars(build.parent) if build.parent else None, "children": [vars(p) for p in build.children],
        "peak_tree_kb": build.peak_tree_kb, "other_cpu_s": build.other_cpu_s, "steal_s": build.steal_s,
        "events": [vars(e) for e in build.events],
    }


def report(args, info, rows, audio_s, jobs_list, cold, cached, outs) -> None:
    median = statistics.median
    base = jobs_list[0]
    base_wall = median(b.wall_s for b in cold[base])
    n = len(rows)
    print(f"\n=== album build: {n} tracks x ~{args.seconds:.0f} s ({audio_s:.0f} s of audio), "
          f"{info['cpu_count']} CPUs ===")
    head = f"{'':<34}" + "".join(f"{f'--jobs {j}':>14}" for j in jobs_list)
    print(head)

    def row(label: str, values) -> None:
        print(f"{label:<34}" + "".join(f"{v:>14}" for v in values))

    cold_wall = {j: median(b.wall_s for b in cold[j]) for j in jobs_list}
    cold_cpu = {j: median(b.cpu_s for b in cold[j]) for j in jobs_list}
    row(f"cold build, wall s (median of {args.cold_repeats})", [f"{cold_wall[j]:.1f}" for j in jobs_list])
    row("  per track, wall s", [f"{cold_wall[j] / n:.1f}" for j in jobs_list])
    row("  x real time (audio s / wall s)", [f"{audio_s / cold_wall[j]:.2f}" for j in jobs_list])
    row("  CPU s (all processes)", [f"{cold_cpu[j]:.1f}" for j in jobs_list])
    row("  CPU s / wall s (cores busy)", [f"{cold_cpu[j] / cold_wall[j]:.2f}" for j in jobs_list])
    row("  background load, cores", [f"{max(b.background_cores for b in cold[j]):.2f}" for j in jobs_list])
    row(f"  speed-up (jobs {base} / jobs N)", [f"{base_wall / cold_wall[j]:.2f}x" for j in jobs_list])
    row("  parent peak RSS", [_mb(cold[j][0].parent.hwm_kb) if cold[j][0].parent else "?" for j in jobs_list])
    worker_peaks = {j: [p.hwm_kb for p in cold[j][0].children if p.kind == "worker"] for j in jobs_list}
    row("  largest worker peak RSS", [_mb(max(worker_peaks[j])) if worker_peaks[j] else "-" for j in jobs_list])
    row("  tree peak RSS (sum, sampled)", [_mb(cold[j][0].peak_tree_kb) for j in jobs_list])
    if args.repeats:
        hit = {j: median(b.wall_s for b in cached[j]) for j in jobs_list}
        row(f"cache-hit rebuild, wall s (med {args.repeats})", [f"{hit[j]:.2f}" for j in jobs_list])
        row("  every stage cached", ["yes" if all(b.all_cached for b in cached[j]) else "NO" for j in jobs_list])
        row("  tree peak RSS (sum, sampled)", [_mb(max(b.peak_tree_kb for b in cached[j])) for j in jobs_list])

    for j in jobs_list:
        if j == base:
            continue
        ratio = base_wall / cold_wall[j]
        target = (" (target >= 1.8x on 2 cores: " + ("met)" if ratio >= 1.8 else "NOT met)")
                  if (base, j) == (1, 2) else "")
        print(f"speed-up, cold, jobs {base} / jobs {j}: {ratio:.2f}x{target}")
    busy = [j for j in jobs_list if max(b.background_cores for b in cold[j]) > 0.15]
    if busy:
        print(f"  other processes were using CPU during the cold builds (--jobs {', '.join(map(str, busy))}): "
              "these wall times and ratios are not clean; run again on an idle machine.")
        for j in jobs_list:
            estimate = cpu_critical_path(cold[j][0])
            if j > 1 and estimate and base == 1:
                print(f"  estimate for --jobs {j} on free cores from per-process CPU time (parent + the busiest "
                      f"worker of each pool): {estimate:.1f} s, i.e. {cold_cpu[1] / estimate:.2f}x against the "
                      f"--jobs 1 build's {cold_cpu[1]:.1f} CPU s")

    print("\nprocesses of the cold builds (peak RSS from /proc VmHWM, CPU s from /proc stat, last sample):")
    for j in jobs_list:
        build = cold[j][0]
        parts = [f"parent {_mb(build.parent.hwm_kb)} / {build.parent.cpu_s:.1f} s CPU" if build.parent else "parent ?"]
        for proc in build.children:
            parts.append(f"{proc.kind} {_mb(proc.hwm_kb)} / {proc.cpu_s:.1f} s (from {proc.first_seen:.1f} s)")
        print(f"  --jobs {j}: " + "; ".join(parts))

    print("\nphases of the cold builds (wall s, from the time-stamped progress lines):")
    names = []
    table = {}
    for j in jobs_list:
        for name, seconds in phases(cold[j][0]):
            if name not in names:
                names.append(name)
            table[(j, name)] = seconds
    print(f"{'':<48}" + "".join(f"{f'--jobs {j}':>12}" for j in jobs_list))
    for name in names:
        print(f"  {name:<46}" + "".join(f"{table.get((j, name), float('nan')):>12.1f}" for j in jobs_list))
    if base == 1:  # Amdahl: the phases that run in the parent whatever --jobs says, against the tracks' work
        split = dict(phases(cold[1][0]))
        parallel = sum(v for k, v in split.items() if k.startswith(("tracks", "masters, export")))
        serial = sum(split.values()) - parallel
        ceilings = ", ".join(f"jobs {j}: {(serial + parallel) / (serial + parallel / min(j, n)):.2f}x"
                             for j in jobs_list if j > 1)
        print(f"  serial in the parent (start-up, album master, record + report): {serial:.1f} s of "
              f"{serial + parallel:.1f} s at --jobs 1; ceiling with free cores, no spawn cost: {ceilings}")
    stage_totals = {j: stage_seconds(cold[j][0]) for j in jobs_list}
    stage_names = list(dict.fromkeys(name for j in jobs_list for name in stage_totals[j]))
    print("stage wall s summed over the tracks measured (n) (see stage_seconds: gaps between lines):")
    for name in stage_names:
        cells = []
        for j in jobs_list:
            seconds, count = stage_totals[j].get(name, (float("nan"), 0))
            cells.append(f"{seconds:.1f} ({count})")
        print(f"  {name:<46}" + "".join(f"{c:>12}" for c in cells))
    for j in jobs_list:
        if not args.repeats:
            break
        print(f"phases of a cache-hit rebuild, --jobs {j}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in phases(cached[j][-1])) + " s")

    print("\nmasters, cold builds compared byte for byte (without their C2PA manifests):")
    files = {j: master_files(outs[j]) for j in jobs_list}
    for j in jobs_list:
        if j == base:
            continue
        a, b = files[base], files[j]
        same = [k for k in a if b.get(k) == a[k]]
        differ = sorted(k for k in a if k in b and b[k] != a[k])
        only = sorted(set(a) ^ set(b))
        kinds = sorted({Path(k).suffix for k in a})
        verdict = "IDENTICAL" if not differ and not only and a else "DIFFERENT"
        print(f"  jobs {base} vs jobs {j}: {verdict}: {len(same)}/{len(a)} files the same ({', '.join(kinds)})"
              + (f"; differ: {', '.join(differ[:6])}" if differ else "") + (f"; only in one: {only[:6]}" if only else ""))


if __name__ == "__main__":
    main()
