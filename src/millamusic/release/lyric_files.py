"""Synced lyrics: timed lines, LRC, TTML (written and read back) and ID3 SYLT words."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from millamusic.core.errors import ExportError
from millamusic.core.files import atomic_write_bytes

# --------------------------------------------------------------------------- MP3

MP3_MODES = {"cbr320": "320 kbps", "v0": "V0"}


MP3_TRIM_TRIES = 4


# --------------------------------------------------------------------------- timed lyrics
#
# One timed source, three renderings: LRC (line or A2 "enhanced" word tags), TTML (as Apple Music
# serves word-synced lyrics) and ID3 SYLT. Times are seconds from the start of the master, as sung.


@dataclass(frozen=True)
class TimedWord:
    """One sung word (or syllable): its text as written in the line, start and end in seconds."""

    text: str
    start: float
    end: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.text))
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))


@dataclass(frozen=True)
class TimedLine:
    """One sung lyric line: its text, start and end in seconds, the timed words in sung order and
    the section it belongs to ("Verse 1"; consecutive lines of one section share a TTML <div>).

    `backing`: the words of a backing-vocal part, which the text ends with in parentheses as lyric
    sites print it ("Hold me close (hold on)"); timed where the backing voice sings them, which may
    be under the lead's last word. A line may be only a backing part ("(ooh ooh)", no `words`).

    Each word's text must appear in the line text, in order; the writers print the line's own text
    split at the word starts, so punctuation stays where the lyric sheet put it ("Hello," "world!").
    The values are checked by the writers (see timed_lines_problems), which know the line numbers.
    """

    text: str
    start: float
    end: float
    words: tuple[TimedWord, ...] = ()
    section: str = ""
    backing: tuple[TimedWord, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.text))
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))
        object.__setattr__(self, "words", tuple(self.words))
        object.__setattr__(self, "section", str(self.section))
        object.__setattr__(self, "backing", tuple(self.backing))

    def split_text(self) -> tuple[str, str]:
        """(lead text, backing text): the text cut at the parenthesis that opens the backing part
        ("Hold me close", "(hold on)"); the backing text is "" for a line without one."""
        text = self.text.strip()
        at = text.rfind("(") if self.backing else -1
        return (text, "") if at < 0 else (text[:at].rstrip(), text[at:])


def seconds_to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def bad_char(text: str) -> str | None:
    """The first character that has no place in a lyric line (line breaks, other control characters)."""
    for ch in text:
        if ord(ch) < 32 or ch in "\x7f\u2028\u2029" or 0xFFFE <= ord(ch) <= 0xFFFF or 0xD800 <= ord(ch) <= 0xDFFF:
            return ch
    return None


def describe_char(ch: str) -> str:
    return {"\n": "a line break", "\r": "a line break (CR)", "\u2028": "a line separator"}.get(ch, f"control character U+{ord(ch):04X}")


def _find_word(text: str, word: str, cursor: int) -> int:
    """Where `word` starts in `text` at or after `cursor`, preferring a start of a word; -1 if absent."""
    first = at = text.find(word, cursor)
    while at >= 0:
        if at == cursor or not text[at - 1].isalnum():
            return at
        at = text.find(word, at + 1)
    return first


def _word_positions(text: str, words: Sequence[TimedWord]) -> list[int] | int:
    """Start of each word in `text`, in order; or the index of the first word that is not there."""
    positions: list[int] = []
    cursor = 0
    for index, word in enumerate(words):
        at = _find_word(text, word.text, cursor)
        if at < 0:
            return index
        positions.append(at)
        cursor = at + len(word.text)
    return positions


def pieces(line: TimedLine) -> list[tuple[str, bool]]:
    """(display text, space before it) per lead word: the line's lead text cut at each word's start.

    Text before the first word joins the first word; opening marks glued to a word ("(oh", "“Run")
    go with it; other text after a word (",", "!", a lone "&") stays with the word before; a space
    is printed only where the line has whitespace, so syllables of one word join up.
    """
    return _cut(line.split_text()[0], line.words, line.text)


def backing_pieces(line: TimedLine) -> list[tuple[str, bool]]:
    """pieces() of the backing part: "(hold" and "on)" for "Hold me close (hold on)"."""
    return _cut(line.split_text()[1], line.backing, line.text)


def _sung_pieces(line: TimedLine) -> list[tuple[str, bool, TimedWord]]:
    """(display text, space before it, word) for the lead words, then the backing words (one voice,
    as LRC and SYLT print it): a space before the backing part when lead words come before it."""
    lead = [(piece, space, word) for (piece, space), word in zip(pieces(line), line.words)]
    return lead + [(piece, space or (index == 0 and bool(line.words)), word)
                   for index, ((piece, space), word) in enumerate(zip(backing_pieces(line), line.backing))]


def _cut(text: str, words: Sequence[TimedWord], line_text: str) -> list[tuple[str, bool]]:
    if not words:
        return []
    positions = _word_positions(text, words)
    if isinstance(positions, int):  # timed_lines_problems reports this before any writer gets here
        raise ExportError(f"word {words[positions].text!r} is not in the line {line_text!r}")
    cuts = [0]
    for index in range(1, len(positions)):
        at = positions[index]
        previous_end = positions[index - 1] + len(words[index - 1].text)
        while at > previous_end and not text[at - 1].isspace():
            at -= 1  # back to the start of the word's token, never into the previous word
        cuts.append(at)
    out: list[tuple[str, bool]] = []
    space_before = False
    for index, begin in enumerate(cuts):
        stop = cuts[index + 1] if index + 1 < len(cuts) else len(text)
        chunk = text[begin:stop]
        piece = chunk.rstrip()
        out.append((piece, space_before))
        space_before = len(piece) < len(chunk)
    return out


def timed_lines_problems(lines: Sequence[TimedLine]) -> list[str]:
    """Every problem in `lines`, one message each naming the line number, its text and the fix; [] if fine.

    Rules (compared in whole milliseconds, the precision the files carry): finite times, start >= 0,
    end >= start; lines start strictly one after another; words inside their line, in sung order,
    not overlapping, each found in the line text; no line breaks or control characters in any text.
    """
    problems: list[str] = []
    previous: tuple[int, float] | None = None  # (number, start) of the previous line with a good start
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, TimedLine):
            problems.append(f"line {number} is a {type(line).__name__}, not a TimedLine")
            continue
        where = f"line {number} ({line.text!r})"
        text = line.text.strip()
        if not text:
            problems.append(f"{where} has no text. Fix: drop the line or give it the sung words")
        bad = bad_char(line.text)
        if bad is not None:
            fix = "split it into one TimedLine per sung line" if bad in "\r\n\u2028" else "remove it"
            problems.append(f"{where} contains {describe_char(bad)}. Fix: {fix}")
        times_ok = True
        for name in ("start", "end"):
            value = getattr(line, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{where} has {name} time {value!r}; times must be finite seconds >= 0. "
                                "Fix: take the time from the rendered vocal, not a failed alignment")
                times_ok = False
        if times_ok and seconds_to_ms(line.end) < seconds_to_ms(line.start):
            problems.append(f"{where} ends at {line.end:.3f} s, before it starts at {line.start:.3f} s. "
                            "Fix: end the line at its last word's end")
        if times_ok and math.isfinite(line.start):
            if previous is not None and seconds_to_ms(line.start) <= seconds_to_ms(previous[1]):
                problems.append(
                    f"{where} starts at {line.start:.3f} s, not after line {previous[0]} (at {previous[1]:.3f} s). "
                    "Fix: give the lines in sung order, each starting after the one before"
                )
            previous = (number, line.start)
        before: TimedWord | None = None
        for index, word in enumerate(line.words, start=1):
            if not isinstance(word, TimedWord):
                problems.append(f"{where}: word {index} is a {type(word).__name__}, not a TimedWord")
                before = None
                continue
            what = f"{where}: word {index} ({word.text!r})"
            if not word.text.strip():
                problems.append(f"{what} has no text. Fix: drop it or give the sung word")
            elif word.text != word.text.strip():
                problems.append(f"{what} has spaces at its ends. Fix: strip the word; spaces come from the line text")
            bad = bad_char(word.text)
            if bad is not None:
                problems.append(f"{what} contains {describe_char(bad)}. Fix: remove it")
            if not all(math.isfinite(t) and t >= 0 for t in (word.start, word.end)):
                problems.append(f"{what} has times {word.start!r}..{word.end!r}; times must be finite seconds >= 0. "
                                "Fix: take the time from the rendered vocal, not a failed alignment")
                before = None
                continue
            start, end = seconds_to_ms(word.start), seconds_to_ms(word.end)
            if end < start:
                problems.append(f"{what} ends at {word.end:.3f} s, before it starts at {word.start:.3f} s. "
                                "Fix: swap or recompute the word's times")
            if times_ok and (start < seconds_to_ms(line.start) or end > seconds_to_ms(line.end)):
                problems.append(
                    f"{what} at {word.start:.3f}-{word.end:.3f} s lies outside its line "
                    f"({line.start:.3f}-{line.end:.3f} s). Fix: start the line at its first word and end it at its last"
                )
            if before is not None and start < seconds_to_ms(before.end):
                problems.append(
                    f"{what} starts at {word.start:.3f} s, before word {index - 1} ({before.text!r}) ends at "
                    f"{before.end:.3f} s. Fix: give the words in sung order and end each one where the next begins"
                )
            before = word
        if text and line.words and all(isinstance(w, TimedWord) and w.text.strip() for w in line.words):
            missing = _word_positions(text, line.words)
            if isinstance(missing, int):
                problems.append(
                    f"{where}: word {missing + 1} ({line.words[missing].text!r}) is not in the line text"
                    + (f" after word {missing} ({line.words[missing - 1].text!r})" if missing else "")
                    + ". Fix: give each word exactly as it is written in the line, in sung order"
                )
        if isinstance(line.backing, tuple) and line.backing:
            problems.extend(_backing_problems(line, where, times_ok))
    return problems


def _backing_problems(line: TimedLine, where: str, times_ok: bool) -> list[str]:
    """The backing words' problems: each timed inside its line, in order, found in the parenthesis
    that ends the line text."""
    problems: list[str] = []
    backing_text = line.split_text()[1]
    if not backing_text.startswith("(") or not backing_text.rstrip(" .,!?;:…").endswith(")"):
        return [f"{where} has backing words but its text does not end with them in parentheses. "
                "Fix: end the line text with the backing part, e.g. 'Hold me close (hold on)'"]
    before = None
    for index, word in enumerate(line.backing, start=1):
        what = f"{where}: backing word {index} ({getattr(word, 'text', word)!r})"
        if not isinstance(word, TimedWord) or not word.text.strip() or word.text != word.text.strip():
            problems.append(f"{what} is not a stripped, non-empty TimedWord. Fix: give the sung word as written")
            return problems
        if bad_char(word.text) is not None or not all(math.isfinite(t) and t >= 0 for t in (word.start, word.end)):
            problems.append(f"{what} has a control character or times that are not finite seconds >= 0. "
                            "Fix: take the text from the sheet and the times from the rendered vocal")
            return problems
        start, end = seconds_to_ms(word.start), seconds_to_ms(word.end)
        if end < start or (before is not None and start < seconds_to_ms(before.end)):
            problems.append(f"{what} at {word.start:.3f}-{word.end:.3f} s ends before it starts or overlaps the "
                            "backing word before it. Fix: give the backing words in sung order")
        if times_ok and (start < seconds_to_ms(line.start) or end > seconds_to_ms(line.end)):
            problems.append(f"{what} at {word.start:.3f}-{word.end:.3f} s lies outside its line "
                            f"({line.start:.3f}-{line.end:.3f} s). Fix: let the line span its backing part too")
        before = word
    if isinstance(_word_positions(backing_text, line.backing), int):
        problems.append(f"{where}: the backing words {[w.text for w in line.backing]} are not in its parenthesis "
                        f"{backing_text!r}. Fix: give each backing word exactly as written, in sung order")
    return problems


def check_timed_lines(lines: Sequence[TimedLine], what: str) -> None:
    problems = timed_lines_problems(lines)
    if problems:
        count = len(problems)
        raise ExportError(
            f"cannot write {what}: {count} problem{'s' if count != 1 else ''} in the timed lyrics:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def sylt_words(lines: Sequence[TimedLine]) -> tuple[tuple[float, str], ...]:
    """Word-by-word entries for ReleaseTags.synced_words (ID3 SYLT), from checked lines.

    Follows the ID3v2.4 SYLT convention: whitespace belongs to the *start* of the next word
    (" in", " the") and a new line starts with a line feed ("\\nExchanging"); punctuation stays
    with the word before it. A line without word timing becomes one entry at the line start.
    """
    check_timed_lines(lines, "SYLT word entries")
    out: list[tuple[float, str]] = []
    for line in lines:
        newline = "\n" if out else ""
        if not line.words and not line.backing:
            out.append((line.start, newline + line.text.strip()))
            continue
        # the backing part follows its line; SYLT is one voice in time order, so a backing word sung
        # under the lead's last word is stamped when that word starts
        for index, (piece, space_before, word) in enumerate(_sung_pieces(line)):
            prefix = newline if index == 0 else (" " if space_before else "")
            backing = index >= len(line.words)
            out.append((max(word.start, out[-1][0] if out else 0.0) if backing else word.start, prefix + piece))
    return tuple(out)


# --------------------------------------------------------------------------- LRC


def _lrc_stamp(centis: int) -> str:
    minutes, rest = divmod(centis, 6000)
    seconds, cs = divmod(rest, 100)
    return f"{minutes:02d}:{seconds:02d}.{cs:02d}"


def _cs(seconds: float) -> int:
    return round(seconds * 100)


def lrc_text(
    lines: Sequence[tuple[float, str]] | Sequence[TimedLine],
    *,
    title: str,
    artist: str,
    album: str | None = None,
    length_seconds: float | None = None,
    words: bool | None = None,
) -> str:
    """The text write_lrc writes (see there)."""
    lines = list(lines)
    timed = [isinstance(line, TimedLine) for line in lines]
    if any(timed) and not all(timed):
        raise ExportError("LRC lines mix TimedLine and (seconds, text) entries; give one kind")
    is_timed = bool(lines) and all(timed)
    if words and not is_timed:
        raise ExportError("LRC word timing needs TimedLine entries with words; (seconds, text) pairs have none")
    word_tags = is_timed if words is None else bool(words)
    out: list[str] = []
    for key, value in (("ti", title), ("ar", artist), ("al", album)):
        if value is not None:
            if "\n" in value or "\r" in value:
                raise ExportError(f"LRC {key} header contains a line break: {value!r}")
            out.append(f"[{key}:{value}]")
    if length_seconds is not None:
        if not (math.isfinite(length_seconds) and length_seconds >= 0):
            raise ExportError(f"LRC length {length_seconds!r} is not a duration in seconds")
        whole = int(round(length_seconds))
        out.append(f"[length:{whole // 60:02d}:{whole % 60:02d}]")
    if is_timed:
        check_timed_lines(lines, "LRC")
        entries = [(line.start, line.text.strip()) for line in lines]
    else:
        entries = [(t, text) for t, text in lines]
    last = -1
    for i, (t, text) in enumerate(entries):
        t = float(t)
        if not math.isfinite(t) or t < 0:
            raise ExportError(f"LRC line {i + 1} ({text!r}) has time {t!r}; times must be >= 0 seconds")
        if "\n" in text or "\r" in text:
            raise ExportError(f"LRC line {i + 1} contains a line break: {text!r}; give one lyric line per entry")
        cs = _cs(t)
        if cs <= last:
            raise ExportError(
                f"LRC line {i + 1} ({text!r}) at {t:.3f} s is not after the previous line "
                f"(at {last / 100:.2f} s, to the centisecond); times must strictly increase"
            )
        last = cs
        line = lines[i] if is_timed else None
        if word_tags and line is not None and (line.words or line.backing):
            # A2 enhanced LRC: <mm:ss.xx> before each word, one more after the last word for its end.
            # The backing part follows in its parentheses; LRC has one voice and word stamps that never
            # go back, so a backing word sung under the lead's last word is stamped when that word starts.
            parts = [f"[{_lrc_stamp(cs)}]"]
            stamp = cs
            for piece, space_before, word in _sung_pieces(line):
                stamp = max(stamp, _cs(word.start))
                parts.append(f"{' ' if space_before else ''}<{_lrc_stamp(stamp)}>{piece}")
            parts.append(f"<{_lrc_stamp(max(stamp, *(_cs(w.end) for w in (*line.words, *line.backing))))}>")
            out.append("".join(parts))
        else:
            out.append(f"[{_lrc_stamp(cs)}]{text}")
    return "\n".join(out) + "\n"


def write_lrc(
    lines: Sequence[tuple[float, str]] | Sequence[TimedLine],
    path: str | os.PathLike,
    *,
    title: str,
    artist: str,
    album: str | None = None,
    length_seconds: float | None = None,
    words: bool | None = None,
) -> Path:
    """LRC lyrics: [ti:]/[ar:]/[al:]/[length:] headers, then one "[mm:ss.xx]line" per line (centiseconds).

    `lines` is either (seconds, text) pairs or TimedLines. With TimedLines, `words` (default True)
    writes enhanced LRC (the A2 extension): "[00:01.00]<00:01.00>Hello, <00:01.50>world<00:02.10>",
    a <mm:ss.xx> tag before each word and one after the last word for the moment it ends; lines
    without words, and words=False, give plain "[mm:ss.xx]line". Line times must be >= 0 and
    strictly increasing, also after rounding to centiseconds. UTF-8, no BOM; written atomically.
    """
    text = lrc_text(lines, title=title, artist=artist, album=album, length_seconds=length_seconds, words=words)
    return atomic_write_bytes(path, text.encode("utf-8"))
