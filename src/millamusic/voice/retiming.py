"""The singer's re-timing: the score's notes as sung syllables (units), each placed so its vowel
lands on the beat, and a phrase's source frames laid out on its own 5 ms grid.

Onset consonants go just before the beat, the vowel's steady core is stretched to fill the note,
the coda sits at the note's end; consonants keep their natural length unless a fast passage
forces them shorter. Every syllable's frames are gathered from its spoken line's WORLD analysis
and levelled, ready for resynthesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from millamusic.music.score import Score
from millamusic.voice.melody import note_groups
from millamusic.voice.speech_analysis import FRAME_S, Analysis, Source

PHRASE_GAP_S = 0.3  # a silence longer than this between syllables starts a new synthesis phrase


@dataclass
class Unit:
    """One sung syllable: a note with text plus any melisma ('') notes after it."""

    notes: list[int]  # indices into score.notes, time order
    word: int  # index into score.words (or -1)
    line: int
    start: float  # seconds: the beat the vowel lands on
    end: float  # seconds: end of the last note (clipped at the next unit's start)
    pitches: list[tuple[float, float, int]]  # (start_s, end_s, midi) per note
    source: Source | None = None
    # placement, seconds (filled by place_units)
    onset_s: float = 0.0
    coda_s: float = 0.0
    onset_start: float = 0.0
    vowel_end: float = 0.0
    coda_end: float = 0.0


def sung_units(score: Score) -> list[Unit]:
    """Group the notes into sung syllables, in time order."""
    return [Unit(group, score.notes[group[0]].word_index, score.notes[group[0]].line_index, start, end, pitches)
            for group, start, end, pitches in note_groups(score, FRAME_S)]


def place_units(units: list[Unit]) -> None:
    """Decide onset start, vowel end and coda end (seconds) of every unit.

    The vowel lands on the beat, so a syllable's onset consonants take time from the
    previous note. Each note keeps at least half its length (or 60 ms) of vowel; where
    the consonants do not fit they are shortened together.
    """
    for u in units:
        src = u.source
        u.onset_s = min((src.onset[1] - src.onset[0]) * FRAME_S, 0.35)
        u.coda_s = min((src.coda[1] - src.coda[0]) * FRAME_S, 0.35)
    min_vowel = [min(max(0.06, 0.5 * (u.end - u.start)), u.end - u.start) for u in units]
    units[0].onset_s = min(units[0].onset_s, units[0].start)
    for k in range(len(units) - 1):
        u, nxt = units[k], units[k + 1]
        budget = max(nxt.start - u.start - min_vowel[k], 0.0)
        need = u.coda_s + nxt.onset_s
        if need > budget:
            u.coda_s *= budget / need
            nxt.onset_s *= budget / need
        u.coda_s = min(u.coda_s, max(u.end - u.start - min_vowel[k], 0.0))
    for k, u in enumerate(units):
        u.onset_start = u.start - u.onset_s
        release = min(u.end, units[k + 1].start - units[k + 1].onset_s) if k + 1 < len(units) else u.end
        u.vowel_end = max(release - u.coda_s, u.start + FRAME_S)
        u.coda_end = u.vowel_end + u.coda_s


def split_phrases(units: list[Unit]) -> list[list[Unit]]:
    """Split the units where the voice is silent for longer than PHRASE_GAP_S."""
    phrases: list[list[Unit]] = []
    for u in units:
        if phrases and u.onset_start - phrases[-1][-1].coda_end <= PHRASE_GAP_S:
            phrases[-1].append(u)
        else:
            phrases.append([u])
    return phrases


def _linear_positions(count: int, span: tuple[int, int]) -> np.ndarray:
    """`count` source positions spread evenly over the frame range `span`."""
    a, b = span
    if count <= 0:
        return np.zeros(0)
    if b <= a:
        return np.full(count, float(a))
    return np.clip(a + (np.arange(count) + 0.5) * (b - a) / count - 0.5, a, b - 1)


def _vowel_positions(count: int, src: Source) -> tuple[np.ndarray, np.ndarray]:
    """Source positions for the vowel (head, stretched core, tail) and a core mask."""
    head, tail = src.head[1] - src.head[0], src.tail[1] - src.tail[0]
    core_min = src.core[1] - src.core[0]
    if count < head + tail + core_min:  # short note: play the whole nucleus faster
        pos = _linear_positions(count, (src.head[0], src.tail[1]))
        return pos, np.zeros(count, dtype=bool)
    core_n = count - head - tail
    pos = np.concatenate(
        [
            np.arange(src.head[0], src.head[1], dtype=float),
            # slow motion through the core: looping it back and forth was tried and makes
            # moving vowels (diphthongs, r-coloured vowels) wobble audibly
            _linear_positions(core_n, src.core),
            np.arange(src.tail[0], src.tail[1], dtype=float),
        ]
    )
    mask = np.zeros(count, dtype=bool)
    mask[head : head + core_n] = True
    return pos, mask


@dataclass
class Frames:
    """Frame-wise features of one phrase, ready for pyworld.synthesize."""

    first: int  # absolute frame index of frame 0 (time = first * FRAME_S)
    sp: np.ndarray  # (frames, bins)
    ap: np.ndarray  # (frames, bins)
    voiced: np.ndarray  # (frames,) bool
    units: list[tuple[int, int, int]]  # per unit, phrase-relative frames: onset start, beat, vowel end


def _to_frame(t: float) -> int:
    return int(round(t / FRAME_S))


def first_frame(phrase: list[Unit]) -> int:
    """The absolute 5 ms frame a phrase's synthesis starts on (4 frames of lead-in)."""
    return max(_to_frame(phrase[0].onset_start) - 4, 0)


