"""The embedded `singer` vocal engine: pitch, timing, syllables, determinism, errors.

Pitch and voicing of the rendered lead are measured with WORLD's DIO + StoneMask at
16 kHz: fast, and DIO's voicing decision is strict enough to see where a vowel starts.
"""

from __future__ import annotations

import numpy as np
import pytest

from millamusic.core.errors import RenderError
from millamusic.engines.base import VocalRequest
from millamusic.engines.singer import Singer
from millamusic.music import espeak
from millamusic.music.score import Bar, LyricLine, Note, Score, Section, Word

RATE = 44100
ANALYSIS_RATE = 16000
FRAME_S = 0.005

# (word, [(syllable, start_beat, length_beats, midi), ...]) per line
PHRASE = [
    [
        ("take", [("take", 1.0, 1.0, 64)]),
        ("me", [("me", 2.0, 1.0, 67)]),
        ("home", [("home", 3.0, 2.0, 69)]),
        ("to", [("to", 5.0, 0.5, 67)]),
        ("the", [("the", 5.5, 0.5, 65)]),
        ("sky", [("sky", 6.0, 1.0, 64), ("", 7.0, 1.0, 62)]),  # melisma on "sky"
    ],
    [
        ("happy", [("hap", 9.0, 1.0, 60), ("py", 10.0, 1.0, 62)]),
        ("time", [("time", 11.0, 1.0, 64)]),
        ("for", [("for", 12.0, 1.0, 65)]),
        ("tonight", [("to", 13.0, 0.5, 67), ("night", 13.5, 2.5, 72)]),
    ],
]
# notes whose syllable starts with an unvoiced consonant: the voice must start on the beat
UNVOICED_ONSETS = ("take", "home", "to", "sky", "hap", "py", "time", "for")


def make_score(lines, tempo: float = 100.0) -> Score:
    words, notes, lyric_lines = [], [], []
    last_beat = 0.0
    for line_index, line in enumerate(lines):
        lyric_lines.append(LyricLine(0, " ".join(word for word, _ in line)))
        for text, syllables in line:
            word_index = len(words)
            words.append(Word(text, line_index, tuple(s for s, *_ in syllables if s)))
            for syllable, start, length, pitch in syllables:
                notes.append(Note(start, length, pitch, syllable, word_index, line_index))
                last_beat = max(last_beat, start + length)
    n_bars = int(np.ceil(last_beat / 4)) + 1
    return Score(
        title="test", tempo_bpm=tempo, beats_per_bar=4, beat_unit=4, key="C major", tonic_pc=0, mode="major",
        language="en-us", seed=1, sections=(Section("Verse 1", "verse", 0, n_bars),),
        bars=tuple(Bar(i, 0, 4.0 * i, 4, ("C",)) for i in range(n_bars)),
        lines=tuple(lyric_lines), words=tuple(words), notes=tuple(notes), melody_source="composed",
    )  # fmt: skip


def request(**changes) -> VocalRequest:
    fields = {"seed": 7, "language": "en-us", "voice": "female", "sample_rate": RATE, "options": {}}
    fields.update(changes)
    return VocalRequest(**fields)


