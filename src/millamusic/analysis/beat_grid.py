"""A recording's bar grid: tempo, beats, time signature and downbeats, measured.

librosa tracks beats but has no downbeat or meter tracker, and its tracker can lock onto double
time (a 72 BPM ballad with eighth-note piano reads as 144). Both are decided here from where the
harmony changes: pop and rock change chords on bar lines, so the beat-synchronous chroma changes
most on downbeats, and its period in beats says the meter. We write this ourselves because no
maintained pip-installable downbeat tracker runs without TensorFlow or a hub download (madmom's
last release does not build on Python 3.11; BeatNet needs madmom).

The grid is one constant tempo fitted through the tracked beats (`drift_percent` says how far
the recording strays from it); bar 1 is the first downbeat at or after the first sound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from millamusic.analysis.features import chroma_frames, estimate_tempo, mono

HOP = 256  # ~5.8 ms at 44.1 kHz: beat times this fine
MIN_SECONDS = 10.0  # a bar grid needs a few bars: shorter clips are refused
MIN_TRACKED_BEATS = 8
STEADY_TOLERANCE = 0.1  # a tracked beat within 10 % of a period of the fitted grid counts as on it
HALF_TIME_ABOVE_BPM = 120.0  # double-time readings happen to slow songs: only halve tempos above this
HALF_TIME_MIN_BPM = 60.0
HALF_TIME_CONTRAST = 1.8
COMPOUND_ACCENT = 1.3  # how much the 4th half-beat must outweigh the 3rd and 5th for 6/8
HALF_BEAT_CONTRAST = 1.5  # the grid moves half a beat only when the harmony changes that much more clearly there
MIN_STEADY = 0.8  # share of steady beat intervals (_steady_share): bands 0.92-1.0, rubato 0.59
MIN_PULSE = 2.0  # onset strength on the grid's beats vs everywhere: ~6 for a band, ~1 for noise


class NoBeatError(ValueError):
    """The recording has no steady beat to draft a song on (silence, noise, rubato, too short)."""


@dataclass(frozen=True)
class BeatGrid:
    bpm: float
    beats_per_bar: int  # 3 or 4
    beat_seconds: tuple[float, ...]  # the fitted grid, from the first beat of bar 1 to the end
    meter_contrast: float  # how much more the harmony changes on the chosen downbeats than elsewhere (0..1)
    meter_runner_up: str  # the other reading ("3/4 from beat 2"), for the draft's comments
    drift_percent: float  # tempo of the last third vs the first third of the recording
    half_time: bool  # the tracker's double-time reading was halved
    compound: bool = False  # 3/4 bars that are 6/8 bars: accents on the 1st and 4th of six eighths

    @property
    def heard_meter(self) -> str:
        """The meter as a musician writes it: 6/8 for compound bars (read here as 3/4 of eighth pairs)."""
        return "6/8" if self.compound else self.time_signature

    @property
    def time_signature(self) -> str:
        return f"{self.beats_per_bar}/4"

    @property
    def first_downbeat_seconds(self) -> float:
        """Where bar 1 starts in the recording."""
        return self.beat_seconds[0]

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm

    def bar_starts(self, bars: int | None = None) -> np.ndarray:
        """Seconds of each bar's first beat, for every whole bar in the grid (or the first `bars`)."""
        whole = len(self.beat_seconds) // self.beats_per_bar
        count = whole if bars is None else bars
        return self.first_downbeat_seconds + np.arange(count) * self.beats_per_bar * self.seconds_per_beat

    @property
    def bars(self) -> int:
        return len(self.beat_seconds) // self.beats_per_bar


def _steady_period(tracked: np.ndarray) -> float:
    """Mean of the beat intervals within STEADY_TOLERANCE of their median: a skipped beat or a
    flip to the off-beat is left out rather than averaged in."""
    intervals = np.diff(tracked)
    median = float(np.median(intervals))
    return float(intervals[np.abs(intervals - median) < STEADY_TOLERANCE * median].mean())


def _fit_grid(envelope: np.ndarray, frame_seconds: float, period: float, spread: float = 0.01) -> tuple[float, float]:
    """(period s, offset s) of the constant beat grid that collects the most onset strength.

    The tracker's beats are steady in period but jump in phase now and then (it locks onto an
    off-beat for a few bars), so a line through them is pulled off; the period comes from the
    intervals that agree with their median, and a comb over the onset envelope then fine-tunes
    period (within 1 %) and phase (to a frame).
    """
    best = (-np.inf, period, 0.0)
    for candidate in period * np.linspace(1 - spread, 1 + spread, 41):
        grid = np.arange(0.0, envelope.size * frame_seconds - candidate, candidate)
        for phase in np.arange(0.0, candidate, frame_seconds):
            frames = np.round((grid + phase) / frame_seconds).astype(int)
            strength = float(envelope[frames[frames < envelope.size]].mean())
            if strength > best[0]:
                best = (strength, float(candidate), float(phase))
    return best[1], best[2]


