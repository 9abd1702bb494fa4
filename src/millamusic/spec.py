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

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from millamusic.cache import sha256_file
from millamusic.errors import SpecError, SpecProblem
from millamusic.identifiers import normalise_isrc, normalise_upc
from millamusic.lyrics import (
    MAX_LYRICS_CHARS,  # noqa: F401  (one of the limits below; checked where sheets are parsed)
    LyricBlock,
    hidden_character,
    parse_sheet,
)
from millamusic.soundfont import is_soundfont  # the renderer's own header check
from millamusic.theory import Key, note_to_midi, parse_chord, parse_key

if TYPE_CHECKING:
    from millamusic.artist import Artist  # artist.py builds on this module's YAML helpers


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


def _problem(message: str, fix: str) -> PydanticCustomError:
    return PydanticCustomError("spec_value", "{message}", {"message": message, "fix": fix})


def _check_text(text: str, allowed: str = "") -> str:
    """Titles, names and credits: shown in players and written into tags, so every character
    must be visible and none may turn the text around (`allowed`: control characters that may)."""
    hidden = hidden_character(text, allowed=allowed)
    if hidden is not None:
        raise _problem(f"contains {hidden}", "retype it without control, direction or invisible characters")
    if not text.strip():
        raise _problem("has no visible characters", "write the text, or remove the field")
    return text


def _check_paragraph(text: str) -> str:
    """Like _check_text, with line breaks and tabs allowed (the AI disclosure)."""
    return _check_text(text, allowed="\n\t")


def _check_path(text: str) -> str:
    """A path a spec names: refused before it reaches the file system when no file could have it."""
    hidden = hidden_character(text)
    if hidden is not None:
        raise _problem(f"the path contains {hidden}",
                       "retype the path: file names here may not hold control, direction or invisible characters")
    if not text.strip():
        raise _problem("the path is blank", "give a path relative to the spec's folder, or remove the field")
    if len(text) > MAX_PATH_CHARS:
        raise _problem(f"the path is {len(text)} characters, over the {MAX_PATH_CHARS}-character limit",
                       "give a short path relative to the spec's folder, e.g. ../lyrics/my-song.txt")
    for part in re.split(r"[/\\]", text):
        size = len(part.encode("utf-8"))
        if size > MAX_PATH_PART_BYTES:
            raise _problem(f"the name {part[:24]!r}... is {size} bytes long, over the {MAX_PATH_PART_BYTES}-byte "
                           "limit of file systems", "check the path: no file or folder name is that long")
    return text


def _check_lyrics_value(text: str) -> str:
    """`lyrics:` is a sheet (it has line breaks; parse_sheet checks it) or a path to one."""
    return text if "\n" in text else _check_path(text)


def _not_true_false(value: Any) -> Any:
    """pydantic reads true as 1: a number field refuses true/false (ruamel's anchored ones too)."""
    if isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":
        raise _problem("true/false is not a number", "write a number")
    return value


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
    if len(symbols) > MAX_CHORDS_PER_BAR:
        raise _problem(f"{len(symbols)} chords in one bar, over the limit of {MAX_CHORDS_PER_BAR}",
                       "spread the changes over more bars (one list entry per bar)")
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
Text = Annotated[str, AfterValidator(_check_text)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE_CHARS), AfterValidator(_check_text)]
Credit = Annotated[str, StringConstraints(max_length=MAX_CREDIT_CHARS), AfterValidator(_check_text)]
PathText = Annotated[str, AfterValidator(_check_path)]
Whole = Annotated[int, BeforeValidator(_not_true_false)]  # an int that is not true/false
Number = Annotated[float, BeforeValidator(_not_true_false)]

SECTION_KINDS = ("intro", "verse", "prechorus", "chorus", "bridge", "solo", "breakdown", "outro", "other")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SectionSpec(_Strict):
    section: Text = Field(min_length=1, max_length=MAX_SECTION_NAME_CHARS)
    bars: Whole = Field(ge=1, le=MAX_BARS_PER_SECTION)
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
    language: str = Field(default="en-us", max_length=35)  # an espeak-ng code: en-us, fi, sv ...
    voice: Literal["female", "male"] = "female"


