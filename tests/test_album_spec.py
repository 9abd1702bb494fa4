"""The album spec: songs listed in order, the album's data applied to each, every problem located."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from millamusic.core.errors import SpecError
from millamusic.spec.album import load_album
from millamusic.spec.song import load_song
from tests.conftest import SHORT_SONG

ROOT = Path(__file__).resolve().parents[1]


def _song_text(title: str, isrc: str, tempo: float = 120) -> str:
    text = SHORT_SONG.format(genre="pop", tempo=tempo, key="A minor", seed=3, extra="")
    return text.replace("title: Tiny Test Song", f"title: {title}").replace("FI-MLA-26-00042", isrc)


def _songs(write_spec, *titles: str) -> list[Path]:
    """Small valid songs in tmp_path/songs: one.yaml, two.yaml, ... with their own titles and ISRCs."""
    names = ["one", "two", "three", "four"]
    return [write_spec(name=f"{names[i]}.yaml", text=_song_text(title, f"FI-MLA-26-0010{i}"))
            for i, title in enumerate(titles)]


def _album(folder: Path, text: str, name: str = "album.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path):
    with pytest.raises(SpecError) as caught:
        load_album(path)
    return caught.value.problems


def test_the_example_album_loads_with_its_data_on_every_song():
    album = load_album(ROOT / "songs" / "northern-signals.yaml")
    assert album.slug == "northern-signals"
    assert [t.number for t in album.tracks] == [1, 2, 3]
    assert [t.song.slug for t in album.tracks] == ["set-me-spinning", "northern-static", "lanterns-on-the-ice"]
    assert [t.isrc for t in album.tracks] == ["FIMLA2600001", "FIMLA2600002", "FIMLA2600003"]
    assert album.artwork_path == ROOT / "artwork" / "northern-signals.jpg"
    assert album.spec.master.loudness == "album"
    assert len(album.sha256) == 64
    for track in album.tracks:
        release = track.song.spec.release
        assert release.album == "Northern Signals"
        assert release.album_artist == "Milla Virta"
        assert release.track == track.number
        assert release.track_total == 3  # the songs' own files say 2 for the first two
        assert release.upc == "6418000000014"
        assert release.year == 2026
        assert release.label == "millamusic"
        assert release.isrc == track.isrc
        assert track.song.spec.master.profiles == ["spotify"]
        assert track.song.artwork_path == album.artwork_path
        own = load_song(track.song.path)
        assert track.song.input_hashes["artwork"] != own.input_hashes["artwork"]  # the cache sees the new cover
        assert track.song.spec.title == own.spec.title  # the song's own fields stay
        assert track.song.spec.lyrics == own.spec.lyrics
        assert track.song.spec.release.composer == own.spec.release.composer


def test_album_data_replaces_the_songs_release_fields(write_spec, tmp_path):
    _songs(write_spec, "Alpha", "Beta")
    path = _album(tmp_path / "songs", """\
        title: Test Album Two
        artist: Someone Else
        disc: 2
        master:
          profiles: [apple, spotify]
          loudness: track
        tracks:
          - song: one.yaml
            track: 2
            isrc: FI-MLA-26-00999
          - song: two.yaml
            track: 1
        """)
    album = load_album(path)
    assert [(t.number, t.song.spec.title) for t in album.tracks] == [(1, "Beta"), (2, "Alpha")]  # by number
    alpha = album.tracks[1].song
    assert alpha.spec.release.isrc == album.tracks[1].isrc == "FIMLA2600999"
    assert album.tracks[0].isrc == "FIMLA2600101"  # no override: the song's own
    assert alpha.spec.release.album_artist == "Someone Else"
    assert (alpha.spec.release.disc, alpha.spec.release.track_total) == (2, 2)
    assert alpha.spec.master.profiles == ["apple", "spotify"]
    # not given by the album: the song's own stay, and so does its artwork (none)
    assert alpha.spec.release.upc == "6418000123454"
    assert alpha.spec.release.year == 2026
    assert album.artwork_path is None and alpha.artwork_path is None
    assert album.spec.master.loudness == "track"


def test_every_mistake_is_reported_at_its_line(write_spec, tmp_path):
    _songs(write_spec, "One", "Two", "Three")
    path = _album(tmp_path / "songs", """\
        title: Bad Album
        artist: Milla Virta
        upc: "123"
        colour: blue
        master:
          profiles: [spotify, tidal]
          loudness: loud
        tracks:
          - song: one.yaml
          - song: two.yaml
            track: 1
          - song: one.yaml
          - song: missing.yaml
          - song: three.yaml
            track: 9
        """)
    problems = _problems(path)
    found = {(p.line, p.field): p for p in problems}
    assert set(found) == {
        (3, "upc"), (4, "colour"), (6, "master.profiles"), (7, "master.loudness"),
        (11, "tracks[1].track"), (12, "tracks[2].song"), (13, "tracks[3].song"), (15, "tracks[4].track"),
    }, [str(p) for p in problems]
    assert all(p.file == str(path) for p in problems)
    assert found[(4, "colour")].message == "unknown field" and "tracks" in found[(4, "colour")].fix
    assert "not a UPC" in found[(3, "upc")].message
    assert "tidal" in found[(6, "master.profiles")].message
    assert found[(7, "master.loudness")].value == "loud"
    assert "also tracks[0]" in found[(11, "tracks[1].track")].message
    assert "listed twice" in found[(12, "tracks[2].song")].message
    assert found[(13, "tracks[3].song")].message == "song spec not found"
    assert "album of 5 tracks" in found[(15, "tracks[4].track")].message
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert found[(12, "tracks[2].song")].column == 11  # at the value
    assert all(p.fix for p in problems)


def test_an_item_with_a_wrong_part_still_has_its_other_parts_checked(write_spec, tmp_path):
    _songs(write_spec, "One", "Two")
    path = _album(tmp_path / "songs", """\
        title: Partly Wrong
        artist: Milla Virta
        tracks:
          - song: one.yaml
          - song: one.yaml
            isrc: not-an-isrc
            colour: red
          - song: two.yaml
            track: 0
            isrc: FI-MLA-26-00100
        """)
    found = {(p.line, p.field): p.message for p in _problems(path)}
    assert set(found) == {(5, "tracks[1].song"), (6, "tracks[1].isrc"), (7, "tracks[1].colour"),
                          (9, "tracks[2].track"), (10, "tracks[2].isrc")}, found
    assert "listed twice" in found[(5, "tracks[1].song")]
    assert found[(6, "tracks[1].isrc")] == "not an ISRC"
    assert "also tracks[0]" in found[(10, "tracks[2].isrc")]  # the same ISRC as one.yaml's own


def test_duplicate_isrc_and_colliding_slugs_are_reported(write_spec, tmp_path):
    _songs(write_spec, "Same Title", "Other", "Same  title!")
    path = _album(tmp_path / "songs", """\
        title: Clashes
        artist: Milla Virta
        tracks:
          - song: one.yaml
          - song: two.yaml
            isrc: FI-MLA-26-00100
          - song: three.yaml
        """)
    problems = {(p.line, p.field): p for p in _problems(path)}
    assert set(problems) == {(6, "tracks[1].isrc"), (7, "tracks[2].song")}
    assert "also tracks[0]" in problems[(6, "tracks[1].isrc")].message  # the override equals one.yaml's own
    assert "same-title" in problems[(7, "tracks[2].song")].message


def test_a_songs_own_problems_are_listed_with_its_file_and_line(write_spec, tmp_path):
    _songs(write_spec, "Fine")
    bad = write_spec(name="bad.yaml", text=_song_text("Broken", "FI-MLA-26-00200", tempo=500))
    path = _album(tmp_path / "songs", """\
        title: Mixed
        artist: Milla Virta
        upc: "12"
        tracks:
          - song: one.yaml
          - song: bad.yaml
        """)
    problems = _problems(path)
    assert [(p.file, p.line, p.field) for p in problems] == [
        (str(path), 3, "upc"),  # the album's own first
        (str(bad), 5, "tempo"),  # then the song's, in its own file
    ]
    assert problems[1].value == 500


def test_paths_resolve_against_the_album_files_folder(write_spec, tmp_path, monkeypatch):
    from PIL import Image

    _songs(write_spec, "Away")
    (tmp_path / "art").mkdir()
    Image.new("RGB", (1400, 1400), (20, 30, 60)).save(tmp_path / "art" / "cover.png")
    Image.new("RGB", (1400, 1000), (20, 30, 60)).save(tmp_path / "art" / "wide.png")
    text = """\
        title: Elsewhere
        artist: Milla Virta
        artwork: ../art/{cover}
        tracks:
          - song: ../songs/one.yaml
        """
    path = _album(tmp_path / "albums", text.format(cover="cover.png"))
    (tmp_path / "somewhere" / "else").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "somewhere" / "else")
    album = load_album(path)
    assert album.artwork_path == (tmp_path / "art" / "cover.png").resolve()
    assert album.tracks[0].song.spec.title == "Away"
    monkeypatch.chdir(tmp_path)
    album = load_album("albums/album.yaml")
    assert album.tracks[0].song.path == Path("albums/../songs/one.yaml")
    assert album.tracks[0].song.artwork_path == album.artwork_path

    wide = _album(tmp_path / "albums", text.format(cover="wide.png"), name="wide.yaml")
    missing = _album(tmp_path / "albums", text.format(cover="nope.jpg"), name="missing.yaml")
    (problem,) = _problems(wide)
    assert (problem.line, problem.column, problem.field) == (3, 10, "artwork")
    assert "square" in problem.message and "crop" in problem.fix
    (problem,) = _problems(missing)
    assert (problem.line, problem.message) == (3, "file not found")
    assert str((tmp_path / "albums").resolve()) in problem.fix


def test_a_yaml_syntax_error_is_located(tmp_path):
    path = _album(tmp_path, """\
        title: Broken
        artist: Milla Virta
        tracks:
          - song: one.yaml
           - song: two.yaml
        """)
    (problem,) = _problems(path)
    assert problem.field == "yaml" and problem.file == str(path)
    assert problem.line == 5


def test_missing_fields_and_an_unreadable_album(tmp_path):
    problems = _problems(_album(tmp_path, "title: Only a title\n"))
    assert {p.field for p in problems} == {"artist", "tracks"}
    problems = _problems(_album(tmp_path, "title: T\nartist: A\ntracks: []\n", name="empty.yaml"))
    assert [(p.field, p.line) for p in problems] == [("tracks", 3)]
    assert "`- song:" in problems[0].fix
    problems = _problems(_album(tmp_path, "title: T\nartist: A\ntracks:\n  - song: self.yaml\n", name="self.yaml"))
    assert [(p.line, p.message) for p in problems] == [(4, "this is the album file itself")]
    (problem,) = _problems(tmp_path / "nowhere.yaml")
    assert "cannot read the album spec" in problem.message
