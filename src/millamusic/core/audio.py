"""The `Audio` value passed between stages, and file I/O for it.

Convention, stated once and never guessed from the shape: samples are float32 with
shape ``(channels, frames)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


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
        return float(np.max(np.abs(self.samples))) if self.frames else 0.0


def save_npy(audio: Audio, path: Path) -> None:
    """Lossless store for the stage cache (float32, sample rate in the file name's sidecar)."""
    np.save(path, audio.samples, allow_pickle=False)
    path.with_suffix(".rate").write_text(str(audio.sample_rate))


def load_npy(path: Path) -> Audio:
    rate = int(path.with_suffix(".rate").read_text())
    return Audio(np.load(path, allow_pickle=False), rate)


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