class MasterSpec(_Strict):
    # delivery profiles (millamusic.profiles): one set of masters per profile; a name or a list
    profiles: ProfileNames = Field(default_factory=lambda: ["spotify"])


class ReleaseSpec(_Strict):
    album: Title | None = None
    album_artist: Title | None = None
    track: Whole | None = Field(default=None, ge=1, le=999)
    track_total: Whole | None = Field(default=None, ge=1, le=999)
    disc: Whole | None = Field(default=None, ge=1, le=99)
    year: Whole | None = Field(default=None, ge=1900, le=2100)
    isrc: Isrc | None = None
    upc: Upc | None = None  # the release's barcode (UPC-A or EAN-13, check digit verified)
    composer: Credit | None = None
    lyricist: Credit | None = None
    producer: Credit | None = None
    copyright: Credit | None = None
    label: Credit | None = None
    disclosure: Annotated[str, AfterValidator(_check_paragraph)] | None = Field(
        default=None, min_length=20, max_length=MAX_DISCLOSURE_CHARS)
    commercial: bool = True  # sold or streamed for money: models licensed non-commercially are refused
    acknowledge_noncommercial: bool = False  # ...unless this says the producer knows (recorded in release.json)


class SongSpec(_Strict):
    title: Title
    artist: Title
    artist_profile: PathText | None = None  # artists/<name>.yaml: voice, range, disclosure (docs/singing.md)
    genre: Literal["pop", "rock"]
    style: list[Annotated[Text, StringConstraints(max_length=MAX_STYLE_WORD_CHARS)]] = Field(
        default_factory=list, max_length=MAX_STYLE_WORDS)
    tempo: Number = Field(ge=MIN_TEMPO, le=MAX_TEMPO, allow_inf_nan=False)
    key: KeyText
    time_signature: TimeSignature = "4/4"
    seed: Whole = Field(default=0, ge=0, le=MAX_SEED)
    structure: list[SectionSpec] = Field(min_length=1, max_length=MAX_SECTIONS)
    lyrics: Annotated[str, AfterValidator(_check_lyrics_value)] = Field(min_length=1)
    melody: PathText | None = None
    reference: PathText | None = None
    artwork: PathText | None = None
    soundfont: PathText | None = None
    engines: EnginesSpec = Field(default_factory=EnginesSpec)
    voice: VoiceSpec = Field(default_factory=VoiceSpec)
    master: MasterSpec = Field(default_factory=MasterSpec)
    release: ReleaseSpec = Field(default_factory=ReleaseSpec)

    @field_validator("structure")
    @classmethod
    def _not_too_long(cls, structure: list[SectionSpec], info: ValidationInfo) -> list[SectionSpec]:
        """At most MAX_SONG_SECONDS of music (tempo and time_signature come first, so they are known
        here unless they are wrong themselves)."""
        tempo, signature = info.data.get("tempo"), info.data.get("time_signature")
        if tempo is None or signature is None:
            return structure
        bars = sum(section.bars for section in structure)
        beats = int(signature.split("/")[0])
        seconds = bars * beats * 60 / tempo
        if seconds > MAX_SONG_SECONDS:
            raise _problem(f"the song would last {_duration(seconds)} ({bars} bars of {signature} at {tempo:g} BPM), "
                           f"over the {MAX_SONG_SECONDS // 60}-minute limit",
                           "shorten `structure` (fewer sections or fewer bars), or raise `tempo`")
        return structure

    @property
    def beats_per_bar(self) -> int:
        return int(self.time_signature.split("/")[0])

    @property
    def key_value(self) -> Key:
        return parse_key(self.key)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


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
    vocals_override: str | None = None  # the vocal engine a command line names (--vocals), over the spec's

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
        """(lowest, highest) MIDI note the composer may write, from the profile; None: the default.

        Sung by `kokoro`, the profile's range is kept inside the voice's `clean_range` when the
        profile gives one: above it the model's voice breaks (docs/singing.md, the pitch ceiling).
        """
        if self.artist is None:
            return None
        low, high = self.artist.range_midi
        clean = self.artist.profile.voice.kokoro.clean_range
        if self.vocal_engine == "kokoro" and clean is not None:
            clean_low, clean_high = (note_to_midi(n) for n in clean)
            if min(high, clean_high) - max(low, clean_low) >= 9:  # still a major sixth to write in
                return max(low, clean_low), min(high, clean_high)
            return clean_low, clean_high
        return low, high

    @property
    def vocal_engine(self) -> str:
        """--vocals, else the song's own `engines.vocals`, else the artist profile's `voice.engine`,
        else the singer."""
        if self.vocals_override:
            return self.vocals_override
        if self.artist is None or "vocals" in self.spec.engines.model_fields_set:
            return self.spec.engines.vocals
        return self.artist.profile.voice.engine

    @property
    def vocal_options(self) -> dict:
        """The vocal engine's options: the profile's voice and singing, then the song's own."""
        options: dict = {}
        if self.artist is not None:
            settings = self.artist.profile.voice
            options["source"] = settings.source
            if self.artist.piper_model_path is not None:
                options["piper_model"] = str(self.artist.piper_model_path)
            if self.artist.kokoro_pack is not None:
                options["kokoro_pack"] = self.artist.kokoro_pack
            if settings.kokoro.clean_range is not None:
                options["kokoro_ceiling"] = settings.kokoro.clean_range[1]
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
    if slug in _RESERVED_NAMES:  # "CON" would name files Windows cannot open
        slug += "-song"
    return slug or "untitled"


