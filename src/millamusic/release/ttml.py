"""TTML lyrics (Apple Music's and the W3C's timed text): written word- or line-timed, and read back
for the delivery check."""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from millamusic.core.errors import ExportError
from millamusic.core.files import atomic_write_bytes
from millamusic.release.lyric_files import (
    TimedLine,
    TimedWord,
    backing_pieces,
    bad_char,
    check_timed_lines,
    describe_char,
    pieces,
    seconds_to_ms,
)

# --------------------------------------------------------------------------- TTML

TTML_NS = "http://www.w3.org/ns/ttml"
TTM_NS = "http://www.w3.org/ns/ttml#metadata"
ITUNES_NS = "http://music.apple.com/lyric-ttml-internal"  # what Apple Music's lyric TTML declares


# Other tools (the AMLL lyric database) declare this one for the same attributes; read_ttml takes both.
_ITUNES_NAMESPACES = (ITUNES_NS, "http://itunes.apple.com/lyric-ttml-extensions")
_XML_NS = "http://www.w3.org/XML/1998/namespace"
TTML_TIMINGS = ("Word", "Line")


_LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


# Apple's itunes:songPart values, matched inside a section name ("Verse 2" -> Verse); longest first
_SONG_PARTS = (
    ("prechorus", "PreChorus"), ("postchorus", "PostChorus"), ("chorus", "Chorus"), ("verse", "Verse"),
    ("intro", "Intro"), ("outro", "Outro"), ("bridge", "Bridge"), ("hook", "Hook"), ("refrain", "Refrain"),
    ("interlude", "Interlude"), ("instrumental", "Instrumental"), ("solo", "Instrumental"),
)


def song_part(section: str) -> str:
    """Apple Music's itunes:songPart for a section name: "Verse 1" -> "Verse", "Pre-Chorus" ->
    "PreChorus", "Final Chorus" -> "Chorus"; other names CamelCased without numbers; "" -> ""."""
    key = re.sub(r"[^a-z]", "", section.lower())
    for needle, part in _SONG_PARTS:
        if needle in key:
            return part
    return "".join(w[:1].upper() + w[1:] for w in re.findall(r"[^\W\d_]+", section))


def _clock(seconds: float) -> str:
    """TTML 1.0 clock-time HH:MM:SS.mmm (hours grow past two digits when needed)."""
    ms = seconds_to_ms(seconds)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def ttml_text(
    lines: Sequence[TimedLine],
    *,
    title: str,
    artist: str,
    language: str,
    timing: str = "Word",
    length_seconds: float | None = None,
) -> str:
    """The document write_ttml writes (see there)."""
    lines = list(lines)
    if timing not in TTML_TIMINGS:
        raise ExportError(f"TTML timing {timing!r} is unknown; use one of {', '.join(TTML_TIMINGS)}")
    if not lines:
        raise ExportError("TTML needs at least one timed line; this song has none")
    if not isinstance(language, str) or not _LANGUAGE_RE.fullmatch(language):
        raise ExportError(f"TTML language {language!r} is not a BCP-47 tag. Fix: use a tag like 'en-US', 'fi' or 'sv-FI'")
    for name, value in (("title", title), ("artist", artist)):
        if not str(value or "").strip():
            raise ExportError(f"TTML {name} is empty")
        bad = bad_char(value)
        if bad is not None:
            raise ExportError(f"TTML {name} {value!r} contains {describe_char(bad)}. Fix: remove it")
    check_timed_lines(lines, "TTML")
    if timing == "Word" and not any(line.words for line in lines):
        raise ExportError("TTML timing 'Word' but no line has word timing. Fix: give TimedLine.words, or timing='Line'")
    last_end = max(line.end for line in lines)
    if length_seconds is None:
        length_seconds = last_end
    elif not (math.isfinite(length_seconds) and seconds_to_ms(length_seconds) >= seconds_to_ms(last_end)):
        raise ExportError(
            f"TTML length {length_seconds!r} s is shorter than the last line, which ends at {last_end:.3f} s. "
            "Fix: pass the master's length in seconds"
        )

    # Prefixed names are written as given (no Clark notation), so the output carries exactly the
    # prefixes Apple's files use and ElementTree's global prefix table is left alone.
    tt = ET.Element("tt", {
        "xmlns": TTML_NS, "xmlns:itunes": ITUNES_NS, "xmlns:ttm": TTM_NS,
        "itunes:timing": timing, "xml:lang": language,
    })
    metadata = ET.SubElement(ET.SubElement(tt, "head"), "metadata")
    ET.SubElement(metadata, "ttm:title").text = title
    agent = ET.SubElement(metadata, "ttm:agent", {"type": "person", "xml:id": "v1"})
    ET.SubElement(agent, "ttm:name", {"type": "full"}).text = artist
    body = ET.SubElement(tt, "body", {"dur": _clock(length_seconds)})
    groups: list[list[TimedLine]] = []
    for line in lines:
        if groups and groups[-1][0].section == line.section:
            groups[-1].append(line)
        else:
            groups.append([line])
    key = 0
    for group in groups:
        attrs = {"begin": _clock(group[0].start), "end": _clock(max(line.end for line in group))}
        part = song_part(group[0].section)
        if part:
            attrs["itunes:songPart"] = part
        div = ET.SubElement(body, "div", attrs)
        for line in group:
            key += 1
            p = ET.SubElement(div, "p", {"begin": _clock(line.start), "end": _clock(line.end),
                                         "itunes:key": f"L{key}", "ttm:agent": "v1"})
            if timing == "Word" and (line.words or line.backing):
                last = _word_spans(p, pieces(line), line.words)
                if line.backing:  # Apple's background-vocal span, last in the line, its words in parentheses
                    if last is not None:
                        last.tail = " "
                    background = ET.SubElement(p, "span", {
                        "ttm:role": "x-bg", "begin": _clock(min(w.start for w in line.backing)),
                        "end": _clock(max(w.end for w in line.backing))})
                    _word_spans(background, backing_pieces(line), line.backing)
            else:
                p.text = line.text.strip()
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(tt, encoding="unicode") + "\n"
    try:
        ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:  # a bug here, not a user mistake: never write a broken file
        raise ExportError(f"internal error: the TTML writer produced malformed XML ({exc})") from exc
    return text


