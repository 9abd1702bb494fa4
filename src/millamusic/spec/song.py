"""Song spec: YAML -> validated `Song`, or a SpecError listing every problem with file:line:col.

The YAML is read with ruamel.yaml so each node keeps its position; pydantic validates the
shape; cross-field checks (lyrics vs sections, files on disk) run after, and all problems
are reported together.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from millamusic.core.cache import sha256_file
from millamusic.core.errors import SpecError, SpecProblem
from millamusic.instruments.soundfont import is_soundfont  # the renderer's own header check
from millamusic.music.lyrics import LyricBlock, parse_sheet
from millamusic.music.score import (
    RITARDANDO_SHARE,
    SectionTempo,
    TempoChange,
    map_beat_to_seconds,
    pulse_beats,
    section_tempo_changes,
)
from millamusic.music.theory import Key, note_to_midi, parse_chord, parse_key

if TYPE_CHECKING:
    from millamusic.spec.artist import Artist  # artist.py builds on this module's YAML helpers
import unicodedata

from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from millamusic.spec.artist import load_artist
from millamusic.spec.engines import engine_option_problems, language_problem
from millamusic.spec.fields import (
    MAX_BARS_PER_SECTION,
    MAX_DISCLOSURE_CHARS,
    MAX_SECTION_NAME_CHARS,
    MAX_SECTIONS,
    MAX_SEED,
    MAX_SONG_SECONDS,
    MAX_STYLE_WORD_CHARS,
    MAX_STYLE_WORDS,
    MAX_TEMPO,
    MIN_TEMPO,
    ChordBar,
    Credit,
    Isrc,
    KeyText,
    Number,
    PathText,
    ProfileNames,
    StrictModel,
    Text,
    TimeSignature,
    Title,
    Upc,
    Whole,
    check_lyrics_value,
    check_paragraph,
    field_problem,
    meter,
)
from millamusic.spec.inputs import (
    REFERENCE_SUFFIXES,
    RESERVED_NAMES,
    default_catalogue,
    input_file_problem,
    outside,
    outside_catalogue,
)
from millamusic.spec.yaml import MAX_SPEC_BYTES, parse_yaml, position, pydantic_problems, read_spec_bytes

SECTION_KINDS = ("intro", "verse", "prechorus", "chorus", "bridge", "solo", "breakdown", "outro", "other")


class SectionSpec(StrictModel):
    section: Text = Field(min_length=1, max_length=MAX_SECTION_NAME_CHARS)
    bars: Whole = Field(ge=1, le=MAX_BARS_PER_SECTION)
    chords: list[ChordBar] = Field(min_length=1)
    kind: Literal[SECTION_KINDS] | None = None  # type: ignore[valid-type]
    key: KeyText | None = None  # a modulation: the section's key; its chords are written in it
    tempo: Number | None = Field(default=None, ge=MIN_TEMPO, le=MAX_TEMPO, allow_inf_nan=False)  # from its first bar
    ritardando: bool | float | None = None  # over its last bar: true (to 80 %) or the tempo it slows to

    @field_validator("key")
    @classmethod
    def _key_fits_chords(cls, key: str | None, info: ValidationInfo) -> str | None:
        """A section key its chords contradict is a key change to nowhere (chords left in the old key)."""
        chords = info.data.get("chords")
        if key is None or not chords:
            return key
        first = parse_chord(chords[0].split()[0])  # of equal fits, the key the section starts on
        winner = max((Key(pc, mode) for mode in ("major", "minor") for pc in range(12)),
                     key=lambda k: (_scale_fit(k, chords), k.tonic_pc == first.root_pc
                                    and (k.mode == "minor") == first.is_minor))
        fit, best = _scale_fit(parse_key(key), chords), _scale_fit(winner, chords)
        if fit < best - KEY_FIT_MARGIN:
            raise field_problem(f"the section's chords ({' | '.join(chords)}) are not in {key}: {fit:.0%} of their "
                                f"notes are in its scale, {best:.0%} in {winner.name}'s",
                                f"write the chords in {key} (they are played as written), or set the key the "
                                f"chords are in, e.g. `key: {winner.name}`")
        return key

    @field_validator("ritardando", mode="before")
    @classmethod
    def _ritardando_value(cls, value: Any) -> Any:
        fix = (f"write `ritardando: true` (the last bar slows to {RITARDANDO_SHARE:.0%} of the tempo) or the tempo it "
               f"slows to, from {MIN_TEMPO} to {MAX_TEMPO}, e.g. `ritardando: 72`")
        if value is None or isinstance(value, bool) or type(value).__name__ == "ScalarBoolean":
            return bool(value) if value is not None else None
        if not isinstance(value, (int, float)) or not MIN_TEMPO <= float(value) <= MAX_TEMPO:
            raise field_problem("not true/false or a tempo in range", fix)
        return float(value)

    @model_validator(mode="after")
    def _chords_fit_bars(self) -> "SectionSpec":
        if len(self.chords) > self.bars:
            raise field_problem(f"{len(self.chords)} chord bars for a {self.bars}-bar section",
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


class EnginesSpec(StrictModel):
    backing: str = "arranger"
    vocals: str = "singer"
    backing_options: dict[str, Any] = Field(default_factory=dict)
    vocal_options: dict[str, Any] = Field(default_factory=dict)


class VoiceSpec(StrictModel):
    language: str = Field(default="en-us", max_length=35)  # an espeak-ng code: en-us, fi, sv ...
    voice: Literal["female", "male"] = "female"


class MasterSpec(StrictModel):
    # delivery profiles (millamusic.profiles): one set of masters per profile; a name or a list
    profiles: ProfileNames = Field(default_factory=lambda: ["spotify"])


class OriginalWork(StrictModel):
    """The song a cover is of, as distributors ask for it: its title, who first released it, and
    who wrote it (the composition's owners, who are paid for it)."""

    title: Title
    artist: Title  # the original artist: who first released the song
    songwriters: list[Credit] = Field(min_length=1, max_length=20)  # as credited on the original
    year: Whole | None = Field(default=None, ge=1800, le=2100)


class ReleaseSpec(StrictModel):
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
    disclosure: Annotated[str, AfterValidator(check_paragraph)] | None = Field(
        default=None, min_length=20, max_length=MAX_DISCLOSURE_CHARS)
    commercial: bool = True  # sold or streamed for money: models licensed non-commercially are refused
    acknowledge_noncommercial: bool = False  # ...unless this says the producer knows (recorded in release.json)
    original: OriginalWork | None = None  # a cover: the original work it performs (tags, release.json, credits)
    artwork_ai: bool | None = None  # was the cover art made with AI? (Apple's Artwork transparency tag)

    @property
    def composer_credit(self) -> str | None:
        """The composer tag: the spec's, else a cover's original songwriters."""
        if self.composer is None and self.original is not None:
            return ", ".join(self.original.songwriters)
        return self.composer

    @property
    def lyricist_credit(self) -> str | None:
        """The lyricist tag: the spec's, else a cover's original songwriters (a cover sings their words)."""
        if self.lyricist is None and self.original is not None:
            return ", ".join(self.original.songwriters)
        return self.lyricist


class SongSpec(StrictModel):
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
    lyrics: Annotated[str, AfterValidator(check_lyrics_value)] = Field(min_length=1)
    melody: PathText | None = None
    reference: PathText | None = None  # a recording (covers): `millamusic cover` drafts a spec from one
    # seconds into the reference where bar 1 starts
    reference_start: Number = Field(default=0.0, ge=0.0, le=MAX_SONG_SECONDS, allow_inf_nan=False)
    transpose: Whole = Field(default=0, ge=-12, le=12)  # semitones: key, chords and melody move together
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
        seconds = _music_seconds(structure, signature, tempo)
        if seconds > MAX_SONG_SECONDS:
            raise field_problem(f"the song would last {_duration(seconds)} ({bars} bars of {signature} at {tempo:g} BPM), "
                           f"over the {MAX_SONG_SECONDS // 60}-minute limit",
                           "shorten `structure` (fewer sections or fewer bars), or raise `tempo`")
        return structure

    @property
    def beats_per_bar(self) -> int:
        """Score beats a bar: quarters in N/4, eighths in 6/8, 9/8, 12/8."""
        return meter(self.time_signature)[0]

    @property
    def beat_unit(self) -> int:
        return meter(self.time_signature)[1]

    @property
    def key_value(self) -> Key:
        """The key the song is sung in: `key` moved by `transpose`."""
        return parse_key(self.key).transposed(self.transpose)


KEY_FIT_MARGIN = 0.2  # a section key may fit its chords this much worse than the best key (borrowed chords)


def _scale_fit(key: Key, chords: list[str]) -> float:
    """The share of the chords' notes (each chord's pitch classes, chord by chord) in `key`'s scale."""
    tones = [pc for bar in chords for symbol in bar.split() for pc in parse_chord(symbol).pitch_classes]
    return sum(pc in key.scale_pcs for pc in tones) / len(tones)


def structure_tempo_changes(structure: list[SectionSpec], beats_per_bar: int, tempo: float) -> tuple[TempoChange, ...]:
    """The tempo map of a song that opens at `tempo`: each section's `tempo:` from its first bar, its
    `ritardando` over its last (music.score)."""
    spans, beat = [], 0.0
    for section in structure:
        end = beat + section.bars * beats_per_bar
        spans.append(SectionTempo(beat, end - beats_per_bar, beats_per_bar, section.tempo, section.ritardando))
        beat = end
    return section_tempo_changes(float(tempo), spans)


def _music_seconds(structure: list[SectionSpec], signature: str, tempo: float) -> float:
    """The song's length on its tempo map: section tempos and ritardandos."""
    beats_per_bar, unit = meter(signature)
    beats = float(sum(section.bars for section in structure) * beats_per_bar)
    scale = 60.0 / pulse_beats(unit)  # seconds per beat x BPM: 6/8's tempo counts dotted quarters
    return map_beat_to_seconds(tempo, structure_tempo_changes(structure, beats_per_bar, tempo), beats, scale)


def tempo_problems(spec: SongSpec, document: Any, shown: str) -> list[SpecProblem]:
    """A numeric `ritardando` must slow down from the tempo in force in its section."""
    problems, in_force = [], spec.tempo
    for index, section in enumerate(spec.structure):
        in_force = section.tempo if section.tempo is not None else in_force
        target = section.ritardando
        if target is not None and target is not True and target is not False and target >= in_force:
            line, col = position(document, ("structure", index, "ritardando"))
            problems.append(SpecProblem(shown, line, col, f"structure[{index}].ritardando", target,
                                        f"[{section.section}] plays at {in_force:g} BPM: a ritardando to {target:g} "
                                        "does not slow down",
                                        f"write a tempo below {in_force:g}, `ritardando: true` (to "
                                        f"{in_force * RITARDANDO_SHARE:g}), or set `tempo:` on the next section "
                                        "for a faster one"))
    return problems


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

    def with_vocals(self, engine: str | None) -> "Song":
        """The song as a command's --vocals `engine` renders it (None: as it is). The engine decides the
        range the composer writes in (kokoro: its clean range), so every command applies it first."""
        return replace(self, vocals_override=engine) if engine else self

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
            if self.vocal_engine == "diffsinger" and self.artist.voicebank_path is not None:
                bank = settings.diffsinger
                options["diffsinger_voicebank"] = str(self.artist.voicebank_path)
                options["diffsinger_speaker"] = bank.speaker
                options["diffsinger_licence"] = bank.licence.model_dump() if bank.licence else None
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

    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:80].strip("-")
    if slug in RESERVED_NAMES:  # "CON" would name files Windows cannot open
        slug += "-song"
    return slug or "untitled"


