"""Listen through numbers: tempo, key and per-bar chords measured from rendered audio.

Used to check that a render follows its score. librosa is imported inside the functions, so
importing this module stays cheap (librosa pulls in numba and compiles its beat tracker).

Every function takes float samples shaped (n,) (mono) or (channels, n) and mixes to mono.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from millamusic.music.theory import NOTE_NAMES, Key, parse_chord

if TYPE_CHECKING:
    from millamusic.music.score import Score


MIN_BEATS = 4
TEMPO_HOP = 512  # librosa's default hop for its global tempo estimate


# Krumhansl & Kessler (1982) probe-tone profiles, index 0 = tonic.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])


KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


CHROMA_HOP = 2048  # ~46 ms at 44.1 kHz: chords and keys change far slower than that
CHROMA_FMIN_HZ = 82.41  # E2
CHROMA_OCTAVES = 6
ENDING_SECONDS = 6.0  # how much of the end of a song shows where it comes to rest
ENDING_WEIGHT = 1.0
SLOT_SKIP = 0.1  # fraction of each chord slot left out: attacks, drum fills, late changes


# --------------------------------------------------------------------------- helpers


def mono(samples: np.ndarray) -> np.ndarray:
    """(n,) or (channels, n) -> float32 (n,)."""
    x = np.asarray(samples)
    if x.ndim == 2:
        if x.shape[0] > x.shape[1]:
            raise ValueError(f"samples shaped {x.shape} look like (n, channels); pass (channels, n), e.g. samples.T")
        x = x.mean(axis=0)
    elif x.ndim != 1:
        raise ValueError(f"samples must be shaped (n,) or (channels, n), got {x.shape}")
    if x.size == 0:
        raise ValueError("samples are empty")
    return np.ascontiguousarray(x, dtype=np.float32)


def _zscore(v: np.ndarray) -> np.ndarray:
    """Zero mean, unit norm along the last axis; all-zero where there is no variance."""
    v = v - v.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 1e-12)


def _rotations(profile: np.ndarray) -> np.ndarray:
    """(12,) profile for tonic C -> (12, 12), row r = profile for tonic r."""
    return np.stack([np.roll(profile, r) for r in range(12)])


# --------------------------------------------------------------------------- tempo


@dataclass(frozen=True)
class TempoEstimate:
    bpm: float  # from a line fitted through the beat times: not quantised by the tracker's lag grid
    librosa_bpm: float  # librosa's global estimate at hop ~512, for reference (lag-quantised: 1-2 % off)
    beat_seconds: tuple[float, ...]  # every beat the tracker found, outliers included


def _bpm_from_beats(times: np.ndarray) -> float:
    """Beat times (k,) -> BPM: the mean of the beat-to-beat intervals within 10 % of their median.

    The tracker's beats sit on a 5.8 ms frame grid, so single intervals are coarse, but their mean
    over a song is not. Intervals off the median (a skipped beat, or the tracker flipping from the
    beat to the off-beat and back, which a straight-line fit of time vs beat index mis-counts by
    half a beat each time) are left out rather than counted.
    """
    intervals = np.diff(times)
    period = float(np.median(intervals))
    steady = intervals[np.abs(intervals - period) < 0.1 * period]
    return 60.0 / float(steady.mean())


def estimate_tempo(samples: np.ndarray, sample_rate: int, *, hop_length: int = 256,
                   prior_bpm: float | None = None, envelope: np.ndarray | None = None) -> TempoEstimate:
    """Tempo of (n,) or (channels, n) samples from librosa's beat tracker.

    Raises ValueError when fewer than 4 beats are found (silence, noise, a very short signal).
    Without a prior the tracker can land on half or double the felt tempo (librosa favours tempos
    near 120: a 72 BPM ballad with 8th-note hats reads as 144). `prior_bpm` (e.g. the spec's
    tempo) centres librosa's tempo prior there; it only picks the metrical level, the returned
    `bpm` is still measured from the beats the tracker found. `envelope`: librosa's onset strength
    of these samples at `hop_length`, when the caller has it already.
    """
    import librosa  # librosa: ~1 s with its numba/scipy imports

    y = mono(samples)
    if y.size < 2048:
        raise ValueError(f"signal too short for beat tracking: {y.size} samples ({y.size / sample_rate:.3f} s)")
    if envelope is None:
        envelope = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop_length)
    # librosa's global tempo at its default ~512-sample hop: its tempogram (an 8 s window at every
    # frame) at hop 256 peaked at ~2.4 GB and took 5-10 s on 3 minutes. Mean-pooling the envelope is
    # free; the beat tracker below still places beats on the fine envelope. (Max-pooling flipped a
    # 150 BPM click track to half time 2 times in 40; mean-pooling, like hop 512, 0 in 40.)
    pool = max(1, round(TEMPO_HOP / hop_length))
    coarse = envelope[: envelope.size // pool * pool].reshape(-1, pool).mean(axis=1)
    tempo = librosa.feature.tempo(onset_envelope=coarse, sr=sample_rate, hop_length=hop_length * pool,
                                  start_bpm=prior_bpm or 120.0)
    _, frames = librosa.beat.beat_track(
        onset_envelope=envelope, sr=sample_rate, hop_length=hop_length, bpm=float(tempo[0])
    )
    times = librosa.frames_to_time(frames, sr=sample_rate, hop_length=hop_length)
    if len(times) < MIN_BEATS:
        raise ValueError(
            f"found {len(times)} beats in {y.size / sample_rate:.1f} s, need at least {MIN_BEATS} "
            "(silence, noise or too short a signal?)"
        )
    return TempoEstimate(
        bpm=_bpm_from_beats(times),
        librosa_bpm=float(tempo[0]),
        beat_seconds=tuple(float(t) for t in times),
    )


# --------------------------------------------------------------------------- chroma


def chroma_frames(y: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Mono (n,) -> (chroma (12, frames) at CHROMA_HOP, each frame max-normalised by librosa; the
    frames' times in seconds).

    CQT chroma, not STFT: on a 3-minute 44.1 kHz mix they took 0.7 s vs 0.45 s, most of it the
    tuning estimate both run (0.55 s), and the CQT's sharper low bins read chords better (STFT
    chroma missed 8 % of the slots of a 72 BPM arranger render that the CQT got all of).
    """
    import librosa  # librosa: ~1 s with its numba/scipy imports

    # Start at E2 (82 Hz, a guitar's low string): the synth kick sweeps through 150-48 Hz and,
    # with the CQT's sharp low bins, reads as a loud pitch (it turned rock bars into "A" chords).
    octaves = int(min(CHROMA_OCTAVES, np.floor(np.log2(sample_rate / 2 / CHROMA_FMIN_HZ))))
    chroma = librosa.feature.chroma_cqt(
        y=y, sr=sample_rate, hop_length=CHROMA_HOP, fmin=CHROMA_FMIN_HZ, n_octaves=octaves
    )
    return chroma, librosa.frames_to_time(np.arange(chroma.shape[1]), sr=sample_rate, hop_length=CHROMA_HOP)


