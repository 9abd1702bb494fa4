"""SongSpec -> Score: bar grid, chords per bar, lyric lines and one sung note per syllable.

The melody comes from the spec's MIDI file when given; otherwise it is composed here from
the chords and the syllable count of each line: chord tones on strong beats, scale tones
between, a range a singer can sing, and phrases that end on stable tones.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import mido
import numpy as np

from millamusic.core.errors import SpecError, SpecProblem
from millamusic.music.lyrics import display_line, line_words, sung_blocks
from millamusic.music.score import Bar, LyricLine, Note, Score, Section, Word
from millamusic.music.theory import Key, parse_chord, transpose_chord
from millamusic.spec.song import Song

COMPOSER_VERSION = "2"  # 2: syllable counts from espeak, melisma markers

# Singable range of the default (female pop) voice, MIDI note numbers: A3..E5. An artist
# profile gives its own singer's range.
DEFAULT_RANGE = (57, 76)

# Register of each section relative to the song's centre pitch (low, high), in semitones.
# Choruses sit higher than verses: the lift a listener expects.
SECTION_REGISTER = {
    "verse": (-4, 6), "prechorus": (-2, 8), "chorus": (0, 10), "bridge": (-2, 9),
    "intro": (-3, 7), "outro": (-4, 5), "solo": (-2, 8), "breakdown": (-4, 5), "other": (-3, 7),
}


def compose(song: Song) -> Score:
    spec = song.spec
    key = spec.key_value
    sections, bars = _bar_grid(song)
    lines, words, line_syllables, sheet_lines = _lyric_lines(song, sections)
    if song.melody_path is not None:
        notes = _notes_from_midi(song, sections, bars, lines, line_syllables, sheet_lines)
        melody_source = f"midi:{song.input_hashes['melody']}"
    else:
        notes = _compose_melody(song, key, sections, bars, lines, line_syllables, sheet_lines)
        melody_source = "composed"
    return Score(
        title=spec.title, tempo_bpm=float(spec.tempo), beats_per_bar=spec.beats_per_bar, beat_unit=4,
        key=key.name, tonic_pc=key.tonic_pc, mode=key.mode, language=song.language, seed=spec.seed,
        sections=tuple(sections), bars=tuple(bars), lines=tuple(lines), words=tuple(words), notes=tuple(notes),
        melody_source=melody_source,
    )


def _bar_grid(song: Song) -> tuple[list[Section], list[Bar]]:
    sections, bars = [], []
    beat = 0.0
    per_bar = song.spec.beats_per_bar
    for index, section in enumerate(song.spec.structure):
        sections.append(Section(section.section, section.resolved_kind, len(bars), section.bars))
        for n in range(section.bars):
            chords = tuple(transpose_chord(symbol, song.spec.transpose)
                           for symbol in section.chords[n % len(section.chords)].split())
            bars.append(Bar(len(bars), index, beat, per_bar, chords))
            beat += per_bar
    return sections, bars


@dataclass(frozen=True)
class _SyllableRef:
    """One note of a lyric line: a syllable, or a melisma note holding the one before ('')."""

    word_index: int
    text: str
    stressed: bool


def _lyric_lines(song: Song, sections: list[Section]):
    """One LyricLine per sung line, in song order (music.lyrics.sung_blocks: the nth block of a name
    in the nth section of that name)."""
    blocks = sung_blocks([section.name for section in sections], list(song.lyric_blocks))
    lines: list[LyricLine] = []
    words: list[Word] = []
    line_syllables: list[list[_SyllableRef]] = []
    sheet_lines: list[int] = []  # line number in the lyric file of each sung line
    for section_index, block in enumerate(blocks):
        if block is None:
            continue  # instrumental section
        for sheet_line in block.lines:
            line_index = len(lines)
            lines.append(LyricLine(section_index, display_line(sheet_line.text)))
            refs = []
            for word in line_words(sheet_line.text, song.language):
                word_index = len(words)
                words.append(Word(word.text, line_index, word.syllables))
                for n, (part, hold) in enumerate(zip(word.syllables, word.holds)):
                    # First syllable of a word carries the stress in most English and all Finnish words.
                    refs.append(_SyllableRef(word_index, part, n == 0))
                    refs.extend(_SyllableRef(word_index, "", False) for _ in range(hold))
            line_syllables.append(refs)
            sheet_lines.append(sheet_line.line)
    return lines, words, line_syllables, sheet_lines


# --- composed melody ---------------------------------------------------------------------------

def _compose_melody(song, key: Key, sections, bars, lines, line_syllables, sheet_lines) -> list[Note]:
    lowest, highest = song.voice_range or DEFAULT_RANGE
    centre = _centre_pitch(key, lowest)
    notes: list[Note] = []
    problems: list[SpecProblem] = []
    lines_by_section: dict[int, list[int]] = {}
    for line_index, line in enumerate(lines):
        lines_by_section.setdefault(line.section_index, []).append(line_index)

    for section_index, line_indices in lines_by_section.items():
        section = sections[section_index]
        section_bars = bars[section.start_bar: section.start_bar + section.bars]
        spans = _line_spans(section_bars, len(line_indices))
        low, high = _register(SECTION_REGISTER[section.kind], centre, lowest, highest)
        for position, (line_index, (span_start, span_beats)) in enumerate(zip(line_indices, spans)):
            refs = line_syllables[line_index]
            # Same section name + same line -> same melody, so a chorus repeats as a chorus.
            rng = np.random.default_rng(_stable_seed(song.spec.seed, section.name.lower(), position))
            rhythm = _phrase_rhythm(len(refs), span_beats, [r.stressed for r in refs], rng)
            if rhythm is None:
                problems.append(SpecProblem(
                    song.lyrics_file, sheet_lines[line_index], 1, "lyrics", lines[line_index].text,
                    f"{len(refs)} syllables do not fit in {span_beats:g} beats of [{section.name}] "
                    f"(at most {int(span_beats * 4 - 4)} sixteenth notes)",
                    f"give [{section.name}] more bars, split the line, or use fewer lines in that section"))
                continue
            starts = [span_start + offset for offset, _ in rhythm]
            pitches = _phrase_pitches(starts, bars, key, low, high, rng)
            for ref, (offset, length), pitch in zip(refs, rhythm, pitches):
                notes.append(Note(span_start + offset, length, pitch, ref.text, ref.word_index, line_index))
    if problems:
        raise SpecError(problems)
    notes.sort(key=lambda n: n.start_beat)
    return notes


def _stable_seed(seed: int, *parts: object) -> int:
    text = "|".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _register(offsets: tuple[int, int], centre: int, lowest: int, highest: int) -> tuple[int, int]:
    """A section's notes: its offsets around the centre, inside the voice's range. A range whose
    top sits low (a Kokoro voice's clean range) can leave the window under five semitones wide:
    then the window moves an octave down, and failing that the whole range is used."""
    for c in (centre, centre - 12):
        low, high = max(lowest, c + offsets[0]), min(highest, c + offsets[1])
        if high - low >= 5:
            return low, high
    return lowest, highest


def _centre_pitch(key: Key, lowest: int) -> int:
    """The tonic in the octave just above the singer's lowest note (Bb3..A4 for an A3..E5
    singer): the middle of a pop singer's chest/mix range, with room above for choruses."""
    return lowest + 1 + (key.tonic_pc - lowest - 1) % 12


