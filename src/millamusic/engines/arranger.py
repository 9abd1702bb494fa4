"""The embedded `arranger` backing engine: score -> drums/bass/keys/guitar/pad stems + MIDI.

Rules, not trained weights. One list of note events is generated per part (patterns x the
score's bars, chords and sections, humanised from the request seed); both the audio stems and
the Standard MIDI File are rendered from those same events, so the MIDI is what you hear.

Everything a genre or style decides lives in the data tables at the top of this module
(`SECTION_FEEL`, `PRESETS`, `STYLE_MODS`); the code below only interprets them. Instrument
synthesis is in `millamusic.synth`.

Pattern strings have one character per 16th note of a 4/4 bar (tiled or cut for other bar
lengths):
  drum rows:   '.' rest, 'x' hit, 'X' accent, 'o' ghost, 'O' open hi-hat (hat row only)
  pitched:     '.' rest, '-' hold the previous note, 'x'/'X'/'o' strike (normal/accent/soft),
               'u' strike an octave up (bass), 'm' palm-muted strike (guitar)
A held note is re-struck where the chord changes inside it.

`request.options["preset"]` (a dict) is deep-merged over the genre preset and style words, so a
spec can tweak any value here without code.
"""

from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from millamusic import synth
from millamusic.audio import Audio
from millamusic.engines.base import BackingEngine, BackingRequest, BackingResult, EngineInfo
from millamusic.errors import RenderError
from millamusic.master import integrated_loudness
from millamusic.score import Bar, Score
from millamusic.theory import Chord, midi_to_hz, parse_chord

# ================================ data: what the music is ================================

PPQ = 480  # MIDI ticks per quarter note
STEPS_PER_BEAT = 4  # pattern resolution: 16th notes in 4/4

# General MIDI drum notes (channel 10) for each kit voice.
GM_DRUMS: dict[str, int] = {
    "kick": 36, "snare": 38, "hat": 42, "open_hat": 46, "crash": 49,
    "tom_hi": 50, "tom_mid": 47, "tom_low": 45,
}
DRUM_CHANNEL = 9  # MIDI channel 10
MIDI_CHANNELS: dict[str, int] = {"keys": 0, "bass": 1, "guitar": 2, "pad": 3, "drums": DRUM_CHANNEL}

# Velocity factor of each pattern character.
ACCENT: dict[str, float] = {"X": 1.15, "x": 1.0, "o": 0.5, "O": 1.0, "u": 0.95, "m": 0.92}

# Per section kind: which pattern level plays, how hard, crash on the first downbeat, pad on/off.
SECTION_FEEL: dict[str, dict] = {
    "intro": {"level": "intro", "energy": 0.8, "crash": False, "pad": True},
    "verse": {"level": "verse", "energy": 0.86, "crash": False, "pad": False},
    "prechorus": {"level": "lift", "energy": 0.92, "crash": False, "pad": True},
    "chorus": {"level": "chorus", "energy": 1.0, "crash": True, "pad": True},
    "bridge": {"level": "lift", "energy": 0.9, "crash": True, "pad": True},
    "solo": {"level": "chorus", "energy": 0.97, "crash": True, "pad": False},
    "outro": {"level": "intro", "energy": 0.85, "crash": True, "pad": True},
    "other": {"level": "verse", "energy": 0.88, "crash": False, "pad": False},
}

_WHOLE = "x---------------"

