"""Delivery files: plain PCM WAV, tagged FLAC and MP3, synced lyrics (LRC, TTML, ID3 SYLT), cover checks.

Every file is written atomically (temp file in the same folder, fsync, os.replace), so a crash
or an error never leaves a half-written release file behind, and an existing file is only ever
replaced by a complete one.

Every tagged file carries the AI disclosure: human-readable text, a CONTAINS_AI level, the IPTC
digital source type and the per-stage credits as JSON.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import struct
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .audio import Audio
from .cache import owner_tag
from .identifiers import normalise_isrc, normalise_upc
from .errors import ExportError

if TYPE_CHECKING:
    from .master import LoudnessReport  # for the annotation only: master is imported when measuring

log = logging.getLogger(__name__)

CONTAINS_AI_VALUES = ("All", "Partly", "None")
IPTC_DIGITAL_SOURCE_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"
COVER_MIN_PX = 1400

# --------------------------------------------------------------------------- atomic writes


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened; os.replace is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success fsync it and os.replace it onto `path`.

    The temp name keeps the real suffix (".mp3", ".flac"...) so encoders that pick the format
    from the extension work. On any exception the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{owner_tag()}.{secrets.token_hex(4)}.tmp{path.suffix}"
    # O_EXCL: never clobber someone else's temp file; mode 0o666 & ~umask like a normal file
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def replace_folder(new: str | os.PathLike, final: str | os.PathLike) -> None:
    """Put the finished folder `new` at `final`, replacing the folder there (if any) in one step.

    Anyone looking at `final` sees the old folder or the new one, each whole, never a mix. On
    Linux the two are swapped with renameat2(RENAME_EXCHANGE), so `final` is never missing;
    where that is not available the old folder is renamed aside first, leaving a moment with no
    folder at `final` (still never a mix). The old folder is deleted afterwards. `new` must lie
    on the same file system as `final` (beside it). Writers racing for `final`: the last one wins.
    """
    new, final = Path(new), Path(final)
    retired: list[Path] = []
    for _ in range(100):
        try:
            os.rename(new, final)  # nothing at `final` yet (or an empty folder, which POSIX replaces)
            break
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if _exchange(new, final):  # `new` now names the old folder
            retired.append(new)
            break
        old = final.with_name(f".{final.name}.tmp-old-{owner_tag()}-{secrets.token_hex(4)}")  # swept if we die
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue  # another writer moved it away first
        retired.append(old)
    else:
        raise OSError(errno.EBUSY, "other writers keep replacing this folder", str(final))
    _fsync_dir(final.parent)
    for old in retired:
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100  # <linux/fs.h>, <fcntl.h>


@functools.lru_cache(maxsize=1)
def _renameat2():
    """glibc's renameat2, or None (not Linux, no glibc 2.28+)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` atomically; False where the OS or file system cannot (or `b` is gone)."""
    import ctypes

    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
        return False
    raise OSError(code, os.strerror(code), str(b))


# --------------------------------------------------------------------------- tags


