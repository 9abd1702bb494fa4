"""Time the embedded singer on the vocals of the example songs (median of N runs).

    python bench/singer.py [--runs 3] [--lead-only] [songs/a.yaml ...]

Each song spec is composed into its Score and its whole vocal is sung the way a render
sings it: the song's language, voice and options (its artist profile: formants, breath,
and the chorus double and harmony stems). `--lead-only` leaves the extra stems out.
"Sung audio" is the lead's: the extra stems are cost, not more seconds. Printed per song,
medians over the runs: wall seconds, CPU seconds (process time: all threads), seconds of
sung audio (sum of the note lengths, and the engine's sung span: union of its syllables'
start..end), the CPU cost per second of sung audio (target <= 0.1 on 2 cores) and the
real-time factor of the whole song. A breakdown follows: CPU seconds inside espeak-ng,
WORLD analysis (dio/harvest, stonemask, cheaptrick, d4c), WORLD synthesis, soxr
resampling, and the rest (the singer's own numpy/Python). It is measured by wrapping those
library functions for the timed runs (`espeak.speak`, `pyworld.*`, `soxr.resample`), so
it stays right when the engine's internals move; calls made through other names land
in "rest". The first run of a process is a warm-up (imports, espeak start) and is not counted.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path

from millamusic.compose import compose
from millamusic.engines.base import VocalRequest, VocalResult
from millamusic.engines.singer import Singer
from millamusic.music.score import Score
from millamusic.spec.song import Song, load_song

ROOT = Path(__file__).resolve().parents[1]
SONGS = [ROOT / "songs/set-me-spinning.yaml", ROOT / "songs/northern-static.yaml"]
PARTS = ("espeak", "WORLD analysis", "WORLD synthesis", "resample")
_SPENT: dict[str, float] = defaultdict(float)  # CPU seconds per part, reset before each run
_SPENT_LOCK = threading.Lock()  # the singer calls the timed functions from several threads


def sing(score: Score, song: Song, lead_only: bool) -> VocalResult:
    """The one call into the engine."""
    options = dict(song.vocal_options)
    if lead_only:
        options.update(double_track=False, harmony=False)
    request = VocalRequest(seed=song.spec.seed, language=song.language, voice=song.voice, sample_rate=44100,
                           options=options)
    return Singer().render(score, request)


def _timed(part: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        # the calling thread's CPU time: the singer sings its phrases on several threads, and
        # process time would count the other threads' work inside this call too
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent = time.thread_time() - start
            with _SPENT_LOCK:
                _SPENT[part] += spent

    return wrapper


def instrument() -> None:
    """Wrap the library calls the singer spends its time in (module attributes, once)."""
    import pyworld
    import soxr

    from millamusic.music import espeak

    espeak.speak = _timed("espeak", espeak.speak)
    for name in ("dio", "harvest", "stonemask", "cheaptrick", "d4c"):
        if hasattr(pyworld, name):
            setattr(pyworld, name, _timed("WORLD analysis", getattr(pyworld, name)))
    pyworld.synthesize = _timed("WORLD synthesis", pyworld.synthesize)
    soxr.resample = _timed("resample", soxr.resample)


def sung_seconds(score: Score, result: VocalResult) -> tuple[float, float]:
    """(sum of note lengths, union of the engine's syllable spans), seconds."""
    notes = sum(score.beat_to_seconds(n.length_beats) for n in score.notes if n.length_beats > 0)
    span, reach = 0.0, float("-inf")
    for s in sorted(result.syllables, key=lambda s: s.start_seconds):
        start = max(s.start_seconds, reach)
        if s.end_seconds > start:
            span += s.end_seconds - start
        reach = max(reach, s.end_seconds)
    return notes, span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", type=Path, default=SONGS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lead-only", action="store_true", help="sing the lead stem only (no double, no harmony)")
    args = parser.parse_args()
    instrument()
    print(f"cores: {os.cpu_count()}, runs per song: {args.runs} (+1 warm-up), "
          f"{'lead only' if args.lead_only else 'all vocal stems of the artist profile'}")
    rows, splits = [], []
    for spec in args.specs:
        song = load_song(spec)
        score = compose(song)
        walls, cpus, parts = [], [], defaultdict(list)
        result = None
        for run in range(args.runs + 1):
            _SPENT.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            result = sing(score, song, args.lead_only)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if run:
                walls.append(wall)
                cpus.append(cpu)
                for p in PARTS:
                    parts[p].append(_SPENT[p])
                parts["rest"].append(cpu - sum(_SPENT[p] for p in PARTS))
        notes_s, span_s = sung_seconds(score, result)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        rows.append(f"{song.slug:<18}{score.total_seconds:>8.1f}{notes_s:>9.1f}{span_s:>8.1f}{wall:>8.2f}{cpu:>7.2f}"
                    f"{cpu / notes_s:>12.3f}{score.total_seconds / wall:>6.0f}")
        medians = {p: statistics.median(v) for p, v in parts.items()}
        splits.append(f"{song.slug:<18}" + "".join(f"{medians[p]:>10.2f} ({100 * medians[p] / cpu:>3.0f}%)"
                                                   for p in (*PARTS, "rest")))
    print(f"{'song':<18}{'song s':>8}{'notes s':>9}{'sung s':>8}{'wall s':>8}{'CPU s':>7}{'CPU/sung s':>12}{'x RT':>6}")
    print("\n".join(rows))
    print("\nCPU seconds by part (median), share of the CPU seconds:")
    print(f"{'song':<18}" + "".join(f"{p:>17}" for p in (*PARTS, "rest")))
    print("\n".join(splits))


if __name__ == "__main__":
    main()
