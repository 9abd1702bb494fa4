"""Check delivery masters against a delivery profile: the release manager's `millamusic check`.

Every audio file (WAV, FLAC, MP3) gets one result per rule, always in this order:

  format       decodable, the container its name says, the profile's sample rate, stereo, the
               profile's bit depth (WAV/FLAC), .320.mp3 CBR 320 kbps / .v0.mp3 VBR, not truncated
  header       WAV: plain PCM 'fmt ' + 'data' only (export.check_wav_delivery); FLAC: starts with
               fLaC, no ID3; MP3: an ID3v2.4 tag and no ID3v1 tag at the end
  loudness     integrated loudness of the decoded file against the profile's target
  true_peak    decoded true peak under the profile's ceiling (the lossy ceiling for MP3)
  tags         FLAC/MP3 title, artist, genre, year, album artist (album, copyright, label advised)
  identifiers  ISRC and UPC/EAN well-formed, with a correct check digit
  cover        an embedded front cover: JPEG or PNG by its bytes, square, >= export.COVER_MIN_PX
  lyrics       unsynced and synced lyrics present; synced times in order and inside the audio
  ai           the AI disclosure: text, CONTAINS_AI, IPTC digital source type, per-stage credits,
               and CONTAINS_AI agreeing with the credits (a WAV's lives in release.json)
  record       the file's sha256 and size as release.json recorded them

A result is "ok", "warn", "fail" or "n/a" (the rule does not apply, with the reason). A broken
file gives "fail" results naming what is wrong, never a traceback. `failed()` is True when any
result failed; the CLI exits 1 then.

Conventions of a release (what the renderer writes):
  masters/<slug>/<profile>/<slug>.wav, .flac, .320.mp3, .v0.mp3   the delivery files
  masters/<slug>/release.json    {"files": {path relative to the output root: {"sha256", "bytes"}},
                                  "track": {"isrc", "upc", ...}, "contains_ai", "digital_source_type",
                                  "credits": [...], "disclosure": ...}
  lyrics/<slug>.lrc, lyrics/<slug>.ttml
The output root is the folder two levels above release.json.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from .errors import ExportError, RenderError
from .identifiers import normalise_isrc, normalise_upc, upc_check_digit
from .profiles import (
    LOSSY_LOUDNESS_TOLERANCE_LU,
    LOUDNESS_TOLERANCE_LU,
    PROFILES,
    DeliveryProfile,
    profile_choices,
)

if TYPE_CHECKING:
    from rich.table import Table

    from .audio import Audio
    from .master import LoudnessReport

Status = Literal["ok", "warn", "fail", "n/a"]

RULES = ("format", "header", "loudness", "true_peak", "tags", "identifiers", "cover", "lyrics", "ai", "record")
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
MP3_CBR_BITRATE = 320_000
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
class _Release:
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


def _load_release(path: Path) -> _Release:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return _Release(path, None, f"{path} cannot be read ({exc.strerror or exc})")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _Release(path, None, f"{path} is not valid JSON ({exc})")
    if not isinstance(data, dict):
        return _Release(path, None, f"{path} holds a JSON {type(data).__name__}, not an object")
    return _Release(path, data)


# --------------------------------------------------------------------------- one file, read once


class _Missing:
    """Marks a field that is absent altogether (a present null is reported as such)."""


_MISSING = _Missing()


def _kind(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


def _mp3_mode(path: Path) -> str | None:
    """'cbr320' for <slug>.320.mp3, 'v0' for <slug>.v0.mp3, None for any other MP3 name."""
    name = path.name.lower()
    if name.endswith(".320.mp3"):
        return "cbr320"
    if name.endswith(".v0.mp3"):
        return "v0"
    return None


class _Probe:
    """Reads one file lazily and at most once: libsndfile info, decoded audio, loudness, tags.

    A failed read is remembered and raised again to every rule that asks, so a bad file costs one
    attempt and each rule reports the same reason.
    """

    def __init__(self, path: Path, profile: DeliveryProfile, release: _Release | None):
        self.path = path
        self.kind = _kind(path)
        self.profile = profile
        self.release = release
        self._memo: dict[str, Any] = {}

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            try:
                self._memo[key] = (True, make())
            except _expected_errors() as exc:
                self._memo[key] = (False, exc)
        ok, value = self._memo[key]
        if not ok:
            raise value
        return value

    def info(self):
        """soundfile's header info (format, subtype, rate, channels, frames)."""
        import soundfile as sf

        return self._once("info", lambda: sf.info(str(self.path)))

    def audio(self) -> Audio:
        from .export import decode

        return self._once("audio", lambda: decode(self.path))

    def loudness(self) -> LoudnessReport:
        from .master import measure

        return self._once("loudness", lambda: measure(self.audio()))

    def tagged(self):
        """mutagen's FLAC or MP3 object (tags, pictures, stream info)."""

        def load():
            if self.kind == "flac":
                from mutagen.flac import FLAC

                return FLAC(self.path)
            from mutagen.mp3 import MP3

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
            except _expected_errors():
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


