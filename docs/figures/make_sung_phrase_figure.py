"""Draw one sung phrase of an example song: spectrogram, the score's notes and the pYIN f0.

    python docs/figures/make_sung_phrase_figure.py     # writes docs/figures/sung-phrase.png
    python docs/figures/make_sung_phrase_figure.py --song songs/northern-static.yaml --lines 6 7

The whole vocal of the song is sung by the embedded singer (default options: vibrato,
portamento, drift) and the chosen lyric lines are cut out. Notes are drawn as bands one
semitone wide around their fundamental, with their syllables, and librosa's pYIN f0 of
the lead on top, so pitch, timing (vowel on the beat, consonants before it) and vibrato
can be read off one picture. Needs matplotlib (`pip install -e '.[dev]'`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from millamusic.compose import compose
from millamusic.engines.base import VocalRequest, VocalResult
from millamusic.engines.singer import Singer
from millamusic.music.score import Score
from millamusic.spec.song import load_song

ROOT = Path(__file__).resolve().parents[2]
RATE = 44100


def sing(score: Score, seed: int) -> tuple[np.ndarray, VocalResult]:
    """The one call into the engine: (mono lead at RATE, the result)."""
    request = VocalRequest(seed=seed, language=score.language or "en-us", voice="female", sample_rate=RATE, options={})
    result = Singer().render(score, request)
    return result.stems["lead"].samples.mean(axis=0), result


def draw(song_path: Path, lines: list[int], out: Path) -> Path:
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MultipleLocator, ScalarFormatter

    song = load_song(song_path)
    score = compose(song)
    mono, _ = sing(score, song.spec.seed)
    notes = [n for n in score.notes if n.line_index in lines]
    start = score.beat_to_seconds(notes[0].start_beat) - 0.45
    end = score.beat_to_seconds(notes[-1].start_beat + notes[-1].length_beats) + 0.3
    x = mono[int(start * RATE) : int(end * RATE)].astype(np.float32)

    hop = 256
    db = librosa.amplitude_to_db(np.abs(librosa.stft(x, n_fft=4096, hop_length=hop)), ref=np.max)
    pitches = [n.pitch for n in notes]
    fmin, fmax = librosa.midi_to_hz(min(pitches) - 7), librosa.midi_to_hz(max(pitches) + 7)
    f0, voiced, _ = librosa.pyin(x, fmin=fmin, fmax=fmax, sr=RATE, frame_length=2048, hop_length=hop)
    t = start + librosa.times_like(f0, sr=RATE, hop_length=hop)

    fig, ax = plt.subplots(figsize=(13, 6.5))
    mesh = librosa.display.specshow(db, sr=RATE, hop_length=hop, y_axis="log", ax=ax, cmap="magma", vmin=-80, vmax=0,
                                    x_coords=start + librosa.times_like(db[0], sr=RATE, hop_length=hop))
    fig.colorbar(mesh, ax=ax, format="%+.0f dB", pad=0.01)
    ax.xaxis.set_major_locator(MultipleLocator(0.5))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_ylim(80, 5000)
    ax.set_yticks([100, 200, 300, 500, 1000, 2000, 3000, 5000])
    ax.set_yticklabels(["100", "200", "300", "500", "1k", "2k", "3k", "5k"])
    for k, n in enumerate(notes):
        a, b = score.beat_to_seconds(n.start_beat), score.beat_to_seconds(n.start_beat + n.length_beats)
        hz = librosa.midi_to_hz(n.pitch)
        low, high = hz * 2 ** (-0.5 / 12), hz * 2 ** (0.5 / 12)  # the note's semitone band
        ax.add_patch(Rectangle((a, low), b - a - 0.01, high - low, facecolor="#3cf", alpha=0.35, edgecolor="#3cf",
                               lw=1.2, label="score note (\u00b150 cents)" if k == 0 else None))
        ax.axvline(a, color="#3cf", lw=0.7, alpha=0.6, ls=":")
        label = n.syllable or "~"
        ax.text(a + 0.012, high * 1.08, f"{label}\n{librosa.midi_to_note(n.pitch, unicode=False)}", color="white",
                fontsize=10, va="bottom", ha="left", fontweight="bold")
    ax.plot(t, np.where(voiced, f0, np.nan), color="#ff0", lw=1.2, label="pYIN f0 of the sung lead")
    ax.set_xlim(start, end)
    ax.set_xlabel("seconds into the song")
    ax.set_ylabel("Hz (log)")
    text = " / ".join(score.lines[i].text for i in lines)
    ax.set_title(f"'{score.title}' ({score.tempo_bpm:g} BPM, {score.key}), singer, female voice: \u201c{text}\u201d",
                 fontsize=11)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.8)
    fig.tight_layout()
    path = out / "sung-phrase.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--song", type=Path, default=ROOT / "songs/set-me-spinning.yaml")
    parser.add_argument("--lines", type=int, nargs="+", default=[6], help="lyric line indices, in song order")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    print(draw(args.song, args.lines, args.out))


if __name__ == "__main__":
    main()
