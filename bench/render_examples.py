"""Render the example songs from a cold cache and print per-stage times (median of N runs).

    python bench/render_examples.py [--runs 3] [songs/a.yaml ...]

Prints wall seconds per stage, total, audio length, the real-time factor and the master's
loudness, so figures in notes and issues come from one command anyone can re-run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from millamusic.pipeline.stages import STAGES
from millamusic.pipeline.render import render
from millamusic.pipeline.stages import RenderOptions
from millamusic.spec.song import is_album_spec, load_song

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", type=Path,
                        default=[p for p in sorted((ROOT / "songs").glob("*.yaml")) if not is_album_spec(p)])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, runs per song: {args.runs} (cold cache each run)")
    print(f"{'song':<20}" + "".join(f"{s:>9}" for s in STAGES) + f"{'total':>9}{'audio':>8}{'x RT':>7}  loudness")
    for spec in args.specs:
        song = load_song(spec)
        times: dict[str, list[float]] = {s: [] for s in STAGES}
        totals, result = [], None
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as folder:
                options = RenderOptions(out_root=Path(folder), cache_dir=Path(folder) / "cache")
                result = render(song, options)
            per_stage = {s: 0.0 for s in STAGES}
            for report in result.stages:  # "master[spotify]" counts as master: one column per stage
                per_stage[report.name.split("[")[0]] += report.seconds
            for stage, seconds in per_stage.items():
                times[stage].append(seconds)
            totals.append(result.seconds)
        from millamusic.compose import compose

        seconds = compose(song).total_seconds
        total = statistics.median(totals)
        loud = next(iter(result.loudness.values()))  # the first delivery profile's master
        print(f"{song.slug:<20}" + "".join(f"{statistics.median(times[s]):>9.2f}" for s in STAGES)
              + f"{total:>9.2f}{seconds:>8.1f}{seconds / total:>7.1f}  "
              f"{loud['integrated_lufs']:.2f} LUFS, {loud['true_peak_dbtp']:.2f} dBTP, LRA {loud['lra_lu']:.1f}")


if __name__ == "__main__":
    main()