@dataclass(frozen=True, kw_only=True)
class ReleaseTags:
    title: str
    artist: str
    disclosure: str  # human-readable AI disclosure; required, never empty
    contains_ai: str  # "All" | "Partly" | "None"
    digital_source_type: str  # IPTC URI, e.g. .../digitalsourcetype/compositeSynthetic
    ai_credits_json: str  # JSON text of the per-stage credits list
    album: str | None = None
    album_artist: str | None = None
    track_number: int | None = None
    track_total: int | None = None
    disc_number: int | None = None
    year: int | None = None
    genre: str | None = None
    isrc: str | None = None  # stored without hyphens, upper case
    upc: str | None = None  # the release's UPC-A / EAN-13 barcode, digits only
    composer: str | None = None
    lyricist: str | None = None
    copyright: str | None = None
    label: str | None = None
    producer: str | None = None
    cover_image: bytes | None = None
    cover_mime: str | None = None  # "image/jpeg" | "image/png"
    lyrics_text: str | None = None  # unsynced
    lyrics_language: str = "eng"  # ISO 639-2, for ID3 USLT/SYLT
    synced_lyrics: tuple[tuple[float, str], ...] = ()  # (seconds, line), for ID3 SYLT
    # (seconds, text) per sung word, text already in SYLT form (see sylt_words()): " word" starts a
    # new word, "\nword" a new line. When given, the SYLT frame is word by word instead of by line.
    synced_words: tuple[tuple[float, str], ...] = ()
    # LRC text of the same timing, for FLAC's SYNCEDLYRICS comment (Vorbis has no binary SYLT)
    synced_lrc: str | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("title", "artist", "disclosure"):
            if not str(getattr(self, name) or "").strip():
                problems.append(f"{name} is empty")
        if self.contains_ai not in CONTAINS_AI_VALUES:
            problems.append(f"contains_ai is {self.contains_ai!r}; use one of {', '.join(CONTAINS_AI_VALUES)}")
        if not self.digital_source_type.startswith(IPTC_DIGITAL_SOURCE_PREFIX):
            problems.append(
                f"digital_source_type {self.digital_source_type!r} is not an IPTC digital source type URI "
                f"(expected {IPTC_DIGITAL_SOURCE_PREFIX}<term>)"
            )
        try:
            json.loads(self.ai_credits_json)
        except (TypeError, ValueError) as exc:
            problems.append(f"ai_credits_json is not valid JSON ({exc})")
        for name in ("track_number", "track_total", "disc_number"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                problems.append(f"{name} is {value!r}; use a whole number >= 1 or None")
        if self.track_number and self.track_total and self.track_number > self.track_total:
            problems.append(f"track_number {self.track_number} is more than track_total {self.track_total}")
        if self.year is not None and not (isinstance(self.year, (int, np.integer)) and 1000 <= self.year <= 9999):
            problems.append(f"year is {self.year!r}; use a four-digit year or None")
        if self.isrc is not None:
            try:
                object.__setattr__(self, "isrc", normalise_isrc(self.isrc))
            except ValueError as error:
                problems.append(f"isrc: {error}")
        if self.upc is not None:
            try:
                object.__setattr__(self, "upc", normalise_upc(self.upc))
            except ValueError as error:
                problems.append(f"upc: {error}")
        if (self.cover_image is None) != (self.cover_mime is None):
            problems.append("cover_image and cover_mime must be given together")
        if self.cover_mime is not None and self.cover_mime not in ("image/jpeg", "image/png"):
            problems.append(f"cover_mime is {self.cover_mime!r}; use image/jpeg or image/png")
        if not re.fullmatch(r"[a-z]{3}", self.lyrics_language):
            problems.append(f"lyrics_language {self.lyrics_language!r} is not an ISO 639-2 code like 'eng'")
        object.__setattr__(self, "synced_lyrics", tuple((float(t), str(s)) for t, s in self.synced_lyrics))
        last = -math.inf
        for t, _ in self.synced_lyrics:
            if not math.isfinite(t) or t < 0 or t <= last:
                problems.append(f"synced_lyrics times must be >= 0 and strictly increasing (got {t} after {last})")
                break
            last = t
        object.__setattr__(self, "synced_words", tuple((float(t), str(s)) for t, s in self.synced_words))
        last = -math.inf
        for number, (t, text) in enumerate(self.synced_words, start=1):
            if not math.isfinite(t) or t < 0 or t < last:
                after = f" (the entry before is at {last} s)" if math.isfinite(last) else ""
                problems.append(
                    f"synced_words entry {number} ({text!r}) is at {t} s{after}; word times must be >= 0 and "
                    "never decrease (build them with sylt_words() from checked TimedLines)"
                )
                break
            if not text.strip():
                problems.append(f"synced_words entry {number} at {t} s has no text")
                break
            last = t
        if problems:
            raise ExportError("bad release tags: " + "; ".join(problems))

    @property
    def track_text(self) -> str | None:
        if self.track_number is None:
            return None
        return f"{self.track_number}/{self.track_total}" if self.track_total else str(self.track_number)

    def vorbis_comments(self) -> dict[str, str]:
        """FLAC/Vorbis comment fields, None fields left out."""
        fields = {
            "TITLE": self.title,
            "ARTIST": self.artist,
            "ALBUM": self.album,
            "ALBUMARTIST": self.album_artist,
            "TRACKNUMBER": None if self.track_number is None else str(self.track_number),
            "TRACKTOTAL": None if self.track_total is None else str(self.track_total),
            "DISCNUMBER": None if self.disc_number is None else str(self.disc_number),
            "DATE": None if self.year is None else str(self.year),
            "GENRE": self.genre,
            "ISRC": self.isrc,
            "BARCODE": self.upc,  # MusicBrainz Picard's name for the UPC/EAN
            "COMPOSER": self.composer,
            "LYRICIST": self.lyricist,
            "COPYRIGHT": self.copyright,
            "LABEL": self.label,
            "ORGANIZATION": self.label,
            "PRODUCER": self.producer,
            "LYRICS": self.lyrics_text,
            "SYNCEDLYRICS": self.synced_lrc,
            # Shown by ordinary players, so the disclosure is visible without special tools.
            "COMMENT": self.disclosure,
            "AI_DISCLOSURE": self.disclosure,
            "CONTAINS_AI": self.contains_ai,
            "DIGITAL_SOURCE_TYPE": self.digital_source_type,
            "AI_CREDITS": self.ai_credits_json,
        }
        return {k: v for k, v in fields.items() if v is not None}


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
        return _quantize_24(audio.samples, full)
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


def _quantize_24(samples: np.ndarray, full: float) -> np.ndarray:
    """_quantize's 24-bit case for float32 samples, in place on one interleaved float32 copy: the
    same integers as the float64 route (scaling by 2**23 and rounding are exact in float32, and
    both clip bounds are float32 integers) with a fifth of the memory traffic; a 3-minute stem
    would otherwise take ~500 MB of float64 temporaries."""
    scaled = np.empty(samples.shape[::-1], np.float32)  # (frames, channels): interleaved, as WAV stores it
    np.multiply(samples.T, np.float32(full), out=scaled)
    np.rint(scaled, out=scaled)
    over = int(np.count_nonzero(scaled > full - 1)) + int(np.count_nonzero(scaled < -full))
    if over:
        log.warning("clipping %d samples over full scale while writing 24-bit PCM", over)
    np.clip(scaled, -full, full - 1, out=scaled)
    q = scaled.astype(np.int32)
    q <<= 8
    return q


def quantize(audio: Audio, bit_depth: int) -> np.ndarray:
    """The PCM integers write_wav and write_flac store (see _quantize): made once, passed to both
    as `pcm=`, a master is quantised (and its 16-bit dither drawn) once for the two files."""
    if bit_depth not in (16, 24):
        raise ExportError(f"bit_depth {bit_depth} is not supported; use 24 (delivery) or 16 (CD)")
    return _quantize(audio, bit_depth)


def _pcm_for(audio: Audio, bit_depth: int, pcm: np.ndarray | None) -> np.ndarray:
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
    import soundfile as sf

    data = _pcm_for(audio, bit_depth, pcm)
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
    one 'data' chunk, no other chunks, nothing after 'data', no odd sizes, no truncation.
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
            if csize % 2:
                problems.append(f"chunk {cid!r} at offset {pos} has odd size {csize}")
            if cid == b"fmt " and fmt is None:
                fmt = fh.read(min(csize, 64))
            pos = end + (csize % 2)
    ids = [c[0] for c in chunks]
    for cid, offset, csize in chunks:
        if cid not in (b"fmt ", b"data"):
            problems.append(
                f"unexpected chunk {cid!r} ({csize} bytes) at offset {offset}: a delivery WAV holds only "
                "'fmt ' and 'data' (no LIST/INFO, id3, bext, PEAK...)"
            )
    for needed in (b"fmt ", b"data"):
        count = ids.count(needed)
        if count == 0:
            problems.append(f"no {needed!r} chunk")
        elif count > 1:
            problems.append(f"{count} {needed!r} chunks (need exactly one)")
    if b"data" in ids:
        first_data = ids.index(b"data")
        after = [(cid, off) for cid, off, _ in chunks[first_data + 1 :]]
        for cid, off in after:
            problems.append(f"chunk {cid!r} at offset {off} comes after the data chunk; nothing may follow 'data'")
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


def write_flac(audio: Audio, path: str | os.PathLike, tags: ReleaseTags, bit_depth: int = 24, *,
               pcm: np.ndarray | None = None) -> Path:
    """FLAC (24-bit, or 16-bit dithered like the WAV) with Vorbis comments and a front-cover Picture block."""
    import soundfile as sf
    from mutagen.flac import FLAC, Picture

    data = _pcm_for(audio, bit_depth, pcm)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, audio.sample_rate, subtype=f"PCM_{bit_depth}", format="FLAC")
        flac = FLAC(tmp)
        if flac.tags is None:
            flac.add_tags()
        flac.tags.clear()
        for key, value in tags.vorbis_comments().items():
            flac.tags[key] = [value]
        flac.clear_pictures()
        if tags.cover_image is not None:
            pic = Picture()
            pic.type = 3  # front cover
            pic.mime = tags.cover_mime
            pic.desc = "Front cover"
            pic.width, pic.height, pic.depth = _image_geometry(tags.cover_image)
            pic.data = tags.cover_image
            flac.add_picture(pic)
        flac.save()
    return path


