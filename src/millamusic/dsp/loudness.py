"""Loudness metering: BS.1770-4 integrated loudness, EBU Tech 3342 loudness range, the full report."""

from __future__ import annotations

import functools
import math
import os
import threading
from dataclasses import asdict, dataclass

import numpy as np

from millamusic.core.audio import Audio
from millamusic.core.errors import RenderError
from millamusic.dsp.blocks import CHUNK, pool
from millamusic.dsp.peak import peaks_db

# --------------------------------------------------------------------------- metering


@dataclass(frozen=True)
class LoudnessReport:
    integrated_lufs: float  # BS.1770-4 gated; -inf for silence
    true_peak_dbtp: float  # 4x oversampled; -inf for silence
    sample_peak_dbfs: float
    lra_lu: float  # EBU Tech 3342; 0.0 when shorter than one 3 s window

    def to_dict(self) -> dict[str, float | None]:
        """JSON-safe: rounded to 0.01, non-finite values (silence) become None."""
        return {k: (round(v, 2) if math.isfinite(v) else None) for k, v in asdict(self).items()}


def check_measurable(samples: np.ndarray, rate: int) -> None:
    if samples.shape[1] < int(0.4 * rate) + 1:
        raise RenderError(
            f"audio is {samples.shape[1] / rate:.3f} s long; loudness needs at least 0.4 s "
            "(one BS.1770 gating block)"
        )
    # block by block: no (channels, frames) mask
    if not all(np.isfinite(samples[..., a : a + CHUNK]).all() for a in range(0, samples.shape[-1], CHUNK)):
        raise RenderError("audio contains NaN or infinite samples; the stage before mastering is broken")


# BS.1770's K-weighting pre-filter as two analogue prototypes (a high shelf, then a high pass),
# bilinear-transformed for any sample rate: Brecht De Man's published derivation of the standard's
# 48 kHz coefficients (github.com/BrechtDeMan/loudness.py), which pyloudnorm calls "DeMan" and which
# matches libebur128 within 0.01 LU. (gain dB, Q, corner Hz) of each stage:
K_SHELF = (3.99984385397, 0.7071752369554193, 1681.9744509555319)
K_HIGHPASS = (0.5003270373253953, 38.13547087613982)  # (Q, corner Hz)
K_SHELF_VB_EXPONENT = 0.499666774155  # the shelf's band gain Vb = Vh ** this


@functools.lru_cache(maxsize=8)
def k_weighting_sos(rate: int) -> np.ndarray:
    """The K-weighting filter at `rate` as a float64 second-order-sections cascade (a0 = 1), shared
    by every call: not to be changed. tests/test_meter_ebu.py holds it to pyloudnorm's own filters."""
    gain_db, q, fc = K_SHELF
    k = np.tan(np.pi * fc / rate)
    vh = np.power(10.0, gain_db / 20.0)
    vb = np.power(vh, K_SHELF_VB_EXPONENT)
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
             1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    q, fc = K_HIGHPASS
    k = np.tan(np.pi * fc / rate)
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / (1.0 + k / q + k * k),
                (1.0 - k / q + k * k) / (1.0 + k / q + k * k)]
    return np.array([shelf, highpass], dtype=np.float64)


_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770 L, R, C, Ls, Rs


def k_power_chunks(samples: np.ndarray, rate: int, chunk: int = CHUNK):
    """Yield (start, block) in order: `_k_weighted_power(samples, rate)[start:start + len(block)]`,
    the same numbers, computed block by block (float64, the block is the caller's to change).

    The channels' next blocks are filtered in the meter threads while the caller uses this one.
    """
    import scipy.signal  # scipy: ~1 s to import

    sos = k_weighting_sos(rate)
    channels, n = samples.shape
    weights = [_CHANNEL_WEIGHTS[i] if i < len(_CHANNEL_WEIGHTS) else 1.0 for i in range(channels)]
    state = [np.zeros((sos.shape[0], 2)) for _ in range(channels)]  # as sosfilt's own zi=None

    def one(c: int, a: int) -> np.ndarray:
        z, state[c] = scipy.signal.sosfilt(sos, samples[c, a : a + chunk], zi=state[c])
        np.multiply(z, z, out=z)
        if weights[c] != 1.0:
            z *= weights[c]
        return z

    # (never from a meter thread itself: it would wait on jobs queued behind it)
    threaded = (channels > 1 and (os.cpu_count() or 1) > 1
                and not threading.current_thread().name.startswith("millamusic-meter"))

    def start(a: int):  # a channel's block a needs its block before it done (the filter state)
        if a >= n:
            return None
        return [pool().submit(one, c, a) for c in range(channels)] if threaded else a

    pending = start(0)
    for a in range(0, n, chunk):
        parts = [f.result() for f in pending] if threaded else [one(c, a) for c in range(channels)]
        pending = start(a + chunk)
        total = parts[0]
        for part in parts[1:]:
            total += part
        yield a, total