def _line_spans(section_bars, count: int) -> list[tuple[float, float]]:
    """Divide a section into `count` equal phrase spans on a two-beat grid: (start beat, beats)."""
    start = section_bars[0].start_beat
    total = sum(bar.beats for bar in section_bars)
    edges = [start + round(i * total / count / 2) * 2 for i in range(count)] + [start + total]
    return [(a, b - a) for a, b in zip(edges, edges[1:])]


def _phrase_rhythm(count: int, span: float, stressed: list[bool], rng) -> list[tuple[float, float]] | None:
    """(offset, length) in beats for `count` syllables in a span, leaving a breath at the end."""
    if count == 0:
        return []
    breath = 1.0 if span >= 4 else 0.5
    for unit in (0.5, 0.25):
        offset = float(rng.choice([0.0, 0.0, 0.5, 1.0])) if count * unit <= span - breath - 1.0 else 0.0
        room = span - breath - offset
        if count * unit <= room:
            break
    else:
        return None
    steps = [1] * count
    spare = int(round((room - count * unit) / unit))
    # The last syllable is held: phrases breathe at their ends.
    held = min(spare, int(1.5 / unit))
    steps[-1] += held
    spare -= int(rng.integers(0, 3)) + held  # a little air before the breath
    # Lengthen stressed syllables most: "STREET-lights HUM a LUL-la-by".
    weights = np.array([3.0 if s else 1.0 for s in stressed[:-1]]) if count > 1 else np.zeros(0)
    for _ in range(max(0, spare)):
        if not len(weights):
            break
        i = int(rng.choice(len(weights), p=weights / weights.sum()))
        steps[i] += 1
        weights[i] *= 0.4  # spread the length over several syllables
    rhythm, at = [], offset
    for n in steps:
        rhythm.append((at, n * unit))
        at += n * unit
    return rhythm


