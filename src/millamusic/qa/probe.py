"""What a delivery check reads from one file: its audio, header, tags and the release record beside it."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import soundfile as sf
from mutagen import MutagenError
from mutagen.flac import FLAC
from mutagen.mp3 import MP3
from PIL import Image

from millamusic.core.errors import ExportError, RenderError
from millamusic.dsp.loudness import measure
from millamusic.release.pcm import decode
from millamusic.spec.profiles import DeliveryProfile

if TYPE_CHECKING:

    from millamusic.core.audio import Audio
    from millamusic.dsp.loudness import LoudnessReport


Status = Literal["ok", "warn", "fail", "n/a"]
RULES = ("format", "header", "loudness", "true_peak", "tags", "identifiers", "cover", "lyrics", "ai", "provenance",
         "record")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3")
RELEASE_FILE = "release.json"
RELEASE_SEARCH_DEPTH = 3  # release.json is looked for in the file's folder and up to 2 folders above
SKIPPED_FOLDERS = ("stems",)  # folder recursion leaves stems out: they are not delivery masters


# IPTC NewsCodes "digitalsourcetype" terms (cv.iptc.org/newscodes/digitalsourcetype/)
IPTC_DIGITAL_SOURCE_TERMS = (
    "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia", "compositeSynthetic",
    "digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print", "humanEdits",
    "minorHumanEdits", "compositeCapture", "algorithmicallyEnhanced", "dataDrivenMedia", "digitalArt",
    "digitalCreation", "virtualRecording", "screenCapture",
)


CREDIT_KEYS = ("stage", "engine", "model", "version", "licence", "seed", "prompt")
TIME_SLACK_S = 0.01  # lyric times are stored to the centisecond / millisecond: this much past the end is rounding


class CheckUsageError(ValueError):
    """The check cannot start: a path that does not exist, no audio files, an unknown or unknowable profile."""


@dataclass(frozen=True)
class CheckResult:
    """One rule's verdict on one file."""

    file: Path
    rule: str
    status: Status
    detail: str


# --------------------------------------------------------------------------- release.json


@dataclass(frozen=True)
class Release:
    """A release.json: where it lies and what it holds (or why it could not be read)."""

    path: Path | None
    data: dict | None
    error: str | None = None

    @property
    def root(self) -> Path | None:
        """The output root the "files" paths are relative to: two folders above release.json's folder."""
        if self.path is None:
            return None
        parents = self.path.resolve().parents
        return parents[2] if len(parents) > 2 else None

    def get(self, key: str) -> Any:
        return self.data.get(key) if self.data is not None else None


def find_release(path: Path) -> Path | None:
    """The release.json that covers `path`: in its folder or up to two folders above; None if none."""
    folder = Path(path).resolve().parent
    for _ in range(RELEASE_SEARCH_DEPTH):
        candidate = folder / RELEASE_FILE
        if candidate.is_file():
            return candidate
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def load_release(path: Path) -> Release:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return Release(path, None, f"{path} cannot be read ({exc.strerror or exc})")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Release(path, None, f"{path} is not valid JSON ({exc})")
    if not isinstance(data, dict):
        return Release(path, None, f"{path} holds a JSON {type(data).__name__}, not an object")
    return Release(path, data)


# --------------------------------------------------------------------------- one file, read once


class _Missing:
    """Marks a field that is absent altogether (a present null is reported as such)."""


MISSING = _Missing()


