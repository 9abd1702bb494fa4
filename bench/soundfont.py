"""Time SoundFont rendering: the arranger's stems of a song played by a General MIDI font.

    python bench/soundfont.py FONT.sf2 [--runs 3] [--minutes 3] [--preset synth-pop] [--png DIR]

Renders each part's MIDI (exactly what `--soundfont` renders) with TinySoundFont, the synthesizer
millamusic uses, and with the `fluidsynth` program when it is on PATH (the renderer before
TinySoundFont, for comparison: same MIDI, same font, reverb and chorus off, gain 0.5). Prints per
stem the median wall seconds of N runs, peak (dBFS), integrated loudness (LUFS), and how far the
two renders' spectra lie apart: the mean and largest absolute difference of their long-term
third-octave band levels (dB, 31.5 Hz to 16 kHz) after matching loudness. Then the whole backing
through the arranger (`Arranger().render` with the font), which adds balancing and the tail fade.
--png writes a spectrogram of each stem from both synthesizers (matplotlib).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from millamusic.dsp.loudness import integrated_loudness
from millamusic.engines.arranger import Arranger, arrange
from millamusic.engines.base import BackingRequest
from millamusic.instruments.midi_file import midi_bytes
from millamusic.instruments.presets import PRESETS
from millamusic.instruments.soundfont import render_midi, synthesizer

sys.path.insert(0, str(Path(__file__).parent))
from backing import TEMPO, three_minute_score  # noqa: E402  (bench/ is not a package)
from perf import median_seconds  # noqa: E402

RATE = 44100


def render_fluidsynth(program: str, midi: bytes, font: Path, frames: int) -> np.ndarray:
    """The former renderer's command line: no drivers, no user config, no reverb or chorus, float WAV."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "parts.mid").write_bytes(midi)
        (folder / "empty.cfg").write_text("")
        command = [program, "-n", "-i", "-q", "-f", str(folder / "empty.cfg"), "-g", "0.5", "-r", str(RATE),
                   "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0", "-o", "synth.default-soundfont=",
                   "-o", "synth.lock-memory=0", "-O", "float", "-T", "wav", "-F", str(folder / "out.wav"),
                   str(font), str(folder / "parts.mid")]
        subprocess.run(command, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        data, rate = sf.read(folder / "out.wav", dtype="float32", always_2d=True)
    assert rate == RATE
    out = np.zeros((2, frames), dtype=np.float32)
    n = min(frames, len(data))
    out[:, :n] = data[:n].T
    return out


def band_levels(x: np.ndarray) -> np.ndarray:
    """Long-term third-octave band levels (dB) of the mono sum, 31.5 Hz .. 16 kHz."""
    mono = x.mean(axis=0).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mono)) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / RATE)
    centres = 1000.0 * 2.0 ** (np.arange(-15, 13) / 3)
    levels = [spectrum[(freqs >= c * 2 ** (-1 / 6)) & (freqs < c * 2 ** (1 / 6))].sum() for c in centres]
    return 10 * np.log10(np.maximum(levels, 1e-20))


def spectral_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    la, lb = integrated_loudness(a, RATE), integrated_loudness(b, RATE)
    if not (np.isfinite(la) and np.isfinite(lb)):
        return float("nan"), float("nan")
    diff = band_levels(a * 10 ** ((lb - la) / 20)) - band_levels(b)
    return float(np.mean(np.abs(diff))), float(np.max(np.abs(diff)))


def dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.abs(x).max()), 1e-12))


def save_spectrograms(folder: Path, name: str, renders: dict[str, np.ndarray]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(renders), 1, figsize=(10, 3 * len(renders)), sharex=True, squeeze=False)
    for ax, (synth, x) in zip(axes[:, 0], renders.items()):
        ax.specgram(x.mean(axis=0)[: 20 * RATE], NFFT=2048, Fs=RATE, noverlap=1536, vmin=-140, cmap="magma")
        ax.set_ylim(0, 12000)
        ax.set_title(f"{name}: {synth}")
        ax.set_ylabel("Hz")
    axes[-1, 0].set_xlabel("s (first 20)")
    fig.tight_layout()
    path = folder / f"soundfont-{name}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("font", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--preset", default="synth-pop", choices=sorted(TEMPO))
    parser.add_argument("--png", type=Path, default=None, help="folder for spectrogram PNGs")
    args = parser.parse_args()

    fluidsynth = shutil.which("fluidsynth")
    score = three_minute_score(TEMPO[args.preset], args.minutes)
    request = BackingRequest(seed=1, genre=PRESETS[args.preset]["genre"], style=(), sample_rate=RATE,
                             options={"preset": args.preset, "soundfont": str(args.font)})
    arrangement = arrange(score, request)
    frames = score.total_frames(RATE)
    print(f"font: {args.font.name} ({args.font.stat().st_size / 1e6:.1f} MB), preset {args.preset}, "
          f"{score.total_seconds:.0f} s of audio, median of {args.runs} runs; {synthesizer()}; "
          f"fluidsynth: {fluidsynth or 'not on PATH'}")
    print(f"{'stem':<10}{'tsf s':>7}{'fs s':>7}{'tsf dBFS':>10}{'fs dBFS':>9}{'tsf LUFS':>10}{'fs LUFS':>9}"
          f"{'band dB mean':>14}{'max':>6}")
    totals = {"tsf": 0.0, "fs": 0.0}
    for part in arrangement.parts:
        midi = midi_bytes(score, [part])
        t_tsf, tsf = median_seconds(args.runs, lambda: render_midi(midi, args.font, sample_rate=RATE, frames=frames))
        totals["tsf"] += t_tsf
        row = f"{part.name:<10}{t_tsf:>7.2f}"
        renders = {"TinySoundFont": tsf}
        if fluidsynth:
            t_fs, fs = median_seconds(args.runs, lambda: render_fluidsynth(fluidsynth, midi, args.font, frames))
            totals["fs"] += t_fs
            renders["FluidSynth"] = fs
            mean, worst = spectral_difference(tsf, fs)
            row += (f"{t_fs:>7.2f}{dbfs(tsf):>10.1f}{dbfs(fs):>9.1f}{integrated_loudness(tsf, RATE):>10.1f}"
                    f"{integrated_loudness(fs, RATE):>9.1f}{mean:>14.1f}{worst:>6.1f}")
        else:
            row += f"{'-':>7}{dbfs(tsf):>10.1f}{'-':>9}{integrated_loudness(tsf, RATE):>10.1f}"
        print(row)
        if args.png:
            args.png.mkdir(parents=True, exist_ok=True)
            save_spectrograms(args.png, part.name, renders)
    print(f"{'all stems':<10}{totals['tsf']:>7.2f}" + (f"{totals['fs']:>7.2f}" if fluidsynth else ""))
    song_s, _ = median_seconds(args.runs, lambda: Arranger().render(score, request))
    print(f"whole backing through the arranger (TinySoundFont, parts in threads): {song_s:.2f} s, "
          f"{score.total_seconds / song_s:.0f}x real time")


if __name__ == "__main__":
    main()
