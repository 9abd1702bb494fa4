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
from millamusic.music.lyrics import display_line, line_words, split_backing, sung_blocks
from millamusic.music.score import (
    Bar,
    LyricLine,
    Note,
    Score,
    Section,
    Word,
    pulse_beats,
)
from millamusic.music.theory import Key, parse_chord, parse_key, transpose_chord
from millamusic.spec.song import Song, structure_tempo_changes

COMPOSER_VERSION = "4"  # 2: syllable counts from espeak, melisma markers; 3: backing-vocal notes, real hyphens;
# 4: section keys and the tempo map

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
    tempo_changes = structure_tempo_changes(spec.structure, spec.beats_per_bar, spec.tempo)
    lines, words, line_syllables, sheet_lines, backing_words, backing_syllables = _lyric_lines(song, sections)
    if song.melody_path is not None:
        notes = _notes_from_midi(song, sections, bars, lines, line_syllables, sheet_lines)
        melody_source = f"midi:{song.input_hashes['melody']}"
    else:
        notes = _compose_melody(song, key, sections, bars, lines, line_syllables, sheet_lines)
        melody_source = "composed"
    return Score(
        title=spec.title, tempo_bpm=float(spec.tempo), beats_per_bar=spec.beats_per_bar, beat_unit=spec.beat_unit,
        key=key.name, tonic_pc=key.tonic_pc, mode=key.mode, language=song.language, seed=spec.seed,
        sections=tuple(sections), bars=tuple(bars), lines=tuple(lines), words=tuple(words), notes=tuple(notes),
        melody_source=melody_source, tempo_changes=tempo_changes,
        backing_words=tuple(backing_words),
        backing_notes=tuple(_backing_notes(song, key, sections, bars, lines, notes, backing_syllables, sheet_lines)),
    )


def _bar_grid(song: Song) -> tuple[list[Section], list[Bar]]:
    sections, bars = [], []
    beat = 0.0
    per_bar = song.spec.beats_per_bar
    for index, section in enumerate(song.spec.structure):
        # A section key moves with `transpose` as the song's key and the chords do.
        key = parse_key(section.key).transposed(song.spec.transpose).name if section.key is not None else None
        sections.append(Section(section.section, section.resolved_kind, len(bars), section.bars, key))
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
    backing_words: list[Word] = []
    backing_syllables: list[list[_SyllableRef]] = []  # per line: the backing part's notes ([] for none)
    for section_index, block in enumerate(blocks):
        if block is None:
            continue  # instrumental section
        for sheet_line in block.lines:
            line_index = len(lines)
            lead, backing = split_backing(sheet_line.text)
            lines.append(LyricLine(section_index, display_line(sheet_line.text), display_line(backing)))
            line_syllables.append(_syllable_refs(lead, line_index, words, song.language))
            backing_syllables.append(_syllable_refs(backing, line_index, backing_words, song.language))
            sheet_lines.append(sheet_line.line)
    return lines, words, line_syllables, sheet_lines, backing_words, backing_syllables


def _syllable_refs(text: str, line_index: int, words: list[Word], language: str) -> list[_SyllableRef]:
    """The notes of one part of a line; its words are appended to `words`."""
    refs = []
    for word in line_words(text, language):
        word_index = len(words)
        words.append(Word(word.text, line_index, word.syllables))
        for n, (part, hold) in enumerate(zip(word.syllables, word.holds)):
            # First syllable of a word carries the stress in most English and all Finnish words.
            refs.append(_SyllableRef(word_index, part, n == 0))
            refs.extend(_SyllableRef(word_index, "", False) for _ in range(hold))
    return refs


# --- composed melody ---------------------------------------------------------------------------

