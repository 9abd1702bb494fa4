"""millamusic.grid_fit on synthetic backings whose tempo, beat times and key are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from millamusic.analysis import grid_fit
from millamusic.analysis.features import KeyEstimate, estimate_key, estimate_tempo
from millamusic.analysis.grid_fit import TRACKER_LAG_SECONDS, fit_to_grid
from millamusic.core.audio import Audio
from millamusic.music.theory import parse_chord, parse_key
from tests.signals import chord_sound, kick, noise_burst, place, white_noise

RATE = 44100
A_MINOR = parse_key("A minor")
# i-VI-III-VII plus the cadence iv-V-i, which is what makes a minor key read as minor (see
# tests/test_analysis.py); transposed by `transpose` semitones.
MINOR_LOOP = ("Am", "F", "C", "G", "Am", "Dm", "E", "Am")
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


# --------------------------------------------------------------------------- signal builders


def beat_times(start_bpm: float, end_bpm: float, seconds: float, first: float = 0.0) -> np.ndarray:
    """Beats from `first` to `seconds`, the tempo moving linearly in time from start_bpm to end_bpm."""
    times, t = [], first
    while t < seconds:
        times.append(t)
        t += 60.0 / (start_bpm + (end_bpm - start_bpm) * t / seconds)
    return np.array(times)


def backing(beats: np.ndarray, seconds: float, *, transpose: int = 0, seed: int = 0) -> Audio:
    """Kick + hat on every beat, snare on 2 and 4, one chord of MINOR_LOOP per 4-beat bar; mono Audio."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    drums, harmony = np.zeros(n), np.zeros(n)
    thump = kick(rate=RATE)
    for i, at in enumerate(np.rint(beats * RATE).astype(int)):
        place(drums, at, thump * (1.0 if i % 4 == 0 else 0.6))
        place(drums, at, noise_burst(rng, 0.05, decay=0.012, gain=0.25, rate=RATE))
        if i % 2 == 1:
            place(drums, at, noise_burst(rng, 0.2, decay=0.05, gain=0.35, rate=RATE, bright=False))
    for bar, start in enumerate(beats[::4]):
        end = beats[4 * bar + 4] if 4 * bar + 4 < len(beats) else seconds
        root = parse_chord(MINOR_LOOP[bar % len(MINOR_LOOP)])
        name = NAMES[(root.root_pc + transpose) % 12] + ("m" if root.is_minor else "")
        place(harmony, round(start * RATE), chord_sound(name, end - start, rate=RATE, harmonics=5))
    mix = harmony + drums * np.sqrt(np.mean(harmony**2) / np.mean(drums**2))
    return Audio((0.8 * mix / np.max(np.abs(mix)))[None, :], RATE)


def grid_errors_ms(audio: Audio, bpm: float) -> np.ndarray:
    """Signed ms from each beat of `audio` to the nearest grid beat k * 60 / bpm.

    Beats as tracked, less the tracker's lag behind the onsets (which fit_to_grid allows for).
    """
    tracked = estimate_tempo(audio.samples, audio.sample_rate, prior_bpm=bpm).beat_seconds
    beats = np.asarray(tracked) - TRACKER_LAG_SECONDS
    period = 60.0 / bpm
    return 1000 * (beats - np.rint(beats / period) * period)


SECONDS = 32.0
FRAMES = int(SECONDS * RATE)


@pytest.fixture(scope="module")
def on_tempo_late() -> Audio:
    """120 BPM, beats 0.1 s late."""
    return backing(beat_times(120, 120, SECONDS, first=0.1), SECONDS, seed=1)


# --------------------------------------------------------------------------- tempo


@pytest.fixture(scope="module")
def fast_fit():
    audio = backing(beat_times(123, 123, SECONDS, first=0.23), SECONDS, seed=2)
    return fit_to_grid(audio, tempo_bpm=120, key=A_MINOR, frames=FRAMES)


def test_fast_track_is_slowed_to_the_spec_tempo(fast_fit):
    fit = fast_fit
    assert abs(fit.measured_bpm / 123 - 1) < 0.005, fit
    assert abs(fit.fitted_bpm / 120 - 1) < 0.005, fit
    assert fit.stretch == pytest.approx(123 / 120, rel=0.003)
    assert fit.audio.frames == FRAMES and fit.audio.channels == 1 and fit.audio.sample_rate == RATE
    assert abs(fit.offset_seconds) < 0.25  # less than half a beat
    errors = grid_errors_ms(fit.audio, 120)
    assert np.percentile(np.abs(errors), 90) < 10, errors  # R3's ratio error would walk ~+-15 ms here
    assert fit.pitch_shift == 0 and fit.warnings == ()


