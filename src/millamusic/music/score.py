"""The Score: pure data, JSON round-trippable. Everything downstream reads time from here."""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field

from millamusic.music.theory import Chord, Key, parse_chord, parse_key

TAIL_SECONDS = 2.5  # room after the last bar for the final chord and reverb to ring out
RITARDANDO_SHARE = 0.8  # `ritardando: true` slows the section's last bar to 80 % of its tempo


def pulse_beats(beat_unit: int) -> int:
    """Score beats in one tempo beat: 6/8, 9/8, 12/8 count dotted quarters (three eighths)."""
    return 3 if beat_unit == 8 else 1


@dataclass(frozen=True)
class Section:
    name: str  # as written in the spec, e.g. "Verse 1"
    kind: str  # intro | verse | prechorus | chorus | bridge | solo | outro | other
    start_bar: int
    bars: int
    key: str | None = None  # the section's own key ("B minor"), a modulation; None: the song's key


@dataclass(frozen=True)
class TempoChange:
    """From `start_beat` on the tempo is `bpm` (the spec's tempo unit). With `ramp_beats` > 0 it then
    moves linearly, per beat, to `ramp_to_bpm` over `ramp_beats` beats (a ritardando) and holds
    there until the next change."""

    start_beat: float
    bpm: float
    ramp_beats: float = 0.0
    ramp_to_bpm: float | None = None

    def __post_init__(self) -> None:
        if not (self.bpm > 0 and self.start_beat >= 0 and self.ramp_beats >= 0):
            raise ValueError(f"bad tempo change {self}")
        if self.ramp_beats > 0 and not (self.ramp_to_bpm is not None and self.ramp_to_bpm > 0):
            raise ValueError(f"a tempo ramp needs a positive ramp_to_bpm: {self}")


@dataclass(frozen=True)
class _Piece:
    """One stretch of the tempo map: from `beat` (at `seconds`), `bpm` changing by `slope` per beat
    until `end_beat`."""

    beat: float
    end_beat: float
    seconds: float
    bpm: float
    slope: float


def _elapsed(piece: _Piece, beats: float, scale: float) -> float:
    """Seconds for `beats` beats into a piece. `scale` = seconds per beat x bpm (60 when a beat is
    what the tempo counts). A linear ramp integrates in closed form: t = scale/s * ln(1 + s*x/b0)."""
    if piece.slope == 0.0:
        return scale * beats / piece.bpm
    return scale / piece.slope * math.log1p(piece.slope * beats / piece.bpm)


def _beats_in(piece: _Piece, seconds: float, scale: float) -> float:
    """The inverse of `_elapsed`: x = b0 * (exp(s*t/scale) - 1) / s."""
    if piece.slope == 0.0:
        return seconds * piece.bpm / scale
    return piece.bpm * math.expm1(piece.slope * seconds / scale) / piece.slope


def tempo_pieces(bpm: float, changes: tuple[TempoChange, ...], scale: float = 60.0) -> tuple[_Piece, ...]:
    """The tempo map as consecutive pieces, the first at beat 0 at `bpm`; the last runs on for ever."""
    points: list[tuple[float, float, float]] = [(0.0, bpm, 0.0)]  # (beat, bpm, slope)
    for change in changes:
        if change.start_beat < points[-1][0]:
            raise ValueError(f"tempo changes out of order at beat {change.start_beat}")
        points.append((change.start_beat, change.bpm, 0.0))
        if change.ramp_beats > 0:
            points[-1] = (change.start_beat, change.bpm, (change.ramp_to_bpm - change.bpm) / change.ramp_beats)
            points.append((change.start_beat + change.ramp_beats, change.ramp_to_bpm, 0.0))
    pieces: list[_Piece] = []
    seconds = 0.0
    for (beat, piece_bpm, slope), nxt in zip(points, points[1:] + [(math.inf, 0.0, 0.0)]):
        if nxt[0] <= beat:  # a change at the same beat replaces this one
            continue
        piece = _Piece(beat, nxt[0], seconds, piece_bpm, slope)
        pieces.append(piece)
        if nxt[0] < math.inf:
            seconds += _elapsed(piece, nxt[0] - beat, scale)
    return tuple(pieces)


@dataclass(frozen=True)
class SectionTempo:
    """What a section of the spec asks of the tempo: `tempo` from its first bar (None: the tempo
    in force), and `ritardando` over its last bar (True: to RITARDANDO_SHARE of its tempo; a
    number: to that tempo; None: none)."""

    start_beat: float
    last_bar_start: float
    last_bar_beats: float
    tempo: float | None = None
    ritardando: bool | float | None = None


def section_tempo_changes(bpm: float, sections: list[SectionTempo]) -> tuple[TempoChange, ...]:
    """The tempo map of a song that opens at `bpm`. A section after a ritardando is back a tempo:
    at its own `tempo`, else the tempo in force before the ritardando."""
    changes: list[TempoChange] = []
    in_force = now = bpm
    for section in sections:
        in_force = section.tempo if section.tempo is not None else in_force
        if in_force != now:
            changes.append(TempoChange(section.start_beat, in_force))
        now = in_force
        if section.ritardando is not None and section.ritardando is not False:
            target = in_force * RITARDANDO_SHARE if section.ritardando is True else float(section.ritardando)
            if changes and changes[-1].start_beat == section.last_bar_start:
                changes.pop()  # a one-bar section: its tempo change is where its ramp starts
            changes.append(TempoChange(section.last_bar_start, in_force, section.last_bar_beats, target))
            now = target
    return tuple(changes)


