"""True peak (BS.1770-4 Annex 2: 4x oversampling with soxr) and sample peak."""

from __future__ import annotations

import math

import numpy as np
import soxr

from millamusic.core.units import gain_to_db
from millamusic.dsp.blocks import CHUNK, per_channel


def true_peak_db(samples: np.ndarray, rate: int) -> float:
    """True peak per BS.1770-4 Annex 2: 4x oversampling (soxr HQ, linear phase), max |x|.

    The sample peak is included too, so the true peak is never reported below it.
    """
    return peaks_db(samples, rate)[0]


def peaks_db(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(true peak, sample peak) in dB of (channels, frames) samples; -inf for no frames."""
    if samples.shape[1] == 0:
        return -math.inf, -math.inf
    peaks = per_channel(lambda channel: _channel_peaks(channel, rate), list(samples))
    return gain_to_db(max(tp for tp, _ in peaks)), gain_to_db(max(sp for _, sp in peaks))


def _upsampled_4x(channel: np.ndarray, rate: int):
    """Yield soxr HQ's 4x oversampling of one channel block by block, in order: together the
    very samples of `soxr.resample(channel, rate, 4 * rate, quality="HQ")` (its stream makes
    the same numbers as its one-shot call), without the (4 x frames,) array."""

    channel = np.ascontiguousarray(channel)
    if channel.dtype not in (np.float32, np.float64):
        yield soxr.resample(channel, rate, 4 * rate, quality="HQ")
        return
    stream = soxr.ResampleStream(rate, 4 * rate, 1, dtype=channel.dtype, quality="HQ")
    n = channel.shape[0]
    for a in range(0, n, CHUNK):
        yield stream.resample_chunk(channel[a : a + CHUNK], last=a + CHUNK >= n)


def _channel_peaks(channel: np.ndarray, rate: int) -> tuple[float, float]:
    """(max |x| of the 4x-oversampled channel and of the channel itself, max |x| of the channel)."""
    sample_peak = max(float(channel.max()), -float(channel.min()))
    top = bottom = 0.0
    for up in _upsampled_4x(channel, rate):
        if up.size:
            top, bottom = max(top, float(up.max())), min(bottom, float(up.min()))
    return max(top, -bottom, sample_peak), sample_peak


def true_peak_envelope_db(x: np.ndarray, rate: int) -> np.ndarray:
    """Stereo-linked true peak of every sample, dBFS, (frames,) float64: the largest of the four
    4x-oversampled values (soxr, as `true_peak_db`) around it, over all channels."""
    n = x.shape[1]

    def one(channel: np.ndarray) -> np.ndarray:
        # One channel at a time, in the meter threads (soxr gives the very same samples as for
        # the interleaved (frames, channels) array), streamed: output samples 4i..4i+3 belong to
        # frame i; those past 4n are dropped and missing ones count as 0, as before. The largest
        # of each frame's four is taken with elementwise maximums of strided columns:
        # `.reshape(k, 4).max(axis=1)` gives the same numbers but reduces 4-element rows one by
        # one, 4x slower.
        peak = np.abs(channel)
        frame = 0  # the frame the next output sample starts
        rest = None  # output samples of a frame not complete yet
        for up in _upsampled_4x(channel, rate):
            if rest is not None and rest.size:
                up = np.concatenate([rest, up])
            k = min(up.shape[0] // 4, n - frame)
            quads = np.abs(up[: 4 * k], out=up[: 4 * k]).reshape(k, 4)
            into = peak[frame : frame + k]
            for j in range(4):
                np.maximum(into, quads[:, j], out=into)
            frame += k
            rest = up[4 * k :] if frame < n else None
        return peak

    peaks = per_channel(one, list(x))
    peak = peaks[0]
    for other in peaks[1:]:
        np.maximum(peak, other, out=peak)
    peak_db = peak.astype(np.float64)
    with np.errstate(divide="ignore"):
        np.log10(peak_db, out=peak_db)
    peak_db *= 20.0
    return peak_db
