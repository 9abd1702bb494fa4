"""The arranger's backing, measured like a record: tempo by beat tracking, key by Krumhansl
profiles, chord per bar by chroma templates (millamusic.analysis, librosa)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from millamusic.analysis.features import chord_match_rate, chords_per_bar, estimate_key, estimate_tempo
from millamusic.compose import compose
from millamusic.engines.arranger import Arranger
from millamusic.engines.base import BackingRequest
from millamusic.instruments.presets import PRESETS
from millamusic.instruments.rendering import sum_stems
from millamusic.spec.song import load_song
from tests.test_arranger import make_score

pytestmark = pytest.mark.slow  # renders and measures whole arrangements: 2-9 s each

RATE = 44100
SONGS = Path(__file__).resolve().parents[1] / "songs"
_RENDERS: dict[tuple, tuple] = {}


def backing(preset: str, score, seed: int = 1) -> np.ndarray:
    key = (preset, score.title, score.tempo_bpm, seed)
    if key not in _RENDERS:
        request = BackingRequest(seed=seed, genre=PRESETS[preset]["genre"], style=(), sample_rate=RATE,
                                 options={"preset": preset})
        result = Arranger().render(score, request)
        _RENDERS[key] = sum_stems({name: audio.samples for name, audio in result.stems.items()})
    return _RENDERS[key]


def example(name: str):
    return compose(load_song(SONGS / f"{name}.yaml"))


SHORT_FORM = ("intro", "verse", "prechorus", "chorus", "outro")


@pytest.mark.parametrize(("preset", "tempo"), [("piano-ballad", 72.0), ("power-ballad", 72.0),
                                               ("synth-pop", 118.0), ("driving-rock", 150.0)])
def test_tempo_by_beat_tracking_is_within_one_percent(preset, tempo):
    score = make_score(kinds=SHORT_FORM, bars_per_section=4 if tempo < 100 else 6, tempo=tempo)
    mix = backing(preset, score)
    # The spec's tempo as librosa's prior picks the metrical level; the figure comes from the beats.
    measured = estimate_tempo(mix, RATE, prior_bpm=tempo)
    assert abs(measured.bpm / tempo - 1) < 0.01, measured.bpm
    # Blind (prior at librosa's 120): the same grid, though a ballad's 8th notes read as double time.
    blind = estimate_tempo(mix, RATE).bpm
    levels = (tempo, 2 * tempo) if tempo < 90 else (tempo,)
    assert min(abs(blind / level - 1) for level in levels) < 0.01, blind


@pytest.mark.parametrize(("song", "preset"), [("set-me-spinning", "synth-pop"), ("northern-static", "driving-rock"),
                                              ("lanterns-on-the-ice", "power-ballad"),
                                              ("lanterns-on-the-ice", "piano-ballad")])
def test_key_and_chords_of_the_examples_are_heard(song, preset):
    score = example(song)
    mix = backing(preset, score, seed=score.seed)
    key = estimate_key(mix, RATE)
    assert key.name == score.key, (key, score.key)
    assert key.margin > 0.1  # not a coin toss with the relative key
    slots = chords_per_bar(mix, RATE, score)
    assert len(slots) >= len(score.bars)
    rate = chord_match_rate(slots)
    assert rate >= 0.9, [(s.bar_index, s.expected, s.estimated) for s in slots if not s.matches]


def test_another_seed_is_a_different_take_of_the_same_song():
    score = make_score(kinds=SHORT_FORM, bars_per_section=2, tempo=118.0)
    one, two = backing("synth-pop", score, seed=1), backing("synth-pop", score, seed=2)
    assert not np.array_equal(one, two)
    for mix in (one, two):
        assert np.max(np.abs(mix)) < 1.0
        assert chord_match_rate(chords_per_bar(mix, RATE, score)) >= 0.9
