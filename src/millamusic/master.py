"""Loudness metering (BS.1770 / EBU R128) and mastering a mix to a delivery target.

Chain: high-pass -> mild adaptive tonal-balance shelves -> glue compression -> gain ->
true-peak brickwall limiter, then measure the result and correct the pre-limiter gain (and,
if needed, the limiter ceiling) until the master is on target. A master whose true peak is
above the target's ceiling is never returned.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from dataclasses import asdict, dataclass

import numpy as np

from .audio import Audio
from .errors import RenderError
from .profiles import LOUDNESS_TOLERANCE_LU, DeliveryProfile

log = logging.getLogger(__name__)

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


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


@functools.lru_cache(maxsize=8)
def _meter(rate: int):
    import pyloudnorm

    # "DeMan" = the BS.1770 K-weighting re-derived from its analogue prototype for any sample
    # rate; it matches libebur128 within 0.01 LU.
    return pyloudnorm.Meter(rate, filter_class="DeMan")


@functools.lru_cache(maxsize=1)
def _pool():
    from concurrent.futures import ThreadPoolExecutor

    # scipy's lfilter and soxr release the GIL: one thread per channel halves metering time.
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="millamusic-meter")


def _per_channel(fn, items) -> list:
    if len(items) == 1 or (os.cpu_count() or 1) == 1:
        return [fn(c) for c in items]
    return list(_pool().map(fn, items))


def _check_measurable(samples: np.ndarray, rate: int) -> None:
    if samples.shape[1] < int(0.4 * rate) + 1:
        raise RenderError(
            f"audio is {samples.shape[1] / rate:.3f} s long; loudness needs at least 0.4 s "
            "(one BS.1770 gating block)"
        )
    # block by block: no (channels, frames) mask
    if not all(np.isfinite(samples[..., a : a + _CHUNK]).all() for a in range(0, samples.shape[-1], _CHUNK)):
        raise RenderError("audio contains NaN or infinite samples; the stage before mastering is broken")


@functools.lru_cache(maxsize=8)
def _k_sos(rate: int) -> np.ndarray:
    """pyloudnorm's DeMan K-weighting biquads as one float64 second-order-sections cascade (a0 = 1)."""
    sos = np.array(
        [np.concatenate([st.b, st.a]) * np.array([st.passband_gain] * 3 + [1.0] * 3)
         for st in _meter(rate)._filters.values()],
        dtype=np.float64,
    )
    sos /= sos[:, 3:4].copy()  # a0 = 1
    return sos  # shared by every call: not to be changed (sosfilt needs a writeable buffer)


_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # BS.1770 L, R, C, Ls, Rs

# The streaming meters below walk a signal in blocks of this many frames: their working set
# (a few blocks of float64) stays in the CPU cache, and they never make a (frames,) temporary.
# Fresh memory is what whole-signal numpy code pays most for here: a new 64 MB float64 array
# costs 30-150 ms of page faults (kernel time) before any arithmetic, against 45 ms to K-weight
# a 3-minute channel. Streamed, every number is bit for bit the one the whole-signal code gives:
# sosfilt carries its state between blocks (zi), soxr's stream gives the same samples as its
# one-shot call, and a running sum carried into each block's first element adds in the same
# order as one np.cumsum (tests/test_master.py checks all three against the whole-signal code,
# tests/meter_reference.py: `_k_weighted_power`, `_integrated_from_power`, ... named below).
_CHUNK = 1 << 16


def _k_power_chunks(samples: np.ndarray, rate: int, chunk: int = _CHUNK):
    """Yield (start, block) in order: `_k_weighted_power(samples, rate)[start:start + len(block)]`,
    the same numbers, computed block by block (float64, the block is the caller's to change).

    The channels' next blocks are filtered in the meter threads while the caller uses this one.
    """
    import scipy.signal

    sos = _k_sos(rate)
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
        return [_pool().submit(one, c, a) for c in range(channels)] if threaded else a

    pending = start(0)
    for a in range(0, n, chunk):
        parts = [f.result() for f in pending] if threaded else [one(c, a) for c in range(channels)]
        pending = start(a + chunk)
        total = parts[0]
        for part in parts[1:]:
            total += part
        yield a, total


def _k_csum_at(samples: np.ndarray, rate: int, at: np.ndarray) -> np.ndarray:
    """`csum[at]` for csum = concatenate([[0.0], cumsum(_k_weighted_power(samples, rate))]), the
    same numbers, streamed: no (frames,) array is made. at: int indices in [0, frames]."""
    at = np.asarray(at, dtype=np.int64)
    out = np.zeros(at.shape, dtype=np.float64)  # csum[0] = 0.0
    order = np.argsort(at, kind="stable")
    where = at[order]
    i = int(np.searchsorted(where, 0, side="right"))  # the zeros are done
    carry = 0.0
    for a, block in _k_power_chunks(samples, rate):
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


