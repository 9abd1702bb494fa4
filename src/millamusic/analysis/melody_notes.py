"""Draft the sung melody of a reference recording as notes: pYIN f0, cut into notes, optionally
snapped to the beat grid. A cover starts from these notes instead of composing a new melody.

Made for a solo voice (an a-cappella stem or a separated vocal). On a full band mix pYIN follows
whatever is loudest and most periodic, so the result also says whether the input was monophonic
enough for its notes to be trusted.

Cost, measured on 2 cores: 1.9-2.8 s per 62-89 s sung stem (pYIN at 16 kHz, hop 256 = 16 ms,
0.2-semitone bins), plus ~1.5 s for librosa's imports and JIT on the first call. librosa's default
0.1-semitone bins took 7.7 s on the 84-s stem: pYIN's Viterbi is quadratic in the bin count.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from millamusic.analysis.features import mono
from millamusic.core.audio import Audio, resample

RATE = 16000  # a voice's f0 and first harmonics sit far below 8 kHz
HOP = 256  # 16 ms: a 16th note at 160 BPM (94 ms) still spans ~6 frames
FRAME = 1024  # 64 ms: four periods of C2, pYIN needs at least two
FMIN_HZ, FMAX_HZ = 65.41, 1046.5  # C2..C6: bass to soprano
RESOLUTION = 0.2  # semitones per pYIN bin; no bin centre sits on a rounding boundary (x.5)
SOUNDING_DB = -40.0  # frames within 40 dB of the loudest count as sounding
MIN_VOICED_PROB = 0.05  # pYIN's Viterbi marks consonants and reverb tails voiced at prob ~0.01
HOLD_SECONDS = 0.055  # a new semitone must hold this long to start a note (glides, scoops)
DIP_DB = 6.0  # an energy dip this deep between two peaks, at one pitch, separates two syllables
ONSET_DB = 3.0  # a note starts where its energy comes within this of its peak (vowel, not consonant)
ONSET_MAX_SHIFT = 0.08  # seconds: never move a start later than this (a slow crescendo)
MIN_NOTE_SECONDS = 0.06

# Monophonic: the median, over sounding frames, of pYIN's voiced probability. On the six cover
# references (tests/cover_references.py) the sung stems gave 0.76-0.83, the full mixes 0.01-0.11:
# in a band, pYIN is rarely sure of one pitch. 0.4 sits with a margin of ~2x to either side.
# (Measured and rejected: the voiced share, 0.81-0.87 vs 0.07-0.57, and the share of the
# spectrum on f0's harmonics, 0.97-0.99 vs 0.89-0.98: pYIN's f0 on a mix follows one instrument.)
MONOPHONIC_MIN_PROB = 0.4


@dataclass(frozen=True)
class SungNote:
    start_seconds: float
    end_seconds: float
    midi: int


@dataclass(frozen=True)
class MelodyTranscription:
    notes: tuple[SungNote, ...]
    voiced_fraction: float  # share of the sounding frames pYIN calls voiced
    monophonic: bool  # whether the signal is monophonic enough that the notes can be trusted
    reason: str  # when monophonic is False: why, in words for a producer ("" otherwise)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Boolean (n,) -> [(start, stop)] of its True runs."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _pitch_splits(semis: np.ndarray, hold: int) -> list[int]:
    """Rounded semitones of one voiced run -> indices where a new semitone starts and holds for
    `hold` frames. Frames between (a glide) stay with the note before."""
    splits, current = [], semis[0]
    for i in range(1, len(semis) - hold + 1):
        if semis[i] != current and np.all(semis[i:i + hold] == semis[i]):
            splits.append(i)
            current = semis[i]
    return splits


def _dip_splits(db: np.ndarray) -> list[int]:
    """Energy (dB) of one same-pitch stretch -> indices of dips at least DIP_DB below the peaks on
    both sides: a consonant between repeated syllables that pYIN still calls voiced (l, m, n, w)."""
    splits, start = [], 0
    for i in range(1, len(db) - 1):
        local_min = db[i] <= db[i - 1] and db[i] < db[i + 1]
        if local_min and min(db[start:i].max(), db[i + 1:].max()) - db[i] >= DIP_DB:
            splits.append(i)
            start = i
    return splits


def _grid(beats: np.ndarray, subdivisions: int, end: float) -> np.ndarray:
    """Beat times -> grid times covering [0, end]: each beat period cut into `subdivisions`, the
    first and last periods carried on before the first and after the last beat."""
    beats = np.asarray(beats, dtype=float)
    if beats.ndim != 1 or beats.size < 2 or np.any(np.diff(beats) <= 0):
        raise ValueError("beat_seconds must be at least 2 strictly increasing times")
    if subdivisions < 1:
        raise ValueError(f"subdivisions must be >= 1, got {subdivisions}")
    before = int(np.ceil(beats[0] / (beats[1] - beats[0]))) + 1
    after = int(np.ceil(max(0.0, end - beats[-1]) / (beats[-1] - beats[-2]))) + 1
    beats = np.concatenate([beats[0] - (beats[1] - beats[0]) * np.arange(before, 0, -1), beats,
                            beats[-1] + (beats[-1] - beats[-2]) * np.arange(1, after + 1)])
    steps = np.arange(subdivisions) / subdivisions
    return np.concatenate([(beats[:-1, None] + np.diff(beats)[:, None] * steps).ravel(), beats[-1:]])


def _snap(notes: list[SungNote], grid: np.ndarray) -> list[SungNote]:
    """Move starts and ends to the nearest grid time; a note that collapses gets one grid step,
    one whose start lands on its predecessor's is dropped (two syllables inside one grid step)."""
    def nearest(t: float) -> int:
        return int(np.argmin(np.abs(grid - t)))

    out: list[SungNote] = []
    for note in notes:
        a, b = nearest(note.start_seconds), nearest(note.end_seconds)
        if out and grid[a] <= out[-1].start_seconds:
            continue
        if out and out[-1].end_seconds > grid[a]:  # the predecessor's end ran past this start
            out[-1] = SungNote(out[-1].start_seconds, float(grid[a]), out[-1].midi)
        out.append(SungNote(float(grid[a]), float(grid[max(b, a + 1)]), note.midi))
    return out


