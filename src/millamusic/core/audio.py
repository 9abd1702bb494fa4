"""The `Audio` value passed between stages, and file I/O for it.

Convention, stated once and never guessed from the shape: samples are float32 with
shape ``(channels, frames)``.
"""

from __future__ import annotations

import hashlib
import io
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from millamusic.core.cache import sha256_file


@dataclass(frozen=True, eq=False)
class Audio:
    samples: np.ndarray  # float32, shape (channels, frames)
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise ValueError(f"Audio.samples must be (channels, frames), got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", self.samples.astype(np.float32))

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    @classmethod
    def silence(cls, frames: int, sample_rate: int, channels: int = 2) -> "Audio":
        return cls(np.zeros((channels, frames), dtype=np.float32), sample_rate)

    def to_stereo(self) -> "Audio":
        if self.channels == 2:
            return self
        if self.channels == 1:
            return Audio(np.repeat(self.samples, 2, axis=0), self.sample_rate)
        raise ValueError(f"cannot make stereo from {self.channels} channels")

    def fit_length(self, frames: int) -> "Audio":
        """Pad with silence or cut so that the audio has exactly `frames` frames."""
        have = self.frames
        if have == frames:
            return self
        if have > frames:
            return Audio(self.samples[:, :frames], self.sample_rate)
        pad = np.zeros((self.channels, frames - have), dtype=np.float32)
        return Audio(np.concatenate([self.samples, pad], axis=1), self.sample_rate)

    def peak(self) -> float:
        return peak_of(self.samples)


def peak_of(samples: np.ndarray) -> float:
    """max |x| (NaN if any sample is NaN; 0.0 for no samples), without an |x| array as large as the
    signal (63 MB for a 3-minute stereo stem)."""
    return float(max(samples.max(), -samples.min())) if samples.size else 0.0


def save_npy(audio: Audio, path: Path) -> None:
    """Lossless store for the stage cache (float32, sample rate in the file name's sidecar)."""
    np.save(path, audio.samples, allow_pickle=False)
    path.with_suffix(".rate").write_text(str(audio.sample_rate))


def load_npy(path: Path) -> Audio:
    rate = int(path.with_suffix(".rate").read_text())
    return Audio(np.load(path, allow_pickle=False), rate)


PCM24_FULL_SCALE = float(1 << 23)