def load_song(path: str | Path, catalogue: str | Path | None = None) -> Song:
    """Read and validate a song spec and every file it names. Files must lie inside `catalogue`
    (default: `default_catalogue(path)`), so a spec from elsewhere cannot read /etc or $HOME."""
    path = Path(path)
    shown = str(path)
    catalogue = Path(catalogue).resolve() if catalogue is not None else default_catalogue(path)
    raw_bytes = read_spec_bytes(path, shown, "spec")
    document = parse_yaml(raw_bytes, shown)
    if _is_album(document):
        line, column = position(document, ("tracks",))
        raise SpecError([SpecProblem(shown, line, column, "tracks", "...", "this is an album spec, not a song",
                                     f"build it with `millamusic album {shown}`")])
    problems: list[SpecProblem] = []
    spec: SongSpec | None = None
    try:
        spec = SongSpec.model_validate(document)
    except ValidationError as error:
        problems.extend(pydantic_problems(error, document, shown))
    if spec is None:
        raise SpecError(problems)

    base = path.resolve().parent
    files: dict[str, Path | None] = {}
    hashes: dict[str, str] = {}
    for field_name, kinds in (("melody", (".mid", ".midi")), ("reference", REFERENCE_SUFFIXES),
                              ("artwork", (".jpg", ".jpeg", ".png")), ("soundfont", (".sf2",))):
        value = getattr(spec, field_name)
        files[field_name] = None
        if value is None:
            continue
        resolved = (base / value).resolve()
        line, col = position(document, (field_name,))
        if outside_catalogue(resolved, catalogue):
            problems.append(outside(shown, line, col, field_name, value, resolved, catalogue))
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
    problems.extend(tempo_problems(spec, document, shown))

    blocks, lyrics_file, lyric_problems = _read_lyrics(spec, document, shown, base, catalogue)
    problems.extend(lyric_problems)
    problems.extend(_match_lyrics_to_sections(spec, blocks, lyrics_file))
    if problems:
        raise SpecError(problems)
    return Song(spec, path, hashlib.sha256(raw_bytes).hexdigest(), tuple(blocks), lyrics_file,
                files["melody"], files["reference"], files["artwork"], hashes, files["soundfont"], artist)