# Device names Windows reserves as file names, with any extension
_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)), *(f"lpt{n}" for n in range(1, 10))}


# --- loading ---------------------------------------------------------------------------------

def default_catalogue(spec_path: Path) -> Path:
    """The folder a spec may read from unless --catalogue names another: the one above the spec's
    own folder (songs/x.yaml -> the project, with lyrics/, artwork/, artists/ beside songs/)."""
    return Path(spec_path).resolve().parent.parent


def outside_catalogue(resolved: Path, catalogue: Path) -> bool:
    """Whether a resolved input path (symlinks followed) lies outside the catalogue."""
    return resolved != catalogue and catalogue not in resolved.parents


def _outside(shown: str, line, col, field_name: str, value, resolved: Path, catalogue: Path) -> SpecProblem:
    return SpecProblem(shown, line, col, field_name, value,
                       f"points outside the catalogue {catalogue} (to {resolved})",
                       "keep the file inside the catalogue, or name a wider catalogue on the command line with "
                       "--catalogue DIR (a spec alone cannot reach outside it; symlinks are followed)")


def load_song(path: str | Path, catalogue: str | Path | None = None) -> Song:
    """Read and validate a song spec and every file it names. Files must lie inside `catalogue`
    (default: `default_catalogue(path)`), so a spec from elsewhere cannot read /etc or $HOME."""
    path = Path(path)
    shown = str(path)
    catalogue = Path(catalogue).resolve() if catalogue is not None else default_catalogue(path)
    raw_bytes = read_spec_bytes(path, shown, "spec")
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
        if outside_catalogue(resolved, catalogue):
            problems.append(_outside(shown, line, col, field_name, value, resolved, catalogue))
        elif not resolved.is_file():
            problems.append(SpecProblem(shown, line, col, field_name, value, "file not found",
                                        f"give a path relative to the spec's folder ({base})"))
        elif resolved.suffix.lower() not in kinds:
            problems.append(SpecProblem(shown, line, col, field_name, value, "wrong kind of file",
                                        f"use a file ending in {', '.join(kinds)}"))
        elif (bad := input_file_problem(field_name, resolved)) is not None:
            problems.append(SpecProblem(shown, line, col, field_name, value, *bad))
        elif field_name == "soundfont" and not is_soundfont(resolved):
            problems.append(SpecProblem(shown, line, col, field_name, value, "not a SoundFont 2 file (no RIFF 'sfbk' "
                                        "header)", "point it at a General MIDI .sf2 file, or remove the field"))
        else:
            files[field_name] = resolved
            hashes[field_name] = sha256_file(resolved)

    artist = None
    if spec.artist_profile is not None:
        artist, artist_problems = _load_profile(spec, document, shown, base, catalogue)
        problems.extend(artist_problems)
        if artist is not None:
            hashes["artist_profile"] = artist.sha256
    vocal_engine = spec.engines.vocals
    if artist is not None and "vocals" not in spec.engines.model_fields_set:
        vocal_engine = artist.profile.voice.engine
    problems.extend(engine_option_problems(vocal_engine, spec.engines.vocal_options, document, shown,
                                           ("engines", "vocal_options")))
    problems.extend(engine_option_problems(spec.engines.backing, spec.engines.backing_options, document, shown,
                                           ("engines", "backing_options")))
    problems.extend(_language_problems(spec, artist, document, shown))

    blocks, lyrics_file, lyric_problems = _read_lyrics(spec, document, shown, base, catalogue)
    problems.extend(lyric_problems)
    problems.extend(_match_lyrics_to_sections(spec, blocks, lyrics_file))
    if problems:
        raise SpecError(problems)
    return Song(spec, path, hashlib.sha256(raw_bytes).hexdigest(), tuple(blocks), lyrics_file,
                files["melody"], files["reference"], files["artwork"], hashes, files["soundfont"], artist)