def _steady_share(tracked: np.ndarray) -> float:
    """Share of the tracked beat-to-beat intervals within STEADY_TOLERANCE of their median: a band
    keeps time (0.92-1.0 on the test songs, and 1.0 for one speeding up 6 % or in 6/8), rubato
    does not (0.59). Local, so a slow drift or a grid read at another phase does not count against it."""
    intervals = np.diff(tracked)
    median = float(np.median(intervals))
    return float(np.mean(np.abs(intervals - median) < STEADY_TOLERANCE * median))


def _drift_percent(envelope: np.ndarray, frame_seconds: float, period: float) -> float:
    """Tempo of the last third vs the first third, each fitted on its own (within 5 %)."""
    thirds = np.array_split(envelope, 3)
    first, last = (_fit_grid(third, frame_seconds, period, spread=0.05)[0] for third in (thirds[0], thirds[-1]))
    return 100.0 * (first / last - 1.0)  # a shorter period at the end: the song sped up


def _changes(chroma: np.ndarray, frame_times: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Harmonic change at each beat: 1 - cosine of the chroma of the beat before vs the beat after."""
    edges = np.append(beats, beats[-1] + np.median(np.diff(beats)))
    sync = np.zeros((chroma.shape[0], len(beats)))
    for k in range(len(beats)):
        inside = (frame_times >= edges[k]) & (frame_times < edges[k + 1])
        if inside.any():
            sync[:, k] = chroma[:, inside].mean(axis=1)
    unit = sync / np.maximum(np.linalg.norm(sync, axis=0, keepdims=True), 1e-9)
    change = np.zeros(len(beats))
    change[1:] = 1.0 - np.sum(unit[:, 1:] * unit[:, :-1], axis=0)
    return change


def _best_period(change: np.ndarray, periods: tuple[int, ...]) -> list[tuple[float, int, int]]:
    """(contrast, period, phase) for every candidate, best first: how much more the harmony
    changes on every period-th beat from a phase than on the other beats."""
    scored = []
    for period in periods:
        for phase in range(period):
            on = np.zeros(len(change), bool)
            on[phase::period] = True
            on[0] = False  # the first beat has no beat before it
            if on.sum() < 2:
                continue
            scored.append((float(change[on].mean() - change[~on][1:].mean()), period, phase))
    return sorted(scored, reverse=True)


def estimate_beat_grid(samples: np.ndarray, sample_rate: int, *, prior_bpm: float | None = None,
                       chroma: tuple[np.ndarray, np.ndarray] | None = None) -> BeatGrid:
    """The bar grid of a recording ((n,) or (channels, n) samples). `prior_bpm` (a producer's
    hint) picks the metrical level; without it a double-time reading of a slow song is halved
    when the chords change only every 8 tracked beats. `chroma`: `chroma_frames` of these samples,
    when the caller has it already.

    Raises NoBeatError when the recording is under MIN_SECONDS, silent, or has no steady beat.
    """
    import librosa  # librosa: ~1 s with its numba/scipy imports

    y = mono(samples)
    seconds = y.size / sample_rate
    if seconds < MIN_SECONDS:
        raise NoBeatError(f"the recording is {seconds:.1f} s long; a bar grid needs at least {MIN_SECONDS:g} s")
    level = np.sqrt(np.mean(np.square(y, dtype=np.float64)))
    if level < 1e-4:
        raise NoBeatError(f"the recording is silent (RMS {20 * np.log10(max(level, 1e-12)):.0f} dBFS)")
    envelope = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=HOP)
    try:
        tracked = np.array(estimate_tempo(y, sample_rate, hop_length=HOP, prior_bpm=prior_bpm,
                                          envelope=envelope).beat_seconds)
    except ValueError as error:
        raise NoBeatError(str(error)) from None
    if len(tracked) < MIN_TRACKED_BEATS:
        raise NoBeatError(f"found {len(tracked)} beats in {seconds:.1f} s: no steady beat")
    period, offset = _fit_grid(envelope, HOP / sample_rate, _steady_period(tracked))
    steady = _steady_share(tracked)
    grid_frames = np.round(np.arange(offset, seconds - period, period) * sample_rate / HOP).astype(int)
    pulse = float(envelope[grid_frames[grid_frames < envelope.size]].mean() / max(envelope.mean(), 1e-12))
    if pulse < MIN_PULSE or steady < MIN_STEADY:
        heard = []
        if pulse < MIN_PULSE:
            heard.append(f"the onsets on the best steady grid ({60 / period:.1f} BPM) are only {pulse:.1f}x as strong "
                         "as elsewhere (a band with a beat: ~6x)")
        if steady < MIN_STEADY:
            heard.append(f"only {steady:.0%} of the beat-to-beat intervals are steady (a band: over 90 %)")
        raise NoBeatError(f"no clear beat: {'; '.join(heard)}; rubato, free time or noise")

    # The grid from the first sound to the end: the tracker's first beats are often late.
    sounding = np.flatnonzero(envelope > 0.05 * envelope.max())
    first_sound = float(librosa.frames_to_time(sounding[0], sr=sample_rate, hop_length=HOP)) if sounding.size else 0.0
    start = offset + np.ceil((first_sound - 0.5 * period - offset) / period) * period
    beats = np.arange(start, seconds, period)

    chroma, frame_times = chroma if chroma is not None else chroma_frames(y, sample_rate)
    change = _changes(chroma, frame_times, beats)
    half_time = False
    ranked = _best_period(change, (3, 4, 6, 8))
    grid_period, bpm = period, 60.0 / period
    if prior_bpm is not None:
        half_time = abs(np.log2(bpm / 2 / prior_bpm)) < abs(np.log2(bpm / prior_bpm))
    elif bpm > HALF_TIME_ABOVE_BPM and bpm / 2 >= HALF_TIME_MIN_BPM:
        # Chords changing every 8 (or 6) tracked beats far more clearly than every 4 (or 3): a
        # bar of 8 eighths, i.e. a double-time reading. Measured: the 72 BPM ballad read as 144
        # gives 0.13 vs 0.05; rock at 150/160 gives 0.04 vs 0.03 (a vocal phrase every 2 bars).
        slow = max(c for c, per, _ in ranked if per in (6, 8))
        fast = max(c for c, per, _ in ranked if per in (3, 4))
        half_time = slow > HALF_TIME_CONTRAST * max(fast, 1e-3)
    if half_time:
        # Keep the half of the beats that holds the downbeats: the best period's phase parity.
        phase = next(p for _, per, p in ranked if per in (6, 8)) % 2
        beats, period = beats[phase::2], 2 * period
        change = _changes(chroma, frame_times, beats)
    ranked = [r for r in _best_period(change, (3, 4)) if r[0] > -1]
    # Where two phases of the grid are about as strong (a 6/8 bar read in pairs of eighths hits one
    # accent either way), the comb may sit half a beat off: the harmony, changing on bar lines,
    # says which half is the beat.
    shifted = beats[1:] - period / 2
    shifted_ranked = [r for r in _best_period(_changes(chroma, frame_times, shifted), (3, 4)) if r[0] > -1]
    if shifted_ranked and shifted_ranked[0][0] > HALF_BEAT_CONTRAST * ranked[0][0]:
        beats, ranked = shifted, shifted_ranked
    contrast, beats_per_bar, phase = ranked[0]
    runner = next((r for r in ranked[1:] if r[1] != beats_per_bar), ranked[1])
    beats = beats[phase:]
    compound = beats_per_bar == 3 and _compound(envelope, sample_rate, beats, period)
    return BeatGrid(
        bpm=60.0 / period, beats_per_bar=beats_per_bar, beat_seconds=tuple(float(b) for b in beats),
        meter_contrast=float(contrast),
        meter_runner_up=f"{runner[1]}/4 from beat {(runner[2] - phase) % runner[1] + 1}",
        drift_percent=_drift_percent(envelope, HOP / sample_rate, grid_period),
        half_time=half_time, compound=compound,
    )


def _compound(envelope: np.ndarray, sample_rate: int, beats: np.ndarray, period: float) -> bool:
    """Whether 3/4 bars are 6/8 bars: the onset strength at each of a bar's six half-beats,
    averaged over the bars. 3/4 accents the 1st, 3rd and 5th (its three beats); 6/8 the 1st and
    4th (two dotted quarters), so its 4th outweighs the 3rd and 5th."""
    starts = np.asarray(beats[::3][:-1])
    frames = np.round((starts[:, None] + np.arange(6)[None, :] * period / 2) * sample_rate / HOP).astype(int)
    # the strongest onset within ~25 ms of each half-beat: a hit is rarely on the exact frame
    reach = max(1, round(0.025 * sample_rate / HOP))
    near = np.stack([envelope[np.clip(frames + d, 0, envelope.size - 1)] for d in range(-reach, reach + 1)])
    accent = near.max(axis=0).mean(axis=0)
    return bool(accent[3] > COMPOUND_ACCENT * max(accent[2], accent[4]))
