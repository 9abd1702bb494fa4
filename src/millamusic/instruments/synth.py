"""Instrument synthesis for the embedded arranger: envelopes, oscillators, drum voices, strings.

Pure numpy/scipy, no knowledge of scores or patterns. Every function returns a float32 array
(mono ``(n,)`` or stereo ``(2, n)``) at the given sample rate, normalised so that a note at full
velocity peaks near 1.0; the arranger scales, pans and sums them.

Speed rules: a note is rendered once as a short buffer (callers cache by pitch/length), drum
voices are rendered once per song and copied, and nothing here loops per sample in Python
(Karplus-Strong loops per *period*, which numpy vectorises).
"""

from __future__ import annotations

import numpy as np


def _signal():
    """scipy.signal, imported on first use: the import takes ~0.6 s, and a render whose backing is
    cached loads this module (for the arranger's options) without filtering anything."""
    from scipy import signal  # scipy: ~1 s to import

    return signal


TWO_PI = 2.0 * np.pi


LN_1000 = np.log(1000.0)  # -60 dB


# --- envelopes ---------------------------------------------------------------------------------
def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    return max(1, int(round(seconds * sample_rate)))


def time_axis(n: int, sample_rate: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sample_rate


def decay(t: np.ndarray, t60: float) -> np.ndarray:
    """Exponential decay reaching -60 dB after `t60` seconds."""
    return np.exp(-LN_1000 * t / max(t60, 1e-4))


def note_envelope(n_hold: int, n_release: int, sample_rate: int, attack: float = 0.003) -> np.ndarray:
    """1 during the note (after a short linear attack), then a raised-cosine release to 0."""
    n = n_hold + n_release
    env = np.ones(n, dtype=np.float64)
    n_att = min(seconds_to_samples(attack, sample_rate), max(n_hold, 1))
    env[:n_att] = np.linspace(0.0, 1.0, n_att, endpoint=False) + 1.0 / n_att
    if n_release > 0:
        env[n_hold:] = 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, n_release))
    return env


def normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return (x / peak if peak > 0 else x).astype(np.float32)


# --- filters -----------------------------------------------------------------------------------
def _sos(kind: str, cutoff, sample_rate: int, order: int = 2) -> np.ndarray:
    nyq = 0.5 * sample_rate
    if isinstance(cutoff, (tuple, list)):
        wn = [min(c, 0.95 * nyq) / nyq for c in cutoff]
    else:
        wn = min(cutoff, 0.95 * nyq) / nyq
    return _signal().butter(order, wn, btype=kind, output="sos")


def highpass(x: np.ndarray, cutoff: float, sample_rate: int, order: int = 2) -> np.ndarray:
    return _signal().sosfilt(_sos("highpass", cutoff, sample_rate, order), x)


def lowpass(x: np.ndarray, cutoff: float, sample_rate: int, order: int = 2) -> np.ndarray:
    return _signal().sosfilt(_sos("lowpass", cutoff, sample_rate, order), x)


def bandpass(x: np.ndarray, low: float, high: float, sample_rate: int, order: int = 2) -> np.ndarray:
    return _signal().sosfilt(_sos("bandpass", (low, high), sample_rate, order), x)


# --- oscillators -------------------------------------------------------------------------------
def polyblep_saw(freq: float, n: int, sample_rate: int, phase0: float = 0.0) -> np.ndarray:
    """Band-limited-ish sawtooth (PolyBLEP), vectorised."""
    dt = freq / sample_rate
    phase = (phase0 + dt * np.arange(n, dtype=np.float64)) % 1.0
    y = 2.0 * phase - 1.0
    low = phase < dt
    t = phase[low] / dt
    y[low] -= t + t - t * t - 1.0
    high = phase > 1.0 - dt
    t = (phase[high] - 1.0) / dt
    y[high] -= t * t + t + t + 1.0
    return y


