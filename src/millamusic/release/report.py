"""A one-page PNG report per master for release managers: waveform, short-term loudness, spectrum.

The header says, in one line, what was measured against what was asked for and PASS/FAIL:
integrated loudness within ±REPORT_TOLERANCE_LU of the target and true peak at or under the
ceiling. matplotlib and scipy are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from millamusic.core.audio import Audio
from millamusic.core.files import atomic_path
from millamusic.dsp.loudness import LoudnessReport, k_csum_at, lra_windows, measure_with_windows
from millamusic.dsp.spectrum import welch
from millamusic.spec.profiles import LOUDNESS_TOLERANCE_LU

REPORT_TOLERANCE_LU = LOUDNESS_TOLERANCE_LU  # the same rule as master() and `millamusic check`
SHORT_TERM_SECONDS = 3.0  # EBU Tech 3341 short-term window
SILENCE_LUFS = -70.0  # BS.1770 absolute gate: quieter windows count as silent (-inf)
TILT_DB_PER_OCTAVE = -4.5  # common "balanced mix" long-term spectrum guide
FIG_INCHES, FIG_DPI = (16.0, 12.0), 100  # 1600 x 1200 px
WAVE_COLUMNS = 1600  # min/max envelope resolution: about one per pixel column


def short_term_loudness(samples: np.ndarray, rate: int, *, hop_seconds: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """EBU R128 short-term loudness (3 s window) every hop: (times_seconds (n,), lufs (n,)); -inf where silent.

    samples: (channels, frames) float. Only full windows are measured: window k covers frames
    [k*hop, k*hop + 3 s) and its time is the window END (as a live meter shows it), so the first
    value is at 3.0 s and n = 0 for audio shorter than 3 s. Windows under -70 LUFS (the BS.1770
    absolute gate, also well above cumsum rounding noise) read -inf.

    The K-weighted running sum is streamed (`master.k_csum_at`): the numbers of the cumsum of
    the whole-signal meter in tests/meter_reference.py, without its (frames,) arrays.
    """
    win = int(round(SHORT_TERM_SECONDS * rate))
    hop = max(1, int(round(hop_seconds * rate)))
    n = samples.shape[1]
    if n < win:
        return np.zeros(0), np.zeros(0)
    starts = np.arange(0, n - win + 1, hop)
    csum = k_csum_at(samples, rate, np.concatenate([starts, starts + win]))
    return _short_term_from(starts, win, (csum[starts.size :] - csum[: starts.size]) / win, rate)


def _short_term_from(starts: np.ndarray, win: int, mean_sq: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(times, lufs) of `short_term_loudness` from each window's mean K-weighted power (may be a
    rounding error under 0: read as 0, -inf LUFS; max(s, 0) / win == max(s / win, 0) exactly)."""
    mean_sq = np.maximum(mean_sq, 0.0)
    with np.errstate(divide="ignore"):
        lufs = -0.691 + 10.0 * np.log10(mean_sq)
    lufs[lufs < SILENCE_LUFS] = -np.inf
    return (starts + win) / rate, lufs


def measure_with_short_term(audio: Audio) -> tuple[LoudnessReport, tuple[np.ndarray, np.ndarray]]:
    """(`master.measure(audio)`, `short_term_loudness(audio.samples, audio.sample_rate)`): the same
    numbers as the two calls, from one K-weighting pass (the LRA's 3 s windows every 0.1 s are
    the short-term windows). Pass the second to `write_master_report(short_term=...)`."""
    report, mean_sq = measure_with_windows(audio)
    rate = audio.sample_rate
    spans = lra_windows(audio.frames, rate)
    win = int(round(SHORT_TERM_SECONDS * rate))
    if spans is None or mean_sq is None or spans[1] != win:  # (the same windows: 3 s every 0.1 s)
        return report, short_term_loudness(audio.samples, rate)
    return report, _short_term_from(spans[0], win, mean_sq, rate)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def report_headline(*, target_lufs: float, ceiling_dbtp: float, measured: dict, album_lufs: float | None = None) -> str:
    """'PASS · -14.02 LUFS (target -14.0) · -1.21 dBTP (ceiling -1.0) · LRA 5.8 LU · sample peak ...'.

    measured: keys integrated_lufs, true_peak_dbtp, lra_lu, sample_peak_dbfs; values may be None
    (LoudnessReport.to_dict: None = silence). FAIL when the loudness is missing or more than
    REPORT_TOLERANCE_LU off target, or the true peak is over the ceiling; the reasons follow the word.
    """
    lufs, tp = measured.get("integrated_lufs"), measured.get("true_peak_dbtp")
    problems = []
    if lufs is None:
        problems.append("no loudness (silent)")
    elif album_lufs is not None:  # album gain: the album is held to the target, the track keeps its level
        if round(abs(album_lufs - target_lufs), 6) > REPORT_TOLERANCE_LU:
            problems.append(f"album loudness {album_lufs - target_lufs:+.2f} LU off")
    elif round(abs(lufs - target_lufs), 6) > REPORT_TOLERANCE_LU:  # -13.7 vs -14.0 is 0.3000000000000007
        problems.append(f"loudness {lufs - target_lufs:+.2f} LU off")
    if tp is not None and tp > ceiling_dbtp:
        problems.append(f"true peak {tp - ceiling_dbtp:.2f} dB over")
    verdict = f"FAIL ({', '.join(problems)})" if problems else "PASS"
    return " · ".join([
        verdict,
        (f"{_fmt(lufs, '.2f')} LUFS (target {target_lufs:.1f})" if album_lufs is None else
         f"{_fmt(lufs, '.2f')} LUFS, album gain: album {album_lufs:.2f} (target {target_lufs:.1f})"),
        f"{_fmt(tp, '.2f')} dBTP (ceiling {ceiling_dbtp:.1f})",
        f"LRA {_fmt(measured.get('lra_lu'), '.1f')} LU",
        f"sample peak {_fmt(measured.get('sample_peak_dbfs'), '.2f')} dBFS",
    ])


