"""The embedded `arranger` backing engine: score -> one stem per instrument + a General-MIDI file.

Rules, not trained weights. One list of note events is generated per part (the preset's patterns
x the score's bars, chords and sections, humanised from the request seed); the audio stems and
the Standard MIDI File are both rendered from those events, so the MIDI is what you hear.

Everything a genre or style decides is data in `millamusic.engines.arranger_presets` (documented
in docs/arranger.md); this module only interprets it. Instrument synthesis is in `millamusic.synth`;
with a user's SoundFont the parts are rendered by FluidSynth instead (`millamusic.soundfont`).
"""

from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from millamusic import synth
from millamusic.audio import Audio
from millamusic.engines.arranger_presets import (
    ACCENT,
    GENRE_DEFAULT,
    GM_DRUMS,
    PRESET_WORDS,
    PRESETS,
    STYLE_MODS,
)
from millamusic.engines.base import (
    BackingEngine,
    BackingRequest,
    BackingResult,
    EngineInfo,
)
from millamusic.errors import RenderError
from millamusic.master import integrated_loudness
from millamusic.score import Bar, Score
from millamusic.theory import Chord, midi_to_hz, parse_chord

PPQ = 480  # MIDI ticks per quarter note
STEPS_PER_BEAT = 4  # pattern resolution: 16th notes in 4/4
DRUM_CHANNEL = 9  # MIDI channel 10
OPTION_NAMES = ("preset", "overrides", "soundfont")

SUM_PEAK_DBFS = -1.0  # the stems are scaled together so that their sum peaks here
STEM_PEAK_MAX_DBFS = -3.0  # ... unless that would push one stem above this

# mido key names by signed count of sharps.
_MAJOR_KEYS = {0: "C", 1: "G", 2: "D", 3: "A", 4: "E", 5: "B", 6: "F#", 7: "C#",
               -1: "F", -2: "Bb", -3: "Eb", -4: "Ab", -5: "Db", -6: "Gb", -7: "Cb"}
_MINOR_KEYS = {0: "Am", 1: "Em", 2: "Bm", 3: "F#m", 4: "C#m", 5: "G#m", 6: "D#m", 7: "A#m",
               -1: "Dm", -2: "Gm", -3: "Cm", -4: "Fm", -5: "Bbm", -6: "Ebm", -7: "Abm"}


# ================================ events ================================

@dataclass(frozen=True)
class NoteEvent:
    """One note of one part; beats are score beats (tempo is constant)."""

    start_beat: float
    length_beats: float
    pitch: int  # MIDI note (GM drum note for drums)
    velocity: int  # 1..127
    articulation: str = ""  # "mute" for palm-muted guitar


