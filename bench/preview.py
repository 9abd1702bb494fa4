"""A one-chorus preview against the full render (docs/previews.md): what a producer tuning a chorus waits for.

    python bench/preview.py [--runs 3] [--spec songs/paper-satellites.yaml] [--section "Chorus 2"] [--json FILE]

Each run works on a fresh copy of the song's files (bench/perf.py's copy_catalogue) and runs the real
CLI (`python -m millamusic render --json`) in its own process, so start-up and imports count:

- cache A: `preview_cold` (an empty cache), then `preview_again` (the same command: every stage reused);
- cache B: `full_cold` (the whole song, empty cache), `preview_full_cached` (cut from the full song's
  mix), then one lyric line edited (bench/perf.py's edit) and `preview_after_edit` beside
  `full_after_edit`: the producer's loop once the backing is cached.

Prints the median wall seconds (and each run's) per scenario and the stages that ran; writes every
figure as JSON (default bench/results/preview-<time>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from perf import DEFAULT_SPEC, copy_catalogue, edit_one_lyric_line, git_commit, machine, render_process  # bench/

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("preview_cold", "preview_again", "full_cold", "preview_full_cached", "preview_after_edit",
             "full_after_edit")


def timed_render(spec: Path, out: Path, cache: Path, *args: str) -> dict:
    """One `millamusic render --json` in its own process: wall and CPU seconds, the stages it ran."""
    result, wall, usage = render_process(spec, out, cache, *args)
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "ran": [s["name"] for s in result["stages"] if not s["cached"]],
            "stages": {s["name"]: round(s["seconds"], 3) for s in result["stages"] if not s["cached"]},
            "loudness": result.get("loudness"), "sources": result.get("sources")}


def one_run(spec: Path, folder: Path, section: str) -> dict:
    copied = copy_catalogue(spec, folder / "catalogue")
    preview = ("--section", section)
    a, b = (folder / "a" / "out", folder / "a" / "cache"), (folder / "b" / "out", folder / "b" / "cache")
    figures = {"preview_cold": timed_render(copied, *a, *preview)}
    figures["preview_again"] = timed_render(copied, *a, *preview)
    figures["full_cold"] = timed_render(copied, *b)
    figures["preview_full_cached"] = timed_render(copied, *b, *preview)
    figures["edit"] = edit_one_lyric_line(copied)
    figures["preview_after_edit"] = timed_render(copied, *b, *preview)
    figures["full_after_edit"] = timed_render(copied, *b)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--section", default="Chorus 2")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="millamusic-preview-bench-") as folder:
            runs.append(one_run(args.spec, Path(folder), args.section))
        print(f"run {n + 1}/{args.runs}: " + ", ".join(f"{s} {runs[-1][s]['wall_s']:.1f} s" for s in SCENARIOS),
              file=sys.stderr)
    medians = {s: round(statistics.median(run[s]["wall_s"] for run in runs), 2) for s in SCENARIOS}
    cpu = {s: round(statistics.median(run[s]["cpu_s"] for run in runs), 2) for s in SCENARIOS}
    print(f"{args.spec.name}, --section {args.section!r}, {args.runs} run(s), {machine()['cores']} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'scenario':<22}{'median s':>10}{'CPU s':>8}  each run (s)            ran")
    for s in SCENARIOS:
        each = ", ".join(f"{run[s]['wall_s']:.1f}" for run in runs)
        print(f"{s:<22}{medians[s]:>10.2f}{cpu[s]:>8.2f}  {each:<24}{', '.join(runs[0][s]['ran']) or '-'}")
    for what, figures in (("wall", medians), ("CPU", cpu)):
        print(f"preview / full render ({what}): cold {figures['preview_cold'] / figures['full_cold']:.2f}, "
              f"after a lyric edit {figures['preview_after_edit'] / figures['full_after_edit']:.2f}")
    print(f"preview loudness (first run, cold): {runs[0]['preview_cold']['loudness']}")
    record = {"spec": str(args.spec), "section": args.section, "machine": machine(), "commit": git_commit(),
              "medians_wall_s": medians, "medians_cpu_s": cpu, "runs": runs}
    path = args.json or ROOT / "bench" / "results" / f"preview-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(f"figures: {path}")


if __name__ == "__main__":
    main()
