"""The note side of singing, shared by the vocal engines: sung syllables from the score's notes,
vibrato and drift, the double take's timing and the chorus lines."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, TypeVar

import numpy as np

from millamusic.music.score import Score
from millamusic.voice.syllables import third_above

T = TypeVar("T")


def note_groups(score: Score, min_seconds: float) -> list[tuple[list[int], float, float, list[tuple[float, float, int]]]]:
    """The notes grouped into sung syllables, in time order: a note with text plus the melisma
    ('') notes after it. Per syllable: (note indices, vowel start s, end s, [(start s, end s, midi)
    per note]); ends are clipped at the next syllable's start, every span at least `min_seconds`."""
    order = sorted(range(len(score.notes)), key=lambda i: (score.notes[i].start_beat, i))
    groups: list[list[int]] = []
    for i in order:
        note = score.notes[i]
        if note.length_beats <= 0:
            continue
        if note.syllable == "" and groups:
            groups[-1].append(i)
        else:
            groups.append([i])
    out = []
    for k, group in enumerate(groups):
        notes = [score.notes[i] for i in group]
        start = score.beat_to_seconds(notes[0].start_beat)
        limit = score.beat_to_seconds(score.notes[groups[k + 1][0]].start_beat) if k + 1 < len(groups) else np.inf
        bounds = [score.beat_to_seconds(n.start_beat) for n in notes[1:]]
        bounds.append(score.beat_to_seconds(notes[-1].start_beat + notes[-1].length_beats))
        bounds = [min(b, limit) for b in bounds]
        starts = [start] + bounds[:-1]
        pitches = [(s, max(e, s + min_seconds), n.pitch) for s, e, n in zip(starts, bounds, notes)]
        out.append((group, start, max(bounds[-1], start + 2 * min_seconds), pitches))
    return out


def vibrato(notes: Iterable[tuple[float, float]], times: np.ndarray, opts: dict,
            rng: np.random.Generator) -> np.ndarray:
    """Vibrato in semitones on `times`: starts `vibrato_delay_s` into each (start, end) note,
    fades in and out; each note's rate varies by up to 4 %."""
    out = np.zeros_like(times)
    depth = opts["vibrato_depth_cents"] / 100.0
    for start, end in notes:
        rate = opts["vibrato_rate_hz"] * (1.0 + 0.04 * rng.uniform(-1, 1))
        if depth <= 0 or end - start < opts["vibrato_delay_s"] + 0.1:
            continue
        sel = (times >= start) & (times < end)
        rel = times[sel] - start - opts["vibrato_delay_s"]
        ramp = np.clip(rel / 0.3, 0, 1) * np.clip((end - times[sel]) / 0.1, 0, 1)
        out[sel] += depth * ramp * np.sin(2 * np.pi * rate * np.maximum(rel, 0))
    return out


def drift(times: np.ndarray, opts: dict, rng: np.random.Generator) -> np.ndarray:
    """Slow random pitch wander in cents (three slow sines with seeded phases)."""
    freqs = rng.uniform(0.08, 0.35, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    wave = sum(np.sin(2 * np.pi * f * times + p) for f, p in zip(freqs, phases)) / 3.0
    return opts["drift_cents"] * wave


def double_take(syllables: list[T], seed: int, phrase_gap_s: float) -> list[T]:
    """The lead's syllables for a double take: each phrase early or late by up to 15 ms.

    A double sung by a person never lands exactly on the lead; a fixed offset would
    comb-filter, a per-phrase one sounds like two takes. Items are dataclasses with
    `start`, `end` and `pitches` [(start, end, midi)].
    """
    rng = np.random.default_rng([seed, 101])
    copies, offset, last_end = [], 0.0, -np.inf
    for item in syllables:
        if item.start - last_end > phrase_gap_s:
            offset = float(rng.uniform(-0.015, 0.015))
        last_end = item.end
        copies.append(replace(item, start=item.start + offset, end=item.end + offset,
                              pitches=[(a + offset, b + offset, m) for a, b, m in item.pitches]))
    return copies


def chorus_lines(score: Score) -> set[int]:
    """Indices of the lyric lines sung in chorus sections."""
    return {k for k, line in enumerate(score.lines) if score.sections[line.section_index].kind == "chorus"}


def word_text(score: Score, syllables: list, w: int) -> str:
    """The lyric word `w` as written, or (a word the score does not list) its sung syllables
    joined. `syllables` are the engine's sung syllables: objects with `notes` and `word`."""
    if 0 <= w < len(score.words):
        return score.words[w].text
    return "".join(score.notes[s.notes[0]].syllable for s in syllables if s.word == w)


def backing_word_times(score: Score) -> dict[int, list[tuple[str, float, float]]]:
    """The backing-vocal part's words, per lyric line: (text as written, start s, end s), timed from
    the backing notes the backing voice sings (its vowels land on the notes' beats); a word ends at
    its last (melisma) note's end, or where the next backing word starts."""
    spans = word_spans((note.word_index, score.beat_to_seconds(note.start_beat),
                        score.beat_to_seconds(note.start_beat + note.length_beats)) for note in score.backing_notes)
    out: dict[int, list[tuple[str, float, float]]] = {}
    for w, (start, end) in spans.items():
        word = score.backing_words[w]
        out.setdefault(word.line_index, []).append((word.text, start, end))
    return out


def word_spans(timed: Iterable[tuple[int, float, float]]) -> dict[int, tuple[float, float]]:
    """(start s, end s) per word index, in time order, from its timed pieces (word index, start, end):
    its syllables or notes. A word ends no later than the next word starts."""
    spans: dict[int, list[float]] = {}
    for w, start, end in timed:
        span = spans.setdefault(w, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    order = sorted(spans, key=lambda w: (spans[w][0], w))
    for this, following in zip(order, order[1:]):
        spans[this][1] = max(spans[this][0], min(spans[this][1], spans[following][0]))
    return {w: (spans[w][0], spans[w][1]) for w in order}


def harmony_take(score: Score, syllables: list[T]) -> list[T]:
    """The chorus lines' syllables a diatonic third above, in the key sounding at each note (a
    section may modulate: its own `key:`)."""
    def scale_at(seconds: float) -> tuple[int, ...]:
        return score.key_at(score.seconds_to_beat(seconds)).scale_pcs

    chorus = chorus_lines(score)
    return [replace(s, pitches=[(a, b, third_above(m, scale_at(a))) for a, b, m in s.pitches])
            for s in syllables if s.line in chorus]


def backing_part(score: Score) -> Score:
    """The score's backing-vocal part as a score of its own: its words and notes in place of the lead's."""
    return replace(score, notes=score.backing_notes, words=score.backing_words)