@dataclass
class Part:
    name: str
    program: int  # General MIDI program (0-based)
    channel: int
    events: list[NoteEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Arrangement:
    preset_name: str
    style_words: tuple[str, ...]  # the style words that chose or changed the preset
    preset: dict
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class _BarContext:
    bar: Bar
    steps: int
    level: str
    energy: float
    crash: bool
    fill: str | None  # name of the drum fill at the end of this bar
    ending: bool
    chords: tuple[Chord, ...]  # the chord under each step
    next_chord: Chord | None  # the chord on the next bar's downbeat


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def option_problems(options: dict) -> list[tuple[str, str, str]]:
    """(option, problem, fix) for spec options the arranger does not know; checked when the spec loads."""
    problems = [(key, "unknown arranger option", f"use one of: {', '.join(OPTION_NAMES)}")
                for key in sorted(set(options) - set(OPTION_NAMES))]
    if "preset" in options and (not isinstance(options["preset"], str) or options["preset"] not in PRESETS):
        problems.append(("preset", "no such arranger preset", f"use one of: {', '.join(PRESETS)}"))
    return problems


def resolve_preset(genre: str, style: tuple[str, ...] = (), options: dict | None = None) -> tuple[str, dict, list[str]]:
    """(preset name, preset with style words and option overrides merged in, style words used).

    The preset is `options["preset"]` if given, else the first style word (or phrase) that names
    one for this genre (PRESET_WORDS), else the genre's default.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise RenderError(f"arranger options {unknown} are not known; valid options: {', '.join(OPTION_NAMES)}")
    genre_name = genre.strip().lower()
    if genre_name not in GENRE_DEFAULT:
        raise RenderError(f"arranger has no preset for genre {genre!r}; valid genres: {', '.join(sorted(GENRE_DEFAULT))}")
    words = [w.strip().lower() for w in style if w.strip()]
    used: list[str] = []
    name = options.get("preset")
    if name is not None:
        if name not in PRESETS:
            raise RenderError(f"arranger preset {name!r} does not exist; valid presets: {', '.join(PRESETS)}")
    else:
        name = next((PRESET_WORDS[genre_name][w] for w in words if w in PRESET_WORDS[genre_name]), None)
        if name is None:
            name = GENRE_DEFAULT[genre_name]
        else:
            used.append(next(w for w in words if PRESET_WORDS[genre_name].get(w) == name))
    preset = PRESETS[name]
    for word in words:
        if word in STYLE_MODS:
            preset = _merge(preset, STYLE_MODS[word])
            used.append(word)
    overrides = options.get("overrides")
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise RenderError("arranger option 'overrides' must be a mapping of preset fields (see docs/arranger.md)")
        preset = _merge(preset, overrides)
    return name, preset, used


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per part (and per use), so one part never shifts another."""
    key = [ord(c) for c in stream]
    return np.random.default_rng(np.random.SeedSequence(seed & ((1 << 64) - 1), spawn_key=key))


def _tile(pattern, steps: int) -> str:
    if isinstance(pattern, dict):  # {beats_per_bar: pattern}
        pattern = pattern.get(steps // STEPS_PER_BEAT, pattern.get(4, next(iter(pattern.values()))))
    return (pattern * (steps // len(pattern) + 1))[:steps]


def _bar_contexts(score: Score, preset: dict) -> list[_BarContext]:
    """Where every bar sits in the song: its groove level, energy, crash, fill and chords."""
    bars = score.bars
    sections = preset["sections"]
    drums = preset["drums"]
    chord_cache: dict[str, Chord] = {}

    def chord(symbol: str) -> Chord:
        if symbol not in chord_cache:
            chord_cache[symbol] = parse_chord(symbol)
        return chord_cache[symbol]

    def plan(kind: str) -> dict:
        return sections.get(kind, sections["other"])

    out = []
    for i, bar in enumerate(bars):
        section = score.sections[bar.section_index]
        feel = plan(section.kind)
        position = bar.index - section.start_bar
        level = feel["level"]
        if "second_half" in feel and position >= section.bars // 2:
            level = feel["second_half"]
        e0, e1 = feel["energy"]
        energy = (e0 + (e1 - e0) * position / max(section.bars - 1, 1)) * preset["energy_scale"]
        ending = i == len(bars) - 1
        grooving = bool(drums["grooves"].get(level))
        fill = None
        if not ending and grooving:
            nxt = bars[i + 1]
            if i + 1 == len(bars) - 1:
                fill = drums["fill_before"].get("ending")
            elif nxt.section_index != bar.section_index:
                next_kind = score.sections[nxt.section_index].kind
                if level == "lift" and next_kind == drums.get("build_into"):
                    fill = "build"
                else:
                    fill = drums["fill_before"].get(next_kind, drums["fill_before"].get("*"))
            elif drums.get("phrase_fill") and (position + 1) % drums["phrase_fill"]["every"] == 0:
                fill = drums["phrase_fill"]["fill"]
        steps = bar.beats * STEPS_PER_BEAT
        out.append(_BarContext(
            bar=bar,
            steps=steps,
            level=level,
            energy=energy,
            crash=position == 0 and i > 0 and (grooving or ending),
            fill=fill,
            ending=ending,
            chords=tuple(chord(bar.chord_at(s / STEPS_PER_BEAT)) for s in range(steps)),
            next_chord=chord(bars[i + 1].chords[0]) if i + 1 < len(bars) else None,
        ))
    return out


def _velocity(base: float, rng: np.random.Generator, spread: float) -> int:
    return int(np.clip(round(base * (1.0 + spread * rng.standard_normal())), 1, 127))


def _jitter_beats(rng: np.random.Generator, sd_ms: float, spb: float) -> float:
    if sd_ms <= 0:
        return 0.0
    return float(np.clip(rng.normal(0.0, sd_ms), -2.5 * sd_ms, 2.5 * sd_ms)) / 1000.0 / spb


def _step_beat(step: int, swing: float) -> float:
    """Beat offset of a 16th step within its bar; off-beat 16ths are late by `swing` of a 16th."""
    return (step + (swing if step % 2 else 0.0)) / STEPS_PER_BEAT


def _drum_events(contexts: list[_BarContext], preset: dict, rng: np.random.Generator, spb: float) -> list[NoteEvent]:
    drums = preset["drums"]
    spread = preset["velocity_spread"]
    events = []
    for ctx in contexts:
        steps = ctx.steps
        hits: dict[tuple[int, str], float] = {}
        if ctx.ending:
            hits = {(0, "kick"): 1.15, (0, "crash"): 1.1}
        else:
            for row, pattern in drums["grooves"].get(ctx.level, {}).items():
                for s, ch in enumerate(_tile(pattern, steps)):
                    if ch != ".":
                        hits[(s, "open_hat" if row == "hat" and ch == "O" else row)] = ACCENT[ch]
            if ctx.crash:  # the crash replaces the hat or ride on the downbeat
                for voice in ("hat", "open_hat", "ride"):
                    hits.pop((0, voice), None)
                hits[(0, "crash")] = 1.1
                hits[(0, "kick")] = max(hits.get((0, "kick"), 0.0), 1.1)
            if ctx.fill:
                fill = drums["fills"][ctx.fill]
                length = min(steps, STEPS_PER_BEAT * fill["beats"])
                start = steps - length
                hits = {k: v for k, v in hits.items() if k[0] < start or k[1] in ("hat", "ride") and start == 0}
                c0, c1 = fill["crescendo"]
                for voice, pattern in fill["rows"].items():
                    for s, ch in enumerate(_tile(pattern, length)):
                        if ch != ".":
                            ramp = c0 + (c1 - c0) * s / max(length - 1, 1)
                            hits[(start + s, voice)] = ACCENT[ch] * ramp
        for (s, voice), accent in sorted(hits.items()):
            start = ctx.bar.start_beat + _step_beat(s, preset["swing"]) + _jitter_beats(rng, drums["time_ms"], spb)
            vel = _velocity(100.0 * ctx.energy * accent, rng, spread)
            events.append(NoteEvent(max(0.0, start), 1.0 / STEPS_PER_BEAT, GM_DRUMS[voice], vel))
    events.sort(key=lambda e: (e.start_beat, e.pitch))
    # An open hat rings until the next hat (choke); its MIDI length says so too.
    hats = [e for e in events if e.pitch in (GM_DRUMS["hat"], GM_DRUMS["open_hat"])]
    choked = {}
    for a, b in zip(hats, hats[1:]):
        if a.pitch == GM_DRUMS["open_hat"]:
            choked[id(a)] = NoteEvent(a.start_beat, max(0.05, b.start_beat - a.start_beat), a.pitch, a.velocity)
    return [choked.get(id(e), e) for e in events]


def _strikes(pattern: str, ctx: _BarContext, pedal: bool) -> list[list]:
    """[step, length_steps, char, chord] for each strike in this bar; holds re-strike on chord
    changes. With `pedal` every strike rings on until the chord changes (or the bar ends)."""
    pat = "x" + "-" * (ctx.steps - 1) if ctx.ending else _tile(pattern, ctx.steps)
    out: list[list] = []
    current = None
    for s, ch in enumerate(pat):
        chord = ctx.chords[s]
        if ch == ".":
            current = None
        elif ch == "-":
            if current is None:
                continue
            if chord.symbol != current[3].symbol:
                current = [s, 1, "x", chord]
                out.append(current)
            else:
                current[1] += 1
        else:
            current = [s, 1, ch, chord]
            out.append(current)
    if pedal and not ctx.ending:
        for strike in out:
            end = strike[0] + 1
            while end < ctx.steps and ctx.chords[end].symbol == strike[3].symbol:
                end += 1
            strike[1] = max(strike[1], end - strike[0])
    return out


def voice_chord(pitch_classes: tuple[int, ...], previous: tuple[int, ...] | None, low: int, high: int) -> tuple[int, ...]:
    """Close-ish voicing of `pitch_classes` inside [low, high] that moves least from `previous`."""
    options = [[p for p in range(low, high + 1) if p % 12 == pc] for pc in pitch_classes]
    centre = (low + high) / 2.0
    best, best_cost = None, float("inf")
    for combo in itertools.product(*options):
        notes = tuple(sorted(combo))
        span = notes[-1] - notes[0]
        if span > 16 or any(b - a < 1 for a, b in zip(notes, notes[1:])):
            continue
        if previous:
            move = sum(min(abs(n - p) for p in previous) for n in notes)
            move += sum(min(abs(p - n) for n in notes) for p in previous)
            cost = move + 0.25 * abs(np.mean(notes) - centre) + 0.05 * span
        else:
            cost = abs(np.mean(notes) - centre) + 0.1 * span
        if cost < best_cost:
            best, best_cost = notes, cost
    if best is None:  # range too small for a close voicing: stack upwards from low
        best = tuple(sorted(low + (pc - low) % 12 for pc in pitch_classes))
    return best


def _fifth(chord: Chord) -> int:
    return 7 if 7 in chord.intervals else next((i for i in chord.intervals if i in (6, 8)), 7)


def _in_window(pc: int, low: int) -> int:
    """The pitch of pitch class `pc` in the octave [low, low + 12)."""
    return low + (pc - low) % 12


def _notes_for(ch: str, chord: Chord, cfg: dict, voicing: tuple[int, ...], next_chord: Chord | None) -> list[int]:
    """The pitches one pattern character plays on a chord, by the part's role."""
    role = cfg["role"]
    if role == "bass":
        low = cfg["low"]
        if ch == "u":
            return [_in_window(chord.bass_pc, low) + 12]
        if ch == "5":
            return [_in_window(chord.root_pc + _fifth(chord), low)]
        if ch == "a":  # approach: a semitone below the next chord's root (leading into it)
            target = next_chord.bass_pc if next_chord is not None else chord.bass_pc
            return [_in_window(target - 1, low)]
        return [_in_window(chord.bass_pc, low)]
    if role == "power":
        root = _in_window(chord.root_pc, cfg["low"])
        notes = [root, root + _fifth(chord), root + 12]
        third = next((i for i in chord.intervals if i in (3, 4)), None)
        if cfg.get("open_thirds") and ch != "m" and third is not None:  # open strums: the full chord, third on top
            notes.append(root + 12 + third)
        return notes
    if role == "arp":
        if ch.isdigit():
            index = int(ch) - 1
            return [voicing[index % len(voicing)] + 12 * (index // len(voicing))]
        if ch == "r":  # the highest root strictly below the voicing
            return [voicing[0] - ((voicing[0] - chord.root_pc) % 12 or 12)]
    return list(voicing)  # chords, and an arpeggio's 'x': the whole voiced chord


def _pitched_events(cfg: dict, contexts: list[_BarContext], preset: dict, rng: np.random.Generator,
                    spb: float, tail_beats: float) -> list[NoteEvent]:
    spread = preset["velocity_spread"]
    events: list[NoteEvent] = []
    voicing: tuple[int, ...] | None = None
    voiced_symbol = None
    patterns = cfg["patterns"]
    for ctx in contexts:
        pattern = patterns.get(ctx.level)
        if pattern is None and not ctx.ending:
            continue
        strikes = _strikes(pattern or "", ctx, cfg.get("pedal", False))
        for k, (step, steps, ch, chord) in enumerate(strikes):
            if "range" in cfg and (chord.symbol != voiced_symbol or voicing is None):
                voicing = voice_chord(chord.pitch_classes, voicing, *cfg["range"])
                voiced_symbol = chord.symbol
            is_final = ctx.ending and k == len(strikes) - 1
            start = ctx.bar.start_beat + _step_beat(step, preset["swing"]) + _jitter_beats(rng, cfg["time_ms"], spb)
            length = steps / STEPS_PER_BEAT
            length = length + preset["ring"] * tail_beats if is_final else length * cfg["legato"]
            base = 100.0 * ctx.energy * ACCENT.get(ch, 1.0) * cfg.get("velocity", 1.0)
            pitches = _notes_for("x" if is_final and ch.isdigit() else ch, chord, cfg, voicing or (), ctx.next_chord)
            mute = ch == "m"
            strum = cfg.get("strum_ms", cfg.get("roll_ms", 0.0)) / 1000.0 / spb
            if mute:
                strum *= 0.4
            vel = _velocity(base, rng, spread)
            for j, pitch in enumerate(pitches):
                if cfg["role"] == "power":  # a downstroke: low string first, each a little softer
                    offset, velocity = j * strum, max(1, vel - 4 * j)
                else:  # a rolled chord: loosely together, each key its own weight
                    offset = float(rng.uniform(0.0, strum)) if strum else 0.0
                    velocity = vel if len(pitches) == 1 else _velocity(base * 0.95, rng, spread)
                events.append(NoteEvent(max(0.0, start + offset), length * (0.55 if mute else 1.0), pitch, velocity,
                                        "mute" if mute else ""))
    events.sort(key=lambda e: (e.start_beat, e.pitch))
    return events


def arrange(score: Score, request: BackingRequest) -> Arrangement:
    """The note events of every part (what is rendered and written to MIDI)."""
    name, preset, used = resolve_preset(request.genre, tuple(request.style), request.options)
    contexts = _bar_contexts(score, preset)
    spb = score.seconds_per_beat
    tail_beats = score.tail_seconds / spb
    parts = [Part("drums", 0, DRUM_CHANNEL, _drum_events(contexts, preset, _rng(request.seed, "drums"), spb))]
    channels = (c for c in range(16) if c != DRUM_CHANNEL)
    for part_name, cfg in preset["instruments"].items():
        if cfg is None:  # an override set this instrument to null: leave it out
            continue
        events = _pitched_events(cfg, contexts, preset, _rng(request.seed, part_name), spb, tail_beats)
        parts.append(Part(part_name, cfg["program"], next(channels), events))
    return Arrangement(name, tuple(used), preset, tuple(parts))


# ================================ MIDI ================================

def mido_key_name(score: Score) -> str:
    key = score.key_value
    table = _MINOR_KEYS if key.mode == "minor" else _MAJOR_KEYS
    return table[key.sharps]


def midi_bytes(score: Score, parts: tuple[Part, ...] | list[Part]) -> bytes:
    """Type-1 SMF: conductor track (tempo, metre, key), then one track per part."""
    import mido

    beat_ticks = PPQ * 4 / score.beat_unit  # a score beat is one `beat_unit` note
    # UTF-8 text events: mido's default latin-1 cannot write a title like "東京" or "Ωmega"
    midi = mido.MidiFile(type=1, ticks_per_beat=PPQ, charset="utf-8")
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=score.title, time=0))
    conductor.append(mido.MetaMessage(
        "set_tempo", tempo=mido.bpm2tempo(score.tempo_bpm, time_signature=(score.beats_per_bar, score.beat_unit)),
        time=0))
    conductor.append(mido.MetaMessage("key_signature", key=mido_key_name(score), time=0))
    last_tick, beats = 0, None
    for bar in score.bars:
        if bar.beats != beats:
            tick = int(round(bar.start_beat * beat_ticks))
            conductor.append(mido.MetaMessage("time_signature", numerator=bar.beats, denominator=score.beat_unit,
                                              time=tick - last_tick))
            last_tick, beats = tick, bar.beats
    end_tick = int(round((score.total_beats + score.tail_seconds / score.seconds_per_beat) * beat_ticks))
    conductor.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - last_tick)))
    midi.tracks.append(conductor)

    for part in parts:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=part.name, time=0))
        if part.channel != DRUM_CHANNEL:
            track.append(mido.Message("program_change", program=part.program, channel=part.channel, time=0))
        timeline = []
        next_on: dict[int, int] = {}  # a repeated pitch ends before it is struck again
        for ev in sorted(part.events, key=lambda e: (e.start_beat, e.pitch), reverse=True):
            on = int(round(ev.start_beat * beat_ticks))
            off = int(round((ev.start_beat + ev.length_beats) * beat_ticks))
            off = max(on + 1, min(off, next_on.get(ev.pitch, off)))
            next_on[ev.pitch] = on
            timeline.append((on, 1, ev.pitch, ev.velocity))
            timeline.append((off, 0, ev.pitch, 0))
        timeline.sort()
        now = 0
        for tick, is_on, pitch, vel in timeline:
            kind = "note_on" if is_on else "note_off"
            track.append(mido.Message(kind, note=pitch, velocity=vel, channel=part.channel, time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


# ================================ audio ================================

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


def _render_drums(events: list[NoteEvent], drums: dict, seed: int, sr: int, spb: float, frames: int) -> np.ndarray:
    rng = _rng(seed, "kit")
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
        if voice == "open_hat":
            hold = synth.seconds_to_samples(ev.length_beats * spb, sr)
            if hold + choke < buf.shape[-1]:
                buf = buf[: hold + choke].copy()
                buf[hold:] *= np.linspace(1.0, 0.0, choke, dtype=np.float32)
        gain = drums["gain"][voice] * (ev.velocity / 127.0) ** 1.6
        left, right = _pan_gains(drums["pan"].get(voice, 0.0))
        _add(out, int(round(ev.start_beat * spb * sr)), buf, (gain * left, gain * right))
    return _apply_fx(out, drums["fx"], sr)


def _render_instrument(events: list[NoteEvent], cfg: dict, seed: int, name: str, sr: int, spb: float,
                       frames: int) -> np.ndarray:
    """One pitched part. A double-tracked part is played twice (take B a few ms late, different
    plucks), each take through the effects on its own side, then spread."""
    rng = _rng(seed, f"synth-{name}")
    bank = _NoteBank(cfg["voice"], dict(cfg.get("params", {})), sr, rng)
    takes = 2 if cfg.get("double") else 1
    variants = 3 if cfg["voice"] == "string" else 1  # plucked strings: no two strokes alike
    plan = []
    for take in range(takes):
        for ev in events:
            key = bank.key(ev, take * variants + int(rng.integers(variants)))
            hold = max(1, int(round(ev.length_beats * spb * sr)))
            delay = float(rng.uniform(0.005, 0.015)) if take else 0.0
            bank.want(key, hold)
            plan.append((take, ev, key, hold, int(round((ev.start_beat * spb + delay) * sr))))
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
    import pedalboard

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


def _dbfs(x: np.ndarray) -> float:
    return round(20.0 * float(np.log10(max(float(np.max(np.abs(x))), 1e-12))), 2)


def _balance(x: np.ndarray, relative_lu: float, sr: int) -> None:
    """Scale a stem so its loudness sits `relative_lu` from the drums' reference level."""
    loudness = integrated_loudness(x, sr)
    if np.isfinite(loudness):
        x *= np.float32(10 ** ((-20.0 + relative_lu - loudness) / 20))


def _render_stem(part: Part, score: Score, preset: dict, seed: int, sample_rate: int,
                 soundfont: Path | None) -> np.ndarray:
    frames = score.total_frames(sample_rate)
    spb = score.seconds_per_beat
    cfg = preset["drums"] if part.name == "drums" else preset["instruments"][part.name]
    if soundfont is not None:  # the user's instruments: their sound, none of our effects
        from millamusic import soundfont as sf

        x = sf.render_midi(midi_bytes(score, [part]), soundfont, sample_rate=sample_rate, frames=frames)
        if part.events and not np.any(x):  # FluidSynth only warns when a font lacks the program
            bank = "128 (drum kit)" if part.channel == DRUM_CHANNEL else "0"
            raise RenderError(f"the SoundFont {soundfont} made no sound for part {part.name!r} (GM program "
                              f"{part.program}, bank {bank}). Fix: use a General MIDI SoundFont with that preset, "
                              "or render without --soundfont")
    elif part.name == "drums":
        x = _render_drums(part.events, cfg, seed, sample_rate, spb, frames)
    else:
        x = _render_instrument(part.events, cfg, seed, part.name, sample_rate, spb, frames)
    fade_tail(x, score, sample_rate)
    _balance(x, cfg["balance"], sample_rate)
    return x


def render_arrangement(score: Score, arrangement: Arrangement, seed: int, sample_rate: int,
                       soundfont: Path | None = None) -> dict[str, np.ndarray]:
    """Float32 (2, frames) stems balanced by loudness, scaled together so the sum peaks at -1 dBFS.

    Parts render in parallel threads (numpy and pedalboard release the GIL); each part has its
    own random streams, so the result does not depend on the order they finish in.
    """
    from concurrent.futures import ThreadPoolExecutor

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


class Arranger(BackingEngine):
    """Algorithmic pop/rock band from genre presets: one stem per instrument. Same seed -> same bits."""

    info: ClassVar[EngineInfo] = EngineInfo(
        name="arranger",
        kind="backing",
        version="0.2.0",
        model="embedded",
        licence="MIT (millamusic)",
        generator="algorithmic",
    )

    def render(self, score: Score, request: BackingRequest) -> BackingResult:
        if not score.bars:
            raise RenderError("the score has no bars: nothing for the arranger to play")
        arrangement = arrange(score, request)
        soundfont = request.options.get("soundfont")
        stems = render_arrangement(score, arrangement, request.seed, request.sample_rate,
                                   Path(soundfont) if soundfont else None)
        mix = sum_stems(stems)
        details = {
            "parts": list(stems),
            "soundfont": Path(soundfont).name if soundfont else None,
            "preset": arrangement.preset_name,
            "style_words": list(arrangement.style_words),
            "instruments": "soundfont" if soundfont else "embedded synthesizer",
            "notes": {p.name: len(p.events) for p in arrangement.parts},
            "peak_dbfs": {name: _dbfs(x) for name, x in stems.items()},
            "sum_peak_dbfs": _dbfs(mix),
        }
        return BackingResult(
            stems={name: Audio(x, request.sample_rate) for name, x in stems.items()},
            midi=midi_bytes(score, arrangement.parts),
            prompt=None,
            details=details,
        )
