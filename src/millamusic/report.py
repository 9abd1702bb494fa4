"""A one-page PNG report per master for release managers: waveform, short-term loudness, spectrum.

The header says, in one line, what was measured against what was asked for and PASS/FAIL:
integrated loudness within ±REPORT_TOLERANCE_LU of the target and true peak at or under the
ceiling. matplotlib and scipy are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .audio import Audio
from .export import atomic_path
from .master import _k_weighted_power
from .profiles import LOUDNESS_TOLERANCE_LU

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
    """
    power = _k_weighted_power(samples, rate)
    win = int(round(SHORT_TERM_SECONDS * rate))
    hop = max(1, int(round(hop_seconds * rate)))
    if power.shape[0] < win:
        return np.zeros(0), np.zeros(0)
    csum = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(0, power.shape[0] - win + 1, hop)
    mean_sq = np.maximum(csum[starts + win] - csum[starts], 0.0) / win
    with np.errstate(divide="ignore"):
        lufs = -0.691 + 10.0 * np.log10(mean_sq)
    lufs[lufs < SILENCE_LUFS] = -np.inf
    return (starts + win) / rate, lufs


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
    pad = cols * bucket - x.shape[1]
    if pad:  # repeat the last sample: never invents a peak, never drops the tail
        x = np.concatenate([x, np.repeat(x[:, -1:], pad, axis=1)], axis=1)
    blocks = x.reshape(x.shape[0], cols, bucket)
    return blocks.min(axis=2), blocks.max(axis=2), bucket


def _octave_smooth(freqs: np.ndarray, power: np.ndarray, fraction: int = 6) -> np.ndarray:
    """Mean power over a 1/fraction-octave band around each bin (freqs (n,) ascending, power (n,))."""
    csum = np.concatenate([[0.0], np.cumsum(power)])
    half = 2.0 ** (0.5 / fraction)
    lo = np.searchsorted(freqs, freqs / half, side="left")
    hi = np.maximum(np.searchsorted(freqs, freqs * half, side="right"), lo + 1)
    return (csum[hi] - csum[lo]) / (hi - lo)


def write_master_report(audio: Audio, path: str | os.PathLike, *, title: str, profile: str, target_lufs: float,
                        ceiling_dbtp: float, measured: dict, album_lufs: float | None = None) -> Path:
    """Write a 1600x1200 PNG report of `audio` (a master, (channels, frames)) to `path`, atomically.

    Panels: waveform min/max envelope (L/R) with the ceiling; short-term loudness with the target
    and the measured integrated loudness; Welch long-term spectrum of the mid channel with a
    -4.5 dB/octave reference tilt through 1 kHz. The parent folder is created if missing.
    measured: as for `report_headline`.
    """
    import scipy.signal
    from matplotlib.figure import Figure

    x, rate = audio.samples, audio.sample_rate
    if x.shape[1] == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"cannot report on {path}: the audio is empty or has NaN/inf samples")
    seconds = x.shape[1] / rate
    headline = report_headline(target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, measured=measured,
                               album_lufs=album_lufs)

    fig = Figure(figsize=FIG_INCHES, dpi=FIG_DPI, layout="constrained")
    fig.get_layout_engine().set(rect=(0.0, 0.0, 1.0, 0.925))  # the top 7.5% holds the two header lines
    fig.text(0.5, 0.975, f"{title}   —   profile: {profile}", ha="center", va="center", fontsize=20,
             fontweight="bold")
    fig.text(0.5, 0.943, headline, ha="center", va="center", fontsize=14,
             color="#1a7f37" if headline.startswith("PASS") else "#c62828")
    ax_wave, ax_st, ax_spec = fig.subplots(3, 1, gridspec_kw={"height_ratios": [1, 1, 1.1]})

    # 1. waveform envelope
    lo, hi, bucket = _envelope(x[:2], WAVE_COLUMNS)
    t = (np.arange(lo.shape[1]) + 0.5) * bucket / rate
    names = ["L", "R"] if x.shape[0] >= 2 else ["mono"]
    for ch, (name, color) in enumerate(zip(names, ["#1f77b4", "#d62728"])):
        ax_wave.fill_between(t, lo[ch], hi[ch], color=color, alpha=0.45, linewidth=0, label=name)
    ceiling = 10.0 ** (ceiling_dbtp / 20.0)
    for sign in (1, -1):
        ax_wave.axhline(sign * ceiling, color="k", linestyle="--", linewidth=1,
                        label=f"ceiling {ceiling_dbtp:.1f} dBTP (±{ceiling:.3f})" if sign > 0 else None)
    span = 1.25 * max(float(np.max(np.abs(x))), 1.0)  # headroom over full scale for the labels
    ax_wave.set(xlim=(0, seconds), ylim=(-span, span), ylabel="amplitude (linear, FS = 1)")
    ax_wave.legend(loc="upper right", ncols=3, fontsize=10, framealpha=0.9)

    # 2. short-term loudness
    st_t, st = short_term_loudness(x, rate)
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
    mid = x.mean(axis=0)
    freqs, psd = scipy.signal.welch(mid, fs=rate, nperseg=min(8192, mid.size))
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

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIG_DPI)
    return Path(path)
