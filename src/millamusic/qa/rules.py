"""The delivery rules: format, header, loudness, true peak, tags, identifiers, cover, AI disclosure, record."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from millamusic.spec.identifiers import normalise_isrc, normalise_upc, upc_check_digit
from millamusic.spec.profiles import LOSSY_LOUDNESS_TOLERANCE_LU, LOUDNESS_TOLERANCE_LU

if TYPE_CHECKING:

    pass
from mutagen.id3 import ID3, ID3NoHeaderError
from mutagen.mp3 import BitrateMode

from millamusic.core.cache import sha256_file
from millamusic.qa.probe import (
    CREDIT_KEYS,
    IPTC_DIGITAL_SOURCE_TERMS,
    MISSING,
    MP3_CBR_BITRATE,
    Probe,
    Unreadable,
    Verdict,
    mp3_mode,
    unreadable,
    worst,
)
from millamusic.release.credits import contains_ai_of, source_type_term
from millamusic.release.pcm import check_wav_delivery
from millamusic.release.provenance import read_provenance
from millamusic.release.signing import SELF_SIGNED_ORG
from millamusic.release.tags import CONTAINS_AI_VALUES, IPTC_DIGITAL_SOURCE_PREFIX
from millamusic.spec.artwork import inspect_cover


def rule_format(p: Probe) -> Verdict:
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

        mp3 = p.tagged().info
        mode = mp3_mode(p.path)
        shown = {BitrateMode.CBR: "CBR", BitrateMode.VBR: "VBR", BitrateMode.ABR: "ABR"}.get(mp3.bitrate_mode, "mode unknown")
        kbps = round(mp3.bitrate / 1000)
        facts.append(f"{shown} {kbps} kbps")
        if mode == "cbr320" and not (mp3.bitrate_mode == BitrateMode.CBR and abs(mp3.bitrate - MP3_CBR_BITRATE) <= 1000):
            fails.append(f"named .320.mp3 but it is {shown} {kbps} kbps, not CBR 320 kbps")
        if mode == "v0" and mp3.bitrate_mode != BitrateMode.VBR:
            fails.append(f"named .v0.mp3 but it is {shown} {kbps} kbps, not VBR (LAME V0)")
    try:
        audio = p.audio()
    except Unreadable as exc:
        fails.append(unreadable(exc.cause, p.path))
    else:
        seconds = audio.seconds
        facts.append(f"{seconds:.2f} s")
        if audio.frames == 0:
            fails.append("no audio (0 frames)")
        # MP3 headers may estimate the length; PCM headers state it exactly
        slack = 2 * 1152 if p.kind == "mp3" else 0
        if info.frames > 0 and audio.frames + slack < info.frames:
            fails.append(f"truncated: decodes {audio.frames} of the {info.frames} frames its header declares")
    return worst(fails, [], ", ".join(facts))


def rule_header(p: Probe) -> Verdict:
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
            frames = _leading_id3_frames(p.path)
            if frames == ["GEOB:c2pa manifest store"]:
                return "ok", "fLaC stream, Vorbis comments; Content Credentials in a leading ID3 tag (libFLAC skips it)"
            return "fail", (f"an ID3 tag ({', '.join(frames) or 'empty'}) is prepended to the FLAC; FLAC carries Vorbis "
                            "comments only (a leading ID3 tag may hold only the C2PA manifest)")
        return "fail", f"does not start with 'fLaC' (starts with {head[:4]!r})"
    fails: list[str] = []
    warns: list[str] = []
    if head[:3] != b"ID3" or len(head) < 10:
        fails.append("no ID3v2 tag at the start; deliver ID3v2.4")
    elif head[3] != 4:
        warns.append(f"ID3v2.{head[3]} tag; the release convention is ID3v2.4")
    if id3v1:
        fails.append("an ID3v1 tag at the end (128-byte 'TAG' block); deliver ID3v2.4 only")
    return worst(fails, warns, "ID3v2.4, no ID3v1")


def _leading_id3_frames(path) -> list[str]:
    """The frames of an ID3v2 tag at the start of a file (where c2pa-rs keeps a FLAC's manifest)."""
    try:
        return sorted(ID3(path).keys())
    except ID3NoHeaderError:
        return []


def _album_master(p: Probe) -> dict | None:
    """This profile's master record in release.json when the track was mastered with album gain
    (it then carries `album_lufs`): the track is meant to sit at its own level, not the target."""
    data = p.release.data if p.release is not None else None
    master = (((data or {}).get("masters") or {}).get(p.profile.name) or {}).get("master")
    if isinstance(master, dict) and all(isinstance(master.get(k), (int, float)) for k in ("album_lufs", "integrated_lufs")):
        return master
    return None


def rule_loudness(p: Probe) -> Verdict:
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


def rule_true_peak(p: Probe) -> Verdict:
    ceiling = p.profile.lossy_true_peak_dbtp if p.kind == "mp3" else p.profile.true_peak_dbtp
    peak = p.loudness().true_peak_dbtp
    detail = f"{peak:.2f} dBTP (ceiling {ceiling:.1f} dBTP{' for MP3' if p.kind == 'mp3' else ''})"
    if peak <= ceiling + 1e-9:
        return "ok", detail
    return "fail", f"{detail}: {peak - ceiling:.2f} dB over"


_REQUIRED_TAGS = ("TITLE", "ARTIST", "GENRE", "DATE", "ALBUMARTIST")
_ADVISED_TAGS = ("ALBUM", "COPYRIGHT", "LABEL")


def rule_tags(p: Probe) -> Verdict:
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
    return worst(fails, warns, f"{p.first('TITLE')!r} by {p.first('ARTIST')!r}, {p.first('DATE')}")


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


def rule_identifiers(p: Probe) -> Verdict:
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
    return worst(fails, warns, ", ".join(facts) + where)


def rule_cover(p: Probe) -> Verdict:
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
    return worst([], warns, detail)


def _cover_problems(data: bytes, declared: str) -> Verdict:
    check = inspect_cover(data)
    if check.format is None:
        return "fail", (f"the front cover ({len(data)} bytes, declared {declared or 'no type'}) "
                        + check.problems[0][0])
    fails = [f"the front cover {what}" for what, _ in check.problems]
    if check.mime is not None and declared != check.mime:
        fails.append(f"the front cover is {check.format} but declared {declared!r}")
    return worst(fails, [], f"{check.format} {check.width}x{check.height} px")


@dataclass(frozen=True)
class _Disclosure:
    """The AI disclosure fields, from tags or release.json, and the names to report them by.

    `fields` has the keys text, contains, source_type, credits; a field that is absent is MISSING.
    Credits are JSON text (tags) or a list (release.json).
    """

    fields: dict[str, Any]
    names: dict[str, str]
    comments: list[str] | None = None  # COMMENT / COMM texts (tagged files only)
    absent_fails: bool = True  # tags: an absent field fails; release.json: it warns


def _disclosure_verdict(d: _Disclosure) -> Verdict:
    n, f = d.names, d.fields
    fails: list[str] = []
    warns: list[str] = []
    facts: list[str] = []
    for key in ("text", "contains", "source_type", "credits"):
        if f[key] is MISSING:
            (fails if d.absent_fails else warns).append(f"{n[key]} is missing")
    text = f["text"]
    if text is not MISSING:
        if not isinstance(text, str) or not text.strip():
            fails.append(f"{n['text']} is empty")
        elif d.comments is not None and not any(text.strip() in c for c in d.comments):
            fails.append(f"{n['comments']} does not carry the disclosure text (players show the comment)")
    contains = f["contains"]
    contains_ok = False
    if contains is not MISSING:
        if contains not in CONTAINS_AI_VALUES:
            fails.append(f"{n['contains']} is {contains!r}; use one of {', '.join(CONTAINS_AI_VALUES)}")
        else:
            contains_ok = True
            facts.append(f"{n['contains']} {contains}")
    term = None
    value = f["source_type"]
    if value is not MISSING:
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
    if credits is not MISSING:
        fails_before = len(fails)
        if isinstance(credits, str):
            try:
                credits = json.loads(credits)
            except json.JSONDecodeError as exc:
                fails.append(f"{n['credits']} is not JSON ({exc})")
                credits = MISSING
        if credits is MISSING:
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
    return worst(fails, warns, ", ".join(facts))


def rule_ai(p: Probe) -> Verdict:
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
        d = _Disclosure({what: release.data.get(key, MISSING) for what, key in keys.items()},
                        names={what: f"release.json {key}" for what, key in keys.items()}, absent_fails=False)
        return _disclosure_verdict(d)
    if p.tagged().tags is None:
        return "fail", "no tags, so no AI disclosure"
    names = {"text": "AI_DISCLOSURE", "contains": "CONTAINS_AI", "source_type": "DIGITAL_SOURCE_TYPE",
             "credits": "AI_CREDITS", "comments": "COMMENT" if p.kind == "flac" else "COMM"}
    values = {what: p.values(names[what]) for what in ("text", "contains", "source_type", "credits")}
    d = _Disclosure({what: found[0].strip() if found else MISSING for what, found in values.items()},
                    names=names, comments=p.values("COMMENT"))
    return _disclosure_verdict(d)


def rule_record(p: Probe) -> Verdict:
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

    digest = sha256_file(p.path)
    if digest != entry["sha256"].lower():
        return "fail", (f"changed since release.json was written: sha256 {digest[:12]}..., "
                        f"recorded {entry['sha256'][:12]}...")
    return "ok", f"sha256 {digest[:12]}... and {size} bytes as recorded"


def rule_provenance(p: Probe) -> Verdict:
    """Signed Content Credentials: present, bound to these exact bytes, and saying what the tags and
    release.json say (the credits, ContainsAI)."""
    if p.kind not in ("wav", "flac", "mp3"):
        return "n/a", "only audio files carry Content Credentials"
    provenance = read_provenance(p.path)
    if provenance.state == "unreadable":
        return "fail", f"the Content Credentials cannot be read ({provenance.failures[0]})"
    if not provenance.present:
        return "fail", ("no Content Credentials (C2PA manifest): the file was never signed or the manifest was "
                        "stripped; deliver the file millamusic exported")
    if "assertion.dataHash.mismatch" in provenance.failures:
        return "fail", ("the file changed after it was signed (assertion.dataHash.mismatch): its audio or tags were "
                        "edited; change the spec and render again instead of editing the file")
    if provenance.failures:
        return "fail", f"the Content Credentials do not validate: {', '.join(provenance.failures)}"
    said = provenance.credits
    fails = []
    sources = []
    if p.kind != "wav" and p.tagged().tags is not None:
        sources.append(("the tags", p.first("AI_CREDITS"), p.first("CONTAINS_AI")))
    if p.release is not None and p.release.data is not None:
        record = p.release.data
        sources.append(("release.json", json.dumps(record.get("credits")), record.get("contains_ai")))
    for where, credits_text, contains in sources:
        try:
            credits = json.loads(credits_text) if credits_text else None
        except ValueError:
            credits = None
        if credits != said.get("credits"):
            fails.append(f"the manifest's stage credits differ from {where}'")
        if contains != said.get("contains_ai"):
            fails.append(f"the manifest says ContainsAI {said.get('contains_ai')!r}, {where} {contains!r}")
    if fails:
        return "fail", "; ".join(fails)
    who = provenance.signer + (" (a local self-signed identity: proves the bytes, not the signer)"
                               if SELF_SIGNED_ORG in provenance.signer else
                               " (not on a trust list)" if provenance.untrusted else "")
    stages = ", ".join(f"{c['stage']} {c['generator']}" for c in said.get("credits", []))
    agree = " and ".join(where for where, _, _ in sources) or "nothing else"
    return "ok", f"signed by {who}; bound to these bytes; {stages}; agrees with {agree}"
