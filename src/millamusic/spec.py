"""Song spec: YAML -> validated `Song`, or a SpecError listing every problem with file:line:col.

The YAML is read with ruamel.yaml so each node keeps its position; pydantic validates the
shape; cross-field checks (lyrics vs sections, files on disk) run after, and all problems
are reported together.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from millamusic.errors import SpecError, SpecProblem
from millamusic.identifiers import normalise_isrc, normalise_upc
from millamusic.lyrics import LyricBlock, parse_sheet
from millamusic.soundfont import is_soundfont  # the renderer's own header check
from millamusic.theory import Key, parse_chord, parse_key

if TYPE_CHECKING:
    from millamusic.artist import Artist  # artist.py builds on this module's YAML helpers


def _problem(message: str, fix: str) -> PydanticCustomError:
    return PydanticCustomError("spec_value", "{message}", {"message": message, "fix": fix})


def _check_key(text: str) -> str:
    try:
        parse_key(text)
    except ValueError:
        raise _problem("not a key", "write the tonic and mode, e.g. 'A minor' or 'Eb major'") from None
    return text


def _check_chord_bar(text: str) -> str:
    """One bar: one chord symbol, or several separated by spaces (equal shares of the bar)."""
    symbols = str(text).split()
    if not symbols:
        raise _problem("empty bar", "write a chord symbol such as Am, F, C/E or G7")
    for symbol in symbols:
        try:
            parse_chord(symbol)
        except ValueError:
            raise _problem(f"not a chord symbol: {symbol!r}",
                           "use a root A-G (with # or b) and a quality such as m, 7, maj7, sus4, 5, dim, add9; "
                           "a slash bass like C/E is allowed") from None
    return " ".join(symbols)


def _check_time_signature(text: str) -> str:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or match.group(2) != "4" or not 2 <= int(match.group(1)) <= 7:
        raise _problem("unsupported time signature", "use N/4 with N from 2 to 7, e.g. 4/4 or 3/4")
    return f"{int(match.group(1))}/4"


def _check_isrc(text: str) -> str:
    try:
        return normalise_isrc(text)
    except ValueError:
        raise _problem("not an ISRC", "write 12 characters CCXXXYYNNNNN, e.g. FI-A1B-26-00001") from None


def _check_upc(text: str) -> str:
    try:
        return normalise_upc(text)
    except ValueError as error:
        raise _problem(f"not a UPC/EAN: {error}",
                       "write the 12-digit UPC-A or 13-digit EAN-13 from your distributor, e.g. 012345678905") from None


def _check_profiles(value: Any) -> list[str]:
    from millamusic.profiles import profile_choices, profile_names_problem

    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _problem("not a profile name or a list of them", f"write e.g. [spotify, apple]; profiles: {profile_choices()}")
    problem = profile_names_problem(names)
    if problem:
        raise _problem(problem, f"use one or more of: {profile_choices()}")
    return names


KeyText = Annotated[str, AfterValidator(_check_key)]
ChordBar = Annotated[str, AfterValidator(_check_chord_bar)]
TimeSignature = Annotated[str, AfterValidator(_check_time_signature)]
Isrc = Annotated[str, AfterValidator(_check_isrc)]
Upc = Annotated[str, AfterValidator(_check_upc)]
ProfileNames = Annotated[Any, AfterValidator(_check_profiles)]

SECTION_KINDS = ("intro", "verse", "prechorus", "chorus", "bridge", "solo", "breakdown", "outro", "other")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SectionSpec(_Strict):
    section: str = Field(min_length=1, max_length=60)
    bars: int = Field(ge=1, le=128)
    chords: list[ChordBar] = Field(min_length=1)
    kind: Literal[SECTION_KINDS] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _chords_fit_bars(self) -> "SectionSpec":
        if len(self.chords) > self.bars:
            raise _problem(f"{len(self.chords)} chord bars for a {self.bars}-bar section",
                           "list at most one entry per bar (they repeat to fill the section), "
                           "or raise `bars`")
        return self

    @property
    def resolved_kind(self) -> str:
        if self.kind:
            return self.kind
        word = re.sub(r"[^a-z]", "", self.section.lower().split()[0]) if self.section.split() else ""
        word = {"pre": "prechorus", "prechorus": "prechorus", "refrain": "chorus", "hook": "chorus",
                "middle": "bridge", "ending": "outro", "coda": "outro"}.get(word, word)
        return word if word in SECTION_KINDS else "other"


class EnginesSpec(_Strict):
    backing: str = "arranger"
    vocals: str = "singer"
    backing_options: dict[str, Any] = Field(default_factory=dict)
    vocal_options: dict[str, Any] = Field(default_factory=dict)


class VoiceSpec(_Strict):
    language: str = "en-us"
    voice: Literal["female", "male"] = "female"


class MasterSpec(_Strict):
    # delivery profiles (millamusic.profiles): one set of masters per profile; a name or a list
    profiles: ProfileNames = Field(default_factory=lambda: ["spotify"])


class ReleaseSpec(_Strict):
    album: str | None = None
    album_artist: str | None = None
    track: int | None = Field(default=None, ge=1, le=999)
    track_total: int | None = Field(default=None, ge=1, le=999)
    disc: int | None = Field(default=None, ge=1, le=99)
    year: int | None = Field(default=None, ge=1900, le=2100)
    isrc: Isrc | None = None
    upc: Upc | None = None  # the release's barcode (UPC-A or EAN-13, check digit verified)
    composer: str | None = None
    lyricist: str | None = None
    producer: str | None = None
    copyright: str | None = None
    label: str | None = None
    disclosure: str | None = Field(default=None, min_length=20)
    commercial: bool = True  # sold or streamed for money: models licensed non-commercially are refused
    acknowledge_noncommercial: bool = False  # ...unless this says the producer knows (recorded in release.json)


class SongSpec(_Strict):
    title: str = Field(min_length=1, max_length=200)
    artist: str = Field(min_length=1, max_length=200)
    artist_profile: str | None = None  # artists/<name>.yaml: voice, range, disclosure (docs/singing.md)
    genre: Literal["pop", "rock"]
    style: list[str] = Field(default_factory=list)
    tempo: float = Field(ge=40, le=240)
    key: KeyText
    time_signature: TimeSignature = "4/4"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    structure: list[SectionSpec] = Field(min_length=1)
    lyrics: str = Field(min_length=1)
    melody: str | None = None
    reference: str | None = None
    artwork: str | None = None
    soundfont: str | None = None
    engines: EnginesSpec = Field(default_factory=EnginesSpec)
    voice: VoiceSpec = Field(default_factory=VoiceSpec)
    master: MasterSpec = Field(default_factory=MasterSpec)
    release: ReleaseSpec = Field(default_factory=ReleaseSpec)

    @property
    def beats_per_bar(self) -> int:
        return int(self.time_signature.split("/")[0])

    @property
    def key_value(self) -> Key:
        return parse_key(self.key)


@dataclass(frozen=True)
class Song:
    """A validated spec plus everything it points to, read and hashed once."""

    spec: SongSpec
    path: Path
    spec_sha256: str
    lyric_blocks: tuple[LyricBlock, ...]
    lyrics_file: str  # where lyric line numbers point
    melody_path: Path | None
    reference_path: Path | None
    artwork_path: Path | None
    input_hashes: dict  # field -> sha256 of the file's content (cache keys use content, not paths)
    soundfont_path: Path | None = None
    artist: Artist | None = None  # the artist profile, when the spec names one
    album_path: Path | None = None  # the album spec, when the song is rendered as an album's track

    @property
    def slug(self) -> str:
        return slugify(self.spec.title)

    # --- the voice: the song's own `voice:` fields win over the profile's ---------------------
    @property
    def language(self) -> str:
        if self.artist is None or "language" in self.spec.voice.model_fields_set:
            return self.spec.voice.language
        return self.artist.profile.voice.language

    @property
    def voice(self) -> str:
        if self.artist is None or "voice" in self.spec.voice.model_fields_set:
            return self.spec.voice.voice
        return self.artist.profile.voice.voice

    @property
    def voice_range(self) -> tuple[int, int] | None:
        """(lowest, highest) MIDI note the composer may write, from the profile; None: the default."""
        return self.artist.range_midi if self.artist else None

    @property
    def vocal_options(self) -> dict:
        """The vocal engine's options: the profile's voice and singing, then the song's own."""
        options: dict = {}
        if self.artist is not None:
            settings = self.artist.profile.voice
            options["source"] = settings.source
            if self.artist.piper_model_path is not None:
                options["piper_model"] = str(self.artist.piper_model_path)
            options.update(self.artist.profile.singing)
        options.update(self.spec.engines.vocal_options)
        return options

    @property
    def disclosure(self) -> str | None:
        """The song's own disclosure text, else the artist's default (None: the generated one)."""
        if self.spec.release.disclosure:
            return self.spec.release.disclosure
        return self.artist.profile.disclosure if self.artist else None


