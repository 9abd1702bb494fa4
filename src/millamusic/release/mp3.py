"""Tagged MP3 (CBR or VBR) through the LAME that pedalboard bundles."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from millamusic.core.audio import Audio
from millamusic.core.errors import ExportError

if TYPE_CHECKING:
    from millamusic.dsp.loudness import LoudnessReport  # for the annotation only: master is imported when measuring
import subprocess
import tempfile

from millamusic.core.files import atomic_path
from millamusic.dsp.loudness import measure
from millamusic.release.lyric_files import MP3_MODES, MP3_TRIM_TRIES
from millamusic.release.pcm import decode
from millamusic.release.tags import ReleaseTags, id3_tags

_LAME_CBR = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def _mp3_quality(bitrate: str | int, mode: str | None) -> str:
    if mode is not None:
        if mode not in MP3_MODES:
            raise ExportError(f"mp3 mode {mode!r} is unknown; use 'cbr320' or 'v0'")
        return MP3_MODES[mode]
    text = str(bitrate).strip().lower()
    if text in ("v0", "vbr"):
        return "V0"
    if text.isdigit() and int(text) in _LAME_CBR:
        return f"{int(text)} kbps"
    raise ExportError(f"mp3 bitrate {bitrate!r} is not a LAME CBR rate ({', '.join(map(str, _LAME_CBR))}) or 'v0'")


def write_mp3(
    audio: Audio,
    path: str | os.PathLike,
    tags: ReleaseTags,
    bitrate: str | int = "320",
    *,
    mode: str | None = None,
) -> Path:
    """MP3 via pedalboard's bundled LAME, then ID3v2.4 tags (no ID3v1).

    mode="cbr320" (the default, via bitrate="320") is 320 kbps CBR; mode="v0" is LAME -V0 VBR
    (~245 kbps). `bitrate` may also name any LAME CBR rate.
    """
    quality = _mp3_quality(bitrate, mode)
    path = Path(path)
    with atomic_path(path) as tmp:
        _encode_mp3(audio, tmp, quality, shown=path)
        id3_tags(tags).save(str(tmp), v2_version=4, v1=0)
    return path


def mp3_bytes(audio: Audio, bitrate: str | int = "128") -> bytes:
    """`audio` as an untagged MP3 (pedalboard's LAME), in memory: previews, not deliveries."""

    with tempfile.TemporaryDirectory(prefix="millamusic-mp3-") as folder:
        path = Path(folder) / "audio.mp3"
        _encode_mp3(audio, path, _mp3_quality(bitrate, None), shown=path)
        return path.read_bytes()


def _encode_mp3(audio: Audio, path: Path, quality: str, *, shown: Path) -> None:
    """pedalboard's LAME, in a child process (millamusic.release.mp3_encoder: it holds the GIL while it
    encodes, so MP3s on threads would take turns); this thread waits without holding it."""

    samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
    command = [sys.executable, "-m", "millamusic.release.mp3_encoder", str(audio.sample_rate), str(audio.channels),
               quality, str(path)]
    done = subprocess.run(command, input=samples.tobytes(), capture_output=True, check=False)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ExportError(f"{shown}: MP3 encoding failed ({quality}, {audio.sample_rate} Hz): "
                          f"{said[-1] if said else f'the encoder exited with {done.returncode}'}")


@dataclass(frozen=True)
class LossyWrite:
    trim_db: float  # <= 0: how much the input was lowered to keep the decoded true peak down
    loudness: LoudnessReport  # of the file decoded back


def write_mp3_under(
    audio: Audio,
    path: str | os.PathLike,
    tags: ReleaseTags,
    *,
    mode: str,
    max_true_peak_dbtp: float,
) -> LossyWrite:
    """Write an MP3 whose decoded true peak is at or under `max_true_peak_dbtp`; returns the trim
    (dB, <= 0) that took and the decoded file's loudness.

    The encoder's filtering and quantisation can put the decoded file's true peak a few tenths
    of a dB over the master's (DESIGN.md: AAC up to ~1.5 dB). Each try decodes the MP3 and
    measures it; an overshoot lowers the input by the overshoot plus 0.1 dB and encodes again.
    The trim lowers the MP3's loudness by as much, which release.json records per file.
    """

    path = Path(path)
    trim = 0.0
    for _ in range(MP3_TRIM_TRIES):
        scaled = audio if trim == 0.0 else Audio((audio.samples * 10.0 ** (trim / 20.0)).astype(np.float32),
                                                 audio.sample_rate)
        write_mp3(scaled, path, tags, mode=mode)
        loudness = measure(decode(path))
        peak = loudness.true_peak_dbtp
        if peak <= max_true_peak_dbtp:
            return LossyWrite(trim, loudness)
        tried = trim
        trim -= (peak - max_true_peak_dbtp) + 0.1
    path.unlink(missing_ok=True)
    raise ExportError(
        f"{path}: the MP3 ({mode}) still decodes to {peak:.2f} dBTP with {tried:+.2f} dB of trim, over the "
        f"{max_true_peak_dbtp:.1f} dBTP it may reach; the master is probably far over its own ceiling: master it again"
    )
