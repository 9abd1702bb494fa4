"""Keys and chord symbols -> pitch classes. Small and explicit, so errors can name the fix."""

from __future__ import annotations

import re
from dataclasses import dataclass

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor


# Chord qualities: suffix -> intervals above the root. Longest suffixes are tried first.
CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7),
    "maj": (0, 4, 7),
    "m": (0, 3, 7),
    "min": (0, 3, 7),
    "5": (0, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "min7": (0, 3, 7, 10),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "9": (0, 4, 7, 10, 14),
    "add9": (0, 4, 7, 14),
    "madd9": (0, 3, 7, 14),
    "sus2": (0, 2, 7),
    "sus4": (0, 5, 7),
    "sus": (0, 5, 7),
    "7sus4": (0, 5, 7, 10),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "m7b5": (0, 3, 6, 10),
}


_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]?)")


_CHORD_RE = re.compile(r"^([A-G][#b]?)([^/]*)(?:/([A-G][#b]?))?$")


def note_name_to_pc(name: str) -> int:
    match = _NOTE_RE.match(name)
    if not match or match.end() != len(name):
        raise ValueError(f"not a note name: {name!r} (use C, C#, Db ... B)")
    pc = _LETTER_PC[match.group(1).upper()]
    if match.group(2) == "#":
        pc += 1
    elif match.group(2) == "b":
        pc -= 1
    return pc % 12


@dataclass(frozen=True)
class Key:
    tonic_pc: int
    mode: str  # "major" | "minor"

    @property
    def scale_pcs(self) -> tuple[int, ...]:
        steps = MAJOR_SCALE if self.mode == "major" else MINOR_SCALE
        return tuple((self.tonic_pc + s) % 12 for s in steps)

    @property
    def name(self) -> str:
        return f"{NOTE_NAMES[self.tonic_pc]} {self.mode}"

    def transposed(self, semitones: int) -> "Key":
        return Key((self.tonic_pc + semitones) % 12, self.mode)

    @property
    def sharps(self) -> int:
        """Signed count of sharps (negative: flats) for the MIDI key signature."""
        major_pc = self.tonic_pc if self.mode == "major" else (self.tonic_pc + 3) % 12
        by_pc = {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 5: -1, 10: -2, 3: -3, 8: -4, 1: -5}
        return by_pc[major_pc]


def parse_key(text: str) -> Key:
    """'A minor', 'F# major', 'Bb', 'C#m' -> Key."""
    cleaned = text.strip()
    parts = cleaned.split()
    if len(parts) == 1 and parts[0].endswith("m") and len(parts[0]) <= 3:
        parts = [parts[0][:-1], "minor"]
    if len(parts) == 1:
        parts.append("major")
    if len(parts) != 2 or parts[1].lower() not in ("major", "minor", "maj", "min"):
        raise ValueError(f"not a key: {text!r} (write e.g. 'A minor' or 'E major')")
    mode = "minor" if parts[1].lower().startswith("min") else "major"
    return Key(note_name_to_pc(parts[0]), mode)


@dataclass(frozen=True)
class Chord:
    symbol: str
    root_pc: int
    intervals: tuple[int, ...]
    bass_pc: int

    @property
    def pitch_classes(self) -> tuple[int, ...]:
        return tuple(sorted({(self.root_pc + i) % 12 for i in self.intervals}))

    @property
    def is_minor(self) -> bool:
        return 3 in self.intervals and 4 not in self.intervals


def parse_chord(symbol: str) -> Chord:
    match = _CHORD_RE.match(symbol.strip())
    if not match or match.group(2) not in CHORD_QUALITIES:
        known = ", ".join(repr(q) for q in CHORD_QUALITIES if q)
        raise ValueError(
            f"not a chord symbol: {symbol!r} (root A-G with optional #/b, then one of {known}, "
            "optionally /bass)"
        )
    root = note_name_to_pc(match.group(1))
    bass = note_name_to_pc(match.group(3)) if match.group(3) else root
    return Chord(symbol.strip(), root, CHORD_QUALITIES[match.group(2)], bass)


def transpose_chord(symbol: str, semitones: int) -> str:
    """'Am' up 2 -> 'Bm', 'F#m7/C#' down 1 -> 'Fm7/C' (roots spelled with sharps, like Key.name)."""
    match = _CHORD_RE.match(symbol.strip())
    if not match:
        parse_chord(symbol)  # raises the error that names the fix
    root = NOTE_NAMES[(note_name_to_pc(match.group(1)) + semitones) % 12]
    bass = f"/{NOTE_NAMES[(note_name_to_pc(match.group(3)) + semitones) % 12]}" if match.group(3) else ""
    return f"{root}{match.group(2)}{bass}"


_NOTE_OCTAVE_RE = re.compile(r"^([A-G][#b]?)(-?\d)$")


def note_to_midi(name: str) -> int:
    """'A3' -> 57, 'C#5' -> 73, 'Eb4' -> 63 (scientific pitch: C4 is 60)."""
    match = _NOTE_OCTAVE_RE.match(str(name).strip())
    if not match:
        raise ValueError(f"not a note name: {name!r}")
    pitch_class, octave = match.groups()
    return 12 * (int(octave) + 1) + _LETTER_PC[pitch_class[0]] + {"#": 1, "b": -1}.get(pitch_class[1:], 0)


def midi_to_name(pitch: int | None) -> str | None:
    """57 -> 'A3', 70 -> 'A#4' (sharps; None stays None): note_to_midi's inverse."""
    if pitch is None:
        return None
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