_ID3_TEXT = {
    "TITLE": "TIT2", "ARTIST": "TPE1", "ALBUMARTIST": "TPE2", "ALBUM": "TALB", "DATE": "TDRC", "GENRE": "TCON",
    "ISRC": "TSRC", "COPYRIGHT": "TCOP", "LABEL": "TPUB", "COMPOSER": "TCOM", "LYRICIST": "TEXT",
    "DISCNUMBER": "TPOS",
}
_ID3_TXXX = ("BARCODE", "AI_DISCLOSURE", "CONTAINS_AI", "DIGITAL_SOURCE_TYPE", "AI_CREDITS")


def _id3_values(tags, name: str) -> list[str]:
    if name in _ID3_TEXT:
        return [str(t) for frame in tags.getall(_ID3_TEXT[name]) for t in frame.text]
    if name in _ID3_TXXX:
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


def _expected_errors() -> tuple[type[BaseException], ...]:
    """What reading a bad file can raise: the checker reports these, anything else is a bug."""
    from mutagen import MutagenError
    from PIL import Image

    return (ExportError, RenderError, MutagenError, Image.DecompressionBombError, RuntimeError, OSError,
            ValueError, EOFError, struct.error, SyntaxError)


def _short(exc: BaseException, path: Path | None = None) -> str:
    """The exception's message, trimmed, with the checked file's full path shortened to its name
    (the table already names the file)."""
    text = str(exc).strip() or type(exc).__name__
    if path is not None:
        for shown in {str(path), str(path.resolve())}:
            text = text.replace(f"{shown}: ", "").replace(f"'{shown}'", path.name).replace(shown, path.name)
    return text if len(text) <= 300 else text[:297] + "..."


def _unreadable(exc: BaseException, path: Path) -> str:
    """A failed rule's detail when reading the file raised `exc`."""
    from mutagen import MutagenError

    if isinstance(exc, ExportError):
        return _short(exc, path)  # says what it was doing already
    if isinstance(exc, MutagenError):
        return f"mutagen cannot read it: {_short(exc, path)}"
    if isinstance(exc, RuntimeError):
        return f"libsndfile cannot open it: {_short(exc, path)}"
    return f"cannot read it: {_short(exc, path)}"


# --------------------------------------------------------------------------- rules

Verdict = tuple[Status, str]


def _worst(fails: list[str], warns: list[str], ok: str) -> Verdict:
    if fails:
        return "fail", "; ".join(fails + warns)
    if warns:
        return "warn", "; ".join(warns)
    return "ok", ok


def _rule_format(p: _Probe) -> Verdict:
    prof = p.profile
    info = p.info()
    container = {"wav": ("WAV", "WAVEX"), "flac": ("FLAC",), "mp3": ("MPEG", "MP3")}[p.kind]
    if info.format not in container:
        return "fail", f"named .{p.kind} but it is {info.format_info or info.format}"
    fails: list[str] = []
    facts: list[str] = []
    rate, channels = int(info.samplerate), int(info.channels)
    if p.kind == "mp3":
        mp3 = p.tagged().info
        rate, channels = int(mp3.sample_rate), int(mp3.channels)
    facts.append(f"{rate} Hz")
    if rate != prof.sample_rate:
        fails.append(f"sample rate {rate} Hz, {prof.name} needs {prof.sample_rate}")
    facts.append(f"{channels} ch")
    if channels != 2:
        fails.append(f"{channels} channel(s), deliver stereo (2)")
    if p.kind in ("wav", "flac"):
        bits = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "PCM_U8": 8, "PCM_S8": 8}.get(info.subtype)
        facts.append(f"{bits}-bit" if bits else info.subtype)
        if bits != prof.bit_depth:
            got = f"{bits}-bit" if bits else f"{info.subtype_info or info.subtype} samples"
            fails.append(f"{got}, {prof.name} needs {prof.bit_depth}-bit PCM")
    else:
        from mutagen.mp3 import BitrateMode

        mp3 = p.tagged().info
        mode = _mp3_mode(p.path)
        shown = {BitrateMode.CBR: "CBR", BitrateMode.VBR: "VBR", BitrateMode.ABR: "ABR"}.get(mp3.bitrate_mode, "mode unknown")
        kbps = round(mp3.bitrate / 1000)
        facts.append(f"{shown} {kbps} kbps")
        if mode == "cbr320" and not (mp3.bitrate_mode == BitrateMode.CBR and abs(mp3.bitrate - MP3_CBR_BITRATE) <= 1000):
            fails.append(f"named .320.mp3 but it is {shown} {kbps} kbps, not CBR 320 kbps")
        if mode == "v0" and mp3.bitrate_mode != BitrateMode.VBR:
            fails.append(f"named .v0.mp3 but it is {shown} {kbps} kbps, not VBR (LAME V0)")
    try:
        audio = p.audio()
    except _expected_errors() as exc:
        fails.append(_unreadable(exc, p.path))
    else:
        seconds = audio.seconds
        facts.append(f"{seconds:.2f} s")
        if audio.frames == 0:
            fails.append("no audio (0 frames)")
        # MP3 headers may estimate the length; PCM headers state it exactly
        slack = 2 * 1152 if p.kind == "mp3" else 0
        if info.frames > 0 and audio.frames + slack < info.frames:
            fails.append(f"truncated: decodes {audio.frames} of the {info.frames} frames its header declares")
    return _worst(fails, [], ", ".join(facts))


