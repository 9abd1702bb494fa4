"""The diffsinger engine's timing side: sung syllables with phonemes -> phrases of model inputs.

A phrase is `[SP] + phonemes + [SP]` on the bank's frame grid (hop_size / sample_rate), with
HEAD_FRAMES of silence before its first phoneme and TAIL_FRAMES after its last note, as OpenUtau
renders (docs/diffsinger-format.md, 4.1). Its phonemes are grouped as the duration model expects
(4.4): the first group is the opening SP and the first syllable's onset consonants; every later
group starts at a note, with that syllable's vowel, and holds the consonants up to the next note.
`word_div` counts each group's phonemes and `word_dur` its frames. The duration model's
predictions are then fitted into each group's span: the onset consonants keep their predicted
lengths and end on the first note, every later group is scaled to fill its note exactly, so each
vowel starts on its beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from millamusic.voice.diffsinger_phonemes import SungSyllable

HEAD_FRAMES = 8  # silence before a phrase's first phoneme (newer OpenUtau's fixed padding)
TAIL_FRAMES = 8
PHRASE_GAP_S = 0.6  # a rest longer than this starts a new phrase
DEFAULT_CONSONANT_FRAMES = 5.0  # a consonant's length when the bank has no duration model (~58 ms at 44.1 kHz / 512)
MAX_CONSONANT_SHARE = 0.5  # of a note that the consonants after its vowel may take


@dataclass(frozen=True)
class Phrase:
    syllables: tuple[SungSyllable, ...]
    start_frame: int  # where the phrase's audio starts on the song's frame grid (its head SP)
    tokens: tuple[str, ...]  # SP, phonemes, SP
    groups: tuple[int, ...]  # word_div: phonemes per group
    group_frames: tuple[int, ...]  # word_dur: frames per group
    midi: tuple[int, ...]  # ph_midi: each phoneme's note
    onset_count: int  # consonants before the first note (after the opening SP)

    @property
    def frames(self) -> int:
        return sum(self.group_frames)


def phrases(syllables: list[SungSyllable], frame_s: float) -> list[Phrase]:
    """The syllables (in time order, with phonemes) as phrases split at rests over PHRASE_GAP_S."""
    out, current = [], []
    for syl in syllables:
        if current and syl.start - current[-1].end > PHRASE_GAP_S:
            out.append(_phrase(current, frame_s))
            current = []
        current.append(syl)
    if current:
        out.append(_phrase(current, frame_s))
    return out


def _phrase(syllables: list[SungSyllable], frame_s: float) -> Phrase:
    anchors = [int(round(syl.start / frame_s)) for syl in syllables]  # each vowel's frame
    end = int(round(syllables[-1].end / frame_s)) + TAIL_FRAMES
    start = anchors[0] - HEAD_FRAMES
    first = syllables[0]
    tokens = ["SP", *first.onset]
    groups = [len(tokens)]
    midi = [first.pitches[0][2]] * len(tokens)
    for k, syl in enumerate(syllables):
        following = syllables[k + 1].onset if k + 1 < len(syllables) else ["SP"]
        group = [*syl.vowel, *syl.coda, *following]
        tokens += group
        groups.append(len(group))
        midi += [syl.pitches[0][2]] * len(group)
    bounds = [start, *anchors, end]
    frames = [max(1, b - a) for a, b in zip(bounds, bounds[1:])]
    return Phrase(tuple(syllables), start, tuple(tokens), tuple(groups), tuple(frames), tuple(midi), len(first.onset))


def fit_durations(phrase: Phrase, predicted: np.ndarray | None, is_vowel) -> np.ndarray:
    """Frames per token (int64, summing to phrase.frames) from the duration model's prediction (float
    frames per token), or from DEFAULT_CONSONANT_FRAMES when the bank has none."""
    tokens = phrase.tokens
    if predicted is None:
        predicted = np.array([1.0 if is_vowel(t) else DEFAULT_CONSONANT_FRAMES for t in tokens])
    predicted = np.maximum(np.asarray(predicted, dtype=np.float64), 1.0)
    out = np.zeros(len(tokens), dtype=np.float64)
    # first group: the onset consonants keep their lengths (squeezed into the head if they must) and end on the note
    head = phrase.group_frames[0]
    onsets = predicted[1 : 1 + phrase.onset_count]
    room = max(head - 1.0, 0.0)
    if onsets.sum() > room and onsets.sum() > 0:
        onsets = onsets * (room / onsets.sum())
    out[1 : 1 + phrase.onset_count] = onsets
    out[0] = head - onsets.sum()
    index = phrase.groups[0]
    for size, span in zip(phrase.groups[1:], phrase.group_frames[1:]):
        part = predicted[index : index + size].copy()
        if size > 1:  # the vowel fills the note; the consonants after it keep their length up to a share of it
            rest = part[1:]
            cap = MAX_CONSONANT_SHARE * span
            if rest.sum() > cap:
                rest *= cap / rest.sum()
            part[0] = span - rest.sum()
            part[1:] = rest
        else:
            part[0] = span
        out[index : index + size] = part
        index += size
    # whole frames that add up exactly: round the running sum, as OpenUtau does
    ends = np.round(np.cumsum(out)).astype(np.int64)
    durations = np.diff(np.concatenate([[0], ends]))
    return np.maximum(durations, 0)


def f0_curve(phrase: Phrase, frame_s: float, notes_hz) -> np.ndarray:
    """Hz per frame of the phrase: `notes_hz(times_s)` (the notes with vibrato and glides) at each
    frame's time; the head and tail hold the first and last note."""
    times = (phrase.start_frame + np.arange(phrase.frames)) * frame_s
    return np.asarray(notes_hz(times), dtype=np.float32)


def phrase_notes(phrase: Phrase, frame_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(note_midi float32, note_rest bool, note_dur int64 frames) of the phrase for a pitch model, as
    OpenUtau builds them (docs/diffsinger-format.md, 4.5): a rest note over the head, every sung
    note until the next one starts (a rest between them when the melody pauses), the last one to
    the phrase's end; a rest takes the pitch of the note before it (the first, of the note after)."""
    notes = [(start, end, midi) for syl in phrase.syllables for start, end, midi in syl.pitches]
    marks: list[tuple[int, float, bool]] = [(phrase.start_frame, float(notes[0][2]), True)]  # (frame, midi, rest)
    for k, (start, end, midi) in enumerate(notes):
        marks.append((int(round(start / frame_s)), float(midi), False))
        following = notes[k + 1][0] if k + 1 < len(notes) else None
        if following is not None and following - end > frame_s:
            marks.append((int(round(end / frame_s)), float(midi), True))
    stop = phrase.start_frame + phrase.frames
    bounds = [frame for frame, _, _ in marks] + [stop]
    durations = np.maximum(np.diff(np.maximum.accumulate(np.array(bounds, dtype=np.int64))), 0)
    keep = durations > 0  # a note rounding left no frame
    return (np.array([m for _, m, _ in marks], dtype=np.float32)[keep],
            np.array([r for _, _, r in marks], dtype=bool)[keep], durations[keep].astype(np.int64))
