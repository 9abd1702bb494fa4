"""The Score: pure data, JSON round-trippable. Everything downstream reads time from here."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from millamusic.music.theory import Chord, Key, parse_chord

TAIL_SECONDS = 2.5  # room after the last bar for the final chord and reverb to ring out


@dataclass(frozen=True)
class Section:
    name: str  # as written in the spec, e.g. "Verse 1"
    kind: str  # intro | verse | prechorus | chorus | bridge | solo | outro | other
    start_bar: int
    bars: int


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
    text: str


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

    # --- time -------------------------------------------------------------------------
    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo_bpm

    @property
    def total_beats(self) -> float:
        return sum(bar.beats for bar in self.bars)

    def beat_to_seconds(self, beat: float) -> float:
        return beat * self.seconds_per_beat

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
        return Key(self.tonic_pc, self.mode)

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

        The backing cache key is built from this, so editing lyrics never re-renders it.
        """
        return {
            "title": self.title,
            "tempo_bpm": self.tempo_bpm,
            "beats_per_bar": self.beats_per_bar,
            "beat_unit": self.beat_unit,
            "key": self.key,
            "sections": [asdict(s) for s in self.sections],
            "bars": [asdict(b) for b in self.bars],
            "tail_seconds": self.tail_seconds,
        }

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
        return cls(**raw)


@dataclass(frozen=True)
class SungSyllable:
    """Where a note's syllable was actually sung: feeds synced lyrics."""

    note_index: int
    start_seconds: float  # first audible sound of the syllable (onset consonant)
    end_seconds: float
    vowel_seconds: float | None = None  # where the vowel starts: on the note's beat