def additive(freq: float, t: np.ndarray, amps: np.ndarray, t60s: np.ndarray, sample_rate: int) -> np.ndarray:
    """Sum of harmonics k*freq with amplitude amps[k-1], each decaying with its own T60."""
    k = np.arange(1, len(amps) + 1, dtype=np.float64)
    keep = k * freq < 0.45 * sample_rate
    k, amps, t60s = k[keep], amps[keep], t60s[keep]
    phases = np.sin(TWO_PI * freq * np.outer(k, t))
    envs = np.exp(-LN_1000 * np.outer(1.0 / t60s, t))
    return (amps[:, None] * phases * envs).sum(axis=0)


# --- drum voices (each rendered once per song, mono, peak 1) --------------------------------------
def kick(sample_rate: int, rng: np.random.Generator, *, f_high: float = 150.0, f_low: float = 48.0,
         sweep: float = 0.045, t60: float = 0.45, click: float = 0.35, drive: float = 1.6) -> np.ndarray:
    """Pitched sine sweep (f_high -> f_low) plus a short noise/tone click, lightly saturated."""
    n = seconds_to_samples(max(t60, 0.3) + 0.05, sample_rate)
    t = time_axis(n, sample_rate)
    freq = f_low + (f_high - f_low) * np.exp(-t / sweep)
    body = np.sin(TWO_PI * np.cumsum(freq) / sample_rate) * decay(t, t60)
    noise = highpass(rng.standard_normal(n), 1500.0, sample_rate)
    clicks = (noise * 0.6 + np.sin(TWO_PI * 1800.0 * t)) * np.exp(-t / 0.0025)
    x = np.tanh(drive * (body + click * clicks)) / np.tanh(drive)
    fade = seconds_to_samples(0.01, sample_rate)
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return normalise(x)


def snare(sample_rate: int, rng: np.random.Generator, *, tone_hz: float = 185.0, tone_t60: float = 0.18,
          noise_t60: float = 0.35, noise_mix: float = 0.9) -> np.ndarray:
    """Two damped tones (shell) plus band-passed noise (wires)."""
    n = seconds_to_samples(max(noise_t60, tone_t60) + 0.05, sample_rate)
    t = time_axis(n, sample_rate)
    tone = (np.sin(TWO_PI * tone_hz * t) + 0.5 * np.sin(TWO_PI * tone_hz * 1.78 * t)) * decay(t, tone_t60)
    wires = bandpass(rng.standard_normal(n), 1200.0, 9000.0, sample_rate) * decay(t, noise_t60)
    wires /= max(np.max(np.abs(wires)), 1e-9)
    x = 0.6 * tone + noise_mix * wires
    fade = seconds_to_samples(0.01, sample_rate)
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return normalise(x)


def hihat(sample_rate: int, rng: np.random.Generator, *, t60: float = 0.09, cutoff: float = 7000.0) -> np.ndarray:
    """High-passed noise with a fast decay (closed) or a slower one (open)."""
    n = seconds_to_samples(t60 + 0.02, sample_rate)
    t = time_axis(n, sample_rate)
    x = highpass(rng.standard_normal(n), cutoff, sample_rate, order=4) * decay(t, t60)
    x[: seconds_to_samples(0.0008, sample_rate)] *= 0.5
    return normalise(x)


def crash(sample_rate: int, rng: np.random.Generator, *, t60: float = 3.2, cutoff: float = 3500.0) -> np.ndarray:
    """Long noise wash: a bright burst on the hit and a high-passed tail decaying over `t60`."""
    n = seconds_to_samples(t60 + 0.05, sample_rate)
    t = time_axis(n, sample_rate)
    noise = rng.standard_normal(n)
    wash = highpass(noise, cutoff, sample_rate, order=3)
    shimmer = bandpass(noise, 5000.0, 12000.0, sample_rate)
    x = (wash * decay(t, t60) + 0.8 * shimmer * decay(t, 0.35)) * (1.0 - np.exp(-t / 0.0015))
    fade = seconds_to_samples(0.05, sample_rate)
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return normalise(x)