def transcribe_melody(samples: np.ndarray, sample_rate: int, *, beat_seconds: np.ndarray | None = None,
                      subdivisions: int = 4) -> MelodyTranscription:
    """Notes of the melody in (n,) or (channels, n) float samples of a solo voice.

    Notes are voiced runs, cut where the pitch moves to a new semitone that holds HOLD_SECONDS and
    where the energy dips between repeated syllables; each note's MIDI number is the median of its
    frames' pitch, rounded after the recording's own tuning offset is taken out. With
    `beat_seconds` (beat times), starts and ends are snapped to the beats cut in `subdivisions`.
    Raises ValueError for empty or silent input.
    """
    import librosa  # librosa: ~1 s with its numba/scipy imports

    y = resample(Audio(mono(samples)[None, :], sample_rate), RATE).samples[0]
    if y.size < FRAME:
        raise ValueError(f"signal too short to transcribe: {y.size / RATE:.3f} s")
    if float(np.max(np.abs(y))) < 1e-4:  # -80 dBFS
        raise ValueError("signal is silent: no melody to transcribe")
    # The grid first: a bad one is refused before the seconds pYIN takes.
    grid = None if beat_seconds is None else _grid(np.asarray(beat_seconds), subdivisions, y.size / RATE)
    f0, flag, prob = librosa.pyin(y, fmin=FMIN_HZ, fmax=FMAX_HZ, sr=RATE, frame_length=FRAME,
                                  hop_length=HOP, resolution=RESOLUTION)
    rms = librosa.feature.rms(y=y, frame_length=FRAME, hop_length=HOP)[0][: f0.size]
    db = 20 * np.log10(np.maximum(rms, 1e-10) / rms.max())
    sounding = db > SOUNDING_DB
    voiced = flag & (prob >= MIN_VOICED_PROB) & sounding
    voiced_fraction = float(voiced[sounding].mean())
    midi = librosa.hz_to_midi(np.where(voiced, f0, np.nan))
    # The recording's own tuning (a singer or a band a quarter-tone flat) before rounding to semitones.
    tuning = float(librosa.pitch_tuning(f0[voiced], resolution=0.05)) if voiced.any() else 0.0
    hold = max(1, round(HOLD_SECONDS * RATE / HOP))
    onset_shift = round(ONSET_MAX_SHIFT * RATE / HOP)
    frame_s = HOP / RATE
    notes: list[SungNote] = []
    for a, b in _runs(voiced):
        semis = np.round(midi[a:b] - tuning).astype(int)
        cuts = [0, *_pitch_splits(semis, hold), b - a]
        pieces = []
        for s, e in itertools.pairwise(cuts):
            inner = [0, *_dip_splits(db[a + s:a + e]), e - s]
            pieces += [(a + s + i, a + s + j) for i, j in itertools.pairwise(inner)]
        for s, e in pieces:
            # Start at the vowel: the first frame near the note's energy peak, not the consonant.
            loud = np.flatnonzero(db[s:e] >= db[s:e].max() - ONSET_DB)
            s += min(int(loud[0]), onset_shift)
            if (e - s) * frame_s < MIN_NOTE_SECONDS:
                continue
            pitch = int(np.round(np.median(midi[s:e]) - tuning))
            notes.append(SungNote(s * frame_s, e * frame_s, pitch))

    if grid is not None:
        notes = _snap(notes, grid)
    prob_median = float(np.median(prob[sounding]))
    monophonic = prob_median >= MONOPHONIC_MIN_PROB
    reason = "" if monophonic else (
        f"the voice is not alone: pYIN is sure of one pitch in few frames (median voiced probability "
        f"{prob_median:.2f}, a solo voice gives over {MONOPHONIC_MIN_PROB}); use a vocal stem or separate one first")
    return MelodyTranscription(tuple(notes), voiced_fraction, monophonic, reason)
