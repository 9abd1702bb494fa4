"""The delivery rule for synced lyrics: LRC, TTML and ID3 SYLT against the audio."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from millamusic.core.errors import ExportError

if TYPE_CHECKING:

    pass
from millamusic.qa.probe import TIME_SLACK_S, Probe, Verdict, short, worst
from millamusic.release.lyric_files import timed_lines_problems
from millamusic.release.ttml import parse_ttml

_LRC_STAMP = re.compile(r"\[(\d+):(\d{1,2})(?:[.:](\d{1,3}))?\]")


_LRC_WORD = re.compile(r"<(\d+):(\d{1,2})(?:[.:](\d{1,3}))?>")


_LRC_HEADER = re.compile(r"\[[A-Za-z#][^\]]*\]")


def _lrc_seconds(match: re.Match) -> float:
    minutes, seconds, fraction = int(match[1]), int(match[2]), match[3] or ""
    if seconds >= 60:
        raise ValueError(f"{match[0]} has {seconds} seconds")
    return minutes * 60 + seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def parse_lrc(text: str) -> list[tuple[float, str, tuple[float, ...]]]:
    """(line time, line text, word times) for each timed line of an LRC text, in file order.

    Accepts [mm:ss], [mm:ss.xx] and [mm:ss.xxx] stamps (several on one line give one entry each),
    A2 "enhanced" <mm:ss.xx> word stamps, header tags like [ti:..] and blank lines. Raises
    ValueError naming the line for anything else.
    """
    entries: list[tuple[float, str, tuple[float, ...]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        stamps: list[float] = []
        pos = 0
        try:
            while (match := _LRC_STAMP.match(line, pos)) is not None:
                stamps.append(_lrc_seconds(match))
                pos = match.end()
            rest = line[pos:]
            if not stamps:
                if _LRC_HEADER.fullmatch(line):
                    continue
                raise ValueError("neither a [mm:ss.xx] timed line nor a [tag:value] header")
            words = tuple(_lrc_seconds(m) for m in _LRC_WORD.finditer(rest))
        except ValueError as exc:
            raise ValueError(f"LRC line {number} ({raw.strip()[:60]!r}): {exc}") from None
        lyric = _LRC_WORD.sub("", rest).strip()
        entries.extend((t, lyric, words) for t in stamps)
    return entries


def _lrc_problems(text: str, duration: float | None, what: str) -> tuple[list[str], int]:
    """Problems of an LRC text (order, times past the end); and its number of timed lines."""
    try:
        entries = parse_lrc(text)
    except ValueError as exc:
        return [f"{what}: {exc}"], 0
    if not entries:
        return [f"{what} has no timed lines"], 0
    problems: list[str] = []
    previous = None
    for t, lyric, words in entries:
        if previous is not None and t <= previous:
            problems.append(f"{what}: line {lyric!r} at {t:.2f} s is not after the line before ({previous:.2f} s)")
            break
        previous = t
        if any(b < a for a, b in zip(words, words[1:])):
            problems.append(f"{what}: the word times of {lyric!r} go backwards")
            break
    last = max(max((t, *words)) for t, _, words in entries)
    if duration is not None and last > duration + TIME_SLACK_S:
        problems.append(f"{what}: a time at {last:.2f} s is past the end of the audio ({duration:.2f} s)")
    return problems, len(entries)


def _sylt_problems(frames: list, duration: float | None, rate: int) -> tuple[list[str], int]:
    problems: list[str] = []
    count = 0
    for frame in frames:
        if frame.format == 2:
            times = [ms / 1000.0 for _, ms in frame.text]
        elif frame.format == 1:  # MPEG frames of 1152 samples
            times = [n * 1152 / rate for _, n in frame.text]
        else:
            problems.append(f"SYLT time stamp format {frame.format} is unknown (1 = MPEG frames, 2 = ms)")
            continue
        count += len(times)
        if not times:
            problems.append("SYLT frame has no entries")
            continue
        back = next((i for i in range(1, len(times)) if times[i] < times[i - 1]), None)
        if back is not None:
            problems.append(f"SYLT entry {back + 1} ({frame.text[back][0].strip()!r}) at {times[back]:.3f} s comes "
                            f"before the entry before it ({times[back - 1]:.3f} s)")
        if duration is not None and max(times) > duration + TIME_SLACK_S:
            problems.append(f"SYLT time {max(times):.3f} s is past the end of the audio ({duration:.2f} s)")
    return problems, count


def _ttml_problems(data: bytes, duration: float | None, what: str) -> tuple[list[str], int]:
    try:
        lines = parse_ttml(data, source=what)
    except ExportError as exc:
        return [short(exc)], 0
    if not lines:
        return [f"{what} has no timed lines"], 0
    problems = [f"{what}: {problem}" for problem in timed_lines_problems(lines)[:3]]
    last = max(max([line.end, *(w.end for w in line.words)]) for line in lines)
    if duration is not None and last > duration + TIME_SLACK_S:
        problems.append(f"{what}: a time at {last:.3f} s is past the end of the audio ({duration:.2f} s)")
    return problems, len(lines)


def rule_lyrics(p: Probe) -> Verdict:
    duration = p.duration()
    if p.kind == "wav":
        root = p.release.root if p.release is not None else None
        if root is None:
            return "n/a", "a delivery WAV carries no lyrics, and there is no release.json to find lyrics/ from"
        slug = p.path.name[: -len(p.path.suffix)]
        lrc, ttml = root / "lyrics" / f"{slug}.lrc", root / "lyrics" / f"{slug}.ttml"
        if not lrc.is_file() and not ttml.is_file():
            return "n/a", f"no lyrics/{slug}.lrc or lyrics/{slug}.ttml beside the release"
        fails: list[str] = []
        facts: list[str] = []
        if lrc.is_file():
            problems, count = _lrc_problems(lrc.read_bytes().decode("utf-8", "replace"), duration, lrc.name)
            fails += problems
            facts.append(f"{lrc.name}: {count} lines")
        if ttml.is_file():
            problems, count = _ttml_problems(ttml.read_bytes(), duration, ttml.name)
            fails += problems
            facts.append(f"{ttml.name}: {count} lines")
        return worst(fails, [], ", ".join(facts) + (f", within {duration:.2f} s" if duration else ""))
    if p.tagged().tags is None:
        return "fail", "no tags, so no lyrics"
    fails = []
    unsynced = p.first("LYRICS")
    if p.kind == "flac":
        synced_text = p.first("SYNCEDLYRICS")
        if unsynced is None and synced_text is None:
            return "warn", "no LYRICS or SYNCEDLYRICS (an instrumental?)"
        if unsynced is None:
            fails.append("LYRICS (unsynced) is missing or empty")
        if synced_text is None:
            fails.append("SYNCEDLYRICS (LRC) is missing")
            count = 0
        else:
            problems, count = _lrc_problems(synced_text, duration, "SYNCEDLYRICS")
            fails += problems
        return worst(fails, [], f"LYRICS + SYNCEDLYRICS ({count} timed lines)")
    sylt = p.tagged().tags.getall("SYLT")
    synced_text = p.first("SYNCEDLYRICS")  # TXXX: the LRC, as FLAC carries it
    if unsynced is None and not sylt and synced_text is None:
        return "warn", "no USLT, SYLT or SYNCEDLYRICS lyrics (an instrumental?)"
    if unsynced is None:
        fails.append("USLT (unsynced lyrics) is missing or empty")
    if not sylt and synced_text is not None:
        # A signed MP3 has no SYLT: c2pa-rs (0.91) drops the frame when it writes its manifest into
        # the ID3 tag, so the LRC in TXXX:SYNCEDLYRICS carries the timing (docs/provenance.md).
        problems, count = _lrc_problems(synced_text, duration, "TXXX:SYNCEDLYRICS")
        return worst(fails + problems, [], f"USLT + TXXX:SYNCEDLYRICS ({count} timed lines)")
    if not sylt:
        fails.append("SYLT or TXXX:SYNCEDLYRICS (synced lyrics) is missing")
        count = 0
    else:
        problems, count = _sylt_problems(sylt, duration, int(p.tagged().info.sample_rate or 44100))
        fails += problems
    return worst(fails, [], f"USLT + SYLT ({count} timed entries)")