# --------------------------------------------------------------------------- key


@dataclass(frozen=True)
class KeyEstimate:
    tonic_pc: int  # 0 = C
    mode: str  # "major" | "minor"
    name: str  # "A minor", "F# major": sharps spelling, as theory.Key.name
    correlation: float  # Pearson r of the mean chroma with the winning key profile
    runner_up: str
    margin: float  # correlation of the winner minus the runner-up's; small = ambiguous


def estimate_key(samples: np.ndarray, sample_rate: int, *, ending_weight: float = ENDING_WEIGHT,
                 chroma: tuple[np.ndarray, np.ndarray] | None = None) -> KeyEstimate:
    """Key of (n,) or (channels, n) samples: Krumhansl-Kessler profiles vs the chroma, best of 24.

    The song's mean chroma knows no chord order: a loop like Am-F-C-G has exactly the pitch
    content of C-G-Am-F, and relative keys share a scale. Songs come to rest on the tonic, so the
    profiles are also correlated with the chroma of the ending (the last ENDING_SECONDS that
    sound) and the two correlations are added, the ending's scaled by `ending_weight` (0: whole
    song only). `margin` says how clear the decision was. `chroma`: `chroma_frames` of these
    samples, when the caller has it already. Raises ValueError for a signal with no pitched content.
    """
    y = mono(samples)
    chroma, _ = chroma if chroma is not None else chroma_frames(y, sample_rate)
    mean = _zscore(chroma.mean(axis=1))
    if not mean.any():
        raise ValueError("no pitched content to estimate a key from (silence?)")
    profiles = _zscore(np.concatenate([_rotations(KK_MAJOR), _rotations(KK_MINOR)]))  # (24, 12)
    r = profiles @ mean
    if ending_weight:
        frame_rms = np.sqrt(np.mean(np.square(y[: y.size // CHROMA_HOP * CHROMA_HOP].reshape(-1, CHROMA_HOP)),
                                    axis=1))
        sounding = np.flatnonzero(frame_rms > 0.01 * frame_rms.max())  # within 40 dB of the loudest
        last = min(int(sounding[-1]) + 1, chroma.shape[1]) if sounding.size else chroma.shape[1]
        first = max(0, last - int(ENDING_SECONDS * sample_rate / CHROMA_HOP))
        r = r + ending_weight * (profiles @ _zscore(chroma[:, first:last].mean(axis=1)))
    order = np.argsort(r)[::-1]
    keys = [Key(i % 12, "major" if i < 12 else "minor") for i in range(24)]
    best, second = keys[order[0]], keys[order[1]]
    return KeyEstimate(
        tonic_pc=best.tonic_pc,
        mode=best.mode,
        name=best.name,
        correlation=float(r[order[0]]),
        runner_up=second.name,
        margin=float(r[order[0]] - r[order[1]]),
    )


# --------------------------------------------------------------------------- chords


@dataclass(frozen=True)
class ChordSlot:
    bar_index: int
    start_seconds: float
    end_seconds: float
    expected: str  # the score's chord symbol
    expected_root_pc: int  # the chord's root, not a slash bass
    expected_quality: str  # "major" | "minor" | "either" (no third: power and sus chords)
    estimated_root_pc: int  # -1 where the slot has no pitched content (silence)
    estimated_quality: str  # "major" | "minor" ("none" with root -1)
    estimated: str  # "Am", "F#" ("N" with root -1: no chord)
    score: float  # Pearson r of the slot chroma with the winning triad template; ~0 = no pitch content

    @property
    def matches(self) -> bool:
        return self.estimated_root_pc == self.expected_root_pc and self.expected_quality in (
            "either",
            self.estimated_quality,
        )


def _expected_quality(intervals: tuple[int, ...]) -> str:
    if 4 in intervals:
        return "major"
    if 3 in intervals:
        return "minor"
    return "either"


def _triad_templates() -> np.ndarray:
    """(24, 12) zero-mean unit-norm binary triads: rows 0-11 major on C..B, 12-23 minor."""
    major, minor = np.zeros(12), np.zeros(12)
    major[[0, 4, 7]] = 1.0
    minor[[0, 3, 7]] = 1.0
    return _zscore(np.concatenate([_rotations(major), _rotations(minor)]))


@dataclass(frozen=True)
class ChordEstimate:
    root_pc: int  # -1 where the span has no pitched content (silence)
    quality: str  # "major" | "minor" ("none" with root -1)
    score: float  # Pearson r of the span's chroma with the winning triad template; ~0 = no pitch content

    @property
    def symbol(self) -> str:
        """"Am", "F#"; "N" for no chord (the chord vocabulary of the spec, sharps spelling)."""
        return "N" if self.root_pc < 0 else NOTE_NAMES[self.root_pc] + ("m" if self.quality == "minor" else "")


def key_chord_prior(key: Key, bonus: float = 0.2) -> np.ndarray:
    """(24,) to add to the triad correlations: `bonus` for the chords a pop/rock song in `key`
    uses (the diatonic triads, the flat-seventh major chord, and in minor the major V), so a
    power chord whose third is only hinted is read in the key (E, not Em, in A major)."""
    t = key.tonic_pc
    if key.mode == "major":
        majors, minors = (t, t + 5, t + 7, t + 10), (t + 2, t + 4, t + 9)
    else:
        majors, minors = (t + 3, t + 7, t + 8, t + 10), (t, t + 5, t + 7)
    prior = np.zeros(24)
    prior[[m % 12 for m in majors]] = bonus
    prior[[12 + m % 12 for m in minors]] = bonus
    return prior


def estimate_chords(chroma: np.ndarray, frame_times: np.ndarray, spans: list[tuple[float, float]],
                    prior: np.ndarray | None = None) -> list[ChordEstimate]:
    """The major or minor triad that best fits each (start s, end s) span of a chroma from
    `chroma_frames`; the first SLOT_SKIP of each span is left out (attacks, late changes).
    `prior` (24,) is added to the correlations before the choice (key_chord_prior); the
    estimate's score stays the plain correlation.

    Raises ValueError for a span that lies past the end of the chroma.
    """
    templates = _triad_templates()
    out = []
    for start, end in spans:
        window = (frame_times >= start + SLOT_SKIP * (end - start)) & (frame_times < end)
        if not window.any():
            raise ValueError(f"the span {start:.2f}-{end:.2f} s is past the end of the signal "
                             f"({frame_times[-1] if len(frame_times) else 0:.2f} s)")
        r = templates @ _zscore(chroma[:, window].mean(axis=1))
        best = int(np.argmax(r if prior is None else r + prior))
        if not r.any():  # silence: say so rather than let it read as C major
            out.append(ChordEstimate(-1, "none", 0.0))
        else:
            out.append(ChordEstimate(best % 12, "major" if best < 12 else "minor", float(r[best])))
    return out


def chords_per_bar(samples: np.ndarray, sample_rate: int, score: Score) -> list[ChordSlot]:
    """One ChordSlot per chord symbol of every bar of `score`, estimated from (n,) or (channels, n) samples.

    Bar times come from the score's tempo map (Score.chord_spans) with beat 0 at sample 0. Raises ValueError when
    the signal ends before a slot starts.
    """
    y = mono(samples)
    # No HPSS: librosa.effects.harmonic took 11-19 s on 2-3 minute arranger mixes and did not
    # change the match rate; cutting the chroma below E2 (see chroma_frames) is what beat the drums.
    chroma, frame_times = chroma_frames(y, sample_rate)
    expected = score.chord_spans()
    slots = []
    estimates = estimate_chords(chroma, frame_times, [(start, end) for _, _, start, end in expected])
    for (bar_index, symbol, start, end), estimate in zip(expected, estimates):
        chord = parse_chord(symbol)
        slots.append(
            ChordSlot(
                bar_index=bar_index,
                start_seconds=float(start),
                end_seconds=float(end),
                expected=symbol,
                expected_root_pc=chord.root_pc,
                expected_quality=_expected_quality(chord.intervals),
                estimated_root_pc=estimate.root_pc,
                estimated_quality=estimate.quality,
                estimated=estimate.symbol,
                score=estimate.score,
            )
        )
    return slots


def chord_match_rate(slots: list[ChordSlot]) -> float:
    """Fraction of slots whose estimate matches the score (0..1). Raises ValueError for no slots."""
    if not slots:
        raise ValueError("no chord slots to rate")
    return sum(slot.matches for slot in slots) / len(slots)
