"""A measured reference -> a draft song spec a producer edits: named sections with their chords,
the sung melody fitted to the lyric sheet (or a skeleton sheet fitted to the melody), and a
transposition into the artist's range.

millamusic.cover.files writes it (YAML with comments, the melody MIDI, the lyric sheet).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from millamusic.analysis.form import SectionEstimate
from millamusic.compose import DEFAULT_RANGE, PHRASE_REST_BEATS
from millamusic.core.errors import SpecError
from millamusic.cover.analysis import ReferenceAnalysis
from millamusic.music.lyrics import LyricBlock, SheetLine, line_words, parse_sheet, split_backing, sung_blocks

MIN_SPLIT_BEATS = 0.25  # a note is split for a second syllable only if both halves are this long
SKELETON_SYLLABLE = "la"
# Header words that name the same kind of section on published lyric sheets.
_HEADER_SYNONYMS = {"refrain": "chorus", "hook": "chorus", "prechorus": "pre-chorus", "pre": "pre-chorus",
                    "middle": "bridge", "middle8": "bridge", "coda": "outro", "ending": "outro"}


@dataclass(frozen=True)
class DraftSection:
    name: str
    kind: str  # a spec section kind: intro, verse, prechorus, chorus, bridge, solo, outro
    start_bar: int
    bars: int
    label: str  # the repetition label from the analysis: same label, same music


@dataclass(frozen=True)
class DraftNote:
    start_beat: float  # from bar 1's first beat
    length_beats: float
    pitch: int  # MIDI, in the reference's key (the spec's `transpose` moves it)


@dataclass
class CoverDraft:
    title: str
    artist: str
    genre: str
    analysis: ReferenceAnalysis
    sections: list[DraftSection]
    lyrics: str  # the lyric sheet as written to the draft's .txt
    melody: list[DraftNote] | None
    transpose: int
    findings: list[str] = field(default_factory=list)  # what was found and what was not, for the producer


# --------------------------------------------------------------------------- sections


def _base(name: str) -> str:
    """'Verse 2' -> 'verse', '[Pre Chorus]' -> 'pre-chorus', 'Refrain' -> 'chorus'."""
    words = re.sub(r"[^a-z0-9 ]", "", name.lower().replace("-", " ")).split()
    words = [w for w in words if not w.isdigit()]
    joined = "".join(words)
    if joined in ("prechorus",):
        return "pre-chorus"
    return _HEADER_SYNONYMS.get(joined, " ".join(words))


def name_sections(found: tuple[SectionEstimate, ...], sung_bars: set[int]) -> list[DraftSection]:
    """Names for the measured sections. Unsung music at the start is the Intro, at the end the
    Outro; the loudest repeated music is the Chorus; the repeated music sung most (else longest)
    is the Verse; other repeated music always right before a Chorus is the Pre-Chorus; music heard
    once is a Bridge (sung) or a Solo. Repeats share a name; `sung_bars` empty means no melody
    was heard, and then only the first and last sections can be instrumental."""
    counts = Counter(s.label for s in found)
    repeated = list(dict.fromkeys(s.label for s in found if counts[s.label] > 1))

    def sung(section) -> bool:
        return any(b in sung_bars for b in range(section.start_bar, section.start_bar + section.bars))

    known = bool(sung_bars)
    edges = {0: ("Intro", "intro"), len(found) - 1: ("Outro", "outro")}
    inner = [s for i, s in enumerate(found)
             if i not in edges or (known and sung(s)) or (not known and s.label in repeated)]
    inner_repeated = [label for label in repeated if any(s.label == label for s in inner)]
    names: dict[str, tuple[str, str]] = {}
    if inner_repeated:
        loudness = {label: max(s.energy_db for s in inner if s.label == label) for label in inner_repeated}
        chorus = max(inner_repeated, key=loudness.get)
        names[chorus] = ("Chorus", "chorus")
        rest = [label for label in inner_repeated if label != chorus]
        if rest:
            weight = {label: (sum(s.bars for s in inner if s.label == label and sung(s)),
                              sum(s.bars for s in inner if s.label == label)) for label in rest}
            verse = max(rest, key=weight.get)
            names[verse] = ("Verse", "verse")
            for label in rest:
                if label in names:
                    continue
                before = all(i + 1 < len(found) and found[i + 1].label == chorus
                             for i, s in enumerate(found) if s.label == label)
                taken = {name for name, _ in names.values()}
                names[label] = (("Pre-Chorus", "prechorus") if before and "Pre-Chorus" not in taken
                                else (f"Part {label}", "other"))
    out, used = [], Counter()
    for index, section in enumerate(found):
        if section in inner and section.label in names:
            name, kind = names[section.label]
        else:
            name, kind = edges.get(index) if section not in inner else (
                ("Bridge", "bridge") if sung(section) or not known else ("Solo", "solo"))
            used[name] += 1
            name = name if used[name] == 1 else f"{name} {used[name]}"  # different music, different name
        out.append(DraftSection(name, kind, section.start_bar, section.bars, section.label))
    return out


# --------------------------------------------------------------------------- melody and lyrics


def melody_on_grid(analysis: ReferenceAnalysis, total_beats: float) -> list[DraftNote]:
    notes = []
    for note in analysis.melody.notes:
        start, end = analysis.beat_of(note.start_seconds), analysis.beat_of(note.end_seconds)
        if 0 <= start < total_beats and end > start:
            notes.append(DraftNote(round(start * 4) / 4, max(0.25, round((min(end, total_beats) - start) * 4) / 4),
                                   note.midi))
    return notes


def _phrases(notes: list[DraftNote]) -> list[list[DraftNote]]:
    """Notes split at rests of PHRASE_REST_BEATS or more: the composer's own phrase rule."""
    phrases: list[list[DraftNote]] = []
    for note in notes:
        rest = note.start_beat - (phrases[-1][-1].start_beat + phrases[-1][-1].length_beats) if phrases else 0.0
        if not phrases or rest >= PHRASE_REST_BEATS:
            phrases.append([])
        phrases[-1].append(note)
    return phrases