def tom(sample_rate: int, rng: np.random.Generator, *, pitch_hz: float = 140.0, t60: float = 0.5) -> np.ndarray:
    """Pitched sine with a small downward bend plus a little noise for the stick."""
    n = seconds_to_samples(t60 + 0.03, sample_rate)
    t = time_axis(n, sample_rate)
    freq = pitch_hz * (1.0 + 0.5 * np.exp(-t / 0.03))
    body = np.sin(TWO_PI * np.cumsum(freq) / sample_rate) * decay(t, t60)
    stick = highpass(rng.standard_normal(n), 2000.0, sample_rate) * np.exp(-t / 0.006)
    x = np.tanh(1.3 * (body + 0.25 * stick))
    fade = seconds_to_samples(0.01, sample_rate)
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return normalise(x)


def ride(sample_rate: int, rng: np.random.Generator, *, t60: float = 1.8, bell: float = 0.3) -> np.ndarray:
    """Ride cymbal: a defined 'ping' (inharmonic partials, like a struck plate) over a quieter
    high-passed noise wash; `bell` adds the low, long-ringing bell partials."""
    n = seconds_to_samples(t60 + 0.05, sample_rate)
    t = time_axis(n, sample_rate)
    partials = np.array([3150.0, 4230.0, 5370.0, 6610.0, 8020.0])
    ping = np.sin(TWO_PI * np.outer(partials, t) + rng.uniform(0, TWO_PI, (len(partials), 1))).sum(axis=0)
    ping *= decay(t, 0.6 * t60) / len(partials)
    wash = highpass(rng.standard_normal(n), 5000.0, sample_rate, order=3) * decay(t, t60)
    bell_partials = np.array([720.0, 1085.0, 1690.0])
    bells = np.sin(TWO_PI * np.outer(bell_partials, t)).sum(axis=0) * decay(t, 0.8 * t60) / len(bell_partials)
    x = (ping + 0.35 * wash + bell * bells) * (1.0 - np.exp(-t / 0.0008))
    fade = seconds_to_samples(0.05, sample_rate)
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    return normalise(x)


DRUM_VOICES = {"kick": kick, "snare": snare, "hihat": hihat, "crash": crash, "ride": ride, "tom": tom}


def drum_voice(kind: str, sample_rate: int, rng: np.random.Generator, **params) -> np.ndarray:
    return DRUM_VOICES[kind](sample_rate, rng, **params)


# --- pitched voices (one note, mono unless stated; n_hold = samples until note-off) -------------------
def bass_note(freq: float, n_hold: int, sample_rate: int, rng: np.random.Generator, *, brightness: float = 0.5,
              t60: float = 2.5, release: float = 0.06, pick: float = 0.0) -> np.ndarray:
    """Plucked bass: additive harmonics (upper ones die faster), strong fundamental and octave."""
    n_rel = seconds_to_samples(release, sample_rate)
    n = n_hold + n_rel
    t = time_axis(n, sample_rate)
    k = np.arange(1, 17, dtype=np.float64)
    amps = (1.0 / k) * np.exp(-(k - 1.0) * (1.1 - brightness))
    amps[1] *= 1.2  # a round octave keeps the root's pitch class dominant
    t60s = t60 / (1.0 + 0.35 * (k - 1.0) * (1.0 + brightness))
    x = additive(freq, t, amps, t60s, sample_rate)
    if pick > 0:
        x += pick * highpass(rng.standard_normal(n), 1000.0, sample_rate) * np.exp(-t / 0.004)
    x = np.tanh(1.2 * x / max(np.max(np.abs(x)), 1e-9))
    return normalise(x * note_envelope(n_hold, n_rel, sample_rate, attack=0.002))


def epiano_note(freq: float, n_hold: int, sample_rate: int, rng: np.random.Generator, *, brightness: float = 0.6,
                release: float = 0.25) -> np.ndarray:
    """Electric-piano-like FM tone: 1:1 FM body with a decaying index, plus a short 14:1 'tine'."""
    n_rel = seconds_to_samples(release, sample_rate)
    n = n_hold + n_rel
    t = time_axis(n, sample_rate)
    t60 = float(np.clip(5.0 * (220.0 / freq) ** 0.5, 1.5, 7.0))
    index = brightness * (1.8 * np.exp(-t / 0.3) + 0.35)
    body = np.sin(TWO_PI * freq * t + index * np.sin(TWO_PI * freq * t))
    x = body * decay(t, t60)
    if 14.0 * freq < 0.45 * sample_rate:
        x += 0.18 * brightness * np.sin(TWO_PI * 14.0 * freq * t) * np.exp(-t / 0.03)
    x += 0.25 * np.sin(TWO_PI * 2.0 * freq * t) * decay(t, t60 * 0.5)
    return normalise(x * note_envelope(n_hold, n_rel, sample_rate, attack=0.002))


