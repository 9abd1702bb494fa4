"""A song's form from repetition: where its sections start and which ones are the same music.

A cover drafts its structure from a reference recording: given the bar grid (from the beat
tracker), find the section boundaries on bar lines and label repeated sections alike
("A B A B" for verse, chorus, verse, chorus). The caller names them (the loudest repeated
label is the Chorus).

Everything is bar-synchronous: one chroma vector (harmony) and one timbre vector (MFCC +
level: instrumentation, vocals, energy) per bar. Pop sections repeat a chord *sequence*, and
verse and chorus often use the same four chords in another order, so a bag of chroma over a
section cannot tell them apart; bars are compared one against one along a lag instead.

Takes float samples shaped (n,) or (channels, n), like analysis.features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from millamusic.analysis.features import CHROMA_HOP, chroma_frames, mono

BAR_TRIM = 0.12  # fraction of each bar left out at both ends: a jittered grid, fills, pickups
N_MFCC = 13
LOOP_BARS = 4  # bars: the usual pop/rock chord loop; a section continues while it repeats
LOOP_WEIGHT = 0.5  # loop novelty against texture novelty; 0.3-0.7 passed, 0.5 tuned on the references
PEAK_RADIUS = 2  # bars: a boundary candidate is the strongest line within this distance
TEXTURE_HALF = 2  # bars each side of a candidate line when comparing instrumentation
TIMBRE_CLIP = 3.0  # standard deviations
TEXTURE_WITHIN = 1.0  # how much bar-to-bar change inside each side discounts a texture change
TIMBRE_WEIGHT = 1.0  # timbre distance relative to chroma distance (both median-scaled)
BOUNDARY_COST = 0.3  # novelty a line must exceed to become a boundary (0.2-0.3 passed)
GRID_BONUS = {4: 0.3, 2: 0.1}  # prior per section: lengths in multiples of 4 / 2 bars
LABEL_DISTANCE = 0.85  # mean bar distance (median-scaled) under which two sections are one label
LABEL_SHIFT = 1  # bars a section's start may be off when comparing it with another


@dataclass(frozen=True)
class SectionEstimate:
    start_bar: int  # 0-based index into the bar grid
    bars: int
    label: str  # "A", "B", ...: sections with the same label are the same music repeated
    energy_db: float  # mean RMS level of the section in dB (the caller names the loudest repeated one Chorus)


def _bar_features(y: np.ndarray, sample_rate: int, bar_starts: np.ndarray, chroma: np.ndarray | None):
    """Per bar: chroma (bars, 12) zero-mean unit-norm, timbre (bars, N_MFCC) standardised over
    the song, and level (bars,) in dB."""
    import librosa  # librosa: ~1 s with its numba/scipy imports

    if chroma is None:
        chroma, _ = chroma_frames(y, sample_rate)
    mfcc = librosa.feature.mfcc(y=y, sr=sample_rate, n_mfcc=N_MFCC + 1, hop_length=CHROMA_HOP)[1:]
    rms = librosa.feature.rms(y=y, hop_length=CHROMA_HOP)[0]
    level = 20 * np.log10(rms + 1e-9)
    lengths = np.diff(np.append(bar_starts, bar_starts[-1] + np.median(np.diff(bar_starts))))
    frames_per_s = sample_rate / CHROMA_HOP
    n_frames = min(chroma.shape[1], mfcc.shape[1])
    rows_c, rows_t, rows_l = [], [], []
    for start, length in zip(bar_starts, lengths):
        a = int((start + BAR_TRIM * length) * frames_per_s)
        b = max(a + 1, int((start + (1 - BAR_TRIM) * length) * frames_per_s))
        a, b = min(a, n_frames - 1), min(b, n_frames)
        a = min(a, b - 1)
        rows_c.append(chroma[:, a:b].mean(axis=1))
        rows_t.append(np.append(mfcc[:, a:b].mean(axis=1), level[a:b].mean()))
        rows_l.append(20 * np.log10(np.sqrt(np.mean(rms[a:b] ** 2)) + 1e-9))
    timbre = np.array(rows_t)
    timbre = (timbre - np.median(timbre, axis=0)) / (timbre.std(axis=0) + 1e-9)
    # Clipped: one odd bar (the last chord ringing out, a break) must not swamp a whole
    # section's steady change in instrumentation.
    timbre = np.clip(timbre, -TIMBRE_CLIP, TIMBRE_CLIP)
    chroma = np.array(rows_c) - np.mean(rows_c, axis=1, keepdims=True)
    chroma /= np.linalg.norm(chroma, axis=1, keepdims=True) + 1e-9
    return chroma, timbre, np.array(rows_l)


def _distance(chroma: np.ndarray, timbre: np.ndarray) -> np.ndarray:
    """(bars, bars) distance between bars: chroma cosine + timbre Euclidean, each scaled by its
    median so neither dominates by units."""
    d_c = 1 - chroma @ chroma.T
    d_t = np.linalg.norm(timbre[:, None] - timbre[None], axis=-1)
    off = ~np.eye(len(chroma), dtype=bool)
    return d_c / (np.median(d_c[off]) + 1e-9) + TIMBRE_WEIGHT * d_t / (np.median(d_t[off]) + 1e-9)


def _novelty(dist: np.ndarray, timbre: np.ndarray) -> np.ndarray:
    """Evidence (bars,) that a section starts at each bar line: 0 is typical, 1 is a clear change."""
    n = len(dist)
    loop, texture = np.zeros(n), np.zeros(n)
    d_t = np.linalg.norm(timbre[:, None] - timbre[None], axis=-1)
    for b in range(1, n):
        # Loop novelty: the bars after the line against the bars one loop before, one for one.
        # Inside a section the chord loop repeats (low); across a boundary it does not (high).
        ks = [k for k in range(LOOP_BARS) if b - LOOP_BARS + k >= 0 and b + k < n]
        loop[b] = np.mean([dist[b - LOOP_BARS + k, b + k] for k in ks])
        # Texture novelty: instrumentation and level either side (a checkerboard kernel). It
        # carries sections without an inner loop and an intro that plays the verse's chords.
        # The closest pair across the line, not the mean: all pairs differ at a real change,
        # while one odd bar (a fill, the last chord ringing out) only changes the pairs it is in.
        lo, hi = max(0, b - TEXTURE_HALF), min(n, b + TEXTURE_HALF)
        within = (d_t[lo:b, lo:b].sum() + d_t[b:hi, b:hi].sum()) / ((b - lo) ** 2 + (hi - b) ** 2)
        texture[b] = d_t[lo:b, b:hi].min() - TEXTURE_WITHIN * within
    # Loop novelty relative to its typical value, so a song without loops (flat loop novelty)
    # leaves the decision to texture rather than adding noise; texture in typical bar distances.
    typical = np.median(loop[1:])
    novelty = LOOP_WEIGHT * (loop - typical) / (typical + 1e-9) + texture / (np.median(d_t) + 1e-9)
    novelty[0] = 0.0
    return novelty


def _boundaries(novelty: np.ndarray, min_bars: int) -> list[int]:
    """Bar lines that start sections: local peaks of novelty chosen (dynamic programming) to
    maximise their novelty minus a cost per boundary, plus a bonus for sections of 4/8 bars
    (pop/rock phrasing), each section at least `min_bars` long."""
    n = len(novelty)
    peak = np.array([b > 0 and novelty[b] >= novelty[max(0, b - PEAK_RADIUS):b + PEAK_RADIUS + 1].max()
                     for b in range(n)])
    # A line next to a peak stays a candidate, at its own (lower) novelty: the grid prior may
    # prefer it when the evidence is close.
    near = np.convolve(peak, np.ones(3), mode="same") > 0
    gain = np.where(near, novelty - BOUNDARY_COST, -np.inf)

    def length_bonus(bars: int) -> float:
        return GRID_BONUS[4] if bars % 4 == 0 else GRID_BONUS[2] if bars % 2 == 0 else 0.0

    # best[i]: best score of a segmentation of bars [0, i) whose last section ends at i.
    best = np.full(n + 1, -np.inf)
    back = np.zeros(n + 1, dtype=int)
    best[0] = 0.0
    for end in range(min_bars, n + 1):
        for start in range(end - min_bars + 1):
            score = best[start] + (gain[start] if start else 0.0) + length_bonus(end - start)
            if score > best[end]:
                best[end], back[end] = score, start
    starts, i = [], n
    while i > 0:
        i = back[i]
        starts.append(i)
    return sorted(starts)


def _section_distance(dist: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
    """Mean distance of two sections' bars one for one from their starts, over the shorter one;
    the best of shifting one by up to a bar, since either start may be a bar off."""
    best = np.inf
    for shift in range(-LABEL_SHIFT, LABEL_SHIFT + 1):
        pairs = [(i, i - a[0] + b[0] + shift) for i in range(a[0], a[1])]
        pairs = [(i, j) for i, j in pairs if b[0] <= j < b[1]]
        if len(pairs) >= max(1, min(a[1] - a[0], b[1] - b[0]) - LABEL_SHIFT):
            best = min(best, float(np.mean([dist[i, j] for i, j in pairs])))
    return best


def _labels(dist: np.ndarray, starts: list[int], n: int) -> list[str]:
    """Letters for sections: a section takes the label of the closest earlier one if they
    match bar for bar (LABEL_DISTANCE: measured 0.1-0.5 for repeats, 1.2+ for other
    sections), else a new letter."""
    spans = list(zip(starts, starts[1:] + [n]))
    labels: list[str] = []
    for i, span in enumerate(spans):
        distances = [_section_distance(dist, span, spans[j]) for j in range(i)]
        j = int(np.argmin(distances)) if distances else -1
        matched = j >= 0 and distances[j] < LABEL_DISTANCE
        labels.append(labels[j] if matched else chr(ord("A") + len(set(labels))))
    return labels


def find_sections(samples: np.ndarray, sample_rate: int, bar_starts, *, min_bars: int = 2,
                  chroma: tuple[np.ndarray, np.ndarray] | None = None) -> list[SectionEstimate]:
    """Sections of a recording on its bar grid: boundaries where the music stops repeating what
    came before it, labels by bar-for-bar similarity. `chroma`: `chroma_frames` of these samples,
    when the caller has it already."""
    y = mono(samples)
    bar_starts = np.asarray(bar_starts, dtype=float)
    if bar_starts.ndim != 1 or len(bar_starts) < 2:
        raise ValueError(f"need at least 2 bars to find sections, got {bar_starts.size}")
    if np.any(np.diff(bar_starts) <= 0):
        raise ValueError("bar_starts must be strictly increasing (seconds of each bar's first beat)")
    n = len(bar_starts)
    chroma, timbre, level = _bar_features(y, sample_rate, bar_starts, None if chroma is None else chroma[0])
    dist = _distance(chroma, timbre)
    novelty = _novelty(dist, timbre)
    starts = _boundaries(novelty, max(1, min(min_bars, n)))
    labels = _labels(dist, starts, n)
    ends = starts[1:] + [n]
    return [SectionEstimate(s, e - s, lab, float(10 * np.log10(np.mean(10 ** (level[s:e] / 10)))))
            for s, e, lab in zip(starts, ends, labels)]
