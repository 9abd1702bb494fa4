"""The tags every delivery file carries, AI disclosure included, and their ID3 form."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np
from mutagen.id3 import (
    APIC,
    COMM,
    ID3,
    SYLT,
    TALB,
    TCOM,
    TCON,
    TCOP,
    TDOR,
    TDRC,
    TEXT,
    TIPL,
    TIT2,
    TOLY,
    TOPE,
    TPE1,
    TPE2,
    TPOS,
    TPUB,
    TRCK,
    TSRC,
    TXXX,
    USLT,
    Encoding,
    PictureType,
)

from millamusic.core.errors import ExportError
from millamusic.spec.identifiers import normalise_isrc, normalise_upc

CONTAINS_AI_VALUES = ("All", "Partly", "None")
IPTC_DIGITAL_SOURCE_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"


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
    # a cover: the original work (release.original), so the file declares itself a cover
    original_title: str | None = None
    original_artist: str | None = None
    original_songwriters: str | None = None
    original_year: int | None = None
    # the distributors' per-role AI answers (release.distributor.AiRoles.tag_fields): AI_VOCALS=Yes (...)
    ai_roles: tuple[tuple[str, str], ...] = ()
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
        original = (self.original_title, self.original_artist, self.original_songwriters)
        if any(v is not None for v in original) and not all(str(v or "").strip() for v in original):
            problems.append("a cover names its original title, artist and songwriters together")
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

    @property
    def cover_of(self) -> str | None:
        """'Original Title' by Original Artist (written by A, B): one line a person reads."""
        if self.original_title is None:
            return None
        return f"Cover of '{self.original_title}' by {self.original_artist} (written by {self.original_songwriters})"

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
            "ORIGINALTITLE": self.original_title,
            "ORIGINALARTIST": self.original_artist,  # Picard's name, like ID3's TOPE
            "ORIGINALLYRICIST": self.original_songwriters,
            "ORIGINALDATE": None if self.original_year is None else str(self.original_year),
            "COVER_OF": self.cover_of,
            "LYRICS": self.lyrics_text,
            "SYNCEDLYRICS": self.synced_lrc,
            # Shown by ordinary players, so the disclosure is visible without special tools.
            "COMMENT": self.disclosure,
            "AI_DISCLOSURE": self.disclosure,
            "CONTAINS_AI": self.contains_ai,
            "DIGITAL_SOURCE_TYPE": self.digital_source_type,
            "AI_CREDITS": self.ai_credits_json,
        }
        fields.update(dict(self.ai_roles))
        return {k: v for k, v in fields.items() if v is not None}


def id3_tags(tags: ReleaseTags):
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
        (TOPE, tags.original_artist),
        (TOLY, tags.original_songwriters),
        (TDOR, None if tags.original_year is None else str(tags.original_year)),
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
        # UTF-16, not UTF-8: c2pa-rs 0.91 rewrites the ID3 tag when it signs, and a UTF-8 SYLT makes it
        # drop every frame (any other encoding: only the SYLT; the TXXX:SYNCEDLYRICS LRC stays)
        id3.add(SYLT(encoding=Encoding.UTF16, lang=lang, format=2, type=1, desc="", text=synced))
    id3.add(COMM(encoding=utf8, lang="eng", desc="", text=[tags.disclosure]))
    for desc, value in (
        ("AI_DISCLOSURE", tags.disclosure),
        ("CONTAINS_AI", tags.contains_ai),
        ("DIGITAL_SOURCE_TYPE", tags.digital_source_type),
        ("AI_CREDITS", tags.ai_credits_json),
        ("BARCODE", tags.upc),
        ("ORIGINAL_TITLE", tags.original_title),
        ("COVER_OF", tags.cover_of),
        ("SYNCEDLYRICS", tags.synced_lrc),
        *tags.ai_roles,
    ):
        if value is not None:
            id3.add(TXXX(encoding=utf8, desc=desc, text=[value]))
    return id3
