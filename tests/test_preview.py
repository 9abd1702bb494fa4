"""Previews of one section or bar range (`millamusic render SPEC --section NAME | --bars A-B`):
the range maths, every hostile option through the CLI, and a short song's chorus end to end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from click.testing import CliRunner

from millamusic import SAMPLE_RATE
from millamusic.cli import main
from millamusic.compose import compose
from millamusic.core.errors import SpecError
from millamusic.pipeline.preview import (
    bars_range,
    lines_in_window,
    preview_range,
    preview_window,
    score_to_sing,
    section_names,
    section_range,
)
from millamusic.spec.song import load_song

# 120 BPM 4/4: a bar is 2 s. Two sections named Chorus, an instrumental outro.
REPEATS = """\
title: Range Song
artist: Milla Virta
genre: pop
tempo: 120
key: A minor
seed: 5
structure:
  - {section: Intro, bars: 1, chords: [Am]}
  - {section: Verse, bars: 2, chords: [Am, F]}
  - {section: Chorus, bars: 2, chords: [C, G]}
  - {section: Verse, bars: 2, chords: [Am, F]}
  - {section: Chorus, bars: 2, chords: [C, G]}
  - {section: Outro, bars: 1, chords: [Am]}
lyrics: |
  [Verse]
  Hold the light tonight
  [Chorus]
  Spin me round again
  [Verse]
  Keep the fire low
  [Chorus]
  Spin me round again