def _groups(notes: list[DraftNote], count: int) -> list[list[DraftNote]] | None:
    """`notes` cut into `count` runs at the count-1 longest rests between them (None: too few notes)."""
    if len(notes) < count:
        return None
    gaps = sorted(range(1, len(notes)), key=lambda i: notes[i].start_beat - notes[i - 1].start_beat
                  - notes[i - 1].length_beats, reverse=True)[: count - 1]
    cuts = [0, *sorted(gaps), len(notes)]
    return [notes[a:b] for a, b in zip(cuts, cuts[1:])]


def fit_notes(notes: list[DraftNote], syllables: int) -> list[DraftNote] | None:
    """Exactly `syllables` notes from a sung phrase: the shortest note joins the one before it
    (one syllable held across both) until few enough; the longest splits in two until enough.
    None when a note would get shorter than MIN_SPLIT_BEATS."""
    out = list(notes)
    while len(out) > syllables > 0:
        i = min(range(len(out)), key=lambda k: (out[k].length_beats, k))
        j = max(i - 1, 0)  # into the note before it (the first note takes the second)
        a, b = out[j], out[j + 1]
        merged = DraftNote(a.start_beat, b.start_beat + b.length_beats - a.start_beat,
                           a.pitch if a.length_beats >= b.length_beats else b.pitch)
        out[j: j + 2] = [merged]
    while len(out) < syllables:
        i = max(range(len(out)), key=lambda k: out[k].length_beats)
        half = out[i].length_beats / 2
        if half < MIN_SPLIT_BEATS:
            return None
        out[i: i + 1] = [DraftNote(out[i].start_beat, half, out[i].pitch),
                         DraftNote(out[i].start_beat + half, half, out[i].pitch)]
    return out


def _sung_notes(text: str, language: str) -> int:
    """The lead's notes in a sheet line: a backing part in parentheses is not sung by the lead."""
    return sum(word.notes for word in line_words(split_backing(text)[0], language))


def _in_section(notes: list[DraftNote], section: DraftSection, beats_per_bar: int) -> list[DraftNote]:
    first, last = section.start_bar * beats_per_bar, (section.start_bar + section.bars) * beats_per_bar
    return [n for n in notes if first <= n.start_beat < last]