def _compose_melody(song, key: Key, sections, bars, lines, line_syllables, sheet_lines) -> list[Note]:
    lowest, highest = song.voice_range or DEFAULT_RANGE
    centre = _centre_pitch(key, lowest)
    notes: list[Note] = []
    problems: list[SpecProblem] = []
    lines_by_section: dict[int, list[int]] = {}
    for line_index, line in enumerate(lines):
        lines_by_section.setdefault(line.section_index, []).append(line_index)

    pulse = pulse_beats(song.spec.beat_unit)  # compound meters phrase in dotted quarters
    for section_index, line_indices in lines_by_section.items():
        section = sections[section_index]
        section_bars = bars[section.start_bar: section.start_bar + section.bars]
        spans = _line_spans(section_bars, len(line_indices), 2 * pulse)
        # A modulating section moves its register with the key (a chorus up a tone sits a tone
        # higher), still inside the voice's range: _register narrows it, or drops it an octave.
        section_key = parse_key(section.key) if section.key is not None else key
        low, high = _register(SECTION_REGISTER[section.kind], centre + _key_shift(key, section_key), lowest, highest)
        for position, (line_index, (span_start, span_beats)) in enumerate(zip(line_indices, spans)):
            refs = line_syllables[line_index]
            # Same section name + same line -> same melody, so a chorus repeats as a chorus.
            rng = np.random.default_rng(_stable_seed(song.spec.seed, section.name.lower(), position))
            rhythm = (_compound_rhythm if pulse == 3 else _phrase_rhythm)(
                len(refs), span_beats, [r.stressed for r in refs], rng)
            if rhythm is None:
                problems.append(SpecProblem(
                    song.lyrics_file, sheet_lines[line_index], 1, "lyrics", lines[line_index].text,
                    f"{len(refs)} syllables do not fit in {span_beats:g} beats of [{section.name}] "
                    f"(at most {_most_syllables(span_beats, pulse)} sixteenth notes)",
                    f"give [{section.name}] more bars, split the line, or use fewer lines in that section"))
                continue
            starts = [span_start + offset for offset, _ in rhythm]
            pitches = _phrase_pitches(starts, bars, section_key, low, high, rng, pulse)
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


def _key_shift(song_key: Key, section_key: Key) -> int:
    """Semitones from the song's tonic to a section key's, the short way round (-5..+6)."""
    return (section_key.tonic_pc - song_key.tonic_pc + 5) % 12 - 5


def _centre_pitch(key: Key, lowest: int) -> int:
    """The tonic in the octave just above the singer's lowest note (Bb3..A4 for an A3..E5
    singer): the middle of a pop singer's chest/mix range, with room above for choruses."""
    return lowest + 1 + (key.tonic_pc - lowest - 1) % 12


def _line_spans(section_bars, count: int, grid: int = 2) -> list[tuple[float, float]]:
    """Divide a section into `count` equal phrase spans on a `grid`-beat grid (two beats; two
    dotted quarters in compound meters): (start beat, beats)."""
    start = section_bars[0].start_beat
    total = sum(bar.beats for bar in section_bars)
    edges = [start + round(i * total / count / grid) * grid for i in range(count)] + [start + total]
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


def _most_syllables(span: float, pulse: int) -> int:
    """How many syllables `_phrase_rhythm` (pulse 1) or `_compound_rhythm` (pulse 3) fit in a span."""
    return int(span * 4 - 4) if pulse == 1 else max(0, int(round(span / 3)) - 1) * 6 + 1


# Eighth-note cells of one dotted-quarter pulse by how many syllables start in it: a dotted quarter,
# quarter-eighth (the 6/8 lilt), three eighths; sixteenths only when a line is crowded.
_PULSE_CELLS = {1: (3.0,), 2: (2.0, 1.0), 3: (1.0, 1.0, 1.0), 4: (1.0, 1.0, 0.5, 0.5),
                5: (1.0, 0.5, 0.5, 0.5, 0.5), 6: (0.5,) * 6}