def test_on_tempo_track_is_only_shifted(on_tempo_late):
    fit = fit_to_grid(on_tempo_late, tempo_bpm=120, key=A_MINOR, frames=FRAMES)
    assert fit.stretch == 1.0 and fit.pitch_shift == 0 and fit.warnings == ()
    assert abs(fit.fitted_bpm / 120 - 1) < 0.005
    # Beats 0.1 s late: moved 0.1 s earlier, i.e. the front cut and the samples otherwise untouched.
    assert fit.offset_seconds == pytest.approx(-0.1, abs=0.015)
    cut = round(-fit.offset_seconds * RATE)
    np.testing.assert_array_equal(fit.audio.samples[:, : FRAMES - cut], on_tempo_late.samples[:, cut:])
    assert not fit.audio.samples[:, FRAMES - cut:].any()  # padded with silence to the length
    errors = grid_errors_ms(fit.audio, 120)
    assert np.percentile(np.abs(errors), 90) < 15, errors


def test_drifting_track_follows_the_grid():
    audio = backing(beat_times(118, 122, SECONDS, first=0.05), SECONDS, seed=3)
    fit = fit_to_grid(audio, tempo_bpm=120, key=A_MINOR, frames=FRAMES)
    assert fit.stretch != 1.0 and abs(fit.fitted_bpm / 120 - 1) < 0.005, fit
    errors = grid_errors_ms(fit.audio, 120)
    # Its mean tempo is 120, so one global factor would leave it as is, the ends ~90 ms off.
    assert np.percentile(np.abs(errors), 90) < 10 and np.abs(errors).max() < 15, errors


@pytest.mark.parametrize("spec_bpm", [60.0, 240.0])
def test_half_and_double_time_are_the_same_grid(on_tempo_late, spec_bpm):
    fit = fit_to_grid(on_tempo_late, tempo_bpm=spec_bpm, key=A_MINOR, frames=FRAMES)
    assert fit.stretch == 1.0, fit
    assert abs(fit.measured_bpm / spec_bpm - 1) < 0.01, fit
    assert fit.audio.frames == FRAMES