def f0_track(result, f0_floor: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """(f0 Hz, times s) of the lead's left channel; 0 Hz where DIO hears no voice."""
    import pyworld
    import soxr

    x = soxr.resample(result.stems["lead"].samples[0].astype(np.float64), RATE, ANALYSIS_RATE)
    f0, t = pyworld.dio(x, ANALYSIS_RATE, f0_floor=f0_floor, f0_ceil=1100.0, frame_period=FRAME_S * 1000)
    return pyworld.stonemask(x, f0, t, ANALYSIS_RATE), t


def note_span(score: Score, note: Note) -> tuple[float, float]:
    return score.beat_to_seconds(note.start_beat), score.beat_to_seconds(note.start_beat + note.length_beats)


def pitch_errors_cents(score: Score, f0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Median cents error of each note over its middle (25-75 %): vibrato averages out."""
    errors = []
    for note in score.notes:
        start, end = note_span(score, note)
        sel = (t >= start + 0.25 * (end - start)) & (t <= start + 0.75 * (end - start)) & (f0 > 0)
        target = 440.0 * 2 ** ((note.pitch - 69) / 12)
        errors.append(float(np.median(1200 * np.log2(f0[sel] / target))) if sel.any() else np.inf)
    return np.asarray(errors)


@pytest.fixture(scope="module")
def score() -> Score:
    return make_score(PHRASE)


@pytest.fixture(scope="module")
def rendered(score):
    return Singer().render(score, request())


@pytest.fixture(scope="module")
def track(rendered):
    return f0_track(rendered)


# --- the espeak binding ---------------------------------------------------------------------------
def test_espeak_speaks_with_events_in_order():
    utt = espeak.speak("hello world", "en-us")
    assert utt.sample_rate == 22050
    assert utt.samples.dtype == np.float32 and utt.samples.ndim == 1 and len(utt.samples) > 0.3 * utt.sample_rate
    words = [e for e in utt.events if e.kind == "word"]
    assert [w.text for w in words] == ["hello", "world"]
    assert [w.text_position for w in words] == [0, 6]
    assert utt.events[0].kind == "word"
    ipa = "".join(e.text for e in utt.events if e.kind == "phoneme")
    assert "h" in ipa and "l" in ipa and "w" in ipa
    assert "en-us" in espeak.languages()
    assert espeak.version()[0].isdigit()


def test_info_is_stable():
    info = Singer.info
    assert (info.name, info.kind, info.version, info.generator) == ("singer", "vocals", "0.5.0", "algorithmic")
    assert info.model.startswith("espeak-ng ") and info.model.endswith("+ WORLD (pyworld)")
    assert "GPL-3.0-or-later" in info.licence and "BSD" in info.licence


# --- the rendered lead ----------------------------------------------------------------------------
def test_lead_is_stereo_score_length_with_headroom(score, rendered):
    lead = rendered.stems["lead"]
    assert lead.sample_rate == RATE
    assert lead.samples.shape == (2, score.total_frames(RATE))
    assert lead.samples.dtype == np.float32
    assert np.isfinite(lead.samples).all()
    assert np.array_equal(lead.samples[0], lead.samples[1])
    assert 0.4 < lead.peak() <= 10 ** (-5.9 / 20)  # about -6 dBFS
    tail = lead.samples[0, int(score.music_seconds * RATE) :]
    assert np.max(np.abs(tail)) < 1e-3  # silence after the last note


def test_pitch_follows_the_notes(score, track):
    errors = pitch_errors_cents(score, *track)
    assert np.isfinite(errors).all(), f"notes without voice: {errors}"
    assert np.median(np.abs(errors)) < 25.0, errors
    assert np.max(np.abs(errors)) < 60.0, errors


def test_vowels_land_on_the_beat(score, track):
    f0, t = track
    for note in score.notes:
        if note.syllable not in UNVOICED_ONSETS:
            continue
        start, _ = note_span(score, note)
        window = np.flatnonzero((t >= start - 0.2) & (t <= start + 0.15))
        voiced = f0[window] > 0
        rises = [t[window[k]] for k in range(1, len(window)) if voiced[k] and not voiced[k - 1]]
        assert rises, f"{note.syllable!r}: no voice starts near {start:.3f} s"
        assert abs(rises[-1] - start) < 0.06, f"{note.syllable!r}: voice starts at {rises[-1]:.3f}, note at {start:.3f}"


def test_syllables_are_ordered_and_near_their_notes(score, rendered):
    sung = rendered.syllables
    assert [s.note_index for s in sung] == [i for i, n in enumerate(score.notes) if n.syllable]
    starts = [s.start_seconds for s in sung]
    assert starts == sorted(starts)
    for k, s in enumerate(sung):
        note = score.notes[s.note_index]
        start, end = note_span(score, note)
        assert start - 0.4 <= s.start_seconds <= start + 0.005, (note.syllable, s)
        assert s.end_seconds > start
        if k + 1 < len(sung):
            assert s.end_seconds <= sung[k + 1].start_seconds + 1e-6
    sky = next(s for s in sung if score.notes[s.note_index].syllable == "sky")
    assert sky.end_seconds > score.beat_to_seconds(7.5)  # the melisma note belongs to "sky"


def test_melisma_is_one_held_vowel(score, track):
    f0, t = track
    first, second = (n for n in score.notes if n.word_index == 5)
    assert second.syllable == ""
    start, _ = note_span(score, first)
    _, end = note_span(score, second)
    held = (t >= start + 0.05) & (t <= end - 0.1)
    assert (f0[held] > 0).all(), "the voice breaks inside the melisma"
    errors = pitch_errors_cents(score, f0, t)
    assert abs(errors[score.notes.index(second)]) < 30.0


def test_same_seed_same_audio_other_seed_differs(score, rendered):
    again = Singer().render(score, request())
    assert np.array_equal(again.stems["lead"].samples, rendered.stems["lead"].samples)
    assert again.syllables == rendered.syllables
    other = Singer().render(score, request(seed=8))
    assert not np.array_equal(other.stems["lead"].samples, rendered.stems["lead"].samples)


@pytest.mark.slow  # sings the song twice: ~5 s
def test_every_stem_is_the_same_whatever_the_threads(monkeypatch):
    """Phrases of all takes are sung side by side on a thread pool: the stems must not
    depend on which thread sings what, nor on how many threads there are."""
    import os

    score = verse_and_chorus_score()
    options = {"double_track": True, "harmony": True}
    first, again = (Singer().render(score, request(options=options)) for _ in range(2))
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    alone = Singer().render(score, request(options=options))
    assert set(first.stems) == {"lead", "lead_double", "harmony"}
    assert first.details["phrases"]["lead"] >= 2
    for name, stem in first.stems.items():
        assert stem.samples.tobytes() == again.stems[name].samples.tobytes(), name
        assert stem.samples.tobytes() == alone.stems[name].samples.tobytes(), name
    assert first.syllables == again.syllables == alone.syllables


def test_details_report_the_render(rendered):
    details = rendered.details
    assert (details["source"], details["voice"]) == ("espeak", "en-us+milla_f")
    assert details["sung_syllables"] == len(rendered.syllables)
    assert details["vowel_count_mismatches"] == []
    assert details["phrases"]["lead"] >= 2
    assert set(rendered.stems) == {"lead"} and rendered.engine_info is None


# --- other scores and requests ----------------------------------------------------------------------
def test_word_with_other_vowel_count_than_its_syllables():
    # espeak: "fire" has one vowel (sung as two), "beautiful" three (sung as one), "every" two (sung as three)
    lines = [[
        ("fire", [("fi", 1.0, 1.0, 64), ("re", 2.0, 1.0, 65)]),
        ("beautiful", [("beautiful", 3.0, 2.0, 67)]),
        ("every", [("ev", 5.0, 1.0, 65), ("e", 6.0, 0.5, 64), ("ry", 6.5, 1.5, 62)]),
    ]]  # fmt: skip
    score = make_score(lines)
    result = Singer().render(score, request())
    mismatched = {
        m["word"]: (m["espeak_vowels"], m["sung_syllables"]) for m in result.details["vowel_count_mismatches"]
    }
    assert mismatched == {"fire": (1, 2), "beautiful": (3, 1), "every": (2, 3)}
    assert len(result.syllables) == len(score.notes)
    errors = pitch_errors_cents(score, *f0_track(result))
    assert np.isfinite(errors).all() and np.max(np.abs(errors)) < 50.0, errors


def test_male_voice_and_vibrato_options():
    lines = [[("so", [("so", 1.0, 1.0, 50)]), ("long", [("long", 2.0, 4.0, 55)])]]
    score = make_score(lines)
    flat = Singer().render(score, request(voice="male", options={"vibrato_depth_cents": 0.0, "drift_cents": 0.0}))
    wide = Singer().render(score, request(voice="male", options={"vibrato_depth_cents": 60.0, "vibrato_rate_hz": 5.0}))
    assert flat.details["voice"] == "en-us+milla_m"
    spreads = []
    for result in (flat, wide):
        f0, t = f0_track(result, f0_floor=60.0)
        errors = pitch_errors_cents(score, f0, t)
        assert np.max(np.abs(errors)) < 25.0, errors
        held = (t > score.beat_to_seconds(3.0)) & (t < score.beat_to_seconds(5.5)) & (f0 > 0)
        spreads.append(np.std(1200 * np.log2(f0[held] / (440 * 2 ** ((55 - 69) / 12)))))
    assert spreads[0] < 8.0 < 25.0 < spreads[1], spreads


def test_score_without_notes_is_silence():
    score = make_score([[]])
    result = Singer().render(score, request())
    assert result.stems["lead"].samples.shape == (2, score.total_frames(RATE))
    assert not result.stems["lead"].samples.any()
    assert result.syllables == ()


def test_other_sample_rate():
    score = make_score([[("la", [("la", 1.0, 1.0, 69)])]])
    result = Singer().render(score, request(sample_rate=48000))
    assert result.stems["lead"].sample_rate == 48000
    assert result.stems["lead"].frames == score.total_frames(48000)


def test_unknown_language_is_a_clear_render_error(score):
    with pytest.raises(RenderError) as caught:
        Singer().render(score, request(language="xx-nope"))
    message = str(caught.value)
    assert "xx-nope" in message and "en-us" in message and "language" in message


def test_unknown_voice_and_option_are_render_errors(score):
    with pytest.raises(RenderError, match="female"):
        Singer().render(score, request(voice="alto"))
    with pytest.raises(RenderError, match="vibrato_rate_hz"):
        Singer().render(score, request(options={"vibrato_speed": 5}))


# --- the artist's voice: formants, breath, double and harmony ----------------------------------------
def _spectral_centroid(audio) -> float:
    x = audio.samples[0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(np.sum(freqs * spectrum) / np.sum(spectrum))


def test_formant_shift_moves_the_spectrum_not_the_pitch(score, rendered):
    brighter = Singer().render(score, request(options={"formant_shift": 1.2}))
    darker = Singer().render(score, request(options={"formant_shift": 0.85}))
    centroids = [_spectral_centroid(r.stems["lead"]) for r in (darker, rendered, brighter)]
    assert centroids[0] < centroids[1] < centroids[2]
    assert centroids[2] / centroids[1] > 1.04  # the centroid moves less than the formants: f0 stays
    assert np.median(np.abs(pitch_errors_cents(score, *f0_track(brighter)))) < 15.0


def _periodicity(audio, start: float, end: float) -> float:
    """Median peak of the normalised autocorrelation at pitch lags (300-900 Hz) in 40 ms windows:
    1 for a pure periodic tone, lower as noise (breath) is mixed in."""
    x = audio.samples[0].astype(np.float64)
    peaks = []
    for t in np.arange(start, end - 0.05, 0.02):
        seg = x[int(t * RATE): int((t + 0.04) * RATE)]
        seg = seg - seg.mean()
        ac = np.correlate(seg, seg, "full")[len(seg) - 1:]
        peaks.append((ac / (ac[0] + 1e-12))[RATE // 900: RATE // 300].max())
    return float(np.median(peaks))


def test_breathiness_adds_air(score, rendered):
    airy = Singer().render(score, request(options={"breathiness": 0.6}))
    held = (score.beat_to_seconds(13.5) + 0.3, score.beat_to_seconds(16.0) - 0.2)  # "night", held on C5
    clear, breathy = _periodicity(rendered.stems["lead"], *held), _periodicity(airy.stems["lead"], *held)
    assert clear > 0.9 and breathy < clear - 0.1, (clear, breathy)
    # the pitch is still there under the breath
    assert np.median(np.abs(pitch_errors_cents(score, *f0_track(airy)))) < 15.0


def test_third_above_stays_in_the_key():
    from millamusic.voice.syllables import third_above

    c_major = (0, 2, 4, 5, 7, 9, 11)
    assert [third_above(p, c_major) for p in (60, 62, 64, 65, 67, 69, 71, 72)] == [64, 65, 67, 69, 71, 72, 74, 76]
    a_minor = (9, 11, 0, 2, 4, 5, 7)
    assert [third_above(p, a_minor) for p in (57, 60, 64, 69)] == [60, 64, 67, 72]


def verse_and_chorus_score() -> Score:
    """PHRASE with its second line in a chorus section."""
    base = make_score([PHRASE[0], PHRASE[1]])
    return base.__class__(**{**base.__dict__, "sections": (Section("Verse 1", "verse", 0, 2),
                                                           Section("Chorus", "chorus", 2, len(base.bars) - 2)),
                             "lines": (base.lines[0], LyricLine(1, base.lines[1].text))})


def test_double_and_harmony_sing_the_chorus():
    score = verse_and_chorus_score()
    result = Singer().render(score, request(options={"double_track": "chorus", "harmony": True}))
    assert set(result.stems) == {"lead", "lead_double", "harmony"}
    lead, double, harmony = (result.stems[k].samples[0] for k in ("lead", "lead_double", "harmony"))
    verse_end = int(score.beat_to_seconds(7.5) * RATE)  # the chorus' breath and onset come after this
    assert np.max(np.abs(double[:verse_end])) < 1e-4 and np.max(np.abs(harmony[:verse_end])) < 1e-4
    assert np.max(np.abs(double[verse_end:])) > 0.1 and not np.allclose(double[verse_end:], lead[verse_end:], atol=1e-3)
    # the harmony is a diatonic third above the lead, note by note (C major)
    f0, t = f0_track(type(result)(stems={"lead": result.stems["harmony"]}, syllables=()))
    from millamusic.voice.syllables import third_above

    chorus = [n for n in score.notes if n.line_index == 1]
    major = (0, 2, 4, 5, 7, 9, 11)
    up = Score(**{**score.__dict__, "notes": tuple(Note(n.start_beat, n.length_beats, third_above(n.pitch, major),
                                                         n.syllable, n.word_index, n.line_index) for n in chorus)})
    errors = pitch_errors_cents(up, f0, t)
    assert np.median(np.abs(errors)) < 15.0, errors


def test_words_espeak_runs_together_are_all_sung():
    # espeak says "for the" and "on the" as one word each, with no word event for "the"
    lines = [[("waiting", [("wai", 1.0, 1.0, 64), ("ting", 2.0, 1.0, 62)]), ("for", [("for", 3.0, 1.0, 60)]),
              ("the", [("the", 4.0, 1.0, 62)]), ("dawn", [("dawn", 5.0, 2.0, 64)])]]
    score = make_score(lines)
    result = Singer().render(score, request())
    assert len(result.syllables) == len(score.notes)
    assert result.details["vowel_count_mismatches"] == []
    f0, t = f0_track(result)
    errors = pitch_errors_cents(score, f0, t)
    assert np.all(np.isfinite(errors)) and np.median(np.abs(errors)) < 15.0, errors


def test_phonemising_does_not_eat_the_next_lines_word_events():
    # each espeak_TextToPhonemes call queues an event for the next synthesis; enough of them
    # used to push "hello" out of the next line's event list, leaving its notes unsung
    for _ in range(60):
        espeak.text_to_phonemes("a", "en-us", separator="_")
    utt = espeak.speak("hello world", "en-us")
    assert [e.text for e in utt.events if e.kind == "word"] == ["hello", "world"]


@pytest.mark.parametrize("language, text", [
    ("fi", "Rakastan sinua aina, kuu paistaa hämärässä"),
    ("sv", "Jag älskar dig alltid under stjärnorna"),
])
def test_finnish_and_swedish_are_sung_in_tune(language, text):
    from millamusic.music.lyrics import line_words

    pitches = [64, 65, 67, 69, 67, 65, 64, 62, 64, 65, 67, 69, 71, 72]
    syllables = [s for w in line_words(text, language) for s in w.syllables]
    beat, line, k = 1.0, [], 0
    for word in line_words(text, language):
        notes = []
        for syllable in word.syllables:
            length = 1.5 if k == len(syllables) - 1 else 0.75
            notes.append((syllable, beat, length, pitches[k % len(pitches)]))
            beat, k = beat + length, k + 1
        line.append((word.text, notes))
    score = make_score([line])
    score = Score(**{**score.__dict__, "language": language})
    result = Singer().render(score, request(language=language))
    assert len(result.syllables) == len(score.notes)
    assert result.details["vowel_count_mismatches"] == []  # the syllable split agrees with espeak
    errors = pitch_errors_cents(score, *f0_track(result))
    assert np.median(np.abs(errors)) < 15.0 and np.mean(np.isfinite(errors)) >= 0.9, errors


def test_speech_sources_come_from_one_registry(monkeypatch):
    """The singer asks the registry for its speech source, as the pipeline asks for engines: an
    unknown name lists the valid ones, a missing extra gives its install line."""
    import importlib.util

    from millamusic.core.errors import EngineUnavailable
    from millamusic.engines import SPEECH_SOURCES, load_speech_source
    from millamusic.engines.singer import espeak_speaker

    assert load_speech_source("espeak") is espeak_speaker
    with pytest.raises(EngineUnavailable, match="valid sources: espeak, piper"):
        load_speech_source("festival")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx" else real_find_spec(name, *a))
    with pytest.raises(EngineUnavailable, match=r"missing: onnx\). Fix: pip install 'millamusic\[piper\]'"):
        load_speech_source("piper")
    assert set(SPEECH_SOURCES) == {"espeak", "piper"}