PRESETS: dict[str, dict] = {
    "pop": {
        "parts": ["drums", "bass", "keys", "pad"],
        "programs": {"bass": 33, "keys": 4, "pad": 89, "guitar": 29},  # GM: fingered bass, EP, warm pad
        # mix balance: gated K-weighted loudness of each stem relative to the drums (LU)
        "balance": {"drums": 0.0, "bass": -1.0, "keys": -1.5, "pad": -7.0, "guitar": -1.0},
        "energy_scale": 1.0,
        "drums": {
            "intro": {"kick": "x.......x.......", "snare": "................", "hat": "x...x...x...x..."},
            "verse": {"kick": "x.....x.x.......", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
            "lift": {"kick": "x.....x.x.....x.", "snare": "....x.......x..o", "hat": "xoxoxoxoxoxoxoxo"},
            "chorus": {"kick": "x.....x.x.....x.", "snare": "....X.......X...", "hat": "X.x.X.x.X.x.X.O."},
        },
        "fill_into": ["chorus"],
        "fill_beats": 1,
        "fill": [[0, "snare", 0.55], [1, "snare", 0.65], [2, "snare", 0.8], [3, "snare", 0.95]],
        "kit": {
            "kick": ["kick", {"f_high": 135.0, "f_low": 50.0, "sweep": 0.04, "t60": 0.4, "click": 0.3}],
            "snare": ["snare", {"tone_hz": 200.0, "noise_t60": 0.3}],
            "hat": ["hihat", {"t60": 0.07, "cutoff": 7500.0}],
            "open_hat": ["hihat", {"t60": 0.5, "cutoff": 6500.0}],
            "crash": ["crash", {"t60": 3.0}],
            "tom_hi": ["tom", {"pitch_hz": 210.0}],
            "tom_mid": ["tom", {"pitch_hz": 160.0}],
            "tom_low": ["tom", {"pitch_hz": 115.0, "t60": 0.45}],
        },
        "kit_gain": {"kick": 1.0, "snare": 0.8, "hat": 0.22, "open_hat": 0.22, "crash": 0.38,
                     "tom_hi": 0.6, "tom_mid": 0.6, "tom_low": 0.6},
        "pan": {"kick": 0.0, "snare": 0.03, "hat": 0.3, "open_hat": 0.3, "crash": -0.3,
                "tom_hi": 0.3, "tom_mid": 0.0, "tom_low": -0.3, "bass": 0.0},
        "bass": {"intro": _WHOLE, "verse": "x-----x.x-----x.", "lift": "x-x-x-x-x-x-x-x-",
                 "chorus": "x-----x-x---x-u-"},
        "bass_voice": {"brightness": 0.35, "t60": 2.5, "pick": 0.0},
        "bass_low": 28,  # lowest MIDI note of the one-octave window the bass roots sit in (E1)
        "keys": {"intro": _WHOLE, "verse": "x-------x-------", "lift": "x---x---x---x---",
                 "chorus": "x--x--x-x--x--x-"},
        "keys_voice": "epiano",
        "keys_range": [53, 76],
        "keys_spread": 0.5,  # keys panned by pitch, low left to high right
        "pad": {"intro": _WHOLE, "verse": _WHOLE, "lift": _WHOLE, "chorus": _WHOLE},
        "pad_range": [50, 72],
        "guitar": {"intro": _WHOLE, "verse": "x-------x-------", "lift": "x-x-x-x-x-x-x-x-",
                   "chorus": "X-x-x-x-X-x-x-x-"},
        "guitar_low": 40,
        "guitar_voice": {"t60": 3.0, "brightness": 0.75},
        "guitar_spread": 0.8,
        "legato": {"bass": 0.9, "keys": 0.95, "guitar": 0.97, "pad": 1.0},
        "humanise": {"time_ms": {"drums": 3.0, "bass": 5.0, "keys": 6.0, "guitar": 5.0, "pad": 0.0},
                     "velocity": 0.07, "roll_ms": 8.0},
        "ring": 0.6,  # the final chord rings this fraction of the tail before its release
        "fx": {
            "drums": [["Compressor", {"threshold_db": -16.0, "ratio": 2.5, "attack_ms": 10.0, "release_ms": 120.0}],
                      ["Limiter", {"threshold_db": -5.0, "release_ms": 60.0}]],
            "bass": [["HighpassFilter", {"cutoff_frequency_hz": 32.0}],
                     ["LowpassFilter", {"cutoff_frequency_hz": 1800.0}]],
            "keys": [["HighpassFilter", {"cutoff_frequency_hz": 120.0}]],
            "pad": [["LowpassFilter", {"cutoff_frequency_hz": 2200.0}],
                    ["HighpassFilter", {"cutoff_frequency_hz": 150.0}]],
            "guitar": [["Distortion", {"drive_db": 18.0}], ["HighpassFilter", {"cutoff_frequency_hz": 90.0}],
                       ["LowpassFilter", {"cutoff_frequency_hz": 5000.0}]],
        },
    },
    "rock": {
        "parts": ["drums", "bass", "guitar", "pad"],
        "programs": {"bass": 34, "guitar": 30, "pad": 89, "keys": 0},  # GM: pick bass, distortion gtr
        "balance": {"drums": 0.0, "bass": -1.5, "guitar": 0.0, "pad": -9.0, "keys": -6.0},
        "energy_scale": 1.0,
        "drums": {
            "intro": {"kick": "x.......x.......", "snare": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
            "verse": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
            "lift": {"kick": "x.x.....x.x.....", "snare": "....x.......x...", "hat": "X.x.X.x.X.x.X.x."},
            "chorus": {"kick": "x.x.....x.x.....", "snare": "....X.......X...", "hat": "O.x.O.x.O.x.O.x."},
        },
        "fill_into": ["chorus"],
        "fill_beats": 1,
        "fill": [[0, "snare", 0.8], [1, "snare", 0.85], [2, "tom_hi", 0.95], [3, "tom_low", 1.05]],
        "kit": {
            "kick": ["kick", {"f_high": 160.0, "f_low": 52.0, "sweep": 0.035, "t60": 0.45, "click": 0.5,
                              "drive": 2.2}],
            "snare": ["snare", {"tone_hz": 180.0, "noise_t60": 0.4, "noise_mix": 1.0}],
            "hat": ["hihat", {"t60": 0.08, "cutoff": 7000.0}],
            "open_hat": ["hihat", {"t60": 0.6, "cutoff": 6000.0}],
            "crash": ["crash", {"t60": 3.4, "cutoff": 3000.0}],
            "tom_hi": ["tom", {"pitch_hz": 190.0}],
            "tom_mid": ["tom", {"pitch_hz": 145.0}],
            "tom_low": ["tom", {"pitch_hz": 100.0, "t60": 0.45}],
        },
        "kit_gain": {"kick": 1.0, "snare": 0.95, "hat": 0.2, "open_hat": 0.16, "crash": 0.4,
                     "tom_hi": 0.65, "tom_mid": 0.65, "tom_low": 0.65},
        "pan": {"kick": 0.0, "snare": 0.02, "hat": 0.3, "open_hat": 0.3, "crash": -0.3,
                "tom_hi": 0.35, "tom_mid": 0.0, "tom_low": -0.35, "bass": 0.0},
        "bass": {"intro": _WHOLE, "verse": "x-x-x-x-x-x-x-x-", "lift": "x-x-x-x-x-x-x-x-",
                 "chorus": "X-x-x-x-X-x-x-x-"},
        "bass_voice": {"brightness": 0.6, "t60": 2.0, "pick": 0.25},
        "bass_low": 28,
        "keys": {"intro": _WHOLE, "verse": _WHOLE, "lift": _WHOLE, "chorus": "x-------x-------"},
        "keys_voice": "epiano",
        "keys_range": [53, 76],
        "keys_spread": 0.5,
        "pad": {"intro": _WHOLE, "verse": _WHOLE, "lift": _WHOLE, "chorus": _WHOLE},
        "pad_range": [52, 74],
        "guitar": {"intro": _WHOLE, "verse": "m-m-m-m-m-m-m-m-", "lift": "x-x-x-x-x-x-x-x-",
                   "chorus": "X-x-x-x-X-x-x-x-"},
        "guitar_low": 40,  # power-chord roots sit in E2..D#3
        "guitar_voice": {"t60": 3.5, "brightness": 0.8},
        "guitar_spread": 0.85,  # double-tracked: take A left, take B right
        "legato": {"bass": 0.85, "keys": 0.95, "guitar": 0.95, "pad": 1.0},
        "humanise": {"time_ms": {"drums": 3.0, "bass": 4.0, "keys": 6.0, "guitar": 4.0, "pad": 0.0},
                     "velocity": 0.07, "roll_ms": 7.0},
        "ring": 0.6,
        "fx": {
            "drums": [["Compressor", {"threshold_db": -16.0, "ratio": 3.0, "attack_ms": 10.0, "release_ms": 120.0}],
                      ["Limiter", {"threshold_db": -5.0, "release_ms": 60.0}]],
            "bass": [["HighpassFilter", {"cutoff_frequency_hz": 35.0}],
                     ["Distortion", {"drive_db": 6.0}],
                     ["LowpassFilter", {"cutoff_frequency_hz": 2500.0}]],
            "keys": [["HighpassFilter", {"cutoff_frequency_hz": 150.0}]],
            "pad": [["LowpassFilter", {"cutoff_frequency_hz": 1800.0}],
                    ["HighpassFilter", {"cutoff_frequency_hz": 180.0}]],
            # amp: mid push before the clipper; cabinet: band-limit and shape after it
            "guitar": [["HighpassFilter", {"cutoff_frequency_hz": 100.0}],
                       ["PeakFilter", {"cutoff_frequency_hz": 800.0, "gain_db": 6.0, "q": 0.7}],
                       ["Distortion", {"drive_db": 28.0}],
                       ["HighpassFilter", {"cutoff_frequency_hz": 80.0}],
                       ["PeakFilter", {"cutoff_frequency_hz": 400.0, "gain_db": -4.0, "q": 1.0}],
                       ["PeakFilter", {"cutoff_frequency_hz": 2200.0, "gain_db": 3.0, "q": 1.2}],
                       ["LowpassFilter", {"cutoff_frequency_hz": 5200.0}],
                       ["LowpassFilter", {"cutoff_frequency_hz": 6500.0}]],
        },
    },
}

# Style words (request.style) deep-merged over the genre preset, in the order given.
_BALLAD = {
    "energy_scale": 0.85,
    "drums": {
        "intro": {"kick": "x...............", "snare": "................", "hat": "x.......x......."},
        "verse": {"kick": "x.........x.....", "snare": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
        "lift": {"kick": "x.........x.....", "snare": "........x.......", "hat": "x.x.x.x.x.x.x.x."},
        "chorus": {"kick": "x.....x...x.....", "snare": "........X.......", "hat": "X.x.x.x.X.x.x.x."},
    },
    "bass": {"verse": _WHOLE, "lift": "x-------x-------", "chorus": "x-------x-----x-"},
    "keys": {"verse": _WHOLE, "lift": "x-------x-------", "chorus": "x-------x---x---"},
    "guitar": {"verse": _WHOLE, "lift": "x-------x-------", "chorus": "x-------x-------"},
}
_SOFT = {"energy_scale": 0.85}
_DRIVING = {"energy_scale": 1.05, "bass": {"verse": "x-x-x-x-x-x-x-x-"}}
STYLE_MODS: dict[str, dict] = {
    "ballad": _BALLAD, "halftime": _BALLAD, "half-time": _BALLAD, "slow": _BALLAD,
    "soft": _SOFT, "gentle": _SOFT, "acoustic": _SOFT, "dreamy": _SOFT,
    "driving": _DRIVING, "energetic": _DRIVING, "upbeat": _DRIVING, "punk": _DRIVING,
}

# Independent random streams (seeded from request.seed) so one part never shifts another.
_STREAMS = {"drums": 1, "bass": 2, "keys": 3, "guitar": 4, "pad": 5, "kit": 11, "synth": 12}

# mido key names by signed count of sharps.
_MAJOR_KEYS = {0: "C", 1: "G", 2: "D", 3: "A", 4: "E", 5: "B", 6: "F#", 7: "C#",
               -1: "F", -2: "Bb", -3: "Eb", -4: "Ab", -5: "Db", -6: "Gb", -7: "Cb"}
_MINOR_KEYS = {0: "Am", 1: "Em", 2: "Bm", 3: "F#m", 4: "C#m", 5: "G#m", 6: "D#m", 7: "A#m",
               -1: "Dm", -2: "Gm", -3: "Cm", -4: "Fm", -5: "Bbm", -6: "Ebm", -7: "Abm"}

SUM_PEAK_DBFS = -1.0  # the stems are scaled together so that their sum peaks here
STEM_PEAK_MAX_DBFS = -3.0  # ... unless that would push one stem above this


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
    program: int
    channel: int
    events: list[NoteEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Arrangement:
    preset_name: str
    style_mods: tuple[str, ...]
    preset: dict
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class _BarContext:
    bar: Bar
    steps: int
    level: str
    energy: float
    crash: bool
    fill: bool
    pad: bool
    ending: bool
    chords: tuple[Chord, ...]  # the chord under each step


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_preset(genre: str, style: tuple[str, ...] = (), overrides: dict | None = None) -> tuple[dict, list[str]]:
    """The genre preset with style words (and request options) merged in; also the words used."""
    name = genre.strip().lower()
    if name not in PRESETS:
        raise RenderError(f"arranger has no preset for genre {genre!r}; valid genres: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name]
    used = []
    for word in style:
        mod = STYLE_MODS.get(word.strip().lower())
        if mod is not None:
            preset = _merge(preset, mod)
            used.append(word.strip().lower())
    if overrides:
        preset = _merge(preset, overrides)
    return preset, used


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed & ((1 << 64) - 1), spawn_key=(_STREAMS[stream],)))


def _tile(pattern, steps: int) -> str:
    if isinstance(pattern, dict):  # {beats_per_bar: pattern}
        pattern = pattern.get(steps // STEPS_PER_BEAT, pattern.get(4, next(iter(pattern.values()))))
    return (pattern * (steps // len(pattern) + 1))[:steps]


def _bar_contexts(score: Score, preset: dict) -> list[_BarContext]:
    bars = score.bars
    chord_cache: dict[str, Chord] = {}

    def chord(symbol: str) -> Chord:
        if symbol not in chord_cache:
            chord_cache[symbol] = parse_chord(symbol)
        return chord_cache[symbol]

    out = []
    for i, bar in enumerate(bars):
        kind = score.sections[bar.section_index].kind
        feel = {**SECTION_FEEL["other"], **SECTION_FEEL.get(kind, {})}
        first = i == 0 or bars[i - 1].section_index != bar.section_index
        last_of_section = i == len(bars) - 1 or bars[i + 1].section_index != bar.section_index
        next_kind = score.sections[bars[i + 1].section_index].kind if i + 1 < len(bars) else None
        steps = bar.beats * STEPS_PER_BEAT
        out.append(_BarContext(
            bar=bar,
            steps=steps,
            level=feel["level"],
            energy=feel["energy"] * preset["energy_scale"],
            crash=feel["crash"] and first,
            fill=last_of_section and next_kind in preset["fill_into"],
            pad=feel["pad"],
            ending=i == len(bars) - 1,
            chords=tuple(chord(bar.chord_at(s / STEPS_PER_BEAT)) for s in range(steps)),
        ))
    return out


def _velocity(base: float, rng: np.random.Generator, spread: float) -> int:
    return int(np.clip(round(base * (1.0 + spread * rng.standard_normal())), 1, 127))


def _jitter_beats(rng: np.random.Generator, sd_ms: float, spb: float) -> float:
    if sd_ms <= 0:
        return 0.0
    return float(np.clip(rng.normal(0.0, sd_ms), -2.5 * sd_ms, 2.5 * sd_ms)) / 1000.0 / spb


def _drum_events(contexts: list[_BarContext], preset: dict, rng: np.random.Generator, spb: float) -> list[NoteEvent]:
    human = preset["humanise"]
    sd_ms = human["time_ms"]["drums"]
    events = []
    for ctx in contexts:
        steps = ctx.steps
        hits: dict[tuple[int, str], float] = {}
        if ctx.ending:
            hits = {(0, "kick"): 1.15, (0, "crash"): 1.1}
        else:
            for row, pattern in preset["drums"][ctx.level].items():
                for s, ch in enumerate(_tile(pattern, steps)):
                    if ch != ".":
                        hits[(s, "open_hat" if row == "hat" and ch == "O" else row)] = ACCENT[ch]
            if ctx.crash:
                hits.pop((0, "hat"), None)
                hits.pop((0, "open_hat"), None)
                hits[(0, "crash")] = 1.1
                hits[(0, "kick")] = max(hits.get((0, "kick"), 0.0), 1.1)
            if ctx.fill:
                start = max(0, steps - STEPS_PER_BEAT * preset["fill_beats"])
                hits = {k: v for k, v in hits.items() if k[0] < start}
                for step, voice, accent in preset["fill"]:
                    if start + step < steps:
                        hits[(start + step, voice)] = accent
        for (s, voice), accent in sorted(hits.items()):
            start = ctx.bar.start_beat + s / STEPS_PER_BEAT + _jitter_beats(rng, sd_ms, spb)
            vel = _velocity(100.0 * ctx.energy * accent, rng, human["velocity"])
            events.append(NoteEvent(max(0.0, start), 1.0 / STEPS_PER_BEAT, GM_DRUMS[voice], vel))
    events.sort(key=lambda e: (e.start_beat, e.pitch))
    # An open hat rings until the next hat (choke); its MIDI length says so too.
    hats = [e for e in events if e.pitch in (GM_DRUMS["hat"], GM_DRUMS["open_hat"])]
    choked = {}
    for a, b in zip(hats, hats[1:]):
        if a.pitch == GM_DRUMS["open_hat"]:
            choked[id(a)] = NoteEvent(a.start_beat, max(0.05, b.start_beat - a.start_beat), a.pitch, a.velocity)
    return [choked.get(id(e), e) for e in events]


def _strikes(pattern, ctx: _BarContext) -> list[list]:
    """[step, length_steps, char, chord] for each strike in this bar; holds re-strike on chord changes."""
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
    return out


def _length(strike: list, is_final: bool, legato: float, tail_beats: float, ring: float) -> float:
    beats = strike[1] / STEPS_PER_BEAT
    if is_final:
        return beats + ring * tail_beats
    return beats * legato


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


def _pitched_events(part: str, contexts: list[_BarContext], preset: dict, rng: np.random.Generator,
                    spb: float, tail_beats: float) -> list[NoteEvent]:
    human = preset["humanise"]
    sd_ms = human["time_ms"][part]
    legato = preset["legato"][part]
    ring = preset["ring"]
    events: list[NoteEvent] = []
    previous: tuple[int, ...] | None = None
    voicings: dict[str, tuple[int, ...]] = {}
    last_symbol = None
    for ctx in contexts:
        if part == "pad" and not (ctx.pad or ctx.ending):
            continue
        strikes = _strikes(preset[part][ctx.level], ctx)
        for k, strike in enumerate(strikes):
            step, _, ch, chord = strike
            is_final = ctx.ending and k == len(strikes) - 1
            start = ctx.bar.start_beat + step / STEPS_PER_BEAT + _jitter_beats(rng, sd_ms, spb)
            length = _length(strike, is_final, legato, tail_beats, ring)
            base = 100.0 * ctx.energy * ACCENT.get(ch, 1.0)
            if part == "bass":
                low = preset["bass_low"]
                pitch = low + (chord.bass_pc - low) % 12 + (12 if ch == "u" else 0)
                events.append(NoteEvent(max(0.0, start), length, pitch, _velocity(base, rng, human["velocity"])))
            elif part == "guitar":
                low = preset["guitar_low"]
                root = low + (chord.root_pc - low) % 12
                fifth = 7 if 7 in chord.intervals else next((i for i in chord.intervals if i in (6, 8)), 7)
                mute = ch == "m"
                strum = (3.0 if mute else 7.0) / 1000.0 / spb
                vel = _velocity(base, rng, human["velocity"])
                for j, pitch in enumerate((root, root + fifth, root + 12)):
                    events.append(NoteEvent(max(0.0, start + j * strum), length * (0.55 if mute else 1.0), pitch,
                                            max(1, vel - 4 * j), "mute" if mute else ""))
            else:  # keys, pad: voice-led chords
                if chord.symbol != last_symbol or part not in voicings:
                    lo, hi = preset[f"{part}_range"]
                    previous = voice_chord(chord.pitch_classes, previous, lo, hi)
                    voicings[part] = previous
                    last_symbol = chord.symbol
                roll = human["roll_ms"] / 1000.0 / spb if part == "keys" else 0.0
                for pitch in voicings[part]:
                    offset = float(rng.uniform(0.0, roll)) if roll else 0.0
                    events.append(NoteEvent(max(0.0, start + offset), length, pitch,
                                            _velocity(base * 0.9, rng, human["velocity"])))
    events.sort(key=lambda e: (e.start_beat, e.pitch))
    return events


def arrange(score: Score, request: BackingRequest) -> Arrangement:
    """The note events of every part (what is rendered and written to MIDI)."""
    preset, used = resolve_preset(request.genre, tuple(request.style), request.options.get("preset"))
    contexts = _bar_contexts(score, preset)
    spb = score.seconds_per_beat
    tail_beats = score.tail_seconds / spb
    parts = []
    for name in preset["parts"]:
        rng = _rng(request.seed, name)
        if name == "drums":
            events = _drum_events(contexts, preset, rng, spb)
            program = 0
        else:
            events = _pitched_events(name, contexts, preset, rng, spb, tail_beats)
            program = preset["programs"][name]
        parts.append(Part(name, program, MIDI_CHANNELS[name], events))
    return Arrangement(request.genre.strip().lower(), tuple(used), preset, tuple(parts))


# ================================ MIDI ================================

def mido_key_name(score: Score) -> str:
    key = score.key_value
    table = _MINOR_KEYS if key.mode == "minor" else _MAJOR_KEYS
    return table[key.sharps]


def midi_bytes(score: Score, parts: tuple[Part, ...] | list[Part]) -> bytes:
    """Type-1 SMF: conductor track (tempo, metre, key), then one track per part."""
    import mido

    beat_ticks = PPQ * 4 / score.beat_unit  # a score beat is one `beat_unit` note
    midi = mido.MidiFile(type=1, ticks_per_beat=PPQ)
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


def _render_drums(events: list[NoteEvent], preset: dict, seed: int, sr: int, spb: float, frames: int) -> np.ndarray:
    rng = _rng(seed, "kit")
    kit: dict[str, np.ndarray] = {}
    for voice, (kind, params) in preset["kit"].items():
        if kind == "crash":  # two decorrelated washes: a wide cymbal
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
        gain = preset["kit_gain"][voice] * (ev.velocity / 127.0) ** 1.6
        left, right = _pan_gains(preset["pan"].get(voice, 0.0))
        _add(out, int(round(ev.start_beat * spb * sr)), buf, (gain * left, gain * right))
    return out


_PITCHED: dict[str, Callable] = {"bass": synth.bass_note, "epiano": synth.epiano_note, "pad": synth.pad_note}


def _render_pitched(part: str, events: list[NoteEvent], preset: dict, seed: int, sr: int, spb: float,
                    frames: int) -> np.ndarray:
    rng = _rng(seed, "synth")
    quantum = max(1, sr // 200)  # note lengths rounded to 5 ms so repeated notes share one buffer
    if part == "bass":
        fn, params = synth.bass_note, dict(preset["bass_voice"])
    elif part == "keys":
        fn, params = _PITCHED[preset["keys_voice"]], {}
    else:
        fn, params = synth.pad_note, {}
    spread = preset.get("keys_spread", 0.0) if part == "keys" else 0.0
    lo, hi = preset.get(f"{part}_range", [0, 127])
    cache: dict[tuple, np.ndarray] = {}
    out = np.zeros((2, frames), dtype=np.float32)
    for ev in events:
        hold = max(quantum, int(round(ev.length_beats * spb * sr / quantum)) * quantum)
        bucket = min(7, ev.velocity // 16)
        key = (ev.pitch, hold, bucket)
        buf = cache.get(key)
        if buf is None:
            extra = {"brightness": 0.3 + 0.1 * bucket} if fn is synth.epiano_note else {}
            buf = fn(midi_to_hz(ev.pitch), hold, sr, rng, **{**params, **extra})
            cache[key] = buf
        gain = (ev.velocity / 127.0) ** 1.5
        pan = spread * (2.0 * (ev.pitch - lo) / max(hi - lo, 1) - 1.0) if spread else preset["pan"].get(part, 0.0)
        left, right = _pan_gains(pan)
        if buf.ndim == 2:
            left = right = 1.0
        _add(out, int(round(ev.start_beat * spb * sr)), buf, (gain * left, gain * right))
    return out


def _render_guitar(events: list[NoteEvent], preset: dict, seed: int, sr: int, spb: float, frames: int) -> np.ndarray:
    """Two takes of the same notes (different plucks, take B drifting 5-15 ms late), one per side."""
    rng = _rng(seed, "synth")
    quantum = max(1, sr // 200)
    params = dict(preset["guitar_voice"])
    takes = np.zeros((2, frames), dtype=np.float32)
    cache: dict[tuple, np.ndarray] = {}
    for take in (0, 1):
        for ev in events:
            hold = max(quantum, int(round(ev.length_beats * spb * sr / quantum)) * quantum)
            variant = int(rng.integers(3))
            key = (ev.pitch, hold, ev.articulation, take, variant)
            buf = cache.get(key)
            if buf is None:
                buf = synth.karplus_strong(midi_to_hz(ev.pitch), hold, sr, rng, **params,
                                           mute=0.85 if ev.articulation == "mute" else 0.0)
                cache[key] = buf
            delay = float(rng.uniform(0.005, 0.015)) if take else 0.0
            start = int(round((ev.start_beat * spb + delay) * sr))
            gain = (ev.velocity / 127.0) ** 1.5 * (0.8 if ev.articulation == "mute" else 1.0)
            _add(takes, start, buf, (gain, 0.0) if take == 0 else (0.0, gain))
    # one mono take per channel through the amp+cab chain, then spread
    takes = _apply_fx(takes, preset["fx"].get("guitar", []), sr)
    a, b = _pan_gains(-preset["guitar_spread"])
    out = np.empty_like(takes)
    out[0] = a * takes[0] + b * takes[1]
    out[1] = b * takes[0] + a * takes[1]
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


def _fade_tail(samples: np.ndarray, score: Score, sr: int) -> None:
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


def _sum(stems: dict[str, np.ndarray]) -> np.ndarray:
    values = list(stems.values())
    total = values[0].copy()
    for x in values[1:]:
        total += x
    return total


def _dbfs(x: np.ndarray) -> float:
    return round(20.0 * float(np.log10(max(float(np.max(np.abs(x))), 1e-12))), 2)


def _render_stem(part: Part, score: Score, preset: dict, seed: int, sample_rate: int) -> np.ndarray:
    frames = score.total_frames(sample_rate)
    spb = score.seconds_per_beat
    if part.name == "drums":
        x = _render_drums(part.events, preset, seed, sample_rate, spb, frames)
        x = _apply_fx(x, preset["fx"].get("drums", []), sample_rate)
    elif part.name == "guitar":
        x = _render_guitar(part.events, preset, seed, sample_rate, spb, frames)
    else:
        x = _render_pitched(part.name, part.events, preset, seed, sample_rate, spb, frames)
        x = _apply_fx(x, preset["fx"].get(part.name, []), sample_rate)
    _fade_tail(x, score, sample_rate)
    loudness = integrated_loudness(x, sample_rate)
    if np.isfinite(loudness):  # balance: every stem at its preset loudness relative to the drums
        x *= np.float32(10 ** ((-20.0 + preset["balance"][part.name] - loudness) / 20))
    return x


def render_arrangement(score: Score, arrangement: Arrangement, seed: int, sample_rate: int) -> dict[str, np.ndarray]:
    """Float32 (2, frames) stems balanced by loudness, scaled together so the sum peaks at -1 dBFS.

    Parts render in parallel threads (numpy and pedalboard release the GIL); each part has its
    own random streams, so the result does not depend on the order they finish in.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(arrangement.parts), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rendered = list(pool.map(
            lambda part: _render_stem(part, score, arrangement.preset, seed, sample_rate), arrangement.parts))
    stems = {part.name: x for part, x in zip(arrangement.parts, rendered)}
    if stems:
        sum_peak = float(np.max(np.abs(_sum(stems))))
        stem_peak = max(float(np.max(np.abs(x))) for x in stems.values())
        if sum_peak > 0:
            scale = min(10 ** (SUM_PEAK_DBFS / 20) / sum_peak, 10 ** (STEM_PEAK_MAX_DBFS / 20) / stem_peak)
            for x in stems.values():
                x *= np.float32(scale)
    return stems


class Arranger(BackingEngine):
    """Algorithmic pop/rock band: drums, bass, keys or guitar, pad. Same seed -> same bits."""

    info: ClassVar[EngineInfo] = EngineInfo(
        name="arranger",
        kind="backing",
        version="0.1.0",
        model="embedded",
        licence="MIT (millamusic)",
        generator="algorithmic",
    )

    def render(self, score: Score, request: BackingRequest) -> BackingResult:
        if not score.bars:
            raise RenderError("the score has no bars: nothing for the arranger to play")
        arrangement = arrange(score, request)
        stems = render_arrangement(score, arrangement, request.seed, request.sample_rate)
        details = {
            "parts": [p.name for p in arrangement.parts],
            "preset": arrangement.preset_name,
            "style_mods": list(arrangement.style_mods),
            "notes": {p.name: len(p.events) for p in arrangement.parts},
            "peak_dbfs": {name: _dbfs(x) for name, x in stems.items()},
            "sum_peak_dbfs": _dbfs(_sum(stems)),
        }
        return BackingResult(
            stems={name: Audio(x, request.sample_rate) for name, x in stems.items()},
            midi=midi_bytes(score, arrangement.parts),
            prompt=None,
            details=details,
        )