def _compound_rhythm(count: int, span: float, stressed: list[bool], rng) -> list[tuple[float, float]] | None:
    """(offset, length) in eighths for `count` syllables in a 6/8, 9/8 or 12/8 span: every
    dotted-quarter pulse starts a syllable or holds the one before, the syllables inside a pulse
    fall on its eighths (sixteenths when crowded), and the line ends on a pulse, held, before a
    breath (a whole pulse where the line has room). A roomy line sings one or two syllables a
    pulse (the quarter-eighth lilt) and holds its last note longer, rather than a dotted quarter each."""
    if count == 0:
        return []
    pulses = int(round(span / 3))
    if count == 1:
        return [(0.0, 2.0 if pulses <= 1 else float(min(6, 3 * pulses - 3)))] if pulses >= 1 else None
    inner = count - 1  # syllables before the last one, which lands on a pulse
    for breath, most in ((1, 3), (0, 3), (0, 6)):
        body = pulses - 1 - breath
        if body >= 1 and inner <= body * most:
            break
    else:
        return None
    offset = 0
    if body >= 2 and inner <= 2 * (body - 1) and rng.random() < 0.5:
        offset, body = 1, body - 1  # a pickup rest of one pulse on a roomy line
    used = min(body, max(-(-inner // 2), int(round(inner / rng.uniform(1.3, 2.0)))))
    held = body - used  # pulses the line's last note holds on (one at most), then rests
    body = used
    counts = [inner // body] * body
    for i in rng.choice(body, inner % body, replace=False):
        counts[int(i)] += 1
    if counts[0] == 0:  # the line starts on its first pulse; empty pulses hold a note later on
        fullest = counts.index(max(counts))
        counts[0], counts[fullest] = counts[fullest], 0
    rhythm: list[tuple[float, float]] = []
    k = 0
    for p, n in enumerate(counts):
        at = 3.0 * (offset + p)
        if n == 0:
            last_at, last_length = rhythm[-1]
            rhythm[-1] = (last_at, last_length + 3.0)
            continue
        cell = _PULSE_CELLS[n]
        if n == 2 and stressed[k + 1] and not stressed[k]:
            cell = (1.0, 2.0)  # the stressed syllable gets the long note
        for length in cell:
            rhythm.append((at, length))
            at += length
        k += n
    rhythm.append((3.0 * (offset + body), 3.0 * min(held, 1) + (3.0 if breath else 2.0)))
    return rhythm


def _phrase_pitches(starts: list[float], bars, key: Key, low: int, high: int, rng, pulse: int = 1) -> list[int]:
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
        on_beat = abs(start / pulse - round(start / pulse)) < 1e-6  # a compound meter's strong beats are its pulses
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
    quarter = song.spec.beat_unit / 4  # MIDI counts quarter notes; a 6/8 score counts eighths
    events = [(start * quarter, length * quarter, pitch + song.spec.transpose)
              for start, length, pitch in _monophonic_notes(midi)]
    refs = [(line_index, ref) for line_index, line_refs in enumerate(line_syllables) for ref in line_refs]
    if len(events) != len(refs):
        counts = _count_by_section(events, sections, bars, lines, line_syllables)
        problems = [SpecProblem(str(song.path), None, None, "melody", str(path),
                                f"the MIDI melody has {len(events)} notes but the lyrics have {len(refs)} sung notes "
                                f"(syllables plus melisma holds) ({counts})",
                                "make one note per syllable, write split marks (spin|ning) or melisma marks (love_) in "
                                "the lyrics, or edit the MIDI")]
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
            rest = event[0] - (phrases[-1][-1][0] + phrases[-1][-1][1]) if phrases else 0.0
            if not phrases or rest >= PHRASE_REST_BEATS * song.spec.beat_unit / 4:  # the rule counts quarter notes
                phrases.append([])
            phrases[-1].append(event)
        line_ids = [k for k, line in enumerate(lines) if line.section_index == index and line_syllables[k]]
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
                    "split syllables differently (spin|ning), add melisma marks (word_), or change the MIDI phrase"))
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


# --- backing vocals ----------------------------------------------------------------------------

BACKING_UNITS = (0.5, 0.25)  # note lengths tried for a backing phrase, in beats: eighths, then sixteenths
BACKING_RELEASE = 0.25  # beats left free before the lead's next note


def _backing_notes(song: Song, key: Key, sections, bars, lines, notes, backing_syllables, sheet_lines) -> list[Note]:
    """The backing part of each line ("Hold me close (hold on)"), one note per syllable: in the gap
    after the line's last lead note, or, when the gap is too short, under that note (from its second
    half-beat). A backing-only line, "(ooh ooh)", takes the gap after the lead's last note before it
    (never before its section). Backing parts never overlap each other. Pitches are chord tones a
    third to a sixth under the lead, as a backing singer harmonises."""
    lead = sorted(notes, key=lambda n: n.start_beat)
    song_end = bars[-1].start_beat + bars[-1].beats
    lowest, _highest = song.voice_range or DEFAULT_RANGE
    out: list[Note] = []
    problems: list[SpecProblem] = []
    busy_until = 0.0  # end of the backing part placed last
    for line_index, refs in enumerate(backing_syllables):
        if not refs:
            continue
        section = sections[lines[line_index].section_index]
        own = [n for n in lead if n.line_index == line_index]
        before = own or [n for n in lead if n.line_index < line_index]
        anchor = before[-1] if before else None
        gap_start = anchor.start_beat + anchor.length_beats if anchor else 0.0
        if not own:
            gap_start = max(gap_start, bars[section.start_bar].start_beat)
        gap_start = math.ceil(max(gap_start, busy_until) * 4 - 1e-6) / 4  # on the sixteenth grid
        gap_end = min([n.start_beat for n in lead if n.start_beat >= gap_start - 1e-6] + [song_end]) - BACKING_RELEASE
        under = None
        if own:
            last = own[-1]
            under = max(last.start_beat + (0.5 if last.length_beats >= 1.0 else 0.0), busy_until)
            under_end = max(gap_end, under + 0.25 * len(refs))  # may run on under the next lead note
        timing = None
        for unit in BACKING_UNITS:
            timing = _backing_rhythm(len(refs), gap_start, gap_end - gap_start, unit)
            if timing is None and under is not None:
                timing = _backing_rhythm(len(refs), under, under_end - under, unit)
            if timing is not None:
                break
        if timing is None:
            problems.append(SpecProblem(
                song.lyrics_file, sheet_lines[line_index], 1, "lyrics", lines[line_index].text,
                f"the backing part ({lines[line_index].backing}) has {len(refs)} sung notes but only "
                f"{max(gap_end - gap_start, 0):g} beats are free after the lead in [{section.name}]",
                "shorten the backing part, move it to the end of a lead line, or give the section more bars"))
            continue
        reference = anchor.pitch if anchor else _centre_pitch(key, lowest) + 7
        for ref, (start, length) in zip(refs, timing):
            bar = next((b for b in reversed(bars) if b.start_beat <= start + 1e-9), bars[0])  # meters may change
            chord = parse_chord(bar.chord_at(min(start - bar.start_beat, bar.beats - 1e-9)))
            out.append(Note(start, length, _harmony_under(reference, chord.pitch_classes), ref.text, ref.word_index,
                            line_index))
        busy_until = timing[-1][0] + timing[-1][1]
    if problems:
        raise SpecError(problems)
    return out


def _backing_rhythm(count: int, start: float, room: float, unit: float) -> list[tuple[float, float]] | None:
    """(start, length) in beats for `count` backing notes of at least `unit` beats from `start` within
    `room` beats; the last note is held up to two beats. None when they do not fit."""
    if count * unit > room + 1e-9:
        return None
    step = min(1.0, math.floor(room / count / unit + 1e-9) * unit)  # up to a beat each: an unhurried answer
    rhythm = [(start + k * step, step) for k in range(count)]
    last_start = rhythm[-1][0]
    rhythm[-1] = (last_start, max(step, min(2.0, start + room - last_start)))
    return rhythm


def _harmony_under(reference: int, chord_pcs) -> int:
    """The highest chord tone 3 to 9 semitones under `reference` (the lead's note); an octave under
    when the chord has none there."""
    candidates = [p for p in range(reference - 9, reference - 2) if p % 12 in set(chord_pcs)]
    return max(candidates) if candidates else reference - 12