def _word_spans(parent, cut: list[tuple[str, bool]], words) -> object | None:
    """A timed <span> per word under `parent` (pieces() gives the text), the space between words a
    text node between the spans; returns the last span (None: no words)."""
    previous = None
    for (piece, space_before), word in zip(cut, words):
        if space_before and previous is not None:
            previous.tail = " "
        previous = ET.SubElement(parent, "span", {"begin": _clock(word.start), "end": _clock(word.end)})
        previous.text = piece
    return previous


def write_ttml(
    lines: Sequence[TimedLine],
    path: str | os.PathLike,
    *,
    title: str,
    artist: str,
    language: str,
    timing: str = "Word",
    length_seconds: float | None = None,
) -> Path:
    """Word-synced lyrics as TTML 1.0, in the shape Apple Music uses for its lyrics:

        <tt xmlns="http://www.w3.org/ns/ttml" xmlns:itunes="http://music.apple.com/lyric-ttml-internal"
            xmlns:ttm="http://www.w3.org/ns/ttml#metadata" itunes:timing="Word" xml:lang="fi">
          <head><metadata><ttm:title>..</ttm:title><ttm:agent type="person" xml:id="v1">
            <ttm:name type="full">artist</ttm:name></ttm:agent></metadata></head>
          <body dur="00:03:25.400">
            <div begin=".." end=".." itunes:songPart="Verse">     one per run of lines of one section
              <p begin=".." end=".." itunes:key="L1" ttm:agent="v1">
                <span begin=".." end="..">Hello,</span> <span begin=".." end="..">world</span></p>

    All times are absolute (from the start of the audio, as Apple's files have them), TTML clock
    times HH:MM:SS.mmm. The space between words is a text node between spans; syllables of one word
    have none. timing="Line" writes each line's text straight into its <p>. `language` is a BCP-47
    tag ("en-US", "fi"); body dur is `length_seconds` (default: the last line's end). Written
    atomically as UTF-8 without BOM; read it back with read_ttml.
    """
    text = ttml_text(lines, title=title, artist=artist, language=language, timing=timing,
                     length_seconds=length_seconds)
    return atomic_write_bytes(path, text.encode("utf-8"))


_CLOCK_RE = re.compile(r"(?:(?:(\d+):)?(\d{1,2}):)?(\d+(?:\.\d+)?)")


_OFFSET_RE = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")


_METRIC_SECONDS = {"h": 3600, "m": 60, "s": 1}


def _ttml_seconds(value: str) -> float:
    """Seconds of a TTML time expression: [[HH:]MM:]SS[.fff] or an offset like 12.3s / 1500ms."""

    value = value.strip()
    match = _OFFSET_RE.fullmatch(value)
    if match:
        amount = Decimal(match[1])
        return float(amount / 1000 if match[2] == "ms" else amount * _METRIC_SECONDS[match[2]])
    match = _CLOCK_RE.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a time expression like 00:01:02.345 or 62.345s")
    hours, minutes, seconds = match[1], match[2], Decimal(match[3])
    if minutes is not None and (int(minutes) >= 60 or seconds >= 60):
        raise ValueError(f"{value!r} has minutes or seconds of 60 or more")
    return float(Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60 + seconds)


