"""The shared test helpers keep their stated conventions (tests/signals.py, tests/counting.py)."""

from __future__ import annotations

import numpy as np

from tests.counting import counting_calls
from tests.signals import (
    chord_sound,
    ebu_tone,
    fraction_sine,
    harmonic_note,
    kick,
    noise_burst,
    place,
    pop_mix,
    sine,
    stereo,
    taper,
    tone_sequence,
    two_tone_mix,
    white_noise,
)


def test_one_channel_builders_are_float64_of_int_seconds_times_rate():
    for x, n in [(sine(440.0, 0.5, rate=8000), 4000), (kick(rate=8000), 2000), (harmonic_note(69, 0.3, rate=8000), 2400),
                 (chord_sound("C/E", 0.3, rate=8000), 2400), (ebu_tone(1.0, -23.0), 48000),
                 (fraction_sine(4, 45.0, 0.5, seconds=0.1), 4800)]:
        assert x.dtype == np.float64 and x.shape == (n,)


def test_levels_are_what_the_names_say():
    assert np.max(np.abs(sine(1000.0, 1.0, rate=48000, amp=0.25))) == 0.25
    steps = tone_sequence([(-20.0, 1.0), (-40.0, 1.0)], rate=48000)
    assert np.max(np.abs(steps[:48000])) == np.float64(10 ** (-20 / 20)) and np.max(np.abs(steps[48000:])) < 0.011
    tapered = taper(np.ones(1000), rate=1000, seconds=0.1)
    assert tapered[0] == tapered[-1] == 0.0 and tapered[500] == 1.0 and 0.0 < tapered[50] < 1.0


def test_audio_builders_are_float32_channels_by_samples():
    for audio, shape in [(stereo(sine(440.0, 0.5, rate=8000), rate=8000), (2, 4000)),
                         (two_tone_mix(0.5, rate=8000), (2, 4000)),
                         (two_tone_mix(0.5, rate=8000, swell_hz=0.5), (2, 4000))]:
        assert audio.samples.dtype == np.float32 and audio.samples.shape == shape and audio.sample_rate == 8000
    noise = white_noise((2, 100), seed=1, level=0.5)
    assert noise.dtype == np.float32 and noise.shape == (2, 100)
    assert np.array_equal(noise, white_noise((2, 100), seed=1, level=0.5))  # seeded: the same every time
    assert pop_mix(1.0, rate=8000).shape == (2, 8000)


def test_noise_bursts_take_what_they_say_from_the_generator():
    for kw, draws in [({}, 101), ({"bright": False}, 100), ({"bright": False, "extra_draw": True}, 101)]:
        rng, probe = np.random.default_rng(0), np.random.default_rng(0)
        burst = noise_burst(rng, 0.1, decay=0.05, gain=1.0, rate=1000, **kw)
        probe.standard_normal(draws)
        assert burst.shape == (100,) and rng.standard_normal() == probe.standard_normal(), kw


def test_place_adds_and_cuts_at_the_end():
    out = np.zeros(5)
    place(out, 3, np.ones(4))
    place(out, -1, np.ones(2))  # before the start: nothing
    assert out.tolist() == [0, 0, 0, 1, 1]


def test_counting_calls_counts_every_call_in_the_block():
    def f(n: int) -> int:
        return n if n == 0 else f(n - 1)

    with counting_calls() as count:
        f(9)
    with counting_calls() as more:
        f(99)
    assert more.calls - count.calls == 90
