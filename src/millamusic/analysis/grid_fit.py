"""Fit a generated backing track onto the score's beat grid: tempo, beat phase and key.

A MusicGen backing comes out near, not at, the song's tempo (it drifts a few BPM, also within
the track), with its beats at an arbitrary phase and sometimes in another key. The vocals are
sung exactly on the score's grid (beat k at k * 60 / tempo seconds), so before mixing we
  1. beat-track the backing and time-stretch it so its beats follow the grid (a time map: the
     stretch varies along the track, so slow drift inside it is corrected too),
  2. shift it (pad or cut, less than half a beat) so its beats coincide with the grid beats,
  3. compare its key with the spec's and pitch-shift it (in the same Rubber Band pass as the
     stretch) or warn,
  4. pad or cut it to exactly the song's length.
Stretching and shifting use Rubber Band through pedalboard.time_stretch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pedalboard

from millamusic.analysis.features import estimate_key, estimate_tempo
from millamusic.core.audio import Audio
from millamusic.music.theory import Key

KEY_POLICIES = ("warn", "shift")


# MusicGen drifts a few BPM (~4 %). A larger mismatch at the spec's metrical level is more likely
# a mis-tracked beat (dotted or triplet feel) than a tempo to correct, so it is not stretched.
MAX_TEMPO_DEVIATION = 0.12
SMOOTH_INTERVALS = 8  # local tempo = mean beat period over +-8 intervals (~8 s at 120 BPM)
OFF_GRID = 0.1  # an interval more than a tenth of a beat off a whole number of beats is irregular
KEY_MARGIN_MIN = 0.02  # estimate_key margins on clear progressions are > 0.05 (tests/test_analysis.py)


# pedalboard applies a per-sample stretch array ~2000-3000 input samples early (clicks through a
# 0.9 -> 1.1 ramp, R2 engine: delaying the array by 0 / 2048 / 3072 samples left 10 / 1.5 / -2.9 ms
# of drift over 20 s, for a 1.1 -> 0.9 ramp similar). Delay it by this much to match.
RUBBERBAND_LEAD = 2048


# estimate_tempo's beats come late of the sound's onsets (the onset envelope peaks a frame or two
# after the attack): on 120 BPM tracks of kicks / hats / clicks / 10 ms plucks placed exactly on
# the grid, the median tracked beat was 10.5 / 9.3 / 8.2 / 13.2 ms late. Vocals start on the grid,
# so the onsets, not the tracker's beats, are put there.
TRACKER_LAG_SECONDS = 0.010


@dataclass(frozen=True)
class GridFit:
    audio: Audio  # exactly `frames` frames, same rate and channels as the input
    measured_bpm: float  # tempo before fitting, at the spec's metrical level (nan: no beats found)
    fitted_bpm: float  # measured again after fitting, same level (nan: not measurable)
    stretch: float  # overall tempo ratio applied, measured / spec: 1.025 = slowed by 2.5 % (1.0 = none)
    offset_seconds: float  # shift applied so that beats land on the grid (positive = audio moved later)
    measured_key: str  # e.g. "A minor", before any shift ("unknown" where there is no pitch)
    key_margin: float
    pitch_shift: int  # semitones applied (0 = none)
    warnings: tuple[str, ...]


def fit_to_grid(audio: Audio, *, tempo_bpm: float, key: Key, frames: int,
                tempo_tolerance: float = 0.01, key_policy: str = "warn",
                max_key_shift: int = 2) -> GridFit:
    """Stretch, shift and (optionally) pitch-shift `audio` onto the grid of `tempo_bpm` in `key`.

    Never raises for unusable audio (silence, noise): it is then left as is, padded or cut to
    `frames`, and `warnings` say what could not be measured. Raises ValueError for bad arguments.
    """
    if key_policy not in KEY_POLICIES:
        raise ValueError(f"key_policy must be one of {', '.join(KEY_POLICIES)}, got {key_policy!r}")
    if tempo_bpm <= 0 or frames < 0:
        raise ValueError(f"need tempo_bpm > 0 and frames >= 0, got {tempo_bpm} and {frames}")
    rate = audio.sample_rate
    warnings: list[str] = []

    # --- tempo: a per-sample Rubber Band stretch factor, or None for no stretch
    try:
        before = estimate_tempo(audio.samples, rate, prior_bpm=tempo_bpm)
    except ValueError as error:
        before = None
        warnings.append(f"the backing's tempo could not be measured ({error}); not stretched or shifted")
    measured_bpm = math.nan
    factors = None
    if before is not None:
        level = _metrical_level(before.bpm, tempo_bpm)
        measured_bpm = before.bpm / level
        if abs(measured_bpm / tempo_bpm - 1) > MAX_TEMPO_DEVIATION:
            warnings.append(
                f"backing measured at {measured_bpm:.1f} BPM, the spec says {tempo_bpm:g}: too far apart to be "
                "drift, so it was not stretched (a mis-tracked beat or a backing at another tempo?)"
            )
        else:
            factors = _stretch_factors(np.asarray(before.beat_seconds), rate, audio.frames,
                                       beat_period=60.0 / (tempo_bpm * level))
            # Stretch only where the local tempo is off by more than the tolerance: Rubber Band
            # is not free of artefacts, a backing already on tempo is left bit-exact.
            if np.max(np.abs(factors - 1.0)) <= tempo_tolerance:
                factors = None

    # --- key, measured on the unprocessed audio
    measured_key, key_margin, semitones, key_warnings = _fit_key(audio, key, key_policy, max_key_shift)
    warnings += key_warnings

    # --- one Rubber Band pass for both, then measure again: the stretcher itself moves the beats a
    # few ms (latency), so the phase below is taken from the processed audio, not predicted.
    samples = audio.samples
    stretch = 1.0
    beats = np.asarray(before.beat_seconds) if before is not None else None
    fitted_bpm = measured_bpm
    if factors is not None or semitones:

        if factors is not None:
            stretch = float(np.mean(1.0 / factors))  # output length / input length
            lead = min(RUBBERBAND_LEAD, factors.size)
            factors = np.concatenate([np.full(lead, factors[0]), factors[: factors.size - lead]])
        # high_quality=False is Rubber Band's R2 engine. The R3 engine (high_quality=True) quantises
        # the ratio to its hop size: clicks stretched by 0.95-1.05 came out up to +-0.18 % off the
        # asked ratio (0.3 s over 3 minutes, the beats walk off the grid); R2 was exact to 0.001 %
        # and 5x faster. Its crisp transients suit drums; the vocals are not stretched.
        samples = pedalboard.time_stretch(samples, rate, stretch_factor=factors if factors is not None else 1.0,
                                          pitch_shift_in_semitones=float(semitones), high_quality=False)
        if before is not None:
            try:
                after = estimate_tempo(samples, rate, prior_bpm=tempo_bpm)
                beats = np.asarray(after.beat_seconds)
                fitted_bpm = after.bpm / _metrical_level(after.bpm, tempo_bpm)
            except ValueError as error:
                beats, fitted_bpm = None, math.nan
                warnings.append(f"the fitted backing's beats could not be measured ({error}); not phase-shifted")
        if factors is not None and not abs(fitted_bpm / tempo_bpm - 1) <= abs(measured_bpm / tempo_bpm - 1):
            # The stretch made it worse (no steady beat to track: noise, rubato, a tracker that
            # wandered): keep the take as it was rather than warp it by a guess.
            warnings.append(f"stretching did not bring the backing onto the grid (measured {measured_bpm:.1f} BPM, "
                            f"after stretching {fitted_bpm:.1f}, spec {tempo_bpm:g}): left unstretched; the beat "
                            "tracker finds no steady beat in it")
            samples = audio.samples if not semitones else pedalboard.time_stretch(
                audio.samples, rate, pitch_shift_in_semitones=float(semitones), high_quality=False)
            stretch, beats, fitted_bpm = 1.0, np.asarray(before.beat_seconds), measured_bpm

    # --- phase: move the audio by the median beat offset from the grid (less than half a beat)
    offset_seconds = 0.0
    if beats is not None:
        beat_seconds = 60.0 / tempo_bpm
        # A tracker at double time (8th notes) is only known modulo half a beat.
        if _metrical_level(fitted_bpm, tempo_bpm) == 2.0:
            beat_seconds /= 2
        shift_frames = -round(_phase_offset(beats - TRACKER_LAG_SECONDS, beat_seconds) * rate)
        offset_seconds = shift_frames / rate
        samples = _shift(samples, shift_frames)

    return GridFit(
        audio=Audio(samples, rate).fit_length(frames),
        measured_bpm=float(measured_bpm),
        fitted_bpm=float(fitted_bpm),
        stretch=stretch,
        offset_seconds=offset_seconds,
        measured_key=measured_key,
        key_margin=key_margin,
        pitch_shift=semitones,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- tempo


def _metrical_level(measured_bpm: float, tempo_bpm: float) -> float:
    """2.0 where the tracker found double time (8th notes), 0.5 for half time, else 1.0.

    All three are the same grid: a backing tracked at 241 BPM for a 120 BPM spec is 0.4 % fast,
    not twice as fast.
    """
    if not math.isfinite(measured_bpm):
        return 1.0
    return min((0.5, 1.0, 2.0), key=lambda level: abs(math.log(measured_bpm / (tempo_bpm * level))))


def _stretch_factors(beats: np.ndarray, rate: int, n_frames: int, *, beat_period: float) -> np.ndarray:
    """Tracked beat times -> Rubber Band stretch factor per input frame (source period / grid period).

    The time map: each beat-to-beat interval is stretched to a whole number of grid beats. Single
    intervals are only known to the tracker's ~6 ms frame, so each factor is the mean period over
    +-SMOOTH_INTERVALS intervals (a ratio of sums, so the beats' positions add up: slow drift is
    followed, jitter is not). Irregular intervals (the tracker hopping to the off-beat and back,
    or a skipped beat it cannot count) are left out of the means and take their neighbours' value.
    Before the first and after the last beat the nearest interval's factor holds.
    """
    intervals = np.diff(beats)
    median = float(np.median(intervals))
    counts = np.rint(intervals / median)
    regular = (counts >= 1) & (counts <= 4) & (np.abs(intervals / median - counts) < OFF_GRID)
    if not regular.any():  # nothing countable: one factor from the median interval
        return np.full(n_frames, median / beat_period)
    seconds = _window_sums(np.where(regular, intervals, 0.0), SMOOTH_INTERVALS)
    beats_in = _window_sums(np.where(regular, counts, 0.0), SMOOTH_INTERVALS)
    overall = intervals[regular].sum() / counts[regular].sum()
    period = np.divide(seconds, beats_in, out=np.full_like(seconds, overall), where=beats_in > 0)
    per_interval = period / beat_period

    # Piecewise constant over the input frames: interval i runs from beat i to beat i + 1.
    edges = np.clip(np.rint(beats * rate).astype(np.int64), 0, n_frames)
    factors = np.empty(n_frames)
    factors[: edges[0]] = per_interval[0]
    factors[edges[-1]:] = per_interval[-1]
    factors[edges[0]: edges[-1]] = np.repeat(per_interval, np.diff(edges))
    return factors


def _window_sums(values: np.ndarray, half: int) -> np.ndarray:
    """Sum of values[i - half : i + half + 1] for every i, the window cut at the ends."""
    total = np.concatenate([[0.0], np.cumsum(values)])
    i = np.arange(values.size)
    return total[np.minimum(i + half + 1, values.size)] - total[np.maximum(i - half, 0)]


def _phase_offset(beats: np.ndarray, beat_seconds: float) -> float:
    """Median offset (s) of the beats from the nearest grid beat k * beat_seconds, in [-1/2, 1/2) beat.

    Offsets wrap around (a beat 0.49 beat late is 0.51 early), so they are taken relative to their
    circular mean before the median: a plain median of wrapped offsets near +-half a beat splits.
    """
    phase = 2 * np.pi * np.asarray(beats) / beat_seconds
    centre = float(np.angle(np.mean(np.exp(1j * phase))))
    residual = np.angle(np.exp(1j * (phase - centre)))  # in (-pi, pi]
    offset = (centre + float(np.median(residual))) / (2 * np.pi)  # in beats
    return ((offset + 0.5) % 1.0 - 0.5) * beat_seconds


def _shift(samples: np.ndarray, frames: int) -> np.ndarray:
    """Move (channels, n) samples later by `frames` (pad silence in front) or earlier (cut the front)."""
    if frames >= 0:
        return np.pad(samples, ((0, 0), (frames, 0)))
    return samples[:, -frames:]


# --------------------------------------------------------------------------- key


def _fit_key(audio: Audio, key: Key, policy: str, max_shift: int) -> tuple[str, float, int, list[str]]:
    """-> (measured key name, margin, semitones to shift, warnings)."""
    try:
        estimate = estimate_key(audio.samples, audio.sample_rate)
    except ValueError as error:
        return "unknown", 0.0, 0, [f"the backing's key could not be measured ({error}); not pitch-shifted"]
    measured = Key(estimate.tonic_pc, estimate.mode)
    name, margin = estimate.name, estimate.margin
    if measured == key:
        return name, margin, 0, []
    said = f"backing measured in {name}, the spec says {key.name}"
    if set(measured.scale_pcs) == set(key.scale_pcs):
        # Same notes, only the centre of gravity differs: the chords will still fit the melody.
        return name, margin, 0, [f"{said}: its relative {measured.mode}, the same notes, so left as is"]

    # Move the measured tonic onto the spec's (same mode), or onto the spec's relative in the
    # measured mode (D major for spec A minor -> C major): either way the pitch set matches.
    target = key.tonic_pc if measured.mode == key.mode else (key.tonic_pc + (3 if key.mode == "minor" else 9)) % 12
    semitones = (target - measured.tonic_pc + 6) % 12 - 6  # -6..+5, the smaller way round
    fixed = Key(target, measured.mode).name
    if margin < KEY_MARGIN_MIN:
        return name, margin, 0, [
            (f"{said}, but the key estimate is ambiguous ({name} vs {estimate.runner_up}, margin {margin:.3f}); "
             "not pitch-shifted: listen to the backing, or change the spec key if it is really in another key")
        ]
    if policy == "shift" and abs(semitones) <= max_shift:
        return name, margin, semitones, [f"{said}: pitch-shifted by {semitones:+d} semitones to {fixed}"]
    if policy == "shift":
        fix = (f"{abs(semitones)} semitones is more than max_key_shift ({max_shift}) shifts cleanly: "
               f"regenerate the backing or change the spec key to {name}")
    else:
        fix = (f"set engines.backing_options.fit_key: shift to pitch-shift it by {semitones:+d} semitones, "
               f"or change the spec key to {name}")
    return name, margin, 0, [f"{said}; not pitch-shifted: {fix}"]