def _rule_header(p: _Probe) -> Verdict:
    from .export import check_wav_delivery

    if p.kind == "wav":
        prof = p.profile
        problems = check_wav_delivery(p.path, sample_rate=prof.sample_rate, channels=2, bit_depth=prof.bit_depth)
        if problems:
            return "fail", "; ".join(problems)
        return "ok", "plain PCM: 'fmt ' + 'data' only"
    size = p.path.stat().st_size
    with open(p.path, "rb") as fh:
        head = fh.read(10)
        fh.seek(max(0, size - 128))
        tail = fh.read(128)
    id3v1 = len(tail) == 128 and tail[:3] == b"TAG"
    if p.kind == "flac":
        if head[:4] == b"fLaC":
            if id3v1:
                return "fail", "an ID3v1 tag is appended to the FLAC; FLAC carries Vorbis comments only"
            return "ok", "fLaC stream, Vorbis comments"
        if head[:3] == b"ID3":
            return "fail", "an ID3 tag is prepended to the FLAC; FLAC carries Vorbis comments only"
        return "fail", f"does not start with 'fLaC' (starts with {head[:4]!r})"
    fails: list[str] = []
    warns: list[str] = []
    if head[:3] != b"ID3" or len(head) < 10:
        fails.append("no ID3v2 tag at the start; deliver ID3v2.4")
    elif head[3] != 4:
        warns.append(f"ID3v2.{head[3]} tag; the release convention is ID3v2.4")
    if id3v1:
        fails.append("an ID3v1 tag at the end (128-byte 'TAG' block); deliver ID3v2.4 only")
    return _worst(fails, warns, "ID3v2.4, no ID3v1")


def _album_master(p: _Probe) -> dict | None:
    """This profile's master record in release.json when the track was mastered with album gain
    (it then carries `album_lufs`): the track is meant to sit at its own level, not the target."""
    data = p.release.data if p.release is not None else None
    master = (((data or {}).get("masters") or {}).get(p.profile.name) or {}).get("master")
    if isinstance(master, dict) and all(isinstance(master.get(k), (int, float)) for k in ("album_lufs", "integrated_lufs")):
        return master
    return None


def _rule_loudness(p: _Probe) -> Verdict:
    album = _album_master(p)
    if album is not None and abs(album["album_lufs"] - p.profile.integrated_lufs) > LOUDNESS_TOLERANCE_LU + 1e-9:
        return "fail", (f"album gain: the album measures {album['album_lufs']:.2f} LUFS, not "
                        f"{p.profile.integrated_lufs:.1f} ±{LOUDNESS_TOLERANCE_LU:.1f}")
    # album gain: each track is held to its own recorded master level (the album is on target)
    target = album["integrated_lufs"] if album is not None else p.profile.integrated_lufs
    lufs = p.loudness().integrated_lufs
    if p.kind == "mp3":
        low, high = target - LOSSY_LOUDNESS_TOLERANCE_LU, target + LOUDNESS_TOLERANCE_LU
        allowed = f"{low:.1f}..{high:.1f} LUFS for MP3"
    else:
        low, high = target - LOUDNESS_TOLERANCE_LU, target + LOUDNESS_TOLERANCE_LU
        allowed = f"{target:.1f} ±{LOUDNESS_TOLERANCE_LU:.1f} LU"
    if not math.isfinite(lufs):
        return "fail", f"silent (no measurable loudness); target {allowed}"
    detail = f"{lufs:.2f} LUFS (target {allowed})"
    if album is not None:
        detail += f"; album gain, album at {album['album_lufs']:.2f} LUFS"
    if low - 1e-9 <= lufs <= high + 1e-9:
        return "ok", detail
    return "fail", f"{detail}: {lufs - target:+.2f} LU off {target:.1f}"


def _rule_true_peak(p: _Probe) -> Verdict:
    ceiling = p.profile.lossy_true_peak_dbtp if p.kind == "mp3" else p.profile.true_peak_dbtp
    peak = p.loudness().true_peak_dbtp
    detail = f"{peak:.2f} dBTP (ceiling {ceiling:.1f} dBTP{' for MP3' if p.kind == 'mp3' else ''})"
    if peak <= ceiling + 1e-9:
        return "ok", detail
    return "fail", f"{detail}: {peak - ceiling:.2f} dB over"


_REQUIRED_TAGS = ("TITLE", "ARTIST", "GENRE", "DATE", "ALBUMARTIST")
_ADVISED_TAGS = ("ALBUM", "COPYRIGHT", "LABEL")