def skeleton_sheet(sections: list[DraftSection], notes: list[DraftNote], beats_per_bar: int) -> list[LyricBlock]:
    """One block per sung section name, one line of 'la' per phrase of its first sung occurrence."""
    blocks, seen = [], set()
    for section in sections:
        phrases = _phrases(_in_section(notes, section, beats_per_bar))
        if section.name in seen or not phrases:
            continue
        seen.add(section.name)
        lines = [" ".join([SKELETON_SYLLABLE] * len(p)) for p in phrases]
        blocks.append(_block(section.name, lines))
    return blocks


def _block(header: str, lines: list[str]) -> LyricBlock:
    return LyricBlock(header, 0, tuple(SheetLine(text, 0) for text in lines))


def map_sheet(sections: list[DraftSection], blocks: list[LyricBlock]) -> tuple[list[DraftSection] | None, str]:
    """Rename the draft's sections after the sheet's headers ('Verse' x2 + [Verse 1], [Verse 2] ->
    'Verse 1', 'Verse 2'). (None, why) when a header names no detected section."""
    by_base: dict[str, list[str]] = {}
    for block in blocks:
        by_base.setdefault(_base(block.header), []).append(block.header)
    draft_bases = {_base(s.name) for s in sections}
    unmatched = [h for base, headers in by_base.items() if base not in draft_bases for h in headers]
    if unmatched:
        heard = ", ".join(dict.fromkeys(s.name for s in sections))
        return None, (f"the lyric sheet's [{'], ['.join(unmatched)}] name no section heard in the recording "
                      f"(heard: {heard})")
    seen: Counter = Counter()
    renamed = []
    for section in sections:
        headers = by_base.get(_base(section.name))
        if headers:
            name = headers[min(seen[section.name], len(headers) - 1)]
            seen[section.name] += 1
            section = DraftSection(name, section.kind, section.start_bar, section.bars, section.label)
        renamed.append(section)
    return renamed, ""


def fit_melody(sections: list[DraftSection], blocks: list[LyricBlock], notes: list[DraftNote], beats_per_bar: int,
               language: str) -> tuple[list[DraftNote] | None, str]:
    """The melody with exactly one note per sung syllable of the sheet, section by section."""
    fitted: list[DraftNote] = []
    for section, block in zip(sections, sung_blocks([s.name for s in sections], blocks)):
        if block is None:
            continue
        heard = _in_section(notes, section, beats_per_bar)
        groups = _groups(heard, len(block.lines))
        if groups is None:
            return None, (f"[{section.name}] at bar {section.start_bar + 1} has {len(block.lines)} lyric lines but "
                          f"only {len(heard)} sung notes were heard there")
        for group, line in zip(groups, block.lines):
            fit = fit_notes(group, _sung_notes(line.text, language))
            if fit is None:
                return None, f"[{section.name}] line {line.text!r} has more syllables than its phrase can hold"
            fitted.extend(fit)
    return fitted, ""


def choose_transpose(notes: list[DraftNote] | None, voice_range: tuple[int, int] | None) -> tuple[int, str]:
    """Semitones that put the sung melody inside the singer's range, the smallest move that fits
    (or, when none fits, the one that leaves the least outside). The outer 5 % of notes are left
    out: a stray octave error of the transcription must not move the song."""
    low, high = voice_range or DEFAULT_RANGE
    if not notes:
        return 0, "no melody was transcribed, so the key is kept (the composer writes inside the range)"
    pitches = sorted(n.pitch for n in notes)
    cut = len(pitches) // 20
    lo, hi = pitches[cut], pitches[len(pitches) - 1 - cut]

    def outside(shift: int) -> int:
        return max(0, low - (lo + shift)) + max(0, hi + shift - high)

    best = min(range(-12, 13), key=lambda t: (outside(t), abs(t), t < 0))
    words = f"the melody spans MIDI {lo}-{hi}; the voice sings {low}-{high}"
    return best, f"{words}: transposed {best:+d} semitones" + (f" ({outside(best)} still outside)" if outside(best)
                                                               else "")