def _envelope(x: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Min/max of (channels, frames) per column of `bucket` frames: (lo (ch, cols), hi (ch, cols), bucket)."""
    bucket = max(1, -(-x.shape[1] // columns))
    cols = -(-x.shape[1] // bucket)
    full = x.shape[1] // bucket
    blocks = x[:, : full * bucket].reshape(x.shape[0], full, bucket)
    if full == cols:
        return blocks.min(axis=2), blocks.max(axis=2), bucket
    # the last column is short: its own min/max (no padded copy of the whole signal)
    tail = x[:, full * bucket :]
    lo = np.concatenate([blocks.min(axis=2), tail.min(axis=1, keepdims=True)], axis=1)
    hi = np.concatenate([blocks.max(axis=2), tail.max(axis=1, keepdims=True)], axis=1)
    return lo, hi, bucket


def _octave_smooth(freqs: np.ndarray, power: np.ndarray, fraction: int = 6) -> np.ndarray:
    """Mean power over a 1/fraction-octave band around each bin (freqs (n,) ascending, power (n,))."""
    csum = np.concatenate([[0.0], np.cumsum(power)])
    half = 2.0 ** (0.5 / fraction)
    lo = np.searchsorted(freqs, freqs / half, side="left")
    hi = np.maximum(np.searchsorted(freqs, freqs * half, side="right"), lo + 1)
    return (csum[hi] - csum[lo]) / (hi - lo)


def _report_numbers(x: np.ndarray, rate: int, short_term: tuple[np.ndarray, np.ndarray] | None) -> dict:
    """Everything the report plots, from the samples (numpy/scipy work that releases the GIL)."""
    lo, hi, bucket = _envelope(x[:2], WAVE_COLUMNS)
    st_t, st = short_term if short_term is not None else short_term_loudness(x, rate)
    mid = x.mean(axis=0)
    freqs, psd = welch(mid, rate, min(8192, mid.size))  # scipy.signal.welch's numbers, faster
    peak = max(float(x.max()), -float(x.min()))
    return {"lo": lo, "hi": hi, "bucket": bucket, "st_t": st_t, "st": st, "freqs": freqs, "psd": psd, "peak": peak}


def write_master_report(audio: Audio, path: str | os.PathLike, *, title: str, profile: str, target_lufs: float,
                        ceiling_dbtp: float, measured: dict, album_lufs: float | None = None,
                        short_term: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write a 1600x1200 PNG report of `audio` (a master, (channels, frames)) to `path`, atomically.

    Panels: waveform min/max envelope (L/R) with the ceiling; short-term loudness with the target
    and the measured integrated loudness; Welch long-term spectrum of the mid channel with a
    -4.5 dB/octave reference tilt through 1 kHz. The parent folder is created if missing.
    measured: as for `report_headline`. short_term: `short_term_loudness(audio.samples, rate)`
    when the caller has it already (`measure_with_short_term`), else it is measured here.
    """

    x, rate = audio.samples, audio.sample_rate
    if x.shape[1] == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"cannot report on {path}: the audio is empty or has NaN/inf samples")
    seconds = x.shape[1] / rate
    headline = report_headline(target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, measured=measured,
                               album_lufs=album_lufs)
    # The numbers are worked out in a thread while matplotlib is imported (about 0.25 s in a fresh
    # process, pure Python) and sets up the figure: sosfilt, numpy's reductions and FFTs release
    # the GIL, so both go on at once when a core is free.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="millamusic-report") as pool:
        numbers = pool.submit(_report_numbers, x, rate, short_term)
        fig = _report_figure(title, profile, headline)
        _draw_report(fig, numbers.result(), rate=rate, seconds=seconds, target_lufs=target_lufs,
                     ceiling_dbtp=ceiling_dbtp, measured=measured)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIG_DPI)
    return Path(path)


