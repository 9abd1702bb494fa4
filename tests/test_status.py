"""`millamusic status`: what a render would reuse from the cache, and why each other stage runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from millamusic.cli import main

SONG = """\
title: First Light
artist: Milla Virta
genre: pop
style: [test]
tempo: 120
key: A minor
seed: 4
structure:
  - {section: Verse, bars: 2, chords: [Am, F]}
  - {section: Chorus, bars: 2, chords: [C, G]}
lyrics: ../lyrics/first-light.txt
release:
  year: 2026
"""
LYRICS = "[Verse]\nHold the light tonight\n[Chorus]\nSpin me round again\n"


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A song with its lyrics in a file, in a project folder that is the working folder."""
    (tmp_path / "songs").mkdir()
    (tmp_path / "lyrics").mkdir()
    (tmp_path / "songs" / "first-light.yaml").write_text(SONG)
    (tmp_path / "lyrics" / "first-light.txt").write_text(LYRICS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MILLAMUSIC_CACHE", raising=False)
    return tmp_path


def status(*args: str) -> dict[str, dict]:
    result = CliRunner().invoke(main, ["status", "songs/first-light.yaml", "--json", *args])
    assert result.exit_code == 0, result.output
    return {row["stage"]: row for row in json.loads(result.stdout)["stages"]}


def render(*args: str) -> dict[str, dict]:
    result = CliRunner().invoke(main, ["render", "songs/first-light.yaml", *args])
    assert result.exit_code == 0, result.output
    return json.loads(Path("masters/first-light/release.json").read_text())["stages"]


def states(rows: dict[str, dict]) -> dict[str, str]:
    return {name: row["state"] for name, row in rows.items()}


def assert_prediction_held(predicted: dict[str, dict], ran: dict[str, dict]) -> None:
    """What status called cached was a cache hit; what it said runs did run."""
    assert set(predicted) == set(ran)
    for name, row in predicted.items():
        if row["state"] == "cached":
            assert ran[name]["cached"], name
        elif row["state"] == "runs":
            assert not ran[name]["cached"], name


@pytest.mark.slow  # renders twice: 6 s
def test_status_before_and_after_a_render_and_after_a_lyric_edit(project):
    before = status()
    assert states(before) == {"compose": "runs", "backing": "runs", "vocals": "runs", "stems": "waits",
                              "mix": "waits", "lyrics": "waits", "master[spotify]": "waits",
                              "export[spotify]": "waits"}
    assert before["compose"]["why"] == "not rendered before"
    assert before["stems"]["why"] == "reads backing and vocals, which run first"
    assert_prediction_held(before, render())
    assert set(states(status()).values()) == {"cached"}

    (project / "lyrics" / "first-light.txt").write_text(LYRICS.replace("round again", "round once more"))
    edited = status()
    assert edited["compose"] == {"stage": "compose", "state": "runs", "why": "lyrics/first-light.txt changed (lyrics)"}
    assert edited["backing"]["state"] == "cached"  # the chords are the same
    assert edited["vocals"] == {"stage": "vocals", "state": "runs", "why": "lyrics/first-light.txt changed (score)"}
    assert states(edited)["mix"] == "waits" and states(edited)["export[spotify]"] == "waits"
    ran = render()
    assert_prediction_held(edited, ran)
    assert ran["vocals"]["why"] == "lyrics/first-light.txt changed (score)"  # the render says the same
    assert set(states(status()).values()) == {"cached"}


@pytest.mark.slow  # renders: 6 s
def test_status_names_the_spec_a_new_profile_and_a_cleared_entry(project):
    render()
    spec = project / "songs" / "first-light.yaml"
    spec.write_text(spec.read_text().replace("tempo: 120", "tempo: 126"))
    tempo = status()
    assert tempo["compose"]["why"] == "songs/first-light.yaml changed (spec)"
    assert tempo["backing"]["why"] == "songs/first-light.yaml changed (harmony)"
    spec.write_text(SONG)  # back as it was: every stage is in the cache again

    with_apple = status("--profile", "spotify,apple")
    assert with_apple["export[spotify]"]["state"] == "cached"
    assert with_apple["master[apple]"] == {"stage": "master[apple]", "state": "runs", "why": "not rendered before"}
    assert with_apple["export[apple]"]["state"] == "waits"
    assert_prediction_held(with_apple, render("--profile", "spotify,apple"))

    cache = project / ".millamusic" / "cache" / "mix"
    for entry in cache.iterdir():  # someone cleared the mix entries
        import shutil

        shutil.rmtree(entry)
    cleared = status()
    assert cleared["mix"]["why"] == "not in the cache (cleared, or its last run did not finish)"
    assert cleared["master[spotify]"]["state"] == "waits"


def test_status_of_a_bad_spec_is_exit_2_naming_the_file(project):
    (project / "songs" / "first-light.yaml").write_text(SONG.replace("tempo: 120", "tempo: fast"))
    result = CliRunner().invoke(main, ["status", "songs/first-light.yaml"])
    assert result.exit_code == 2 and "first-light.yaml" in result.output and "tempo" in result.output
    assert not os.path.exists(project / ".millamusic")
