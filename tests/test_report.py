"""The per-master PNG report (src/millamusic/report.py). Signals are built here."""

from __future__ import annotations

import numpy as np
import pytest

from millamusic.core.audio import Audio
from millamusic.dsp.loudness import measure
from millamusic.release.report import report_headline, short_term_loudness, write_master_report
from tests import meter_reference as R
from tests.signals import ebu_tone, sine

RATE = 48000


def stereo_sine(seconds: float, dbfs: float) -> np.ndarray:
    """(2, frames) float64 1 kHz tone whose peak is `dbfs` in both channels (reads `dbfs` LUFS)."""
    x = ebu_tone(seconds, dbfs, rate=RATE)
    return np.stack([x, x])


def test_short_term_of_a_steady_sine_reads_its_level():
    times, lufs = short_term_loudness(stereo_sine(8.0, -23.0), RATE)
    assert times.shape == lufs.shape
    assert times[0] == pytest.approx(3.0)  # window end: the first full 3 s window
    assert np.allclose(np.diff(times), 0.1)
    assert times[-1] <= 8.0
    assert np.all(np.abs(lufs - -23.0) <= 0.1)


def test_short_term_shows_a_step_at_the_right_time():
    step = 10.0
    x = np.concatenate([stereo_sine(step, -20.0), stereo_sine(10.0, -30.0)], axis=1)
    times, lufs = short_term_loudness(x, RATE)
    assert np.all(np.abs(lufs[times <= step] - -20.0) <= 0.1)
    assert np.all(np.abs(lufs[times >= step + 3.0] - -30.0) <= 0.1)
    # Times are window ends: the fall starts when the window first reaches the quiet part and
    # ends when the window holds nothing else, 3 s later.
    starts = times[np.argmax(lufs < -20.1)]
    ends = times[np.argmax(lufs <= -29.9)]
    assert starts == pytest.approx(step, abs=0.2)
    assert ends == pytest.approx(step + 3.0, abs=0.2)


def test_short_term_silence_and_short_audio():
    x = np.concatenate([stereo_sine(4.0, -20.0), np.zeros((2, 5 * RATE))], axis=1)
    times, lufs = short_term_loudness(x, RATE)
    assert np.isneginf(lufs[times >= 7.05]).all() and np.isfinite(lufs[times <= 6.95]).all()  # [3.9, 6.9) still holds 0.1 s of sine
    times, lufs = short_term_loudness(stereo_sine(2.0, -20.0), RATE)
    assert times.shape == lufs.shape == (0,)


def test_short_term_agrees_with_a_direct_window_mean():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6 * RATE)) * np.linspace(0.01, 0.3, 6 * RATE)
    times, lufs = short_term_loudness(x, RATE, hop_seconds=0.5)
    power = R._k_weighted_power(x, RATE)
    for t, value in zip(times, lufs):
        end = int(round(t * RATE))
        assert value == pytest.approx(-0.691 + 10 * np.log10(power[end - 3 * RATE : end].mean()), abs=1e-6)


# ------------------------------------------------------------------ headline


def measured(lufs=-14.02, tp=-1.21, lra=5.8, sp=-1.5) -> dict:
    return {"integrated_lufs": lufs, "true_peak_dbtp": tp, "lra_lu": lra, "sample_peak_dbfs": sp}


def test_headline_pass():
    line = report_headline(target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured())
    assert line.startswith("PASS")
    assert "-14.02 LUFS (target -14.0)" in line
    assert "-1.21 dBTP (ceiling -1.0)" in line
    assert "LRA 5.8 LU" in line


def test_headline_fails_when_loudness_is_2_lu_off():
    line = report_headline(target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured(lufs=-12.0))
    assert line.startswith("FAIL") and "loudness +2.00 LU" in line


@pytest.mark.parametrize("lufs, ok", [(-14.3, True), (-13.7, True), (-14.31, False), (-13.69, False)])
def test_headline_loudness_tolerance(lufs, ok):
    line = report_headline(target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured(lufs=lufs))
    assert line.startswith("PASS" if ok else "FAIL")


def test_headline_fails_over_the_ceiling_and_on_silence():
    over = report_headline(target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured(tp=-0.7))
    assert over.startswith("FAIL") and "true peak 0.30 dB over" in over
    silent = report_headline(target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured(None, None, None, None))
    assert silent.startswith("FAIL") and "n/a LUFS" in silent


# ------------------------------------------------------------------ the PNG