def _load_profile(spec: SongSpec, document: Any, shown: str, base: Path, catalogue: Path):
    """The spec's artist profile, or the problems with it (including a name that differs)."""

    line, col = position(document, ("artist_profile",))
    resolved = (base / spec.artist_profile).resolve()
    if outside_catalogue(resolved, catalogue):
        return None, [outside(shown, line, col, "artist_profile", spec.artist_profile, resolved, catalogue)]
    if not resolved.is_file():
        return None, [SpecProblem(shown, line, col, "artist_profile", spec.artist_profile, "artist profile not found",
                                  f"give a path relative to the spec's folder ({base}), e.g. ../artists/milla-virta.yaml")]
    try:
        artist = load_artist(resolved)
    except SpecError as error:
        return None, list(error.problems)
    if artist.name != spec.artist:
        line, col = position(document, ("artist",))
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
    line, col = position(document, ("voice", "language"))
    return [SpecProblem(shown, line, col, "voice.language", spec.voice.language, "espeak-ng has no such language", fix)]


def _is_album(document: Any) -> bool:
    return isinstance(document, dict) and "tracks" in document and "structure" not in document


def is_album_spec(path: str | Path) -> bool:
    """Whether the YAML at `path` is an album spec (it lists `tracks:`) rather than a song. False
    for anything unreadable or too large: loading it as a song then reports what is wrong (so a
    huge file is refused by its size, before any YAML is parsed)."""
    try:
        return _is_album(parse_yaml(read_spec_bytes(Path(path), str(path), "spec"), str(path)))
    except SpecError:
        return False


