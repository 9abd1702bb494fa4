"""The diffsinger engine's text and timing side on the tiny voicebank (tests/diffsinger_tiny.py):
words -> the bank's phonemes, phonemes -> phrases on the bank's frame grid with every vowel on its beat."""

from __future__ import annotations

import numpy as np
import pytest

from millamusic.compose import compose
from millamusic.core.errors import RenderError
from millamusic.spec.song import load_song
from millamusic.voice.diffsinger_bank import load_voicebank
from millamusic.voice.diffsinger_phonemes import PhonemeSet, attach_phonemes, sung_syllables
from millamusic.voice.diffsinger_timing import HEAD_FRAMES, TAIL_FRAMES, fit_durations, phrases
from tests import diffsinger_tiny as tiny

# the tiny bank's own spelling of the test song's words (its phonemes are plain letters)
WORDS = {"hold": ["h", "o", "l"], "the": ["t", "e"], "light": ["l", "a", "i", "t"], "tonight": ["t", "o", "n", "a", "i", "t"],
         "spin": ["s", "i", "n"], "me": ["m", "i"], "round": ["r", "a", "u", "n"], "again": ["a", "k", "e", "n"]}


@pytest.fixture
def score(write_spec):
    return compose(load_song(write_spec()))


@pytest.fixture
def bank(tmp_path):
    return load_voicebank(tiny.build_bank(tmp_path / "bank", dictionary=WORDS))


def test_every_syllable_gets_the_banks_phonemes_from_its_dictionary(score, bank):
    syllables = sung_syllables(score)
    assert attach_phonemes(score, syllables, PhonemeSet(bank, "en-us")) == []  # nothing spelled by espeak
    table = bank.acoustic.phonemes
    for syl in syllables:
        assert syl.vowel and all(p in table for p in [*syl.onset, *syl.vowel, *syl.coda])
    tonight = [syl for syl in syllables if score.words[syl.word].text.lower().strip(",.") == "tonight"]
    assert [(s.onset, s.vowel, s.coda) for s in tonight] == [(["t"], ["o"], []), (["n"], ["a", "i"], ["t"])]


def test_a_word_the_bank_cannot_spell_names_the_word_and_the_fix(score, tmp_path):
    partial = load_voicebank(tiny.build_bank(tmp_path / "partial", dictionary={k: v for k, v in WORDS.items() if k != "spin"}))
    with pytest.raises(RenderError) as caught:
        attach_phonemes(score, sung_syllables(score), PhonemeSet(partial, "en-us"))
    said = str(caught.value)
    assert "cannot spell the word 'Spin'" in said and "grapheme: spin" in said and "dsdict.yaml" in said


def test_an_arpabet_bank_spells_words_it_lacks_through_espeak(score, tmp_path):
    """Most English banks use ARPAbet: a word missing from their dictionary is spoken by espeak-ng
    and mapped onto it."""
    from millamusic.voice.diffsinger_phonemes import ARPABET_VOWELS, IPA_TO_ARPABET

    arpabet = sorted({p for mapped in IPA_TO_ARPABET.values() for p in mapped})
    bank = load_voicebank(tiny.build_bank(tmp_path / "arpa", phonemes=("AP", "SP", *arpabet)))
    syllables = sung_syllables(score)
    spelled = attach_phonemes(score, syllables, PhonemeSet(bank, "en-us"))
    assert set(spelled) >= {"Hold", "light", "Spin", "round"}
    assert all(syl.vowel[0] in ARPABET_VOWELS for syl in syllables)


def test_phrases_put_every_vowel_on_its_note(score, bank):
    syllables = sung_syllables(score)
    phonemes = PhonemeSet(bank, "en-us")
    attach_phonemes(score, syllables, phonemes)
    frame = bank.acoustic.frame_seconds
    found = phrases(syllables, frame)
    assert len(found) == 2  # the verse line and the chorus line, apart by a rest
    for phrase in found:
        assert len(phrase.tokens) == sum(phrase.groups) == len(phrase.midi)
        assert phrase.tokens[0] == phrase.tokens[-1] == "SP" and phrase.group_frames[0] == HEAD_FRAMES
        for predicted in (None, np.linspace(2.0, 9.0, len(phrase.tokens))):
            durations = fit_durations(phrase, predicted, phonemes.is_vowel)
            assert durations.sum() == phrase.frames and durations.min() >= 1
            starts = phrase.start_frame + np.concatenate([[0], np.cumsum(durations)[:-1]])
            vowel_index = phrase.groups[0]
            for syl, size in zip(phrase.syllables, phrase.groups[1:]):
                assert phrase.tokens[vowel_index] == syl.vowel[0]
                assert starts[vowel_index] == round(syl.start / frame)  # the vowel starts on its beat
                vowel_index += size
        # the onset consonants keep the predicted lengths (5 frames each here) and end on the first note
        onset = phrase.onset_count
        durations = fit_durations(phrase, np.full(len(phrase.tokens), 3.0), phonemes.is_vowel)
        assert list(durations[1 : 1 + onset]) == [3] * onset
    assert found[-1].frames == round(found[-1].syllables[-1].end / frame) + TAIL_FRAMES - found[-1].start_frame


def test_a_banks_pitch_model_gets_the_phrases_notes(score, tmp_path):
    """The pitch model is fed every note with its length in frames (a rest over the head and in the
    melody's pauses): the tiny one sings each frame's note, so its curve is the melody."""
    from millamusic.voice.diffsinger_models import Settings, pitch_curve
    from millamusic.voice.diffsinger_timing import phrase_notes

    bank = load_voicebank(tiny.build_bank(tmp_path / "pitched", dictionary=WORDS, with_pitch=True))
    assert bank.pitch is not None
    syllables = sung_syllables(score)
    phonemes = PhonemeSet(bank, "en-us")
    attach_phonemes(score, syllables, phonemes)
    frame = bank.acoustic.frame_seconds
    for phrase in phrases(syllables, frame):
        durations = fit_durations(phrase, None, phonemes.is_vowel)
        midi, rest, lengths = phrase_notes(phrase, frame)
        assert lengths.sum() == phrase.frames and rest[0] and not rest[1] and lengths.min() >= 1
        curve = pitch_curve(bank, phrase, durations, Settings(steps=10, depth=1.0, speaker=None, energy_db=0.0,
                                                              breathiness_db=0.0, device="cpu"))
        assert curve.shape == (phrase.frames,)
        for syl in phrase.syllables:
            for start, end, note in syl.pitches:
                inside = curve[int(round(start / frame)) - phrase.start_frame + 1 : int(round(end / frame)) - phrase.start_frame - 1]
                assert inside.size and np.all(inside == note), (syl.pitches, inside)
