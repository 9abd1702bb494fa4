"""Plain PCM WAV: dithered quantisation, the delivery WAV writer and its header check; decoding."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path


import numpy as np
import soundfile as sf

from millamusic.core.audio import Audio, pcm24_integers, read_audio
from millamusic.core.errors import ExportError
from millamusic.core.files import atomic_path

log = logging.getLogger(__name__)
C2PA_CHUNK = b"C2PA"  # where c2pa-rs keeps a WAV's signed Content Credentials: after 'data'


# --------------------------------------------------------------------------- PCM


def _quantize(audio: Audio, bits: int) -> np.ndarray:
    """(frames, channels) integers, left-justified in int32 (24-bit) or int16 (16-bit).

    24-bit: plain rounding (its noise floor is ~-144 dBFS; dither buys nothing audible).
    16-bit: TPDF dither of +-1 LSB, seeded, so the same master always gives the same file.
    Samples over full scale are clipped (with a warning) instead of wrapping around.
    """
    if not np.all(np.isfinite(audio.samples)):
        raise ExportError("audio contains NaN or infinite samples; refusing to write it")
    full = float(1 << (bits - 1))
    if bits == 24 and audio.samples.dtype == np.float32:
        return _quantize_24(audio.samples)
    x = np.asarray(audio.samples, dtype=np.float64).T
    scaled = x * full
    if bits == 16:
        rng = np.random.default_rng(0x5EED16)
        scaled = scaled + rng.uniform(-0.5, 0.5, x.shape) + rng.uniform(-0.5, 0.5, x.shape)
    q = np.round(scaled)
    over = int(np.count_nonzero((q > full - 1) | (q < -full)))
    if over:
        log.warning("clipping %d samples over full scale while writing %d-bit PCM", over, bits)
    q = np.clip(q, -full, full - 1)
    if bits == 16:
        return q.astype(np.int16)
    return (q.astype(np.int32) << 8).astype(np.int32)


def _quantize_24(samples: np.ndarray) -> np.ndarray:
    """_quantize's 24-bit case for float32 samples: core.audio.pcm24_integers (what the stage cache's
    24-bit entries hold too), warning when it clipped."""
    pcm, clipped = pcm24_integers(samples)
    if clipped:
        log.warning("clipping %d samples over full scale while writing 24-bit PCM", clipped)
    return pcm


def quantize(audio: Audio, bit_depth: int) -> np.ndarray:
    """The PCM integers write_wav and write_flac store (see _quantize): made once, passed to both
    as `pcm=`, a master is quantised (and its 16-bit dither drawn) once for the two files."""
    if bit_depth not in (16, 24):
        raise ExportError(f"bit_depth {bit_depth} is not supported; use 24 (delivery) or 16 (CD)")
    return _quantize(audio, bit_depth)


def pcm_for(audio: Audio, bit_depth: int, pcm: np.ndarray | None) -> np.ndarray:
    """What write_wav/write_flac store: `pcm` when given (from `quantize`, checked to be that bit
    depth's integers for this audio), else `audio` quantised now."""
    if pcm is None:
        return quantize(audio, bit_depth)
    want = np.int16 if bit_depth == 16 else np.int32
    if bit_depth not in (16, 24) or pcm.dtype != want or pcm.shape != (audio.frames, audio.channels):
        raise ExportError(f"pcm= is {pcm.dtype} {pcm.shape}, not quantize(audio, {bit_depth}) of this audio "
                          f"({np.dtype(want).name} ({audio.frames}, {audio.channels}))")
    return pcm


def write_wav(audio: Audio, path: str | os.PathLike, bit_depth: int = 24, *, pcm: np.ndarray | None = None) -> Path:
    """Delivery WAV: WAVE_FORMAT_PCM, 'fmt ' + 'data' only, no tags, nothing after the data."""

    data = pcm_for(audio, bit_depth, pcm)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, audio.sample_rate, subtype=f"PCM_{bit_depth}", format="WAV")
        problems = check_wav_delivery(tmp)
        if problems:
            raise ExportError(f"{path}: the WAV writer produced a non-delivery file: " + "; ".join(problems))
    return path