def pad_note(freq: float, n_hold: int, sample_rate: int, rng: np.random.Generator, *, detune_cents: float = 8.0,
             attack: float = 0.35, release: float = 0.9) -> np.ndarray:
    """Stereo pad: three detuned PolyBLEP saws (left, centre, right) with a slow swell. (2, n)."""
    n_rel = seconds_to_samples(release, sample_rate)
    n = n_hold + n_rel
    env = note_envelope(n_hold, n_rel, sample_rate, attack=attack)
    ratio = 2.0 ** (detune_cents / 1200.0)
    phases = rng.random(3)
    left = polyblep_saw(freq / ratio, n, sample_rate, phases[0])
    centre = polyblep_saw(freq, n, sample_rate, phases[1])
    right = polyblep_saw(freq * ratio, n, sample_rate, phases[2])
    out = np.stack([left + 0.6 * centre, right + 0.6 * centre]) * env
    return normalise(out)


def karplus_strong(freq: float, n_hold: int, sample_rate: int, rng: np.random.Generator, *, t60: float = 3.0,
                   brightness: float = 0.7, pick_position: float = 0.2, release: float = 0.05,
                   mute: float = 0.0) -> np.ndarray:
    """Plucked string: Karplus-Strong, vectorised one period at a time.

    y[n] = g/2 * (y[n-N] + y[n-N-1]): every sample of a period depends only on the previous
    period, so each period is one numpy operation. `mute` (0..1) is a palm mute: much shorter
    decay and a darker excitation. The loop length is rounded to whole samples (pitch error of
    at most half a sample per period: a few cents in the guitar register).
    """
    n_rel = seconds_to_samples(release, sample_rate)
    n = n_hold + n_rel
    period = max(2, int(round(sample_rate / freq - 0.5)))
    if mute > 0:
        t60 = t60 * (1.0 - mute) + 0.12 * mute
        brightness = brightness * (1.0 - 0.7 * mute)
    g = 10.0 ** (-3.0 / (t60 * sample_rate / (period + 0.5)))
    excite = rng.uniform(-1.0, 1.0, period)
    # Darker pick: one-pole low-pass on the burst; pick position: comb notch.
    alpha = 0.05 + 0.9 * brightness
    excite = _signal().lfilter([alpha], [1.0, alpha - 1.0], excite)
    shift = max(1, int(pick_position * period))
    excite = excite - np.roll(excite, shift)
    excite -= excite.mean()
    y = np.zeros(n + period + 1, dtype=np.float64)
    y[1 : period + 1] = excite  # y[0] is a zero guard so y[n-N-1] exists for the first period
    pos = period + 1
    end = n + 1
    while pos < end:
        stop = min(pos + period, end)
        y[pos:stop] = 0.5 * g * (y[pos - period : stop - period] + y[pos - period - 1 : stop - period - 1])
        pos = stop
    x = y[1 : n + 1]
    return normalise(x * note_envelope(n_hold, n_rel, sample_rate, attack=0.0005))