def pcm24_integers(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """(channels, n) float32 samples -> ((n, channels) int32 24-bit samples left-justified, as libsndfile
    takes them; how many were clipped). x * 2**23 rounded: scaling and rounding are exact in float32 and
    both clip bounds are float32 integers, so this gives the float64 route's integers with a fifth of the
    memory traffic (a 3-minute stem would otherwise take ~500 MB of float64 temporaries)."""
    scaled = np.empty(samples.shape[::-1], np.float32)  # (frames, channels): interleaved, as files store it
    np.multiply(samples.T, np.float32(PCM24_FULL_SCALE), out=scaled)
    np.rint(scaled, out=scaled)
    clipped = int(np.count_nonzero(scaled > PCM24_FULL_SCALE - 1)) + int(np.count_nonzero(scaled < -PCM24_FULL_SCALE))
    np.clip(scaled, -PCM24_FULL_SCALE, PCM24_FULL_SCALE - 1, out=scaled)
    pcm = scaled.astype(np.int32)
    pcm <<= 8
    return pcm, clipped


SAVE_BLOCK_FRAMES = 1 << 20  # rounded and written a block at a time: 8 MB of temporaries, not 126 MB a stem


def save_pcm24(audio: Audio, path: Path) -> None:
    """Compact store for the stage cache: 24-bit PCM, FLAC or WAV by `path`'s suffix (docs/cache.md).

    Samples are rounded to the nearest 24-bit step (float32 x * 2**23, rounded: what a 24-bit delivery
    file holds), so what load_pcm24 reads back stores again to the same bytes, and a stage that reads it
    sees the same numbers whether the entry was made just now or long ago. Only for audio that needs no
    headroom: samples over full scale are a bug here (a master past its ceiling), not something to clip."""
    _save_pcm24_to(audio, [path])


def save_stem(audio: Audio, path: Path) -> dict:
    """save_pcm24, and the sha256 and size of the WAV that pcm24_wav will make of the file, from the
    same integers (~0.15 s a 3-minute stem; decoding the FLAC again for them took ~0.7 s). The facts
    say which libsndfile wrote them: another one may write other header bytes (wav_facts_writer)."""
    # written to a file, not memory: 95 MB of page cache a 3-minute stem, while backing and vocals
    # (the render's peak of memory) still hold their other stems
    wav = path.with_name(f".{path.name}.wav")
    try:
        _save_pcm24_to(audio, [path, wav])
        return {"sha256": sha256_file(wav), "bytes": wav.stat().st_size, "writer": wav_facts_writer()}
    finally:
        wav.unlink(missing_ok=True)


@cache
def wav_facts_writer() -> str:
    """What wrote the WAV facts save_stem returns: they hold for a WAV written by the same libraries.
    Besides the versions, the hash of a short stereo 24-bit WAV they write: a build that writes other
    header bytes under the same version number is told apart too."""
    probe = io.BytesIO()
    _write_wav24(np.arange(-2048, 2048, dtype=np.int32).reshape(-1, 2) << 12, 44100, probe)
    return (f"libsndfile {sf.__libsndfile_version__}, soundfile {sf.__version__}, "
            f"probe {hashlib.sha256(probe.getvalue()).hexdigest()[:16]}")


def _save_pcm24_to(audio: Audio, paths: list[Path]) -> None:
    """`audio` as 24-bit PCM into each of `paths` (the format by suffix), block by block: libsndfile
    writes the same bytes as from one array."""
    peak = audio.peak()
    if not peak <= 1.0:  # also NaN
        raise ValueError(f"{paths[0].name}: peak {peak} is over full scale; 24-bit PCM would clip it")
    with ExitStack() as stack:
        files = [stack.enter_context(sf.SoundFile(str(path), "w", audio.sample_rate, audio.channels, "PCM_24",
                                                  format=path.suffix.lstrip(".").upper())) for path in paths]
        for start in range(0, audio.frames, SAVE_BLOCK_FRAMES):
            # +1.0 itself is one step over: clipped to the top step
            pcm, _ = pcm24_integers(audio.samples[:, start : start + SAVE_BLOCK_FRAMES])
            for file in files:
                file.write(pcm)


def _write_wav24(pcm: np.ndarray, rate: int, target: Path | BinaryIO) -> None:
    sf.write(target, pcm, rate, subtype="PCM_24", format="WAV")


def load_pcm24(path: Path) -> Audio:
    """What save_pcm24 stored, as float32 (each sample exactly its 24-bit integer / 2**23)."""
    return read_audio(path)


def pcm24_wav(source: Path, target: Path | BinaryIO) -> None:
    """The 24-bit file save_pcm24 wrote at `source` (a FLAC) as a 24-bit WAV at `target` (a path or a
    binary file), integer to integer: the same bytes release.pcm.write_wav gives the float audio that
    save_pcm24 stored (both round x * 2**23 the same way and write 'fmt ' + 'data' with libsndfile)."""
    info = sf.info(str(source))
    if info.subtype != "PCM_24":  # int32 reads of 16-bit audio would pass, widened: not what we stored
        raise ValueError(f"{Path(source).name} is {info.subtype}, not the 24-bit PCM save_pcm24 writes")
    pcm, rate = sf.read(str(source), dtype="int32", always_2d=True)  # left-justified, as write_wav passes them
    _write_wav24(pcm, rate, target)


def stem_wav_record(source: Path) -> dict:
    """What save_stem returns, for a FLAC it wrote earlier (or with another libsndfile): the sha256 and
    size of the WAV pcm24_wav makes of it, decoded now, in memory (~0.7 s a 3-minute stem)."""
    with io.BytesIO() as wav:
        pcm24_wav(source, wav)
        with wav.getbuffer() as data:
            return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "writer": wav_facts_writer()}


def read_audio(path: Path) -> Audio:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return Audio(np.ascontiguousarray(data.T), int(rate))


def resample(audio: Audio, rate: int) -> Audio:
    """soxr: scipy's resampler is ~70 dB worse (DESIGN.md facts)."""
    if audio.sample_rate == rate:
        return audio

    out = soxr.resample(audio.samples.T, audio.sample_rate, rate, quality="HQ")
    return Audio(np.ascontiguousarray(out.T, dtype=np.float32), rate)


def mono_stem(buffer: np.ndarray, rate: int, out_rate: int, frames: int, peak_dbfs: float) -> Audio:
    """A vocal engine's mono buffer at `rate` -> a stereo stem at `out_rate`, exactly `frames` long,
    its peak at `peak_dbfs` (silence stays silence)."""
    mono = resample(Audio(buffer[None, :].astype(np.float32), rate), out_rate).fit_length(frames).samples[0]
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    gain = 10 ** (peak_dbfs / 20) / peak if peak > 0 else 1.0
    out = np.empty((2, len(mono)), dtype=np.float32)
    out[0] = mono * gain
    out[1] = out[0]
    return Audio(out, out_rate)


def fade_edges(y: np.ndarray, rate: int, seconds: float = 0.005) -> np.ndarray:
    """Fade a mono buffer in and out over `seconds` (in place; returns it): no click where a
    synthesised phrase starts or stops."""
    n = min(int(seconds * rate), len(y) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n)
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return y