"""

# A section is literally named "Chorus 2" beside two named "Chorus": the exact name wins.
EXACT = REPEATS.replace("  - {section: Outro, bars: 1, chords: [Am]}",
                        "  - {section: Chorus 2, bars: 1, chords: [Am]}")


@pytest.fixture
def song(write_spec):
    spec = load_song(write_spec(text=REPEATS))
    return spec, compose(spec)


def test_section_names_number_repeats_only(song):
    _, score = song
    assert section_names(score) == ["Intro", "Verse 1", "Chorus 1", "Verse 2", "Chorus 2", "Outro"]


def test_the_nth_section_of_a_repeated_name(song):
    spec, score = song
    second = section_range(spec, score, "Chorus 2")
    assert (second.name, second.slug, second.first_bar, second.last_bar, second.pre_roll_bars) == \
        ("Chorus 2", "chorus-2", 8, 9, 1)
    first = section_range(spec, score, "  chorus   1 ")  # case and spacing as typed
    assert (first.first_bar, first.last_bar) == (4, 5)
    assert section_range(spec, score, "outro").last_bar == 10


def test_an_exact_name_wins_over_an_ordinal(write_spec):
    spec = load_song(write_spec(text=EXACT))
    score = compose(spec)
    exact = section_range(spec, score, "Chorus 2")
    assert (exact.first_bar, exact.last_bar) == (10, 10)  # the section named "Chorus 2", not the 2nd Chorus
    assert section_range(spec, score, "Chorus 1").first_bar == 4


def test_pre_roll_clamps_at_bar_one(song):
    spec, score = song
    intro = section_range(spec, score, "Intro")
    assert (intro.first_bar, intro.pre_roll_bars) == (1, 0)
    window = preview_window(score, intro)
    assert window.start == window.range_start == 0 and window.pre_roll == 0
    assert bars_range(spec, score, "1-3").pre_roll_bars == 0
    assert bars_range(spec, score, "2").pre_roll_bars == 1


@pytest.mark.parametrize(("text", "first", "last", "name"), [
    ("3-5", 3, 5, "bars 3-5"), (" 3 - 5 ", 3, 5, "bars 3-5"), ("7", 7, 7, "bar 7"), ("1-10", 1, 10, "bars 1-10"),
])
def test_bars(song, text, first, last, name):
    spec, score = song
    chosen = bars_range(spec, score, text)
    assert (chosen.first_bar, chosen.last_bar, chosen.name) == (first, last, name)


def test_window_in_frames_follows_the_score(song):
    spec, score = song
    bar = 2 * SAMPLE_RATE  # 120 BPM, 4/4
    chorus = preview_window(score, section_range(spec, score, "Chorus 1"))  # bars 4-5, pre-roll bar 3
    assert (chorus.start, chorus.range_start, chorus.end, chorus.to_song_end) == (2 * bar, 3 * bar, 5 * bar, False)
    outro = preview_window(score, section_range(spec, score, "Outro"))  # the last bar keeps the song's tail
    assert outro.to_song_end and outro.end == score.total_frames(SAMPLE_RATE) > 10 * bar
    for chosen in (section_range(spec, score, "Verse 2"), bars_range(spec, score, "2-4")):
        window = preview_window(score, chosen)
        expect = round(score.beat_to_seconds(score.bars[chosen.first_bar - 1].start_beat) * SAMPLE_RATE)
        assert window.range_start == expect


def test_window_follows_a_tempo_change(write_spec):
    """Bars after a tempo change are longer: the window comes from Score.beat_to_seconds, not bars x a fixed tempo."""
    text = REPEATS.replace("  - {section: Chorus, bars: 2, chords: [C, G]}\n  - {section: Verse",
                           "  - {section: Chorus, bars: 2, chords: [C, G], tempo: 60}\n  - {section: Verse", 1)
    spec = load_song(write_spec(text=text))
    score = compose(spec)
    window = preview_window(score, section_range(spec, score, "Chorus 1"))  # bars 4-5 at 60 BPM: 4 s a bar
    assert window.start == 4 * SAMPLE_RATE and window.range_start == 6 * SAMPLE_RATE  # 3 bars at 120 BPM before
    assert window.end == 14 * SAMPLE_RATE


def test_only_the_lines_that_sound_in_the_window_are_sung(song):
    spec, score = song
    chorus = preview_window(score, section_range(spec, score, "Chorus 1"))  # bars 4-5, pre-roll bar 3
    sung = score_to_sing(score, chorus)
    lines = {n.line_index for n in sung.notes}
    assert sung.notes and lines == lines_in_window(score, chorus) < {n.line_index for n in score.notes}
    # whole lines: every note of a line that reaches into the window
    assert all(sum(n.line_index == line for n in score.notes) == sum(n.line_index == line for n in sung.notes)
               for line in lines)
    texts = {score.lines[line].text for line in lines}
    assert "Spin me round again" in texts and "Keep the fire low" not in texts
    assert sung.bars == score.bars and sung.total_frames(SAMPLE_RATE) == score.total_frames(SAMPLE_RATE)
    intro = score_to_sing(score, preview_window(score, bars_range(spec, score, "1")))  # instrumental, no pre-roll
    assert intro.notes == () and intro.backing_notes == ()


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"section": "Bridge"}, "use one of: Intro, Verse 1, Chorus 1, Verse 2, Chorus 2, Outro"),
    ({"section": "Chorus"}, "say which: Chorus 1, Chorus 2"),
    ({"section": "Chorus 3"}, "the song has 2 sections named 'Chorus'"),
    ({"section": "Chorus 0"}, "the song has 2 sections named 'Chorus'"),
    ({"section": ""}, "no section of that name"),
    ({"bars": "0-4"}, "bars are counted from 1"),
    ({"bars": "9-3"}, "ends (bar 3) before it starts (bar 9)"),
    ({"bars": "8-12"}, "outside the song, which has 10 bars"),
    ({"bars": "11"}, "outside the song"),
    ({"bars": "abc"}, "not a bar range"),
    ({"bars": "3-"}, "not a bar range"),
    ({"bars": "-3"}, "not a bar range"),
    ({"bars": "1.5-2"}, "not a bar range"),
    ({"bars": "\u0663-\u0664"}, "not a bar range"),  # Arabic-Indic digits: bar numbers are 0-9
    ({"bars": ""}, "not a bar range"),
    ({"section": "Intro", "bars": "1-2"}, "--section and --bars name two"),
])
def test_hostile_ranges_are_located_spec_errors(song, kwargs, said):
    spec, score = song
    with pytest.raises(SpecError) as caught:
        preview_range(spec, score, section=kwargs.get("section"), bars=kwargs.get("bars"))
    problem = caught.value.problems[0]
    assert said in str(problem)
    assert problem.file == str(spec.path) and problem.line == 8  # the first section under `structure:`
    assert problem.field in ("--section", "--bars", "--section/--bars")


@pytest.mark.parametrize("args", [
    ["--section", "Bridge"], ["--section", "Chorus"], ["--bars", "0-4"], ["--bars", "9-3"], ["--bars", "8-12"],
    ["--bars", "x"], ["--section", "Intro", "--bars", "1-2"], ["--bars", "2-3", "--profile", "spotify,apple"],
    ["--bars", "2-3", "--profile", "nope"],
])
def test_hostile_options_exit_2_and_write_nothing(write_spec, tmp_path, args):
    spec = write_spec(text=REPEATS)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert "problem in the song spec" in result.stderr and "Fix:" in result.stderr
    assert not out.exists()  # no previews/, no cache, no masters


def _lufs(path: Path) -> float:
    audio, rate = sf.read(str(path), dtype="float64")
    return pyloudnorm.Meter(rate, filter_class="DeMan").integrated_loudness(audio)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _preview(spec: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_a_chorus_preview_end_to_end(write_spec, tmp_path):
    spec = write_spec(text=REPEATS)
    out = tmp_path / "out"
    first = _preview(spec, out, "--section", "Chorus 2")
    wav = out / "previews" / "range-song" / "chorus-2.wav"
    assert first["wav_path"] == str(wav) and wav.is_file()
    assert not (out / "masters").exists() and not (out / "stems").exists()  # a preview is not a release
    audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    assert rate == 44100 and audio.shape[1] == 2
    assert audio.shape[0] == 3 * 2 * rate  # the 2-bar chorus and its bar of pre-roll, 2 s a bar
    assert first["range_starts_at"] == 2.0
    assert np.max(np.abs(audio[:64])) < 1e-3  # faded in from silence over the pre-roll
    assert abs(_lufs(wav) - (-14.0)) <= 1.0  # mastered alone to spotify's target
    record = json.loads(wav.with_suffix(".json").read_text())
    assert record["bars"] == {"first": 8, "last": 9, "pre_roll": 1} and record["release"] is False
    assert record["signed"] is False and record["profile"]["name"] == "spotify"
    assert abs(record["loudness"]["integrated_lufs"] - _lufs(wav)) < 0.05
    ran = {s["name"]: s["cached"] for s in first["stages"]}
    assert ran == {"compose": False, "backing": False, "preview_vocals[chorus-2]": False, "preview[chorus-2]": False}
    song = load_song(spec)
    score = compose(song)
    lines = lines_in_window(score, preview_window(score, section_range(song, score, "Chorus 2")))
    assert len(lines) == 2  # the chorus's line, and the verse's last one sounding in the pre-roll
    assert record["sources"]["vocals"] == "sung for the range (2 lyric lines)"

    again = _preview(spec, out, "--section", "Chorus 2")  # nothing changed: every stage is reused
    assert all(stage["cached"] for stage in again["stages"]), again["stages"]

    intro = _preview(spec, out, "--section", "Intro")  # instrumental, at bar 1: no pre-roll, nothing sung
    assert intro["sources"]["vocals"] == "sung for the range (0 lyric lines)" and intro["range_starts_at"] == 0.0
    assert sf.info(str(out / "previews" / "range-song" / "intro.wav")).frames == 2 * 44100
    _preview(spec, out, "--section", "Outro")  # to the song's end: the song's tail rings out in the file
    assert sf.info(str(out / "previews" / "range-song" / "outro.wav")).frames > 2 * 2 * 44100

    release = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json"])
    assert release.exit_code == 0, release.output
    masters = _tree(out / "masters")
    cut = _preview(spec, out, "--bars", "8-9")  # the full song is cached now: cut from its mix
    assert cut["sources"]["mix"] == "cut from the full song's mix (cached)"
    assert {s["name"]: s["cached"] for s in cut["stages"]} == {
        "compose": True, "backing": True, "vocals": True, "mix": True, "preview[bars-8-9]": False}
    assert abs(_lufs(out / "previews" / "range-song" / "bars-8-9.wav") - (-14.0)) <= 1.0
    assert _tree(out / "masters") == masters  # a preview never touches the release
