"""Test signals shared by the test modules: sines, EBU test tones, noise, drum hits, notes and
chords, and a short stereo mix. Import them as `from tests.signals import sine, stereo, ...`.

Conventions
-----------
* Sample counts come from seconds as ``int(seconds * rate)`` (``round(...)`` where a
  docstring says so), and time is ``t = np.arange(n) / rate``.
* Builders of one channel return a float64 ndarray of shape (n,); wrap it with `stereo` to get
  the project's `Audio`: float32 samples of shape (channels, samples).
* Builders that say they return `Audio` return float32 (channels, samples), as the pipeline does.
* Randomness is always seeded (a `seed`, or a `numpy.random.Generator` passed in), so a signal
  is the same on every run: several tests compare with fixed expectations, and these builders
  reproduce, number for number, what those tests were written against. Do not reorder the
  arithmetic in here: a changed last bit can move a measured value.
* Options after the first arguments are keyword-only.
"""

from __future__ import annotations

import math

import numpy as np

from millamusic.core.audio import Audio
from millamusic.music.theory import midi_to_hz, parse_chord

CD_RATE = 44100
EBU_RATE = 48000  # the rate the EBU Tech 3341/3342 cases are defined at
EBU_TONE_HZ = 1000.0


# --------------------------------------------------------------------------- plain tones


def sine(freq: float, seconds: float, *, rate: int = CD_RATE, amp: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """``amp * sin(2 pi freq t + phase)``, (int(seconds * rate),) float64."""
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t + phase)


def stereo(x: np.ndarray, *, rate: int = CD_RATE) -> Audio:
    """One channel (n,) copied to both channels: Audio with float32 (2, n) samples."""
    return Audio(np.stack([x, x]).astype(np.float32), rate)


# --------------------------------------------------------------------------- EBU test tones


def tone_sequence(segments: list[tuple[float, float]], *, rate: int = EBU_RATE, freq: float = EBU_TONE_HZ
                  ) -> np.ndarray:
    """One phase-continuous sine whose peak level steps through (dBFS, seconds) segments; (n,) float64.

    Each segment has round(seconds * rate) samples. A 1 kHz tone at peak P dBFS in both
    channels of a stereo signal reads P LUFS (EBU Tech 3341 cases 1-5, Tech 3342 cases 1-4).
    """
    lengths = [round(sec * rate) for _, sec in segments]
    gain = np.concatenate([np.full(n, 10.0 ** (db / 20.0)) for (db, _), n in zip(segments, lengths)])
    t = np.arange(gain.size) / rate
    return gain * np.sin(2.0 * np.pi * freq * t)


def ebu_tone(seconds: float, dbfs: float, *, rate: int = EBU_RATE, freq: float = EBU_TONE_HZ) -> np.ndarray:
    """A steady tone (1 kHz unless `freq`) whose peak is `dbfs`; (n,) float64. See `tone_sequence`."""
    return tone_sequence([(dbfs, seconds)], rate=rate, freq=freq)


def fraction_sine(divisor: float, phase_deg: float, amplitude: float, *, rate: int = EBU_RATE,
                  seconds: float = 3.0) -> np.ndarray:
    """Sine at rate/divisor Hz, ``x[n] = amplitude * sin(2 pi n / divisor + phase)``; (n,) float64.

    The true-peak cases of EBU Tech 3341 (15-19): fs/4, fs/6, fs/8 tones whose samples fall
    between the waveform's peaks. n = round(seconds * rate).
    """
    n = np.arange(round(seconds * rate))
    return amplitude * np.sin(2.0 * np.pi * n / divisor + math.radians(phase_deg))


def taper(x: np.ndarray, *, rate: int, seconds: float = 0.010) -> np.ndarray:
    """A copy of (n,) `x` with a raised-cosine fade-in and fade-out of `seconds` at both ends."""
    m = round(seconds * rate)
    w = 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / m)
    y = x.copy()
    y[:m] *= w
    y[-m:] *= w[::-1]
    return y


# --------------------------------------------------------------------------- noise