def k_csum_at(samples: np.ndarray, rate: int, at: np.ndarray) -> np.ndarray:
    """`csum[at]` for csum = concatenate([[0.0], cumsum(_k_weighted_power(samples, rate))]), the
    same numbers, streamed: no (frames,) array is made. at: int indices in [0, frames]."""
    at = np.asarray(at, dtype=np.int64)
    out = np.zeros(at.shape, dtype=np.float64)  # csum[0] = 0.0
    order = np.argsort(at, kind="stable")
    where = at[order]
    i = int(np.searchsorted(where, 0, side="right"))  # the zeros are done
    carry = 0.0
    for a, block in k_power_chunks(samples, rate):
        if i >= where.size:
            break
        b = a + block.shape[0]
        block[0] += carry  # csum[a] + power[a]: the next term of the one running sum
        np.cumsum(block, out=block)  # block[j] = csum[a + j + 1]
        carry = float(block[-1])
        j = int(np.searchsorted(where, b, side="right"))
        out[order[i:j]] = block[where[i:j] - a - 1]
        i = j
    if i < where.size:
        raise IndexError(f"index {int(where[i])} is past the end of {samples.shape[1]} frames")
    return out


def gated_loudness(block_ms: np.ndarray) -> float:
    """BS.1770-4 two-stage gating over 400 ms block mean squares (already channel-weighted)."""
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10.0 * np.log10(block_ms)
    keep = block_ms[lk >= -70.0]
    if keep.size == 0:
        return -math.inf
    rel = -0.691 + 10.0 * math.log10(float(np.mean(keep))) - 10.0
    keep = block_ms[(lk > rel) & (lk >= -70.0)]
    if keep.size == 0:
        return -math.inf
    return -0.691 + 10.0 * math.log10(float(np.mean(keep)))


_T_G, _STEP = 0.4, 0.25  # BS.1770 gating block (s) and its hop (share of a block)


def _block_bounds(n: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) frame bounds of the 400 ms gating blocks (75 % overlap): pyloudnorm's exact ones."""
    t_g, step = _T_G, _STEP
    num_blocks = int(np.round(((n / rate - t_g) / (t_g * step)))) + 1
    j = np.arange(num_blocks)
    lo = (t_g * (j * step) * rate).astype(np.int64)
    hi = np.minimum((t_g * (j * step + 1) * rate).astype(np.int64), n)
    return lo, hi


def _block_ms_from(csum_lo: np.ndarray, csum_hi: np.ndarray, rate: int) -> np.ndarray:
    return np.maximum(csum_hi - csum_lo, 0.0) / (_T_G * rate)