def piano_note(freq: float, n_hold: int, sample_rate: int, rng: np.random.Generator, *, brightness: float = 0.6,
               release: float = 0.2) -> np.ndarray:
    """Acoustic-piano-like tone: stretched (inharmonic) partials whose upper ones die faster, a
    two-stage decay (loud prompt sound, long quiet aftersound) and a short felt-hammer thump."""
    n_rel = seconds_to_samples(release, sample_rate)
    n = n_hold + n_rel
    t = time_axis(n, sample_rate)
    count = int(min(18, 0.45 * sample_rate // freq))
    k = np.arange(1, count + 1, dtype=np.float64)
    inharmonicity = 3e-4 * (freq / 261.6) ** 0.5  # real strings: stiffer (more stretched) up the keyboard
    partial_hz = k * freq * np.sqrt(1.0 + inharmonicity * k * k)
    amps = k ** -1.1 * np.exp(-(k - 1.0) * (0.9 - 0.6 * brightness) * 0.5)
    t60_low = float(np.clip(9.0 * (261.6 / freq) ** 0.7, 2.0, 16.0))
    t60s = t60_low / (1.0 + 0.25 * (k - 1.0))
    x = np.zeros(n)
    for hz, amp, t60 in zip(partial_hz, amps, t60s):  # one partial at a time: long notes stay small in memory
        x += amp * np.sin(TWO_PI * hz * t) * (0.7 * decay(t, 0.25 * t60) + 0.3 * decay(t, t60))
    thump = lowpass(rng.standard_normal(n), 1200.0, sample_rate) * np.exp(-t / 0.004)
    x += 0.15 * thump * float(np.max(np.abs(x)))
    return normalise(x * note_envelope(n_hold, n_rel, sample_rate, attack=0.001))


def _filter_sweep(x: np.ndarray, t: np.ndarray, cutoff: float, env: float, sweep_s: float,
                  sample_rate: int) -> np.ndarray:
    """A low-pass whose cutoff falls from cutoff*(1+env) to cutoff: two fixed filters crossfaded,
    much cheaper than a time-varying filter and close enough for a short sweep."""
    dark = lowpass(x, cutoff, sample_rate, order=2)
    bright = lowpass(x, cutoff * (1.0 + env), sample_rate, order=2)
    return dark + (bright - dark) * np.exp(-t / sweep_s)


def synth_bass_note(freq: float, n_hold: int, sample_rate: int, rng: np.random.Generator, *,
                    cutoff: float = 900.0, env: float = 2.5, sub: float = 0.6, release: float = 0.05) -> np.ndarray:
    """Analogue-style synth bass: saw plus a sine sub-octave through a plucky low-pass sweep."""
    n_rel = seconds_to_samples(release, sample_rate)
    n = n_hold + n_rel
    t = time_axis(n, sample_rate)
    saw = polyblep_saw(freq, n, sample_rate, float(rng.random()))
    x = _filter_sweep(saw, t, cutoff, env, 0.08, sample_rate) + sub * np.sin(TWO_PI * 0.5 * freq * t)
    x = np.tanh(1.5 * x / max(np.max(np.abs(x)), 1e-9))
    return normalise(x * note_envelope(n_hold, n_rel, sample_rate, attack=0.002))


def pluck_note(freq: float, n_hold: int, sample_rate: int, rng: np.random.Generator, *, cutoff: float = 3000.0,
               brightness: float = 0.6, t60: float = 0.9, release: float = 0.12) -> np.ndarray:
    """Synth pluck for arpeggios: two detuned saws, a fast filter sweep and a short decay."""
    n_rel = seconds_to_samples(release, sample_rate)
    n = n_hold + n_rel
    t = time_axis(n, sample_rate)
    ratio = 2.0 ** (6.0 / 1200.0)
    saws = polyblep_saw(freq * ratio, n, sample_rate, float(rng.random()))
    saws += polyblep_saw(freq / ratio, n, sample_rate, float(rng.random()))
    x = _filter_sweep(saws, t, cutoff * (0.5 + brightness), 3.0, 0.05, sample_rate) * decay(t, t60)
    return normalise(x * note_envelope(n_hold, n_rel, sample_rate, attack=0.001))


PITCHED_VOICES = {"bass": bass_note, "synth_bass": synth_bass_note, "epiano": epiano_note, "piano": piano_note,
                  "pluck": pluck_note, "pad": pad_note, "string": karplus_strong}


# How long each voice takes to die away after note-off (seconds): the arranger applies this
# release itself when it cuts one long rendered note to each event's length.
RELEASE_SECONDS = {"bass": 0.06, "synth_bass": 0.05, "epiano": 0.25, "piano": 0.2, "pluck": 0.12, "pad": 0.9,
                   "string": 0.05}


# Voices whose tone brightens with velocity (they take a `brightness` parameter).
VELOCITY_BRIGHT = frozenset({"epiano", "piano", "pluck"})
