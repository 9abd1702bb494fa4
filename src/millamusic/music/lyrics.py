"""Lyric sheets: `[Section]` headers, sung lines, words split into syllables.

Markers a lyric writer can use inside a line (docs/singing.md):

* `spin|ning`: explicit syllables; always wins over the automatic split, and is never published.
* `twenty-four`: a hyphen is a real hyphen: published as written, and a syllable boundary too
  (each side is split further as a word of its own).
* `love_` / `spin_|ning`: an underscore after a syllable holds it over one more note
  (a melisma); `love__` holds it over two more.
* a lone `_` between words holds the previous syllable over one more note.
* `Hold me close (hold on)`: parenthesised text at the end of a line is a backing-vocal part,
  sung by the backing voice after the line (or under its last note); a line that is only a
  parenthesis, `(ooh ooh)`, is a backing-only line. Published as written, parentheses included.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from millamusic.core.errors import SpecProblem
from millamusic.music import espeak

_HEADER_RE = re.compile(r"^\[(.+?)\]\s*$")


_WORD_RE = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿ'’\-_|]+")


MELISMA = "_"
SPLIT = "|"  # a forced syllable boundary inside a word; a hyphen is a real hyphen


# A song's lyric sheet, inline or in a file (spec.py lists it with the other spec limits). The
# longest rap verses ever released fit; a sheet past this is the wrong file, and every word
# of it would be split into syllables before anything could say so.
MAX_LYRICS_CHARS = 40_000


# Invisible characters no sung line (nor title or credit: spec.py) may hold: they show as boxes in
# players, break the published .lrc/.ttml, and direction marks reorder what a reader sees.
DIRECTION_MARKS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
INVISIBLE_MARKS = "\u200b\ufeff\u2028\u2029"


def hidden_character(text: str, allowed: str = "") -> str | None:
    """'U+202E (a direction mark) at character 5' for the first control, direction or invisible
    character in `text` (other than those in `allowed`), or None."""
    for index, ch in enumerate(text):
        if ch in allowed:
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            what = "a control character"
        elif category == "Cs":
            what = "an unpaired surrogate"
        elif ch in DIRECTION_MARKS:
            what = "a direction mark"
        elif ch in INVISIBLE_MARKS:
            what = "an invisible character"
        else:
            continue
        return f"U+{ord(ch):04X} ({what}) at character {index + 1}"
    return None


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
    if len(text) > MAX_LYRICS_CHARS:
        return [], [SpecProblem(file, first_line, 1, "lyrics", f"{len(text)} characters",
                                f"the lyric sheet is {len(text)} characters, over the {MAX_LYRICS_CHARS}-character "
                                "limit", "check that `lyrics:` holds this one song's lyrics, and shorten them")]
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
        unsung = _unsung_problem(stripped)
        if unsung is not None:
            problems.append(SpecProblem(file, line_no, 1, "lyrics", stripped, *unsung))
            continue
        indent = len(raw) - len(raw.lstrip())
        marked = _marker_problem(stripped)
        if marked is not None:
            column, problem, fix = marked
            problems.append(SpecProblem(file, line_no, indent + column, "lyrics", stripped, problem, fix))
            continue
        if not words_of(stripped):
            problems.append(SpecProblem(file, line_no, 1, "lyrics", stripped, "line has no singable words",
                                        "remove it or write it as a # comment"))
            continue
        if any(part and _WORD_RE.findall(part)[0].strip("-'’") == MELISMA for part in split_backing(stripped)):
            problems.append(SpecProblem(file, line_no, 1, "lyrics", stripped,
                                        "a line (or its backing part) cannot start with a melisma '_': there is no "
                                        "syllable to hold",
                                        "attach the '_' to the last word of the previous line, or remove it"))
            continue
        current.append(SheetLine(stripped, line_no))
    close()
    if not blocks and not problems:
        problems.append(SpecProblem(file, first_line, 1, "lyrics", text.strip(),
                                    "the lyric sheet has no [Section] header and no sung line",
                                    "write a header named like a section of `structure`, e.g. [Verse], and the lines "
                                    "sung there below it"))
    return blocks, problems


def _unsung_problem(line: str) -> tuple[str, str] | None:
    """(problem, fix) for a line the singer would sing differently from how it reads: hidden
    characters, or numbers and letters it cannot read (they would be skipped without a word)."""
    hidden = hidden_character(line, allowed="\t")
    if hidden is not None:
        return (f"line contains {hidden}",
                "retype the line without control, direction or invisible characters")
    digits, letters = [], []
    for ch in line:
        kind = unicodedata.category(ch)[0]
        if kind in "LMN" and not _WORD_RE.fullmatch(ch):
            (digits if kind == "N" else letters).append(ch)
    if digits:
        return (f"numbers are not sung: {''.join(dict.fromkeys(digits))}",
                "write numbers as words, the way they are sung (four, twenty-four seven)")
    if letters:
        return (f"letters the singer cannot read: {' '.join(dict.fromkeys(letters))}",
                ("write the lyrics in Latin letters (A-Z and accented letters such as ä, ö, å, é, ñ); transliterate "
                 "words in other scripts, and type a decomposed accent as one letter"))
    return None


_SPLIT_FIX = "write '|' only between two letters of a word, once per boundary: spin|ning"


def _marker_problem(line: str) -> tuple[int, str, str] | None:
    """(column, problem, fix) for a misplaced split mark or parenthesis in a stripped line, or None."""
    for match in _WORD_RE.finditer(line):
        token = match.group()
        for at, ch in enumerate(token):
            if ch != SPLIT:
                continue
            before, after = token[:at].replace(MELISMA, ""), token[at + 1:]
            if not before[-1:].isalpha() or not after[:1].isalpha():
                return (match.start() + at + 1,
                        f"the split mark '|' in {token!r} is not between two letters: it would make an empty "
                        "syllable", _SPLIT_FIX)
    opens = [k for k, ch in enumerate(line) if ch == "("]
    closes = [k for k, ch in enumerate(line) if ch == ")"]
    if not opens and not closes:
        return None
    backing_fix = ("a backing-vocal part is one parenthesis at the end of a line, e.g. 'Hold me close (hold on)', "
                   "or a line of its own, '(ooh ooh)'")
    if len(opens) != len(closes):
        at = (opens or closes)[-1] if len(opens) > len(closes) else closes[-1]
        return at + 1, "unbalanced parenthesis", "close the parenthesis, or remove it: " + backing_fix
    if len(opens) > 1:
        return opens[1] + 1, "more than one parenthesis (or a nested one) in a line", backing_fix
    open_at, close_at = opens[0], closes[0]
    if close_at < open_at:
        return close_at + 1, "')' before its '('", backing_fix
    if line[close_at + 1:].strip(" .,!?;:…"):
        return (open_at + 1, "a backing-vocal part in the middle of a line: only the end of a line can be sung "
                "by the backing voice", "move the parenthesis to the end of the line or onto a line of its own; "
                "write words the lead sings without parentheses")
    if not words_of(line[open_at + 1:close_at]):
        return open_at + 1, "the parenthesis holds no singable words", "write the backing words in it, or remove it"
    return None


def split_backing(line: str) -> tuple[str, str]:
    """(lead part, backing part) of a checked sheet line, marks kept: 'Hold me (hold on)' ->
    ('Hold me', 'hold on'); ('(ooh)' -> ('', 'ooh')); a line without a parenthesis -> (line, '')."""
    open_at = line.find("(")
    if open_at < 0:
        return line, ""
    return line[:open_at].strip(), line[open_at + 1:line.rindex(")")].strip()


def words_of(line: str) -> list[str]:
    """The words of a line as written (hyphens inside kept), without melisma or split marks."""
    words = (w.strip("-'’").replace(MELISMA, "").replace(SPLIT, "") for w in _WORD_RE.findall(line))
    return [w.strip("-") for w in words if w.strip("-")]


def display_line(line: str) -> str:
    """A sung line as listeners read it: no melisma or split marks; hyphens and a backing part's
    parentheses as written.

    'Spin_|ning round __ the ice-cold sun (ooh)' -> 'Spinning round the ice-cold sun (ooh)'.
    """
    text = line.replace(MELISMA, "").replace(SPLIT, "")
    text = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))
    return re.sub(r"\s+", " ", re.sub(r"\s+([,.!?;:])", r"\1", text)).strip()


@dataclass(frozen=True)
class LyricWord:
    """One sung word: display text, syllables, and how many extra notes each syllable holds."""

    text: str  # as published: without markers, hyphens kept, e.g. "spinning", "twenty-four"
    syllables: tuple[str, ...]  # e.g. ("spin", "ning"), ("twen", "ty", "four")
    holds: tuple[int, ...]  # melisma notes after each syllable, e.g. (1, 0) for "spin_|ning"

    @property
    def notes(self) -> int:
        return len(self.syllables) + sum(self.holds)


def line_words(line: str, language: str = "en-us") -> list[LyricWord]:
    """Parse a sung line (or one part of it: split_backing) into words with syllables and melisma
    holds (see the module doc)."""
    words: list[LyricWord] = []
    for token in _WORD_RE.findall(line):
        token = token.strip("'’")
        bare = token.replace(MELISMA, "").replace(SPLIT, "").strip("-")
        if not bare:  # a lone "_" (or "__"): hold the previous word's last syllable longer
            if words and MELISMA in token:
                last = words[-1]
                held = last.holds[:-1] + (last.holds[-1] + token.count(MELISMA),)
                words[-1] = LyricWord(last.text, last.syllables, held)
            continue
        parts: list[str] = []
        holds: list[int] = []
        # each side of a real hyphen is a word of its own ("twen-ty" + "four"); '|' forces a split
        for piece in (p for p in token.strip("-").split("-") if p.replace(MELISMA, "")):
            if SPLIT in piece:  # written syllables: "spin_|ning"
                for syllable in piece.split(SPLIT):
                    parts.append(syllable.replace(MELISMA, ""))
                    holds.append(syllable.count(MELISMA))
            else:  # split here; a mark holds its last syllable: "love_"
                found = syllables(piece.replace(MELISMA, ""), language)
                parts.extend(found)
                holds.extend((0,) * (len(found) - 1) + (piece.count(MELISMA),))
        words.append(LyricWord(bare, tuple(parts), tuple(holds)))
    return words


# --- syllables ------------------------------------------------------------------------------
# Spelling rules per language place the syllable boundaries; espeak-ng, which speaks the
# words, decides how many syllables a word has ("ev-ery" is two, "qui-et" two). The rules
# are written here rather than taken from a hyphenation library: hyphenation dictionaries
# (pyphen) deliberately leave one-letter edges whole ("a-live", "to-night"), so they
# under-count what a singer sings. Split marks ('|') in the lyric sheet always win.

_VOWELS = "aeiouyäöåéèêàáíóúü"
_KEEP_TOGETHER = ("th", "sh", "ch", "ph", "wh", "qu", "gh")


def syllables(word: str, language: str = "en-us") -> tuple[str, ...]:
    """Split a word into sung syllables, e.g. 'tonight' -> ('to', 'night'), 'sinua' -> ('si', 'nu', 'a'),
    'spin|ning' -> ('spin', 'ning'); each side of a hyphen is split as a word: 'ice-cold' -> ('ice', 'cold')."""
    if SPLIT in word:
        return tuple(part for part in word.split(SPLIT) if part)
    if "-" in word:
        return tuple(s for part in word.split("-") if part for s in syllables(part, language))
    family = language.lower().split("-")[0]
    parts = _spelled_syllables(word, family)
    spoken = spoken_syllable_count(word, language)
    if spoken and spoken < len(parts):
        parts = _merge_to(parts, spoken)
    elif spoken > len(parts):
        parts = _split_hiatus_to(parts, spoken, family)
    return parts


@lru_cache(maxsize=8192)
def spoken_syllable_count(word: str, language: str) -> int:
    """Vowel phonemes espeak-ng says in `word` (0 if it says none, e.g. 'hmm').

    A diphthong plus schwa ('lion' /laɪə/) is one espeak phoneme but two sung syllables.
    """

    ipa = espeak.text_to_phonemes(word.replace("’", "'"), language, separator="_")
    count = 0
    for phoneme in ipa.replace(" ", "_").split("_"):
        vowels = [ch for ch in phoneme if ch in espeak.IPA_VOWELS]
        if vowels or espeak.SYLLABIC_MARK in phoneme:
            count += 2 if len(vowels) >= 3 and vowels[-1] in "əɚ" else 1
    return count


def _spelled_syllables(word: str, family: str) -> tuple[str, ...]:
    lower = word.lower()
    if family == "fi":
        groups = _finnish_nuclei(lower)
    elif family == "en":
        groups = _drop_silent_endings(lower, _vowel_groups(lower)) if len(_vowel_groups(lower)) > 1 else _vowel_groups(lower)
    else:  # Swedish and other languages: every vowel letter is a nucleus, doubled vowels are long
        groups = _plain_nuclei(lower)
    if len(groups) <= 1:
        return (word,)
    cuts = [_cut_between(lower, groups[i][1], groups[i + 1][0], family) for i in range(len(groups) - 1)]
    parts, start = [], 0
    for cut in cuts:
        parts.append(word[start:cut])
        start = cut
    parts.append(word[start:])
    return tuple(p for p in parts if p)


def _merge_to(parts: tuple[str, ...], count: int) -> tuple[str, ...]:
    """Merge syllables until `count` remain. A middle syllable with a lone 'e' is the one
    speakers swallow ("ev-e-ry", "dif-fer-ent"): it joins the syllable after it."""
    parts = list(parts)
    while len(parts) > max(count, 1):
        middle = [k for k in range(1, len(parts) - 1) if sum(ch in _VOWELS for ch in parts[k].lower()) == 1
                  and "e" in parts[k].lower()]
        k = middle[0] if middle else len(parts) - 2
        parts[k:k + 2] = [parts[k] + parts[k + 1]]
    return tuple(parts)


# vowel pairs that stay one syllable however espeak counts ("hour", "soon", "see")
_ENGLISH_DIGRAPHS = ("ou", "oo", "ee", "ai", "ay", "oa", "ow", "ey", "oy", "au", "aw", "ew", "eau")


def _split_hiatus_to(parts: tuple[str, ...], count: int, family: str) -> tuple[str, ...]:
    """Split vowel pairs espeak says apart ("be-ing", "qui-et", "cre-ate") until `count`."""
    parts = list(parts)
    changed = True
    while len(parts) < count and changed:
        changed = False
        for k, part in enumerate(parts):
            lower = part.lower()
            for i in range(1, len(lower)):
                pair = lower[i - 1:i + 1]
                if (lower[i - 1] in _VOWELS and lower[i] in _VOWELS and pair[0] != pair[1]
                        and not (family == "en" and pair in _ENGLISH_DIGRAPHS) and not (k == 0 and i == 1 and lower[0] == "y")
                        and not (i == 1 and lower[0] == "u" and k > 0 and parts[k - 1].lower().endswith("q"))
                        and lower[i - 2:i] != "qu"):
                    parts[k:k + 1] = [part[:i], part[i:]]
                    changed = True
                    break
            if changed:
                break
    return tuple(parts)


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
            groups.extend(_split_english_hiatus(lower, i, j))
            i = j
        else:
            i += 1
    return groups


def _split_english_hiatus(lower: str, start: int, end: int) -> list[tuple[int, int]]:
    run = lower[start:end]
    for pair in ("ia", "io", "iu", "eo", "ua", "uo"):
        at = run.find(pair)
        if at >= 0 and not run.startswith("eou"):
            cut = start + at + 1
            return [(start, cut), (cut, end)]
    return [(start, end)]


# Finnish: long vowels and these diphthongs are one syllable; every other vowel pair is two
# ("si-nu-a", "kau-an"). ie/uo/yö are diphthongs only in a word's first syllable.
_FINNISH_DIPHTHONGS = ("ai", "ei", "oi", "ui", "yi", "äi", "öi", "au", "eu", "iu", "ou", "ey", "äy", "öy", "iy", "ie", "uo", "yö")


def _finnish_nuclei(lower: str) -> list[tuple[int, int]]:
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(lower):
        if lower[i] not in _VOWELS:
            i += 1
            continue
        pair = lower[i:i + 2]
        first_syllable = not groups
        joined = len(pair) == 2 and pair[1] in _VOWELS and (
            pair[0] == pair[1] or (pair in _FINNISH_DIPHTHONGS and (pair not in ("ie", "uo", "yö") or first_syllable)))
        end = i + 2 if joined else i + 1
        groups.append((i, end))
        i = end
    return groups


def _plain_nuclei(lower: str) -> list[tuple[int, int]]:
    groups: list[tuple[int, int]] = []
    i = 0
    while i < len(lower):
        if lower[i] in _VOWELS:
            end = i + 2 if i + 1 < len(lower) and lower[i + 1] == lower[i] else i + 1
            groups.append((i, end))
            i = end
        else:
            i += 1
    return groups


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
    # silent final e ("fire", "alive"), but not "-le(s)" after a consonant ("little", "candles")
    if tail in ("e", "es") and consonant_before and not lower.endswith(("le", "les")) and lower[last_start - 1] not in "csxz":
        return groups[:-1]
    # "-ed" is silent unless after t/d ("loved" vs "wanted")
    if tail == "ed" and consonant_before and lower[last_start - 1] not in "td":
        return groups[:-1]
    return groups


def _cut_between(lower: str, vowel_end: int, next_vowel: int, family: str = "en") -> int:
    consonants = lower[vowel_end:next_vowel]
    if any(c in _VOWELS for c in consonants):
        return next_vowel - 1  # a silent e sits in between: "lone-ly", "hope-ful"
    if len(consonants) <= 1:
        return vowel_end  # V-CV: "to-night", "ra-kas"
    if family == "en" and consonants[-2:] in _KEEP_TOGETHER and len(consonants) == 2:
        return vowel_end  # "fa-ther"
    if family == "en":
        return vowel_end + 1  # VC-CV: "spin-ning", "mem-ber", "hun-dred"
    if family == "sv" and consonants[-2:] in ("sj", "tj", "kj"):
        return next_vowel - 2  # one sound: "fär-sjuk"
    return next_vowel - 1  # the last consonant starts the next syllable: "äls-kar", "kart-ta"


def sung_blocks(section_names: list[str], blocks: list[LyricBlock]) -> list[LyricBlock | None]:
    """The block each section sings, in song order, as published lyric sheets are written: the nth
    [Chorus] block in the nth section named Chorus (repeating a block's words is fine); a section
    with no block of its own sings the last block of its name; None: an instrumental section.
    Headers match section names case-insensitively."""
    by_name: dict[str, list[LyricBlock]] = {}
    for block in blocks:
        by_name.setdefault(block.header.lower(), []).append(block)
    seen: dict[str, int] = {}
    out = []
    for name in section_names:
        key = name.lower()
        found = by_name.get(key)
        out.append(found[min(seen.get(key, 0), len(found) - 1)] if found else None)
        seen[key] = seen.get(key, 0) + 1
    return out
