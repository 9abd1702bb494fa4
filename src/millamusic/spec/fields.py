"""Field types every spec shares: checked text, paths, keys, chords, identifiers, limits."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from millamusic.music.lyrics import hidden_character
from millamusic.music.theory import parse_chord, parse_key
from millamusic.spec.identifiers import normalise_isrc, normalise_upc
from millamusic.spec.profiles import profile_choices, profile_names_problem

# --- limits: what a spec may ask for (docs/spec.md, "Limits") --------------------------------
# A spec past one of these is refused with the field, the limit and a fix, before anything runs.
MIN_TEMPO = 40  # BPM
MAX_TEMPO = 240
MAX_BARS_PER_SECTION = 128
MAX_SECTIONS = 100  # a long song has 20-30; more is a generated or pasted mistake
MAX_CHORDS_PER_BAR = 8  # one per eighth note in 4/4
MAX_SONG_SECONDS = 20 * 60  # every stem of the whole song is held in memory while it renders
MAX_SEED = 2**31 - 1
MAX_TITLE_CHARS = 200  # title, artist, album, album artist
MAX_SECTION_NAME_CHARS = 60
MAX_CREDIT_CHARS = 500  # composer, lyricist, producer, copyright, label
MAX_DISCLOSURE_CHARS = 2000
MAX_STYLE_WORDS = 32
MAX_STYLE_WORD_CHARS = 100
MAX_PATH_CHARS = 1024  # a path a spec names (relative to its folder)
MAX_PATH_PART_BYTES = 255  # one file or folder name: the file systems' own limit


# MAX_LYRICS_CHARS (40,000): the lyric sheet, inline or in a file; checked where sheets are read
# (millamusic.lyrics.parse_sheet) and imported above.


def field_problem(message: str, fix: str) -> PydanticCustomError:
    return PydanticCustomError("spec_value", "{message}", {"message": message, "fix": fix})


def _check_text(text: str, allowed: str = "") -> str:
    """Titles, names and credits: shown in players and written into tags, so every character
    must be visible and none may turn the text around (`allowed`: control characters that may)."""
    hidden = hidden_character(text, allowed=allowed)
    if hidden is not None:
        raise field_problem(f"contains {hidden}", "retype it without control, direction or invisible characters")
    if not text.strip():
        raise field_problem("has no visible characters", "write the text, or remove the field")
    return text


def check_paragraph(text: str) -> str:
    """Like _check_text, with line breaks and tabs allowed (the AI disclosure)."""
    return _check_text(text, allowed="\n\t")


def check_path(text: str) -> str:
    """A path a spec names: refused before it reaches the file system when no file could have it."""
    hidden = hidden_character(text)
    if hidden is not None:
        raise field_problem(f"the path contains {hidden}",
                       "retype the path: file names here may not hold control, direction or invisible characters")
    if not text.strip():
        raise field_problem("the path is blank", "give a path relative to the spec's folder, or remove the field")
    if len(text) > MAX_PATH_CHARS:
        raise field_problem(f"the path is {len(text)} characters, over the {MAX_PATH_CHARS}-character limit",
                       "give a short path relative to the spec's folder, e.g. ../lyrics/my-song.txt")
    for part in re.split(r"[/\\]", text):
        size = len(part.encode("utf-8"))
        if size > MAX_PATH_PART_BYTES:
            raise field_problem(f"the name {part[:24]!r}... is {size} bytes long, over the {MAX_PATH_PART_BYTES}-byte "
                           "limit of file systems", "check the path: no file or folder name is that long")
    return text


def check_lyrics_value(text: str) -> str:
    """`lyrics:` is a sheet (it has line breaks; parse_sheet checks it) or a path to one."""
    return text if "\n" in text else check_path(text)


def _not_true_false(value: Any) -> Any:
    """pydantic reads true as 1: a number field refuses true/false (ruamel's anchored ones too)."""
    if isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":
        raise field_problem("true/false is not a number", "write a number")
    return value


def _check_key(text: str) -> str:
    try:
        parse_key(text)
    except ValueError:
        raise field_problem("not a key", "write the tonic and mode, e.g. 'A minor' or 'Eb major'") from None
    return text


def _check_chord_bar(text: str) -> str:
    """One bar: one chord symbol, or several separated by spaces (equal shares of the bar)."""
    symbols = str(text).split()
    if not symbols:
        raise field_problem("empty bar", "write a chord symbol such as Am, F, C/E or G7")
    if len(symbols) > MAX_CHORDS_PER_BAR:
        raise field_problem(f"{len(symbols)} chords in one bar, over the limit of {MAX_CHORDS_PER_BAR}",
                       "spread the changes over more bars (one list entry per bar)")
    for symbol in symbols:
        try:
            parse_chord(symbol)
        except ValueError:
            raise field_problem(f"not a chord symbol: {symbol!r}",
                           "use a root A-G (with # or b) and a quality such as m, 7, maj7, sus4, 5, dim, add9; "
                           "a slash bass like C/E is allowed") from None
    return " ".join(symbols)


COMPOUND_METERS = (6, 9, 12)  # N/8: two, three or four dotted-quarter pulses of three eighths
_METERS_FIX = "use N/4 with N from 2 to 7 (e.g. 4/4, 3/4) or a compound meter 6/8, 9/8 or 12/8"


def meter(signature: str) -> tuple[int, int]:
    """(beats a bar, beat unit) of a checked time signature: (6, 8) for 6/8."""
    beats, unit = signature.split("/")
    return int(beats), int(unit)


def _check_time_signature(text: str) -> str:
    """N/4 (N = 2..7) or the compound meters 6/8, 9/8, 12/8; anything else names what it is and
    which accepted meter writes the same music."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", str(text))
    if not match:
        raise field_problem("unsupported time signature: not beats/unit", _METERS_FIX)
    beats, unit = int(match.group(1)), int(match.group(2))
    if unit == 4 and 2 <= beats <= 7:
        return f"{beats}/4"
    if unit == 8 and beats in COMPOUND_METERS:
        return f"{beats}/8"
    if unit == 8 and beats == 3:
        raise field_problem("unsupported time signature: 3/8 (one dotted-quarter pulse a bar)",
                            "write 6/8 with half as many bars, or 3/4 at the eighth-note tempo")
    if unit == 8 and beats in (2, 4):
        raise field_problem(f"unsupported time signature: {beats}/8",
                            "write 2/4 at the quarter-note tempo" + (" with half as many bars" if beats == 2 else ""))
    if unit == 8 and beats % 3 and 5 <= beats <= 14:
        raise field_problem(f"unsupported time signature: {beats}/8 is an asymmetric meter (pulses of two and "
                            "three eighths), which the arranger and composer do not play", _METERS_FIX)
    if unit == 16 and beats in COMPOUND_METERS:
        raise field_problem(f"unsupported time signature: {beats}/16",
                            f"write {beats}/8: the same bar of {beats // 3} pulses, with `tempo` counting the pulse")
    if unit == 4:
        raise field_problem(f"unsupported time signature: {beats} beats of 4 a bar", _METERS_FIX)
    raise field_problem(f"unsupported time signature: {beats}/{unit}", _METERS_FIX)


def _check_isrc(text: str) -> str:
    try:
        return normalise_isrc(text)
    except ValueError:
        raise field_problem("not an ISRC", "write 12 characters CCXXXYYNNNNN, e.g. FI-A1B-26-00001") from None


def _check_upc(text: str) -> str:
    try:
        return normalise_upc(text)
    except ValueError as error:
        raise field_problem(f"not a UPC/EAN: {error}",
                       "write the 12-digit UPC-A or 13-digit EAN-13 from your distributor, e.g. 012345678905") from None


def _check_profiles(value: Any) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise field_problem("not a profile name or a list of them",
                            f"write e.g. [spotify, apple]; profiles: {profile_choices()}")
    problem = profile_names_problem(names)
    if problem:
        raise field_problem(problem, f"use one or more of: {profile_choices()}")
    return names


KeyText = Annotated[str, AfterValidator(_check_key)]
ChordBar = Annotated[str, AfterValidator(_check_chord_bar)]
TimeSignature = Annotated[str, AfterValidator(_check_time_signature)]
Isrc = Annotated[str, AfterValidator(_check_isrc)]
Upc = Annotated[str, AfterValidator(_check_upc)]
ProfileNames = Annotated[Any, AfterValidator(_check_profiles)]
Text = Annotated[str, AfterValidator(_check_text)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS), AfterValidator(_check_text)]
Credit = Annotated[str, StringConstraints(max_length=MAX_CREDIT_CHARS), AfterValidator(_check_text)]
PathText = Annotated[str, AfterValidator(check_path)]
Whole = Annotated[int, BeforeValidator(_not_true_false)]  # an int that is not true/false
Number = Annotated[float, BeforeValidator(_not_true_false)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
