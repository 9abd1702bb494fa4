"""Mastering a mix to a delivery target, as a signal chain configured by mastering.config.

Chain: high-pass -> working level -> mild adaptive tonal-balance shelves -> glue compression ->
gain -> soft clipper + true-peak limiter, then measure the result and correct the gain (and, if
needed, the limiter ceiling) until the master is on target. A master whose true peak is above
the target's ceiling is never returned.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pedalboard

from millamusic.core.audio import Audio
from millamusic.core.errors import RenderError
from millamusic.core.units import db_to_gain, gain_to_db
from millamusic.dsp.blocks import CHUNK, per_channel
from millamusic.dsp.limiter import LimiterSettings, limit
from millamusic.dsp.loudness import (
    LoudnessReport,
    check_measurable,
    gated_loudness,
    integrated_loudness,
    k_power_chunks,
    loudness_and_range,
)
from millamusic.dsp.peak import true_peak_db, true_peak_envelope_db
from millamusic.dsp.spectrum import welch
from millamusic.mastering.config import MASTERING, GainSearch, Glue, HighPass, MasteringConfig, TonalBalance
from millamusic.spec.profiles import DeliveryProfile

log = logging.getLogger(__name__)

PEDALBOARD_BUFFER = 8192  # pedalboard's default buffer_size, which the one-call chain used
PEDALBOARD_CHUNK = max(1, CHUNK // PEDALBOARD_BUFFER) * PEDALBOARD_BUFFER


def highpass(x: np.ndarray, rate: int, settings: HighPass = MASTERING.highpass) -> np.ndarray:
    """Butterworth high-pass, float32 out, each channel in its own meter thread."""
    import scipy.signal  # scipy: ~1 s to import

    sos = scipy.signal.butter(settings.order, settings.corner_hz, btype="highpass", fs=rate, output="sos")
    out = np.empty(x.shape, dtype=np.float32)

    def one(c: int) -> None:
        # block by block with the filter state carried (the numbers of one sosfilt call over the
        # channel, rounded to float32 as .astype does), straight into the output
        state = np.zeros((sos.shape[0], 2))
        for a in range(0, x.shape[1], CHUNK):
            out[c, a : a + CHUNK], state = scipy.signal.sosfilt(sos, x[c, a : a + CHUNK], zi=state)

    per_channel(one, list(range(x.shape[0])))
    return out


def _highpassed_level(x: np.ndarray, rate: int, config: MasteringConfig) -> tuple[np.ndarray, float]:
    """(high-passed float32 samples, their integrated loudness); RenderError when silent."""
    x = highpass(x, rate, config.highpass)
    level = integrated_loudness(x, rate)
    if not math.isfinite(level) or level < config.silent_below_lufs:
        raise RenderError(
            f"the mix is silent or nearly so ({level:.1f} LUFS after the {config.highpass.corner_hz:.0f} Hz high-pass); "
            "nothing to master. Check the mix stage"
        )
    return x, level


def shape(x: np.ndarray, rate: int, gain_db: float, *, in_place: bool = False,
          balance: TonalBalance = MASTERING.tonal_balance, glue: Glue = MASTERING.glue) -> np.ndarray:
    """Gain to the working level, tonal balance, glue compression. Returns float32 (2, frames).
    `in_place`: `x` (float32) may be scaled where it is (it is the caller's to lose)."""

    if in_place and x.dtype == np.float32:
        x = np.multiply(x, db_to_gain(gain_db), out=x)  # the same float32 products as x * gain
    else:
        x = (x * db_to_gain(gain_db)).astype(np.float32, copy=False)  # a new array either way
    low_db, high_db = tonal_balance_db(x, rate, balance)
    log.debug("tonal balance: low shelf %+.2f dB, high shelf %+.2f dB", low_db, high_db)

    def board() -> pedalboard.Pedalboard:
        plugins = []
        if abs(low_db) >= balance.min_shelf_db:
            plugins.append(pedalboard.LowShelfFilter(cutoff_frequency_hz=balance.low_shelf_hz, gain_db=low_db,
                                                     q=balance.shelf_q))
        if abs(high_db) >= balance.min_shelf_db:
            plugins.append(pedalboard.HighShelfFilter(cutoff_frequency_hz=balance.high_shelf_hz, gain_db=high_db,
                                                      q=balance.shelf_q))
        plugins.append(pedalboard.Compressor(threshold_db=glue.threshold_db, ratio=glue.ratio,
                                             attack_ms=glue.attack_ms, release_ms=glue.release_ms))
        return pedalboard.Pedalboard(plugins)

    # The same numbers as one `board()(x, rate)` call, cheaper two ways (tests/test_master.py holds
    # the output to that call's, bit for bit):
    # - one channel per meter thread, each through its own plugins (pedalboard releases the GIL):
    #   JUCE's shelves and compressor keep separate state per channel and nothing links them (the
    #   compressor's detector follows each channel on its own);
    # - each channel in blocks of PEDALBOARD_CHUNK frames, the plugins' state carried from block
    #   to block (reset=False): pedalboard cuts any call into PEDALBOARD_BUFFER-frame buffers from
    #   its start, so whole multiples of that cut the signal where one call would. The working
    #   set stays small: one call allocates buffers the size of the whole signal, 0.1-0.3 s of
    #   page faults here for a 3-minute song.
    n = x.shape[1]
    out = np.empty(x.shape, dtype=np.float32)
    starts = list(range(0, n, PEDALBOARD_CHUNK))
    if len(starts) > 1 and n - starts[-1] < PEDALBOARD_BUFFER:
        starts.pop()  # a short tail goes with the block before it (a (2, 1) block would read as mono)
    bounds = list(zip(starts, starts[1:] + [n]))

    def run(rows: slice) -> None:
        chain = board()
        for a, b in bounds:
            out[rows, a:b] = chain.process(x[rows, a:b], rate, buffer_size=PEDALBOARD_BUFFER, reset=a == 0)

    if x.shape[0] == 1 or (os.cpu_count() or 1) == 1:
        run(slice(None))
    else:
        per_channel(lambda c: run(slice(c, c + 1)), list(range(x.shape[0])))
    return out


def pre_chain(x: np.ndarray, rate: int, config: MasteringConfig = MASTERING) -> np.ndarray:
    """High-pass, working level, tonal balance, glue compression. Returns float32 (2, frames)."""
    x, level = _highpassed_level(x, rate, config)
    return shape(x, rate, config.working_lufs - level, in_place=True,  # x: the high-pass's own new array
                 balance=config.tonal_balance, glue=config.glue)


def gain_for(loudness_at, lufs: float, search: GainSearch = MASTERING.search) -> float:
    """Smallest gain (dB) for which `loudness_at(gain)` reaches `lufs` (bisection: loudness rises
    with gain); `search.max_gain_db` when even that is not enough."""
    lo, hi = search.min_gain_db, search.max_gain_db
    if loudness_at(hi) < lufs:
        return hi
    for _ in range(search.bisection_steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if loudness_at(mid) < lufs else (lo, mid)
    return hi


def next_gain(points: list[tuple[float, float]], want: float, offset: float, predicted, gain_for,
              search: GainSearch = MASTERING.search) -> tuple[float, float]:
    """The next pass's gain and model offset, from the real passes at this ceiling, (gain, LUFS).

    Two passes: a secant step, slope kept sane. One: re-calibrate the model with the offset the
    pass measured (real minus predicted loudness) and let it pick the gain."""
    gain, lufs = points[-1]
    if len(points) >= 2 and abs(points[-1][0] - points[-2][0]) > 1e-3:
        (g1, l1), (g2, l2) = points[-2], points[-1]
        slope = float(np.clip((l2 - l1) / (g2 - g1), *search.slope_bounds))
        step = float(np.clip((want - lufs) / slope, -search.max_step_db, search.max_step_db))
        return min(search.max_gain_db, gain + step), offset
    offset = lufs - predicted(gain)
    return gain_for(want - offset), offset


def master(audio: Audio, target: DeliveryProfile, config: MasteringConfig = MASTERING) -> tuple[Audio, LoudnessReport]:
    """Master `audio` to `target`: stereo float32, same rate and frames, sample-aligned.

    The integrated loudness ends within `config.search.accept_lu` (usually `aim_lu`) of the
    target and the true peak at or under the target's ceiling; otherwise RenderError, with the numbers.
    """
    search = config.search
    rate = audio.sample_rate
    if audio.channels not in (1, 2):
        raise RenderError(f"master() takes a mono or stereo mix, got {audio.channels} channels")
    src = audio.to_stereo().samples
    check_measurable(src, rate)
    x = pre_chain(src, rate, config)
    peak_db = true_peak_envelope_db(x, rate)
    model = LimiterModel(x, rate, peak_db, config.limiter, search)

    want, tp_max = target.integrated_lufs, target.true_peak_dbtp
    ceiling = tp_max - search.ceiling_margin_db
    offset = 0.0  # real loudness minus the model's, from the latest pass
    gain = model.gain_for(want, ceiling)
    points: list[tuple[float, float]] = []  # (gain, loudness) of real passes at the current ceiling
    best: tuple[float, np.ndarray, float, float, float] | None = None  # (|error|, samples, lufs, tp, lra)
    lufs = tp = math.nan
    for n_pass in range(1, search.max_passes + 1):
        y = limit(x, rate, ceiling, peak_db=peak_db, gain_db=gain, settings=config.limiter)
        lufs, lra = loudness_and_range(y, rate)  # one streamed K-weighting pass for both
        tp = true_peak_db(y, rate)
        err = want - lufs
        log.debug(
            "pass %d: gain %+.2f dB, ceiling %.2f dB -> %.2f LUFS, %.2f dBTP", n_pass, gain, ceiling, lufs, tp
        )
        if tp <= tp_max:
            if abs(err) <= search.accept_lu and (best is None or abs(err) < best[0]):
                best = (abs(err), y, lufs, tp, lra)
            if abs(err) <= search.aim_lu:
                break
        else:
            # The limiter let an inter-sample peak through: lower its ceiling by the overshoot
            # (plus a little) and let the model pick the gain for the new ceiling.
            offset = lufs - model.loudness(gain, ceiling)
            ceiling -= (tp - tp_max) + search.overshoot_margin_db
            if ceiling < tp_max - search.give_up_below_db:
                break  # the limiter is not holding peaks at all; give up with the numbers below
            points.clear()
            gain = model.gain_for(want - offset, ceiling)
            continue
        if gain >= search.max_gain_db and err > 0:
            break  # cannot push harder
        points.append((gain, lufs))
        gain, offset = next_gain(points, want, offset, lambda g: model.loudness(g, ceiling),
                                 lambda lufs: model.gain_for(lufs, ceiling), search)

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
        integrated_lufs=lufs, true_peak_dbtp=tp, sample_peak_dbfs=gain_to_db(max(float(y.max()), -float(y.min()))), lra_lu=lra
    )
    return out, report


def tonal_balance_db(x: np.ndarray, rate: int, balance: TonalBalance = MASTERING.tonal_balance) -> tuple[float, float]:
    """(low shelf dB, high shelf dB): a correction towards the reference tilt (config.TonalBalance).

    The lows and highs are compared with the mids. Shelves are capped at `max_db`, and a band
    more than `ignore_below_db` under the reference is left alone (the song has nothing there;
    boosting would only raise rumble or hiss).
    """
    mono = x.mean(axis=0)
    f, psd = welch(mono, rate, balance.segment_frames[0] if rate <= 48000 else balance.segment_frames[1], noverlap=0)

    def per_octave_db(lo: float, hi: float) -> float:
        sel = (f >= lo) & (f < hi)
        power = float(np.sum(psd[sel])) / math.log2(hi / lo)
        return 10.0 * math.log10(power) if power > 0 else -math.inf

    slope = balance.slope_db_per_octave
    mid_lo, mid_hi = balance.mids_hz
    mid = per_octave_db(mid_lo, mid_hi)
    if not math.isfinite(mid):
        return 0.0, 0.0
    out = []
    bands = (balance.lows_hz, (balance.highs_hz[0], min(balance.highs_hz[1], rate * balance.highs_top_share)))
    for lo, hi in bands:
        octaves = math.log2(math.sqrt(lo * hi) / math.sqrt(mid_lo * mid_hi))
        dev = (per_octave_db(lo, hi) - mid) - slope * octaves  # > 0: too much energy in the band
        if not math.isfinite(dev) or dev < balance.ignore_below_db:
            out.append(0.0)
        else:
            out.append(float(np.clip(-balance.correction * dev, -balance.max_db, balance.max_db)))
    return out[0], out[1]


class LimiterModel:
    """Cheap predictor of the integrated loudness after gain + limiter, to choose the gain.

    The limiter's own algorithm (dsp.limiter.limiter_gain_db) run on 10 ms blocks: each block's true
    peak and K-weighted power at unity gain are taken once; for a gain and ceiling the block
    gains come from the same hold / release, and the BS.1770 gating runs on the reduced powers.
    A prediction costs about a millisecond per minute of audio; the loop in `master` calibrates
    it with the offset measured on every real pass.
    """

    def __init__(self, x: np.ndarray, rate: int, peak_db: np.ndarray, limiter: LimiterSettings = MASTERING.limiter,
                 search: GainSearch = MASTERING.search):
        self.limiter, self.search = limiter, search
        self.block = int(round(0.01 * rate))
        nb = x.shape[1] // self.block
        cut = nb * self.block
        self.peak_db = peak_db[:cut].reshape(nb, self.block).max(axis=1)
        self.peak_db = np.maximum(self.peak_db, np.concatenate([self.peak_db[1:], [-np.inf]]))  # lookahead
        # = _k_weighted_power(x[:, :cut], rate).reshape(nb, self.block).sum(axis=1), streamed in
        # whole 10 ms blocks (each block's sum is its own: the same numbers)
        self.power = np.empty(nb, dtype=np.float64)
        per = max(1, CHUNK // self.block) * self.block
        for a, part in k_power_chunks(x[:, :cut], rate, chunk=per):
            self.power[a // self.block : (a + part.shape[0]) // self.block] = part.reshape(-1, self.block).sum(axis=1)
        self.ramp = np.arange(nb, dtype=np.float64) * (limiter.release_db_per_s * self.block / rate)
        self.hop = 0.1 * rate / self.block  # gating hop, in blocks

    def block_ms(self, gain_db: float, ceiling_db: float) -> np.ndarray:
        """Predicted mean square of each 400 ms gating block after gain and limiter."""
        # the clipper holds peaks under clip_above_ceiling_db over the ceiling
        need = np.maximum(-self.limiter.clip_above_ceiling_db, np.minimum(0.0, ceiling_db - (self.peak_db + gain_db)))
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
        return gated_loudness(self.block_ms(gain_db, ceiling_db))

    def gain_for(self, lufs: float, ceiling_db: float) -> float:
        return gain_for(lambda gain: self.loudness(gain, ceiling_db), lufs, self.search)
