"""Album spec: YAML -> validated `Album` (its songs with the album's data applied), or a SpecError
listing every problem with file:line:col.

An album file (usually `songs/<slug>.yaml`, beside the songs) lists song specs in order and
says what they share: album title and artist, barcode, label, cover and mastering. Paths are
relative to the album file's own folder. Validated like song specs and artist profiles: every
problem at once (the album's own, each song's own, and the checks across tracks), each as
`file:line:col: field = value: problem. Fix: ...` (SpecError, exit code 2).

    title: Northern Signals          # required
    artist: Milla Virta              # the album artist, required
    year: 2026                       # optional, 1900-2100
    upc: "6418000000014"             # optional: UPC-A or EAN-13, check digit verified
    label: millamusic                # optional
    copyright: "℗ 2026 millamusic"   # optional
    artwork: ../artwork/northern-signals.jpg  # optional: square JPEG/PNG, at least 1400 px
    genre: pop                       # optional, informational (each track keeps its own genre)
    master:
      profiles: [spotify, apple]     # delivery profiles (millamusic.profiles); default [spotify]
      loudness: album                # album (default): one gain for every track, keeping their
                                     # relative loudness; track: each track mastered on its own
    disc: 1                          # optional, 1-99
    tracks:                          # required, 1 to 99 items, in order
      - song: set-me-spinning.yaml   # a song spec, relative to this file
        isrc: FI-MLA-26-00001        # optional: overrides the song's release.isrc
        track: 1                     # optional: default is the place in the list (1-based)
      - song: northern-static.yaml
      - song: lanterns-on-the-ice.yaml

Each song is loaded with `millamusic.spec.load_song`; its own problems are listed as they are
(with the song file's own path and lines). Across tracks: a song file listed twice, two tracks
with one ISRC (after overrides), two tracks with one number, a number above the track count,
and two songs with one slug (their masters would collide) are problems too.

Every track's song gets the album's data in its `release`: album, album_artist, track,
track_total, disc and the ISRC override always; year, upc, label and copyright when the album
gives them. `master.profiles` becomes the album's, and the album's artwork (when it has one)
replaces the song's, hash included. Everything else (title, artist, lyrics, ...) is the song's.
Tracks are returned in track-number order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_core import PydanticCustomError

from millamusic.core.cache import sha256_file
from millamusic.core.errors import SpecError, SpecProblem
from millamusic.spec.fields import Credit, Isrc, PathText, StrictModel, Text, Title, Upc, Whole, check_path
from millamusic.spec.inputs import default_catalogue, input_file_problem, outside, outside_catalogue
from millamusic.spec.song import MasterSpec, Song, load_song, slugify
from millamusic.spec.yaml import parse_yaml, position, pydantic_problems, read_spec_bytes

MAX_TRACKS = 99
SONG_SUFFIXES = (".yaml", ".yml")


class AlbumMasterSpec(MasterSpec):
    # album: one gain for all tracks (millamusic.master.master_album); track: each on its own
    loudness: Literal["album", "track"] = "album"


class TrackSpec(StrictModel):
    song: PathText = Field(min_length=1)  # a song spec, relative to the album file's folder
    isrc: Isrc | None = None  # overrides the song's release.isrc
    track: Whole | None = Field(default=None, ge=1, le=MAX_TRACKS)  # default: the place in the list


class AlbumSpec(StrictModel):
    title: Title
    artist: Title  # the album artist
    year: Whole | None = Field(default=None, ge=1900, le=2100)
    upc: Upc | None = None
    label: Credit | None = None
    copyright: Credit | None = None
    artwork: PathText | None = None
    genre: Text | None = Field(default=None, min_length=1, max_length=60)  # informational only
    master: AlbumMasterSpec = Field(default_factory=AlbumMasterSpec)
    disc: Whole | None = Field(default=None, ge=1, le=99)
    tracks: list[TrackSpec] = Field(min_length=1, max_length=MAX_TRACKS)


@dataclass(frozen=True)
class AlbumTrack:
    number: int
    song: Song  # the song with the album's data applied
    isrc: str | None  # the override, else the song's own (normalised)


@dataclass(frozen=True)
class Album:
    """A validated album spec plus its songs (album data applied), in track order."""

    path: Path
    spec: AlbumSpec
    slug: str
    tracks: tuple[AlbumTrack, ...]
    artwork_path: Path | None
    sha256: str  # of the album file


@dataclass
class _Entry:
    """One item of `tracks`, from its valid parts (a wrong part is reported by the shape check)."""

    index: int  # place in the YAML list
    number: int | None  # None: its `track:` is wrong
    overridden: bool  # the number comes from `track:`
    isrc: str | None  # the override (normalised)
    song_text: str | None  # as written; None: its `song:` is wrong
    song: Song | None = None  # None: not loaded (missing, listed twice, has problems of its own)


# --- loading ---------------------------------------------------------------------------------

def load_album(path: str | Path, catalogue: str | Path | None = None) -> Album:
    """Read and validate an album spec and every song it lists; raise SpecError listing every problem.
    The album and its songs read files only inside `catalogue` (default: spec.default_catalogue)."""
    path = Path(path)
    shown = str(path)
    catalogue = Path(catalogue).resolve() if catalogue is not None else default_catalogue(path)
    raw = read_spec_bytes(path, shown, "album spec")
    document = parse_yaml(raw, shown)
    problems: list[SpecProblem] = []
    spec: AlbumSpec | None = None
    try:
        spec = AlbumSpec.model_validate(document)
    except ValidationError as error:
        problems.extend(_album_fixes(pydantic_problems(error, document, shown)))

    # The checks below run on whatever parts are valid, so one run lists everything.
    base = path.resolve().parent
    artwork_path, artwork_problems = _check_artwork(document, shown, base, catalogue)
    problems.extend(artwork_problems)
    entries, track_problems, song_problems = _load_tracks(document, shown, path.parent, base, catalogue)
    problems.extend(track_problems)
    problems.extend(_cross_track_problems(document, shown, entries))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    problems.extend(song_problems)  # the songs' own, in track order, after the album's
    if problems or spec is None:
        raise SpecError(problems)

    sha256 = hashlib.sha256(raw).hexdigest()
    artwork_hash = sha256_file(artwork_path) if artwork_path is not None else None
    tracks = []
    for entry in sorted(entries, key=lambda e: e.number or 0):
        assert entry.song is not None and entry.number is not None  # no problems: every item whole, every song loaded
        isrc = entry.isrc or entry.song.spec.release.isrc
        song = apply_album(entry.song, spec, number=entry.number, total=len(entries), isrc=isrc,
                           artwork_path=artwork_path, artwork_hash=artwork_hash, album_sha256=sha256,
                           album_path=path)
        tracks.append(AlbumTrack(entry.number, song, isrc))
    return Album(path, spec, slugify(spec.title), tuple(tracks), artwork_path, sha256)


def apply_album(song: Song, spec: AlbumSpec, *, number: int, total: int, isrc: str | None,
                artwork_path: Path | None, artwork_hash: str | None, album_sha256: str,
                album_path: Path | None = None) -> Song:
    """The song as a track of the album: release data, delivery profiles and cover from the album."""
    release: dict[str, Any] = {"album": spec.title, "album_artist": spec.artist, "track": number,
                               "track_total": total, "disc": spec.disc, "isrc": isrc}
    for name in ("year", "upc", "label", "copyright"):
        value = getattr(spec, name)
        if value is not None:
            release[name] = value
    update: dict[str, Any] = {
        "release": song.spec.release.model_copy(update=release),
        "master": song.spec.master.model_copy(update={"profiles": list(spec.master.profiles)}),
    }
    hashes = dict(song.input_hashes)
    hashes["album"] = album_sha256  # which album spec was applied (recorded with the song's inputs)
    changes: dict[str, Any] = {"album_path": album_path}
    if artwork_path is not None:
        update["artwork"] = str(artwork_path)  # absolute: still right relative to the song's folder
        hashes["artwork"] = artwork_hash
        changes["artwork_path"] = artwork_path
    return dataclasses.replace(song, spec=song.spec.model_copy(update=update), input_hashes=hashes, **changes)


def _unusable_path(text: str) -> bool:
    """A path the shape check refuses (a NUL, a name too long for any file system ...): it never
    reaches the file system, which would raise instead of answering."""
    try:
        check_path(text)
    except PydanticCustomError:
        return True
    return False


def _check_artwork(document: Any, shown: str, base: Path, catalogue: Path) -> tuple[Path | None, list[SpecProblem]]:
    value = document.get("artwork")
    if not isinstance(value, str) or not value or _unusable_path(value):
        return None, []  # absent, or a wrong type or an impossible path the shape check reports
    line, col = position(document, ("artwork",))
    resolved = (base / value).resolve()
    if outside_catalogue(resolved, catalogue):
        return None, [outside(shown, line, col, "artwork", value, resolved, catalogue)]
    if not resolved.is_file():
        return None, [SpecProblem(shown, line, col, "artwork", value, "file not found",
                                  f"give a path relative to the album file's folder ({base})")]
    bad = input_file_problem("artwork", resolved)  # the same size limit and cover rules as a song's
    if bad is not None:
        return None, [SpecProblem(shown, line, col, "artwork", value, *bad)]
    return resolved, []


def _load_tracks(document: Any, shown: str, folder: Path, base: Path, catalogue: Path):
    """Every valid track item with its number and loaded song; problems in the album, and the songs' own."""
    raw_tracks = document.get("tracks")
    if not isinstance(raw_tracks, list):
        return [], [], []  # missing or not a list: the shape check reports it
    entries: list[_Entry] = []
    problems: list[SpecProblem] = []
    song_problems: list[SpecProblem] = []
    first_index: dict[Path, int] = {}
    for index, item in enumerate(raw_tracks):
        entry = _entry(index, item)
        if entry is None:
            continue
        entries.append(entry)
        if entry.song_text is None:
            continue
        line, col = position(document, ("tracks", index, "song"))
        field = f"tracks[{index}].song"
        resolved = (base / entry.song_text).resolve()
        if outside_catalogue(resolved, catalogue):
            problems.append(outside(shown, line, col, field, entry.song_text, resolved, catalogue))
        elif not resolved.is_file():
            problems.append(SpecProblem(shown, line, col, field, entry.song_text, "song spec not found",
                                        f"give a path relative to the album file's folder ({base})"))
        elif resolved == Path(shown).resolve():
            problems.append(SpecProblem(shown, line, col, field, entry.song_text, "this is the album file itself",
                                        "point it at a song spec"))
        elif resolved.suffix.lower() not in SONG_SUFFIXES:
            problems.append(SpecProblem(shown, line, col, field, entry.song_text, "not a song spec",
                                        f"point it at a song spec ending in {', '.join(SONG_SUFFIXES)}"))
        elif resolved in first_index:
            other = first_index[resolved]
            other_line, _ = position(document, ("tracks", other, "song"))
            problems.append(SpecProblem(shown, line, col, field, entry.song_text,
                                        f"song listed twice (also tracks[{other}], line {other_line})",
                                        "list each song once; remove this item or point it at another song"))
        else:
            first_index[resolved] = index
            try:
                # the path as written, from the album's folder; the songs read from the album's catalogue
                entry.song = load_song(folder / entry.song_text, catalogue)
            except SpecError as error:
                song_problems.extend(error.problems)
    return entries, problems, song_problems