def slugify(title: str) -> str:
    """A safe file/folder name: lowercase ascii letters, digits and single hyphens only."""
    import unicodedata

    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:80].strip("-")
    return slug or "untitled"


# --- loading ---------------------------------------------------------------------------------

def load_song(path: str | Path) -> Song:
    path = Path(path)
    shown = str(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as error:
        raise SpecError([SpecProblem(shown, None, None, "file", shown, f"cannot read the spec ({error.strerror})",
                                     "check the path")]) from None
    document = _parse_yaml(raw_bytes, shown)
    if _is_album(document):
        line, column = _position(document, ("tracks",))
        raise SpecError([SpecProblem(shown, line, column, "tracks", "...", "this is an album spec, not a song",
                                     f"build it with `millamusic album {shown}`")])
    problems: list[SpecProblem] = []
    spec: SongSpec | None = None
    try:
        spec = SongSpec.model_validate(document)
    except ValidationError as error:
        problems.extend(_pydantic_problems(error, document, shown))
    if spec is None:
        raise SpecError(problems)

    base = path.resolve().parent
    files: dict[str, Path | None] = {}
    hashes: dict[str, str] = {}
    for field_name, kinds in (("melody", (".mid", ".midi")), ("reference", (".wav", ".flac", ".mp3", ".ogg")),
                              ("artwork", (".jpg", ".jpeg", ".png")), ("soundfont", (".sf2",))):
        value = getattr(spec, field_name)
        files[field_name] = None
        if value is None:
            continue
        resolved = (base / value).resolve()
        line, col = _position(document, (field_name,))
        if not resolved.is_file():
            problems.append(SpecProblem(shown, line, col, field_name, value, "file not found",
                                        f"give a path relative to the spec's folder ({base})"))
        elif resolved.suffix.lower() not in kinds:
            problems.append(SpecProblem(shown, line, col, field_name, value, "wrong kind of file",
                                        f"use a file ending in {', '.join(kinds)}"))
        elif field_name == "soundfont" and not is_soundfont(resolved):
            problems.append(SpecProblem(shown, line, col, field_name, value, "not a SoundFont 2 file (no RIFF 'sfbk' "
                                        "header)", "point it at a General MIDI .sf2 file, or remove the field"))
        else:
            files[field_name] = resolved
            hashes[field_name] = sha256_file(resolved)

    artist = None
    if spec.artist_profile is not None:
        artist, artist_problems = _load_profile(spec, document, shown, base)
        problems.extend(artist_problems)
        if artist is not None:
            hashes["artist_profile"] = artist.sha256
    problems.extend(engine_option_problems(spec.engines.vocals, spec.engines.vocal_options, document, shown,
                                           ("engines", "vocal_options")))
    problems.extend(engine_option_problems(spec.engines.backing, spec.engines.backing_options, document, shown,
                                           ("engines", "backing_options")))
    problems.extend(_language_problems(spec, artist, document, shown))

    blocks, lyrics_file, lyric_problems = _read_lyrics(spec, document, shown, base)
    problems.extend(lyric_problems)
    problems.extend(_match_lyrics_to_sections(spec, blocks, lyrics_file))
    if problems:
        raise SpecError(problems)
    return Song(spec, path, hashlib.sha256(raw_bytes).hexdigest(), tuple(blocks), lyrics_file,
                files["melody"], files["reference"], files["artwork"], hashes, files["soundfont"], artist)


def _load_profile(spec: SongSpec, document: Any, shown: str, base: Path):
    """The spec's artist profile, or the problems with it (including a name that differs)."""
    from millamusic.artist import load_artist

    line, col = _position(document, ("artist_profile",))
    resolved = (base / spec.artist_profile).resolve()
    if not resolved.is_file():
        return None, [SpecProblem(shown, line, col, "artist_profile", spec.artist_profile, "artist profile not found",
                                  f"give a path relative to the spec's folder ({base}), e.g. ../artists/milla-virta.yaml")]
    try:
        artist = load_artist(resolved)
    except SpecError as error:
        return None, list(error.problems)
    if artist.name != spec.artist:
        line, col = _position(document, ("artist",))
        return None, [SpecProblem(shown, line, col, "artist", spec.artist,
                                  f"differs from the artist profile's name {artist.name!r}",
                                  f"set `artist: {artist.name}`, or point artist_profile at this artist's profile")]
    return artist, []


def _language_problems(spec: SongSpec, artist, document: Any, shown: str) -> list[SpecProblem]:
    """The song's sung language must be one espeak-ng knows: it splits and speaks the words.
    (A profile's language is checked when the profile loads.)"""
    if artist is not None and "language" not in spec.voice.model_fields_set:
        return []
    fix = language_problem(spec.voice.language)
    if fix is None:
        return []
    line, col = _position(document, ("voice", "language"))
    return [SpecProblem(shown, line, col, "voice.language", spec.voice.language, "espeak-ng has no such language", fix)]


def language_problem(code: str) -> str | None:
    """The fix for a language espeak-ng cannot speak, or None (also None when espeak is
    missing: the singer then reports itself unavailable with the install command)."""
    from millamusic import espeak

    try:
        return espeak.language_fix(code)
    except (OSError, ImportError, espeak.EspeakError):
        return None



def _is_album(document: Any) -> bool:
    return isinstance(document, dict) and "tracks" in document and "structure" not in document


def is_album_spec(path: str | Path) -> bool:
    """Whether the YAML at `path` is an album spec (it lists `tracks:`) rather than a song. False
    for anything unreadable: loading it as a song then reports what is wrong."""
    try:
        return _is_album(_parse_yaml(Path(path).read_bytes(), str(path)))
    except (OSError, SpecError):
        return False


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _parse_yaml(raw: bytes, shown: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        document = YAML(typ="rt").load(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise SpecError([SpecProblem(shown, None, None, "file", f"byte {error.start}", "not UTF-8 text",
                                     "save the spec as UTF-8")]) from None
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise SpecError([SpecProblem(shown, line, col, "yaml", (error.problem or "").strip(),
                                     f"YAML syntax error: {error.problem or error.context}",
                                     "check indentation, colons and quotes around this position")]) from None
    except YAMLError as error:
        raise SpecError([SpecProblem(shown, None, None, "yaml", "", f"YAML error: {error}", "fix the YAML")]) from None
    if not isinstance(document, dict):
        raise SpecError([SpecProblem(shown, 1, 1, "spec", type(document).__name__,
                                     "the spec must be a mapping of fields", "start with `title: ...`")])
    return document


def engine_option_problems(engine: str, options: dict, document: Any, shown: str, loc: tuple) -> list[SpecProblem]:
    """An engine's own option checks (its registry entry names them), at the option's place in the YAML."""
    from millamusic.engines import option_problems

    problems = []
    for key, message, fix in option_problems(engine, options):
        line, col = _position(document, loc + (key,))
        problems.append(SpecProblem(shown, line, col, ".".join(loc + (key,)), options.get(key), message, fix))
    return problems


def _position(document: Any, loc: tuple) -> tuple[int | None, int | None]:
    """1-based line/column of the value at `loc`, or of the deepest existing parent."""
    node = document
    best: tuple[int | None, int | None] = (1, 1)
    for part in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and part in node:
            if lc is not None:
                line, col = lc.value(part)
                best = (line + 1, col + 1)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            if lc is not None:
                line, col = lc.item(part)
                best = (line + 1, col + 1)
            node = node[part]
        else:
            break
    return best


def _value_at(document: Any, loc: tuple) -> Any:
    node = document
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it, or check its spelling against docs/spec.md",
    "literal_error": "use one of the values listed",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "string_type": "write text (quote it if it looks like a number)",
    "list_type": "write a list, e.g. [Am, F, C, G]",
    "dict_type": "write a mapping of fields",
    "model_type": "write a mapping of fields",
    "greater_than_equal": "use a larger value",
    "less_than_equal": "use a smaller value",
    "too_short": "add content",
    "string_too_short": "write a longer text",
    "string_too_long": "shorten it",
}


def _pydantic_problems(error: ValidationError, document: Any, shown: str) -> list[SpecProblem]:
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        line, col = _position(document, loc)
        ctx = item.get("ctx") or {}
        fix = ctx.get("fix") or _FIXES.get(item["type"], "see docs/spec.md")
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        value = _value_at(document, loc) if item["type"] != "missing" else None
        problems.append(SpecProblem(shown, line, col, field or "spec", value, message, fix))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    return problems


def _read_lyrics(spec: SongSpec, document: Any, shown: str, base: Path):
    line, col = _position(document, ("lyrics",))
    text = spec.lyrics
    if "\n" in text:  # inline lyric sheet: line numbers point into the spec
        # A block scalar (`lyrics: |`) starts on the line after the key.
        first = (line or 1) + (1 if _is_block_scalar(document) else 0)
        blocks, problems = parse_sheet(text, file=shown, first_line=first)
        return blocks, shown, problems
    resolved = (base / text).resolve()
    if not resolved.is_file():
        return [], shown, [SpecProblem(shown, line, col, "lyrics", text, "lyric file not found",
                                       "give a path relative to the spec's folder (e.g. ../lyrics/my-song.txt), "
                                       "or write the lyrics inline with `lyrics: |`")]
    try:
        content = resolved.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [], shown, [SpecProblem(str(resolved), None, None, "lyrics", text, "not UTF-8 text", "save it as UTF-8")]
    blocks, problems = parse_sheet(content, file=str(resolved))
    return blocks, str(resolved), problems


def _is_block_scalar(document: Any) -> bool:
    from ruamel.yaml.scalarstring import LiteralScalarString, FoldedScalarString

    return isinstance(document.get("lyrics"), (LiteralScalarString, FoldedScalarString))


def _match_lyrics_to_sections(spec: SongSpec, blocks: list[LyricBlock], lyrics_file: str) -> list[SpecProblem]:
    names = {section.section.lower() for section in spec.structure}
    problems = []
    seen: dict[str, int] = {}
    for block in blocks:
        key = block.header.lower()
        if key not in names:
            problems.append(SpecProblem(lyrics_file, block.line, 1, "lyrics", f"[{block.header}]",
                                        "header names no section in `structure`",
                                        f"use one of: {', '.join(sorted({s.section for s in spec.structure}))}"))
        elif key in seen:
            problems.append(SpecProblem(lyrics_file, block.line, 1, "lyrics", f"[{block.header}]",
                                        f"section already has lyrics (line {seen[key]})",
                                        "name repeated sections apart (Chorus 1, Chorus 2) or write the lyrics once: "
                                        "a block is sung in every section of that name"))
        seen.setdefault(key, block.line)
    if blocks and not any(block.lines for block in blocks):
        problems.append(SpecProblem(lyrics_file, blocks[0].line, 1, "lyrics", "", "no sung lines", "add lyric lines"))
    return problems