def _phrase_pitches(starts: list[float], bars, key: Key, low: int, high: int, rng) -> list[int]:
    scale = set(key.scale_pcs)
    stable_pcs = {key.tonic_pc, key.scale_pcs[2], key.scale_pcs[4]}
    shape = rng.choice(["arch", "rise", "fall", "wave"])
    count = len(starts)
    pitches: list[int] = []
    for i, start in enumerate(starts):
        t = i / max(1, count - 1)
        lift = {"arch": math.sin(math.pi * t), "rise": t, "fall": 1 - t,
                "wave": 0.5 + 0.5 * math.sin(2 * math.pi * t)}[shape]
        target = low + (high - low) * (0.1 + 0.8 * lift) + rng.normal(0, 1.5)
        bar = bars[int(start // bars[0].beats)] if start < len(bars) * bars[0].beats else bars[-1]
        chord = parse_chord(bar.chord_at(start - bar.start_beat))
        on_beat = abs(start - round(start)) < 1e-6
        if i == count - 1:
            allowed = (set(chord.pitch_classes) & stable_pcs) or set(chord.pitch_classes)
        elif on_beat:
            allowed = set(chord.pitch_classes)
        else:
            allowed = scale
        candidates = [p for p in range(low, high + 1) if p % 12 in allowed] or list(range(low, high + 1))
        pitches.append(min(candidates, key=lambda p, t=target: _pitch_cost(p, t, pitches)))
    return pitches


def _pitch_cost(pitch: int, target: float, sung: list[int]) -> float:
    """Near the contour, no big leaps, and no note hammered three times in a row."""
    if not sung:
        return abs(pitch - target)
    leap = abs(pitch - sung[-1])
    repeating = len(sung) >= 2 and sung[-1] == sung[-2]
    same = (2.5 if repeating else 0.8) if leap == 0 else 0.0
    return abs(pitch - target) + (0.6 * (leap - 5) if leap > 5 else 0.0) + same


# --- melody from MIDI --------------------------------------------------------------------------

def _notes_from_midi(song: Song, sections, bars, lines, line_syllables, sheet_lines) -> list[Note]:
    path = song.melody_path
    try:
        midi = mido.MidiFile(str(path))
    except Exception as error:  # mido raises several types for broken files
        # a cut-short file is an EOFError with no text: say so rather than "()"
        said = str(error) or ("the file ends early" if isinstance(error, EOFError) else type(error).__name__)
        raise SpecError([SpecProblem(str(song.path), None, None, "melody", str(path),
                                     f"cannot read the MIDI file ({said})", "export it again as a Standard MIDI File")]) from error
    events = [(start, length, pitch + song.spec.transpose) for start, length, pitch in _monophonic_notes(midi)]
    refs = [(line_index, ref) for line_index, line_refs in enumerate(line_syllables) for ref in line_refs]
    if len(events) != len(refs):
        counts = _count_by_section(events, sections, bars, lines, line_syllables)
        problems = [SpecProblem(str(song.path), None, None, "melody", str(path),
                                f"the MIDI melody has {len(events)} notes but the lyrics have {len(refs)} sung notes "
                                f"(syllables plus melisma holds) ({counts})",
                                "make one note per syllable, write hyphens (spin-ning) or melisma marks (love_) in the "
                                "lyrics, or edit the MIDI")]
        problems.extend(_line_mismatches(song, events, sections, bars, lines, line_syllables, sheet_lines))
        raise SpecError(problems)
    return [Note(start, length, pitch, ref.text, ref.word_index, line_index)
            for (start, length, pitch), (line_index, ref) in zip(events, refs)]


def _monophonic_notes(midi) -> list[tuple[float, float, int]]:
    """(start beat, length beats, pitch) of the track with the most notes; overlaps are cut."""
    best: list[tuple[float, float, int]] = []
    for track in midi.tracks:
        notes, open_notes, ticks = [], {}, 0
        for message in track:
            ticks += message.time
            if message.type not in ("note_on", "note_off") or getattr(message, "channel", 0) == 9:
                continue
            if message.type == "note_on" and message.velocity > 0:
                open_notes[message.note] = ticks
            elif message.note in open_notes:
                start = open_notes.pop(message.note)
                notes.append((start / midi.ticks_per_beat, (ticks - start) / midi.ticks_per_beat, message.note))
        if len(notes) > len(best):
            best = notes
    best.sort()
    cut = []
    for i, (start, length, pitch) in enumerate(best):
        if i + 1 < len(best):
            length = min(length, best[i + 1][0] - start)
        if length > 0:
            cut.append((start, length, pitch))
    return cut


PHRASE_REST_BEATS = 0.75  # a rest this long in a MIDI melody ends a sung line


def _line_mismatches(song: Song, events, sections, bars, lines, line_syllables, sheet_lines) -> list[SpecProblem]:
    """Point at the lyric lines whose note count differs from their MIDI phrase.

    The MIDI is split into phrases at rests; where a section has as many phrases as lyric
    lines, the lines can be compared one by one.
    """
    problems = []
    for index, section in enumerate(sections):
        first = bars[section.start_bar].start_beat
        last = first + sum(b.beats for b in bars[section.start_bar: section.start_bar + section.bars])
        inside = [e for e in events if first <= e[0] < last]
        phrases: list[list] = []
        for event in inside:
            if not phrases or event[0] - (phrases[-1][-1][0] + phrases[-1][-1][1]) >= PHRASE_REST_BEATS:
                phrases.append([])
            phrases[-1].append(event)
        line_ids = [k for k, line in enumerate(lines) if line.section_index == index]
        if len(phrases) != len(line_ids):
            continue
        for k, phrase in zip(line_ids, phrases):
            sung = len(line_syllables[k])
            if sung != len(phrase):
                bar = int(phrase[0][0] // bars[0].beats) + 1
                problems.append(SpecProblem(
                    song.lyrics_file, sheet_lines[k], 1, "lyrics", lines[k].text,
                    f"[{section.name}] line has {sung} sung notes ({_syllable_text(line_syllables[k])}) but its MIDI "
                    f"phrase starting in bar {bar} has {len(phrase)} notes",
                    "hyphenate differently, add melisma marks (word_), or change the MIDI phrase"))
    return problems


def _syllable_text(refs) -> str:
    return " ".join(ref.text or "_" for ref in refs)


def _count_by_section(events, sections, bars, lines, line_syllables) -> str:
    """'Verse 1: 22 notes / 24 syllables; ...' so the user sees where the MIDI and lyrics part ways."""
    parts = []
    for index, section in enumerate(sections):
        first = bars[section.start_bar].start_beat
        last = first + sum(b.beats for b in bars[section.start_bar: section.start_bar + section.bars])
        n_notes = sum(1 for start, _, _ in events if first <= start < last)
        n_syllables = sum(len(refs) for line, refs in zip(lines, line_syllables) if line.section_index == index)
        if n_notes or n_syllables:
            mark = "" if n_notes == n_syllables else "  <-- differs"
            parts.append(f"{section.name}: {n_notes} notes / {n_syllables} syllables{mark}")
    return "; ".join(parts)