def _load_profile(spec: SongSpec, document: Any, shown: str, base: Path, catalogue: Path):
    """The spec's artist profile, or the problems with it (including a name that differs)."""
    from millamusic.artist import load_artist

    line, col = _position(document, ("artist_profile",))
    resolved = (base / spec.artist_profile).resolve()
    if outside_catalogue(resolved, catalogue):
        return None, [_outside(shown, line, col, "artist_profile", spec.artist_profile, resolved, catalogue)]
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


# Limits on what a spec may make us read (docs/errors.md). A song's spec with inline lyrics is a few KB.
MAX_SPEC_BYTES = 1 << 20  # song, album and artist-profile YAML files
MAX_YAML_DEPTH = 16  # nesting of mappings and lists; the schema needs 4
MAX_YAML_NODES = 20_000  # scalars, mappings and lists in one file (a long song has ~2000)


# Largest files a spec may name (checked before they are read)
MAX_INPUT_BYTES = {"melody": 1 << 20, "reference": 1 << 30, "artwork": 20 << 20, "soundfont": 2 << 30}
MAX_REFERENCE_SECONDS = 20 * 60


def _reference_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when the reference recording is not whole, readable audio; decodes it all
    (in blocks) so a corrupt or truncated file is refused here, not minutes into a render."""
    import soundfile

    fix = "export the reference again as WAV, FLAC, MP3 or OGG"
    try:
        info = soundfile.info(str(path))
        if info.duration > MAX_REFERENCE_SECONDS:
            return (f"the recording is {info.duration / 60:.0f} minutes long, over the "
                    f"{MAX_REFERENCE_SECONDS // 60}-minute limit", "trim it to the song")
        if info.format == "WAV":  # libsndfile reads a cut-off WAV without complaint: compare the header's size
            with open(path, "rb") as handle:
                head = handle.read(12)
            declared = int.from_bytes(head[4:8], "little") + 8
            if head[:4] == b"RIFF" and declared > path.stat().st_size:
                return f"the WAV is truncated: its header says {declared} bytes, the file has {path.stat().st_size}", fix
        for _ in soundfile.blocks(str(path), blocksize=1 << 16):
            pass
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        return f"not a readable audio file ({error})", fix
    return None


def _artwork_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when the cover would be refused at export: say so before rendering."""
    from millamusic.export import ExportError, validate_cover

    try:
        validate_cover(path)
    except ExportError as error:
        message, _, fix = str(error).partition(". Fix: ")
        return message.rstrip("."), fix or "use a square JPEG or PNG of at least 1400 x 1400 px"
    return None


