"""The producer's loop, timed: a 3-minute song rendered cold, then again unchanged, with only its
mastering target changed, and with one lyric line changed (docs/performance.md).

    python bench/perf.py [--runs 3] [--spec songs/paper-satellites.yaml] [--vocals singer|kokoro]
                         [--json FILE] [--compare OLD.json]
    PYTHONPATH=../other-checkout/src python bench/perf.py ...   # measure another commit the same way

Each scenario runs the real CLI (`python -m millamusic render --json`) in its own process, as a
user would, so start-up and imports count. Every run works on a copy of the song's files in a
temporary catalogue with its own output folder and cache; the scenarios of one run follow each
other on that copy. Prints per scenario the median wall time, real-time factor (wall / audio
length), peak RSS of the render process, cache hits and the seconds of every stage that ran,
and checks that each edit re-ran exactly the stages that depend on it. Writes every figure of
every run as JSON (default bench/results/perf-<time>.json) for --compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "songs" / "paper-satellites.yaml"

# What each edit must re-run (and nothing else): the cache's promise, checked on every run.
SCENARIOS = {
    "cold": "empty cache and output folder",
    "unchanged": "the same command again",
    "master": "master.profiles: [spotify] -> [apple] in the spec",
    "lyric": "one lyric line changed",
}
MUST_RUN = {
    "cold": None,  # everything
    "unchanged": set(),
    "master": {"master[apple]", "export[apple]"},
    "lyric": {"compose", "vocals", "stems", "mix", "lyrics", "master[apple]", "export[apple]"},
}


def copy_catalogue(spec: Path, into: Path) -> Path:
    """The song's own files (spec, lyrics, artwork, artist profile ...) copied under `into` at the
    same places relative to their catalogue (the spec folder's parent); returns the copied spec."""
    from millamusic.spec.song import load_song
    from millamusic.pipeline.stages import song_sources

    catalogue = spec.resolve().parent.parent
    for _, (path, _) in song_sources(load_song(spec)).items():
        target = into / Path(path).relative_to(catalogue)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return into / spec.resolve().relative_to(catalogue)


def edit_master_target(spec: Path) -> None:
    text = spec.read_text(encoding="utf-8")
    edited = re.sub(r"profiles: \[spotify\]", "profiles: [apple]", text, count=1)
    if edited == text:
        raise SystemExit(f"{spec}: no `profiles: [spotify]` line to change; the master scenario needs one")
    spec.write_text(edited, encoding="utf-8")


def edit_one_lyric_line(spec: Path) -> str:
    """Change the words of the first sung line of the second verse block, keeping its syllable
    count (the melody stays; only the words and what is sung from them change)."""
    from millamusic.spec.song import load_song

    lyrics = Path(load_song(spec).lyrics_file)
    lines = lyrics.read_text(encoding="utf-8").splitlines()
    headers = [i for i, line in enumerate(lines) if line.strip().startswith("[")]  # inline lyrics are indented
    if len(headers) < 2:
        raise SystemExit(f"{lyrics}: the lyric scenario needs at least two blocks")
    index = headers[min(3, len(headers) - 1)] + 1  # the fourth block (a second verse in the reference song)
    old = lines[index]
    indent = old[: len(old) - len(old.lstrip())]
    words = old.split()
    words[-1] = "glow" if words[-1].lower() != "glow" else "light"  # "new" -> "glow": one syllable for one
    lines[index] = indent + " ".join(words)
    lyrics.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"{old!r} -> {lines[index]!r}"


def render_process(spec: Path, out: Path, cache: Path, *args: str) -> tuple[dict, float, os.struct_rusage]:
    """One `millamusic render --json` in its own process: (its JSON result, wall seconds, its rusage
    from wait4: this child's alone, not every child's so far). SystemExit with its stderr if it fails."""
    command = [sys.executable, "-m", "millamusic", "render", str(spec), "--out", str(out), "--cache-dir", str(cache),
               "--json", *args]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if code != 0:
            raise SystemExit(f"{' '.join(command)} failed (exit {code}):\n{stderr.read().decode()}")
        return json.loads(stdout.read()), wall, usage


def median_seconds(runs: int, work) -> tuple[float, object]:
    """(median wall seconds of `runs` calls of work(), what the last call returned)."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run_render(spec: Path, out: Path, cache: Path, vocals: str | None = None) -> dict:
    """One render (render_process): wall time, CPU time, peak RSS and the stages."""
    result, wall, usage = render_process(spec, out, cache, *(["--vocals", vocals] if vocals else []))
    rss_mb = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)  # bytes on macOS, KiB on Linux
    return {"wall_s": round(wall, 3), "render_s": round(result["seconds"], 3), "peak_rss_mb": round(rss_mb, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "stages": {s["name"]: {"cached": s["cached"], "seconds": round(s["seconds"], 3)}
                       for s in result["stages"]}}


def phrases_sung(cache: Path) -> dict | None:
    """How many phrases the newest vocals entry sang and took from the phrase cache (engines
    with a phrase cache: kokoro), or None."""
    records = sorted((cache / "vocals").glob("*/vocals.json"), key=lambda p: p.stat().st_mtime)
    if not records:
        return None
    details = json.loads(records[-1].read_text())["details"]
    if "phrases_from_cache" not in details:
        return None
    total = sum(details["phrases"].values())
    return {"phrases": total, "from_cache": details["phrases_from_cache"], "sung": total - details["phrases_from_cache"]}


def one_run(spec: Path, folder: Path, vocals: str | None = None) -> dict:
    """The four scenarios, in order, on one fresh copy of the song."""
    copied = copy_catalogue(spec, folder / "catalogue")
    out, cache = folder / "out", folder / "cache"
    figures = {}
    for scenario in SCENARIOS:
        if scenario == "master":
            edit_master_target(copied)
        elif scenario == "lyric":
            edit_one_lyric_line(copied)
        figures[scenario] = run_render(copied, out, cache, vocals)
        if "vocals" in figures[scenario]["stages"] and not figures[scenario]["stages"]["vocals"]["cached"]:
            figures[scenario]["phrases"] = phrases_sung(cache)
        ran = {name for name, stage in figures[scenario]["stages"].items() if not stage["cached"]}
        expected = MUST_RUN[scenario]
        figures[scenario]["ran"] = sorted(ran)
        every = set(figures[scenario]["stages"])
        figures[scenario]["as_expected"] = ran == (every if expected is None else expected)
    return figures


def summarise(runs: list[dict], audio_seconds: float) -> dict:
    """Per scenario: medians over the runs (wall, render, CPU, RSS, each stage that ran)."""
    summary = {}
    for scenario in SCENARIOS:
        figures = [run[scenario] for run in runs]
        stages = {}
        for name in figures[0]["stages"]:
            seconds = [f["stages"][name]["seconds"] for f in figures if name in f["stages"]]
            stages[name] = {"seconds": round(statistics.median(seconds), 3),
                            "cached": all(f["stages"].get(name, {}).get("cached", False) for f in figures)}
        wall = statistics.median(f["wall_s"] for f in figures)
        summary[scenario] = {
            "wall_s": round(wall, 3), "render_s": round(statistics.median(f["render_s"] for f in figures), 3),
            "cpu_s": round(statistics.median(f["cpu_s"] for f in figures), 3),
            "rtf": round(wall / audio_seconds, 4),
            "peak_rss_mb": round(statistics.median(f["peak_rss_mb"] for f in figures), 1),
            "cache_hits": sum(stage["cached"] for stage in stages.values()), "stage_count": len(stages),
            "stages": stages, "ran": figures[0]["ran"],
            "as_expected": all(f["as_expected"] for f in figures),
            "wall_s_each": [f["wall_s"] for f in figures],
            "phrases": figures[0].get("phrases"),
        }
    return summary


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    except (ValueError, OSError):
        memory_gib = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_gib": memory_gib and round(memory_gib, 1),
            "platform": platform.platform(), "python": platform.python_version()}


def git_commit() -> str | None:
    """The commit of the millamusic being measured (the one `python -m millamusic` imports: with
    PYTHONPATH=OTHER/src, another checkout's), "+changes" when its tree is edited."""
    import millamusic

    tree = Path(millamusic.__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree,
                               capture_output=True, text=True)
    except OSError:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def print_summary(result: dict, compare: dict | None) -> None:
    summary, before = result["scenarios"], (compare or {}).get("scenarios", {})
    print(f"{result['spec']}: {result['audio_seconds']:.1f} s of audio; {result['machine']['cores']} cores "
          f"({result['machine']['cpu']}); median of {result['runs']} run(s); commit {result['commit']}")
    header = f"{'scenario':<10}{'wall s':>8}{'RTF':>8}{'CPU s':>8}{'RSS MB':>8}{'hits':>7}  re-ran as expected"
    if before:
        header += "   vs " + str(compare.get("commit"))
    print(header)
    for scenario, figures in summary.items():
        line = (f"{scenario:<10}{figures['wall_s']:>8.2f}{figures['rtf']:>8.3f}{figures['cpu_s']:>8.1f}"
                f"{figures['peak_rss_mb']:>8.0f}{figures['cache_hits']:>4}/{figures['stage_count']:<2}  "
                f"{'yes' if figures['as_expected'] else 'NO: ran ' + ', '.join(figures['ran'])}")
        if scenario in before:
            old = before[scenario]
            line += f"   {old['wall_s']:.2f} s -> {figures['wall_s']:.2f} s ({old['wall_s'] / figures['wall_s']:.2f}x)"
        print(line)
    print("\nseconds per stage that ran (median):")
    names = list(dict.fromkeys(name for figures in summary.values() for name in figures["stages"]))
    widths = [max(len(name) + 2, 8) for name in names]
    print(f"{'scenario':<10}" + "".join(f"{name:>{width}}" for name, width in zip(names, widths)))
    for scenario, figures in summary.items():
        cells = []
        for name, width in zip(names, widths):
            stage = figures["stages"].get(name)
            cells.append(f"{'-' if stage is None or stage['cached'] else format(stage['seconds'], '.2f'):>{width}}")
        print(f"{scenario:<10}" + "".join(cells) + "   (-: cached)" * (scenario == "cold"))
    for scenario, figures in summary.items():
        if figures.get("phrases"):
            p = figures["phrases"]
            print(f"{scenario}: vocal phrases sung {p['sung']} of {p['phrases']} ({p['from_cache']} from the phrase cache)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--runs", type=int, default=3, help="runs of the four scenarios; medians are quoted")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write every figure (default bench/results/perf-<time>.json)")
    parser.add_argument("--compare", type=Path, default=None, help="an earlier JSON result: print the ratios")
    parser.add_argument("--vocals", default=None, help="the vocal engine (default: the song's, i.e. its artist's)")
    args = parser.parse_args()

    from millamusic import SAMPLE_RATE
    from millamusic.compose import compose
    from millamusic.spec.song import load_song

    audio_seconds = compose(load_song(args.spec)).total_frames(SAMPLE_RATE) / SAMPLE_RATE
    runs = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="millamusic-perf-") as folder:
            runs.append(one_run(args.spec, Path(folder), args.vocals))
        walls = ", ".join(f"{name} {figures['wall_s']:.2f} s" for name, figures in runs[-1].items())
        print(f"run {number}/{args.runs}: {walls}", file=sys.stderr)
    result = {"spec": str(args.spec), "audio_seconds": round(audio_seconds, 3), "runs": args.runs,
              "vocals": args.vocals or load_song(args.spec).vocal_engine,
              "commit": git_commit(), "machine": machine(),
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "scenarios": summarise(runs, audio_seconds), "each_run": runs}
    target = args.json or ROOT / "bench" / "results" / f"perf-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=1))
    compare = json.loads(args.compare.read_text()) if args.compare else None
    print_summary(result, compare)
    print(f"\nwritten: {target}")
    if not all(figures["as_expected"] for figures in result["scenarios"].values()):
        sys.exit(1)  # a cache that re-runs too much (or too little) is a bug, not a slow run


if __name__ == "__main__":
    main()
