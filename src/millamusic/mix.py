"""Stems -> stereo mix: per stem high-pass -> presence EQ -> compressor -> gain -> pan, into a
backing bus and a vocal bus; a shared plate reverb from the sends; the backing ducked a little
under the vocal; the sum trimmed to the mix peak. Every setting is in MixConfig (keyed into the mix
stage's cache entry); the report says what was done."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
from pedalboard import Compressor, HighpassFilter, PeakFilter, Pedalboard, Reverb

from millamusic.core.audio import Audio, peak_of

MIX_THREADS = 2  # stems read and processed ahead of the sum: two cores busy, three stems in memory
MIX_VERSION = "4"  # 4: backing_vocals stem, spread


@dataclass(frozen=True)
class StemSettings:
    gain_db: float
    pan: float = 0.0  # -1 left .. +1 right
    highpass_hz: float | None = None
    compress: tuple[float, float] | None = None  # (threshold dB, ratio)
    presence_db: float = 0.0  # peak EQ at 3 kHz: intelligibility for vocals, bite for guitars
    reverb_send: float = 0.0  # 0..1 wet level of the shared plate
    spread_ms: float = 0.0  # right channel this much later than the left: a mono part widened (Haas)


# One place for the default balance. Unknown stem names get DEFAULT_STEM.
STEM_SETTINGS: dict[str, StemSettings] = {
    "drums": StemSettings(gain_db=-1.0, compress=(-18.0, 2.5)),
    "bass": StemSettings(gain_db=-2.0, highpass_hz=35.0, compress=(-20.0, 3.0)),
    "keys": StemSettings(gain_db=-4.0, pan=-0.1, highpass_hz=120.0),
    "pad": StemSettings(gain_db=-8.0, highpass_hz=150.0, reverb_send=0.15),
    "guitar": StemSettings(gain_db=-3.0, pan=0.0, highpass_hz=90.0, presence_db=1.5),
    "clean_guitar": StemSettings(gain_db=-5.0, highpass_hz=110.0, reverb_send=0.12),
    "piano": StemSettings(gain_db=-3.0, highpass_hz=60.0, reverb_send=0.1),
    "arp": StemSettings(gain_db=-6.0, highpass_hz=250.0, reverb_send=0.1),
    "lead": StemSettings(gain_db=0.0, highpass_hz=110.0, compress=(-22.0, 3.0), presence_db=2.5, reverb_send=0.22),
    # the double thickens the lead from under it; the harmony sits behind, in more reverb
    "lead_double": StemSettings(gain_db=-8.0, highpass_hz=150.0, compress=(-22.0, 3.0), reverb_send=0.3),
    "harmony": StemSettings(gain_db=-7.0, pan=0.2, highpass_hz=150.0, compress=(-22.0, 3.0), reverb_send=0.35),
    # the backing part ("(hold on)") answers the lead from behind and to the side: under it, wide, wetter
    "backing_vocals": StemSettings(gain_db=-6.0, pan=-0.25, highpass_hz=180.0, compress=(-24.0, 3.0),
                                   reverb_send=0.4, spread_ms=12.0),
}
DEFAULT_STEM = StemSettings(gain_db=-4.0, highpass_hz=60.0)
VOCAL_STEMS = ("lead", "lead_double", "harmony", "backing_vocals")


@dataclass(frozen=True)
class StemProcessing:
    """What every stem's chain shares (its own settings are in StemSettings)."""

    presence_hz: float = 3000.0
    presence_q: float = 0.8
    attack_ms: float = 8.0
    release_ms: float = 120.0


@dataclass(frozen=True)
class Plate:
    """The shared reverb the stems' sends feed (all wet: the dry signal is in the buses)."""

    room_size: float = 0.45
    damping: float = 0.5
    width: float = 1.0


@dataclass(frozen=True)
class Ducking:
    max_db: float = 2.0  # how far the backing dips while the vocal sings: room for words, no pumping
    smoothing_s: float = 0.08  # follows phrases, not syllables
    reference_percentile: float = 90.0  # of the vocal's envelope: the level that ducks fully
    silence: float = 1e-4  # envelope values at or under this are not singing