def _image_geometry(data: bytes) -> tuple[int, int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        depth = {"1": 1, "L": 8, "P": 8, "RGB": 24, "RGBA": 32, "CMYK": 32, "LA": 16, "I;16": 16}.get(im.mode, 24)
        return im.width, im.height, depth


# --------------------------------------------------------------------------- MP3

_MP3_MODES = {"cbr320": "320 kbps", "v0": "V0"}
_LAME_CBR = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def _mp3_quality(bitrate: str | int, mode: str | None) -> str:
    if mode is not None:
        if mode not in _MP3_MODES:
            raise ExportError(f"mp3 mode {mode!r} is unknown; use 'cbr320' or 'v0'")
        return _MP3_MODES[mode]
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
        _id3(tags).save(str(tmp), v2_version=4, v1=0)
    return path


def mp3_bytes(audio: Audio, bitrate: str | int = "128") -> bytes:
    """`audio` as an untagged MP3 (pedalboard's LAME), in memory: previews, not deliveries."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="millamusic-mp3-") as folder:
        path = Path(folder) / "audio.mp3"
        _encode_mp3(audio, path, _mp3_quality(bitrate, None), shown=path)
        return path.read_bytes()


def _encode_mp3(audio: Audio, path: Path, quality: str, *, shown: Path) -> None:
    """pedalboard's LAME, in a child process (millamusic.mp3_encoder: it holds the GIL while it
    encodes, so MP3s on threads would take turns); this thread waits without holding it."""
    import subprocess

    samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
    command = [sys.executable, "-m", "millamusic.mp3_encoder", str(audio.sample_rate), str(audio.channels),
               quality, str(path)]
    done = subprocess.run(command, input=samples.tobytes(), capture_output=True, check=False)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ExportError(f"{shown}: MP3 encoding failed ({quality}, {audio.sample_rate} Hz): "
                          f"{said[-1] if said else f'the encoder exited with {done.returncode}'}")


MP3_TRIM_TRIES = 4


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
    from .master import measure

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


def decode(path: str | os.PathLike) -> Audio:
    """Any delivery file (WAV, FLAC, MP3) as float32 Audio, through libsndfile."""
    from .audio import read_audio

    try:
        return read_audio(Path(path))
    except (RuntimeError, OSError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
        raise ExportError(f"{path}: cannot decode it ({exc})") from exc


def _id3(tags: ReleaseTags):
    from mutagen.id3 import (
        APIC, COMM, ID3, SYLT, TALB, TCOM, TCON, TCOP, TDRC, TEXT, TIPL, TIT2, TPE1, TPE2, TPOS,
        TPUB, TRCK, TSRC, TXXX, USLT, Encoding, PictureType,
    )

    utf8 = Encoding.UTF8
    id3 = ID3()
    text_frames = [
        (TIT2, tags.title),
        (TPE1, tags.artist),
        (TPE2, tags.album_artist),
        (TALB, tags.album),
        (TRCK, tags.track_text),
        (TPOS, None if tags.disc_number is None else str(tags.disc_number)),
        (TDRC, None if tags.year is None else str(tags.year)),
        (TCON, tags.genre),
        (TSRC, tags.isrc),
        (TCOM, tags.composer),
        (TEXT, tags.lyricist),
        (TCOP, tags.copyright),
        (TPUB, tags.label),
    ]
    for frame, value in text_frames:
        if value is not None:
            id3.add(frame(encoding=utf8, text=[value]))
    if tags.producer is not None:
        id3.add(TIPL(encoding=utf8, people=[["producer", tags.producer]]))
    if tags.cover_image is not None:
        id3.add(APIC(encoding=utf8, mime=tags.cover_mime, type=PictureType.COVER_FRONT, desc="Front cover",
                     data=tags.cover_image))
    lang = tags.lyrics_language
    if tags.lyrics_text is not None:
        id3.add(USLT(encoding=utf8, lang=lang, desc="", text=tags.lyrics_text))
    # format 2 = absolute milliseconds, type 1 = lyrics; one SYLT per language and description,
    # so word timing (when there is any) replaces the line timing rather than adding a second frame.
    entries = tags.synced_words or tags.synced_lyrics
    if entries:
        synced = [(text, int(round(t * 1000))) for t, text in entries]
        id3.add(SYLT(encoding=utf8, lang=lang, format=2, type=1, desc="", text=synced))
    id3.add(COMM(encoding=utf8, lang="eng", desc="", text=[tags.disclosure]))
    for desc, value in (
        ("AI_DISCLOSURE", tags.disclosure),
        ("CONTAINS_AI", tags.contains_ai),
        ("DIGITAL_SOURCE_TYPE", tags.digital_source_type),
        ("AI_CREDITS", tags.ai_credits_json),
        ("BARCODE", tags.upc),
    ):
        if value is not None:
            id3.add(TXXX(encoding=utf8, desc=desc, text=[value]))
    return id3


# --------------------------------------------------------------------------- cover


@dataclass(frozen=True)
class CoverCheck:
    """What the stores' cover rules say of an image: JPEG or PNG, square, at least COVER_MIN_PX."""
    format: str | None  # PIL's name ("JPEG", "PNG", "GIF"...); None when unreadable
    width: int
    height: int
    mime: str | None  # "image/jpeg" | "image/png" when the format is one the stores take
    problems: tuple[tuple[str, str], ...]  # (what is wrong, "is 1600x1400 px; ...", the fix)