def _entry(index: int, item: Any) -> _Entry | None:
    """The item's valid parts: a wrong `isrc:` still lets its song and number be checked, and so on."""
    try:
        track = TrackSpec.model_validate(item)
        return _Entry(index, track.track or index + 1, track.track is not None, track.isrc, track.song)
    except ValidationError as error:
        if not isinstance(item, dict):
            return None
        wrong = {e["loc"][0] for e in error.errors() if e["loc"]}
        fields = {key: value for key, value in item.items() if key in TrackSpec.model_fields and key not in wrong}
        try:
            track = TrackSpec.model_validate({"song": "-", **fields})  # a stand-in for a wrong or missing song
        except ValidationError:
            return None
        number = None if "track" in wrong else (track.track or index + 1)
        return _Entry(index, number, track.track is not None, track.isrc, track.song if "song" in fields else None)


def _cross_track_problems(document: Any, shown: str, entries: list[_Entry]) -> list[SpecProblem]:
    count = len(document["tracks"]) if entries else 0
    problems: list[SpecProblem] = []

    by_number: dict[int, _Entry] = {}
    for entry in entries:
        if entry.number is None:
            continue
        loc = ("tracks", entry.index, "track") if entry.overridden else ("tracks", entry.index)
        line, col = position(document, loc)
        field = f"tracks[{entry.index}].track"
        how = "" if entry.overridden else " (its place in the list)"
        if entry.number > count:
            problems.append(SpecProblem(shown, line, col, field, entry.number,
                                        f"track {entry.number}{how} on an album of {count} tracks",
                                        f"number the tracks 1 to {count}, or remove `track:` to number them by "
                                        "their place in the list"))
        elif entry.number in by_number:
            other = by_number[entry.number]
            other_line, _ = position(document, ("tracks", other.index))
            problems.append(SpecProblem(shown, line, col, field, entry.number,
                                        f"track number {entry.number}{how} is also tracks[{other.index}]'s "
                                        f"(line {other_line})",
                                        f"give every track its own number from 1 to {count}, or remove `track:` "
                                        "to number them by their place in the list"))
        else:
            by_number[entry.number] = entry

    by_isrc: dict[str, _Entry] = {}
    for entry in entries:
        isrc = entry.isrc or (entry.song.spec.release.isrc if entry.song else None)
        if isrc is None:
            continue
        if isrc in by_isrc:
            other = by_isrc[isrc]
            overridden = entry.isrc is not None
            line, col = position(document, ("tracks", entry.index, "isrc" if overridden else "song"))
            where = "" if overridden else " (the song's release.isrc)"
            problems.append(SpecProblem(shown, line, col, f"tracks[{entry.index}].isrc", isrc,
                                        f"ISRC{where} is also tracks[{other.index}]'s "
                                        f"(line {position(document, ('tracks', other.index))[0]})",
                                        "every recording needs its own ISRC: give this track its own with "
                                        "`isrc:`, or fix the song's release.isrc"))
        else:
            by_isrc[isrc] = entry

    by_slug: dict[str, _Entry] = {}
    for entry in entries:
        if entry.song is None:
            continue
        slug = entry.song.slug
        if slug in by_slug:
            other = by_slug[slug]
            line, col = position(document, ("tracks", entry.index, "song"))
            problems.append(SpecProblem(shown, line, col, f"tracks[{entry.index}].song", entry.song_text,
                                        f"song title {entry.song.spec.title!r} gives the same file name {slug!r} as "
                                        f"tracks[{other.index}] ({other.song.spec.title!r}); their masters "
                                        "would overwrite each other",
                                        "give one of the songs a different title"))
        else:
            by_slug[slug] = entry
    return problems


_LEVEL_FIELDS = {"": AlbumSpec, "master": AlbumMasterSpec, "tracks": TrackSpec}


def _album_fixes(problems: list[SpecProblem]) -> list[SpecProblem]:
    """spec.py's generic fixes, told in the album's own words where they would point at song fields."""
    fixed = []
    for problem in problems:
        fix = problem.fix
        if problem.message == "unknown field":
            parent = problem.field.rpartition(".")[0]
            parent = parent.split("[")[0]
            model = _LEVEL_FIELDS.get(parent)
            if model is not None:
                fix = f"remove it, or check its spelling; fields here: {', '.join(model.model_fields)}"
        elif problem.field == "tracks":
            fix = f"list 1 to {MAX_TRACKS} tracks, each as `- song: <song spec>.yaml`"
        fixed.append(dataclasses.replace(problem, fix=fix))
    return fixed