def _rule_tags(p: _Probe) -> Verdict:
    if p.kind == "wav":
        return "n/a", "delivery WAV carries no tags; see release.json"
    if p.tagged().tags is None:
        return "fail", "no tags at all"
    fails: list[str] = []
    warns: list[str] = []
    missing = [name for name in _REQUIRED_TAGS if p.first(name) is None]
    if missing:
        fails.append("missing " + ", ".join(missing))
    date = p.first("DATE")
    if date is not None and not re.match(r"\d{4}(?:$|-)", date):
        fails.append(f"DATE {date!r} does not start with a four-digit year")
    absent = [name for name in _ADVISED_TAGS if p.first(name) is None]
    if absent:
        warns.append("no " + ", ".join(absent))
    numbers: dict[str, int] = {}
    for name in ("TRACKNUMBER", "TRACKTOTAL"):
        text = p.first(name)
        if text is None:
            continue
        text = text.partition("/")[0].strip() if name == "TRACKNUMBER" else text
        if not text.isdigit() or int(text) < 1:
            fails.append(f"{name} {text!r} is not a whole number >= 1")
        else:
            numbers[name] = int(text)
    if len(numbers) == 2 and numbers["TRACKNUMBER"] > numbers["TRACKTOTAL"]:
        fails.append(f"TRACKNUMBER {numbers['TRACKNUMBER']} is more than TRACKTOTAL {numbers['TRACKTOTAL']}")
    return _worst(fails, warns, f"{p.first('TITLE')!r} by {p.first('ARTIST')!r}, {p.first('DATE')}")


def _check_isrc(text: str | None, fails: list[str], warns: list[str], facts: list[str]) -> None:
    if text is None or not str(text).strip():
        warns.append("no ISRC")
        return
    try:
        isrc = normalise_isrc(str(text))
    except ValueError as exc:
        fails.append(f"ISRC {text!r} is malformed: {exc}")
        return
    if isrc != text:
        warns.append(f"ISRC stored as {text!r}; store it as {isrc}")
    facts.append(f"ISRC {isrc}")


def _check_upc(text: str | None, fails: list[str], warns: list[str], facts: list[str]) -> None:
    if text is None or not str(text).strip():
        warns.append("no UPC/EAN barcode")
        return
    text = str(text)
    try:
        upc = normalise_upc(text)
    except ValueError as exc:
        digits = "".join(text.replace("-", " ").split())
        if digits.isdigit() and len(digits) in (12, 13):
            fails.append(f"UPC/EAN {text!r} has check digit {digits[-1]}; the digits before it give "
                         f"{upc_check_digit(digits[:-1])}")
        else:
            fails.append(f"UPC/EAN {text!r} is malformed: {exc}")
        return
    facts.append(f"UPC {upc}")


def _rule_identifiers(p: _Probe) -> Verdict:
    if p.kind == "wav":
        track = p.release.get("track") if p.release is not None else None
        if not isinstance(track, dict):
            return "n/a", "a delivery WAV carries no tags, and no release.json with a \"track\" record names its ISRC/UPC"
        isrc, upc = track.get("isrc"), track.get("upc")
        where = " (from release.json)"
    else:
        isrc, upc = p.first("ISRC"), p.first("BARCODE")
        where = ""
    fails: list[str] = []
    warns: list[str] = []
    facts: list[str] = []
    _check_isrc(isrc, fails, warns, facts)
    _check_upc(upc, fails, warns, facts)
    return _worst(fails, warns, ", ".join(facts) + where)


def _rule_cover(p: _Probe) -> Verdict:
    if p.kind == "wav":
        return "n/a", "a delivery WAV carries no artwork"
    tagged = p.tagged()
    if p.kind == "flac":
        covers = [(pic.data, pic.mime) for pic in tagged.pictures if pic.type == 3]
    else:
        covers = [(f.data, f.mime) for f in (tagged.tags.getall("APIC") if tagged.tags is not None else [])
                  if int(f.type) == 3]
    if not covers:
        return "fail", "no front cover embedded (picture type 3)"
    warns = [f"{len(covers)} front covers embedded; players show one"] if len(covers) > 1 else []
    data, declared = covers[0]
    verdict, detail = _cover_problems(data, declared)
    if verdict == "fail":
        return "fail", detail
    return _worst([], warns, detail)


def _cover_problems(data: bytes, declared: str) -> Verdict:
    from .export import inspect_cover

    check = inspect_cover(data)
    if check.format is None:
        return "fail", (f"the front cover ({len(data)} bytes, declared {declared or 'no type'}) "
                        + check.problems[0][0])
    fails = [f"the front cover {what}" for what, _ in check.problems]
    if check.mime is not None and declared != check.mime:
        fails.append(f"the front cover is {check.format} but declared {declared!r}")
    return _worst(fails, [], f"{check.format} {check.width}x{check.height} px")


_LRC_STAMP = re.compile(r"\[(\d+):(\d{1,2})(?:[.:](\d{1,3}))?\]")
_LRC_WORD = re.compile(r"<(\d+):(\d{1,2})(?:[.:](\d{1,3}))?>")
_LRC_HEADER = re.compile(r"\[[A-Za-z#][^\]]*\]")