def _report_figure(title: str, profile: str, headline: str):
    """The figure before any data: the two header lines and the three panels."""
    from matplotlib.figure import Figure  # matplotlib: ~0.5 s to import

    fig = Figure(figsize=FIG_INCHES, dpi=FIG_DPI, layout="constrained")
    fig.get_layout_engine().set(rect=(0.0, 0.0, 1.0, 0.925))  # the top 7.5% holds the two header lines
    fig.text(0.5, 0.975, f"{title}   —   profile: {profile}", ha="center", va="center", fontsize=20,
             fontweight="bold")
    fig.text(0.5, 0.943, headline, ha="center", va="center", fontsize=14,
             color="#1a7f37" if headline.startswith("PASS") else "#c62828")
    fig.subplots(3, 1, gridspec_kw={"height_ratios": [1, 1, 1.1]})
    return fig


def _draw_report(fig, numbers: dict, *, rate: int, seconds: float, target_lufs: float, ceiling_dbtp: float,
                 measured: dict) -> None:
    """Plot `_report_numbers` into `_report_figure`'s panels."""
    ax_wave, ax_st, ax_spec = fig.axes

    # 1. waveform envelope
    lo, hi, bucket = numbers["lo"], numbers["hi"], numbers["bucket"]
    t = (np.arange(lo.shape[1]) + 0.5) * bucket / rate
    names = ["L", "R"] if lo.shape[0] >= 2 else ["mono"]
    for ch, (name, color) in enumerate(zip(names, ["#1f77b4", "#d62728"])):
        ax_wave.fill_between(t, lo[ch], hi[ch], color=color, alpha=0.45, linewidth=0, label=name)
    ceiling = 10.0 ** (ceiling_dbtp / 20.0)
    for sign in (1, -1):
        ax_wave.axhline(sign * ceiling, color="k", linestyle="--", linewidth=1,
                        label=f"ceiling {ceiling_dbtp:.1f} dBTP (±{ceiling:.3f})" if sign > 0 else None)
    span = 1.25 * max(numbers["peak"], 1.0)  # headroom over full scale for the labels
    ax_wave.set(xlim=(0, seconds), ylim=(-span, span), ylabel="amplitude (linear, FS = 1)")
    ax_wave.legend(loc="upper right", ncols=3, fontsize=10, framealpha=0.9)

    # 2. short-term loudness
    st_t, st = numbers["st_t"], numbers["st"]
    finite = st[np.isfinite(st)]
    top = max(target_lufs + 6.0, float(finite.max()) if finite.size else -np.inf) + 1.0
    ax_st.plot(st_t, np.where(np.isfinite(st), st, np.nan), color="#6a3d9a", linewidth=1.5,
               label="short-term (3 s window, plotted at window end)")
    ax_st.axhline(target_lufs, color="#1a7f37", linewidth=3, alpha=0.7, label=f"target {target_lufs:.1f} LUFS")
    if measured.get("integrated_lufs") is not None:
        ax_st.axhline(measured["integrated_lufs"], color="k", linestyle="--", linewidth=1.2,
                      label=f"integrated {measured['integrated_lufs']:.2f} LUFS")
    ax_st.set(xlim=(0, seconds), ylim=(target_lufs - 20.0, top), ylabel="loudness (LUFS)")
    ax_st.legend(loc="lower right", ncols=3, fontsize=10, framealpha=0.9)

    # 3. long-term average spectrum of the mid channel
    freqs, psd = numbers["freqs"], numbers["psd"]
    keep = freqs >= 20.0
    freqs, psd = freqs[keep], psd[keep]
    smooth = _octave_smooth(freqs, psd)
    floor = 1e-20  # -200 dB: keeps log10 finite for digital silence
    ax_spec.semilogx(freqs, 10 * np.log10(psd + floor), color="#9ecae1", linewidth=0.6, label="Welch PSD (mid)")
    ax_spec.semilogx(freqs, 10 * np.log10(smooth + floor), color="#08519c", linewidth=1.8, label="1/6-octave smoothed")
    if freqs.size and freqs[0] <= 1000.0 <= freqs[-1]:
        ref = 10 * np.log10(np.interp(1000.0, freqs, smooth) + floor)
        ax_spec.semilogx(freqs, ref + TILT_DB_PER_OCTAVE * np.log2(freqs / 1000.0), color="#e6550d",
                         linestyle="--", linewidth=1.5,
                         label=f"{TILT_DB_PER_OCTAVE} dB/octave through 1 kHz (common 'balanced mix' guide)")
    db = 10 * np.log10(smooth + floor)
    if db.size:
        ax_spec.set_ylim(max(db.min(), db.max() - 80.0) - 10.0, db.max() + 10.0)
    ticks = [f for f in (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000) if f <= rate / 2]
    ax_spec.set_xticks(ticks, [f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks])
    ax_spec.set(xlim=(20.0, rate / 2), xlabel="frequency (Hz)", ylabel="power spectral density (dB re FS²/Hz)")
    ax_spec.legend(loc="upper right", fontsize=10, framealpha=0.9)

    for ax, name in ((ax_wave, "Waveform (min/max per pixel column)"), (ax_st, "Short-term loudness (EBU R128)"),
                     (ax_spec, "Long-term average spectrum")):
        ax.grid(True, which="major", alpha=0.35)
        ax.set_title(name, loc="left", fontsize=13, fontweight="bold")
    ax_spec.grid(True, which="minor", alpha=0.15)
    for ax in (ax_wave, ax_st):
        ax.set_xlabel("time (s)")
