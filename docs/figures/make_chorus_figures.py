"""Draw the first chorus of each arranger preset: waveform, spectrogram and per-stem level.

    python docs/figures/make_chorus_figures.py            # writes docs/figures/chorus-<preset>.png

Each preset plays the score of an example song in its tempo range (the ballads share one song). Needs matplotlib (`pip install -e '.[dev]'`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from millamusic.compose import compose
from millamusic.engines.arranger import Arranger
from millamusic.engines.base import BackingRequest
from millamusic.instruments.presets import PRESETS
from millamusic.instruments.rendering import sum_stems
from millamusic.spec.song import load_song

ROOT = Path(__file__).resolve().parents[2]
SONG_OF_PRESET = {"synth-pop": ROOT / "songs/set-me-spinning.yaml", "piano-ballad": ROOT / "songs/lanterns-on-the-ice.yaml",
                  "driving-rock": ROOT / "songs/northern-static.yaml",
                  "power-ballad": ROOT / "songs/lanterns-on-the-ice.yaml"}


def chorus_span(score) -> tuple[float, float]:
    section = next(s for s in score.sections if s.kind == "chorus")
    first = score.bars[section.start_bar]
    last = score.bars[section.start_bar + section.bars - 1]
    start = score.beat_to_seconds(first.start_beat)
    return start, score.beat_to_seconds(last.start_beat + last.beats)


def draw(preset_name: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    genre = PRESETS[preset_name]["genre"]
    song = load_song(SONG_OF_PRESET[preset_name])
    score = compose(song)
    request = BackingRequest(seed=song.spec.seed, genre=genre, style=(), sample_rate=44100,
                             options={"preset": preset_name})
    result = Arranger().render(score, request)
    rate = request.sample_rate
    start, end = chorus_span(score)
    lead_in = 2 * score.seconds_per_beat * score.beats_per_bar  # two bars before: the fill and the lift
    a, b = int((start - lead_in) * rate), int(end * rate)
    stems = {name: audio.samples[:, a:b] for name, audio in result.stems.items()}
    mono = sum_stems(stems).mean(axis=0)
    t = np.arange(len(mono)) / rate + (start - lead_in)

    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), gridspec_kw={"height_ratios": [1, 2, 1.2]})
    fig.suptitle(f"{preset_name}: '{score.title}' first chorus ({score.tempo_bpm:g} BPM, {score.key}), "
                 f"with the two bars before it", fontsize=11)
    axes[0].plot(t, mono, lw=0.3, color="#234")
    axes[0].axvline(start, color="#c33", lw=1, label="chorus starts")
    axes[0].set_ylabel("backing mix")
    axes[0].set_xlim(t[0], t[-1])
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].specgram(mono, NFFT=2048, Fs=rate, noverlap=1536, cmap="magma", vmin=-120, scale="dB",
                     xextent=(t[0], t[-1]))
    axes[1].set_yscale("symlog", linthresh=200)
    axes[1].set_ylim(30, 16000)
    axes[1].set_ylabel("Hz (spectrogram)")
    hop = int(0.05 * rate)
    for name, x in stems.items():
        frames = x.mean(axis=0)[: len(mono) // hop * hop].reshape(-1, hop)
        rms = 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-6)
        axes[2].plot(t[::hop][: len(rms)], rms, lw=0.8, label=name)
    axes[2].axvline(start, color="#c33", lw=1)
    axes[2].set_ylim(-60, 0)
    axes[2].set_xlim(t[0], t[-1])
    axes[2].set_ylabel("stem RMS (dBFS)")
    axes[2].set_xlabel("seconds into the song")
    axes[2].legend(loc="lower left", ncol=6, fontsize=8)
    fig.tight_layout()
    path = out / f"chorus-{preset_name}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("presets", nargs="*", default=list(PRESETS))
    args = parser.parse_args()
    for name in args.presets:
        print(draw(name, args.out))


if __name__ == "__main__":
    main()