def white_noise(shape: int | tuple[int, ...], *, seed: int, level: float = 1.0) -> np.ndarray:
    """Gaussian white noise of standard deviation `level`: float32 array of `shape`.

    ``(level * default_rng(seed).standard_normal(shape)).astype(float32)``; pass (channels,
    samples) for Audio samples.
    """
    return (level * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def noise_burst(rng: np.random.Generator, seconds: float, *, decay: float, gain: float, rate: int = CD_RATE,
                bright: bool = True, extra_draw: bool = False) -> np.ndarray:
    """Exponentially decaying white noise (time constant `decay` s); (int(seconds * rate),) float64.

    bright: the first difference of n + 1 draws, halved (a crude high-pass: hi-hats). Otherwise
    plain noise (snares): n draws, or with `extra_draw` n + 1 draws less the first, so that bright
    and plain bursts take as much from `rng` (the sequence tests/test_analysis.py's drum tracks
    were built with).
    """
    n = int(seconds * rate)
    if bright:
        noise = np.diff(rng.standard_normal(n + 1)) / 2
    else:
        noise = rng.standard_normal(n + 1)[1:] if extra_draw else rng.standard_normal(n)
    return gain * noise * np.exp(-np.arange(n) / rate / decay)


# --------------------------------------------------------------------------- drums, notes, chords


def place(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    """Add (m,) `sound` into (n,) `out` from sample `start`, cut at the end of `out`."""
    end = min(len(out), start + len(sound))
    if 0 <= start < end:
        out[start:end] += sound[: end - start]


def kick(*, rate: int = CD_RATE, gain: float = 1.0) -> np.ndarray:
    """A low sine thump sweeping 110 -> 50 Hz, 0.25 s; (int(0.25 * rate),) float64, peak about `gain`."""
    t = np.arange(int(0.25 * rate)) / rate
    freq = 50 + 60 * np.exp(-t / 0.03)
    return gain * np.sin(2 * np.pi * np.cumsum(freq) / rate) * np.exp(-t / 0.08)


def harmonic_note(pitch: int, seconds: float, *, rate: int = CD_RATE, harmonics: int = 6) -> np.ndarray:
    """Additive-synth note of MIDI `pitch`: harmonics k = 1..`harmonics` (those under Nyquist) at
    amplitude 1/k, a 10 ms attack and a slow decay; (int(seconds * rate),) float64."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = midi_to_hz(pitch)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, harmonics + 1) if k * f0 < rate / 2)
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / (2.0 * seconds))
    return wave * envelope


def chord_sound(symbol: str, seconds: float, *, rate: int = CD_RATE, harmonics: int = 6) -> np.ndarray:
    """The chord `symbol` (e.g. "Am", "C/E"): its bass note in octave 2 (gain 0.8) plus a close
    voicing around middle C (0.5 each), as `harmonic_note`s; (int(seconds * rate),) float64."""
    chord = parse_chord(symbol)
    notes = [36 + chord.bass_pc] + [60 + (chord.root_pc + i) % 12 - (12 if chord.root_pc > 7 else 0)
                                    for i in chord.intervals]
    return sum(harmonic_note(p, seconds, rate=rate, harmonics=harmonics) * (0.8 if i == 0 else 0.5)
               for i, p in enumerate(notes))


# --------------------------------------------------------------------------- a short mix


def two_tone_mix(seconds: float = 6.0, *, rate: int = CD_RATE, freqs: tuple[float, float] = (440.0, 660.0),
                 level: float = 0.4, noise: float = 0.05, seed: int = 3, swell_hz: float | None = None) -> Audio:
    """A short stereo 'mix': a sine per channel (left freqs[0], right freqs[1]) at peak `level`,
    plus white noise of standard deviation `noise` (left drawn first); Audio, float32 (2, n).

    swell_hz: multiply both channels by a slow swell 0.6 + 0.4 sin^2(2 pi swell_hz t).
    """
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    channels = []
    for freq in freqs:
        x = level * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(t.size)
        channels.append(x)
    if swell_hz is not None:
        env = 0.6 + 0.4 * np.sin(2 * np.pi * swell_hz * t) ** 2
        channels = [env * x for x in channels]
    return Audio(np.stack(channels).astype(np.float32), rate)


def pop_mix(seconds: float = 20.0, *, seed: int = 0, rate: int = CD_RATE) -> np.ndarray:
    """A pop-ish stereo test mix, (2, int(seconds * rate)) float64, peak about 1.5: seven panned
    chord partials with slow tremolo, a kick every 0.5 s, a noise-burst snare on every other
    kick, a noise floor, and a quieter bridge (the third to the half of it, at 0.4)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = np.zeros((2, n))
    for i, f in enumerate([110.0, 220.0, 277.2, 329.6, 440.0, 659.3, 1318.5]):
        amp = 0.12 / (1 + 0.3 * i) * (1 + 0.3 * np.sin(2 * np.pi * (0.2 + 0.05 * i) * t))
        pan = (i % 3) / 2.0
        s = amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        x[0] += s * (1 - 0.6 * pan)
        x[1] += s * (0.4 + 0.6 * pan)
    beat = int(0.5 * rate)
    for k in range(0, n - beat, beat):
        m = min(int(0.25 * rate), n - k)
        tt = np.arange(m) / rate
        x[:, k : k + m] += 0.9 * np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 12)
        if (k // beat) % 2:
            snare = rng.standard_normal(m) * 0.5 * np.exp(-tt * 25)
            x[0, k : k + m] += snare
            x[1, k : k + m] += 0.8 * snare
    x += rng.standard_normal((2, n)) * 0.02
    x[:, n // 3 : n // 2] *= 0.4
    return x
