"""A reference recording, measured: the bar grid, key, chords per bar, form and sung melody a
cover is drafted from (millamusic.cover.draft turns this into a spec).

Each measurement is one analysis module (beat_grid, features, form, melody_notes); this module
reads the recording once, refuses what cannot be a song, and keeps the results typed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from millamusic.analysis.beat_grid import MIN_SECONDS, BeatGrid, NoBeatError, estimate_beat_grid
from millamusic.analysis.features import (
    KeyEstimate,
    chroma_frames,
    estimate_chords,
    estimate_key,
    key_chord_prior,
    mono,
)
from millamusic.analysis.form import SectionEstimate, find_sections
from millamusic.analysis.melody_notes import MelodyTranscription, transcribe_melody
from millamusic.core.audio import Audio, read_audio, resample
from millamusic.core.errors import SpecError, SpecProblem
from millamusic.music.theory import NOTE_NAMES, Key
from millamusic.spec.inputs import (
    AUDIO_READ_ERRORS,
    REFERENCE_FIX,
    REFERENCE_SUFFIXES,
    input_size_problem,
    reference_header_problem,
)

SPLIT_SCORE = 0.6  # both halves of a bar must fit their triads this well to be written as two chords
WHOLE_BAR_SCORE = 0.7  # ...and the whole bar fit its best triad worse than this
MIN_SECTION_BARS = 2
RELATIVE_MARGIN = 0.15  # profile margins under this between relative keys are settled by the chords
TAIL_DB = 12.0  # a last bar this far under the median bar is the ring-out, not music


@dataclass(frozen=True)
class ReferenceAnalysis:
    path: Path
    grid: BeatGrid
    key: KeyEstimate
    key_reason: str  # when the chords decided between relative keys: why ("" otherwise)
    bars: tuple[tuple[str, ...], ...]  # per bar from bar 1: one chord, or two ("F", "G"); "N" where nothing is pitched
    sections: tuple[SectionEstimate, ...]
    melody: MelodyTranscription  # its `monophonic` says whether the notes can be trusted

    def beat_of(self, seconds: float) -> float:
        """A time in the recording -> beats from bar 1's first beat."""
        return (seconds - self.grid.first_downbeat_seconds) / self.grid.seconds_per_beat


def _refuse(path: Path, problem: str, fix: str) -> SpecError:
    return SpecError([SpecProblem(str(path), None, None, "reference", path.name, problem, fix)])


def read_reference(path: Path) -> Audio:
    """The recording's samples, after the same checks a spec's `reference:` gets (readable, whole,
    at most 20 minutes: checked from the header before anything is decoded). Raises SpecError."""
    if not path.is_file():
        raise _refuse(path, "file not found", "give the path of a WAV, FLAC, MP3 or OGG recording")
    if path.suffix.lower() not in REFERENCE_SUFFIXES:
        raise _refuse(path, f"not an audio file we read (*{path.suffix})", "give a WAV, FLAC, MP3 or OGG recording")
    # The header checks of a spec's `reference:`, then one decode (the spec's check decodes the
    # whole file to find damage; here the decode that reads it finds the same).
    problem = input_size_problem("reference", path) or reference_header_problem(path)
    if problem is not None:
        raise _refuse(path, *problem)
    try:
        audio = read_audio(path)
    except AUDIO_READ_ERRORS as error:
        raise _refuse(path, f"not a readable audio file ({error})", REFERENCE_FIX) from None
    if audio.frames / audio.sample_rate < MIN_SECONDS:
        raise _refuse(path, f"the recording is {audio.frames / audio.sample_rate:.1f} s long; a cover is drafted "
                            f"from at least {MIN_SECONDS:g} s",
                      "give the whole song (or at least a verse and a chorus)")
    return audio


def _sounding_bars(y: np.ndarray, rate: int, grid: BeatGrid) -> int:
    """Whole bars up to the last one that still sounds like the song (within TAIL_DB of the median
    bar): the ring-out after the last chord is no bar the band should play."""
    starts = (grid.bar_starts() * rate).astype(int)
    length = int(grid.beats_per_bar * grid.seconds_per_beat * rate)
    level = np.array([10 * np.log10(np.mean(np.square(y[max(a, 0): a + length], dtype=np.float64)) + 1e-12)
                      for a in starts])
    sounding = np.flatnonzero(level > np.median(level) - TAIL_DB)
    return int(sounding[-1]) + 1 if sounding.size else len(starts)


