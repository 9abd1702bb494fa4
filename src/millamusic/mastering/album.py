"""An album mastered as one: one gain per track, the album's loudness on target."""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from millamusic.core.audio import Audio
from millamusic.core.errors import RenderError
from millamusic.core.units import gain_to_db
from millamusic.dsp.limiter import limit
from millamusic.dsp.loudness import (
    LoudnessReport,
    block_ms_and_windows,
    check_measurable,
    gated_loudness,
    lra_from_mean_sq,
)
from millamusic.dsp.peak import true_peak_db, true_peak_envelope_db
from millamusic.mastering.chain import LimiterModel, gain_for, highpass, next_gain, shape
from millamusic.mastering.config import MASTERING, MasteringConfig
from millamusic.spec.profiles import DeliveryProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlbumMaster:
    tracks: tuple[tuple[Audio, LoudnessReport], ...]  # in the order given
    album_lufs: float  # the integrated loudness of all tracks played as one programme
    gain_db: float  # the one gain every track got into its limiter


def master_album(mixes: list[Audio], target: DeliveryProfile, config: MasteringConfig = MASTERING) -> AlbumMaster:
    """Master an album with one gain for all tracks (album gain), keeping their relative loudness.

    Every track gets the same high-pass, its own tonal balance and glue compression (at one
    album working level), then one common gain into its own true-peak limiter. The gain is
    chosen so that the album, measured as one programme (BS.1770 gating over the blocks of all
    tracks), lands within `config.search.accept_lu` of the target; each track keeps its own loudness relative to
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

    # The per-track work runs in threads: it is numpy/scipy on whole tracks, which releases the GIL.
    pool = ThreadPoolExecutor(max_workers=min(len(mixes), os.cpu_count() or 1), thread_name_prefix="millamusic-album")

    def each(function, *columns) -> list:
        return list(pool.map(function, *columns))

    def highpassed(audio: Audio) -> np.ndarray:
        src = audio.to_stereo().samples
        check_measurable(src, rate)
        return highpass(src, rate, config.highpass)

    with pool:
        return _master_album(mixes, target, rate, each, highpassed, config)


def _master_album(mixes, target: DeliveryProfile, rate: int, each, highpassed, config: MasteringConfig) -> AlbumMaster:
    search = config.search
    passed = each(highpassed, mixes)
    album_level = gated_loudness(np.concatenate(each(lambda x: block_ms_and_windows(x, rate, windows=False)[0], passed)))
    if not math.isfinite(album_level) or album_level < config.silent_below_lufs:
        raise RenderError(f"the album's mixes are silent or nearly so ({album_level:.1f} LUFS); nothing to master")
    shaped = each(lambda x: shape(x, rate, config.working_lufs - album_level, balance=config.tonal_balance,
                                  glue=config.glue), passed)
    del passed  # memory grows with the album's length: keep one copy of every track, not two
    peaks_db = each(lambda x: true_peak_envelope_db(x, rate), shaped)
    models = each(lambda x, p: LimiterModel(x, rate, p, config.limiter, search), shaped, peaks_db)
    want, tp_max = target.integrated_lufs, target.true_peak_dbtp
    ceilings = [tp_max - search.ceiling_margin_db] * len(shaped)

    def predicted(gain: float) -> float:
        return gated_loudness(np.concatenate(each(lambda m, c: m.block_ms(gain, c), models, ceilings)))

    def album_gain_for(lufs: float) -> float:
        return gain_for(predicted, lufs, search)

    offset = 0.0
    gain = album_gain_for(want)
    points: list[tuple[float, float]] = []
    best = None  # (|error|, outputs, album lufs, gain)
    lufs = math.nan
    for n_pass in range(1, search.max_passes + 1):
        outputs = None  # the last pass's, unless kept as the best: freed before the next is made
        outputs = each(lambda x, p, c: limit(x, rate, c, peak_db=p, gain_db=gain, settings=config.limiter),
                       shaped, peaks_db, ceilings)
        # each track's (gating block mean squares, LRA window mean squares), streamed: the numbers
        # of _block_ms / _lra_from_power on its K-weighted power, without keeping the power
        stats = each(lambda y: block_ms_and_windows(y, rate), outputs)
        peaks = each(lambda y: true_peak_db(y, rate), outputs)
        lufs = gated_loudness(np.concatenate([block_ms for block_ms, _ in stats]))
        err = want - lufs
        log.debug("album pass %d: gain %+.2f dB -> %.2f LUFS, peaks %s", n_pass, gain, lufs, peaks)
        over = [i for i, tp in enumerate(peaks) if tp > tp_max]
        if over:
            # Lower only the ceilings that let a peak through, then re-aim with the model.
            offset = lufs - predicted(gain)
            for i in over:
                ceilings[i] -= (peaks[i] - tp_max) + search.overshoot_margin_db
            if min(ceilings) < tp_max - search.give_up_below_db:
                break
            points.clear()
            gain = album_gain_for(want - offset)
            continue
        if abs(err) <= search.accept_lu and (best is None or abs(err) < best[0]):
            best = (abs(err), list(zip(outputs, stats, peaks)), lufs, gain)
        if abs(err) <= search.aim_lu or (gain >= search.max_gain_db and err > 0):
            break
        points.append((gain, lufs))
        gain, offset = next_gain(points, want, offset, predicted, album_gain_for, search)
    if best is None:
        raise RenderError(
            f"could not master the album to {target.name} ({want:.1f} LUFS, true peak <= {tp_max:.1f} dBTP): the "
            f"last pass gave {lufs:.2f} LUFS with {gain:+.2f} dB of album gain. A track is probably far louder "
            "or spikier than the rest; balance it in its mix, or master the tracks one by one"
        )
    _, tracks, lufs, gain = best
    return AlbumMaster(
        tracks=tuple(
            (Audio(y, rate), LoudnessReport(integrated_lufs=gated_loudness(block_ms), true_peak_dbtp=tp,
                                            sample_peak_dbfs=gain_to_db(max(float(y.max()), -float(y.min()))),
                                            lra_lu=0.0 if windows is None else lra_from_mean_sq(windows)))
            for y, (block_ms, windows), tp in tracks
        ),
        album_lufs=lufs,
        gain_db=gain,
    )