def _piece_at(pieces: tuple[_Piece, ...], beat: float) -> _Piece:
    return pieces[max(0, bisect.bisect_right([p.beat for p in pieces], beat) - 1)]


def map_beat_to_seconds(bpm: float, changes: tuple[TempoChange, ...], beat: float, scale: float = 60.0) -> float:
    """Seconds to `beat` on the tempo map that opens at `bpm` (`scale`: see `_elapsed`)."""
    piece = _piece_at(tempo_pieces(bpm, changes, scale), beat)
    return piece.seconds + _elapsed(piece, beat - piece.beat, scale)


def map_seconds_to_beat(bpm: float, changes: tuple[TempoChange, ...], seconds: float, scale: float = 60.0) -> float:
    pieces = tempo_pieces(bpm, changes, scale)
    piece = pieces[max(0, bisect.bisect_right([p.seconds for p in pieces], seconds) - 1)]
    return piece.beat + _beats_in(piece, seconds - piece.seconds, scale)


def map_tempo_at(bpm: float, changes: tuple[TempoChange, ...], beat: float) -> float:
    piece = _piece_at(tempo_pieces(bpm, changes), beat)
    return piece.bpm + piece.slope * (min(beat, piece.end_beat) - piece.beat)


@dataclass(frozen=True)
class Bar:
    index: int
    section_index: int
    start_beat: float
    beats: int
    chords: tuple[str, ...]  # one symbol per equal division of the bar (usually one)

    def chord_at(self, beat_in_bar: float) -> str:
        slot = min(int(beat_in_bar * len(self.chords) / self.beats), len(self.chords) - 1)
        return self.chords[slot]


@dataclass(frozen=True)
class Note:
    """One sung note carrying one syllable (or a melisma continuation, syllable '')."""

    start_beat: float
    length_beats: float
    pitch: int  # MIDI note number
    syllable: str
    word_index: int  # index into Score.words
    line_index: int  # index into Score.lines


@dataclass(frozen=True)
class LyricLine:
    section_index: int
    text: str  # as published, a backing part included: "Hold me close (hold on)"
    backing: str = ""  # the backing-vocal part without its parentheses ("hold on"), sung from Score.backing_notes


@dataclass(frozen=True)
class Word:
    text: str
    line_index: int
    syllables: tuple[str, ...]


