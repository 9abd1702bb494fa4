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

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from millamusic.spec.profiles import PROFILES, DeliveryProfile, profile_choices

if TYPE_CHECKING:
    from rich.table import Table

import os

from rich.table import Table
from rich.text import Text

from millamusic.qa.lyric_rules import rule_lyrics
from millamusic.qa.probe import (
    AUDIO_SUFFIXES,
    RULES,
    SKIPPED_FOLDERS,
    CheckResult,
    CheckUsageError,
    Probe,
    Release,
    Unreadable,
    Verdict,
    find_release,
    kind,
    load_release,
    unreadable,
)
from millamusic.qa.rules import (
    rule_ai,
    rule_cover,
    rule_format,
    rule_header,
    rule_identifiers,
    rule_loudness,
    rule_provenance,
    rule_record,
    rule_tags,
    rule_true_peak,
)

_RULES: dict[str, Callable[[Probe], Verdict]] = {
    "format": rule_format,
    "header": rule_header,
    "loudness": rule_loudness,
    "true_peak": rule_true_peak,
    "tags": rule_tags,
    "identifiers": rule_identifiers,
    "cover": rule_cover,
    "lyrics": rule_lyrics,
    "ai": rule_ai,
    "provenance": rule_provenance,
    "record": rule_record,
}


assert tuple(_RULES) == RULES


# --------------------------------------------------------------------------- public API


def _check(path: Path, profile: DeliveryProfile, release: Release | None) -> list[CheckResult]:
    probe = Probe(path, profile, release)
    results: list[CheckResult] = []
    for rule, run in _RULES.items():
        try:
            status, detail = run(probe)
        except Unreadable as exc:  # reading the file failed; a bug in a rule is not caught here
            status, detail = "fail", unreadable(exc.cause, path)
        except OSError as exc:  # a rule reading a file beside it (lyrics, cover): the machine's words
            status, detail = "fail", unreadable(exc, path)
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
    if kind(path) not in ("wav", "flac", "mp3"):
        raise CheckUsageError(f"{path} is not a .wav, .flac or .mp3 file")
    if release is not None:
        found = release_path if release_path is not None else find_release(path)
        record: Release | None = Release(Path(found) if found else None, release)
    else:
        found = release_path if release_path is not None else find_release(path)
        record = load_release(Path(found)) if found is not None else None
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
    releases: dict[Path, Release] = {}
    results: list[CheckResult] = []
    for path, profile in plan:
        found = find_release(path)
        record = None
        if found is not None:
            if found not in releases:
                releases[found] = load_release(found)
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