def test_mix(seconds: float = 20.0) -> Audio:
    """A stereo sine pad with noise-burst 'snares' every half second and a quieter middle."""
    rng = np.random.default_rng(0)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    x = 0.3 * np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)])
    burst = int(0.15 * RATE)
    env = np.exp(-np.arange(burst) / RATE * 30)
    for k in range(0, n - burst, RATE // 2):
        x[:, k : k + burst] += 0.5 * rng.standard_normal((2, burst)) * env
    x[:, n // 3 : n // 2] *= 0.3
    return Audio((0.7 * x / np.max(np.abs(x))).astype(np.float32), RATE)


test_mix.__test__ = False  # a builder, not a test


@pytest.fixture(scope="module")
def report_png(tmp_path_factory):
    audio = test_mix()
    path = tmp_path_factory.mktemp("report") / "not" / "yet" / "there" / "song.png"
    out = write_master_report(audio, path, title="Test Song", profile="spotify", target_lufs=-14.0,
                              ceiling_dbtp=-1.0, measured=measure(audio).to_dict())
    return path, out


def test_png_is_written_with_the_expected_size(report_png):
    from PIL import Image

    path, out = report_png
    assert out == path and path.is_file()  # atomic_path created the missing parent folders
    assert [p.name for p in path.parent.iterdir()] == ["song.png"]  # no temp file left behind
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (1600, 1200)
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
    assert pixels.std() > 20  # not blank
    assert (pixels < 250).mean() > 0.07  # plenty drawn, not just frames and text


def test_png_of_a_mono_short_quiet_master(tmp_path):
    # Shorter than one short-term window, mono, silent at the end: draws without error.
    x = np.zeros((1, 2 * RATE), dtype=np.float32)
    x[0, : RATE] = sine(440.0, 1.0, rate=RATE, amp=0.1)
    path = write_master_report(Audio(x, RATE), tmp_path / "mono.png", title="Mono", profile="cd",
                               target_lufs=-10.0, ceiling_dbtp=-1.0, measured=measure(Audio(x, RATE)).to_dict())
    assert path.stat().st_size > 10_000


def test_bad_audio_raises_and_writes_nothing(tmp_path):
    x = np.zeros((2, RATE), dtype=np.float32)
    x[0, 10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_master_report(Audio(x, RATE), tmp_path / "bad.png", title="Bad", profile="spotify",
                            target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured())
    assert list(tmp_path.iterdir()) == []


def test_headline_album_gain_judges_the_album_not_the_track():
    line = report_headline(target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured(lufs=-17.2), album_lufs=-14.05)
    assert line.startswith("PASS") and "album gain: album -14.05" in line
    line = report_headline(target_lufs=-14.0, ceiling_dbtp=-1.0, measured=measured(lufs=-17.2), album_lufs=-15.0)
    assert line.startswith("FAIL (album loudness -1.00 LU off)")


# ------------------------------------------------------------------ faster paths, same numbers


def test_measure_with_short_term_is_measure_and_short_term_loudness():
    from millamusic.release.report import measure_with_short_term

    for audio in (test_mix(), test_mix(seconds=2.5), Audio(test_mix(seconds=4.0).samples[:1], RATE)):
        report, (times, lufs) = measure_with_short_term(audio)
        assert report == measure(audio)
        expected_times, expected_lufs = short_term_loudness(audio.samples, RATE)
        assert np.array_equal(times, expected_times) and np.array_equal(lufs, expected_lufs)


def test_batched_welch_is_scipys():
    import scipy.signal

    from millamusic.dsp.spectrum import welch

    rng = np.random.default_rng(2)
    for n in (5, 8191, 8192, 8193, 100_000):
        for dtype in (np.float32, np.float64):
            mid = (rng.standard_normal(n) * np.linspace(0.01, 1.0, n)).astype(dtype)
            nperseg = min(8192, n)
            freqs, psd = welch(mid, RATE, nperseg)
            expected_freqs, expected = scipy.signal.welch(mid, fs=RATE, nperseg=nperseg)
            assert np.array_equal(freqs, expected_freqs) and psd.dtype == expected.dtype
            assert np.allclose(psd, expected, rtol=2e-5 if dtype == np.float32 else 1e-10, atol=0)


def test_envelope_columns_are_the_padded_min_max():
    from millamusic.release.report import _envelope

    rng = np.random.default_rng(3)
    for n in (7, 1600, 1601, 3199, 100_003):
        x = rng.standard_normal((2, n)).astype(np.float32)
        lo, hi, bucket = _envelope(x, 1600)
        cols = -(-n // bucket)
        padded = np.concatenate([x, np.repeat(x[:, -1:], cols * bucket - n, axis=1)], axis=1).reshape(2, cols, bucket)
        assert np.array_equal(lo, padded.min(axis=2)) and np.array_equal(hi, padded.max(axis=2))


def test_png_with_the_short_term_passed_in_is_the_same_picture(tmp_path, report_png):
    from PIL import Image

    from millamusic.release.report import measure_with_short_term

    audio = test_mix()
    report, short_term = measure_with_short_term(audio)
    path = write_master_report(audio, tmp_path / "song.png", title="Test Song", profile="spotify", target_lufs=-14.0,
                               ceiling_dbtp=-1.0, measured=report.to_dict(), short_term=short_term)
    with Image.open(path) as new, Image.open(report_png[0]) as old:
        assert np.array_equal(np.asarray(new), np.asarray(old))