def check_wav_delivery(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    bit_depth: int | None = None,
) -> list[str]:
    """Problems that make `path` unfit as a delivery WAV; [] when it is fine.

    Parses the RIFF chunks itself: RIFF/WAVE header and size, exactly one 'fmt ' (16 bytes,
    format tag 1 = WAVE_FORMAT_PCM, consistent block align and byte rate) followed by exactly
    one 'data' chunk, no other chunks, nothing after 'data' but one 'C2PA' chunk (the signed Content
    Credentials, release.provenance), no odd sizes, no truncation.
    The keyword arguments, when given, are checked too.
    """
    path = Path(path)
    problems: list[str] = []
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        return [f"cannot read {path}: {exc}"]
    with fh:
        if size < 12:
            return [f"file is {size} bytes: too short for a RIFF/WAVE header"]
        riff, riff_size, wave = struct.unpack("<4sI4s", fh.read(12))
        if riff != b"RIFF":
            return [f"not a RIFF file (starts with {riff!r}; RF64/RIFX/others are not accepted)"]
        if wave != b"WAVE":
            return [f"RIFF form type is {wave!r}, not b'WAVE'"]
        if riff_size + 8 != size:
            problems.append(f"RIFF size field says {riff_size + 8} bytes of file, the file has {size}")
        chunks: list[tuple[bytes, int, int]] = []  # (id, offset, size)
        fmt: bytes | None = None
        pos = 12
        while pos < size:
            if size - pos < 8:
                problems.append(f"{size - pos} stray byte(s) at offset {pos} after the last chunk")
                break
            fh.seek(pos)
            cid, csize = struct.unpack("<4sI", fh.read(8))
            chunks.append((cid, pos, csize))
            end = pos + 8 + csize
            if end > size:
                problems.append(
                    f"chunk {cid!r} at offset {pos} claims {csize} bytes but only {size - pos - 8} remain "
                    "(truncated file)"
                )
                break
            if csize % 2 and cid != C2PA_CHUNK:  # c2pa-rs writes an odd-sized manifest with RIFF's pad byte
                problems.append(f"chunk {cid!r} at offset {pos} has odd size {csize}")
            if cid == b"fmt " and fmt is None:
                fmt = fh.read(min(csize, 64))
            pos = end + (csize % 2)
    ids = [c[0] for c in chunks]
    for cid, offset, csize in chunks:
        if cid not in (b"fmt ", b"data", C2PA_CHUNK):
            problems.append(
                f"unexpected chunk {cid!r} ({csize} bytes) at offset {offset}: a delivery WAV holds only "
                "'fmt ' and 'data', and its Content Credentials in one 'C2PA' chunk (no LIST/INFO, id3, bext, PEAK...)"
            )
    if ids.count(C2PA_CHUNK) > 1:
        problems.append(f"{ids.count(C2PA_CHUNK)} 'C2PA' chunks (a signed WAV has one)")
    for needed in (b"fmt ", b"data"):
        count = ids.count(needed)
        if count == 0:
            problems.append(f"no {needed!r} chunk")
        elif count > 1:
            problems.append(f"{count} {needed!r} chunks (need exactly one)")
    if b"data" in ids:
        first_data = ids.index(b"data")
        after = [(cid, off) for cid, off, _ in chunks[first_data + 1 :] if cid != C2PA_CHUNK]
        for cid, off in after:
            problems.append(f"chunk {cid!r} at offset {off} comes after the data chunk; only the 'C2PA' chunk may "
                            "follow 'data'")
        if b"fmt " in ids and ids.index(b"fmt ") > first_data:
            problems.append("the 'fmt ' chunk comes after the 'data' chunk")
    if fmt is not None:
        fmt_size = next(c[2] for c in chunks if c[0] == b"fmt ")
        if len(fmt) < 16:
            problems.append(f"'fmt ' chunk is {len(fmt)} bytes; PCM needs 16")
        else:
            tag, ch, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", fmt[:16])
            if tag != 1:
                name = {0xFFFE: "WAVE_FORMAT_EXTENSIBLE", 3: "WAVE_FORMAT_IEEE_FLOAT"}.get(tag, "")
                problems.append(f"format tag is 0x{tag:04X} {name}".rstrip() + "; a delivery WAV needs 1 (WAVE_FORMAT_PCM)")
            if fmt_size != 16:
                problems.append(f"'fmt ' chunk is {fmt_size} bytes; plain PCM has exactly 16")
            if bits not in (16, 24):
                problems.append(f"{bits} bits per sample; deliver 24 (or 16)")
            if align != ch * ((bits + 7) // 8):
                problems.append(f"block align {align} does not match {ch} channels x {bits} bits")
            if byte_rate != rate * align:
                problems.append(f"byte rate {byte_rate} is not sample rate {rate} x block align {align}")
            if sample_rate is not None and rate != sample_rate:
                problems.append(f"sample rate is {rate} Hz, expected {sample_rate}")
            if channels is not None and ch != channels:
                problems.append(f"{ch} channels, expected {channels}")
            if bit_depth is not None and bits != bit_depth:
                problems.append(f"{bits}-bit, expected {bit_depth}-bit")
            data = [c for c in chunks if c[0] == b"data"]
            if data and align and data[0][2] % align:
                problems.append(f"data chunk size {data[0][2]} is not a whole number of {align}-byte frames")
            if data and data[0][2] == 0:
                problems.append("data chunk is empty")
    return problems


def decode(path: str | os.PathLike) -> Audio:
    """Any delivery file (WAV, FLAC, MP3) as float32 Audio, through libsndfile."""

    try:
        return read_audio(Path(path))
    except (RuntimeError, OSError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
        raise ExportError(f"{path}: cannot decode it ({exc})") from exc
