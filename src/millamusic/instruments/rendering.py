"""The arranger's audio rendering: every part's note events played into a stereo stem, by the embedded
synthesiser (`instruments/synth.py`) through the preset's effects, or by TinySoundFont with a
user's SoundFont (`instruments/soundfont.py`); the stems balanced by loudness, the song's tail
faded, and all scaled together so their sum peaks at -1 dBFS.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pedalboard

from millamusic.core.errors import RenderError
from millamusic.dsp.loudness import integrated_loudness
from millamusic.instruments import soundfont as sf
from millamusic.instruments import synth
from millamusic.instruments.midi_file import midi_bytes
from millamusic.instruments.parts import DRUM_CHANNEL, Arrangement, NoteEvent, Part, part_rng
from millamusic.instruments.presets import GM_DRUMS
from millamusic.music.score import Score
from millamusic.music.theory import midi_to_hz

SUM_PEAK_DBFS = -1.0  # the stems are scaled together so that their sum peaks here
STEM_PEAK_MAX_DBFS = -3.0  # ... unless that would push one stem above this


class _NoteBank:
    """Renders each distinct (pitch, velocity layer, articulation, variant) note once, as long as
    its longest use, and cuts every event's note from it with the voice's own release.

    Our voices sound the same up to note-off whatever the note's length, so this is the same
    sound as rendering every length separately, at a fraction of the cost (pedalled arpeggios
    and held chords come in dozens of lengths)."""

    def __init__(self, voice: str, params: dict, sr: int, rng: np.random.Generator):
        self.fn = synth.PITCHED_VOICES[voice]
        self.voice = voice
        self.params = params
        self.sr = sr
        self.rng = rng
        self.release = synth.seconds_to_samples(synth.RELEASE_SECONDS[voice], sr)
        self.longest: dict[tuple, int] = {}
        self.rendered: dict[tuple, np.ndarray] = {}

    def key(self, ev: NoteEvent, variant: int = 0) -> tuple:
        return (ev.pitch, min(7, ev.velocity // 16), ev.articulation, variant)

    def want(self, key: tuple, hold: int) -> None:
        self.longest[key] = max(self.longest.get(key, 0), hold)

    def note(self, key: tuple, hold: int) -> np.ndarray:
        base = self.rendered.get(key)
        if base is None:
            pitch, layer, articulation, _ = key
            extra: dict = {"release": 0.002}
            if self.voice in synth.VELOCITY_BRIGHT:
                extra["brightness"] = 0.3 + 0.08 * layer
            if articulation == "mute" and self.voice == "string":
                extra["mute"] = 0.85
            base = self.fn(midi_to_hz(pitch), self.longest[key] + self.release, self.sr, self.rng,
                           **{**self.params, **extra})
            self.rendered[key] = base
        n = min(hold + self.release, base.shape[-1])
        out = base[..., :n].copy()
        fade = n - min(hold, n)
        if fade > 0:
            out[..., n - fade:] *= (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade))).astype(np.float32)
        return out


def _pan_gains(pan: float) -> tuple[float, float]:
    theta = (float(np.clip(pan, -1.0, 1.0)) + 1.0) * np.pi / 4.0
    return float(np.cos(theta)), float(np.sin(theta))


def _add(out: np.ndarray, start: int, buf: np.ndarray, gains: tuple[float, float]) -> None:
    n = out.shape[1]
    if start >= n:
        return
    length = min(buf.shape[-1], n - start)
    if buf.ndim == 1:
        out[0, start : start + length] += gains[0] * buf[:length]
        out[1, start : start + length] += gains[1] * buf[:length]
    else:
        out[0, start : start + length] += gains[0] * buf[0, :length]
        out[1, start : start + length] += gains[1] * buf[1, :length]


def _render_drums(events: list[NoteEvent], drums: dict, seed: int, sr: int, score: Score, frames: int) -> np.ndarray:
    rng = part_rng(seed, "kit")
    kit: dict[str, np.ndarray] = {}
    for voice, (kind, params) in drums["kit"].items():
        if kind in ("crash", "ride"):  # two decorrelated cymbals: a wide one
            kit[voice] = np.stack([synth.drum_voice(kind, sr, rng, **params) for _ in range(2)])
        else:
            kit[voice] = synth.drum_voice(kind, sr, rng, **params)
    by_note = {GM_DRUMS[v]: v for v in kit}
    out = np.zeros((2, frames), dtype=np.float32)
    choke = synth.seconds_to_samples(0.02, sr)
    for ev in events:
        voice = by_note[ev.pitch]
        buf = kit[voice]
        start, length = score.span_seconds(ev.start_beat, ev.length_beats)  # on the tempo map
        if voice == "open_hat":
            hold = synth.seconds_to_samples(length, sr)
            if hold + choke < buf.shape[-1]:
                buf = buf[: hold + choke].copy()
                buf[hold:] *= np.linspace(1.0, 0.0, choke, dtype=np.float32)
        gain = drums["gain"][voice] * (ev.velocity / 127.0) ** 1.6
        left, right = _pan_gains(drums["pan"].get(voice, 0.0))
        _add(out, int(round(start * sr)), buf, (gain * left, gain * right))
    return _apply_fx(out, drums["fx"], sr)


def _render_instrument(events: list[NoteEvent], cfg: dict, seed: int, name: str, sr: int, score: Score,
                       frames: int) -> np.ndarray:
    """One pitched part. A double-tracked part is played twice (take B a few ms late, different
    plucks), each take through the effects on its own side, then spread."""
    rng = part_rng(seed, f"synth-{name}")
    bank = _NoteBank(cfg["voice"], dict(cfg.get("params", {})), sr, rng)
    takes = 2 if cfg.get("double") else 1
    variants = 3 if cfg["voice"] == "string" else 1  # plucked strings: no two strokes alike
    plan = []
    for take in range(takes):
        for ev in events:
            key = bank.key(ev, take * variants + int(rng.integers(variants)))
            start, length = score.span_seconds(ev.start_beat, ev.length_beats)  # on the tempo map
            hold = max(1, int(round(length * sr)))
            delay = float(rng.uniform(0.005, 0.015)) if take else 0.0
            bank.want(key, hold)
            plan.append((take, ev, key, hold, int(round((start + delay) * sr))))
    lo, hi = cfg.get("range", [0, 127])
    spread = cfg.get("spread", 0.0)
    out = np.zeros((2, frames), dtype=np.float32)
    for take, ev, key, hold, start in plan:
        buf = bank.note(key, hold)
        gain = (ev.velocity / 127.0) ** 1.5 * (0.8 if ev.articulation == "mute" else 1.0)
        if takes == 2:
            gains = (gain, 0.0) if take == 0 else (0.0, gain)
        elif buf.ndim == 2:  # a stereo voice (pad) brings its own image
            gains = (gain, gain)
        else:
            pan = spread * (2.0 * (ev.pitch - lo) / max(hi - lo, 1) - 1.0) if spread else cfg.get("pan", 0.0)
            left, right = _pan_gains(pan)
            gains = (gain * left, gain * right)
        _add(out, start, buf, gains)
    out = _apply_fx(out, cfg.get("fx", []), sr)
    if takes == 2:
        a, b = _pan_gains(-spread)
        left, right = a * out[0] + b * out[1], b * out[0] + a * out[1]
        out = np.stack([left, right]).astype(np.float32)
    return out


def _apply_fx(samples: np.ndarray, chain: list, sr: int) -> np.ndarray:
    """The preset's pedalboard chain on a whole stem, fed at peak 0 dBFS so drive settings mean the same
    thing for every song."""
    if not chain:
        return samples
    peak = float(np.max(np.abs(samples)))
    if peak > 0:
        samples = samples * np.float32(1.0 / peak)

    board = pedalboard.Pedalboard([getattr(pedalboard, name)(**params) for name, params in chain])
    return board(np.ascontiguousarray(samples, dtype=np.float32), sr).astype(np.float32, copy=False)


def fade_tail(samples: np.ndarray, score: Score, sr: int) -> None:
    """The ending: after the last bar everything decays (exponentially, -48 dB by the end of the
    tail, so even a sustaining distorted guitar rings down) and the last 40 % of the tail is faded
    to exact silence."""
    start = min(samples.shape[1], int(round(score.music_seconds * sr)))
    n = samples.shape[1] - start
    if n <= 1:
        return
    t = np.arange(n, dtype=np.float64) / n
    env = 10.0 ** (-48.0 / 20.0 * t)
    fade = int(0.4 * n)
    if fade > 1:
        env[-fade:] *= 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    samples[:, start:] *= env.astype(np.float32)


def sum_stems(stems: dict[str, np.ndarray]) -> np.ndarray:
    """The backing mix: the plain sum of the stems (float32, (2, frames))."""
    values = list(stems.values())
    total = values[0].copy()
    for x in values[1:]:
        total += x
    return total


def _balance(x: np.ndarray, relative_lu: float, sr: int) -> None:
    """Scale a stem so its loudness sits `relative_lu` from the drums' reference level."""
    loudness = integrated_loudness(x, sr)
    if np.isfinite(loudness):
        x *= np.float32(10 ** ((-20.0 + relative_lu - loudness) / 20))