def _gated_loudness(block_ms: np.ndarray) -> float:
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
    meter every stage that balances by loudness uses. Streamed (`_k_csum_at`): the very number
    `_integrated_from_power(_k_weighted_power(samples, rate), rate)` gives."""
    return _loudness_and_range(samples, rate, lra=False)[0]


def _loudness_and_range(samples: np.ndarray, rate: int, *, lra: bool = True) -> tuple[float, float]:
    """(integrated loudness, loudness range) of `samples` in one streamed K-weighting pass: the
    numbers `_integrated_from_power` and `_lra_from_power` give for `_k_weighted_power(samples)`
    (the range is 0.0 when not asked for)."""
    lufs, mean_sq = _loudness_and_windows(samples, rate, windows=lra)
    return lufs, (0.0 if mean_sq is None else _lra_from_mean_sq(mean_sq))


def _loudness_and_windows(samples: np.ndarray, rate: int, *, windows: bool = True) -> tuple[float, np.ndarray | None]:
    """(integrated loudness, mean square of each `_lra_windows` window, unclipped) in one streamed
    K-weighting pass; None for the windows when not asked for or under 3 s."""
    block_ms, mean_sq = _block_ms_and_windows(samples, rate, windows=windows)
    return _gated_loudness(block_ms), mean_sq


def _block_ms_and_windows(samples: np.ndarray, rate: int, *, windows: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(`_block_ms`, mean square of each `_lra_windows` window, unclipped) of
    `_k_weighted_power(samples)`, the same numbers from one streamed K-weighting pass; None for
    the windows when not asked for or under 3 s."""
    n = samples.shape[1]
    lo, hi = _block_bounds(n, rate)
    spans = _lra_windows(n, rate) if windows else None
    at = [lo, hi] if spans is None else [lo, hi, spans[0], spans[0] + spans[1]]
    values = _k_csum_at(samples, rate, np.concatenate(at))
    block_ms = _block_ms_from(values[: lo.size], values[lo.size : lo.size + hi.size], rate)
    if spans is None:
        return block_ms, None
    starts, win = spans
    rest = values[lo.size + hi.size :]
    return block_ms, (rest[starts.size :] - rest[: starts.size]) / win


def _true_peak_db(samples: np.ndarray, rate: int) -> float:
    """True peak per BS.1770-4 Annex 2: 4x oversampling (soxr HQ, linear phase), max |x|.

    The sample peak is included too, so the true peak is never reported below it.
    """
    return _peaks_db(samples, rate)[0]


