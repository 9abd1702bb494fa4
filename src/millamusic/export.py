"""Delivery files: plain PCM WAV, tagged FLAC and MP3, LRC lyrics, cover checks.

Every file is written atomically (temp file in the same folder, fsync, os.replace), so a crash
or an error never leaves a half-written release file behind, and an existing file is only ever
replaced by a complete one.

Every tagged file carries the AI disclosure: human-readable text, a CONTAINS_AI level, the IPTC
digital source type and the per-stage credits as JSON.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .audio import Audio
from .identifiers import normalise_isrc
from .errors import ExportError

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
    tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}"
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
            "COMPOSER": self.composer,
            "LYRICIST": self.lyricist,
            "COPYRIGHT": self.copyright,
            "LABEL": self.label,
            "ORGANIZATION": self.label,
            "PRODUCER": self.producer,
            "LYRICS": self.lyrics_text,
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
    x = np.asarray(audio.samples, dtype=np.float64).T
    if not np.all(np.isfinite(x)):
        raise ExportError("audio contains NaN or infinite samples; refusing to write it")
    full = float(1 << (bits - 1))
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


def write_wav(audio: Audio, path: str | os.PathLike, bit_depth: int = 24) -> Path:
    """Delivery WAV: WAVE_FORMAT_PCM, 'fmt ' + 'data' only, no tags, nothing after the data."""
    import soundfile as sf

    if bit_depth not in (16, 24):
        raise ExportError(f"bit_depth {bit_depth} is not supported; use 24 (delivery) or 16 (CD)")
    data = _quantize(audio, bit_depth)
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


def write_flac(audio: Audio, path: str | os.PathLike, tags: ReleaseTags) -> Path:
    """24-bit FLAC with Vorbis comments and a front-cover Picture block."""
    import soundfile as sf
    from mutagen.flac import FLAC, Picture

    data = _quantize(audio, 24)
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, audio.sample_rate, subtype="PCM_24", format="FLAC")
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
    from pedalboard.io import AudioFile

    quality = _mp3_quality(bitrate, mode)
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            with AudioFile(str(tmp), "w", audio.sample_rate, audio.channels, quality=quality) as out:
                out.write(np.ascontiguousarray(audio.samples, dtype=np.float32))
        except (ValueError, RuntimeError) as exc:
            raise ExportError(f"{path}: MP3 encoding failed ({quality}, {audio.sample_rate} Hz): {exc}") from exc
        _id3(tags).save(str(tmp), v2_version=4, v1=0)
    return path


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
    if tags.synced_lyrics:
        # format 2 = absolute milliseconds, type 1 = lyrics
        lines = [(text, int(round(t * 1000))) for t, text in tags.synced_lyrics]
        id3.add(SYLT(encoding=utf8, lang=lang, format=2, type=1, desc="", text=lines))
    id3.add(COMM(encoding=utf8, lang="eng", desc="", text=[tags.disclosure]))
    for desc, value in (
        ("AI_DISCLOSURE", tags.disclosure),
        ("CONTAINS_AI", tags.contains_ai),
        ("DIGITAL_SOURCE_TYPE", tags.digital_source_type),
        ("AI_CREDITS", tags.ai_credits_json),
    ):
        id3.add(TXXX(encoding=utf8, desc=desc, text=[value]))
    return id3


# --------------------------------------------------------------------------- cover


def validate_cover(path: str | os.PathLike) -> tuple[bytes, str]:
    """Check a cover image for the stores: JPEG or PNG, square, at least 1400 px. Returns (bytes, mime)."""
    import io

    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cover image {path} cannot be read ({exc.strerror or exc}). Fix: check the cover path in the spec") from exc
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
            im.load()  # catches truncated files
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ExportError(
            f"cover image {path} is not a readable image ({exc}). Fix: export it again as JPEG or PNG"
        ) from exc
    mime = {"JPEG": "image/jpeg", "PNG": "image/png"}.get(fmt or "")
    if mime is None:
        raise ExportError(
            f"cover image {path} is {fmt or 'an unknown format'} ({w}x{h} px); stores take JPEG or PNG. "
            "Fix: convert it to JPEG (RGB, quality 90+) or PNG"
        )
    if w != h:
        raise ExportError(
            f"cover image {path} is {w}x{h} px ({fmt}); covers must be square. Fix: crop it to "
            f"{min(w, h)}x{min(w, h)} (or larger square), at least {COVER_MIN_PX}x{COVER_MIN_PX}; 3000x3000 is best"
        )
    if w < COVER_MIN_PX:
        raise ExportError(
            f"cover image {path} is {w}x{h} px ({fmt}); stores need at least {COVER_MIN_PX}x{COVER_MIN_PX}. "
            "Fix: render or export the artwork at 3000x3000 (upscaling a small image looks soft)"
        )
    return data, mime


# --------------------------------------------------------------------------- LRC


def _lrc_stamp(centis: int) -> str:
    minutes, rest = divmod(centis, 6000)
    seconds, cs = divmod(rest, 100)
    return f"{minutes:02d}:{seconds:02d}.{cs:02d}"


def write_lrc(
    lines: list[tuple[float, str]] | tuple[tuple[float, str], ...],
    path: str | os.PathLike,
    *,
    title: str,
    artist: str,
    album: str | None = None,
    length_seconds: float | None = None,
) -> Path:
    """LRC lyrics: [ti:]/[ar:]/[al:]/[length:] headers, then "[mm:ss.xx]line" (centiseconds).

    Times must be >= 0 and strictly increasing, also after rounding to centiseconds.
    """
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
    last = -1
    for i, (t, text) in enumerate(lines):
        t = float(t)
        if not math.isfinite(t) or t < 0:
            raise ExportError(f"LRC line {i + 1} ({text!r}) has time {t!r}; times must be >= 0 seconds")
        if "\n" in text or "\r" in text:
            raise ExportError(f"LRC line {i + 1} contains a line break: {text!r}; give one lyric line per entry")
        cs = int(round(t * 100))
        if cs <= last:
            raise ExportError(
                f"LRC line {i + 1} ({text!r}) at {t:.3f} s is not after the previous line "
                f"(at {last / 100:.2f} s, to the centisecond); times must strictly increase"
            )
        last = cs
        out.append(f"[{_lrc_stamp(cs)}]{text}")
    return atomic_write_bytes(path, ("\n".join(out) + "\n").encode("utf-8"))
