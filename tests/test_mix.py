import numpy as np
import pytest

from millamusic.audio import Audio
from millamusic.mix import DUCK_DB, MIX_PEAK_DBFS, mix

RATE = 44100


def _tone(freq, seconds=3.0, level=0.3, gate=None):
    t = np.arange(int(seconds * RATE)) / RATE
    x = level * np.sin(2 * np.pi * freq * t)
    if gate is not None:
        x = x * gate
    return Audio(np.stack([x, x]).astype(np.float32), RATE)


def test_mix_headroom_ducking_and_report():
    frames = 3 * RATE
    gate = np.zeros(frames)
    gate[RATE: 2 * RATE] = 1.0  # the vocal sings in the middle second only
    stems = {"bass": _tone(82.4), "keys": _tone(440.0), "lead": _tone(660.0, gate=gate)}
    mixed, report = mix(stems)
    assert mixed.frames == frames and mixed.channels == 2
    assert 20 * np.log10(mixed.peak()) == pytest.approx(MIX_PEAK_DBFS, abs=0.05)
    assert 0.5 * DUCK_DB <= report.ducking_max_db <= DUCK_DB + 0.01
    assert set(report.stems) == {"bass", "keys", "lead"}


def test_mismatched_stems_are_refused():
    with pytest.raises(ValueError, match="frames"):
        mix({"bass": _tone(80, seconds=1.0), "lead": _tone(400, seconds=2.0)})
