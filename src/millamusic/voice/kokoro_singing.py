"""The kokoro engine's decoder side: one phrase's plan sung by Kokoro-82M (or taken from the
phrase cache), the lead-in it keeps silent trimmed, the decoder's hop-rate tones notched, the
edges faded; notes sung under the ceiling moved back up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from millamusic.core.audio import fade_edges
from millamusic.voice import kokoro_model
from millamusic.voice.kokoro_ceiling import shift_up
from millamusic.voice.kokoro_plan import Plan, hold_energy
from millamusic.voice.phrase_cache import load_samples, store_samples

SR = kokoro_model.SAMPLE_RATE
NOTCH_HZ = (4800.0, 9600.0)  # the decoder's iSTFT hop-rate tones on sustained vowels


@dataclass(frozen=True)
class PhraseVoice:
    """What every phrase of a render is sung with."""

    model: kokoro_model.Model
    voice: kokoro_model.Voice
    method: str  # the ceiling method
    cache: Path | None  # the phrase cache folder, or None

    def ids(self, tokens: tuple[str, ...] | list[str]) -> np.ndarray:
        vocab = kokoro_model.vocabulary()
        return np.array([[0] + [vocab[t] for t in tokens] + [0]], dtype=np.int64)


def sing_plan(plan: Plan, voice: PhraseVoice, path: Path | None) -> tuple[np.ndarray, bool]:
    """Mono 24 kHz samples of a plan (the lead trimmed, edges faded) and whether they came from
    the phrase cache entry `path` (None: no phrase cache)."""
    cached = load_samples(path)  # None: sung (again) and stored below
    if cached is not None:
        return cached, True
    ids = voice.ids(plan.symbols)
    style = voice.voice.style(len(plan.symbols))
    durations = np.asarray(plan.durations, dtype=np.float32)
    _, energy = voice.model.natural_prosody(ids, style, durations)
    energy = hold_energy(energy, plan)
    f0 = np.asarray(plan.f0, dtype=np.float32)
    audio = voice.model.sing(ids, style, durations, f0, energy).astype(np.float64)
    shift = np.asarray(plan.shift)
    if voice.method != "none" and shift.any():
        audio = shift_up(audio, f0, shift, voice.method)
    audio = _notch(audio)[plan.durations[0] * kokoro_model.FRAME_SAMPLES :]
    audio = fade_edges(audio, SR).astype(np.float32)
    if path is not None:
        store_samples(path, audio)
    return audio, False


def _notch(audio: np.ndarray) -> np.ndarray:
    from scipy.signal import iirnotch, sosfiltfilt, tf2sos  # scipy: ~1 s to import

    for hz in NOTCH_HZ:
        if hz < SR / 2:
            audio = sosfiltfilt(tf2sos(*iirnotch(hz, 30.0, SR)), audio)
    return audio