def _melody_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when the melody is not a Standard MIDI File with notes (the note count
    against the lyrics is checked when composing)."""
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except Exception as error:  # mido raises several types (OSError, EOFError, KeyError, ValueError) for broken files
        return f"cannot read the MIDI file ({error})", "export it again as a Standard MIDI File"
    if not any(message.type == "note_on" and message.velocity > 0 for track in midi.tracks for message in track):
        return "the MIDI file has 0 notes", "export the track that holds the sung melody"
    return None


_CONTENT_CHECKS = {"reference": _reference_problem, "artwork": _artwork_problem, "melody": _melody_problem}


def input_file_problem(field_name: str, path: Path) -> tuple[str, str] | None:
    """(problem, fix) when a file named by `field_name` is over its size limit or not what it
    should be (checked before any work starts); None when it is fine."""
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES[field_name]:
        return (f"the file is {size / 2**20:.0f} MB, over the {MAX_INPUT_BYTES[field_name] >> 20} MB limit for "
                f"`{field_name}`", "use a smaller file (see docs/errors.md for the limits)")
    check = _CONTENT_CHECKS.get(field_name)
    return check(path) if check else None


def read_spec_bytes(path: Path, shown: str, what: str) -> bytes:
    """A spec file's bytes, refusing a file too large to be a spec before reading it."""
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([SpecProblem(shown, None, None, "file", f"{size} bytes",
                                         f"the {what} is larger than {MAX_SPEC_BYTES // 1024} KB",
                                         "a spec holds fields and lyrics only; keep audio, images and long texts in "
                                         "files it names")])
        return path.read_bytes()
    except OSError as error:
        raise SpecError([SpecProblem(shown, None, None, "file", shown, f"cannot read the {what} ({error.strerror})",
                                     "check the path")]) from None


def _yaml_shape_problems(text: str, shown: str) -> list[SpecProblem]:
    """Refuse YAML that costs more than it says before building it: aliases (a few lines of
    `*a` can expand to billions of nodes), deep nesting (recursion in every consumer) and
    huge node counts. Specs need none of these. Reads the event stream only: linear time."""
    from ruamel.yaml import YAML
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent

    depth = nodes = 0
    for event in YAML(typ="rt").parse(text):
        mark = event.start_mark
        where = (mark.line + 1, mark.column + 1) if mark else (None, None)
        if isinstance(event, AliasEvent):
            return [SpecProblem(shown, *where, "yaml", f"*{event.anchor}", "YAML aliases are not allowed in specs",
                                "write the value out where it is used")]
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                return [SpecProblem(shown, *where, "yaml", f"depth {depth}",
                                    f"nested deeper than {MAX_YAML_DEPTH} levels",
                                    "a spec's fields nest a few levels at most; check the brackets and indentation")]
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        nodes += 1
        if nodes > MAX_YAML_NODES:
            return [SpecProblem(shown, *where, "yaml", f"{nodes} nodes", f"more than {MAX_YAML_NODES} YAML nodes",
                                "a spec has a few hundred fields and lines at most")]
    return []


def _parse_yaml(raw: bytes, shown: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = raw.decode("utf-8")
        problems = _yaml_shape_problems(text, shown)
        if problems:
            raise SpecError(problems)
        document = YAML(typ="rt").load(text)
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
    "greater_than_equal": "use {ge} or more",
    "less_than_equal": "use {le} or less",
    "too_short": "add content",
    "too_long": "list at most {max_length} items",
    "string_too_short": "write a longer text",
    "string_too_long": "shorten it to {max_length} characters or fewer",
    "finite_number": "write a finite number",
    "int_parsing_size": "write a whole number of sensible size",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_unicode": "write the characters themselves: an unpaired \\uD800-\\uDFFF escape is not text",
}

