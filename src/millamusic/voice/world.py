"""WORLD (pyworld) helpers shared by the vocal engines: the bridged f0 that CheapTrick's window
follows, and the voice-colour controls applied to a spectral envelope or an aperiodicity before
resynthesis (formant shift, breathiness, the first formant tuned to a high note).

Shapes are (frames, bins) as pyworld returns them; the pitch is never touched here: WORLD
keeps f0 and envelope apart.
"""

from __future__ import annotations

import numpy as np


def bridge_f0(f0: np.ndarray) -> np.ndarray:
    """f0 with unvoiced frames filled by linear interpolation (for CheapTrick only)."""
    voiced = np.flatnonzero(f0 > 0)
    if len(voiced) == 0:
        return np.full_like(f0, 200.0)
    return np.interp(np.arange(len(f0)), voiced, f0[voiced])


def shift_formants(envelope: np.ndarray, factor: float) -> np.ndarray:
    """Stretch an envelope (frames, bins) along frequency: formants move by `factor`.

    A factor above 1 is a shorter vocal tract (a younger, brighter or more female voice),
    below 1 a longer one. The pitch is untouched: WORLD keeps f0 and envelope apart. Bins
    beyond the top of the source repeat its last bin.
    """
    if abs(factor - 1.0) < 1e-6:
        return envelope
    bins = envelope.shape[1]
    source = np.clip(np.arange(bins) / factor, 0, bins - 1)
    i0 = np.floor(source).astype(int)
    i1 = np.minimum(i0 + 1, bins - 1)
    w = (source - i0)[None, :]
    log_env = np.log(np.maximum(envelope, 1e-20))
    return np.exp((1 - w) * log_env[:, i0] + w * log_env[:, i1])


def add_breathiness(ap: np.ndarray, amount: float, fs: int) -> np.ndarray:
    """Mix air into the voice: aperiodicity (frames, bins) raised towards 1, most above 2 kHz.

    `amount` 0 leaves the voice as analysed; 1 makes the top of the spectrum pure breath
    and the bottom a third breathy, so the pitch stays clear.
    """
    if amount <= 0:
        return ap
    freqs = np.linspace(0.0, fs / 2, ap.shape[1])
    weight = amount * (0.33 + 0.67 * np.clip((freqs - 500.0) / 1500.0, 0.0, 1.0))
    return 1.0 - (1.0 - ap) * (1.0 - weight[None, :])


def tune_first_formant(sp: np.ndarray, f0: np.ndarray, fs: int) -> np.ndarray:
    """Raise the envelope around f0 where the note is above the vowel's first formant.

    Sung high, an 'ee' (F1 ~ 300 Hz) has no harmonic near its F1 and loses its
    fundamental; sopranos open the vowel so F1 follows f0. Here the strongest envelope
    level below f0 is moved up to a bell around f0 (3 dB down). Notes below F1 are
    left alone: there the envelope below f0 is lower than at f0. Shapes (frames, bins).
    """
    bins = sp.shape[1]
    hz_per_bin = fs / 2 / (bins - 1)
    k0 = f0 / hz_per_bin  # (frames,) fundamental in bins; 0 where unvoiced
    k = np.arange(bins)[None, :]
    below = k <= k0[:, None]
    lost = np.where(below, sp, 0.0).max(axis=1)  # (frames,) strongest level under f0
    width = np.maximum(0.35 * k0, 1.0)[:, None]
    bell = np.exp(-0.5 * ((k - k0[:, None]) / width) ** 2)
    lifted = np.maximum(sp, 0.5 * lost[:, None] * bell)
    return np.where((f0 > 0)[:, None], lifted, sp)