@dataclass(frozen=True)
class MixConfig:
    stems: dict[str, StemSettings] = field(default_factory=lambda: dict(STEM_SETTINGS))
    default_stem: StemSettings = DEFAULT_STEM  # for stem names not in `stems`
    vocal_stems: tuple[str, ...] = VOCAL_STEMS  # these go to the vocal bus, the rest to the (ducked) backing bus
    processing: StemProcessing = field(default_factory=StemProcessing)
    plate: Plate = field(default_factory=Plate)
    ducking: Ducking = field(default_factory=Ducking)
    peak_dbfs: float = -3.0  # headroom handed to mastering

    def key(self) -> dict:
        """The settings as plain data, for the mix stage's cache key."""
        return asdict(self)


MIX = MixConfig()


@dataclass(frozen=True)
class MixReport:
    stems: dict  # name -> {"peak_dbfs", "rms_dbfs", "gain_db", "pan"}
    ducking_max_db: float
    peak_dbfs: float
    trim_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def mix(stems: Mapping[str, Audio], config: MixConfig = MIX) -> tuple[Audio, MixReport]:
    """Sum processed stems; every stem must be stereo with the same rate and length.

    Each stem is read from `stems` once, so a mapping that loads stems when asked keeps only a few
    in memory (pipeline.run.StemFiles): while one is summed into the buses, the next two are read
    and processed on two threads (FLAC decoding and pedalboard let go of the GIL). The buses are
    summed in the stems' order, as one after the other would."""
    if not stems:
        raise ValueError("nothing to mix: no stems")
    names = list(stems)
    stem_report = {}
    with ThreadPoolExecutor(max_workers=MIX_THREADS, thread_name_prefix="millamusic-mix") as ahead:
        coming = deque(ahead.submit(_processed_stem, stems, name, config) for name in names[:MIX_THREADS])
        for index, name in enumerate(names):
            audio_shape, processed, stem_report[name] = coming.popleft().result()
            if index + MIX_THREADS < len(names):
                coming.append(ahead.submit(_processed_stem, stems, names[index + MIX_THREADS], config))
            if index == 0:
                rate, frames = audio_shape
                backing_bus = np.zeros((2, frames), np.float32)
                vocal_bus = np.zeros((2, frames), np.float32)
                reverb_bus = np.zeros((2, frames), np.float32)
            if audio_shape != (rate, frames):
                for future in coming:
                    future.cancel()
                raise ValueError(f"stem {name!r} is {audio_shape[1]} frames at {audio_shape[0]} Hz; "
                                 f"expected {frames} at {rate}")
            (vocal_bus if name in config.vocal_stems else backing_bus)[:] += processed
            send = config.stems.get(name, config.default_stem).reverb_send
            if send:
                reverb_bus += processed * np.float32(send)
            del processed
    plate = config.plate
    wet = Pedalboard([Reverb(room_size=plate.room_size, damping=plate.damping, wet_level=1.0, dry_level=0.0,
                             width=plate.width)])(reverb_bus, rate)
    del reverb_bus
    duck = _duck_gain(vocal_bus, rate, config.ducking)
    # backing * duck + vocal + wet, summed where the backing bus is (the same float32 steps, no
    # temporaries: a 3-minute bus is 63 MB, and the mix is a render's peak of memory)
    total = backing_bus
    total *= duck
    total += vocal_bus
    total += wet
    del vocal_bus, wet
    peak = peak_of(total) or 1.0
    trim_db = config.peak_dbfs - _db(peak)
    total *= np.float32(10 ** (trim_db / 20))
    report = MixReport(stem_report, float(-_db(np.min(duck))), _db(peak_of(total)), trim_db)
    return Audio(total, rate), report


