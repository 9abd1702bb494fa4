"""Covers, measured on references whose score we know (tests/cover_references.py: songs rendered
by the project's arranger and singer at 72-160 BPM, 4/4 and 3/4, major and minor, with and
without drums): the analysis a draft is made from, and `millamusic cover` -> `millamusic render`
end to end. The same figures, per reference, come from `python bench/cover.py`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from millamusic.analysis.features import estimate_key, estimate_tempo
from millamusic.cli import main
from millamusic.cover.analysis import analyse_reference
from millamusic.spec.song import load_song
from tests.cover_references import REFERENCES, build_reference, score_analysis

pytestmark = pytest.mark.slow  # renders references (3-5 s each) and analyses them (4-8 s each)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    folder = tmp_path_factory.mktemp("references")
    return {name: build_reference(song, folder / name) for name, song in REFERENCES.items()}


@pytest.mark.parametrize("name", list(REFERENCES))
def test_analysis_finds_tempo_bars_key_chords_form_and_melody(references, name):
    reference = references[name]
    analysis = analyse_reference(reference.mix_path, vocal_stem=reference.vocal_path)
    scores = score_analysis(reference, analysis)
    assert abs(scores.tempo_error_percent) < 1.0, scores
    assert abs(scores.downbeat_error_ms) <= 50.0, scores
    assert scores.meter_right and analysis.grid.heard_meter == analysis.grid.time_signature, (analysis.grid, scores)
    assert scores.key_right, (analysis.key, scores)
    assert scores.chord_root >= 0.8 and scores.chord_majmin >= 0.8, scores
    assert scores.boundary_hit_rate >= 0.8, (analysis.sections, scores)
    assert analysis.melody.monophonic and scores.melody_f1 >= 0.7, scores
    # repeated music shares a label: both verses, both choruses
    truth = reference.score.sections
    labels = {}
    for section in truth:
        found = next(s for s in analysis.sections if abs(s.start_bar - section.start_bar) <= 1)
        labels.setdefault(section.name, set()).add(found.label)
    assert all(len(found) == 1 for found in labels.values()), labels
    assert labels["Verse"] != labels["Chorus"]


def test_the_full_mix_is_not_taken_for_a_solo_voice(references):
    reference = references["pop-118-am"]
    analysis = analyse_reference(reference.mix_path)
    assert not analysis.melody.monophonic and "vocal stem" in analysis.melody.reason


SHEET = """[Verse 1]
Morning light is falling on the town
I keep walking and I won't look down
Every window holds a little sun
Every road I take is not the one

[Chorus]
Open up the door and let me in
Sing it loud and let the night begin
Rivers run and mountains turn to sand
I will find you if you take my hand

[Verse 2]
Paper boats are sailing down the street
Every stranger has a song to meet
Summer rain is falling on the sea
Every little thing comes back to me
"""


def test_cover_drafts_a_spec_that_renders_at_the_reference_tempo_in_the_singers_key(references, tmp_path):
    reference = references["pop-118-am"]
    project = tmp_path / "proj"
    (project / "artists").mkdir(parents=True)
    profile = (ROOT / "artists" / "milla-virta.yaml").read_text().replace("range: [A3, E5]", "range: [C3, G4]")
    (project / "artists" / "low.yaml").write_text(profile)
    (project / "sheet.txt").write_text(SHEET)
    out_spec = project / "songs" / "cover.yaml"
    runner = CliRunner()
    drafted = runner.invoke(main, ["cover", str(reference.mix_path), "--title", "Morning Light",
                                   "--vocal-stem", str(reference.vocal_path), "--lyrics", str(project / "sheet.txt"),
                                   "--artist-profile", str(project / "artists" / "low.yaml"),
                                   "--original-artist", "Test Band", "--songwriter", "Ann Writer",
                                   "--out-spec", str(out_spec)])
    assert drafted.exit_code == 0, drafted.output
    song = load_song(out_spec)
    spec = song.spec
    # the sheet's headers named the repeated verses; the melody went below G4 (-9: A minor -> C minor)
    assert [s.section for s in spec.structure] == ["Intro", "Verse 1", "Chorus", "Verse 2", "Chorus", "Outro"]
    assert spec.transpose == -9 and song.spec.key_value.name == "C minor"
    assert spec.release.original.songwriters == ["Ann Writer"]
    assert (out_spec.parent / "morning-light.mid").is_file() and spec.melody == "morning-light.mid"
    # the reference lay outside the project (the spec's catalogue): a copy comes in beside the spec
    assert spec.reference == "reference.wav" and "copied" in drafted.output

    again = runner.invoke(main, ["cover", str(reference.mix_path), "--title", "Morning Light", "--artist", "X",
                                 "--out-spec", str(out_spec)])
    assert again.exit_code == 2 and "--force" in again.output  # an edited draft is never overwritten silently

    rendered = runner.invoke(main, ["render", str(out_spec), "--out", str(project), "--json"])
    assert rendered.exit_code == 0, rendered.output
    record = json.loads((project / "masters" / "morning-light" / "release.json").read_text())
    assert record["track"]["original"]["artist"] == "Test Band" and record["track"]["composer"] == "Ann Writer"
    stems = project / "stems" / "morning-light"
    backing = sum(soundfile.read(stems / f"{name}.wav", dtype="float32")[0]
                  for name in ("drums", "bass", "keys", "arp", "pad"))
    rate = soundfile.info(stems / "bass.wav").samplerate
    tempo = estimate_tempo(backing.T, rate, prior_bpm=spec.tempo).bpm
    assert abs(tempo / reference.score.tempo_bpm - 1) < 0.01, tempo
    assert estimate_key(backing.T, rate).name == "C minor"
    # the reference itself is never in the master: the master correlates with no part of it
    master, _ = soundfile.read(next((project / "masters" / "morning-light" / "spotify").glob("*.wav")),
                               dtype="float32")
    n = min(len(master), reference.mix.shape[1])
    r = np.corrcoef(master[:n, 0], reference.mix[0, :n])[0, 1]
    assert abs(r) < 0.1, r


def test_a_sheet_whose_headers_match_nothing_gives_a_skeleton_and_keeps_the_sheet(references, tmp_path):
    reference = references["waltz-96-g"]
    (tmp_path / "sheet.txt").write_text("[Verse]\nOne line here\n\n[Middle Eight]\nAnother line\n")
    out_spec = tmp_path / "songs" / "waltz.yaml"
    result = CliRunner().invoke(main, ["cover", str(reference.mix_path), "--title", "Waltz", "--artist", "Milla",
                                       "--vocal-stem", str(reference.vocal_path), "--lyrics",
                                       str(tmp_path / "sheet.txt"), "--out-spec", str(out_spec)])
    assert result.exit_code == 0, result.output
    assert "[Middle Eight] name no section heard" in result.output
    sheet = (out_spec.parent / "waltz.txt").read_text()
    assert "la la la" in sheet and "# [Middle Eight]" in sheet
    spec = load_song(out_spec).spec
    assert spec.time_signature == "3/4" and abs(spec.tempo - 96) < 1
    assert "#   original:" in out_spec.read_text()  # not given: left for the producer, said so