@dataclass(frozen=True)
class Score:
    title: str
    tempo_bpm: float
    beats_per_bar: int
    beat_unit: int
    key: str  # "A minor"
    tonic_pc: int
    mode: str
    language: str
    seed: int
    sections: tuple[Section, ...]
    bars: tuple[Bar, ...]
    lines: tuple[LyricLine, ...]
    words: tuple[Word, ...]
    notes: tuple[Note, ...]
    melody_source: str  # "composed" | "midi:<sha256>"
    tail_seconds: float = TAIL_SECONDS
    meta: dict = field(default_factory=dict)
    # the backing-vocal part ("(hold on)" in the sheet): its own words and notes, sung by a voice that
    # is not the lead; a backing note's word_index points into backing_words
    backing_words: tuple[Word, ...] = ()
    backing_notes: tuple[Note, ...] = ()
    # The tempo map after beat 0 (which is at tempo_bpm): empty for a song in one tempo.
    tempo_changes: tuple[TempoChange, ...] = ()

    # --- time -------------------------------------------------------------------------
    @property
    def pulse_beats(self) -> int:
        """Score beats in one tempo beat (the module's `pulse_beats` of this score's beat unit)."""
        return pulse_beats(self.beat_unit)

    @property
    def seconds_per_beat(self) -> float:
        """Seconds per beat at `tempo_bpm`, the song's opening tempo (see `seconds_per_beat_at`)."""
        return 60.0 / (self.tempo_bpm * self.pulse_beats)

    @property
    def total_beats(self) -> float:
        return sum(bar.beats for bar in self.bars)

    @property
    def _scale(self) -> float:
        """Seconds per beat x bpm: 60 when a beat is what the tempo counts (20 when it counts
        dotted quarters of eighth beats). Every tempo of the map converts with it."""
        return 60.0 / self.pulse_beats

    def beat_to_seconds(self, beat: float) -> float:
        """Seconds from the start of bar 1 to `beat`, on the tempo map (exact for ramps too)."""
        if not self.tempo_changes:
            return beat * self.seconds_per_beat
        return map_beat_to_seconds(self.tempo_bpm, self.tempo_changes, beat, self._scale)

    def seconds_to_beat(self, seconds: float) -> float:
        """The inverse of `beat_to_seconds`."""
        if not self.tempo_changes:
            return seconds / self.seconds_per_beat
        return map_seconds_to_beat(self.tempo_bpm, self.tempo_changes, seconds, self._scale)

    def tempo_at(self, beat: float) -> float:
        """The tempo (the spec's unit) at `beat`."""
        return map_tempo_at(self.tempo_bpm, self.tempo_changes, beat) if self.tempo_changes else self.tempo_bpm

    def span_seconds(self, start_beat: float, length_beats: float) -> tuple[float, float]:
        """(start, length) in seconds of a note on the tempo map. In one tempo these are the plain
        products, so a song without tempo changes renders to the same bits as before the map."""
        if not self.tempo_changes:
            return start_beat * self.seconds_per_beat, length_beats * self.seconds_per_beat
        start = self.beat_to_seconds(start_beat)
        return start, self.beat_to_seconds(start_beat + length_beats) - start

    @property
    def tail_beats(self) -> float:
        """The tail after the last bar, in beats of the tempo the song ends in."""
        if not self.tempo_changes:
            return self.tail_seconds / self.seconds_per_beat
        return self.seconds_to_beat(self.total_seconds) - self.total_beats

    def seconds_per_beat_at(self, beat: float) -> float:
        """Seconds per beat at `beat` (the local slope of `beat_to_seconds`)."""
        return self._scale / self.tempo_at(beat)

    @property
    def music_seconds(self) -> float:
        return self.beat_to_seconds(self.total_beats)

    @property
    def total_seconds(self) -> float:
        return self.music_seconds + self.tail_seconds

    def total_frames(self, sample_rate: int) -> int:
        """Every stem of this song has exactly this many frames."""
        return int(round(self.total_seconds * sample_rate))

    # --- harmony ------------------------------------------------------------------------
    @property
    def key_value(self) -> Key:
        """The song's key (a section may modulate: `section_key`)."""
        return Key(self.tonic_pc, self.mode)

    def section_key(self, section_index: int) -> Key:
        key = self.sections[section_index].key
        return self.key_value if key is None else parse_key(key)

    def section_at(self, beat: float) -> int:
        """The index of the section sounding at `beat` (the first before it starts, the last past the end)."""
        starts = [self.bars[s.start_bar].start_beat for s in self.sections]
        return max(0, bisect.bisect_right(starts, beat) - 1)

    def key_at(self, beat: float) -> Key:
        """The key in force at `beat` (its section's)."""
        return self.section_key(self.section_at(beat))

    def chord_spans(self) -> list[tuple[int, str, float, float]]:
        """(bar index, chord symbol, start s, end s) of every chord of every bar: a bar's symbols
        split it equally."""
        spans = []
        for bar in self.bars:
            division = bar.beats / len(bar.chords)
            for i, symbol in enumerate(bar.chords):
                start = self.beat_to_seconds(bar.start_beat + i * division)
                spans.append((bar.index, symbol, start, self.beat_to_seconds(bar.start_beat + (i + 1) * division)))
        return spans

    def chord(self, symbol: str) -> Chord:
        return parse_chord(symbol)

    def harmony_dict(self) -> dict:
        """What a backing engine may depend on: no lyrics, no melody.

        The backing cache key is built from this, so editing lyrics never re-renders it. A section
        key and the tempo map are in it only when set: a song in one key and tempo keeps its key.
        """
        harmony = {
            "title": self.title,
            "tempo_bpm": self.tempo_bpm,
            "beats_per_bar": self.beats_per_bar,
            "beat_unit": self.beat_unit,
            "key": self.key,
            "sections": [{k: v for k, v in asdict(s).items() if k != "key" or v is not None} for s in self.sections],
            "bars": [asdict(b) for b in self.bars],
            "tail_seconds": self.tail_seconds,
        }
        if self.tempo_changes:
            harmony["tempo_changes"] = [asdict(c) for c in self.tempo_changes]
        return harmony

    # --- JSON -----------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Score":
        raw = json.loads(text)
        raw["sections"] = tuple(Section(**s) for s in raw["sections"])
        raw["bars"] = tuple(Bar(**{**b, "chords": tuple(b["chords"])}) for b in raw["bars"])
        raw["lines"] = tuple(LyricLine(**line) for line in raw["lines"])
        raw["words"] = tuple(Word(**{**w, "syllables": tuple(w["syllables"])}) for w in raw["words"])
        raw["notes"] = tuple(Note(**n) for n in raw["notes"])
        raw["backing_words"] = tuple(Word(**{**w, "syllables": tuple(w["syllables"])})
                                     for w in raw.get("backing_words", ()))
        raw["backing_notes"] = tuple(Note(**n) for n in raw.get("backing_notes", ()))
        raw["tempo_changes"] = tuple(TempoChange(**c) for c in raw.get("tempo_changes", ()))
        return cls(**raw)


@dataclass(frozen=True)
class SungSyllable:
    """Where a note's syllable was actually sung: feeds synced lyrics."""

    note_index: int
    start_seconds: float  # first audible sound of the syllable (onset consonant)
    end_seconds: float
    vowel_seconds: float | None = None  # where the vowel starts: on the note's beat