def kind(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def mp3_mode(path: Path) -> str | None:
    """'cbr320' for <slug>.320.mp3, 'v0' for <slug>.v0.mp3, None for any other MP3 name."""
    name = path.name.lower()
    if name.endswith(".320.mp3"):
        return "cbr320"
    if name.endswith(".v0.mp3"):
        return "v0"
    return None


class Probe:
    """Reads one file lazily and at most once: libsndfile info, decoded audio, loudness, tags.

    A failed read is remembered and raised again to every rule that asks, so a bad file costs one
    attempt and each rule reports the same reason.
    """

    def __init__(self, path: Path, profile: DeliveryProfile, release: Release | None):
        self.path = path
        self.kind = kind(path)
        self.profile = profile
        self.release = release
        self._memo: dict[str, Any] = {}

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            try:
                self._memo[key] = (True, make())
            except expected_errors() as exc:
                self._memo[key] = (False, exc)
        ok, value = self._memo[key]
        if not ok:
            raise Unreadable(value) from value
        return value

    def info(self):
        """soundfile's header info (format, subtype, rate, channels, frames)."""

        return self._once("info", lambda: sf.info(str(self.path)))

    def audio(self) -> Audio:
        return self._once("audio", lambda: decode(self.path))

    def loudness(self) -> LoudnessReport:
        return self._once("loudness", lambda: measure(self.audio()))

    def tagged(self):
        """mutagen's FLAC or MP3 object (tags, pictures, stream info)."""

        def load():
            if self.kind == "flac":

                return FLAC(self.path)

            return MP3(self.path)

        return self._once("tagged", load)

    def duration(self) -> float | None:
        """Seconds of audio: decoded when that works, else as the headers claim; None if unknown."""
        sources = [lambda: self.audio().seconds, lambda: float(self.info().duration)]
        if self.kind != "wav":
            sources.append(lambda: float(self.tagged().info.length))
        for source in sources:
            try:
                seconds = source()
            except expected_errors():
                continue
            if seconds and math.isfinite(seconds):
                return seconds
        return None

    # -- tag access, FLAC and MP3 alike, by Vorbis comment name

    def values(self, name: str) -> list[str]:
        """The non-empty values of a tag, by its Vorbis comment name (mapped to ID3 frames for MP3)."""
        tagged = self.tagged()
        tags = tagged.tags
        if tags is None:
            return []
        if self.kind == "flac":
            found = [str(v) for v in tags.get(name, [])]
        else:
            found = _id3_values(tags, name)
        return [v for v in found if v.strip()]

    def first(self, name: str) -> str | None:
        found = self.values(name)
        return found[0].strip() if found else None


def _id3_values(tags, name: str) -> list[str]:
    if name in ID3_TEXT:
        return [str(t) for frame in tags.getall(ID3_TEXT[name]) for t in frame.text]
    if name in ID3_TXXX:
        return [str(t) for frame in tags.getall("TXXX") if frame.desc.upper() == name for t in frame.text]
    if name in ("TRACKNUMBER", "TRACKTOTAL"):
        out = []
        for frame in tags.getall("TRCK"):
            for text in frame.text:
                number, _, total = str(text).partition("/")
                out.append(number if name == "TRACKNUMBER" else total)
        return out
    if name == "COMMENT":
        return [str(t) for frame in tags.getall("COMM") for t in frame.text]
    if name == "LYRICS":
        return [str(frame.text) for frame in tags.getall("USLT")]
    raise KeyError(name)  # a programming error: every name used here is mapped above


class Unreadable(Exception):
    """Reading part of the checked file failed (`cause` says why): each rule that needs that part
    fails with the reason. Any other exception inside a rule is a bug in the checker and keeps its
    traceback instead of turning into a "fail" verdict."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


def expected_errors() -> tuple[type[BaseException], ...]:
    """What reading a bad file can raise: the checker reports these, anything else is a bug."""

    return (ExportError, RenderError, MutagenError, Image.DecompressionBombError, RuntimeError, OSError,
            ValueError, EOFError, struct.error, SyntaxError)


def short(exc: BaseException, path: Path | None = None) -> str:
    """The exception's message, trimmed, with the checked file's full path shortened to its name
    (the table already names the file)."""
    text = str(exc).strip() or type(exc).__name__
    if path is not None:
        for shown in {str(path), str(path.resolve())}:
            text = text.replace(f"{shown}: ", "").replace(f"'{shown}'", path.name).replace(shown, path.name)
    return text if len(text) <= 300 else text[:297] + "..."


def unreadable(exc: BaseException, path: Path) -> str:
    """A failed rule's detail when reading the file raised `exc`."""

    if isinstance(exc, ExportError):
        return short(exc, path)  # says what it was doing already
    if isinstance(exc, MutagenError):
        return f"mutagen cannot read it: {short(exc, path)}"
    if isinstance(exc, RuntimeError):
        return f"libsndfile cannot open it: {short(exc, path)}"
    return f"cannot read it: {short(exc, path)}"


# --------------------------------------------------------------------------- rules

Verdict = tuple[Status, str]


def worst(fails: list[str], warns: list[str], ok: str) -> Verdict:
    if fails:
        return "fail", "; ".join(fails + warns)
    if warns:
        return "warn", "; ".join(warns)
    return "ok", ok


MP3_CBR_BITRATE = 320_000


ID3_TEXT = {
    "TITLE": "TIT2", "ARTIST": "TPE1", "ALBUMARTIST": "TPE2", "ALBUM": "TALB", "DATE": "TDRC", "GENRE": "TCON",
    "ISRC": "TSRC", "COPYRIGHT": "TCOP", "LABEL": "TPUB", "COMPOSER": "TCOM", "LYRICIST": "TEXT",
    "DISCNUMBER": "TPOS",
}


ID3_TXXX = ("BARCODE", "AI_DISCLOSURE", "CONTAINS_AI", "DIGITAL_SOURCE_TYPE", "AI_CREDITS", "SYNCEDLYRICS")
