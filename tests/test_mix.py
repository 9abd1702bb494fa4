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