# Fixes that say more than the generic one for a field (indices left out of the field's name).
_FIELD_FIXES = {
    ("tempo", "greater_than_equal"): f"write the tempo in beats per minute, from {MIN_TEMPO} to {MAX_TEMPO}",
    ("tempo", "less_than_equal"): f"write the tempo in beats per minute, from {MIN_TEMPO} to {MAX_TEMPO}",
    ("tempo", "finite_number"): f"write the tempo in beats per minute, from {MIN_TEMPO} to {MAX_TEMPO}",
    ("structure.bars", "greater_than_equal"): f"give the section 1 to {MAX_BARS_PER_SECTION} bars",
    ("structure.bars", "less_than_equal"): f"give the section at most {MAX_BARS_PER_SECTION} bars; split a longer "
                                           "passage into several sections",
    ("structure", "too_long"): f"a song has at most {MAX_SECTIONS} sections: join repeated parts into longer "
                               f"sections (up to {MAX_BARS_PER_SECTION} bars each)",
    ("seed", "greater_than_equal"): f"use a whole number from 0 to {MAX_SEED}",
    ("seed", "less_than_equal"): f"use a whole number from 0 to {MAX_SEED}",
}


def _generic_fix(kind: str, ctx: dict) -> str:
    fix = _FIXES.get(kind, "see docs/spec.md")
    try:
        return fix.format(**ctx)  # "use {ge} or more" -> "use 40 or more"
    except (KeyError, IndexError, ValueError):
        return fix


def _key_text(key: Any) -> str:
    """A mapping key as YAML wrote it."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _field_name(loc: tuple) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")


def _pydantic_problems(error: ValidationError, document: Any, shown: str) -> list[SpecProblem]:
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        if item["type"] == "invalid_key" or loc[-1:] == ("[key]",):  # a key YAML read as a number, null, ...
            loc = loc[:-1] if loc[-1:] == ("[key]",) else loc
            node = _value_at(document, loc[:-1])  # pydantic names some keys by str(key): find the real one
            key = next((k for k in node if not isinstance(k, str) and (k == loc[-1] or str(k) == str(loc[-1]))),
                       loc[-1]) if isinstance(node, dict) else loc[-1]
            loc = loc[:-1] + (key,)
            parent = _field_name(loc[:-1])
            line, col = _position(document, loc)
            what = ("null" if key is None else "true/false" if isinstance(key, bool) else
                    "a number" if isinstance(key, (int, float)) else "a list" if isinstance(key, tuple) else
                    f"a {type(key).__name__}")
            problems.append(SpecProblem(shown, line, col, f"{parent}.{_key_text(key)}" if parent else _key_text(key),
                                        _value_at(document, loc), f"field name is not text (YAML reads it as {what})",
                                        "field names are words such as `title` or `tempo`: check the spelling, the "
                                        "indentation and the colon on this line"))
            continue
        field = _field_name(loc)
        line, col = _position(document, loc)
        ctx = item.get("ctx") or {}
        plain_field = re.sub(r"\[\d+\]", "", field)
        fix = ctx.get("fix") or _FIELD_FIXES.get((plain_field, item["type"])) or _generic_fix(item["type"], ctx)
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        value = _value_at(document, loc) if item["type"] != "missing" else None
        problems.append(SpecProblem(shown, line, col, field or "spec", value, message, fix))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    return problems


def _read_lyrics(spec: SongSpec, document: Any, shown: str, base: Path, catalogue: Path):
    line, col = _position(document, ("lyrics",))
    text = spec.lyrics
    if "\n" in text:  # inline lyric sheet: line numbers point into the spec
        # A block scalar (`lyrics: |`) starts on the line after the key.
        first = (line or 1) + (1 if _is_block_scalar(document) else 0)
        blocks, problems = parse_sheet(text, file=shown, first_line=first)
        return blocks, shown, problems
    resolved = (base / text).resolve()
    if outside_catalogue(resolved, catalogue):
        return [], shown, [_outside(shown, line, col, "lyrics", text, resolved, catalogue)]
    if resolved.is_file() and resolved.stat().st_size > MAX_SPEC_BYTES:
        return [], shown, [SpecProblem(shown, line, col, "lyrics", text,
                                       f"the lyric file is over {MAX_SPEC_BYTES // 1024} KB", "a song's lyrics are a "
                                       "few KB: point `lyrics:` at the right file")]
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
