"""Time the embedded arranger: the backing of a 3-minute song, per preset (median of N runs).

    python bench/backing.py [--runs 5] [--minutes 3] [--threads N]

Builds a 3-minute score (intro, verses, pre-choruses, choruses, bridge, outro) at each preset's
typical tempo, renders it with every preset, and prints wall seconds (median, min, max), the
real-time factor and the peak of the stems' sum. Arrangement (note events) and MIDI are included;
the first run of a process is a warm-up (imports, pedalboard, scipy) and is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from millamusic.engines.arranger import Arranger
from millamusic.instruments.rendering import sum_stems
from millamusic.instruments.presets import PRESETS
from millamusic.engines.base import BackingRequest
from millamusic.music.score import Bar, Score, Section

TEMPO = {"synth-pop": 118.0, "piano-ballad": 72.0, "driving-rock": 150.0, "power-ballad": 72.0}
FORM = ("intro", "verse", "prechorus", "chorus", "verse", "prechorus", "chorus", "bridge", "chorus", "outro")
PROGRESSION = ("Am", "F", "C", "G")


def three_minute_score(tempo: float, minutes: float) -> Score:
    bars_total = int(round(minutes * 60 / (4 * 60 / tempo)))
    per_section = max(1, bars_total // len(FORM))
    sections, bars = [], []
    for s, kind in enumerate(FORM):
        count = per_section if s < len(FORM) - 1 else bars_total - per_section * (len(FORM) - 1)
        start = len(bars)
        sections.append(Section(name=kind.title(), kind=kind, start_bar=start, bars=count))
        for b in range(start, start + count):
            bars.append(Bar(index=b, section_index=s, start_beat=4.0 * b, beats=4, chords=(PROGRESSION[b % 4],)))
    return Score(title="Bench", tempo_bpm=tempo, beats_per_bar=4, beat_unit=4, key="A minor", tonic_pc=9,
                 mode="minor", language="en-us", seed=1, sections=tuple(sections), bars=tuple(bars), lines=(),
                 words=(), notes=(), melody_source="composed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, runs: {args.runs} (+1 warm-up), song length: {args.minutes:g} min")
    print(f"{'preset':<14}{'tempo':>6}{'audio s':>9}{'median s':>10}{'min':>7}{'max':>7}{'x RT':>7}  sum peak")
    engine = Arranger()
    for preset, tempo in TEMPO.items():
        score = three_minute_score(tempo, args.minutes)
        request = BackingRequest(seed=1, genre=PRESETS[preset]["genre"], style=(), sample_rate=44100,
                                 options={"preset": preset})
        times = []
        for run in range(args.runs + 1):
            start = time.perf_counter()
            result = engine.render(score, request)
            if run:
                times.append(time.perf_counter() - start)
        peak = float(np.max(np.abs(sum_stems({k: a.samples for k, a in result.stems.items()}))))
        median = statistics.median(times)
        print(f"{preset:<14}{tempo:>6g}{score.total_seconds:>9.1f}{median:>10.2f}{min(times):>7.2f}"
              f"{max(times):>7.2f}{score.total_seconds / median:>7.0f}  {20 * np.log10(peak):.2f} dBFS")


if __name__ == "__main__":
    main()