def _read_lyrics(spec: SongSpec, document: Any, shown: str, base: Path, catalogue: Path):
    line, col = position(document, ("lyrics",))
    text = spec.lyrics
    if "\n" in text:  # inline lyric sheet: line numbers point into the spec
        # A block scalar (`lyrics: |`) starts on the line after the key.
        first = (line or 1) + (1 if _is_block_scalar(document) else 0)
        blocks, problems = parse_sheet(text, file=shown, first_line=first)
        return blocks, shown, problems
    resolved = (base / text).resolve()
    if outside_catalogue(resolved, catalogue):
        return [], shown, [outside(shown, line, col, "lyrics", text, resolved, catalogue)]
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
    return isinstance(document.get("lyrics"), (LiteralScalarString, FoldedScalarString))


def _match_lyrics_to_sections(spec: SongSpec, blocks: list[LyricBlock], lyrics_file: str) -> list[SpecProblem]:
    sections: dict[str, int] = {}
    for section in spec.structure:
        sections[section.section.lower()] = sections.get(section.section.lower(), 0) + 1
    problems = []
    seen: dict[str, int] = {}
    for block in blocks:
        key = block.header.lower()
        seen[key] = seen.get(key, 0) + 1
        if key not in sections:
            problems.append(SpecProblem(lyrics_file, block.line, 1, "lyrics", f"[{block.header}]",
                                        "header names no section in `structure`",
                                        f"use one of: {', '.join(sorted({s.section for s in spec.structure}))}"))
        elif seen[key] > sections[key]:  # the nth block is sung in the nth section of its name
            count = sections[key]
            problems.append(SpecProblem(lyrics_file, block.line, 1, "lyrics", f"[{block.header}]",
                                        f"block {seen[key]} named [{block.header}], but `structure` has "
                                        f"{count} section{'s' if count != 1 else ''} of that name",
                                        f"remove this block, or add another {block.header} section to `structure`"))
    if blocks and not any(block.lines for block in blocks):
        problems.append(SpecProblem(lyrics_file, blocks[0].line, 1, "lyrics", "", "no sung lines", "add lyric lines"))
    return problems
