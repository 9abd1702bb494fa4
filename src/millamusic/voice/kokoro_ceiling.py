"""Kokoro's clean ceiling: the highest note a voice sings clean, measured once per voice (and kept
beside the phrase cache), and the notes sung under it moved back up.

Above the ceiling the decoder growls and reads octaves low, so the plan sings those notes lower;
`shift_up` moves them back: `rubberband` (pedalboard's formant-preserving shifter, the whole
phrase by the largest amount) or `world` (WORLD re-synthesis driven by the F0 that was fed, only
the notes above).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pedalboard
import pyworld

from millamusic.music.theory import midi_to_hz
from millamusic.voice import kokoro_model
from millamusic.voice.kokoro_model import HALF_S
from millamusic.voice.kokoro_plan import FRAME_S, LEAD_FRAMES, TAIL_FRAMES, Plan, hold_energy
from millamusic.voice.world import bridge_f0

SR = kokoro_model.SAMPLE_RATE
CEILING_SCAN = (60, 84)  # C4..C6: the notes tried when a voice's ceiling is measured
_CEILING_TOKENS = ("l", "ˈ", "ɑ", "l", "ˈ", "ɑ")


def clean_ceiling(model: kokoro_model.Model, voice: kokoro_model.Voice) -> int:
    """The last clean note of a voice, measured: a held "la-la" sung on each note from C4 up;
    the ceiling is the note under the first one whose held vowel is unvoiced for more than a
    fifth of its frames or more than 50 cents off (median), as pyworld's DIO hears it."""

    vocab = kokoro_model.vocabulary()
    ids = np.array([[0] + [vocab[t] for t in _CEILING_TOKENS] + [0]], dtype=np.int64)
    durations = np.array([LEAD_FRAMES, 2, 0, 8, 2, 0, 24, TAIL_FRAMES], dtype=np.float32)
    style = voice.style(len(_CEILING_TOKENS))
    _, energy = model.natural_prosody(ids, style, durations)
    plan = Plan(_CEILING_TOKENS, tuple(int(d) for d in durations), (), (), ((2 * 32, 2 * 56),), (), 0.0)
    energy = hold_energy(energy, plan)
    held = slice(int((LEAD_FRAMES + 12 + 6) * FRAME_S * SR), int((LEAD_FRAMES + 12 + 22) * FRAME_S * SR))
    for midi in range(*CEILING_SCAN):
        f0 = np.zeros(int(durations.sum()) * 2, dtype=np.float32)
        f0[2 * LEAD_FRAMES : -2 * TAIL_FRAMES] = midi_to_hz(midi)
        x = model.sing(ids, style, durations, f0, energy).astype(np.float64)[held]
        track, t = pyworld.dio(x, SR, f0_floor=80.0, f0_ceil=1600.0, frame_period=5.0)
        track = pyworld.stonemask(x, track, t, SR)
        voiced = track[track > 0]
        if len(voiced) < 0.8 * len(track) or np.median(np.abs(1200 * np.log2(voiced / midi_to_hz(midi)))) > 50:
            return midi - 1
    return CEILING_SCAN[1] - 1


def ceiling_of(model: kokoro_model.Model, voice: kokoro_model.Voice, cache: Path | None) -> int:
    """The voice's ceiling: the profile's or the table's, else measured once and kept beside the
    phrase cache (keyed by the voice's content)."""
    if voice.ceiling is not None:
        return voice.ceiling
    path = cache / "ceilings" / f"{voice.sha256}.json" if cache is not None else None
    if path is not None and path.is_file():
        try:
            return int(json.loads(path.read_text())["ceiling"])
        except (ValueError, KeyError, OSError):
            pass
    ceiling = _measured_ceiling(model, voice)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ceiling": ceiling, "voice": voice.name}))
        os.replace(tmp, path)
    return ceiling


_MEASURED: dict[str, int] = {}


def _measured_ceiling(model: kokoro_model.Model, voice: kokoro_model.Voice) -> int:
    if voice.sha256 not in _MEASURED:
        _MEASURED[voice.sha256] = clean_ceiling(model, voice)
    return _MEASURED[voice.sha256]


def shift_up(audio: np.ndarray, f0: np.ndarray, shift: np.ndarray, method: str) -> np.ndarray:
    """Move the notes that were sung under the ceiling back up by `shift` semitones."""
    if method == "rubberband":

        semitones = float(np.max(shift))
        out = pedalboard.time_stretch(audio[None, :].astype(np.float32), SR, 1.0, pitch_shift_in_semitones=semitones,
                                      preserve_formants=True, high_quality=True)[0]
        return out[: len(audio)].astype(np.float64) if len(out) >= len(audio) else np.pad(out, (0, len(audio) - len(out)))

    # WORLD analysis driven by the F0 that was fed (a tracker would be fooled exactly where the
    # voice is least clean); the envelope is kept, so the formants stay where they were.
    period_ms = HALF_S * 1000.0
    times = (np.arange(len(f0)) + 0.5) * HALF_S
    f0_fed = np.ascontiguousarray(f0, dtype=np.float64)
    sp = pyworld.cheaptrick(audio, bridge_f0(f0_fed), times, SR)
    ap = pyworld.d4c(audio, f0_fed, times, SR)
    target = np.ascontiguousarray(f0_fed * 2.0 ** (shift / 12.0))
    y = pyworld.synthesize(target, sp, ap, SR, period_ms)
    # only the shifted stretches take WORLD's sound; the rest keeps the decoder's own
    gain = np.repeat((shift > 1e-3).astype(float), int(round(HALF_S * SR)))
    gain = np.convolve(np.pad(gain, 120, mode="edge"), np.hanning(241) / np.hanning(241).sum(), mode="same")[120:-120]
    n = min(len(audio), len(y), len(gain))
    out = audio.copy()
    out[:n] = (1 - gain[:n]) * audio[:n] + gain[:n] * y[:n]
    return out