def parse_ttml(data: bytes | str, *, source: str = "<ttml>") -> list[TimedLine]:
    """TimedLines from a TTML lyrics document (ours, Apple Music's or similar); see read_ttml."""

    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        row, col = exc.position
        raise ExportError(f"{source}:{row}:{col + 1}: not well-formed XML ({exc})") from exc
    tt = f"{{{TTML_NS}}}"
    if root.tag != tt + "tt":
        raise ExportError(f"{source}: root element is {root.tag!r}, not <tt> in the TTML namespace {TTML_NS}")
    role = f"{{{TTM_NS}}}role"

    def part_of(div) -> str | None:
        for ns in _ITUNES_NAMESPACES:
            for name in ("songPart", "song-part"):
                value = div.get(f"{{{ns}}}{name}")
                if value is not None:
                    return value
        return None

    def when(element, name: str, number: int, text: str) -> float | None:
        value = element.get(name)
        if value is None:
            return None
        try:
            return _ttml_seconds(value)
        except ValueError as exc:
            raise ExportError(f"{source}: line {number} ({text!r}): {name} {exc}") from None

    lines: list[TimedLine] = []

    def word_span(span, said: list[str], timed: list[tuple[str, object]]) -> None:
        """A word <span>: its text into `said`; into `timed` too when it carries a time."""
        word = "".join(span.itertext())
        said.append(word)
        if word.strip() and (span.get("begin") is not None or span.get("end") is not None):
            timed.append((word.strip(), span))

    def read_p(p, section: str) -> TimedLine:
        number = len(lines) + 1
        pieces = [p.text or ""]
        spans: list[tuple[str, object]] = []
        background: list[tuple[str, object]] = []  # the x-bg span's timed words
        for child in p:
            if child.tag == tt + "span" and child.get(role) is None:
                word_span(child, pieces, spans)
            elif child.tag == tt + "span" and child.get(role) == "x-bg" and not background:
                # background vocals: printed after the line in parentheses, as lyric sites do
                said = [child.text or ""]
                for inner in child:
                    if inner.tag == tt + "span" and inner.get(role) is None:
                        word_span(inner, said, background)
                    said.append(inner.tail or "")
                sung = " ".join("".join(said).split())
                if sung:
                    pieces.append(" " + (sung if sung.startswith("(") else f"({sung})"))
            elif child.tag == tt + "br":
                pieces.append(" ")
            # other children (translations: ttm:role spans; metadata) are not the line
            pieces.append(child.tail or "")
        text = " ".join("".join(pieces).split())

        def timed(found: list[tuple[str, object]]) -> list[TimedWord]:
            out = []
            for word, span in found:
                start, end = when(span, "begin", number, text), when(span, "end", number, text)
                if start is None or end is None:
                    raise ExportError(f"{source}: line {number} ({text!r}): word {word!r} has no "
                                      f"{'begin' if start is None else 'end'} time")
                out.append(TimedWord(word, start, end))
            return out

        words, backing = timed(spans), timed(background)
        start, end = when(p, "begin", number, text), when(p, "end", number, text)
        sung = words + backing
        start = start if start is not None else (min(w.start for w in sung) if sung else None)
        end = end if end is not None else (max(w.end for w in sung) if sung else None)
        if start is None or end is None:
            raise ExportError(f"{source}: line {number} ({text!r}) has no {'begin' if start is None else 'end'} time")
        return TimedLine(text, start, end, tuple(words), section, tuple(backing))

    def walk(element, section: str) -> None:
        for child in element:
            if child.tag == tt + "div":
                walk(child, part_of(child) or section)
            elif child.tag == tt + "p":
                lines.append(read_p(child, section))

    body = root.find(tt + "body")
    if body is not None:
        walk(body, "")
    return lines


def read_ttml(path: str | os.PathLike) -> list[TimedLine]:
    """The lines of a TTML lyrics file, in document order, with their word spans.

    Times are read as absolute (Apple's convention); clock and offset time expressions are
    accepted. A line's text is its spans and the text between them, whitespace collapsed; a
    background-vocal span (ttm:role="x-bg") is read as the line's `backing` words and its text
    ends the line in parentheses; other ttm:role spans (translations) are left out. `section` is the enclosing
    div's itunes:songPart ("Verse"; the number of "Verse 1" is not stored in the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read TTML file {path} ({exc.strerror or exc})") from exc
    return parse_ttml(data, source=str(path))