def spec_meter(grid) -> tuple[str, float]:
    """(time_signature, tempo) the draft writes. The grid reads 6/8 as 3/4 bars of eighth pairs;
    the spec writes 6/8 with `tempo` counting its dotted quarters (three eighths: 2/3 of the pairs' rate)."""
    if grid.compound:
        return "6/8", grid.bpm * 2 / 3
    return grid.time_signature, grid.bpm


def draft_cover(analysis: ReferenceAnalysis, *, title: str, artist: str, genre: str, language: str,
                voice_range: tuple[int, int] | None, sheet: str | None, sheet_file: str) -> CoverDraft:
    grid = analysis.grid
    total_beats = len(analysis.bars) * grid.beats_per_bar
    melody = analysis.melody
    signature, tempo = spec_meter(grid)
    findings = [f"tempo {tempo:.2f} BPM, {signature}, bar 1 at {grid.first_downbeat_seconds:.3f} s "
                f"(harmony changes on the chosen downbeats {grid.meter_contrast:.2f} more than elsewhere; "
                f"next reading: {grid.meter_runner_up})"]
    if grid.compound:
        findings.append(f"6/8 heard (two dotted-quarter beats of three eighths, accented on the 1st and 4th eighth, "
                        f"rather than 3/4's three beats at {grid.bpm:.2f}): `tempo` counts the dotted quarter")
    if analysis.key_reason:
        findings.append(analysis.key_reason)
    if grid.half_time:
        findings.append("the beat tracker heard double time; the draft halves it (pass --tempo to choose)")
    if abs(grid.drift_percent) > 1.0:
        findings.append(f"the tempo drifts {grid.drift_percent:+.1f} % from the first to the last third; the draft "
                        "uses one tempo, so a render slowly parts from the reference")
    notes = melody_on_grid(analysis, total_beats) if melody.monophonic else []
    if not melody.monophonic:
        findings.append(f"no melody drafted: {melody.reason}")
    sung_bars = {int(n.start_beat // grid.beats_per_bar) for n in notes}
    sections = name_sections(analysis.sections, sung_bars)
    blocks: list[LyricBlock] = []
    if sheet is not None:
        blocks, problems = parse_sheet(sheet, file=sheet_file)
        if problems:
            raise SpecError(problems)
        renamed, why = map_sheet(sections, blocks)
        if renamed is None:
            findings.append(f"lyrics written as a skeleton: {why}; your sheet is kept below it as comments")
            blocks = []
        else:
            sections = renamed
    skeleton = not blocks
    if skeleton:
        blocks = skeleton_sheet(sections, notes, grid.beats_per_bar)
    fitted: list[DraftNote] | None = None
    if notes and blocks:
        fitted, why = fit_melody(sections, blocks, notes, grid.beats_per_bar, language)
        if fitted is None:
            findings.append(f"no melody drafted: {why}; the composer writes one (edit the lyrics or add a MIDI)")
    if not blocks:  # nothing sung was heard: one line the composer sets, so the draft renders
        sung = next((s for s in sections if s.kind in ("verse", "chorus")), sections[0])
        blocks = [_block(sung.name, ["la la la la la la la la"])]
        findings.append(f"no sung phrases heard: [{sung.name}] gets one skeleton line; write the lyrics")
    transpose, why = choose_transpose(fitted, voice_range)
    findings.append(why)
    text = _sheet_text(blocks, skeleton, sheet)
    return CoverDraft(title, artist, genre, analysis, sections, text, fitted, transpose, findings)


def _sheet_text(blocks: list[LyricBlock], skeleton: bool, original: str | None) -> str:
    head = ("# Skeleton lyrics drafted by `millamusic cover`: one line per sung phrase heard, one 'la' per note.\n"
            "# Write the words over them, one syllable per 'la' (or re-fit: run cover again with --lyrics).\n\n"
            if skeleton else "")
    body = "\n\n".join(f"[{b.header}]\n" + "\n".join(line.text for line in b.lines) for b in blocks)
    tail = ""
    if skeleton and original:
        tail = "\n\n# Your lyric sheet, as given (its headers did not match the sections heard):\n" + "\n".join(
            f"# {line}" for line in original.splitlines())
    return head + body + tail + "\n"
