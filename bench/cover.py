"""How well `millamusic cover` hears a recording: references rendered by the project's own
engines (tests/cover_references.py: the score is the truth), analysed, scored with mir_eval, and
one drafted cover rendered end to end.

    python bench/cover.py                 # all six references, one run each
    python bench/cover.py --runs 3 --json out.json

Prints per reference: tempo error, downbeat error, meter and key right, chord accuracy (mir_eval
root and majmin, time-weighted), section boundaries found within one bar, melody note F1 (mir_eval
transcription: 50 ms onsets, 50 cents) on the sung stem and on the full mix, and the analysis
time (median of --runs). Then `cover` -> `render` of one reference: the rendered backing's tempo
and key against the reference's (transposed into a low voice's range).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.cover_references builds the references

import soundfile  # noqa: E402
from tests.cover_references import REFERENCES, build_reference, score_analysis  # noqa: E402

from millamusic.analysis.features import estimate_key, estimate_tempo  # noqa: E402
from millamusic.cover.analysis import analyse_reference  # noqa: E402
from millamusic.spec.song import load_song  # noqa: E402
from perf import median_seconds  # noqa: E402  (bench/perf.py: run as python bench/cover.py)


def end_to_end(reference, folder: Path) -> dict:
    """cover -> render through the CLI, as a producer runs them; the backing measured."""
    from click.testing import CliRunner

    from millamusic.cli import main

    (folder / "artists").mkdir(parents=True, exist_ok=True)
    profile = (ROOT / "artists" / "milla-virta.yaml").read_text().replace("range: [A3, E5]", "range: [C3, G4]")
    (folder / "artists" / "low.yaml").write_text(profile)
    spec = folder / "songs" / "bench-cover.yaml"
    started = time.perf_counter()
    drafted = CliRunner().invoke(main, ["cover", str(reference.mix_path), "--title", "Bench Cover", "--vocal-stem",
                                        str(reference.vocal_path), "--artist-profile",
                                        str(folder / "artists" / "low.yaml"), "--out-spec", str(spec), "--force"])
    cover_seconds = time.perf_counter() - started
    if drafted.exit_code != 0:
        raise SystemExit(drafted.output)
    started = time.perf_counter()
    rendered = CliRunner().invoke(main, ["render", str(spec), "--out", str(folder)])
    render_seconds = time.perf_counter() - started
    if rendered.exit_code != 0:
        raise SystemExit(rendered.output)
    song = load_song(spec)
    stems = folder / "stems" / "bench-cover"
    backing = sum(soundfile.read(stems / f"{name}.wav", dtype="float32")[0]
                  for name in ("drums", "bass", "keys", "arp", "pad"))
    rate = soundfile.info(stems / "bass.wav").samplerate
    return {"cover_seconds": cover_seconds, "render_seconds": render_seconds,
            "reference_tempo": reference.score.tempo_bpm, "reference_key": reference.score.key,
            "transpose": song.spec.transpose, "expected_key": song.spec.key_value.name,
            "rendered_tempo": estimate_tempo(backing.T, rate, prior_bpm=song.spec.tempo).bpm,
            "rendered_key": estimate_key(backing.T, rate).name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1, help="analysis runs per reference (the median time)")
    parser.add_argument("--only", nargs="*", choices=list(REFERENCES), help="these references only")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        header = (f"{'reference':<16} {'tempo':>7} {'down':>6} {'meter':>5} {'key':>5} {'root':>5} {'majmin':>6} "
                  f"{'bounds':>6} {'F1 stem':>7} {'F1 mix':>6} {'secs':>5}")
        print(header)
        for name in args.only or REFERENCES:
            reference = build_reference(REFERENCES[name], folder / name)
            seconds, analysis = median_seconds(args.runs, lambda r=reference: analyse_reference(
                r.mix_path, vocal_stem=r.vocal_path))
            scores = score_analysis(reference, analysis)
            mix_analysis = analyse_reference(reference.mix_path)
            on_mix = score_analysis(reference, mix_analysis)
            results[name] = {**asdict(scores), "melody_f1_mix": on_mix.melody_f1, "analysis_seconds": seconds,
                             "monophonic_stem": analysis.melody.monophonic,
                             "monophonic_mix": mix_analysis.melody.monophonic}
            print(f"{name:<16} {scores.tempo_error_percent:+6.2f}% {scores.downbeat_error_ms:4.0f}ms "
                  f"{'ok' if scores.meter_right else 'NO':>5} {'ok' if scores.key_right else 'NO':>5} "
                  f"{scores.chord_root:5.2f} {scores.chord_majmin:6.2f} {scores.boundary_hit_rate:6.2f} "
                  f"{scores.melody_f1:7.2f} {on_mix.melody_f1 or 0:6.2f} {seconds:5.1f}")
        e2e = end_to_end(build_reference(REFERENCES["pop-118-am"], folder / "pop-118-am"), folder / "e2e")
        results["end_to_end"] = e2e
        print(f"\ncover -> render (pop-118-am, a C3-G4 voice): cover {e2e['cover_seconds']:.1f} s, render "
              f"{e2e['render_seconds']:.1f} s; tempo {e2e['reference_tempo']:g} -> {e2e['rendered_tempo']:.2f} BPM; "
              f"key {e2e['reference_key']} {e2e['transpose']:+d} -> {e2e['rendered_key']} "
              f"(expected {e2e['expected_key']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