def inspect_cover(data: bytes) -> CoverCheck:
    """The cover rules, applied to image bytes; one place for the renderer and `millamusic check`.
    Remembered by content: a render checks its cover when the spec loads and again for the tags
    (decoding a 3000x3000 JPEG is ~40 ms)."""
    digest = hashlib.sha256(data).digest()
    if digest not in _COVER_CHECKS:
        _COVER_CHECKS[digest] = _inspect_cover(data)
    return _COVER_CHECKS[digest]


_COVER_CHECKS: dict[bytes, CoverCheck] = {}  # sha256 of the image -> its check (small: no pixels kept)


def _inspect_cover(data: bytes) -> CoverCheck:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
            im.load()  # catches truncated files
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return CoverCheck(None, 0, 0, None, ((f"is not a readable image ({exc})", "export it again as JPEG or PNG"),))
    mime = {"JPEG": "image/jpeg", "PNG": "image/png"}.get(fmt or "")
    problems = []
    if mime is None:
        problems.append((f"is {fmt or 'an unknown format'} ({w}x{h} px); stores take JPEG or PNG",
                         "convert it to JPEG (RGB, quality 90+) or PNG"))
    if w != h:
        problems.append((f"is {w}x{h} px ({fmt}), not square",
                         f"crop it to {min(w, h)}x{min(w, h)} (or a larger square), at least "
                         f"{COVER_MIN_PX}x{COVER_MIN_PX}; 3000x3000 is best"))
    if min(w, h) < COVER_MIN_PX:
        problems.append((f"is {w}x{h} px ({fmt}), under the {COVER_MIN_PX}x{COVER_MIN_PX} stores need",
                         "render or export the artwork at 3000x3000 (upscaling a small image looks soft)"))
    return CoverCheck(fmt, w, h, mime, tuple(problems))