def _render_stem(part: Part, score: Score, preset: dict, seed: int, sample_rate: int,
                 soundfont: Path | None) -> np.ndarray:
    frames = score.total_frames(sample_rate)
    cfg = preset["drums"] if part.name == "drums" else preset["instruments"][part.name]
    if soundfont is not None:  # the user's instruments: their sound, none of our effects

        x = sf.render_midi(midi_bytes(score, [part]), soundfont, sample_rate=sample_rate, frames=frames)
        if part.events and not np.any(x):  # a silent part is a font that could not play it: say so
            bank = "128 (drum kit)" if part.channel == DRUM_CHANNEL else "0"
            raise RenderError(f"the SoundFont {soundfont} made no sound for part {part.name!r} (GM program "
                              f"{part.program}, bank {bank}). Fix: use a General MIDI SoundFont with that preset, "
                              "or render without --soundfont")
    elif part.name == "drums":
        x = _render_drums(part.events, cfg, seed, sample_rate, score, frames)
    else:
        x = _render_instrument(part.events, cfg, seed, part.name, sample_rate, score, frames)
    fade_tail(x, score, sample_rate)
    _balance(x, cfg["balance"], sample_rate)
    return x


def render_arrangement(score: Score, arrangement: Arrangement, seed: int, sample_rate: int,
                       soundfont: Path | None = None) -> dict[str, np.ndarray]:
    """Float32 (2, frames) stems balanced by loudness, scaled together so the sum peaks at -1 dBFS.

    Parts render in parallel threads (numpy and pedalboard release the GIL); each part has its
    own random streams, so the result does not depend on the order they finish in.
    """

    workers = max(1, min(len(arrangement.parts), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rendered = list(pool.map(
            lambda part: _render_stem(part, score, arrangement.preset, seed, sample_rate, soundfont),
            arrangement.parts))
    stems = {part.name: x for part, x in zip(arrangement.parts, rendered) if np.any(x)}
    if stems:
        sum_peak = float(np.max(np.abs(sum_stems(stems))))
        stem_peak = max(float(np.max(np.abs(x))) for x in stems.values())
        if sum_peak > 0:
            scale = min(10 ** (SUM_PEAK_DBFS / 20) / sum_peak, 10 ** (STEM_PEAK_MAX_DBFS / 20) / stem_peak)
            for x in stems.values():
                x *= np.float32(scale)
    return stems
