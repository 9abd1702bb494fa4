"""The kokoro engine's text side: the score's notes as sung syllables, each given Kokoro's symbols.

Each lyric line is phonemised once by espeak-ng (whole lines: "a", "the", "to" are reduced in
context; a `pronunciations` entry replaces a word by espeak phoneme mnemonics). Its phoneme events
are given to words by order and split into one group per sung syllable (`voice/syllables.py`,
shared with the `singer`), then mapped onto Kokoro's symbols (`kokoro_model.ipa_to_symbols`);
symbols it cannot map are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from millamusic.core.errors import RenderError
from millamusic.music import espeak
from millamusic.music.score import Score
from millamusic.voice import kokoro_model
from millamusic.voice.kokoro_model import HALF_S
from millamusic.voice.melody import note_groups, word_text
from millamusic.voice.syllables import Phone, clean_word, phones_per_word, spoken_words, syllable_groups

_STRESS = {"ˈ", "ˌ"}


@dataclass
class Syllable:
    """One sung syllable: a note with text plus any melisma notes after it, and its symbols."""

    notes: list[int]  # indices into score.notes
    word: int
    line: int
    start: float  # seconds: where the vowel lands (the first note's start)
    end: float  # seconds: end of the last note (clipped at the next syllable's start)
    pitches: list[tuple[float, float, int]]  # (start_s, end_s, midi) per note
    onset: list[str] = field(default_factory=list)  # symbols before the vowel (space, consonants, stress)
    nucleus: list[str] = field(default_factory=list)  # the vowel (first symbol held), then its glide
    coda: list[str] = field(default_factory=list)
    word_start: bool = False


def sung_syllables(score: Score) -> list[Syllable]:
    return [Syllable(group, score.notes[group[0]].word_index, score.notes[group[0]].line_index, start, end, pitches)
            for group, start, end, pitches in note_groups(score, HALF_S)]


def _spoken_text(word: str, pronunciations: dict[str, str]) -> str:
    """What espeak is asked to say for a lyric word: the cleaned word or its [[mnemonics]]."""
    cleaned = clean_word(word)
    for key, mnemonics in pronunciations.items():
        if clean_word(key).lower() == cleaned.lower():
            return f"[[{mnemonics.strip()}]]"
    return cleaned


def attach_symbols(score: Score, syllables: list[Syllable], language: str, pronunciations: dict) -> dict:
    """Give every syllable its Kokoro symbols. Returns what went wrong, for the details:
    vowel-count mismatches, unmappable IPA and silent words."""
    by_line: dict[int, list[int]] = {}
    for syl in syllables:
        words = by_line.setdefault(syl.line, [])
        if syl.word not in words:
            words.append(syl.word)
    unknown: dict[str, int] = {}
    mismatches, silent = [], []
    spoken: dict[str, list[list[Phone]]] = {}  # a repeated chorus line is phonemised once
    for line, word_ids in by_line.items():
        texts = [_spoken_text(word_text(score, syllables, w), pronunciations) for w in word_ids]
        key = " ".join(texts)
        if key not in spoken:
            spans, pos = [], 0
            for text in texts:
                spans.append((pos, pos + len(text)))
                pos += len(text) + 1
            try:
                utt = espeak.speak(key, language, rate_wpm=160, phoneme_input=True)
            except espeak.EspeakError as exc:
                raise RenderError(f"kokoro: espeak-ng failed on lyric line {line + 1} ({key!r}): {exc}") from exc
            frames = max(int(len(utt.samples) / (utt.sample_rate * 0.005)) + 1, 2)
            spoken[key] = phones_per_word(utt, spans, frames, 0.005)
        words = spoken[key]
        for slots in spoken_words(words):
            word_syllables = [s for s in syllables if s.line == line and s.word in {word_ids[k] for k in slots}]
            phones = words[slots[0]]
            if not phones:
                silent.append(" ".join(texts[k] for k in slots))
                continue
            groups, found = syllable_groups(phones, len(word_syllables))
            if found != len(word_syllables):
                mismatches.append({"word": " ".join(texts[k] for k in slots), "espeak_vowels": found,
                                   "sung_syllables": len(word_syllables)})
            for j, (syl, g) in enumerate(zip(word_syllables, groups)):
                syl.word_start = j == 0
                syl.onset = _symbols(phones[g.o : g.n0], unknown)
                nucleus = _symbols(phones[g.n0 : g.n1], unknown)
                # stress marks belong before the vowel: they move to the onset's end
                syl.onset += [s for s in nucleus if s in _STRESS]
                syl.nucleus = [s for s in nucleus if s not in _STRESS] or ["ə"]
                syl.coda = [s for s in _symbols(phones[g.n1 : g.c], unknown) if s not in _STRESS]
    return {"vowel_count_mismatches": mismatches, "unknown_ipa": unknown, "silent_words": silent}


def _symbols(phones: list[Phone], unknown: dict[str, int]) -> list[str]:
    out: list[str] = []
    for phone in phones:
        symbols, missing = kokoro_model.ipa_to_symbols(phone.ipa)
        out.extend(symbols)
        for ch in missing:
            unknown[ch] = unknown.get(ch, 0) + 1
    return out
