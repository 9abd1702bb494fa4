"""The diffsinger engine end to end: an example song rendered with `millamusic render --vocals
diffsinger` through a tiny voicebank built in code (tests/diffsinger_tiny.py), whose vocoder sings a
sine at the f0 it is given on vowel frames only, so the vocal's pitch and vowel onsets can be measured."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from millamusic.analysis.listening import pitch_report, track_pitch, vowel_onset_errors
from millamusic.cli import main
from millamusic.compose import compose
from millamusic.spec.song import load_song
from tests import diffsinger_tiny as tiny

pytestmark = pytest.mark.slow  # renders a whole song

ROOT = Path(__file__).resolve().parents[1]
SONG = "set-me-spinning"
CONSONANTS = {"b": "t", "c": "k", "d": "t", "f": "h", "g": "k", "j": "y", "p": "t", "q": "k", "v": "w", "x": "k", "z": "s"}


def spell(word: str) -> list[str]:
    """The tiny bank's spelling of a lyric word: its letters as the bank's phonemes."""
    letters = [ch for ch in word.lower() if ch.isalpha()]
    out = [("i" if ch == "y" and k else CONSONANTS.get(ch, ch)) for k, ch in enumerate(letters)]
    return [p for p in out if p in tiny.PHONEMES] or ["a"]


def catalogue(tmp_path: Path, licence: str, *, with_pitch: bool = False) -> Path:
    for folder in ("songs", "lyrics", "artwork", "artists"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    song = compose(load_song(tmp_path / "songs" / f"{SONG}.yaml"))
    words = {re.sub(r"[^\w']", "", w.text).lower(): None for w in song.words}
    tiny.build_bank(tmp_path / "voicebanks" / "tiny", dictionary={w: spell(w) for w in words if w}, with_pitch=with_pitch)
    profile = tmp_path / "artists" / "milla-virta.yaml"
    text = profile.read_text().replace("  source: espeak", f"  diffsinger:\n    voicebank: ../voicebanks/tiny\n{licence}"
                                       "  source: espeak", 1)
    profile.write_text(text)
    return tmp_path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = catalogue(tmp_path_factory.mktemp("diffsinger"), "    licence: {name: CC0 1.0, commercial: true}\n")
    out = root / "out"
    result = CliRunner().invoke(main, ["render", str(root / "songs" / f"{SONG}.yaml"), "--vocals", "diffsinger",
                                       "--out", str(out), "--cache-dir", str(root / "cache")])
    assert result.exit_code == 0, result.output
    return root, out


def test_the_vocal_follows_the_notes_and_its_vowels_sit_on_the_beats(rendered):
    root, out = rendered
    lead, rate = soundfile.read(out / "stems" / SONG / "lead.wav", dtype="float32")
    mono = lead.mean(axis=1)
    score = compose(replace(load_song(root / "songs" / f"{SONG}.yaml"), vocals_override="diffsinger"))
    f0, period = track_pitch(mono, rate)
    report = pitch_report(score, f0, period)
    assert report.median_cents <= 15.0, report
    assert report.notes_voiced >= 0.9, report
    onsets = vowel_onset_errors(score, mono, rate)
    assert onsets.size >= 20 and np.median(np.abs(onsets)) <= 0.025, np.percentile(onsets, [10, 50, 90])


def test_the_release_credits_the_voicebank(rendered):
    _, out = rendered
    release = json.loads((out / "masters" / SONG / "release.json").read_text())
    vocals = [credit for credit in release["credits"] if credit["stage"] == "vocals"]
    assert len(vocals) == 1 and vocals[0]["engine"] == "diffsinger", vocals
    assert "DiffSinger voicebank Tiny Test Singer 0.1 by millamusic tests" in vocals[0]["model"]
    assert vocals[0]["licence"] == "CC0 1.0" and vocals[0]["generator"] == "trained"
    [entry] = (out.parent / "cache" / "vocals").glob("*/vocals.json")
    details = json.loads(entry.read_text())["details"]
    assert "license=CC0" in details["character_txt"]
    assert details["f0"] == "the notes, vibrato, glides" and details["licence_files"] == {"LICENSE.txt": details[
        "licence_files"]["LICENSE.txt"]} and details["phrases"] >= 10


@pytest.mark.parametrize("licence, said", [
    ("", "licence is unknown"),
    ("    licence: {name: the bank's terms of use, commercial: false}\n", "does not allow commercial use"),
])
def test_a_commercial_release_refuses_a_bank_whose_terms_do_not_allow_it(tmp_path, licence, said):
    root = catalogue(tmp_path, licence)
    result = CliRunner().invoke(main, ["render", str(root / "songs" / f"{SONG}.yaml"), "--vocals", "diffsinger",
                                       "--out", str(root / "out")])
    assert result.exit_code == 2, result.output
    assert said in result.output and "Tiny Test Singer" in result.output, result.output
    assert not (root / "out" / "masters").exists()


def test_a_speaker_the_bank_does_not_have_is_a_located_spec_error(tmp_path):
    root = catalogue(tmp_path, "    speaker: tenor\n    licence: {name: CC0 1.0, commercial: true}\n")
    result = CliRunner().invoke(main, ["check", str(root / "songs" / f"{SONG}.yaml")])
    assert result.exit_code == 2, result.output
    assert "milla-virta.yaml:" in result.output and "voice.diffsinger.speaker" in result.output
    assert "has one voice" in result.output and "Fix: remove `speaker`" in result.output


def test_a_banks_pitch_model_shapes_the_melody(tmp_path):
    """With a pitch model the bank's curve is sung instead of the notes with the profile's vibrato:
    the tiny one sings the bare notes, so the vocal is within a few cents of them."""
    root = catalogue(tmp_path, "    licence: {name: CC0 1.0, commercial: true}\n", with_pitch=True)
    out = root / "out"
    result = CliRunner().invoke(main, ["render", str(root / "songs" / f"{SONG}.yaml"), "--vocals", "diffsinger",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    lead, rate = soundfile.read(out / "stems" / SONG / "lead.wav", dtype="float32")
    score = compose(replace(load_song(root / "songs" / f"{SONG}.yaml"), vocals_override="diffsinger"))
    report = pitch_report(score, *track_pitch(lead.mean(axis=1), rate))
    assert report.median_cents <= 5.0, report
    [vocals] = (out / ".millamusic" / "cache" / "vocals").glob("*/vocals.json")
    assert json.loads(vocals.read_text())["details"]["f0"] == "the bank's pitch model"