def validate_cover(path: str | os.PathLike) -> tuple[bytes, str]:
    """Check a cover image for the stores (`inspect_cover`); returns (bytes, mime) or raises
    ExportError with the first problem and its fix."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cover image {path} cannot be read ({exc.strerror or exc}). Fix: check the cover path in the spec") from exc
    check = inspect_cover(data)
    if check.problems:
        what, fix = check.problems[0]
        raise ExportError(f"cover image {path} {what}. Fix: {fix}")
    return data, check.mime


# --------------------------------------------------------------------------- timed lyrics
#
# One timed source, three renderings: LRC (line or A2 "enhanced" word tags), TTML (as Apple Music
# serves word-synced lyrics) and ID3 SYLT. Times are seconds from the start of the master, as sung.


@dataclass(frozen=True)
class TimedWord:
    """One sung word (or syllable): its text as written in the line, start and end in seconds."""

    text: str
    start: float
    end: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.text))
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))


@dataclass(frozen=True)
class TimedLine:
    """One sung lyric line: its text, start and end in seconds, the timed words in sung order and
    the section it belongs to ("Verse 1"; consecutive lines of one section share a TTML <div>).

    Each word's text must appear in the line text, in order; the writers print the line's own text
    split at the word starts, so punctuation stays where the lyric sheet put it ("Hello," "world!").
    The values are checked by the writers (see timed_lines_problems), which know the line numbers.
    """

    text: str
    start: float
    end: float
    words: tuple[TimedWord, ...] = ()
    section: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.text))
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))
        object.__setattr__(self, "words", tuple(self.words))
        object.__setattr__(self, "section", str(self.section))


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _bad_char(text: str) -> str | None:
    """The first character that has no place in a lyric line (line breaks, other control characters)."""
    for ch in text:
        if ord(ch) < 32 or ch in "\x7f\u2028\u2029" or 0xFFFE <= ord(ch) <= 0xFFFF or 0xD800 <= ord(ch) <= 0xDFFF:
            return ch
    return None


def _describe_char(ch: str) -> str:
    return {"\n": "a line break", "\r": "a line break (CR)", "\u2028": "a line separator"}.get(ch, f"control character U+{ord(ch):04X}")


def _find_word(text: str, word: str, cursor: int) -> int:
    """Where `word` starts in `text` at or after `cursor`, preferring a start of a word; -1 if absent."""
    first = at = text.find(word, cursor)
    while at >= 0:
        if at == cursor or not text[at - 1].isalnum():
            return at
        at = text.find(word, at + 1)
    return first


def _word_positions(text: str, words: Sequence[TimedWord]) -> list[int] | int:
    """Start of each word in `text`, in order; or the index of the first word that is not there."""
    positions: list[int] = []
    cursor = 0
    for index, word in enumerate(words):
        at = _find_word(text, word.text, cursor)
        if at < 0:
            return index
        positions.append(at)
        cursor = at + len(word.text)
    return positions


def _pieces(line: TimedLine) -> list[tuple[str, bool]]:
    """(display text, space before it) per word: the line text cut at each word's start.

    Text before the first word joins the first word; opening marks glued to a word ("(oh", "“Run")
    go with it; other text after a word (",", "!", a lone "&") stays with the word before; a space
    is printed only where the line has whitespace, so syllables of one word join up.
    """
    text = line.text.strip()
    positions = _word_positions(text, line.words)
    if isinstance(positions, int):  # timed_lines_problems reports this before any writer gets here
        raise ExportError(f"word {line.words[positions].text!r} is not in the line {line.text!r}")
    cuts = [0]
    for index in range(1, len(positions)):
        at = positions[index]
        previous_end = positions[index - 1] + len(line.words[index - 1].text)
        while at > previous_end and not text[at - 1].isspace():
            at -= 1  # back to the start of the word's token, never into the previous word
        cuts.append(at)
    out: list[tuple[str, bool]] = []
    space_before = False
    for index, begin in enumerate(cuts):
        stop = cuts[index + 1] if index + 1 < len(cuts) else len(text)
        chunk = text[begin:stop]
        piece = chunk.rstrip()
        out.append((piece, space_before))
        space_before = len(piece) < len(chunk)
    return out


def timed_lines_problems(lines: Sequence[TimedLine]) -> list[str]:
    """Every problem in `lines`, one message each naming the line number, its text and the fix; [] if fine.

    Rules (compared in whole milliseconds, the precision the files carry): finite times, start >= 0,
    end >= start; lines start strictly one after another; words inside their line, in sung order,
    not overlapping, each found in the line text; no line breaks or control characters in any text.
    """
    problems: list[str] = []
    previous: tuple[int, float] | None = None  # (number, start) of the previous line with a good start
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, TimedLine):
            problems.append(f"line {number} is a {type(line).__name__}, not a TimedLine")
            continue
        where = f"line {number} ({line.text!r})"
        text = line.text.strip()
        if not text:
            problems.append(f"{where} has no text. Fix: drop the line or give it the sung words")
        bad = _bad_char(line.text)
        if bad is not None:
            fix = "split it into one TimedLine per sung line" if bad in "\r\n\u2028" else "remove it"
            problems.append(f"{where} contains {_describe_char(bad)}. Fix: {fix}")
        times_ok = True
        for name in ("start", "end"):
            value = getattr(line, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{where} has {name} time {value!r}; times must be finite seconds >= 0. "
                                "Fix: take the time from the rendered vocal, not a failed alignment")
                times_ok = False
        if times_ok and _ms(line.end) < _ms(line.start):
            problems.append(f"{where} ends at {line.end:.3f} s, before it starts at {line.start:.3f} s. "
                            "Fix: end the line at its last word's end")
        if times_ok and math.isfinite(line.start):
            if previous is not None and _ms(line.start) <= _ms(previous[1]):
                problems.append(
                    f"{where} starts at {line.start:.3f} s, not after line {previous[0]} (at {previous[1]:.3f} s). "
                    "Fix: give the lines in sung order, each starting after the one before"
                )
            previous = (number, line.start)
        before: TimedWord | None = None
        for index, word in enumerate(line.words, start=1):
            if not isinstance(word, TimedWord):
                problems.append(f"{where}: word {index} is a {type(word).__name__}, not a TimedWord")
                before = None
                continue
            what = f"{where}: word {index} ({word.text!r})"
            if not word.text.strip():
                problems.append(f"{what} has no text. Fix: drop it or give the sung word")
            elif word.text != word.text.strip():
                problems.append(f"{what} has spaces at its ends. Fix: strip the word; spaces come from the line text")
            bad = _bad_char(word.text)
            if bad is not None:
                problems.append(f"{what} contains {_describe_char(bad)}. Fix: remove it")
            if not all(math.isfinite(t) and t >= 0 for t in (word.start, word.end)):
                problems.append(f"{what} has times {word.start!r}..{word.end!r}; times must be finite seconds >= 0. "
                                "Fix: take the time from the rendered vocal, not a failed alignment")
                before = None
                continue
            start, end = _ms(word.start), _ms(word.end)
            if end < start:
                problems.append(f"{what} ends at {word.end:.3f} s, before it starts at {word.start:.3f} s. "
                                "Fix: swap or recompute the word's times")
            if times_ok and (start < _ms(line.start) or end > _ms(line.end)):
                problems.append(
                    f"{what} at {word.start:.3f}-{word.end:.3f} s lies outside its line "
                    f"({line.start:.3f}-{line.end:.3f} s). Fix: start the line at its first word and end it at its last"
                )
            if before is not None and start < _ms(before.end):
                problems.append(
                    f"{what} starts at {word.start:.3f} s, before word {index - 1} ({before.text!r}) ends at "
                    f"{before.end:.3f} s. Fix: give the words in sung order and end each one where the next begins"
                )
            before = word
        if text and line.words and all(isinstance(w, TimedWord) and w.text.strip() for w in line.words):
            missing = _word_positions(text, line.words)
            if isinstance(missing, int):
                problems.append(
                    f"{where}: word {missing + 1} ({line.words[missing].text!r}) is not in the line text"
                    + (f" after word {missing} ({line.words[missing - 1].text!r})" if missing else "")
                    + ". Fix: give each word exactly as it is written in the line, in sung order"
                )
    return problems


def _check_timed_lines(lines: Sequence[TimedLine], what: str) -> None:
    problems = timed_lines_problems(lines)
    if problems:
        count = len(problems)
        raise ExportError(
            f"cannot write {what}: {count} problem{'s' if count != 1 else ''} in the timed lyrics:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def sylt_words(lines: Sequence[TimedLine]) -> tuple[tuple[float, str], ...]:
    """Word-by-word entries for ReleaseTags.synced_words (ID3 SYLT), from checked lines.

    Follows the ID3v2.4 SYLT convention: whitespace belongs to the *start* of the next word
    (" in", " the") and a new line starts with a line feed ("\\nExchanging"); punctuation stays
    with the word before it. A line without word timing becomes one entry at the line start.
    """
    _check_timed_lines(lines, "SYLT word entries")
    out: list[tuple[float, str]] = []
    for line in lines:
        newline = "\n" if out else ""
        if not line.words:
            out.append((line.start, newline + line.text.strip()))
            continue
        for index, ((piece, space_before), word) in enumerate(zip(_pieces(line), line.words)):
            prefix = newline if index == 0 else (" " if space_before else "")
            out.append((word.start, prefix + piece))
    return tuple(out)


# --------------------------------------------------------------------------- LRC


def _lrc_stamp(centis: int) -> str:
    minutes, rest = divmod(centis, 6000)
    seconds, cs = divmod(rest, 100)
    return f"{minutes:02d}:{seconds:02d}.{cs:02d}"


def _cs(seconds: float) -> int:
    return round(seconds * 100)


def lrc_text(
    lines: Sequence[tuple[float, str]] | Sequence[TimedLine],
    *,
    title: str,
    artist: str,
    album: str | None = None,
    length_seconds: float | None = None,
    words: bool | None = None,
) -> str:
    """The text write_lrc writes (see there)."""
    lines = list(lines)
    timed = [isinstance(line, TimedLine) for line in lines]
    if any(timed) and not all(timed):
        raise ExportError("LRC lines mix TimedLine and (seconds, text) entries; give one kind")
    is_timed = bool(lines) and all(timed)
    if words and not is_timed:
        raise ExportError("LRC word timing needs TimedLine entries with words; (seconds, text) pairs have none")
    word_tags = is_timed if words is None else bool(words)
    out: list[str] = []
    for key, value in (("ti", title), ("ar", artist), ("al", album)):
        if value is not None:
            if "\n" in value or "\r" in value:
                raise ExportError(f"LRC {key} header contains a line break: {value!r}")
            out.append(f"[{key}:{value}]")
    if length_seconds is not None:
        if not (math.isfinite(length_seconds) and length_seconds >= 0):
            raise ExportError(f"LRC length {length_seconds!r} is not a duration in seconds")
        whole = int(round(length_seconds))
        out.append(f"[length:{whole // 60:02d}:{whole % 60:02d}]")
    if is_timed:
        _check_timed_lines(lines, "LRC")
        entries = [(line.start, line.text.strip()) for line in lines]
    else:
        entries = [(t, text) for t, text in lines]
    last = -1
    for i, (t, text) in enumerate(entries):
        t = float(t)
        if not math.isfinite(t) or t < 0:
            raise ExportError(f"LRC line {i + 1} ({text!r}) has time {t!r}; times must be >= 0 seconds")
        if "\n" in text or "\r" in text:
            raise ExportError(f"LRC line {i + 1} contains a line break: {text!r}; give one lyric line per entry")
        cs = _cs(t)
        if cs <= last:
            raise ExportError(
                f"LRC line {i + 1} ({text!r}) at {t:.3f} s is not after the previous line "
                f"(at {last / 100:.2f} s, to the centisecond); times must strictly increase"
            )
        last = cs
        line = lines[i] if is_timed else None
        if word_tags and line is not None and line.words:
            # A2 enhanced LRC: <mm:ss.xx> before each word, one more after the last word for its end
            parts = [f"[{_lrc_stamp(cs)}]"]
            for (piece, space_before), word in zip(_pieces(line), line.words):
                parts.append(f"{' ' if space_before else ''}<{_lrc_stamp(_cs(word.start))}>{piece}")
            parts.append(f"<{_lrc_stamp(_cs(line.words[-1].end))}>")
            out.append("".join(parts))
        else:
            out.append(f"[{_lrc_stamp(cs)}]{text}")
    return "\n".join(out) + "\n"


def write_lrc(
    lines: Sequence[tuple[float, str]] | Sequence[TimedLine],
    path: str | os.PathLike,
    *,
    title: str,
    artist: str,
    album: str | None = None,
    length_seconds: float | None = None,
    words: bool | None = None,
) -> Path:
    """LRC lyrics: [ti:]/[ar:]/[al:]/[length:] headers, then one "[mm:ss.xx]line" per line (centiseconds).

    `lines` is either (seconds, text) pairs or TimedLines. With TimedLines, `words` (default True)
    writes enhanced LRC (the A2 extension): "[00:01.00]<00:01.00>Hello, <00:01.50>world<00:02.10>",
    a <mm:ss.xx> tag before each word and one after the last word for the moment it ends; lines
    without words, and words=False, give plain "[mm:ss.xx]line". Line times must be >= 0 and
    strictly increasing, also after rounding to centiseconds. UTF-8, no BOM; written atomically.
    """
    text = lrc_text(lines, title=title, artist=artist, album=album, length_seconds=length_seconds, words=words)
    return atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- TTML

TTML_NS = "http://www.w3.org/ns/ttml"
TTM_NS = "http://www.w3.org/ns/ttml#metadata"
ITUNES_NS = "http://music.apple.com/lyric-ttml-internal"  # what Apple Music's lyric TTML declares
# Other tools (the AMLL lyric database) declare this one for the same attributes; read_ttml takes both.
_ITUNES_NAMESPACES = (ITUNES_NS, "http://itunes.apple.com/lyric-ttml-extensions")
_XML_NS = "http://www.w3.org/XML/1998/namespace"
TTML_TIMINGS = ("Word", "Line")
_LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")

# Apple's itunes:songPart values, matched inside a section name ("Verse 2" -> Verse); longest first
_SONG_PARTS = (
    ("prechorus", "PreChorus"), ("postchorus", "PostChorus"), ("chorus", "Chorus"), ("verse", "Verse"),
    ("intro", "Intro"), ("outro", "Outro"), ("bridge", "Bridge"), ("hook", "Hook"), ("refrain", "Refrain"),
    ("interlude", "Interlude"), ("instrumental", "Instrumental"), ("solo", "Instrumental"),
)


def song_part(section: str) -> str:
    """Apple Music's itunes:songPart for a section name: "Verse 1" -> "Verse", "Pre-Chorus" ->
    "PreChorus", "Final Chorus" -> "Chorus"; other names CamelCased without numbers; "" -> ""."""
    key = re.sub(r"[^a-z]", "", section.lower())
    for needle, part in _SONG_PARTS:
        if needle in key:
            return part
    return "".join(w[:1].upper() + w[1:] for w in re.findall(r"[^\W\d_]+", section))


def _clock(seconds: float) -> str:
    """TTML 1.0 clock-time HH:MM:SS.mmm (hours grow past two digits when needed)."""
    ms = _ms(seconds)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def ttml_text(
    lines: Sequence[TimedLine],
    *,
    title: str,
    artist: str,
    language: str,
    timing: str = "Word",
    length_seconds: float | None = None,
) -> str:
    """The document write_ttml writes (see there)."""
    lines = list(lines)
    if timing not in TTML_TIMINGS:
        raise ExportError(f"TTML timing {timing!r} is unknown; use one of {', '.join(TTML_TIMINGS)}")
    if not lines:
        raise ExportError("TTML needs at least one timed line; this song has none")
    if not isinstance(language, str) or not _LANGUAGE_RE.fullmatch(language):
        raise ExportError(f"TTML language {language!r} is not a BCP-47 tag. Fix: use a tag like 'en-US', 'fi' or 'sv-FI'")
    for name, value in (("title", title), ("artist", artist)):
        if not str(value or "").strip():
            raise ExportError(f"TTML {name} is empty")
        bad = _bad_char(value)
        if bad is not None:
            raise ExportError(f"TTML {name} {value!r} contains {_describe_char(bad)}. Fix: remove it")
    _check_timed_lines(lines, "TTML")
    if timing == "Word" and not any(line.words for line in lines):
        raise ExportError("TTML timing 'Word' but no line has word timing. Fix: give TimedLine.words, or timing='Line'")
    last_end = max(line.end for line in lines)
    if length_seconds is None:
        length_seconds = last_end
    elif not (math.isfinite(length_seconds) and _ms(length_seconds) >= _ms(last_end)):
        raise ExportError(
            f"TTML length {length_seconds!r} s is shorter than the last line, which ends at {last_end:.3f} s. "
            "Fix: pass the master's length in seconds"
        )
    import xml.etree.ElementTree as ET

    # Prefixed names are written as given (no Clark notation), so the output carries exactly the
    # prefixes Apple's files use and ElementTree's global prefix table is left alone.
    tt = ET.Element("tt", {
        "xmlns": TTML_NS, "xmlns:itunes": ITUNES_NS, "xmlns:ttm": TTM_NS,
        "itunes:timing": timing, "xml:lang": language,
    })
    metadata = ET.SubElement(ET.SubElement(tt, "head"), "metadata")
    ET.SubElement(metadata, "ttm:title").text = title
    agent = ET.SubElement(metadata, "ttm:agent", {"type": "person", "xml:id": "v1"})
    ET.SubElement(agent, "ttm:name", {"type": "full"}).text = artist
    body = ET.SubElement(tt, "body", {"dur": _clock(length_seconds)})
    groups: list[list[TimedLine]] = []
    for line in lines:
        if groups and groups[-1][0].section == line.section:
            groups[-1].append(line)
        else:
            groups.append([line])
    key = 0
    for group in groups:
        attrs = {"begin": _clock(group[0].start), "end": _clock(max(line.end for line in group))}
        part = song_part(group[0].section)
        if part:
            attrs["itunes:songPart"] = part
        div = ET.SubElement(body, "div", attrs)
        for line in group:
            key += 1
            p = ET.SubElement(div, "p", {"begin": _clock(line.start), "end": _clock(line.end),
                                         "itunes:key": f"L{key}", "ttm:agent": "v1"})
            if timing == "Word" and line.words:
                previous = None
                for (piece, space_before), word in zip(_pieces(line), line.words):
                    if space_before and previous is not None:
                        previous.tail = " "  # the space between words is a text node between the spans
                    previous = ET.SubElement(p, "span", {"begin": _clock(word.start), "end": _clock(word.end)})
                    previous.text = piece
            else:
                p.text = line.text.strip()
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(tt, encoding="unicode") + "\n"
    try:
        ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:  # a bug here, not a user mistake: never write a broken file
        raise ExportError(f"internal error: the TTML writer produced malformed XML ({exc})") from exc
    return text


def write_ttml(
    lines: Sequence[TimedLine],
    path: str | os.PathLike,
    *,
    title: str,
    artist: str,
    language: str,
    timing: str = "Word",
    length_seconds: float | None = None,
) -> Path:
    """Word-synced lyrics as TTML 1.0, in the shape Apple Music uses for its lyrics:

        <tt xmlns="http://www.w3.org/ns/ttml" xmlns:itunes="http://music.apple.com/lyric-ttml-internal"
            xmlns:ttm="http://www.w3.org/ns/ttml#metadata" itunes:timing="Word" xml:lang="fi">
          <head><metadata><ttm:title>..</ttm:title><ttm:agent type="person" xml:id="v1">
            <ttm:name type="full">artist</ttm:name></ttm:agent></metadata></head>
          <body dur="00:03:25.400">
            <div begin=".." end=".." itunes:songPart="Verse">     one per run of lines of one section
              <p begin=".." end=".." itunes:key="L1" ttm:agent="v1">
                <span begin=".." end="..">Hello,</span> <span begin=".." end="..">world</span></p>

    All times are absolute (from the start of the audio, as Apple's files have them), TTML clock
    times HH:MM:SS.mmm. The space between words is a text node between spans; syllables of one word
    have none. timing="Line" writes each line's text straight into its <p>. `language` is a BCP-47
    tag ("en-US", "fi"); body dur is `length_seconds` (default: the last line's end). Written
    atomically as UTF-8 without BOM; read it back with read_ttml.
    """
    text = ttml_text(lines, title=title, artist=artist, language=language, timing=timing,
                     length_seconds=length_seconds)
    return atomic_write_bytes(path, text.encode("utf-8"))


_CLOCK_RE = re.compile(r"(?:(?:(\d+):)?(\d{1,2}):)?(\d+(?:\.\d+)?)")
_OFFSET_RE = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_METRIC_SECONDS = {"h": 3600, "m": 60, "s": 1}


def _ttml_seconds(value: str) -> float:
    """Seconds of a TTML time expression: [[HH:]MM:]SS[.fff] or an offset like 12.3s / 1500ms."""
    from decimal import Decimal

    value = value.strip()
    match = _OFFSET_RE.fullmatch(value)
    if match:
        amount = Decimal(match[1])
        return float(amount / 1000 if match[2] == "ms" else amount * _METRIC_SECONDS[match[2]])
    match = _CLOCK_RE.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not a time expression like 00:01:02.345 or 62.345s")
    hours, minutes, seconds = match[1], match[2], Decimal(match[3])
    if minutes is not None and (int(minutes) >= 60 or seconds >= 60):
        raise ValueError(f"{value!r} has minutes or seconds of 60 or more")
    return float(Decimal(hours or 0) * 3600 + Decimal(minutes or 0) * 60 + seconds)


def parse_ttml(data: bytes | str, *, source: str = "<ttml>") -> list[TimedLine]:
    """TimedLines from a TTML lyrics document (ours, Apple Music's or similar); see read_ttml."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        row, col = exc.position
        raise ExportError(f"{source}:{row}:{col + 1}: not well-formed XML ({exc})") from exc
    tt = f"{{{TTML_NS}}}"
    if root.tag != tt + "tt":
        raise ExportError(f"{source}: root element is {root.tag!r}, not <tt> in the TTML namespace {TTML_NS}")
    role = f"{{{TTM_NS}}}role"

    def part_of(div) -> str | None:
        for ns in _ITUNES_NAMESPACES:
            for name in ("songPart", "song-part"):
                value = div.get(f"{{{ns}}}{name}")
                if value is not None:
                    return value
        return None

    def when(element, name: str, number: int, text: str) -> float | None:
        value = element.get(name)
        if value is None:
            return None
        try:
            return _ttml_seconds(value)
        except ValueError as exc:
            raise ExportError(f"{source}: line {number} ({text!r}): {name} {exc}") from None

    lines: list[TimedLine] = []

    def read_p(p, section: str) -> TimedLine:
        number = len(lines) + 1
        pieces = [p.text or ""]
        spans: list[tuple[str, object]] = []
        for child in p:
            if child.tag == tt + "span" and child.get(role) is None:
                word = "".join(child.itertext())
                pieces.append(word)
                if word.strip() and (child.get("begin") is not None or child.get("end") is not None):
                    spans.append((word.strip(), child))
            elif child.tag == tt + "br":
                pieces.append(" ")
            # other children (translations, background vocals: ttm:role spans; metadata) are not the line
            pieces.append(child.tail or "")
        text = " ".join("".join(pieces).split())
        words = []
        for word, span in spans:
            start, end = when(span, "begin", number, text), when(span, "end", number, text)
            if start is None or end is None:
                raise ExportError(f"{source}: line {number} ({text!r}): word {word!r} has no "
                                  f"{'begin' if start is None else 'end'} time")
            words.append(TimedWord(word, start, end))
        start, end = when(p, "begin", number, text), when(p, "end", number, text)
        start = start if start is not None else (words[0].start if words else None)
        end = end if end is not None else (words[-1].end if words else None)
        if start is None or end is None:
            raise ExportError(f"{source}: line {number} ({text!r}) has no {'begin' if start is None else 'end'} time")
        return TimedLine(text, start, end, tuple(words), section)

    def walk(element, section: str) -> None:
        for child in element:
            if child.tag == tt + "div":
                walk(child, part_of(child) or section)
            elif child.tag == tt + "p":
                lines.append(read_p(child, section))

    body = root.find(tt + "body")
    if body is not None:
        walk(body, "")
    return lines


def read_ttml(path: str | os.PathLike) -> list[TimedLine]:
    """The lines of a TTML lyrics file, in document order, with their word spans.

    Times are read as absolute (Apple's convention); clock and offset time expressions are
    accepted. A line's text is its spans and the text between them, whitespace collapsed; spans
    with a ttm:role (translations, background vocals) are left out. `section` is the enclosing
    div's itunes:songPart ("Verse"; the number of "Verse 1" is not stored in the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read TTML file {path} ({exc.strerror or exc})") from exc
    return parse_ttml(data, source=str(path))