def _settle_relative(key: KeyEstimate, bars: tuple[tuple[str, ...], ...], sections) -> tuple[KeyEstimate, str]:
    """A major key and its relative minor share every note, so pitch profiles barely tell them
    apart; songs start their sections and end on the tonic chord. When the runner-up is the
    relative key and the profiles were close, the key whose tonic triad starts more sections (and
    the last bar) wins. Returns the key and, when this decided, why."""
    relative = Key((key.tonic_pc + (9 if key.mode == "major" else 3)) % 12,
                   "minor" if key.mode == "major" else "major")
    if key.runner_up != relative.name or key.margin >= RELATIVE_MARGIN:
        return key, ""
    heard = [bars[s.start_bar][0] for s in sections] + [bars[-1][-1]]

    def tonic_chord(k: Key) -> str:
        return NOTE_NAMES[k.tonic_pc] + ("m" if k.mode == "minor" else "")

    this, other = (sum(chord == tonic_chord(k) for chord in heard) for k in (Key(key.tonic_pc, key.mode), relative))
    if other <= this:
        return key, ""
    why = (f"{key.name} and {relative.name} fit the notes almost equally (margin {key.margin:.2f}); "
           f"{relative.name} chosen: its tonic chord starts {other} of the {len(sections)} sections or ends the song "
           f"({this} for {key.name})")
    return replace(key, tonic_pc=relative.tonic_pc, mode=relative.mode, name=relative.name, runner_up=key.name), why


def _bar_chords(chroma: np.ndarray, times: np.ndarray, grid: BeatGrid, bars: int,
                key: Key) -> tuple[tuple[str, ...], ...]:
    """Per bar of a `chroma_frames` chroma: one chord, read in the song's key; two when the whole
    bar fits no triad well and its halves fit two different chords of the key well (a change on
    beat 3)."""
    starts = grid.bar_starts(bars)
    length = grid.beats_per_bar * grid.seconds_per_beat
    prior = key_chord_prior(key)
    whole = estimate_chords(chroma, times, [(s, s + length) for s in starts], prior)
    halves = None
    if grid.beats_per_bar == 4:  # a change on beat 3; a 3/4 bar has no middle
        halves = estimate_chords(chroma, times, [(s + k * length / 2, s + (k + 1) * length / 2)
                                                 for s in starts for k in (0, 1)], prior)
    in_key = {i for i in range(24) if prior[i] > 0}
    out = []
    for index, chord in enumerate(whole):
        first, second = (halves[2 * index], halves[2 * index + 1]) if halves else (chord, chord)
        halves_in_key = all(h.root_pc + (12 if h.quality == "minor" else 0) in in_key for h in (first, second))
        if (first.symbol != second.symbol and chord.score < WHOLE_BAR_SCORE and halves_in_key
                and min(first.score, second.score) > SPLIT_SCORE and chord.symbol in (first.symbol, second.symbol)):
            out.append((first.symbol, second.symbol))
        else:
            out.append((chord.symbol,))
    return tuple(out)


def analyse_reference(path: Path, *, vocal_stem: Path | None = None,
                      tempo_hint: float | None = None) -> ReferenceAnalysis:
    """Measure a reference recording (and, when given, a separate monophonic sung stem of it).

    Raises SpecError (exit 2) naming the file for what cannot be drafted from: not audio, too
    short or long, silent, no steady beat.
    """
    audio = read_reference(path)
    samples, rate = audio.samples, audio.sample_rate
    y = mono(samples)
    chroma = chroma_frames(y, rate)  # one CQT chroma for the grid, key, chords and form (0.35 s each on 84 s)
    try:
        grid = estimate_beat_grid(y, rate, prior_bpm=tempo_hint, chroma=chroma)
    except NoBeatError as error:
        raise _refuse(path, str(error), "give a recording with a steady beat, or pass --tempo BPM "
                                        "if the beat is there but was missed") from None
    bars = _sounding_bars(y, rate, grid)
    if bars < 2 * MIN_SECTION_BARS:
        raise _refuse(path, f"only {bars} whole bars after the first downbeat", "give the whole song")
    try:
        key = estimate_key(y, rate, chroma=chroma)
    except ValueError as error:
        raise _refuse(path, str(error), "give a recording with pitched instruments or voice") from None
    chords = _bar_chords(*chroma, grid, bars, Key(key.tonic_pc, key.mode))
    sections = tuple(find_sections(y, rate, grid.bar_starts(bars), min_bars=MIN_SECTION_BARS, chroma=chroma))
    key, key_reason = _settle_relative(key, chords, sections)
    beats = np.array(grid.beat_seconds)
    if vocal_stem is None:
        melody = transcribe_melody(y, rate, beat_seconds=beats)
    else:
        try:
            melody = transcribe_melody(resample(read_reference(vocal_stem), rate).samples, rate, beat_seconds=beats)
        except ValueError as error:  # a silent stem
            raise _refuse(vocal_stem, str(error), "give the sung stem of this recording") from None
    return ReferenceAnalysis(path=path, grid=grid, key=key,
                             key_reason=key_reason, bars=chords, sections=sections, melody=melody)
