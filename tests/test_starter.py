"""`millamusic new`: a new song's spec and lyric sheet that load, compose and render as they are."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from millamusic.cli import main
from millamusic.compose import compose
from millamusic.spec.song import load_song

ROOT = Path(__file__).resolve().parents[1]


def _new(project: Path, *args: str):
    return CliRunner().invoke(main, ["new", *args, "--songs", str(project / "songs"),
                                     "--lyrics", str(project / "lyrics")])


@pytest.mark.parametrize("genre", ["pop", "rock"])
def test_new_song_loads_and_composes_as_written(tmp_path, genre):
    (tmp_path / "artists").mkdir()
    shutil.copy(ROOT / "artists" / "milla-virta.yaml", tmp_path / "artists")
    result = _new(tmp_path, "Harbour Lights", "--genre", genre, "--artist-profile",
                  str(tmp_path / "artists" / "milla-virta.yaml"))
    assert result.exit_code == 0, result.output
    song = load_song(tmp_path / "songs" / "harbour-lights.yaml")
    assert song.spec.artist == "Milla Virta" and song.spec.genre == genre and song.artist is not None
    score = compose(song)
    assert {line.text for line in score.lines} >= {"Write the first line of your verse here"}
    assert "# Every field: docs/spec.md." in (tmp_path / "songs" / "harbour-lights.yaml").read_text()


def test_new_refuses_to_overwrite_and_names_both_files(tmp_path):
    assert _new(tmp_path, "Same Title", "--artist", "Milla").exit_code == 0
    before = (tmp_path / "songs" / "same-title.yaml").read_bytes()
    again = _new(tmp_path, "Same Title", "--artist", "Milla")
    assert again.exit_code == 2 and "--force" in again.output and "same-title.txt" in again.output
    assert (tmp_path / "songs" / "same-title.yaml").read_bytes() == before
    assert _new(tmp_path, "Same Title", "--artist", "Milla", "--force").exit_code == 0


def test_new_needs_an_artist_and_a_profile_inside_the_catalogue(tmp_path):
    assert _new(tmp_path, "Nobody").exit_code == 2
    elsewhere = tmp_path / "far" / "away"
    elsewhere.mkdir(parents=True)
    shutil.copy(ROOT / "artists" / "milla-virta.yaml", elsewhere)
    project = tmp_path / "proj"
    result = _new(project, "Far", "--artist-profile", str(elsewhere / "milla-virta.yaml"))
    assert result.exit_code == 2 and "outside the catalogue" in result.output
    assert not (project / "songs").exists() or not any((project / "songs").iterdir())


@pytest.mark.slow
def test_a_new_song_renders_as_it_is(tmp_path):
    assert _new(tmp_path, "First Draft", "--artist", "Milla Virta").exit_code == 0
    result = CliRunner().invoke(main, ["render", str(tmp_path / "songs" / "first-draft.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "masters" / "first-draft" / "release.json").is_file()
