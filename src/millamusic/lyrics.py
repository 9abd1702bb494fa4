"""Lyric sheets: `[Section]` headers, sung lines, words split into syllables."""

from __future__ import annotations

import re
from dataclasses import dataclass

from millamusic.errors import SpecProblem

_HEADER_RE = re.compile(r"^\[(.+?)\]\s*$")
_WORD_RE = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ'’\-]+")


@dataclass(frozen=True)
class SheetLine:
    text: str
    line: int  # 1-based line in the lyric file (or in the spec for inline lyrics)


@dataclass(frozen=True)
class LyricBlock:
    header: str  # as written, e.g. "Verse 1"
    line: int
    lines: tuple[SheetLine, ...]


def parse_sheet(text: str, *, file: str, first_line: int = 1) -> tuple[list[LyricBlock], list[SpecProblem]]:
    """Split a lyric sheet into blocks under `[Header]` lines. `#` starts a comment line."""
    blocks: list[LyricBlock] = []
    problems: list[SpecProblem] = []
    header: str | None = None
    header_line = 0
    current: list[SheetLine] = []

    def close() -> None:
        if header is not None:
            blocks.append(LyricBlock(header, header_line, tuple(current)))

    for offset, raw in enumerate(text.splitlines()):
        line_no = first_line + offset
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _HEADER_RE.match(stripped)
        if match:
            close()
            header, header_line, current = match.group(1).strip(), line_no, []
            continue
        if header is None:
            problems.append(SpecProblem(file, line_no, 1, "lyrics", stripped,
                                        "lyric line before any section header",
                                        "put a header such as [Verse 1] above it, named like a section in `structure`"))
            continue
        if not words_of(stripped):
            problems.append(SpecProblem(file, line_no, 1, "lyrics", stripped, "line has no singable words",
                                        "remove it or write it as a # comment"))
            continue
        current.append(SheetLine(stripped, line_no))
    close()
    return blocks, problems


def words_of(line: str) -> list[str]:
    return [w.strip("-'’") for w in _WORD_RE.findall(line) if w.strip("-'’")]


# --- syllables ------------------------------------------------------------------------------
# Written here rather than taken from a hyphenation library: hyphenation dictionaries (pyphen)
# deliberately leave one-letter edges whole ("away", "tonight", "alive"), so they under-count
# the syllables a singer sings. Explicit hyphens in the lyric sheet ("ra-di-o") always win.

_VOWELS = "aeiouyäöåéèêàáíóúü"
_KEEP_TOGETHER = ("th", "sh", "ch", "ph", "wh", "qu", "gh")



def syllables(word: str) -> tuple[str, ...]:
    """Split a word into sung syllables, e.g. 'tonight' -> ('to', 'night')."""
    if "-" in word:
        return tuple(part for part in word.split("-") if part)
    lower = word.lower()
    groups = _vowel_groups(lower)
    if len(groups) <= 1:
        return (word,)
    groups = _drop_silent_endings(lower, groups)
    if len(groups) <= 1:
        return (word,)
    cuts = [_cut_between(lower, groups[i][1], groups[i + 1][0]) for i in range(len(groups) - 1)]
    parts, start = [], 0
    for cut in cuts:
        parts.append(word[start:cut])
        start = cut
    parts.append(word[start:])
    return tuple(p for p in parts if p)


def _vowel_groups(lower: str) -> list[tuple[int, int]]:
    """(start, end) of each vowel run; 'y' at the start of a word is a consonant."""
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(lower):
        is_vowel = lower[i] in _VOWELS and not (lower[i] == "y" and i == 0)
        if lower[i] == "u" and i > 0 and lower[i - 1] == "q":
            is_vowel = False
        if is_vowel:
            j = i + 1
            while j < len(lower) and lower[j] in _VOWELS:
                j += 1
            groups.extend(_split_hiatus(lower, i, j))
            i = j
        else:
            i += 1
    return groups


def _split_hiatus(lower: str, start: int, end: int) -> list[tuple[int, int]]:
    run = lower[start:end]
    for pair in ("ia", "io", "iu", "eo", "ua", "uo"):
        at = run.find(pair)
        if at >= 0 and not run.startswith("eou"):
            cut = start + at + 1
            return [(start, cut), (cut, end)]
    return [(start, end)]


_SUFFIXES_AFTER_SILENT_E = ("ly", "ful", "ness", "ment", "less")


def _drop_silent_endings(lower: str, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    # silent e before a suffix ("lonely", "hopeful"): the suffix's vowel is the syllable
    for index, (start, end) in enumerate(groups[1:], start=1):
        if lower[start:end] == "e" and lower[end:].startswith(_SUFFIXES_AFTER_SILENT_E) and lower[start - 1] not in _VOWELS:
            groups = groups[:index] + groups[index + 1:]
            break
    last_start, last_end = groups[-1]
    tail = lower[last_start:]
    consonant_before = last_start > 0 and lower[last_start - 1] not in _VOWELS
    # silent final e ("fire", "alive"), but not "-le" after a consonant ("little")
    if tail in ("e", "es") and consonant_before and not lower.endswith("le") and lower[last_start - 1] not in "csxz":
        return groups[:-1]
    # "-ed" is silent unless after t/d ("loved" vs "wanted")
    if tail == "ed" and consonant_before and lower[last_start - 1] not in "td":
        return groups[:-1]
    return groups


def _cut_between(lower: str, vowel_end: int, next_vowel: int) -> int:
    consonants = lower[vowel_end:next_vowel]
    if any(c in _VOWELS for c in consonants):
        return next_vowel - 1  # a silent e sits in between: "lone-ly", "hope-ful"
    if len(consonants) <= 1:
        return vowel_end  # V-CV: "to-night"
    if consonants[-2:] in _KEEP_TOGETHER and len(consonants) == 2:
        return vowel_end  # "fa-ther"
    return vowel_end + 1  # VC-CV: "spin-ning", "mem-ber"