def phrase_frames(phrase: list[Unit], bins: int, analyses: Mapping[str, Analysis]) -> Frames:
    """Lay out every unit's onset, vowel and coda frames on the phrase's frame grid; `analyses`
    holds the analysis of each unit's spoken line (by Source.line)."""
    first = first_frame(phrase)
    layout = []  # per unit: onset start, beat, vowel end, coda end (phrase frames)
    for u in phrase:
        f_on, f_beat = _to_frame(u.onset_start) - first, _to_frame(u.start) - first
        f_vend = max(_to_frame(u.vowel_end) - first, f_beat + 1)
        layout.append((f_on, f_beat, f_vend, max(_to_frame(u.coda_end) - first, f_vend)))
    n = max(f_cend for *_, f_cend in layout) + 4
    sp = np.full((n, bins), 1e-16)
    ap = np.ones((n, bins))
    voiced = np.zeros(n, dtype=bool)
    for u, (f_on, f_beat, f_vend, f_cend) in zip(phrase, layout):
        src = u.source
        vowel_pos, core = _vowel_positions(f_vend - f_beat, src)
        pos = np.concatenate(
            [
                _linear_positions(f_beat - f_on, src.onset),
                vowel_pos,
                _linear_positions(f_cend - f_vend, src.coda),
            ]
        )
        forced = np.zeros(len(pos), dtype=bool)
        forced[f_beat - f_on : f_vend - f_on] = core  # the held core is always sung
        seg_sp, seg_ap, seg_voiced = _gather(analyses[src.line], pos, forced)
        vowel = np.zeros(len(pos), dtype=bool)
        vowel[f_beat - f_on : f_vend - f_on] = True
        seg_sp *= _level_gains(seg_sp, forced, vowel)[:, None]
        sp[f_on:f_cend], ap[f_on:f_cend], voiced[f_on:f_cend] = seg_sp, seg_ap, seg_voiced
    return Frames(first, sp, ap, voiced, [(f_on, f_beat, f_vend) for f_on, f_beat, f_vend, _ in layout])


def _gather(an: Analysis, pos: np.ndarray, forced: np.ndarray):
    """Interpolate the analysis at fractional frame positions.

    Returns sp, ap (len(pos), bins) and voiced (len(pos),). Frames inside a vowel (or
    `forced`) are voiced even where DIO found none (their aperiodicity was already
    fixed up in `analyse_line`).
    """
    i0 = np.clip(np.floor(pos).astype(int), 0, len(an.f0) - 1)
    i1 = np.minimum(i0 + 1, len(an.f0) - 1)
    w = (pos - np.floor(pos))[:, None]
    log_sp = (1 - w) * np.log(an.sp[i0] + 1e-20) + w * np.log(an.sp[i1] + 1e-20)
    ap = (1 - w) * an.ap[i0] + w * an.ap[i1]
    nearest = np.clip(np.round(pos).astype(int), 0, len(an.f0) - 1)
    voiced = (an.f0[nearest] > 0) | an.vowel[nearest]
    ap[forced & ~voiced] = an.ap_voiced
    return np.exp(log_sp), ap, voiced | forced


def _level_gains(sp: np.ndarray, core: np.ndarray, vowel: np.ndarray) -> np.ndarray:
    """Per-frame power gains (shape (frames,)) for one syllable's frames.

    The stretched core is held at its mean level: spoken vowels swell and fade, which
    slowed down would sound as a tremolo. Nothing else in the syllable (consonants,
    vowel transitions) may be louder than that level: a spoken 'w' or a fading word-end
    vowel would otherwise come out louder than the sung note. `vowel` is the
    reference where the note is too short for a core.
    """
    level_db = 10 * np.log10(sp.sum(axis=1) + 1e-30)
    reference = core if core.any() else vowel
    target = float(np.mean(level_db[reference]))
    gain_db = np.where(core, np.clip(target - level_db, -12.0, 12.0), np.minimum(target + 1.0 - level_db, 0.0))
    width = 5
    smooth = np.convolve(np.pad(gain_db, width, mode="edge"), np.ones(width) / width, mode="same")[width:-width]
    return 10 ** (smooth / 10)
