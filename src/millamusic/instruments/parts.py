"""The arranger's part writing: one list of note events per part, from the preset's patterns x the
score's bars, chords and sections.

Every bar gets its place in the song (groove level, energy, crash, drum fill, the chord under
each 16th step); the drums play the preset's grooves and fills, the pitched parts their patterns
on voiced chords by role (bass, power chords, arpeggios, chords). Everything is humanised (timing,
velocity, strums) from seeded random streams, one per part, so one part never shifts another.
The events are what is rendered to audio and written to MIDI.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from millamusic.core.errors import RenderError
from millamusic.instruments.presets import ACCENT, GM_DRUMS
from millamusic.music.score import Bar, Score
from millamusic.music.theory import Chord, parse_chord

STEPS_PER_BEAT = 4  # pattern resolution: 16th notes in 4/4 (two a beat in 6/8, 9/8, 12/8, whose beat is an eighth)
DRUM_CHANNEL = 9  # MIDI channel 10


@dataclass(frozen=True)
class NoteEvent:
    """One note of one part; beats are score beats (placed in time on the score's tempo map)."""

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
class BarContext:
    bar: Bar
    steps: int
    per_beat: int  # pattern steps (16ths) in one score beat: 4 in N/4, 2 in N/8
    compound: bool  # 6/8, 9/8, 12/8: the preset's compound_* patterns play
    level: str
    energy: float
    crash: bool
    fill: str | None  # name of the drum fill at the end of this bar
    ending: bool
    chords: tuple[Chord, ...]  # the chord under each step
    next_chord: Chord | None  # the chord on the next bar's downbeat


def part_rng(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per part (and per use), so one part never shifts another."""
    key = [ord(c) for c in stream]
    return np.random.default_rng(np.random.SeedSequence(seed & ((1 << 64) - 1), spawn_key=key))


def _tile(pattern, steps: int, per_beat: int = STEPS_PER_BEAT) -> str:
    if isinstance(pattern, dict):  # {beats_per_bar: pattern}
        pattern = pattern.get(steps // per_beat, pattern.get(4, next(iter(pattern.values()))))
    return (pattern * (steps // len(pattern) + 1))[:steps]


def _metered(table: dict, key: str, compound: bool, owner: str) -> dict:
    """`key` (grooves, fills, patterns) of a preset table, or its `compound_` twin in 6/8, 9/8,
    12/8: written in dotted-quarter pulses, not a 4/4 pattern cut to six eighths."""
    if not compound:
        return table[key]
    if f"compound_{key}" not in table:
        raise RenderError(f"arranger {owner} has no compound_{key} for 6/8, 9/8 or 12/8; give it one in "
                          f"engines.backing_options.overrides (docs/arranger.md, \"Compound meters\")")
    return table[f"compound_{key}"]


def bar_contexts(score: Score, preset: dict) -> list[BarContext]:
    """Where every bar sits in the song: its groove level, energy, crash, fill and chords."""
    bars = score.bars
    sections = preset["sections"]
    drums = preset["drums"]
    compound = score.beat_unit == 8
    per_beat = STEPS_PER_BEAT * 4 // score.beat_unit  # a pattern step is a 16th note in every meter
    grooves = _metered(drums, "grooves", compound, "drums")
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
        grooving = bool(grooves.get(level))
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
        steps = bar.beats * per_beat
        out.append(BarContext(
            bar=bar,
            steps=steps,
            per_beat=per_beat,
            compound=compound,
            level=level,
            energy=energy,
            crash=position == 0 and i > 0 and (grooving or ending),
            fill=fill,
            ending=ending,
            chords=tuple(chord(bar.chord_at(s / per_beat)) for s in range(steps)),
            next_chord=chord(bars[i + 1].chords[0]) if i + 1 < len(bars) else None,
        ))
    return out


def _velocity(base: float, rng: np.random.Generator, spread: float) -> int:
    return int(np.clip(round(base * (1.0 + spread * rng.standard_normal())), 1, 127))


def _jitter_beats(rng: np.random.Generator, sd_ms: float, spb: float) -> float:
    if sd_ms <= 0:
        return 0.0
    return float(np.clip(rng.normal(0.0, sd_ms), -2.5 * sd_ms, 2.5 * sd_ms)) / 1000.0 / spb


def _step_beat(step: int, swing: float, per_beat: int = STEPS_PER_BEAT) -> float:
    """Beat offset of a 16th step within its bar; off-beat 16ths are late by `swing` of a 16th."""
    return (step + (swing if step % 2 else 0.0)) / per_beat


def drum_events(contexts: list[BarContext], preset: dict, rng: np.random.Generator, spb: float) -> list[NoteEvent]:
    drums = preset["drums"]
    spread = preset["velocity_spread"]
    events = []
    for ctx in contexts:
        steps = ctx.steps
        hits: dict[tuple[int, str], float] = {}
        if ctx.ending:
            hits = {(0, "kick"): 1.15, (0, "crash"): 1.1}
        else:
            for row, pattern in _metered(drums, "grooves", ctx.compound, "drums").get(ctx.level, {}).items():
                for s, ch in enumerate(_tile(pattern, steps, ctx.per_beat)):
                    if ch != ".":
                        hits[(s, "open_hat" if row == "hat" and ch == "O" else row)] = ACCENT[ch]
            if ctx.crash:  # the crash replaces the hat or ride on the downbeat
                for voice in ("hat", "open_hat", "ride"):
                    hits.pop((0, voice), None)
                hits[(0, "crash")] = 1.1
                hits[(0, "kick")] = max(hits.get((0, "kick"), 0.0), 1.1)
            if ctx.fill:
                fill = _metered(drums, "fills", ctx.compound, "drums")[ctx.fill]
                length = min(steps, ctx.per_beat * fill["beats"])  # beats: score beats (eighths in 6/8)
                start = steps - length
                hits = {k: v for k, v in hits.items() if k[0] < start or k[1] in ("hat", "ride") and start == 0}
                c0, c1 = fill["crescendo"]
                for voice, pattern in fill["rows"].items():
                    for s, ch in enumerate(_tile(pattern, length, ctx.per_beat)):
                        if ch != ".":
                            ramp = c0 + (c1 - c0) * s / max(length - 1, 1)
                            hits[(start + s, voice)] = ACCENT[ch] * ramp
        for (s, voice), accent in sorted(hits.items()):
            start = (ctx.bar.start_beat + _step_beat(s, preset["swing"], ctx.per_beat)
                     + _jitter_beats(rng, drums["time_ms"], spb))
            vel = _velocity(100.0 * ctx.energy * accent, rng, spread)
            events.append(NoteEvent(max(0.0, start), 1.0 / ctx.per_beat, GM_DRUMS[voice], vel))
    events.sort(key=lambda e: (e.start_beat, e.pitch))
    # An open hat rings until the next hat (choke); its MIDI length says so too.
    hats = [e for e in events if e.pitch in (GM_DRUMS["hat"], GM_DRUMS["open_hat"])]
    choked = {}
    for a, b in zip(hats, hats[1:]):
        if a.pitch == GM_DRUMS["open_hat"]:
            choked[id(a)] = NoteEvent(a.start_beat, max(0.05, b.start_beat - a.start_beat), a.pitch, a.velocity)
    return [choked.get(id(e), e) for e in events]


def _strikes(pattern: str, ctx: BarContext, pedal: bool) -> list[list]:
    """[step, length_steps, char, chord] for each strike in this bar; holds re-strike on chord
    changes. With `pedal` every strike rings on until the chord changes (or the bar ends)."""
    pat = "x" + "-" * (ctx.steps - 1) if ctx.ending else _tile(pattern, ctx.steps, ctx.per_beat)
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


def voice_chord(pitch_classes: tuple[int, ...], previous: tuple[int, ...] | None, low: int,
                high: int) -> tuple[int, ...]:
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


def pitched_events(cfg: dict, contexts: list[BarContext], preset: dict, rng: np.random.Generator,
                    spb: float, tail_beats: float) -> list[NoteEvent]:
    spread = preset["velocity_spread"]
    events: list[NoteEvent] = []
    voicing: tuple[int, ...] | None = None
    voiced_symbol = None
    compound = bool(contexts) and contexts[0].compound
    patterns = _metered(cfg, "patterns", compound, f"instrument (voice {cfg.get('voice')!r})")
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
            start = (ctx.bar.start_beat + _step_beat(step, preset["swing"], ctx.per_beat)
                     + _jitter_beats(rng, cfg["time_ms"], spb))
            length = steps / ctx.per_beat
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