def integrated_loudness(samples: np.ndarray, rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS, -inf for silence) of float (channels, frames) samples.

    The same number as pyloudnorm's meter (the tests hold it to 0.001 LU), about 5x faster; the
    meter every stage that balances by loudness uses. Streamed (`k_csum_at`): the very number
    `_integrated_from_power(_k_weighted_power(samples, rate), rate)` gives."""
    return loudness_and_range(samples, rate, lra=False)[0]


def loudness_and_range(samples: np.ndarray, rate: int, *, lra: bool = True) -> tuple[float, float]:
    """(integrated loudness, loudness range) of `samples` in one streamed K-weighting pass: the
    numbers `_integrated_from_power` and `_lra_from_power` give for `_k_weighted_power(samples)`
    (the range is 0.0 when not asked for)."""
    lufs, mean_sq = _loudness_and_windows(samples, rate, windows=lra)
    return lufs, (0.0 if mean_sq is None else lra_from_mean_sq(mean_sq))


def _loudness_and_windows(samples: np.ndarray, rate: int, *, windows: bool = True) -> tuple[float, np.ndarray | None]:
    """(integrated loudness, mean square of each `lra_windows` window, unclipped) in one streamed
    K-weighting pass; None for the windows when not asked for or under 3 s."""
    block_ms, mean_sq = block_ms_and_windows(samples, rate, windows=windows)
    return gated_loudness(block_ms), mean_sq


def block_ms_and_windows(samples: np.ndarray, rate: int, *, windows: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(`_block_ms`, mean square of each `lra_windows` window, unclipped) of
    `_k_weighted_power(samples)`, the same numbers from one streamed K-weighting pass; None for
    the windows when not asked for or under 3 s."""
    n = samples.shape[1]
    lo, hi = _block_bounds(n, rate)
    spans = lra_windows(n, rate) if windows else None
    at = [lo, hi] if spans is None else [lo, hi, spans[0], spans[0] + spans[1]]
    values = k_csum_at(samples, rate, np.concatenate(at))
    block_ms = _block_ms_from(values[: lo.size], values[lo.size : lo.size + hi.size], rate)
    if spans is None:
        return block_ms, None
    starts, win = spans
    rest = values[lo.size + hi.size :]
    return block_ms, (rest[starts.size :] - rest[: starts.size]) / win


def lra_windows(n: int, rate: int) -> tuple[np.ndarray, int] | None:
    """(starts, length) of the 3 s short-term windows every 0.1 s over n frames; None under 3 s."""
    win = int(round(3.0 * rate))
    hop = int(round(0.1 * rate))
    if n < win:
        return None
    return np.arange(0, n - win + 1, hop), win


def lra_from_mean_sq(mean_sq: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LRA, LU) from the mean squares of the K-weighted signal's 3 s
    windows every 0.1 s (`lra_windows`).

    Written here rather than taken from pyloudnorm: its `Meter.loudness_range` pads 1.5 s of
    silence onto the signal, hops 0.09 s (overlap 0.97) instead of Tech 3342's 0.1 s, and
    loops over blocks in Python (slow for a whole song). This uses an absolute gate of -70 LUFS,
    a relative gate 20 LU below the power mean of the absolutely gated windows, and LRA = P95 -
    P10 of what remains. tests/test_master.py cross-checks it against pyloudnorm's."""
    with np.errstate(divide="ignore"):
        st = -0.691 + 10.0 * np.log10(np.maximum(mean_sq, 0.0))
    st = st[st >= -70.0]
    if st.size == 0:
        return 0.0
    rel_gate = 10.0 * np.log10(np.mean(10.0 ** (st / 10.0))) - 20.0
    st = st[st >= rel_gate]
    if st.size == 0:
        return 0.0
    return float(np.percentile(st, 95) - np.percentile(st, 10))


def measure(audio: Audio) -> LoudnessReport:
    """Integrated loudness, true peak, sample peak and loudness range of `audio`.

    One K-weighting pass feeds both the gated loudness and the LRA (tests/test_master.py and
    tests/test_meter_ebu.py hold it to pyloudnorm and to the EBU test signals)."""
    return measure_with_windows(audio)[0]


def measure_with_windows(audio: Audio) -> tuple[LoudnessReport, np.ndarray | None]:
    """`measure(audio)` and the mean squares of its LRA windows (3 s every 0.1 s, `lra_windows`;
    None under 3 s), which are also the EBU short-term loudness windows (report.py)."""
    samples, rate = audio.samples, audio.sample_rate
    check_measurable(samples, rate)
    lufs, mean_sq = _loudness_and_windows(samples, rate)
    true_peak, sample_peak = peaks_db(samples, rate)
    lra = 0.0 if mean_sq is None else lra_from_mean_sq(mean_sq)
    report = LoudnessReport(integrated_lufs=lufs, true_peak_dbtp=true_peak, sample_peak_dbfs=sample_peak, lra_lu=lra)
    return report, mean_sq
