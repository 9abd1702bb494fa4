"""The text side of singing, shared by the vocal engines: which phonemes a sung syllable has.

espeak-ng speaks (or phonemises) a lyric line and reports word and phoneme events in order.
Phonemes are given to words by that order, never by sample position, and each word's
phonemes are split into one group per sung syllable: onset consonants + vowel nucleus + coda.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from millamusic.music import espeak

SONORANTS = set("mnŋlɹrɾwjɲɫ")


@dataclass
class Phone:
    ipa: str
    start: int  # frame (the engine's own frame grid)
    end: int  # exclusive

    @property
    def vowel_letters(self) -> int:
        return sum(1 for ch in self.ipa if ch in espeak.IPA_VOWELS) + self.ipa.count(espeak.SYLLABIC_MARK)

    @property
    def is_vowel(self) -> bool:
        return self.vowel_letters > 0


def clean_word(text: str) -> str:
    """What espeak is asked to say for a lyric word: letters, digits, apostrophes and the hyphens
    inside a word ("twenty-four": one word, as a voicebank's dictionary would list it)."""
    text = unicodedata.normalize("NFC", text).replace("’", "'")
    text = re.sub(r"(?<!\w)-+|-+(?!\w)", " ", re.sub(r"[^\w'-]+", " ", text))
    text = re.sub(r"\s+", " ", text).strip(" '_")
    return text or "la"


def phones_per_word(utt: espeak.Utterance, spans: list[tuple[int, int]], n_frames: int,
                    frame_s: float) -> list[list[Phone]]:
    """Phones of each word, assigned by event order: a phoneme belongs to the word whose
    WORD event came last before it. A phoneme lasts until the next phoneme event. Frames are
    `frame_s` seconds long."""
    to_frame = 1.0 / (utt.sample_rate * frame_s)
    marks = []  # (word index or -1 for a pause, ipa, start sample)
    current = 0
    for ev in utt.events:
        if ev.kind == "word":
            current = span_index(spans, ev.text_position)
        else:
            marks.append((current if ev.text else -1, ev.text, ev.sample))
    out: list[list[Phone]] = [[] for _ in spans]
    for k, (word, ipa, sample) in enumerate(marks):
        end_sample = marks[k + 1][2] if k + 1 < len(marks) else len(utt.samples)
        start, end = int(round(sample * to_frame)), int(round(end_sample * to_frame))
        start, end = min(start, n_frames - 1), min(max(end, start + 1), n_frames)
        if word >= 0 and end > start:
            out[word].append(Phone(ipa, start, end))
    return out


def span_index(spans: list[tuple[int, int]], position: int) -> int:
    """The word whose character span holds `position` (or the last one starting before it)."""
    best = 0
    for k, (start, _end) in enumerate(spans):
        if start <= position:
            best = k
    return best


# --- syllabification -----------------------------------------------------------------------
@dataclass
class Group:
    """Phone index ranges of one syllable inside a word: onset [o, n0), nucleus [n0, n1), coda [n1, c)."""

    o: int
    n0: int
    n1: int
    c: int
    main: int  # the vowel phone whose core is stretched


def syllable_groups(phones: list[Phone], count: int) -> tuple[list[Group], int]:
    """Split a word's phones into `count` syllable groups; also return espeak's vowel count.

    Between two vowels a single consonant starts the next syllable (singers carry it
    over); of a cluster the first consonant closes the syllable and the rest start the
    next. If espeak's vowel count differs from `count`, neighbouring groups are merged
    or the longest vowel is shared, so the count always matches.
    """
    vowels = [k for k, ph in enumerate(phones) if ph.is_vowel]
    found = len(vowels)
    if not vowels:  # e.g. "hmm": sing the longest sonorant (or longest phone)
        sonorant = [k for k, ph in enumerate(phones) if any(ch in SONORANTS for ch in ph.ipa)]
        pool = sonorant or list(range(len(phones)))
        vowels = [max(pool, key=lambda k: phones[k].end - phones[k].start)]
    groups = []
    for j, v in enumerate(vowels):
        o = 0 if j == 0 else groups[-1].c
        if j + 1 < len(vowels):
            cluster = vowels[j + 1] - v - 1
            c = v + 1 + (0 if cluster <= 1 else 1)
        else:
            c = len(phones)
        groups.append(Group(o, v, v + 1, c, v))
    groups = _merge_groups(groups, phones, count) if len(groups) > count else groups
    while len(groups) < count:
        groups = _split_longest(groups, phones)
    return groups, found


def _merge_groups(groups: list[Group], phones: list[Phone], count: int) -> list[Group]:
    """Merge neighbouring groups into `count`; the stressed (else longest) vowel is held."""
    merged = []
    for chunk in np.array_split(np.arange(len(groups)), count):
        parts = [groups[i] for i in chunk]
        mains = [g.main for g in parts]
        stressed = [m for m in mains if "ˈ" in phones[m].ipa]
        main = stressed[0] if stressed else max(mains, key=lambda m: phones[m].end - phones[m].start)
        merged.append(Group(parts[0].o, parts[0].n0, parts[-1].n1, parts[-1].c, main))
    return merged


def _split_longest(groups: list[Group], phones: list[Phone]) -> list[Group]:
    """Sing the longest vowel twice: first with the onset, then again with the coda."""
    k = max(range(len(groups)), key=lambda i: phones[groups[i].main].end - phones[groups[i].main].start)
    g = groups[k]
    first = Group(g.o, g.n0, g.n1, g.n1, g.main)
    second = Group(g.n0, g.n0, g.n1, g.c, g.main)
    return groups[:k] + [first, second] + groups[k + 1 :]


def spoken_words(words: list[list[Phone]]) -> list[list[int]]:
    """Word slots grouped as espeak spoke them.

    espeak runs an unstressed word into the one before it ("for the" -> /fɚðə/) and
    emits no word event for it, so its phones arrive with the previous word. Such a
    word is sung from the phones of that group, split by syllable like one long word.
    """
    groups: list[list[int]] = []
    for slot, phones in enumerate(words):
        if phones or not groups:
            groups.append([slot])
        else:
            groups[-1].append(slot)
    return groups


def third_above(pitch: int, scale: tuple[int, ...]) -> int:
    """The note two scale steps above `pitch` in the key (a major or minor third).
    A note outside the scale keeps its offset from the scale note under it."""
    ladder = [octave * 12 + pc for octave in range(pitch // 12 - 1, pitch // 12 + 3) for pc in sorted(scale)]
    index = max(i for i, note in enumerate(ladder) if note <= pitch)
    return ladder[index + 2] + (pitch - ladder[index])
