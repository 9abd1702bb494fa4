"""millamusic.analysis on synthetic signals whose tempo, key and chords are known by construction."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from millamusic.analysis.features import ChordSlot, chord_match_rate, chords_per_bar, estimate_key, estimate_tempo
from millamusic.music.score import Bar, Score, Section
from millamusic.music.theory import parse_chord, parse_key
from tests.signals import chord_sound, kick, noise_burst, place, white_noise

RATE = 44100


# --------------------------------------------------------------------------- signal builders


def drum_track(bpm: float, seconds: float, *, seed: int = 0, jitter_ms: float = 3.0, rate: int = RATE,
               beats_per_bar: int = 4) -> np.ndarray:
    """Kick on every beat (accented downbeat), snare on 2 and 4, hats on the beat; (n,) float64."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * rate))
    spb = 60.0 / bpm
    for beat in range(int(seconds / spb)):
        at = round((beat * spb + rng.normal(0, jitter_ms / 1000)) * rate)
        downbeat = beat % beats_per_bar == 0
        place(out, at, kick(rate=rate, gain=1.0 if downbeat else 0.6))
        place(out, at, noise_burst(rng, 0.05, decay=0.012, gain=0.25, rate=rate))
        if beat % 2 == 1:
            place(out, at, noise_burst(rng, 0.2, decay=0.05, gain=0.35, rate=rate, bright=False, extra_draw=True))
    return out


def progression(slots: list[tuple[float, float, str]], seconds: float, rate: int = RATE) -> np.ndarray:
    """[(start s, length s, symbol)] -> (n,) float64."""
    out = np.zeros(int(seconds * rate))
    for start, length, symbol in slots:
        place(out, round(start * rate), chord_sound(symbol, length, rate=rate))
    return out


def normalise(x: np.ndarray, peak: float = 0.8) -> np.ndarray:
    return (x * peak / np.max(np.abs(x))).astype(np.float32)


def make_score(per_bar: list[tuple[str, ...]], tempo: float = 120.0, beats: int = 4) -> Score:
    bars = tuple(Bar(index=b, section_index=0, start_beat=float(b * beats), beats=beats, chords=symbols)
                 for b, symbols in enumerate(per_bar))
    return Score(
        title="Analysis Test", tempo_bpm=tempo, beats_per_bar=beats, beat_unit=4, key="A minor", tonic_pc=9,
        mode="minor", language="en-us", seed=1, sections=(Section("Verse", "verse", 0, len(bars)),), bars=bars,
        lines=(), words=(), notes=(), melody_source="composed",
    )


def render_score(score: Score, *, drums: bool = True, seed: int = 0) -> np.ndarray:
    """Chords of `score` as additive synth plus (optionally) a drum layer at about equal RMS."""
    spb = score.seconds_per_beat
    slots = []
    for bar in score.bars:
        division = bar.beats / len(bar.chords)
        slots += [((bar.start_beat + i * division) * spb, division * spb, s) for i, s in enumerate(bar.chords)]
    seconds = score.music_seconds + 0.5
    harmony = progression(slots, seconds)
    if not drums:
        return normalise(harmony)
    beat = drum_track(score.tempo_bpm, seconds, seed=seed)
    beat *= np.sqrt(np.mean(harmony**2) / np.mean(beat**2))
    return normalise(harmony + beat)


# --------------------------------------------------------------------------- import


def test_import_does_not_import_librosa():
    code = "import millamusic.analysis.features, sys; assert 'librosa' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- tempo


@pytest.mark.parametrize("bpm", [72.0, 118.0, 150.0])
def test_tempo_within_one_percent(bpm):
    samples = normalise(drum_track(bpm, 30.0, seed=int(bpm)))
    estimate = estimate_tempo(np.stack([samples, samples]), RATE)  # stereo in, mixed to mono
    assert abs(estimate.bpm / bpm - 1) < 0.01, estimate
    assert len(estimate.beat_seconds) > 0.8 * 30.0 * bpm / 60.0
    assert estimate.librosa_bpm > 0