def _processed_stem(stems: Mapping[str, Audio], name: str,
                    config: MixConfig) -> tuple[tuple[int, int], np.ndarray, dict]:
    """((rate, frames), the stem through its chain, gain, spread and pan, its report line)."""
    audio = stems[name]
    rate = audio.sample_rate
    settings = config.stems.get(name, config.default_stem)
    processing = config.processing
    chain = []
    if settings.highpass_hz:
        chain.append(HighpassFilter(settings.highpass_hz))
    if settings.presence_db:
        chain.append(PeakFilter(processing.presence_hz, settings.presence_db, processing.presence_q))
    if settings.compress:
        chain.append(Compressor(threshold_db=settings.compress[0], ratio=settings.compress[1],
                                attack_ms=processing.attack_ms, release_ms=processing.release_ms))
    shape = (rate, audio.frames)
    stereo = audio.to_stereo().samples
    processed = _spread(Pedalboard(chain)(stereo, rate) if chain else stereo, rate, settings.spread_ms)
    gain = np.float32(10 ** (settings.gain_db / 20))
    if processed is stereo:  # the stem's own samples (no chain, no spread): not ours to scale in place
        processed = processed * gain
    else:
        processed *= gain
    del audio, stereo  # only the processed copy stays in memory
    _pan_in_place(processed, settings.pan)
    report = {"peak_dbfs": _db(peak_of(processed)), "rms_dbfs": _db(_rms(processed)),
              "gain_db": settings.gain_db, "pan": settings.pan}
    return shape, processed, report


def _pan_in_place(stereo: np.ndarray, pan: float) -> None:
    """Constant-power balance of a stereo signal, in its own array."""
    if pan == 0.0:
        return
    angle = (pan + 1) * np.pi / 4
    gains = np.array([[np.cos(angle)], [np.sin(angle)]], np.float32) * np.float32(np.sqrt(2))
    stereo *= gains


def _spread(stereo: np.ndarray, rate: int, spread_ms: float) -> np.ndarray:
    """The right channel delayed by `spread_ms` (the length kept): a centred part heard wide."""
    shift = int(round(spread_ms * rate / 1000))
    if shift <= 0:
        return stereo
    out = stereo.copy()
    out[1, shift:] = stereo[1, :-shift]
    out[1, :shift] = 0.0
    return out


def _duck_gain(vocal: np.ndarray, rate: int, ducking: Ducking) -> np.ndarray:
    """Gain (1, frames) for the backing: down by up to `ducking.max_db` while the vocal is loud."""
    from scipy.signal import lfilter  # scipy: ~1 s to import

    level = np.abs(vocal).max(axis=0)
    coeff = np.exp(-1.0 / (ducking.smoothing_s * rate))
    envelope = lfilter([1 - coeff], [1, -coeff], level)
    singing = envelope > ducking.silence
    reference = np.percentile(envelope[singing], ducking.reference_percentile) if np.any(singing) else 1.0
    del singing
    # 10 ** (-max_db * clip(envelope / reference, 0, 1) / 20), step by step in the envelope's own
    # float64 array (the same numbers; each temporary of a 3-minute song is 64 MB)
    amount = envelope
    amount /= reference + 1e-9
    np.clip(amount, 0.0, 1.0, out=amount)
    amount *= -ducking.max_db
    amount /= 20
    np.power(10, amount, out=amount)
    return amount.astype(np.float32)[None, :]


RMS_BLOCK_FRAMES = 1 << 18


def _rms(x: np.ndarray) -> float:
    """Root mean square of a (channels, frames) signal, summed in float64 a block at a time: no
    float64 copy of the whole signal (127 MB for a 3-minute stem, while the next stem is mixed)."""
    if not x.size:
        return 0.0
    total = 0.0
    for start in range(0, x.shape[-1], RMS_BLOCK_FRAMES):
        block = x[..., start : start + RMS_BLOCK_FRAMES].astype(np.float64).ravel()
        total += float(np.dot(block, block))
    return float(np.sqrt(total / x.size))


def _db(x: float) -> float:
    return float(20 * np.log10(max(float(x), 1e-10)))
