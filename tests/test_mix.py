import numpy as np
import pytest

from millamusic.mix import MIX, mix
from tests.signals import sine, stereo

RATE = 44100


def _tone(freq, seconds=3.0, level=0.3, gate=None):
    x = sine(freq, seconds, rate=RATE, amp=level)
    return stereo(x if gate is None else x * gate, rate=RATE)


def test_mix_headroom_ducking_and_report():
    frames = 3 * RATE
    gate = np.zeros(frames)
    gate[RATE: 2 * RATE] = 1.0  # the vocal sings in the middle second only
    stems = {"bass": _tone(82.4), "keys": _tone(440.0), "lead": _tone(660.0, gate=gate)}
    mixed, report = mix(stems)
    assert mixed.frames == frames and mixed.channels == 2
    assert 20 * np.log10(mixed.peak()) == pytest.approx(MIX.peak_dbfs, abs=0.05)
    assert 0.5 * MIX.ducking.max_db <= report.ducking_max_db <= MIX.ducking.max_db + 0.01
    assert set(report.stems) == {"bass", "keys", "lead"}


def test_mismatched_stems_are_refused():
    with pytest.raises(ValueError, match="frames"):
        mix({"bass": _tone(80, seconds=1.0), "lead": _tone(400, seconds=2.0)})


def test_mix_leaves_its_stems_as_they_were():
    """The mix works in its own arrays (in place, for memory); the stems it is given are not touched."""
    stems = {"bass": _tone(82.4), "backing_vocals": _tone(330.0), "lead": _tone(660.0), "odd": _tone(220.0)}
    before = {name: audio.samples.copy() for name, audio in stems.items()}
    mix(stems)
    assert all(np.array_equal(stems[name].samples, before[name]) for name in stems)


def test_duck_gain_is_the_documented_curve():
    """10 ** (-max_db * clip(envelope / reference, 0, 1) / 20), worked step by step in place: the same
    float64 numbers as the expression, then float32."""
    from scipy.signal import lfilter

    from millamusic.mix import _duck_gain

    frames = 2 * RATE
    gate = np.zeros(frames)
    gate[RATE // 2: RATE] = 1.0
    vocal = _tone(500.0, seconds=2.0, gate=gate).samples
    ducking = MIX.ducking
    level = np.abs(vocal).max(axis=0)
    coeff = np.exp(-1.0 / (ducking.smoothing_s * RATE))
    envelope = lfilter([1 - coeff], [1, -coeff], level)
    reference = np.percentile(envelope[envelope > ducking.silence], ducking.reference_percentile)
    expected = (10 ** (-ducking.max_db * np.clip(envelope / (reference + 1e-9), 0.0, 1.0) / 20)).astype(np.float32)
    got = _duck_gain(vocal, RATE, ducking)
    assert got.shape == (1, frames) and got.dtype == np.float32
    assert np.array_equal(got[0], expected)
    assert got.min() == pytest.approx(10 ** (-ducking.max_db / 20), rel=1e-6) and got.max() == 1.0


class _Loading(dict):
    """A mapping that makes each stem when asked (as pipeline.run.StemFiles reads FLACs), counting."""

    def __init__(self, stems, fail=None):
        super().__init__(stems)
        self.asked, self.fail = [], fail

    def __getitem__(self, name):
        self.asked.append(name)
        if name == self.fail:
            raise OSError(f"{name}: unreadable")
        return dict.__getitem__(self, name)


def test_mix_reads_each_stem_once_ahead_on_threads_and_sums_in_order():
    stems = {name: _tone(freq) for name, freq in [("bass", 82.4), ("drums", 120.0), ("keys", 440.0),
                                                   ("lead", 660.0), ("harmony", 550.0)]}
    loading = _Loading(stems)
    mixed, report = mix(loading)
    assert sorted(loading.asked) == sorted(stems) and list(report.stems) == list(stems)
    again, _ = mix(dict(stems))  # the same stems as plain values: the same bytes
    assert mixed.samples.tobytes() == again.samples.tobytes()


def test_a_stem_that_cannot_be_read_stops_the_mix_with_its_own_error():
    stems = {name: _tone(freq) for name, freq in [("bass", 82.4), ("keys", 440.0), ("lead", 660.0)]}
    with pytest.raises(OSError, match="keys: unreadable"):
        mix(_Loading(stems, fail="keys"))
