"""One phrase of the singer sung by WORLD: its pitch curve (the notes with portamento, delayed
vibrato and slow drift), the voice colour, the resynthesis and the levelling of its syllables;
and the breath taken before a phrase.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pyworld

from millamusic.core.audio import fade_edges
from millamusic.music.theory import midi_to_hz
from millamusic.voice.melody import drift, vibrato
from millamusic.voice.retiming import Frames, Unit, first_frame, phrase_frames
from millamusic.voice.speech_analysis import FRAME_MS, FRAME_S, Analysis
from millamusic.voice.world import add_breathiness, shift_formants, tune_first_formant

SYLLABLE_RMS = 0.1  # every syllable's vowel is levelled towards this RMS before the peak normalisation


def phrase_start(phrase: list[Unit], fs: int) -> int:
    """The sample (at `fs`) where `sing_phrase`'s samples of `phrase` start."""
    return int(round(first_frame(phrase) * FRAME_S * fs))


def sing_phrase(phrase: list[Unit], fs: int, opts: dict, rng: np.random.Generator,
                analyses: Mapping[str, Analysis]) -> tuple[int, np.ndarray]:
    """Synthesise one phrase with WORLD: (start sample, mono samples), at the analysis rate.
    `analyses`: the analysis of each unit's spoken line (by Source.line)."""

    bins = analyses[phrase[0].source.line].sp.shape[1]
    frames = phrase_frames(phrase, bins, analyses)
    f0 = _pitch_curve(phrase, frames.first, len(frames.voiced), opts, rng)
    f0 = np.where(frames.voiced, f0, 0.0)
    sp = shift_formants(frames.sp, opts["formant_shift"])
    sp = tune_first_formant(sp, f0, fs)
    ap = add_breathiness(shift_formants(frames.ap, opts["formant_shift"]), opts["breathiness"], fs)
    y = pyworld.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap), fs, FRAME_MS)
    y = fade_edges(_level_syllables(y, frames, fs), fs)
    return phrase_start(phrase, fs), y


def _pitch_curve(phrase: list[Unit], first: int, n: int, opts: dict, rng: np.random.Generator) -> np.ndarray:
    """f0 in Hz for each frame of a phrase: notes, portamento, vibrato and drift. Shape (n,)."""
    times = (first + np.arange(n)) * FRAME_S
    bounds, pitches = [], []
    for u in phrase:
        for k, (start, _end, midi) in enumerate(u.pitches):
            bounds.append(u.onset_start if k == 0 else start)  # voiced onsets already sing the new note
            pitches.append(float(midi))
    bounds = np.maximum.accumulate(bounds)  # an early onset may not undo a melisma note
    idx = np.clip(np.searchsorted(bounds, times, side="right") - 1, 0, len(pitches) - 1)
    semis = np.asarray(pitches)[idx]
    glide = max(int(round(opts["portamento_s"] / FRAME_S)), 1)
    if glide > 1:  # a Hann-weighted moving average turns each step into a smooth glide
        kernel = np.hanning(glide + 2)[1:-1]
        padded = np.pad(semis, (glide, glide), mode="edge")
        semis = np.convolve(padded, kernel / kernel.sum(), mode="same")[glide:-glide]
    notes = [(start, min(end, u.vowel_end)) for u in phrase for start, end, _midi in u.pitches]
    semis = semis + vibrato(notes, times, opts, rng) + drift(times, opts, rng) / 100.0
    return midi_to_hz(semis)  # plain arithmetic: works element-wise on arrays


def _level_syllables(y: np.ndarray, frames: Frames, fs: int) -> np.ndarray:
    """Even out the syllables of one phrase. `y` shape (samples,) at `fs`.

    Each syllable (from its onset to the next onset) is scaled so its vowel has RMS
    ~ SYLLABLE_RMS, and nothing in it (a vowel's attack, a loud consonant) may rise
    more than ~3 dB over that: a soft limiter. The gain curve is a running minimum then
    a running mean, so smoothing never lifts a point above the gain it needs.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d  # scipy: ~1 s to import

    per_frame = fs * FRAME_S
    width = max(int(0.01 * fs), 1)
    # moving averages as running sums (the same windows as np.convolve(..., "same") with a
    # box, in O(n) rather than O(n * width)); a running sum may round a hair below 0
    envelope = np.sqrt(np.maximum(uniform_filter1d(y**2, width, mode="constant"), 0.0)) + 1e-9
    gains = np.ones(len(y))
    starts = [int(f_on * per_frame) for f_on, _, _ in frames.units] + [len(y)]
    for k, (_, f_beat, f_vend) in enumerate(frames.units):
        a, b = int(f_beat * per_frame), min(int(f_vend * per_frame), len(y))
        rms = float(np.sqrt(np.mean(y[a:b] ** 2))) if b > a else 0.0
        if rms < 1e-6:
            continue
        lo, hi = (0 if k == 0 else starts[k]), starts[k + 1]
        ceiling = 1.4 * rms
        gains[lo:hi] = np.clip(SYLLABLE_RMS / rms, 0.25, 4.0) * np.minimum(1.0, ceiling / envelope[lo:hi])
    gains = minimum_filter1d(gains, size=2 * width + 1)
    gains = uniform_filter1d(gains, size=2 * width + 1, mode="nearest")  # edge-padded running mean
    return y * gains


def breath_before(fs: int, onset: float, gap: float, opts: dict,
                   rng: np.random.Generator) -> tuple[int, np.ndarray] | None:
    """A breath before a phrase when the silence before it is long enough (>= 0.45 s):
    (start sample, mono samples) at `fs`, or None."""
    if opts["breath_db"] is None or gap < 0.45:
        return None
    seconds = min(0.35, gap - 0.1)
    end = onset - 0.06
    start = int(round((end - seconds) * fs))
    if start < 0:
        return None
    return start, _breath(fs, seconds, rng) * SYLLABLE_RMS * 10 ** (opts["breath_db"] / 20)


def _breath(fs: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A soft intake of breath: band-limited noise under a smooth swell. Shape (samples,)."""
    from scipy.signal import butter, sosfilt  # scipy: ~1 s to import

    n = int(seconds * fs)
    noise = rng.standard_normal(n + 2048)
    sos = butter(2, [600.0, min(6000.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    shaped = sosfilt(sos, noise)[2048:]
    env = np.sin(np.pi * np.linspace(0, 1, n)) ** 2
    shaped = shaped * env
    rms = np.sqrt(np.mean(shaped**2)) + 1e-12
    return shaped / rms
