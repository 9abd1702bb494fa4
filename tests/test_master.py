"""Loudness metering and mastering (src/millamusic/master.py). Audio is generated here."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import millamusic.mastering.chain as chain_module
from millamusic.core.audio import Audio
from millamusic.core.errors import RenderError
from millamusic.core.units import db_to_gain, gain_to_db
from millamusic.dsp.blocks import CHUNK
from millamusic.dsp.limiter import DEFAULT as LIMITER
from millamusic.dsp.limiter import limit, limiter_gain_blocks, limiter_gain_db, soft_clip
from millamusic.dsp.loudness import integrated_loudness, k_csum_at, k_power_chunks, loudness_and_range, measure
from millamusic.dsp.peak import peaks_db, true_peak_db, true_peak_envelope_db
from millamusic.dsp.spectrum import welch
from millamusic.mastering.album import master_album
from millamusic.mastering.chain import highpass, master, pre_chain, shape, tonal_balance_db
from millamusic.mastering.config import MASTERING
from millamusic.spec.profiles import PROFILES
from tests import meter_reference as R
from tests.signals import CD_RATE, sine, stereo
from tests.signals import pop_mix as make_mix

RATE = CD_RATE


def at_lufs(x: np.ndarray, lufs: float) -> Audio:
    now = integrated_loudness(x.astype(np.float32), RATE)
    return Audio((x * 10 ** ((lufs - now) / 20)).astype(np.float32), RATE)


@pytest.fixture(scope="module")
def mix() -> np.ndarray:
    return make_mix()


@pytest.fixture(scope="module")
def quiet(mix) -> Audio:
    return at_lufs(mix, -30.0)


@pytest.fixture(scope="module")
def hot(mix) -> Audio:
    """Peaks well over full scale (float), about -8 LUFS."""
    audio = at_lufs(mix, -8.0)
    assert audio.peak() > 1.5
    return audio


# ------------------------------------------------------------------ metering


def test_full_scale_sine_reads_bs1770_reference():
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS; in both channels +3 dB more.
    s = sine(997.0, 10.0)
    mono = measure(Audio(s[None].astype(np.float32), RATE))
    assert mono.integrated_lufs == pytest.approx(-3.01, abs=0.05)
    both = measure(stereo(s))
    assert both.integrated_lufs == pytest.approx(0.0, abs=0.05)
    assert both.sample_peak_dbfs == pytest.approx(0.0, abs=0.01)


def test_ebu_tech3341_case1_minus23():
    # EBU Tech 3341 case 1: stereo 1 kHz sine at -23 dBFS per channel -> -23.0 +-0.1 LUFS.
    rep = measure(stereo(sine(1000.0, 20.0, amp=10 ** (-23 / 20))))
    assert rep.integrated_lufs == pytest.approx(-23.0, abs=0.1)
    assert rep.true_peak_dbtp == pytest.approx(-23.0, abs=0.1)


def test_integrated_matches_pyloudnorm_and_fast_path(mix):
    import pyloudnorm

    x = mix[:, : int(12.345 * RATE)].astype(np.float32)  # odd length: partial last block
    ref = pyloudnorm.Meter(RATE, filter_class="DeMan").integrated_loudness(x.T.astype(np.float64))
    assert measure(Audio(x, RATE)).integrated_lufs == pytest.approx(ref, abs=0.01)
    assert integrated_loudness(x, RATE) == pytest.approx(ref, abs=0.001)


def test_true_peak_of_intersample_peak():
    # fs/4 sine at 45 degrees: every sample is +-0.707 of the true peak (-3.01 dB under it).
    n = np.arange(10 * RATE)
    tone = 0.5 * np.sin(np.pi / 2 * n + np.pi / 4)
    fade = np.minimum(1.0, np.minimum(n, n[::-1]) / (0.2 * RATE))  # no edge ringing
    rep = measure(stereo(tone * fade))
    true_db = 20 * math.log10(0.5)
    assert rep.sample_peak_dbfs == pytest.approx(true_db - 3.01, abs=0.05)
    assert rep.true_peak_dbtp == pytest.approx(true_db, abs=0.2)


def test_loudness_range_tech3342_case1():
    # EBU Tech 3342 case 1: 20 s at -20 dBFS then 20 s at -30 dBFS (1 kHz) -> LRA 10 +-1 LU.
    s = sine(1000.0, 20.0)
    x = np.concatenate([s * 10 ** (-20 / 20), s * 10 ** (-30 / 20)])
    assert measure(stereo(x)).lra_lu == pytest.approx(10.0, abs=1.0)


def test_loudness_range_close_to_pyloudnorm(mix):
    import pyloudnorm

    ours = measure(Audio(mix.astype(np.float32), RATE)).lra_lu
    theirs = pyloudnorm.Meter(RATE, filter_class="DeMan").loudness_range(mix.T)
    assert ours == pytest.approx(theirs, abs=0.5)


def test_measure_silence_and_too_short():
    rep = measure(Audio.silence(RATE, RATE))
    assert rep.integrated_lufs == -math.inf and rep.true_peak_dbtp == -math.inf
    assert rep.to_dict()["integrated_lufs"] is None
    with pytest.raises(RenderError, match="0.4 s"):
        measure(Audio.silence(1000, RATE))


def test_targets_table():
    expect = {"spotify": (-14, -1), "apple": (-16, -1), "youtube": (-14, -1), "amazon": (-14, -2), "deezer": (-15, -1)}
    for name, (lufs, tp) in expect.items():
        t = PROFILES[name]
        assert (t.name, t.integrated_lufs, t.true_peak_dbtp) == (name, lufs, tp)


# ------------------------------------------------------------------ mastering


@pytest.fixture(scope="module")
def transient() -> Audio:
    """Transient-heavy: hard drum hits over a quiet bass and pad (crest factor ~22 dB), -24 LUFS."""
    rng = np.random.default_rng(7)
    n = 20 * RATE
    t = np.arange(n) / RATE
    x = np.zeros((2, n))
    x += 0.06 * (np.sin(2 * np.pi * 220.0 * t) + 0.7 * np.sin(2 * np.pi * 55.0 * t) + 0.3 * np.sin(2 * np.pi * 660.0 * t))
    for k in range(0, n - RATE // 4, RATE // 3):
        m = RATE // 8
        tt = np.arange(m) / RATE
        hit = np.sin(2 * np.pi * (60 + 180 * np.exp(-tt * 40)) * tt) * np.exp(-tt * 30)
        hit += rng.standard_normal(m) * 0.6 * np.exp(-tt * 60)
        x[:, k : k + m] += 0.9 * hit
    audio = at_lufs(x, -24.0)
    crest = 20 * np.log10(np.abs(audio.samples).max() / np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2)))
    assert crest > 20.0
    return audio


@pytest.mark.parametrize("which", ["quiet", "hot", "transient"])
@pytest.mark.parametrize("target_name", list(PROFILES))
def test_master_hits_target(request, which, target_name):
    audio = request.getfixturevalue(which)
    target = PROFILES[target_name]
    out, rep = master(audio, target)
    assert out.samples.dtype == np.float32
    assert out.channels == 2 and out.sample_rate == RATE
    assert out.frames == audio.frames
    check = measure(out)  # independent re-measure (pyloudnorm)
    assert abs(check.integrated_lufs - target.integrated_lufs) <= 0.3
    assert check.true_peak_dbtp <= target.true_peak_dbtp
    assert rep.integrated_lufs == pytest.approx(check.integrated_lufs, abs=0.01)
    assert rep.true_peak_dbtp == pytest.approx(check.true_peak_dbtp, abs=0.01)
    assert rep.lra_lu == pytest.approx(check.lra_lu, abs=0.01)


def _lag(a: np.ndarray, b: np.ndarray, span: int = 200) -> int:
    """Lag (samples) that best aligns b with a: b[n] ~ a[n - lag]."""
    n = len(a)
    spec = np.fft.rfft(b, 2 * n) * np.conj(np.fft.rfft(a, 2 * n))
    xc = np.fft.irfft(spec)
    lags = np.concatenate([np.arange(span), np.arange(-span, 0)])
    return int(lags[np.argmax(np.concatenate([xc[:span], xc[-span:]]))])


def test_master_is_time_aligned(hot):
    out, _ = master(hot, PROFILES["spotify"])
    assert abs(_lag(hot.samples.mean(axis=0), out.samples.mean(axis=0))) <= 1
    # sanity check of the checker: a delayed copy is seen as delayed
    delayed = np.concatenate([np.zeros(37), out.samples[0, :-37]])
    assert _lag(out.samples[0], delayed) == 37


def test_limiter_keeps_clicks_in_place():
    x = np.zeros((2, RATE), dtype=np.float32)
    where = [1000, 20000, RATE - 5]  # one right at the end: the lookahead tail must be flushed
    x[:, where] = 3.0
    y = limit(x, RATE, -1.5)
    assert y.shape == x.shape
    for w in where:
        assert int(np.argmax(np.abs(y[0, w - 300 : w + 300]))) + w - 300 == w
    assert np.max(np.abs(y)) <= 10 ** (-1.5 / 20) + 1e-4


def test_master_mono_input_becomes_stereo(mix):
    mono = Audio(mix[:1, : 8 * RATE].astype(np.float32) * 0.3, RATE)
    out, rep = master(mono, PROFILES["deezer"])
    assert out.channels == 2 and out.frames == mono.frames
    assert abs(rep.integrated_lufs + 15.0) <= 0.3


def test_master_refuses_silence():
    with pytest.raises(RenderError, match="silent"):
        master(Audio.silence(5 * RATE, RATE), PROFILES["spotify"])


def test_master_raises_with_numbers_when_target_unreachable():
    # One click a second over digital silence: clipper and limiter can only flatten the clicks,
    # so no gain reaches -14 LUFS.
    x = np.zeros((2, 5 * RATE), dtype=np.float32)
    x[:, ::RATE] = 0.9
    with pytest.raises(RenderError, match=r"could not master to spotify .*LUFS.*dBTP"):
        master(Audio(x, RATE), PROFILES["spotify"])


def test_master_never_returns_a_master_over_the_ceiling(monkeypatch, mix):
    # If the limiter never got the true peak under the ceiling, master() must refuse.
    monkeypatch.setattr(chain_module, "true_peak_db", lambda samples, rate: 3.0)
    with pytest.raises(RenderError, match="3.00 dBTP"):
        master(Audio(mix[:, : 5 * RATE].astype(np.float32), RATE), PROFILES["apple"])


def test_more_drive_never_gives_a_quieter_master(mix):
    # pedalboard's BrickwallLimiter got quieter past ~16 dB of drive (its hold never released
    # on dense material); the chain's own limiter must rise with the drive and hold the ceiling.
    x = pre_chain(mix.astype(np.float32), RATE)
    peak_db = true_peak_envelope_db(x, RATE)
    levels = []
    for gain in (0.0, 6.0, 12.0, 18.0, 24.0, 30.0):
        y = limit(x, RATE, -1.5, peak_db=peak_db, gain_db=gain)
        levels.append(integrated_loudness(y, RATE))
        assert true_peak_db(y, RATE) <= -1.45
        assert np.max(np.abs(y)) <= 10 ** (-1.5 / 20) + 1e-6
    assert all(b > a for a, b in zip(levels, levels[1:])), levels
    assert levels[-1] > -8.0


def test_limiter_holds_a_peak_in_the_first_sample():
    x = np.zeros((2, RATE), dtype=np.float32)
    x[:, 0] = 0.99
    x[:, 1000:] = 0.1
    y = limit(x, RATE, -6.0)
    assert np.max(np.abs(y)) <= 10 ** (-6 / 20) + 1e-6
    assert y[0, -1] == pytest.approx(0.1, rel=1e-4)  # released long before the end


def test_master_album_keeps_relative_loudness(mix, transient):
    single = at_lufs(mix, -18.0)
    ballad = at_lufs(make_mix(seed=3)[:, : 15 * RATE], -24.0)  # mixed 6 LU under the single
    album = master_album([single, ballad, transient], PROFILES["spotify"])
    assert abs(album.album_lufs + 14.0) <= 0.3
    measured = [measure(audio) for audio, _ in album.tracks]
    for (audio, report), check, source in zip(album.tracks, measured, (single, ballad, transient)):
        assert audio.frames == source.frames and audio.channels == 2
        assert check.true_peak_dbtp <= -1.0
        assert report.integrated_lufs == pytest.approx(check.integrated_lufs, abs=0.01)
    # the ballad stays well under the single (6 LU in the mixes; the glue compressor and the
    # limiter, working harder on the louder track, narrow it: 4.35 LU measured)
    gap = measured[0].integrated_lufs - measured[1].integrated_lufs
    assert 4.0 <= gap <= 6.5, gap
    # mastered one by one, both would sit at -14
    alone = [master(a, PROFILES["spotify"])[1].integrated_lufs for a in (single, ballad)]
    assert abs(alone[0] - alone[1]) <= 0.6


def test_master_album_errors():
    with pytest.raises(RenderError, match="at least one track"):
        master_album([], PROFILES["spotify"])
    a = Audio(np.zeros((2, RATE), dtype=np.float32), RATE)
    b = Audio(np.zeros((2, 48000), dtype=np.float32), 48000)
    with pytest.raises(RenderError, match="track 2 is at 48000 Hz"):
        master_album([a, b], PROFILES["spotify"])


# ------------------------------------------------------------------ streamed meters and limiter
# The meters and the limiter work block by block (CHUNK frames) so that no whole-signal
# temporary is made; every number must stay bit for bit the whole-signal computation's, or the
# masters (and their cache entries) would change. These hold them to whole-array references.


@pytest.fixture(scope="module")
def blocky() -> np.ndarray:
    """~3.3 blocks of the test mix, float32, with a few frames past a block boundary."""
    return make_mix(seconds=(3 * CHUNK + 12345) / RATE, seed=5).astype(np.float32)


def _reference_gain_db(peak_db: np.ndarray, rate: int, ceiling_db: float) -> np.ndarray:
    """The limiter's gain curve from the whole-array formulas (`limiter_gain_blocks`' docstring)."""
    import scipy.ndimage

    n = peak_db.shape[0]
    look = max(1, int(round(LIMITER.lookahead_ms / 1000.0 * rate)))
    need = np.minimum(0.0, ceiling_db - peak_db)
    held = scipy.ndimage.minimum_filter1d(need, size=look, origin=-(look // 2), mode="nearest")
    ramp = np.arange(n, dtype=np.float64) * (LIMITER.release_db_per_s / rate)
    released = np.minimum(np.minimum.accumulate(held - ramp) + ramp, 0.0)
    csum = np.cumsum(np.concatenate([np.full(look, released[0]), released]))
    return (csum[look:] - csum[:-look]) / look


def test_streamed_loudness_is_the_whole_signal_numbers(blocky):
    for x in (blocky, blocky[:1], blocky[:, : CHUNK], blocky.astype(np.float64)[:, : 2 * CHUNK + 1]):
        power = R._k_weighted_power(x, RATE)
        assert np.array_equal(np.concatenate([p for _, p in k_power_chunks(x, RATE)]), power)
        csum = np.concatenate([[0.0], np.cumsum(power)])
        at = np.array([0, 1, x.shape[1], 17, CHUNK, CHUNK + 1, x.shape[1] - 1, 17])
        at = at[at <= x.shape[1]]
        assert np.array_equal(k_csum_at(x, RATE, at), csum[at])
        lufs, lra = loudness_and_range(x, RATE)
        assert lufs == R._integrated_from_power(power, RATE) == integrated_loudness(x, RATE)
        assert lra == R._lra_from_power(power, RATE)


def test_streamed_peaks_are_the_one_shot_numbers(blocky):
    import soxr

    for x in (blocky, blocky[:1, : CHUNK + 3], blocky.astype(np.float64)[:, : CHUNK - 5]):
        ups = [soxr.resample(np.ascontiguousarray(c), RATE, 4 * RATE, quality="HQ") for c in x]
        true_peak = max(max(float(u.max()), -float(u.min())) for u in ups)
        sample_peak = float(np.max(np.abs(x)))
        assert peaks_db(x, RATE) == (gain_to_db(max(true_peak, sample_peak)), gain_to_db(sample_peak))
        n = x.shape[1]
        quads = [np.abs(np.concatenate([u, np.zeros(max(0, 4 * n - u.size), u.dtype)])[: 4 * n]).reshape(n, 4)
                 for u in ups]
        envelope = np.max([q.max(axis=1) for q in quads] + [np.abs(x).max(axis=0)], axis=0)
        with np.errstate(divide="ignore"):
            assert np.array_equal(true_peak_envelope_db(x, RATE), 20.0 * np.log10(envelope.astype(np.float64)))


def test_streamed_limiter_is_the_whole_array_numbers(blocky):
    peak_db = true_peak_envelope_db(blocky, RATE)
    for gain in (0.0, 9.0, 20.0):
        reference = _reference_gain_db(peak_db + gain, RATE, -1.5)
        assert np.array_equal(limiter_gain_db(peak_db + gain, RATE, ceiling_db=-1.5), reference)
        y = limit(blocky, RATE, -1.5, peak_db=peak_db, gain_db=gain)
        driven = (blocky * 10.0 ** (gain / 20.0)).astype(np.float32)
        clipped = soft_clip(driven, -1.5 + LIMITER.clip_above_ceiling_db)
        if clipped is None:
            expected = (driven * np.power(10.0, reference / 20.0)).astype(np.float32)
        else:
            curve = _reference_gain_db(true_peak_envelope_db(clipped, RATE), RATE, -1.5)
            expected = (clipped * np.power(10.0, curve / 20.0)).astype(np.float32)
        assert np.array_equal(y, expected), gain
    # blocks shorter than the lookahead, odd lookaheads (11025 Hz: 55 frames)
    for rate in (RATE, 11025):
        peaks = true_peak_envelope_db(blocky[:, :3000], rate) + 12.0
        reference = _reference_gain_db(peaks, rate, -1.5)
        for chunk in (1, 7, 100, 1000):
            blocks = limiter_gain_blocks(peaks, rate, ceiling_db=-1.5, chunk=chunk)
            assert np.array_equal(np.concatenate([b for _, b in blocks]), reference), (rate, chunk)


def test_streamed_high_pass_and_soft_clip_are_the_whole_array_numbers(blocky):
    import scipy.signal

    sos = scipy.signal.butter(2, MASTERING.highpass.corner_hz, btype="highpass", fs=RATE, output="sos")
    expected = np.stack([scipy.signal.sosfilt(sos, c).astype(np.float32) for c in blocky])
    assert np.array_equal(highpass(blocky, RATE), expected)
    x = blocky * 4.0
    top = 10 ** (-1.0 / 20)
    knee = top * 10 ** (-LIMITER.clip_knee_db / 20)
    size = np.abs(x)
    over = size > knee
    expected = x.copy()
    expected[over] = np.sign(x[over]) * (knee + (top - knee) * np.tanh((size[over] - knee) / (top - knee)))
    assert np.array_equal(soft_clip(x, -1.0), expected)
    assert soft_clip(blocky * 0.01, -1.0) is None


def test_shape_per_channel_in_blocks_is_the_one_call_chain(blocky):
    # _shape runs each channel through its own pedalboard chain in a thread, in blocks with the
    # plugins' state carried; JUCE keeps the channels apart and pedalboard cuts a call into
    # 8192-frame buffers from its start, so this must be what one call over everything gives.
    import pedalboard

    hp = highpass(blocky, RATE)
    for x in (hp, hp[:, : CHUNK + 100], hp[:, :20000], hp[:1, : 2 * CHUNK + 9000]):
        gain = -20.0 - integrated_loudness(x, RATE)
        scaled = (x * db_to_gain(gain)).astype(np.float32)
        low_db, high_db = tonal_balance_db(scaled, RATE)
        plugins = [pedalboard.LowShelfFilter(cutoff_frequency_hz=120.0, gain_db=low_db, q=0.707)] if abs(low_db) >= 0.1 else []
        if abs(high_db) >= 0.1:
            plugins.append(pedalboard.HighShelfFilter(cutoff_frequency_hz=8000.0, gain_db=high_db, q=0.707))
        plugins.append(pedalboard.Compressor(**dataclasses.asdict(MASTERING.glue)))
        one_call = np.ascontiguousarray(pedalboard.Pedalboard(plugins)(scaled, RATE), dtype=np.float32)
        assert np.array_equal(shape(x, RATE, gain), one_call), x.shape
        assert np.array_equal(shape(x.copy(), RATE, gain, in_place=True), one_call), x.shape


def test_batched_welch_is_scipys_bit_for_bit(blocky):
    # welch feeds the tonal balance (so the masters) and the report's spectrum: scipy's numbers
    import scipy.signal

    rng = np.random.default_rng(4)
    for x in (blocky.mean(axis=0), rng.standard_normal(50_001), rng.standard_normal(8192).astype(np.float32),
              (rng.standard_normal(9000) * 100).astype(np.float32)):
        for nperseg, noverlap in ((8192, 0), (8192, None), (4096, 1000)):
            expected = scipy.signal.welch(x, fs=RATE, nperseg=nperseg, noverlap=noverlap)
            got = welch(x, RATE, nperseg, noverlap)
            assert np.array_equal(got[0], expected[0]) and got[1].dtype == expected[1].dtype
            assert np.array_equal(got[1], expected[1]), (x.size, nperseg, noverlap)
