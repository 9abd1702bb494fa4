"""Every setting of the mastering chain, in signal order, as frozen values.

The chain (mastering.chain) reads nothing else, and the master stage's cache key holds
`MasteringConfig.key()`: change a number here and exactly the masters (and the files made from
them) render again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from millamusic.dsp.limiter import LimiterSettings
from millamusic.spec.profiles import LOUDNESS_TOLERANCE_LU


@dataclass(frozen=True)
class HighPass:
    corner_hz: float = 30.0  # rumble under the kick's fundamental
    order: int = 2


@dataclass(frozen=True)
class TonalBalance:
    """Mild adaptive shelves: a half-way correction towards a reference tilt (mastering.chain.tonal_balance_db).

    The reference is the rule of thumb that a balanced pop/rock mix looks flat on an FFT analyser
    with a 4.5 dB/octave slope compensation (FabFilter Pro-Q's and Voxengo SPAN's default), i.e.
    power per octave falls 1.5 dB per octave."""

    slope_db_per_octave: float = -1.5  # power per octave
    mids_hz: tuple[float, float] = (300.0, 3000.0)  # the reference band
    lows_hz: tuple[float, float] = (40.0, 150.0)
    highs_hz: tuple[float, float] = (5000.0, 14000.0)  # the top is at most highs_top_share of the sample rate
    highs_top_share: float = 0.45
    correction: float = 0.5  # of the deviation from the reference
    max_db: float = 1.5  # the shelves never move more than this
    ignore_below_db: float = -15.0  # a band this far under the reference has nothing to boost (rumble, hiss)
    min_shelf_db: float = 0.1  # smaller corrections are left out
    low_shelf_hz: float = 120.0
    high_shelf_hz: float = 8000.0
    shelf_q: float = 0.707
    segment_frames: tuple[int, int] = (8192, 16384)  # Welch segments at <= 48 kHz and above


@dataclass(frozen=True)
class Glue:
    """The glue compressor: slow attack lets transients through, gentle ratio, ~1 dB of gain
    reduction; no makeup (the gain stage follows)."""

    threshold_db: float = -16.0
    ratio: float = 1.8
    attack_ms: float = 30.0
    release_ms: float = 200.0


@dataclass(frozen=True)
class GainSearch:
    """How the gain into the limiter is found: a model predicts, real passes correct."""

    aim_lu: float = 0.1  # stop iterating when this close to the target...
    accept_lu: float = LOUDNESS_TOLERANCE_LU  # ...and never return a master further away than this
    max_passes: int = 8
    min_gain_db: float = -60.0
    max_gain_db: float = 30.0  # more drive than this (over the working level) is destruction, not mastering
    bisection_steps: int = 30
    slope_bounds: tuple[float, float] = (0.05, 1.0)  # LU per dB of gain, for the secant step
    max_step_db: float = 12.0
    ceiling_margin_db: float = 0.5  # the limiter's ceiling starts this far under the target's true-peak ceiling
    overshoot_margin_db: float = 0.1  # a ceiling that let a peak through drops by the overshoot plus this
    give_up_below_db: float = 6.0  # ... but never more than this under the target's ceiling


@dataclass(frozen=True)
class MasteringConfig:
    """High-pass -> working level -> tonal balance -> glue -> gain -> clipper + true-peak limiter."""

    highpass: HighPass = field(default_factory=HighPass)
    working_lufs: float = -20.0  # the mix is brought here before the compressor: the chain is level-independent
    silent_below_lufs: float = -70.0  # a mix this quiet has nothing to master
    tonal_balance: TonalBalance = field(default_factory=TonalBalance)
    glue: Glue = field(default_factory=Glue)
    limiter: LimiterSettings = field(default_factory=LimiterSettings)
    search: GainSearch = field(default_factory=GainSearch)

    def key(self) -> dict:
        """The settings as plain data, for the master stage's cache key."""
        return asdict(self)


MASTERING = MasteringConfig()