def _lrc_seconds(match: re.Match) -> float:
    minutes, seconds, fraction = int(match[1]), int(match[2]), match[3] or ""
    if seconds >= 60:
        raise ValueError(f"{match[0]} has {seconds} seconds")
    return minutes * 60 + seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def parse_lrc(text: str) -> list[tuple[float, str, tuple[float, ...]]]:
    """(line time, line text, word times) for each timed line of an LRC text, in file order.

    Accepts [mm:ss], [mm:ss.xx] and [mm:ss.xxx] stamps (several on one line give one entry each),
    A2 "enhanced" <mm:ss.xx> word stamps, header tags like [ti:..] and blank lines. Raises
    ValueError naming the line for anything else.
    """
    entries: list[tuple[float, str, tuple[float, ...]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        stamps: list[float] = []
        pos = 0
        try:
            while (match := _LRC_STAMP.match(line, pos)) is not None:
                stamps.append(_lrc_seconds(match))
                pos = match.end()
            rest = line[pos:]
            if not stamps:
                if _LRC_HEADER.fullmatch(line):
                    continue
                raise ValueError("neither a [mm:ss.xx] timed line nor a [tag:value] header")
            words = tuple(_lrc_seconds(m) for m in _LRC_WORD.finditer(rest))
        except ValueError as exc:
            raise ValueError(f"LRC line {number} ({raw.strip()[:60]!r}): {exc}") from None
        lyric = _LRC_WORD.sub("", rest).strip()
        entries.extend((t, lyric, words) for t in stamps)
    return entries


def _lrc_problems(text: str, duration: float | None, what: str) -> tuple[list[str], int]:
    """Problems of an LRC text (order, times past the end); and its number of timed lines."""
    try:
        entries = parse_lrc(text)
    except ValueError as exc:
        return [f"{what}: {exc}"], 0
    if not entries:
        return [f"{what} has no timed lines"], 0
    problems: list[str] = []
    previous = None
    for t, lyric, words in entries:
        if previous is not None and t <= previous:
            problems.append(f"{what}: line {lyric!r} at {t:.2f} s is not after the line before ({previous:.2f} s)")
            break
        previous = t
        if any(b < a for a, b in zip(words, words[1:])):
            problems.append(f"{what}: the word times of {lyric!r} go backwards")
            break
    last = max(max((t, *words)) for t, _, words in entries)
    if duration is not None and last > duration + TIME_SLACK_S:
        problems.append(f"{what}: a time at {last:.2f} s is past the end of the audio ({duration:.2f} s)")
    return problems, len(entries)


def _sylt_problems(frames: list, duration: float | None, rate: int) -> tuple[list[str], int]:
    problems: list[str] = []
    count = 0
    for frame in frames:
        if frame.format == 2:
            times = [ms / 1000.0 for _, ms in frame.text]
        elif frame.format == 1:  # MPEG frames of 1152 samples
            times = [n * 1152 / rate for _, n in frame.text]
        else:
            problems.append(f"SYLT time stamp format {frame.format} is unknown (1 = MPEG frames, 2 = ms)")
            continue
        count += len(times)
        if not times:
            problems.append("SYLT frame has no entries")
            continue
        back = next((i for i in range(1, len(times)) if times[i] < times[i - 1]), None)
        if back is not None:
            problems.append(f"SYLT entry {back + 1} ({frame.text[back][0].strip()!r}) at {times[back]:.3f} s comes "
                            f"before the entry before it ({times[back - 1]:.3f} s)")
        if duration is not None and max(times) > duration + TIME_SLACK_S:
            problems.append(f"SYLT time {max(times):.3f} s is past the end of the audio ({duration:.2f} s)")
    return problems, count


def _ttml_problems(data: bytes, duration: float | None, what: str) -> tuple[list[str], int]:
    from .export import parse_ttml, timed_lines_problems

    try:
        lines = parse_ttml(data, source=what)
    except ExportError as exc:
        return [_short(exc)], 0
    if not lines:
        return [f"{what} has no timed lines"], 0
    problems = [f"{what}: {problem}" for problem in timed_lines_problems(lines)[:3]]
    last = max(max([line.end, *(w.end for w in line.words)]) for line in lines)
    if duration is not None and last > duration + TIME_SLACK_S:
        problems.append(f"{what}: a time at {last:.3f} s is past the end of the audio ({duration:.2f} s)")
    return problems, len(lines)


def _rule_lyrics(p: _Probe) -> Verdict:
    duration = p.duration()
    if p.kind == "wav":
        root = p.release.root if p.release is not None else None
        if root is None:
            return "n/a", "a delivery WAV carries no lyrics, and there is no release.json to find lyrics/ from"
        slug = p.path.name[: -len(p.path.suffix)]
        lrc, ttml = root / "lyrics" / f"{slug}.lrc", root / "lyrics" / f"{slug}.ttml"
        if not lrc.is_file() and not ttml.is_file():
            return "n/a", f"no lyrics/{slug}.lrc or lyrics/{slug}.ttml beside the release"
        fails: list[str] = []
        facts: list[str] = []
        if lrc.is_file():
            problems, count = _lrc_problems(lrc.read_bytes().decode("utf-8", "replace"), duration, lrc.name)
            fails += problems
            facts.append(f"{lrc.name}: {count} lines")
        if ttml.is_file():
            problems, count = _ttml_problems(ttml.read_bytes(), duration, ttml.name)
            fails += problems
            facts.append(f"{ttml.name}: {count} lines")
        return _worst(fails, [], ", ".join(facts) + (f", within {duration:.2f} s" if duration else ""))
    if p.tagged().tags is None:
        return "fail", "no tags, so no lyrics"
    fails = []
    unsynced = p.first("LYRICS")
    if p.kind == "flac":
        synced_text = p.first("SYNCEDLYRICS")
        if unsynced is None and synced_text is None:
            return "warn", "no LYRICS or SYNCEDLYRICS (an instrumental?)"
        if unsynced is None:
            fails.append("LYRICS (unsynced) is missing or empty")
        if synced_text is None:
            fails.append("SYNCEDLYRICS (LRC) is missing")
            count = 0
        else:
            problems, count = _lrc_problems(synced_text, duration, "SYNCEDLYRICS")
            fails += problems
        return _worst(fails, [], f"LYRICS + SYNCEDLYRICS ({count} timed lines)")
    sylt = p.tagged().tags.getall("SYLT")
    if unsynced is None and not sylt:
        return "warn", "no USLT or SYLT lyrics (an instrumental?)"
    if unsynced is None:
        fails.append("USLT (unsynced lyrics) is missing or empty")
    if not sylt:
        fails.append("SYLT (synced lyrics) is missing")
        count = 0
    else:
        problems, count = _sylt_problems(sylt, duration, int(p.tagged().info.sample_rate or 44100))
        fails += problems
    return _worst(fails, [], f"USLT + SYLT ({count} timed entries)")


@dataclass(frozen=True)
class _Disclosure:
    """The AI disclosure fields, from tags or release.json, and the names to report them by.

    `fields` has the keys text, contains, source_type, credits; a field that is absent is _MISSING.
    Credits are JSON text (tags) or a list (release.json).
    """

    fields: dict[str, Any]
    names: dict[str, str]
    comments: list[str] | None = None  # COMMENT / COMM texts (tagged files only)
    absent_fails: bool = True  # tags: an absent field fails; release.json: it warns


def _disclosure_verdict(d: _Disclosure) -> Verdict:
    from .credits import contains_ai_of, source_type_term
    from .export import CONTAINS_AI_VALUES, IPTC_DIGITAL_SOURCE_PREFIX

    n, f = d.names, d.fields
    fails: list[str] = []
    warns: list[str] = []
    facts: list[str] = []
    for key in ("text", "contains", "source_type", "credits"):
        if f[key] is _MISSING:
            (fails if d.absent_fails else warns).append(f"{n[key]} is missing")
    text = f["text"]
    if text is not _MISSING:
        if not isinstance(text, str) or not text.strip():
            fails.append(f"{n['text']} is empty")
        elif d.comments is not None and not any(text.strip() in c for c in d.comments):
            fails.append(f"{n['comments']} does not carry the disclosure text (players show the comment)")
    contains = f["contains"]
    contains_ok = False
    if contains is not _MISSING:
        if contains not in CONTAINS_AI_VALUES:
            fails.append(f"{n['contains']} is {contains!r}; use one of {', '.join(CONTAINS_AI_VALUES)}")
        else:
            contains_ok = True
            facts.append(f"{n['contains']} {contains}")
    term = None
    value = f["source_type"]
    if value is not _MISSING:
        if not isinstance(value, str) or not value.startswith(IPTC_DIGITAL_SOURCE_PREFIX):
            fails.append(f"{n['source_type']} {value!r} is not an IPTC digital source type URI "
                         f"({IPTC_DIGITAL_SOURCE_PREFIX}<term>)")
        elif value[len(IPTC_DIGITAL_SOURCE_PREFIX):] not in IPTC_DIGITAL_SOURCE_TERMS:
            fails.append(f"{n['source_type']} ends in {value[len(IPTC_DIGITAL_SOURCE_PREFIX):]!r}, not a known "
                         f"IPTC term (e.g. {', '.join(IPTC_DIGITAL_SOURCE_TERMS[:4])})")
        else:
            term = value[len(IPTC_DIGITAL_SOURCE_PREFIX):]
            facts.append(term)
    credits = f["credits"]
    if credits is not _MISSING:
        fails_before = len(fails)
        if isinstance(credits, str):
            try:
                credits = json.loads(credits)
            except json.JSONDecodeError as exc:
                fails.append(f"{n['credits']} is not JSON ({exc})")
                credits = _MISSING
        if credits is _MISSING:
            pass
        elif not isinstance(credits, list):
            fails.append(f"{n['credits']} is a JSON {type(credits).__name__}, not a list of stage credits")
        elif not credits:
            warns.append(f"{n['credits']} is an empty list: no stage is credited")
        elif any(not isinstance(c, dict) for c in credits):
            bad = [str(i) for i, c in enumerate(credits, start=1) if not isinstance(c, dict)]
            fails.append(f"{n['credits']} entries {', '.join(bad)} are not objects")
        else:
            for i, credit in enumerate(credits, start=1):
                lacking = [k for k in CREDIT_KEYS if k not in credit]
                if lacking:
                    fails.append(f"{n['credits']} entry {i} ({credit.get('stage', '?')}) lacks {', '.join(lacking)}")
            no_generator = [str(i) for i, c in enumerate(credits, start=1) if not isinstance(c.get("generator"), str)]
            if no_generator:
                fails.append(f"{n['credits']} entries {', '.join(no_generator)} name no generator "
                             "(human, algorithmic, trained), so CONTAINS_AI cannot be checked against them")
            else:
                generators = [c["generator"] for c in credits]
                expected = contains_ai_of(generators)
                if contains_ok and contains != expected:
                    machine = [str(c.get("stage")) for c in credits if c["generator"] != "human"]
                    made = f"machine-made stages: {', '.join(machine)}" if machine else "every stage is human-made"
                    fails.append(f"{n['contains']} is {contains!r} but the credits give {expected!r} ({made})")
                want_term = source_type_term(generators)
                if term is not None and term != want_term:
                    warns.append(f"{n['source_type']} is {term}; the credits suggest {want_term}")
            if len(fails) == fails_before:
                facts.append(f"{len(credits)} credits")
    return _worst(fails, warns, ", ".join(facts))


def _rule_ai(p: _Probe) -> Verdict:
    if p.kind == "wav":
        release = p.release
        if release is None:
            return "fail", "no release.json beside this WAV: its AI disclosure travels there"
        if release.data is None:
            return "fail", f"{release.error}: this WAV's AI disclosure travels there"
        keys = {"text": "disclosure", "contains": "contains_ai", "source_type": "digital_source_type",
                "credits": "credits"}
        if not any(key in release.data for key in keys.values()):
            return "fail", "release.json carries no AI disclosure (disclosure, contains_ai, digital_source_type, credits)"
        d = _Disclosure({what: release.data.get(key, _MISSING) for what, key in keys.items()},
                        names={what: f"release.json {key}" for what, key in keys.items()}, absent_fails=False)
        return _disclosure_verdict(d)
    if p.tagged().tags is None:
        return "fail", "no tags, so no AI disclosure"
    names = {"text": "AI_DISCLOSURE", "contains": "CONTAINS_AI", "source_type": "DIGITAL_SOURCE_TYPE",
             "credits": "AI_CREDITS", "comments": "COMMENT" if p.kind == "flac" else "COMM"}
    values = {what: p.values(names[what]) for what in ("text", "contains", "source_type", "credits")}
    d = _Disclosure({what: found[0].strip() if found else _MISSING for what, found in values.items()},
                    names=names, comments=p.values("COMMENT"))
    return _disclosure_verdict(d)


def _rule_record(p: _Probe) -> Verdict:
    release = p.release
    if release is None:
        return "warn", "no release.json found above this file: nothing to compare it with"
    if release.data is None:
        return "fail", release.error or "release.json cannot be read"
    files = release.data.get("files")
    if not isinstance(files, dict):
        return "fail", f"{release.path} has no \"files\" object"
    root = release.root
    if root is None:
        return "warn", "cannot tell where release.json lies, so not which entry is this file's"
    try:
        key = p.path.resolve().relative_to(root).as_posix()
    except ValueError:
        key = None
    if key is None:
        return "warn", f"this file is outside the release folder of {release.path}"
    entry = files.get(key)
    if entry is None:
        return "warn", f"{release.path.name} does not list {key}"
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        return "fail", f"release.json's entry for {key} has no sha256"
    size = p.path.stat().st_size
    recorded = entry.get("bytes")
    if isinstance(recorded, int) and recorded != size:
        return "fail", f"changed since release.json was written: {size} bytes, recorded {recorded}"
    from .cache import sha256_file

    digest = sha256_file(p.path)
    if digest != entry["sha256"].lower():
        return "fail", (f"changed since release.json was written: sha256 {digest[:12]}..., "
                        f"recorded {entry['sha256'][:12]}...")
    return "ok", f"sha256 {digest[:12]}... and {size} bytes as recorded"


_RULES: dict[str, Callable[[_Probe], Verdict]] = {
    "format": _rule_format,
    "header": _rule_header,
    "loudness": _rule_loudness,
    "true_peak": _rule_true_peak,
    "tags": _rule_tags,
    "identifiers": _rule_identifiers,
    "cover": _rule_cover,
    "lyrics": _rule_lyrics,
    "ai": _rule_ai,
    "record": _rule_record,
}
assert tuple(_RULES) == RULES


# --------------------------------------------------------------------------- public API


def _check(path: Path, profile: DeliveryProfile, release: _Release | None) -> list[CheckResult]:
    probe = _Probe(path, profile, release)
    results: list[CheckResult] = []
    for rule, run in _RULES.items():
        try:
            status, detail = run(probe)
        except _expected_errors() as exc:
            status, detail = "fail", _unreadable(exc, path)
        results.append(CheckResult(path, rule, status, detail))
    return results


def check_file(path: Path, profile: DeliveryProfile, *, release: dict | None = None,
               release_path: Path | None = None) -> list[CheckResult]:
    """Check one delivery file against `profile`: one CheckResult per rule, in RULES order.

    `release` is the parsed release.json covering the file and `release_path` where it lies (its
    "files" paths are relative to the folder two above it). When `release` is None, release.json
    is looked for in the file's folder and up to two folders above (masters/<slug>/release.json).
    """
    path = Path(path)
    if _kind(path) not in ("wav", "flac", "mp3"):
        raise CheckUsageError(f"{path} is not a .wav, .flac or .mp3 file")
    if release is not None:
        found = release_path if release_path is not None else find_release(path)
        record: _Release | None = _Release(Path(found) if found else None, release)
    else:
        found = release_path if release_path is not None else find_release(path)
        record = _load_release(Path(found)) if found is not None else None
    return _check(path, profile, record)


def _audio_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") or part in SKIPPED_FOLDERS for part in relative[:-1]):
            continue
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        found.append(path)
    return found


def check_paths(paths: list[Path], profile_name: str | None) -> list[CheckResult]:
    """Check files and folders (searched recursively for .wav, .flac, .mp3) against a profile.

    `profile_name` None: each file's profile is its folder's name (masters/<slug>/<profile>/).
    Folder searches leave out hidden files and folders, stems/ folders and, when a profile is
    named, files inside another profile's folder; files given by name are always checked.
    Raises CheckUsageError when a path does not exist, no audio file is found, the profile is
    unknown, or a file's profile cannot be told from its folder.
    """
    if profile_name is not None and profile_name not in PROFILES:
        raise CheckUsageError(f"unknown delivery profile {profile_name!r}; use one of {profile_choices()}")
    if not paths:
        raise CheckUsageError("no files or folders to check")
    files: list[Path] = []
    skipped = 0
    for given in map(Path, paths):
        if not given.exists():
            raise CheckUsageError(f"{given} does not exist")
        if given.is_dir():
            for path in _audio_files(given):
                folder = path.parent.name
                if profile_name is not None and folder in PROFILES and folder != profile_name:
                    skipped += 1
                    continue
                files.append(path)
        elif given.suffix.lower() in AUDIO_SUFFIXES:
            files.append(given)
        else:
            raise CheckUsageError(f"{given} is not a .wav, .flac or .mp3 file")
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    if not unique:
        where = ", ".join(str(p) for p in paths)
        extra = f" ({skipped} file(s) in other profiles' folders left out)" if skipped else ""
        raise CheckUsageError(f"no .wav, .flac or .mp3 files found in {where}{extra}")
    plan: list[tuple[Path, DeliveryProfile]] = []
    for path in unique.values():
        name = profile_name if profile_name is not None else path.parent.name
        if name not in PROFILES:
            raise CheckUsageError(
                f"cannot tell the delivery profile of {path}: its folder {path.parent.name!r} is not a profile "
                f"name; give --profile (one of {profile_choices()})"
            )
        plan.append((path, PROFILES[name]))
    releases: dict[Path, _Release] = {}
    results: list[CheckResult] = []
    for path, profile in plan:
        found = find_release(path)
        record = None
        if found is not None:
            if found not in releases:
                releases[found] = _load_release(found)
            record = releases[found]
        results.extend(_check(path, profile, record))
    return results


def failed(results: list[CheckResult]) -> bool:
    """True when any result failed (the CLI exits 1)."""
    return any(r.status == "fail" for r in results)


def summary(results: list[CheckResult]) -> str:
    """One line: how many files, and how many results failed and warned."""
    files = len({r.file for r in results})
    fails = sum(r.status == "fail" for r in results)
    warns = sum(r.status == "warn" for r in results)
    return f"{files} file{'s' if files != 1 else ''} checked: {fails} failed, {warns} warning{'s' if warns != 1 else ''}"


_STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "n/a": "dim"}


def _shown_path(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def results_table(results: list[CheckResult], *, base: Path | None = None) -> Table:
    """A rich Table of the results: file (relative to `base`, default the folder all files share),
    rule, coloured status, detail; the file named on its first row only, a line between files."""
    import os

    from rich.table import Table
    from rich.text import Text

    if base is None:
        folders = [str(r.file.resolve().parent) for r in results]
        base = Path(os.path.commonpath(folders)) if folders else Path.cwd()
    table = Table(show_lines=False, header_style="bold", title=f"in {base}", title_justify="left")
    table.add_column("file", overflow="fold", max_width=40)
    table.add_column("rule", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for index, result in enumerate(results):
        first_of_file = index == 0 or results[index - 1].file != result.file
        last_of_file = index + 1 == len(results) or results[index + 1].file != result.file
        table.add_row(_shown_path(result.file, base) if first_of_file else "", result.rule,
                      Text(result.status.upper(), style=_STATUS_STYLE.get(result.status, "")),
                      result.detail, end_section=last_of_file)
    return table