@pytest.mark.parametrize("make", [
    lambda: np.zeros(5 * RATE, dtype=np.float32),  # silence: no onsets at all
    lambda: white_noise(RATE // 2, seed=5, level=0.1),  # 0.5 s of noise: too few beats
    lambda: white_noise(500, seed=5, level=0.1),  # shorter than one analysis frame
], ids=["silence", "short-noise", "tiny"])
def test_tempo_without_beats_raises(make):
    with pytest.raises(ValueError, match="beat"):
        estimate_tempo(make(), RATE)


# --------------------------------------------------------------------------- key


def looped(chords: tuple[str, ...], *, bar_seconds: float = 2.0, loops: int = 2) -> np.ndarray:
    """The progression `loops` times, one chord per bar, with drums at about equal RMS."""
    symbols = list(chords) * loops
    seconds = len(symbols) * bar_seconds + 0.5
    harmony = progression([(i * bar_seconds, bar_seconds, s) for i, s in enumerate(symbols)], seconds)
    beat = drum_track(120.0, seconds, seed=len(chords))
    return normalise(harmony + beat * np.sqrt(np.mean(harmony**2) / np.mean(beat**2)))


@pytest.mark.parametrize("key, chords", [
    # i-VI-III-VII alone has exactly the pitch content of the relative major's I-V-vi-IV (it reads
    # as C major): the cadence iv-V-i is what makes it A minor to a mean-chroma estimator too.
    ("A minor", ("Am", "F", "C", "G", "Am", "Dm", "E", "Am")),
    ("D major", ("D", "A", "Bm", "G")),  # I-V-vi-IV
    ("Eb major", ("Eb", "Bb", "Cm", "Ab")),  # I-V-vi-IV, flat key (reported with sharps: D#)
    ("F# minor", ("F#m", "D", "A", "C#")),  # i-VI-III-V
])
def test_key(key, chords):
    estimate = estimate_key(looped(chords), RATE)
    expected = parse_key(key)
    assert estimate.name == expected.name, estimate
    assert (estimate.tonic_pc, estimate.mode) == (expected.tonic_pc, expected.mode)
    assert estimate.margin > 0.05 and estimate.runner_up != estimate.name


@pytest.mark.filterwarnings("ignore:Trying to estimate tuning")
def test_key_of_silence_raises():
    with pytest.raises(ValueError, match="no pitched content"):
        estimate_key(np.zeros(3 * RATE, dtype=np.float32), RATE)


# --------------------------------------------------------------------------- chords

PER_BAR = [("Am",), ("F",), ("C/E",), ("G", "Em"), ("Dm",), ("E5",), ("F", "G"), ("Am",)]


@pytest.fixture(scope="module")
def backing() -> tuple[Score, np.ndarray]:
    score = make_score(PER_BAR)
    samples = render_score(score)
    return score, np.stack([samples, 0.9 * samples])


def test_chords_per_bar_match_the_score(backing):
    score, samples = backing
    slots = chords_per_bar(samples, RATE, score)
    assert [slot.expected for slot in slots] == [s for bar in PER_BAR for s in bar]
    assert chord_match_rate(slots) == 1.0, [(s.expected, s.estimated, round(s.score, 2)) for s in slots]
    two = [slot for slot in slots if slot.bar_index == 3]  # G | Em in one 4/4 bar at 120 BPM
    assert [(s.start_seconds, s.end_seconds) for s in two] == [(6.0, 7.0), (7.0, 8.0)]
    by_symbol = {slot.expected: slot for slot in slots}
    assert by_symbol["C/E"].expected_root_pc == 0  # a slash chord's root, not its bass
    assert by_symbol["E5"].expected_quality == "either"
    assert by_symbol["Am"].estimated == "Am" and by_symbol["Am"].estimated_quality == "minor"
    assert all(slot.score > 0.5 for slot in slots)


def test_chords_shifted_by_one_bar_score_low(backing):
    _, samples = backing
    shifted = make_score(PER_BAR[1:] + PER_BAR[:1])
    assert chord_match_rate(chords_per_bar(samples, RATE, shifted)) < 0.5


def test_chords_past_the_end_raise(backing):
    score, samples = backing
    with pytest.raises(ValueError, match="past the end"):
        chords_per_bar(samples[:, : 4 * RATE], RATE, score)


@pytest.mark.filterwarnings("ignore:Trying to estimate tuning")
def test_silent_slots_are_no_chord():
    slots = chords_per_bar(np.zeros(5 * RATE, dtype=np.float32), RATE, make_score([("C",), ("Am",)]))
    assert [(s.estimated, s.estimated_root_pc, s.matches) for s in slots] == [("N", -1, False)] * 2
    assert chord_match_rate(slots) == 0.0


def test_matches_and_rate():
    def slot(expected: str, quality: str, estimated_pc: int, estimated_quality: str) -> ChordSlot:
        chord = parse_chord(expected)
        return ChordSlot(0, 0.0, 2.0, expected, chord.root_pc, quality, estimated_pc, estimated_quality, "", 0.9)

    slots = [slot("A5", "either", 9, "minor"), slot("Am", "minor", 9, "major"), slot("C/E", "major", 0, "major"),
             slot("C/E", "major", 4, "minor")]
    assert [s.matches for s in slots] == [True, False, True, False]
    assert chord_match_rate(slots) == 0.5
    with pytest.raises(ValueError):
        chord_match_rate([])