@pytest.mark.filterwarnings("ignore:Trying to estimate tuning", "ignore:n_fft=")
@pytest.mark.parametrize("samples", [
    np.zeros((2, 5 * RATE), dtype=np.float32),
    white_noise((2, RATE // 2), seed=4, level=0.1),
], ids=["silence", "short-noise"])
def test_no_beats_warns_and_keeps_the_audio(samples):
    fit = fit_to_grid(Audio(samples, RATE), tempo_bpm=120, key=A_MINOR, frames=3 * RATE)
    assert fit.stretch == 1.0 and fit.offset_seconds == 0.0 and np.isnan(fit.measured_bpm)
    assert any("tempo could not be measured" in w for w in fit.warnings), fit.warnings
    assert fit.audio.samples.shape == (2, 3 * RATE)
    keep = min(3 * RATE, samples.shape[1])
    np.testing.assert_array_equal(fit.audio.samples[:, :keep], samples[:, :keep])


# --------------------------------------------------------------------------- key


@pytest.fixture(scope="module")
def b_minor() -> Audio:
    return backing(beat_times(120, 120, 32.0), 32.0, transpose=2, seed=5)


def test_key_shift_moves_b_minor_to_a_minor(b_minor):
    fit = fit_to_grid(b_minor, tempo_bpm=120, key=A_MINOR, frames=b_minor.frames, key_policy="shift")
    assert fit.measured_key == "B minor" and fit.pitch_shift == -2, fit
    assert fit.stretch == 1.0
    assert any("pitch-shifted by -2" in w for w in fit.warnings), fit.warnings
    assert estimate_key(fit.audio.samples, RATE).name == "A minor"
    errors = grid_errors_ms(fit.audio, 120)  # the Rubber Band pass did not move the beats off the grid
    assert np.percentile(np.abs(errors), 90) < 15, errors


def test_key_warn_leaves_the_pitch(b_minor):
    fit = fit_to_grid(b_minor, tempo_bpm=120, key=A_MINOR, frames=b_minor.frames)
    assert fit.measured_key == "B minor" and fit.pitch_shift == 0 and fit.key_margin > 0.05
    [warning] = fit.warnings
    assert "B minor" in warning and "A minor" in warning and "fit_key: shift" in warning, warning


def test_key_shift_beyond_max_only_warns():
    audio = backing(beat_times(120, 120, 32.0), 32.0, transpose=7, seed=6)  # E minor: +5 to A minor
    fit = fit_to_grid(audio, tempo_bpm=120, key=A_MINOR, frames=audio.frames, key_policy="shift")
    assert fit.measured_key == "E minor" and fit.pitch_shift == 0, fit
    [warning] = fit.warnings
    assert "max_key_shift" in warning and "E minor" in warning and "A minor" in warning, warning


def test_relative_key_is_a_mild_warning(b_minor):
    fit = fit_to_grid(b_minor, tempo_bpm=120, key=parse_key("D major"), frames=b_minor.frames, key_policy="shift")
    assert fit.measured_key == "B minor" and fit.pitch_shift == 0
    [warning] = fit.warnings
    assert "relative" in warning and "same notes" in warning, warning


def test_bad_key_policy_names_the_valid_ones(on_tempo_late):
    with pytest.raises(ValueError, match="warn, shift"):
        fit_to_grid(on_tempo_late, tempo_bpm=120, key=A_MINOR, frames=FRAMES, key_policy="transpose")


def _pretend_key(monkeypatch, name: str, margin: float, runner_up: str = "C major") -> None:
    """Make fit_to_grid's key estimate say `name` (the decisions, without building a signal for each)."""
    measured = parse_key(name)
    estimate = KeyEstimate(measured.tonic_pc, measured.mode, measured.name, 0.8, runner_up, margin)
    monkeypatch.setattr(grid_fit, "estimate_key", lambda *_: estimate)


@pytest.mark.filterwarnings("ignore:n_fft=")
def test_ambiguous_key_is_not_shifted(monkeypatch):
    _pretend_key(monkeypatch, "B minor", margin=0.005, runner_up="D major")
    fit = fit_to_grid(Audio.silence(RATE, RATE), tempo_bpm=120, key=A_MINOR, frames=RATE, key_policy="shift")
    assert fit.pitch_shift == 0 and fit.key_margin == 0.005
    assert any("ambiguous" in w and "D major" in w for w in fit.warnings), fit.warnings


@pytest.mark.filterwarnings("ignore:n_fft=")
def test_other_mode_is_shifted_onto_the_same_notes(monkeypatch):
    _pretend_key(monkeypatch, "D major", margin=0.2)  # spec A minor = the notes of C major
    fit = fit_to_grid(Audio.silence(RATE, RATE), tempo_bpm=120, key=A_MINOR, frames=RATE, key_policy="shift")
    assert fit.pitch_shift == -2 and fit.audio.frames == RATE
    assert any("-2 semitones to C major" in w for w in fit.warnings), fit.warnings


def test_a_stretch_that_does_not_help_is_undone(monkeypatch):
    """When the tempo measured after stretching is further off than before, the take stays unstretched."""
    from millamusic.analysis.features import TempoEstimate

    rate = 22050
    samples = white_noise((1, rate * 20), seed=7, level=0.1)
    readings = iter([126.0, 135.0])  # before the stretch, then after it: worse

    def fake_tempo(_samples, _rate, **_kwargs):
        bpm = next(readings)
        beats = tuple(np.arange(0, 19, 60 / bpm))
        return TempoEstimate(bpm=bpm, librosa_bpm=bpm, beat_seconds=beats)

    monkeypatch.setattr(grid_fit, "estimate_tempo", fake_tempo)
    monkeypatch.setattr(grid_fit, "_fit_key", lambda *_args: ("A minor", 0.5, 0, []))
    fit = fit_to_grid(Audio(samples, rate), tempo_bpm=120, key=parse_key("A minor"), frames=samples.shape[1])
    assert fit.stretch == 1.0 and fit.fitted_bpm == fit.measured_bpm == 126.0
    assert any("did not bring the backing onto the grid" in w for w in fit.warnings)
    shift = round(fit.offset_seconds * rate)  # unstretched: the input moved by the phase shift only
    if shift >= 0:
        assert np.array_equal(fit.audio.samples[:, shift:], samples[:, : samples.shape[1] - shift])
    else:
        assert np.array_equal(fit.audio.samples[:, : shift], samples[:, -shift:])