def _peaks_db(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(true peak, sample peak) in dB of (channels, frames) samples; -inf for no frames."""
    if samples.shape[1] == 0:
        return -math.inf, -math.inf
    peaks = _per_channel(lambda channel: _channel_peaks(channel, rate), list(samples))
    return _db(max(tp for tp, _ in peaks)), _db(max(sp for _, sp in peaks))


def _upsampled_4x(channel: np.ndarray, rate: int):
    """Yield soxr HQ's 4x oversampling of one channel block by block, in order: together the
    very samples of `soxr.resample(channel, rate, 4 * rate, quality="HQ")` (its stream makes
    the same numbers as its one-shot call), without the (4 x frames,) array."""
    import soxr

    channel = np.ascontiguousarray(channel)
    if channel.dtype not in (np.float32, np.float64):
        yield soxr.resample(channel, rate, 4 * rate, quality="HQ")
        return
    stream = soxr.ResampleStream(rate, 4 * rate, 1, dtype=channel.dtype, quality="HQ")
    n = channel.shape[0]
    for a in range(0, n, _CHUNK):
        yield stream.resample_chunk(channel[a : a + _CHUNK], last=a + _CHUNK >= n)


def _channel_peaks(channel: np.ndarray, rate: int) -> tuple[float, float]:
    """(max |x| of the 4x-oversampled channel and of the channel itself, max |x| of the channel)."""
    sample_peak = max(float(channel.max()), -float(channel.min()))
    top = bottom = 0.0
    for up in _upsampled_4x(channel, rate):
        if up.size:
            top, bottom = max(top, float(up.max())), min(bottom, float(up.min()))
    return max(top, -bottom, sample_peak), sample_peak


def _lra_windows(n: int, rate: int) -> tuple[np.ndarray, int] | None:
    """(starts, length) of the 3 s short-term windows every 0.1 s over n frames; None under 3 s."""
    win = int(round(3.0 * rate))
    hop = int(round(0.1 * rate))
    if n < win:
        return None
    return np.arange(0, n - win + 1, hop), win


def _lra_from_mean_sq(mean_sq: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LRA, LU) from the mean squares of the K-weighted signal's 3 s
    windows every 0.1 s (`_lra_windows`).

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
    return _measure(audio)[0]


def _measure(audio: Audio) -> tuple[LoudnessReport, np.ndarray | None]:
    """`measure(audio)` and the mean squares of its LRA windows (3 s every 0.1 s, `_lra_windows`;
    None under 3 s), which are also the EBU short-term loudness windows (report.py)."""
    samples, rate = audio.samples, audio.sample_rate
    _check_measurable(samples, rate)
    lufs, mean_sq = _loudness_and_windows(samples, rate)
    true_peak, sample_peak = _peaks_db(samples, rate)
    lra = 0.0 if mean_sq is None else _lra_from_mean_sq(mean_sq)
    report = LoudnessReport(integrated_lufs=lufs, true_peak_dbtp=true_peak, sample_peak_dbfs=sample_peak, lra_lu=lra)
    return report, mean_sq


# --------------------------------------------------------------------------- mastering chain

HIGHPASS_HZ = 30.0
WORKING_LUFS = -20.0  # the mix is brought here before the compressor: the chain is level-independent
GLUE = dict(threshold_db=-16.0, ratio=1.8, attack_ms=30.0, release_ms=200.0)  # ~1 dB of gain reduction
EQ_MAX_DB = 1.5  # the tonal-balance shelves never move more than this
LIMITER_MARGIN_DB = 0.5  # limiter ceiling starts this far under the target's true-peak ceiling
LIMITER_LOOKAHEAD_MS = 5.0  # the gain reaches its reduction over this much time before a peak
LIMITER_RELEASE_DB_PER_S = 40.0  # and recovers this fast afterwards (6 dB in 150 ms)
# A soft clipper before the limiter rounds peaks that are far over the ceiling, sample by sample.
# Without it, loudness saturates as the drive rises (the limiter ends up following the peaks):
# measured on a drum-heavy pop mix, -9.8 LUFS at most at a -1.5 dBTP ceiling; with it, -8.2 LUFS
# at +20 dB of drive and -4.5 at +28. At streaming levels (-14 LUFS) it touches only the sharpest drum hits.
CLIP_ABOVE_CEILING_DB = 6.0
CLIP_KNEE_DB = 3.0  # the clipper is the identity up to this far under its threshold
AIM_LU = 0.1  # stop iterating when this close to the target...
ACCEPT_LU = LOUDNESS_TOLERANCE_LU  # ...and never return a master further away than this (0.3 LU)
MAX_PASSES = 8
MAX_GAIN_DB = 30.0  # more drive than this (over the -20 LUFS working level) is destruction, not mastering


def _db2lin(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _highpass(x: np.ndarray, rate: int) -> np.ndarray:
    import scipy.signal

    sos = scipy.signal.butter(2, HIGHPASS_HZ, btype="highpass", fs=rate, output="sos")
    out = np.empty(x.shape, dtype=np.float32)

    def one(c: int) -> None:
        # block by block with the filter state carried (the numbers of one sosfilt call over the
        # channel, rounded to float32 as .astype does), straight into the output
        state = np.zeros((sos.shape[0], 2))
        for a in range(0, x.shape[1], _CHUNK):
            out[c, a : a + _CHUNK], state = scipy.signal.sosfilt(sos, x[c, a : a + _CHUNK], zi=state)

    _per_channel(one, list(range(x.shape[0])))
    return out


def _tonal_balance_db(x: np.ndarray, rate: int) -> tuple[float, float]:
    """(low shelf dB, high shelf dB): a half-way correction towards a reference tilt.

    The reference is the rule of thumb that a balanced pop/rock mix looks flat on an FFT
    analyser with a 4.5 dB/octave slope compensation (FabFilter Pro-Q's and Voxengo SPAN's
    default), i.e. power per Hz falls 4.5 dB/oct, power per octave 1.5 dB/oct. The lows
    (40-150 Hz) and highs (5-14 kHz) are compared with the mids (300 Hz-3 kHz). Shelves are
    capped at EQ_MAX_DB, and a band more than 15 dB under the reference is left alone (the song
    has nothing there; boosting would only raise rumble or hiss).
    """
    mono = x.mean(axis=0)
    f, psd = _welch(mono, rate, 8192 if rate <= 48000 else 16384, noverlap=0)

    def per_octave_db(lo: float, hi: float) -> float:
        sel = (f >= lo) & (f < hi)
        power = float(np.sum(psd[sel])) / math.log2(hi / lo)
        return 10.0 * math.log10(power) if power > 0 else -math.inf

    slope = -1.5  # dB per octave, power per octave
    mid = per_octave_db(300.0, 3000.0)
    if not math.isfinite(mid):
        return 0.0, 0.0
    out = []
    for lo, hi in ((40.0, 150.0), (5000.0, min(14000.0, rate * 0.45))):
        octaves = math.log2(math.sqrt(lo * hi) / math.sqrt(300.0 * 3000.0))
        dev = (per_octave_db(lo, hi) - mid) - slope * octaves  # > 0: too much energy in the band
        if not math.isfinite(dev) or dev < -15.0:
            out.append(0.0)
        else:
            out.append(float(np.clip(-0.5 * dev, -EQ_MAX_DB, EQ_MAX_DB)))
    return out[0], out[1]


def _welch(x: np.ndarray, rate: int, nperseg: int, noverlap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scipy.signal.welch(x, fs=rate, nperseg=nperseg, noverlap=noverlap) with its other defaults
    (Hann window, constant detrend, one-sided density, mean), the same numbers bit for bit.

    scipy 1.17's welch runs one FFT call per segment and keeps every segment's complex128
    spectrum (128 MB for a 3-minute song at 50 % overlap); this does scipy's own steps (its
    ShortTimeFFT's scaled window, its detrend, scipy.fft) on 64 segments at a time and keeps only
    their float64 power, for scipy's own mean over segments: twice as fast. tests/test_master.py holds it to scipy's output, so a scipy that computes welch
    differently fails there rather than moving the masters.
    """
    import scipy.fft
    import scipy.signal

    n = x.shape[0]
    noverlap = nperseg // 2 if noverlap is None else noverlap
    if x.ndim != 1 or n < nperseg or nperseg < 16 or not 0 <= noverlap < nperseg or np.iscomplexobj(x):
        return scipy.signal.welch(x, fs=rate, nperseg=nperseg, noverlap=noverlap)
    hop = nperseg - noverlap
    sft = scipy.signal.ShortTimeFFT(scipy.signal.get_window("hann", nperseg), hop, rate, fft_mode="onesided",
                                    mfft=nperseg, scale_to="psd", phase_shift=None)
    window = sft.win.conj()
    count = (n - noverlap) // hop
    segments = np.lib.stride_tricks.sliding_window_view(x, nperseg)[::hop][:count]
    power = np.empty((nperseg // 2 + 1, count))  # (frequency, segment), as scipy's spectrogram
    for a in range(0, count, 64):
        part = segments[a : a + 64]
        spectrum = scipy.fft.rfft((part - np.mean(part, axis=-1, keepdims=True)) * window, n=nperseg, axis=-1)
        power[:, a : a + 64] = (spectrum.real**2 + spectrum.imag**2).T
    power[1 : -1 if nperseg % 2 == 0 else None] *= 2
    return sft.f, power.mean(axis=-1).astype(np.result_type(x, np.complex64)).real


def _highpassed_level(x: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """(high-passed float32 samples, their integrated loudness); RenderError when silent."""
    x = _highpass(x, rate)
    level = integrated_loudness(x, rate)
    if not math.isfinite(level) or level < -70.0:
        raise RenderError(
            f"the mix is silent or nearly so ({level:.1f} LUFS after the {HIGHPASS_HZ:.0f} Hz high-pass); "
            "nothing to master. Check the mix stage"
        )
    return x, level


def _shape(x: np.ndarray, rate: int, gain_db: float, *, in_place: bool = False) -> np.ndarray:
    """Gain to the working level, tonal balance, glue compression. Returns float32 (2, frames).
    `in_place`: `x` (float32) may be scaled where it is (it is the caller's to lose)."""
    import pedalboard

    if in_place and x.dtype == np.float32:
        x = np.multiply(x, _db2lin(gain_db), out=x)  # the same float32 products as x * gain
    else:
        x = (x * _db2lin(gain_db)).astype(np.float32, copy=False)  # a new array either way
    low_db, high_db = _tonal_balance_db(x, rate)
    log.debug("tonal balance: low shelf %+.2f dB, high shelf %+.2f dB", low_db, high_db)

    def board() -> pedalboard.Pedalboard:
        plugins = []
        if abs(low_db) >= 0.1:
            plugins.append(pedalboard.LowShelfFilter(cutoff_frequency_hz=120.0, gain_db=low_db, q=0.707))
        if abs(high_db) >= 0.1:
            plugins.append(pedalboard.HighShelfFilter(cutoff_frequency_hz=8000.0, gain_db=high_db, q=0.707))
        # Glue: slow attack lets transients through, gentle ratio; no makeup (the gain stage follows).
        plugins.append(pedalboard.Compressor(**GLUE))
        return pedalboard.Pedalboard(plugins)

    # The same numbers as one `board()(x, rate)` call, cheaper two ways (tests/test_master.py holds
    # the output to that call's, bit for bit):
    # - one channel per meter thread, each through its own plugins (pedalboard releases the GIL):
    #   JUCE's shelves and compressor keep separate state per channel and nothing links them (the
    #   compressor's detector follows each channel on its own);
    # - each channel in blocks of _PEDALBOARD_CHUNK frames, the plugins' state carried from block
    #   to block (reset=False): pedalboard cuts any call into _PEDALBOARD_BUFFER-frame buffers from
    #   its start, so whole multiples of that cut the signal where one call would. The working
    #   set stays small: one call allocates buffers the size of the whole signal, 0.1-0.3 s of
    #   page faults here for a 3-minute song.
    n = x.shape[1]
    out = np.empty(x.shape, dtype=np.float32)
    starts = list(range(0, n, _PEDALBOARD_CHUNK))
    if len(starts) > 1 and n - starts[-1] < _PEDALBOARD_BUFFER:
        starts.pop()  # a short tail goes with the block before it (a (2, 1) block would read as mono)
    bounds = list(zip(starts, starts[1:] + [n]))

    def run(rows: slice) -> None:
        chain = board()
        for a, b in bounds:
            out[rows, a:b] = chain.process(x[rows, a:b], rate, buffer_size=_PEDALBOARD_BUFFER, reset=a == 0)

    if x.shape[0] == 1 or (os.cpu_count() or 1) == 1:
        run(slice(None))
    else:
        _per_channel(lambda c: run(slice(c, c + 1)), list(range(x.shape[0])))
    return out


_PEDALBOARD_BUFFER = 8192  # pedalboard's default buffer_size, which the one-call chain used
_PEDALBOARD_CHUNK = max(1, _CHUNK // _PEDALBOARD_BUFFER) * _PEDALBOARD_BUFFER


def _pre_chain(x: np.ndarray, rate: int) -> np.ndarray:
    """High-pass, working level, tonal balance, glue compression. Returns float32 (2, frames)."""
    x, level = _highpassed_level(x, rate)
    return _shape(x, rate, WORKING_LUFS - level, in_place=True)  # x: the high-pass's own new array


def _true_peak_envelope_db(x: np.ndarray, rate: int) -> np.ndarray:
    """Stereo-linked true peak of every sample, dBFS, (frames,) float64: the largest of the four
    4x-oversampled values (soxr, as `_true_peak_db`) around it, over all channels."""
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

    peaks = _per_channel(one, list(x))
    peak = peaks[0]
    for other in peaks[1:]:
        np.maximum(peak, other, out=peak)
    peak_db = peak.astype(np.float64)
    with np.errstate(divide="ignore"):
        np.log10(peak_db, out=peak_db)
    peak_db *= 20.0
    return peak_db


def _limiter_gain_db(peak_db: np.ndarray, rate: int, *, ceiling_db: float) -> np.ndarray:
    """Gain curve (dB, <= 0, (frames,)) of a lookahead true-peak limiter, computed offline.

    Written here instead of using pedalboard's BrickwallLimiter: that limiter refreshes its hold
    on every sample over the ceiling, so on dense material driven hard it sits at its deepest
    reduction and the master gets *quieter* as the drive rises (measured on a pop mix: +16 dB of
    drive gave -11.7 LUFS, +28 dB gave -19.7), which made the loud profiles unreachable.
    Three vector steps, no per-sample loop:
      1. hold: the smallest needed gain over the next LIMITER_LOOKAHEAD_MS (a sliding minimum);
      2. release: recover at LIMITER_RELEASE_DB_PER_S; g[n] = min_k(h[n-k] + k*r) is a running
         minimum of h[n] - n*r, plus n*r;
      3. attack: a moving average over the lookahead, so the gain glides down before each peak.
    Every value averaged in step 3 is at or under the gain that sample needs (each hold window
    covers it), so the output stays under the ceiling sample by sample; the gain is a smooth
    curve, so the true peak follows. More drive never gives a quieter master.

    Computed block by block (`_limiter_gain_blocks`); these are the numbers of the whole-array
    formulas given there.
    """
    out = np.empty(peak_db.shape[0], dtype=np.float64)
    for a, block in _limiter_gain_blocks(peak_db, rate, ceiling_db=ceiling_db):
        out[a : a + block.shape[0]] = block
    return out


def _limiter_gain_blocks(peak_db: np.ndarray, rate: int, *, ceiling_db: float, gain_db: float | None = None,
                         chunk: int = _CHUNK):
    """Yield (start, block) in order: `_limiter_gain_db(peak_db (+ gain_db), rate, ceiling_db=...)`
    block by block (float64, the block is the caller's to change), the same numbers bit for bit
    as these whole-array formulas, with n frames, look = the lookahead in frames, r = the release
    per frame in dB:

        need = minimum(0, ceiling_db - (peak_db + gain_db))
        held[i] = min(need[i : i + look])          # minimum_filter1d, window [i, i + look - 1]
        ramp = arange(n) * r
        released = minimum(minimum.accumulate(held - ramp) + ramp, 0)
        csum = cumsum(concatenate([full(look, released[0]), released]))
        gain = (csum[look:] - csum[:-look]) / look

    Each block of `need` reaches `look - 1` frames into the next block for the sliding minimum;
    the running minimum and the running sum carry over from block to block (the sum by adding
    it into the block's first element: the same additions in the same order as one cumsum); the
    moving average keeps the sum's last `look` values. No (frames,) temporary is made.
    """
    import scipy.ndimage

    n = peak_db.shape[0]
    look = max(1, int(round(LIMITER_LOOKAHEAD_MS / 1000.0 * rate)))
    r = LIMITER_RELEASE_DB_PER_S / rate
    low = math.inf  # the running minimum of held - ramp so far
    tail = None  # csum[a : a + look]: what the moving average subtracts next
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        peaks = peak_db[a : min(b + look - 1, n)]
        if gain_db is not None:
            peaks = peaks + gain_db
        need = np.subtract(ceiling_db, peaks)
        np.minimum(need, 0.0, out=need)
        # window [i, i + look - 1]: the filter's centre moved to its left edge. `need` ends at
        # the signal's end or look - 1 frames past b, so the window of every frame in [a, b) is
        # inside it or, at the signal's end, padded with the last value ("nearest") as before.
        held = scipy.ndimage.minimum_filter1d(need, size=look, origin=-(look // 2), mode="nearest")[: b - a]
        ramp = np.arange(a, b, dtype=np.float64)
        ramp *= r
        released = np.subtract(held, ramp)
        released[0] = np.minimum(released[0], low)
        np.minimum.accumulate(released, out=released)
        low = float(released[-1])
        released += ramp
        np.minimum(released, 0.0, out=released)
        # Before the start the gain is taken as the first sample's (which is already low enough
        # for every sample it is averaged with), so a peak in the first milliseconds is held too.
        if tail is None:
            tail = np.cumsum(np.full(look, released[0]))
        released[0] += tail[-1]
        window = np.concatenate([tail, np.cumsum(released, out=released)])  # csum[a : b + look]
        block = np.subtract(window[look:], window[: b - a])
        block /= look
        tail = window[-look:]
        yield a, block


def _soft_clip(x: np.ndarray, threshold_db: float, *, in_place: bool = False) -> np.ndarray | None:
    """`x` soft-clipped at `threshold_db` (tanh above a knee CLIP_KNEE_DB under it), sample by
    sample; None when no sample reaches the knee (nothing to do). A new array, or `x` itself
    changed when `in_place`.

    At the audio rate, not oversampled: band-limiting a clipped 4x signal back down brings back
    overshoots of several dB, and the limiter after it sees (and holds) every inter-sample peak
    the clipping makes anyway.
    """
    top = _db2lin(threshold_db)
    knee = top * _db2lin(-CLIP_KNEE_DB)
    if x.size and max(float(x.max()), -float(x.min())) <= knee:
        return None  # the usual case, found without a temporary (NaN goes the long way, as before)
    room = top - knee
    out = None
    # Block by block along the frames (cache-sized temporaries, no full-size masks); each sample
    # gets the same float32 arithmetic as the whole-array expression
    # out[over] = sign(x[over]) * (knee + room * tanh((|x[over]| - knee) / room)).
    for a in range(0, x.shape[-1], _CHUNK):
        part = x[..., a : a + _CHUNK]
        size = np.abs(part)
        over = size > knee
        if not over.any():
            continue
        if out is None:
            out = x if in_place else x.copy()
        out[..., a : a + _CHUNK][over] = np.sign(part[over]) * (knee + room * np.tanh((size[over] - knee) / room))
    return out


def _limit(x: np.ndarray, rate: int, ceiling_db: float, *, peak_db: np.ndarray | None = None,
           gain_db: float = 0.0) -> np.ndarray:
    """`x` times `gain_db`, soft-clipped far over the ceiling, then true-peak limited to
    `ceiling_db`: float32, same frames, sample-aligned.

    `peak_db` is `_true_peak_envelope_db(x)`, passed in when the same `x` is limited at many gains.
    """
    driven = (x * _db2lin(gain_db)).astype(np.float32, copy=False)  # a new array either way
    clipped = _soft_clip(driven, ceiling_db + CLIP_ABOVE_CEILING_DB, in_place=True)  # driven is ours
    if clipped is not None:
        driven, peaks, offset = clipped, _true_peak_envelope_db(clipped, rate), None
    else:
        peaks, offset = (peak_db if peak_db is not None else _true_peak_envelope_db(x, rate)), gain_db
    # gain curve block by block (the numbers of `_limiter_gain_db(peaks + offset)`), applied as
    # it comes: (driven * 10 ** (curve / 20)).astype(np.float32), since float32 x float64 is
    # multiplied in float64 and rounded to float32 on the way out, without (frames,) temporaries
    for a, curve in _limiter_gain_blocks(peaks, rate, ceiling_db=ceiling_db, gain_db=offset):
        np.divide(curve, 20.0, out=curve)
        np.power(10.0, curve, out=curve)
        part = driven[..., a : a + curve.shape[0]]
        np.multiply(part, curve, out=part)
    return driven


class _LimiterModel:
    """Cheap predictor of the integrated loudness after gain + limiter, to choose the gain.

    The limiter's own algorithm (`_limiter_gain_db`) run on 10 ms blocks: each block's true
    peak and K-weighted power at unity gain are taken once; for a gain and ceiling the block
    gains come from the same hold / release, and the BS.1770 gating runs on the reduced powers.
    A prediction costs about a millisecond per minute of audio; the loop in `master` calibrates
    it with the offset measured on every real pass.
    """

    def __init__(self, x: np.ndarray, rate: int, peak_db: np.ndarray):
        self.block = int(round(0.01 * rate))
        nb = x.shape[1] // self.block
        cut = nb * self.block
        self.peak_db = peak_db[:cut].reshape(nb, self.block).max(axis=1)
        self.peak_db = np.maximum(self.peak_db, np.concatenate([self.peak_db[1:], [-np.inf]]))  # lookahead
        # = _k_weighted_power(x[:, :cut], rate).reshape(nb, self.block).sum(axis=1), streamed in
        # whole 10 ms blocks (each block's sum is its own: the same numbers)
        self.power = np.empty(nb, dtype=np.float64)
        per = max(1, _CHUNK // self.block) * self.block
        for a, part in _k_power_chunks(x[:, :cut], rate, chunk=per):
            self.power[a // self.block : (a + part.shape[0]) // self.block] = part.reshape(-1, self.block).sum(axis=1)
        self.ramp = np.arange(nb, dtype=np.float64) * (LIMITER_RELEASE_DB_PER_S * self.block / rate)
        self.hop = 0.1 * rate / self.block  # gating hop, in blocks

    def block_ms(self, gain_db: float, ceiling_db: float) -> np.ndarray:
        """Predicted mean square of each 400 ms gating block after gain and limiter."""
        # the clipper holds peaks under CLIP_ABOVE_CEILING_DB over the ceiling
        need = np.maximum(-CLIP_ABOVE_CEILING_DB, np.minimum(0.0, ceiling_db - (self.peak_db + gain_db)))
        reduction = np.minimum(np.minimum.accumulate(need - self.ramp) + self.ramp, 0.0)
        p = self.power * 10.0 ** ((gain_db + reduction) / 10.0)  # power: 20 log10 -> /10
        csum = np.concatenate([[0.0], np.cumsum(p)])
        nb = len(p)
        starts = np.round(np.arange(0.0, nb - 4 * self.hop + 1e-9, self.hop)).astype(np.int64)
        if starts.size == 0:
            starts = np.array([0])
        ends = np.minimum(np.round(starts + 4 * self.hop).astype(np.int64), nb)
        return (csum[ends] - csum[starts]) / np.maximum(ends - starts, 1) / self.block

    def loudness(self, gain_db: float, ceiling_db: float) -> float:
        return _gated_loudness(self.block_ms(gain_db, ceiling_db))

    def gain_for(self, lufs: float, ceiling_db: float) -> float:
        return _gain_for(lambda gain: self.loudness(gain, ceiling_db), lufs)


def _gain_for(loudness_at, lufs: float) -> float:
    """Smallest gain (dB) for which `loudness_at(gain)` reaches `lufs` (bisection: loudness rises
    with gain); MAX_GAIN_DB when even that is not enough."""
    lo, hi = -60.0, MAX_GAIN_DB
    if loudness_at(hi) < lufs:
        return hi
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if loudness_at(mid) < lufs else (lo, mid)
    return hi


def _next_gain(points: list[tuple[float, float]], want: float, offset: float, predicted, gain_for) -> tuple[float, float]:
    """The next pass's gain and model offset, from the real passes at this ceiling, (gain, LUFS).

    Two passes: a secant step, slope kept sane. One: re-calibrate the model with the offset the
    pass measured (real minus predicted loudness) and let it pick the gain."""
    gain, lufs = points[-1]
    if len(points) >= 2 and abs(points[-1][0] - points[-2][0]) > 1e-3:
        (g1, l1), (g2, l2) = points[-2], points[-1]
        slope = float(np.clip((l2 - l1) / (g2 - g1), 0.05, 1.0))
        return min(MAX_GAIN_DB, gain + float(np.clip((want - lufs) / slope, -12.0, 12.0))), offset
    offset = lufs - predicted(gain)
    return gain_for(want - offset), offset


def master(audio: Audio, target: DeliveryProfile) -> tuple[Audio, LoudnessReport]:
    """Master `audio` to `target`: stereo float32, same rate and frames, sample-aligned.

    The integrated loudness ends within ACCEPT_LU (usually AIM_LU) of the target and the true
    peak at or under the target's ceiling; otherwise RenderError, with the numbers.
    """
    rate = audio.sample_rate
    if audio.channels not in (1, 2):
        raise RenderError(f"master() takes a mono or stereo mix, got {audio.channels} channels")
    src = audio.to_stereo().samples
    _check_measurable(src, rate)
    x = _pre_chain(src, rate)
    peak_db = _true_peak_envelope_db(x, rate)
    model = _LimiterModel(x, rate, peak_db)

    want, tp_max = target.integrated_lufs, target.true_peak_dbtp
    ceiling = tp_max - LIMITER_MARGIN_DB
    offset = 0.0  # real loudness minus the model's, from the latest pass
    gain = model.gain_for(want, ceiling)
    points: list[tuple[float, float]] = []  # (gain, loudness) of real passes at the current ceiling
    best: tuple[float, np.ndarray, float, float, float] | None = None  # (|error|, samples, lufs, tp, lra)
    lufs = tp = math.nan
    for n_pass in range(1, MAX_PASSES + 1):
        y = _limit(x, rate, ceiling, peak_db=peak_db, gain_db=gain)
        lufs, lra = _loudness_and_range(y, rate)  # one streamed K-weighting pass for both
        tp = _true_peak_db(y, rate)
        err = want - lufs
        log.debug(
            "pass %d: gain %+.2f dB, ceiling %.2f dB -> %.2f LUFS, %.2f dBTP", n_pass, gain, ceiling, lufs, tp
        )
        if tp <= tp_max:
            if abs(err) <= ACCEPT_LU and (best is None or abs(err) < best[0]):
                best = (abs(err), y, lufs, tp, lra)
            if abs(err) <= AIM_LU:
                break
        else:
            # The limiter let an inter-sample peak through: lower its ceiling by the overshoot
            # (plus a little) and let the model pick the gain for the new ceiling.
            offset = lufs - model.loudness(gain, ceiling)
            ceiling -= (tp - tp_max) + 0.1
            if ceiling < tp_max - 6.0:
                break  # the limiter is not holding peaks at all; give up with the numbers below
            points.clear()
            gain = model.gain_for(want - offset, ceiling)
            continue
        if gain >= MAX_GAIN_DB and err > 0:
            break  # cannot push harder
        points.append((gain, lufs))
        gain, offset = _next_gain(points, want, offset, lambda g: model.loudness(g, ceiling),
                                  lambda lufs: model.gain_for(lufs, ceiling))

    if best is None:
        raise RenderError(
            f"could not master to {target.name} ({want:.1f} LUFS, true peak <= {tp_max:.1f} dBTP): "
            f"the last pass gave {lufs:.2f} LUFS at {tp:.2f} dBTP with {gain:+.2f} dB into a limiter "
            f"ceiling of {ceiling:.2f} dB. The mix is probably too dynamic or too spiky for this target; "
            "tame its peaks in the mix stage, or choose a quieter target"
        )
    _, y, lufs, tp, lra = best
    out = Audio(y, rate)
    report = LoudnessReport(  # (the sample peak as Audio.peak() has it, without an |y| temporary)
        integrated_lufs=lufs, true_peak_dbtp=tp, sample_peak_dbfs=_db(max(float(y.max()), -float(y.min()))), lra_lu=lra
    )
    return out, report


@dataclass(frozen=True)
class AlbumMaster:
    tracks: tuple[tuple[Audio, LoudnessReport], ...]  # in the order given
    album_lufs: float  # the integrated loudness of all tracks played as one programme
    gain_db: float  # the one gain every track got into its limiter


def master_album(mixes: list[Audio], target: DeliveryProfile) -> AlbumMaster:
    """Master an album with one gain for all tracks (album gain), keeping their relative loudness.

    Every track gets the same high-pass, its own tonal balance and glue compression (at one
    album working level), then one common gain into its own true-peak limiter. The gain is
    chosen so that the album, measured as one programme (BS.1770 gating over the blocks of all
    tracks), lands within ACCEPT_LU of the target; each track keeps its own loudness relative to
    the others (a quiet ballad stays quieter than the single). Every track ends at or under the
    ceiling. A track much louder than the rest is limited harder than it would be alone.
    """
    if not mixes:
        raise RenderError("master_album() needs at least one track")
    rate = mixes[0].sample_rate
    for number, audio in enumerate(mixes, start=1):
        if audio.sample_rate != rate:
            raise RenderError(f"track {number} is at {audio.sample_rate} Hz, track 1 at {rate} Hz; resample first")
        if audio.channels not in (1, 2):
            raise RenderError(f"track {number} has {audio.channels} channels; master_album() takes mono or stereo")
    from concurrent.futures import ThreadPoolExecutor

    # The per-track work runs in threads: it is numpy/scipy on whole tracks, which releases the GIL.
    pool = ThreadPoolExecutor(max_workers=min(len(mixes), os.cpu_count() or 1), thread_name_prefix="millamusic-album")

    def each(function, *columns) -> list:
        return list(pool.map(function, *columns))

    def highpassed(audio: Audio) -> np.ndarray:
        src = audio.to_stereo().samples
        _check_measurable(src, rate)
        return _highpass(src, rate)

    with pool:
        return _master_album(mixes, target, rate, each, highpassed)


def _master_album(mixes, target: DeliveryProfile, rate: int, each, highpassed) -> AlbumMaster:
    passed = each(highpassed, mixes)
    album_level = _gated_loudness(np.concatenate(each(lambda x: _block_ms_and_windows(x, rate, windows=False)[0], passed)))
    if not math.isfinite(album_level) or album_level < -70.0:
        raise RenderError(f"the album's mixes are silent or nearly so ({album_level:.1f} LUFS); nothing to master")
    shaped = each(lambda x: _shape(x, rate, WORKING_LUFS - album_level), passed)
    del passed  # memory grows with the album's length: keep one copy of every track, not two
    peaks_db = each(lambda x: _true_peak_envelope_db(x, rate), shaped)
    models = each(lambda x, p: _LimiterModel(x, rate, p), shaped, peaks_db)
    want, tp_max = target.integrated_lufs, target.true_peak_dbtp
    ceilings = [tp_max - LIMITER_MARGIN_DB] * len(shaped)

    def predicted(gain: float) -> float:
        return _gated_loudness(np.concatenate(each(lambda m, c: m.block_ms(gain, c), models, ceilings)))

    def gain_for(lufs: float) -> float:
        return _gain_for(predicted, lufs)

    offset = 0.0
    gain = gain_for(want)
    points: list[tuple[float, float]] = []
    best = None  # (|error|, outputs, album lufs, gain)
    lufs = math.nan
    for n_pass in range(1, MAX_PASSES + 1):
        outputs = None  # the last pass's, unless kept as the best: freed before the next is made
        outputs = each(lambda x, p, c: _limit(x, rate, c, peak_db=p, gain_db=gain), shaped, peaks_db, ceilings)
        # each track's (gating block mean squares, LRA window mean squares), streamed: the numbers
        # of _block_ms / _lra_from_power on its K-weighted power, without keeping the power
        stats = each(lambda y: _block_ms_and_windows(y, rate), outputs)
        peaks = each(lambda y: _true_peak_db(y, rate), outputs)
        lufs = _gated_loudness(np.concatenate([block_ms for block_ms, _ in stats]))
        err = want - lufs
        log.debug("album pass %d: gain %+.2f dB -> %.2f LUFS, peaks %s", n_pass, gain, lufs, peaks)
        over = [i for i, tp in enumerate(peaks) if tp > tp_max]
        if over:
            # Lower only the ceilings that let a peak through, then re-aim with the model.
            offset = lufs - predicted(gain)
            for i in over:
                ceilings[i] -= (peaks[i] - tp_max) + 0.1
            if min(ceilings) < tp_max - 6.0:
                break
            points.clear()
            gain = gain_for(want - offset)
            continue
        if abs(err) <= ACCEPT_LU and (best is None or abs(err) < best[0]):
            best = (abs(err), list(zip(outputs, stats, peaks)), lufs, gain)
        if abs(err) <= AIM_LU or (gain >= MAX_GAIN_DB and err > 0):
            break
        points.append((gain, lufs))
        gain, offset = _next_gain(points, want, offset, predicted, gain_for)
    if best is None:
        raise RenderError(
            f"could not master the album to {target.name} ({want:.1f} LUFS, true peak <= {tp_max:.1f} dBTP): the "
            f"last pass gave {lufs:.2f} LUFS with {gain:+.2f} dB of album gain. A track is probably far louder "
            "or spikier than the rest; balance it in its mix, or master the tracks one by one"
        )
    _, tracks, lufs, gain = best
    return AlbumMaster(
        tracks=tuple(
            (Audio(y, rate), LoudnessReport(integrated_lufs=_gated_loudness(block_ms), true_peak_dbtp=tp,
                                            sample_peak_dbfs=_db(max(float(y.max()), -float(y.min()))),
                                            lra_lu=0.0 if windows is None else _lra_from_mean_sq(windows)))
            for y, (block_ms, windows), tp in tracks
        ),
        album_lufs=lufs,
        gain_db=gain,
    )
