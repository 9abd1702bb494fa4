"""Time and check mastering + delivery export: millamusic against ffmpeg's two-pass loudnorm.

    python bench/mastering.py [--seconds 180] [--repeats 3] [--profile spotify] [--json out.json]

Builds a pop/rock-like stereo 44.1 kHz test mix in code (fixed seed: kick with a pitch drop, noise
snare, hats, bass, slowly moving chord partials, a quieter bridge) at -20 LUFS, writes it once to a
float32 WAV, and hands that same file to both tools:

  millamusic  read the WAV, `master.master(mix, PROFILES[profile])`, then the export as the
              pipeline does it (`pipeline._export`): delivery WAV and FLAC at the profile's bit depth,
              the check (decode WAV and FLAC, compare, measure), MP3 320 CBR and V0 through
              `write_mp3_under` (each decoded, measured and re-encoded with a trim while its true
              peak is over the lossy ceiling), and the PNG report.
  ffmpeg      the documented two-pass loudnorm: pass 1 measures (`print_format=json`), pass 2
              applies with the measured values and `linear=true`, `-ar 44100` (loudnorm works at
              192 kHz) and PCM at the profile's bit depth; then FLAC, MP3 320 (`-b:a 320k`) and
              MP3 V0 (`-q:a 0`) encodes of that WAV.

Times are wall seconds (time.perf_counter), the median of --repeats runs, per step and in total;
each repeat runs both tools, one after the other, into a fresh folder. The comparison table pairs
the steps that do the same job (its figures are medians of each repeat's sum of those steps) and
says how far they are equivalent; ratio = millamusic / ffmpeg, over 1 means millamusic is slower.
A short warm-up of both (imports, font cache, page cache) runs first and is not counted. ffmpeg's
times include starting its process, as a script calling it would pay.

Then every output of both tools (the last repeat's) is decoded with `millamusic.release.pcm.decode`
and measured with `millamusic.master.measure`: integrated loudness, how far it is from the
profile's target, true peak (4x oversampled) against the ceiling that applies (the profile's for
WAV/FLAC, `profile.lossy_true_peak_dbtp` for MP3s, the project's rule for lossy files) and the
loudness range. The summary gives the time ratio (millamusic / ffmpeg, medians), each tool's
distance from target and ceiling, and which mode loudnorm really used: with `linear=true` it falls
back to dynamic (a gain that moves, like an AGC) when the measured true peak plus the needed gain
would be over TP, or the measured LRA is over its LRA=11 target.

Without ffmpeg (not on PATH, or --ffmpeg names nothing) the millamusic side still runs and the
script says that the comparison was skipped. --json writes every figure so runs can be compared.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from millamusic.core.audio import Audio
from millamusic.release.tags import IPTC_DIGITAL_SOURCE_PREFIX, ReleaseTags
from millamusic.release.pcm import check_wav_delivery, decode, write_wav
from millamusic.release.flac import write_flac
from millamusic.release.mp3 import write_mp3_under
from millamusic.dsp.loudness import integrated_loudness, measure
from millamusic.mastering.chain import master
from millamusic.spec.profiles import PROFILES, DeliveryProfile
from millamusic.release.report import write_master_report

RATE = 44100
MIX_LUFS = -20.0
LOUDNORM_LRA = 11.0  # loudnorm's default LRA target; over it, linear mode is refused
MM_STEPS = ("read", "master", "wav", "flac", "check", "mp3 320", "mp3 v0", "report")
MM_LABELS = {
    "read": "read the mix WAV",
    "master": "master() to the profile",
    "wav": "write_wav (delivery WAV)",
    "flac": "write_flac (+ tags, cover)",
    "check": "check: decode WAV+FLAC, measure",
    "mp3 320": "write_mp3_under cbr320",
    "mp3 v0": "write_mp3_under v0",
    "report": "write_master_report (PNG)",
}
FF_STEPS = ("pass 1", "pass 2", "flac", "mp3 320", "mp3 v0")
FF_LABELS = {
    "pass 1": "loudnorm pass 1 (measure)",
    "pass 2": "loudnorm pass 2 (+ WAV)",
    "flac": "FLAC encode of the WAV",
    "mp3 320": "MP3 320k encode of the WAV",
    "mp3 v0": "MP3 V0 encode of the WAV",
}
FILES = {"wav": ".wav", "flac": ".flac", "mp3 320": ".320.mp3", "mp3 v0": ".v0.mp3"}


# --------------------------------------------------------------------------- the test mix


def _place(x: np.ndarray, start: int, sound: np.ndarray, gains: tuple[float, float]) -> None:
    m = min(sound.shape[0], x.shape[1] - start)
    if m > 0:
        x[0, start : start + m] += gains[0] * sound[:m]
        x[1, start : start + m] += gains[1] * sound[:m]


def _smooth(values: np.ndarray, frames: int) -> np.ndarray:
    """Centred moving average over `frames` (edges held): section changes ramp instead of clicking."""
    half = frames // 2
    padded = np.pad(values, (half, frames - 1 - half), mode="edge")
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    return (csum[frames:] - csum[:-frames]) / frames


def make_mix(seconds: float, seed: int) -> Audio:
    """A 120 bpm pop/rock-like stereo mix in A minor (Am F C G), at MIX_LUFS, float32.

    Form: intro (no kick), verse, chorus, verse, chorus, a quieter bridge (no kick, soft drums,
    sustained bass), last chorus. Drums: kick with a pitch drop, noise snare with a body tone,
    16th/8th hats; bass: 8th notes with harmonics; chords: three voices plus octaves, detuned
    pairs with slow amplitude and pan movement; a -60 dB noise floor.
    """
    import scipy.signal

    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    x = np.zeros((2, n))
    beat = 0.5  # 120 bpm
    bar = 4 * beat

    # sections by share of the song: (name, start share, level, kick, drums level, busy hats)
    form = [("intro", 0.00, 0.55, False, 0.5, False), ("verse", 0.08, 0.75, True, 0.8, False),
            ("chorus", 0.28, 1.00, True, 1.0, True), ("verse", 0.42, 0.75, True, 0.8, False),
            ("chorus", 0.60, 1.00, True, 1.0, True), ("bridge", 0.72, 0.32, False, 0.35, False),
            ("chorus", 0.84, 1.00, True, 1.0, True)]
    starts = [int(round(share * seconds / bar)) * bar for _, share, *_ in form] + [seconds]

    def section_at(time_s: float) -> tuple:
        for i in range(len(form)):
            if starts[i] <= time_s < starts[i + 1]:
                return form[i]
        return form[-1]

    level = np.zeros(n)
    for i, (_, _, lev, *_) in enumerate(form):
        level[int(starts[i] * RATE) : int(starts[i + 1] * RATE)] = lev
    level = _smooth(level, int(0.05 * RATE))

    # drum sounds
    kt = np.arange(int(0.35 * RATE)) / RATE
    kick = np.sin(2 * np.pi * np.cumsum(48 + 120 * np.exp(-kt * 35)) / RATE) * np.exp(-kt * 9)
    kick[: int(0.002 * RATE)] += rng.standard_normal(int(0.002 * RATE)) * 0.3  # beater click
    st = np.arange(int(0.25 * RATE)) / RATE
    snare_noise = scipy.signal.sosfilt(scipy.signal.butter(2, [900, 7000], "bandpass", fs=RATE, output="sos"),
                                       rng.standard_normal(st.size))
    snare = 0.9 * snare_noise * np.exp(-st * 22) + 0.45 * np.sin(2 * np.pi * 190 * st) * np.exp(-st * 30)
    ht = np.arange(int(0.07 * RATE)) / RATE
    hat_sos = scipy.signal.butter(4, 7000, "highpass", fs=RATE, output="sos")
    hats = [scipy.signal.sosfilt(hat_sos, rng.standard_normal(ht.size)) * np.exp(-ht * 70) for _ in range(4)]

    steps = int(seconds / (beat / 4))
    for k in range(steps):  # 16th-note grid
        time_s = k * beat / 4
        start = int(round(time_s * RATE))
        _, _, _, has_kick, drums, busy = section_at(time_s)
        pos = k % 16  # 16th within the bar
        vel = rng.uniform(0.85, 1.0)
        if has_kick and (pos in (0, 8) or (busy and pos == 10) or (pos == 14 and k % 64 == 62)):
            _place(x, start, 0.85 * vel * kick, (1.0, 1.0))
        if pos in (4, 12):
            _place(x, start, 0.55 * drums * vel * snare, (0.95, 1.0))
        if busy or pos % 2 == 0:
            accent = 1.0 if pos % 4 == 0 else 0.6
            _place(x, start, 0.16 * drums * accent * vel * hats[k % 4], (0.7, 1.0))

    # harmony: one chord per bar
    chords = {"Am": (55.0, (220.0, 261.63, 329.63)), "F": (43.65, (174.61, 220.0, 261.63)),
              "C": (65.41, (196.0, 261.63, 329.63)), "G": (49.0, (196.0, 246.94, 293.66))}
    order = ("Am", "F", "C", "G")
    bar_index = (t // bar).astype(np.int64) % 4
    root = np.array([chords[order[i]][0] for i in range(4)])[bar_index]

    # bass: 8th notes (sustained in the bridge), six harmonics
    phase = 2 * np.pi * np.cumsum(root) / RATE
    bass = sum(np.sin(k * phase) * (0.75**k) / k for k in range(1, 7))
    eighth = beat / 2
    in_note = (t % eighth) / eighth
    bridge = np.zeros(n, dtype=bool)
    for i, (name, *_) in enumerate(form):
        if name == "bridge":
            bridge[int(starts[i] * RATE) : int(starts[i + 1] * RATE)] = True
    env = np.where(bridge, 0.8, np.exp(-in_note * 2.2)) * np.minimum(1.0, (t % eighth) / 0.004)
    bass = 0.38 * bass * _smooth(env, 32)
    x += bass

    # chords: three voices, each plus its octave, detuned pairs, slow level and pan movement
    for v in range(3):
        freq = np.array([chords[order[i]][1][v] for i in range(4)])[bar_index]
        for octave, amp in ((1.0, 0.05), (2.0, 0.025)):
            for detune, side in ((0.997, 0), (1.003, 1)):
                ph = 2 * np.pi * np.cumsum(freq * octave * detune) / RATE + rng.uniform(0, 2 * np.pi)
                tone = np.sin(ph) + 0.3 * np.sin(2 * ph) + 0.12 * np.sin(3 * ph)
                mod = 1 + 0.35 * np.sin(2 * np.pi * (0.11 + 0.04 * v) * t + rng.uniform(0, 2 * np.pi))
                pan = 0.5 + 0.35 * np.sin(2 * np.pi * 0.03 * (v + 1) * t + np.pi * side)
                x[0] += amp * mod * tone * (1 - pan)
                x[1] += amp * mod * tone * pan

    x *= level
    x += rng.standard_normal((2, n)) * 10 ** (-60 / 20)
    fade = int(2.0 * RATE)  # the last two seconds fade out
    x[:, -fade:] *= np.linspace(1.0, 0.0, fade)
    now = integrated_loudness(x, RATE)
    x *= 10 ** ((MIX_LUFS - now) / 20)
    return Audio(x.astype(np.float32), RATE)


# --------------------------------------------------------------------------- millamusic


def release_tags() -> ReleaseTags:
    from PIL import Image, ImageDraw

    size = 1400
    ramp = np.linspace(0, 255, size, dtype=np.float64)
    rgb = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp[::-1], ramp) / 2,
                    np.tile(ramp[::-1], (size, 1))], axis=2).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(image)
    for i in range(12):
        draw.ellipse((100 + 40 * i, 100 + 30 * i, 1300 - 25 * i, 1300 - 45 * i), outline=(255, 255, 255), width=6)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    credits = [{"stage": "mix", "tool": "bench/mastering.py", "ai": False}]
    return ReleaseTags(
        title="Mastering Bench", artist="Milla", album="Bench", track_number=1, track_total=1, year=2025,
        genre="Pop", isrc="QZ-ABC-25-00001", composer="bench", lyricist="bench", label="bench",
        disclosure="Test signal made by bench/mastering.py; no AI involved.", contains_ai="None",
        digital_source_type=IPTC_DIGITAL_SOURCE_PREFIX + "algorithmicMedia",
        ai_credits_json=json.dumps(credits), cover_image=buf.getvalue(), cover_mime="image/png",
    )


def run_millamusic(mix_wav: Path, folder: Path, profile: DeliveryProfile, tags: ReleaseTags) -> tuple[dict, dict]:
    """One run: (seconds per step, details: master's own report, MP3 trims)."""
    times: dict[str, float] = {}
    names = {role: folder / f"millamusic{suffix}" for role, suffix in FILES.items()}

    def step(name: str, fn):
        start = time.perf_counter()
        value = fn()
        times[name] = time.perf_counter() - start
        return value

    mix = step("read", lambda: decode(mix_wav))
    mastered, report = step("master", lambda: master(mix, profile))
    step("wav", lambda: write_wav(mastered, names["wav"], bit_depth=profile.bit_depth))
    step("flac", lambda: write_flac(mastered, names["flac"], tags, bit_depth=profile.bit_depth))

    def check() -> tuple[Audio, dict]:  # as pipeline._export: the report shows the decoded WAV
        pcm = decode(names["wav"])
        if not np.array_equal(decode(names["flac"]).samples, pcm.samples):
            raise SystemExit("millamusic: the FLAC does not decode to the same samples as the WAV")
        return pcm, measure(pcm).to_dict()

    pcm, pcm_loudness = step("check", check)
    trims = {}
    for role, mode in (("mp3 320", "cbr320"), ("mp3 v0", "v0")):
        lossy = step(role, lambda: write_mp3_under(mastered, names[role], tags, mode=mode,
                                                   max_true_peak_dbtp=profile.lossy_true_peak_dbtp))
        trims[role] = lossy.trim_db
    step("report", lambda: write_master_report(pcm, folder / "millamusic.release.report.png", title=tags.title,
                                               profile=profile.name, target_lufs=profile.integrated_lufs,
                                               ceiling_dbtp=profile.true_peak_dbtp, measured=pcm_loudness))
    details = {"master_report": report.to_dict(), "mp3_trim_db": trims}
    return times, details


# --------------------------------------------------------------------------- ffmpeg


def _ffmpeg(exe: str, *args: str) -> str:
    """Run ffmpeg; its stderr (where loudnorm prints its JSON)."""
    proc = subprocess.run([exe, "-hide_banner", "-nostats", "-y", *args], capture_output=True, text=True)
    if proc.returncode:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise SystemExit(f"ffmpeg failed (exit {proc.returncode}): {' '.join(args)}\n{tail}")
    return proc.stderr


def _loudnorm_json(stderr: str) -> dict:
    """The JSON block loudnorm prints at the end of stderr."""
    start, end = stderr.rfind("{"), stderr.rfind("}")
    if start < 0 or end < start:
        raise SystemExit("ffmpeg: no loudnorm JSON block in its output:\n" + stderr[-2000:])
    return json.loads(stderr[start : end + 1])


def run_ffmpeg(exe: str, mix_wav: Path, folder: Path, profile: DeliveryProfile) -> tuple[dict, dict]:
    """One run: (seconds per step, details: pass 1 and pass 2 JSON)."""
    times: dict[str, float] = {}
    names = {role: folder / f"ffmpeg{suffix}" for role, suffix in FILES.items()}
    target = f"I={profile.integrated_lufs:g}:TP={profile.true_peak_dbtp:g}:LRA={LOUDNORM_LRA:g}"
    pcm = f"pcm_s{profile.bit_depth}le"

    start = time.perf_counter()
    first = _loudnorm_json(_ffmpeg(exe, "-i", str(mix_wav), "-af", f"loudnorm={target}:print_format=json",
                                   "-f", "null", "-"))
    times["pass 1"] = time.perf_counter() - start

    measured = (f"measured_I={first['input_i']}:measured_TP={first['input_tp']}:measured_LRA={first['input_lra']}"
                f":measured_thresh={first['input_thresh']}:offset={first['target_offset']}")
    start = time.perf_counter()
    second = _loudnorm_json(_ffmpeg(exe, "-i", str(mix_wav), "-af",
                                    f"loudnorm={target}:{measured}:linear=true:print_format=json",
                                    "-ar", str(profile.sample_rate), "-c:a", pcm, str(names["wav"])))
    times["pass 2"] = time.perf_counter() - start

    encodes = {"flac": ("-c:a", "flac"), "mp3 320": ("-c:a", "libmp3lame", "-b:a", "320k"),
               "mp3 v0": ("-c:a", "libmp3lame", "-q:a", "0")}
    for role, codec in encodes.items():
        start = time.perf_counter()
        _ffmpeg(exe, "-i", str(names["wav"]), *codec, str(names[role]))
        times[role] = time.perf_counter() - start
    return times, {"pass1": first, "pass2": second}


def linear_refused_because(first: dict, profile: DeliveryProfile) -> list[str]:
    """Why loudnorm's linear mode could not be used, from pass 1's figures (af_loudnorm.c's test)."""
    gain = profile.integrated_lufs - float(first["input_i"])
    reasons = []
    if float(first["input_tp"]) + gain > profile.true_peak_dbtp:
        reasons.append(f"input true peak {float(first['input_tp']):.2f} dBTP + {gain:.2f} dB of gain = "
                       f"{float(first['input_tp']) + gain:+.2f} dBTP is over TP={profile.true_peak_dbtp:g}")
    if float(first["input_lra"]) > LOUDNORM_LRA:
        reasons.append(f"input LRA {float(first['input_lra']):.1f} LU is over LRA={LOUDNORM_LRA:g}")
    return reasons


def ffmpeg_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    match = re.match(r"ffmpeg version (\S+)", out)
    return match.group(1) if match else "unknown"


# --------------------------------------------------------------------------- report


def versions(ffmpeg: str | None) -> dict:
    import soundfile

    found = {}
    for name in ("millamusic", "numpy", "scipy", "pedalboard", "soundfile", "soxr", "pyloudnorm", "mutagen",
                 "matplotlib", "pillow"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["libsndfile"] = soundfile.__libsndfile_version__
    found["ffmpeg"] = ffmpeg_version(ffmpeg) if ffmpeg else None
    found["python"] = platform.python_version()
    return found


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu,
            "cpu_count": os.cpu_count()}


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def measure_file(path: Path) -> dict:
    loud = measure(decode(path))
    return {"integrated_lufs": loud.integrated_lufs, "true_peak_dbtp": loud.true_peak_dbtp,
            "sample_peak_dbfs": loud.sample_peak_dbfs, "lra_lu": loud.lra_lu}


def _f(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def print_times(title: str, steps: tuple, labels: dict, table: dict) -> None:
    print(f"\n{title:<36}{'median s':>10}{'min':>8}{'max':>8}")
    for s in steps:
        print(f"  {labels[s]:<34}{table[s]['median']:>10.2f}{table[s]['min']:>8.2f}{table[s]['max']:>8.2f}")
    print(f"  {'total':<34}{table['total']['median']:>10.2f}{table['total']['min']:>8.2f}"
          f"{table['total']['max']:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the test mix (default 180)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each tool; medians are printed")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="spotify")
    parser.add_argument("--seed", type=int, default=1, help="seed of the test mix")
    parser.add_argument("--ffmpeg", default=shutil.which("ffmpeg"),
                        help="ffmpeg executable (default: the one on PATH)")
    parser.add_argument("--keep", type=Path, help="write the outputs of the last repeat to this folder")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args()
    if args.repeats < 1 or args.seconds < 10:
        parser.error("--repeats must be >= 1 and --seconds >= 10")
    profile = PROFILES[args.profile]
    ffmpeg = args.ffmpeg if args.ffmpeg and shutil.which(args.ffmpeg) else None
    info = {"machine": machine(), "versions": versions(ffmpeg)}
    v = info["versions"]
    print(f"cores: {os.cpu_count()}, cpu: {info['machine']['cpu'] or 'unknown'}, repeats: {args.repeats} "
          f"(+1 short warm-up), mix: {args.seconds:g} s stereo {RATE} Hz at {MIX_LUFS:g} LUFS (seed {args.seed})")
    print(f"profile: {profile.name} ({profile.integrated_lufs:g} LUFS, ceiling {profile.true_peak_dbtp:g} dBTP, "
          f"MP3 ceiling {profile.lossy_true_peak_dbtp:g} dBTP, {profile.bit_depth}-bit)")
    print(f"versions: millamusic {v['millamusic']}, numpy {v['numpy']}, pedalboard {v['pedalboard']}, "
          f"libsndfile {v['libsndfile']}, ffmpeg {v['ffmpeg'] or '-'}")
    if ffmpeg is None:
        why = f"{args.ffmpeg!r} was not found" if args.ffmpeg else "no ffmpeg on PATH"
        print(f"ffmpeg: {why}; only the millamusic side runs, and there is no comparison.")

    tags = release_tags()
    mm_runs: dict[str, list[float]] = {s: [] for s in (*MM_STEPS, "total")}
    ff_runs: dict[str, list[float]] = {s: [] for s in (*FF_STEPS, "total")}
    with tempfile.TemporaryDirectory(prefix="millamusic-bench-") as tmp:
        tmp = Path(tmp)
        mix = make_mix(args.seconds, args.seed)
        mix_wav = tmp / "mix.wav"
        import soundfile as sf

        sf.write(str(mix_wav), mix.samples.T, RATE, subtype="FLOAT", format="WAV")
        warm_wav = tmp / "warm.wav"
        sf.write(str(warm_wav), mix.samples[:, : 10 * RATE].T, RATE, subtype="FLOAT", format="WAV")
        for folder in (tmp / "warm-mm", tmp / "warm-ff"):
            folder.mkdir()
        run_millamusic(warm_wav, tmp / "warm-mm", profile, tags)
        if ffmpeg:
            run_ffmpeg(ffmpeg, warm_wav, tmp / "warm-ff", profile)

        mm_details = ff_details = None
        for r in range(args.repeats):
            folder = tmp / f"run{r}"
            folder.mkdir()
            times, mm_details = run_millamusic(mix_wav, folder, profile, tags)
            for s in MM_STEPS:
                mm_runs[s].append(times[s])
            mm_runs["total"].append(sum(times.values()))
            if ffmpeg:
                times, ff_details = run_ffmpeg(ffmpeg, mix_wav, folder, profile)
                for s in FF_STEPS:
                    ff_runs[s].append(times[s])
                ff_runs["total"].append(sum(times.values()))
            print(f"repeat {r + 1}/{args.repeats}: millamusic {mm_runs['total'][-1]:.2f} s"
                  + (f", ffmpeg {ff_runs['total'][-1]:.2f} s" if ffmpeg else ""), flush=True)

        last = tmp / f"run{args.repeats - 1}"
        rows = [("input", "mix (float WAV)", mix_wav, None)]
        for tool in ("millamusic", "ffmpeg") if ffmpeg else ("millamusic",):
            for role, suffix in FILES.items():
                ceiling = profile.lossy_true_peak_dbtp if role.startswith("mp3") else profile.true_peak_dbtp
                rows.append((tool, role, last / f"{tool}{suffix}", ceiling))
        measurements = []
        for tool, role, path, ceiling in rows:
            m = measure_file(path)
            off = m["integrated_lufs"] - profile.integrated_lufs
            over = None if ceiling is None else m["true_peak_dbtp"] > ceiling
            trim = (mm_details["mp3_trim_db"].get(role) if tool == "millamusic" else None)
            measurements.append({"tool": tool, "file": role, **m, "off_target_lu": off, "ceiling_dbtp": ceiling,
                                 "over_ceiling": over, "mp3_trim_db": trim})
        wav_problems = check_wav_delivery(last / "ffmpeg.wav") if ffmpeg else []
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in last.iterdir():
                shutil.copy2(path, args.keep / path.name)

    mm = {s: stats(mm_runs[s]) for s in mm_runs}
    ff = {s: stats(ff_runs[s]) for s in ff_runs} if ffmpeg else None
    print_times("millamusic step", MM_STEPS, MM_LABELS, mm)
    if ff:
        print_times("ffmpeg step", FF_STEPS, FF_LABELS, ff)

    print(f"\n{'tool':<11}{'file':<17}{'LUFS':>8}{'off LU':>8}{'TP dBTP':>9}{'ceiling':>9}{'over?':>7}"
          f"{'LRA LU':>8}  note")
    for m in measurements:
        over = "-" if m["over_ceiling"] is None else ("OVER" if m["over_ceiling"] else "no")
        note = ""
        if m["mp3_trim_db"]:
            note = f"trimmed {m['mp3_trim_db']:+.2f} dB"
        elif m["tool"] == "ffmpeg" and m["file"].startswith("mp3"):
            note = "no peak check"
        ceiling = "-" if m["ceiling_dbtp"] is None else f"{m['ceiling_dbtp']:.1f}"
        print(f"{m['tool']:<11}{m['file']:<17}{_f(m['integrated_lufs'], '.2f'):>8}"
              f"{_f(m['off_target_lu'], '+.2f'):>8}{_f(m['true_peak_dbtp'], '.2f'):>9}{ceiling:>9}{over:>7}"
              f"{_f(m['lra_lu'], '.1f'):>8}  {note}")

    summary: dict = {}
    if ff:
        pairs = [
            ("loudness to target + WAV", ("read", "master", "wav"), ("pass 1", "pass 2"),
             "same job; millamusic limits true peaks and iterates to target"),
            ("FLAC", ("flac",), ("flac",), "same audio; millamusic adds tags + cover"),
            ("MP3 320 + V0", ("mp3 320", "mp3 v0"), ("mp3 320", "mp3 v0"),
             "no: millamusic decodes, measures, re-encodes if over, tags"),
            ("check + report PNG", ("check", "report"), (), "millamusic only"),
            ("all files", MM_STEPS, FF_STEPS, "WAV+FLAC+MP3 320+V0 each, millamusic + check/PNG"),
            ("all files, no check/PNG", ("read", "master", "wav", "flac", "mp3 320", "mp3 v0"), FF_STEPS,
             "closest like-for-like"),
        ]
        print(f"\n{'comparison (medians)':<26}{'millamusic s':>13}{'ffmpeg s':>10}{'ratio':>7}  equivalent?")
        summary["comparison"] = []
        for name, mm_steps, ff_steps, note in pairs:
            # the median over repeats of each repeat's sum (so "all files" is the printed total)
            a = statistics.median(sum(mm_runs[s][i] for s in mm_steps) for i in range(args.repeats))
            b = statistics.median(sum(ff_runs[s][i] for s in ff_steps) for i in range(args.repeats))
            ratio = a / b if b else None
            print(f"{name:<26}{a:>13.2f}{f'{b:.2f}' if ff_steps else '-':>10}"
                  f"{_f(ratio, '.2f') if ff_steps else '-':>7}  {note}")
            summary["comparison"].append({"what": name, "millamusic_s": a, "ffmpeg_s": b if ff_steps else None,
                                          "ratio": ratio if ff_steps else None, "note": note})

    print("\nsummary")
    ratio = mm["total"]["median"] / ff["total"]["median"] if ff else None
    if ff:
        print(f"  time: millamusic {mm['total']['median']:.2f} s / ffmpeg {ff['total']['median']:.2f} s = "
              f"{ratio:.2f}x (medians, all steps of each side)")
    for tool in ("millamusic", "ffmpeg") if ff else ("millamusic",):
        mine = [m for m in measurements if m["tool"] == tool]
        pcm = next(m for m in mine if m["file"] == "wav")
        over = [m["file"] for m in mine if m["over_ceiling"]]
        worst = max(mine, key=lambda m: abs(m["off_target_lu"]))
        print(f"  {tool}: WAV {pcm['integrated_lufs']:.2f} LUFS ({pcm['off_target_lu']:+.2f} LU off "
              f"{profile.integrated_lufs:g}), true peak {pcm['true_peak_dbtp']:.2f} dBTP "
              f"({'OVER' if pcm['over_ceiling'] else 'under'} {profile.true_peak_dbtp:g}); furthest file from target: "
              f"{worst['file']} {worst['off_target_lu']:+.2f} LU; "
              + (f"over their ceiling: {', '.join(over)}" if over else "every file at or under its ceiling"))
    if ff:
        used = ff_details["pass2"].get("normalization_type", "unknown")
        reasons = linear_refused_because(ff_details["pass1"], profile)
        print(f"  ffmpeg loudnorm asked for linear=true and used: {used} mode"
              + (f" (linear refused: {'; '.join(reasons)})" if used != "linear" and reasons else ""))
        p1 = ff_details["pass1"]
        print(f"  loudnorm pass 1 measured the mix: {p1['input_i']} LUFS, {p1['input_tp']} dBTP, "
              f"LRA {p1['input_lra']} LU (millamusic: {measurements[0]['integrated_lufs']:.2f} LUFS, "
              f"{measurements[0]['true_peak_dbtp']:.2f} dBTP, LRA {measurements[0]['lra_lu']:.1f} LU)")
        p2 = ff_details["pass2"]
        print(f"  loudnorm pass 2 reports its own output (at 192 kHz, before -ar {profile.sample_rate}): "
              f"{p2['output_i']} LUFS, {p2['output_tp']} dBTP, LRA {p2['output_lra']} LU")
        print("  ffmpeg's WAV as a delivery WAV (millamusic.release.pcm.check_wav_delivery): "
              + ("passes" if not wav_problems else f"{len(wav_problems)} problem(s): {'; '.join(wav_problems)}"))
        if profile.bit_depth == 16:
            print("  16-bit: millamusic dithers (TPDF); the ffmpeg side as run here converts to 16-bit without dither")
        print("  ffmpeg files carry no tags or cover; millamusic's FLAC/MP3s carry tags, the disclosure and "
              "a 1400x1400 PNG cover")
    else:
        print("  ffmpeg: not run (not found)")
    if "torch" in sys.modules:
        print("  warning: torch was imported during this run")

    if args.json:
        out = {
            **info, "args": {"seconds": args.seconds, "repeats": args.repeats, "profile": profile.to_dict(),
                             "seed": args.seed, "mix_lufs": MIX_LUFS, "ffmpeg": ffmpeg},
            "millamusic_seconds": mm, "ffmpeg_seconds": ff, "ffmpeg_skipped": ffmpeg is None,
            "time_ratio_millamusic_over_ffmpeg": ratio, "measurements": measurements,
            "millamusic_master_report": mm_details["master_report"],
            "ffmpeg_loudnorm": ff_details, "ffmpeg_wav_delivery_problems": wav_problems if ffmpeg else None,
            **summary,
        }
        args.json.write_text(json.dumps(out, indent=1, allow_nan=False, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
