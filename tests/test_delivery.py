"""The delivery checker (src/millamusic/delivery.py): a valid release passes; each broken rule fails alone."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from millamusic.core.audio import Audio, resample
from millamusic.qa.check import check_file, check_paths, failed, results_table, summary
from millamusic.qa.lyric_rules import parse_lrc
from millamusic.qa.probe import RULES, CheckResult, CheckUsageError
from millamusic.release.credits import StageCredit
from millamusic.release.distributor import ai_roles
from millamusic.release.flac import write_flac
from millamusic.release.lyric_files import TimedLine, TimedWord, lrc_text, sylt_words, write_lrc
from millamusic.release.mp3 import write_mp3, write_mp3_under
from millamusic.release.pcm import write_wav
from millamusic.release.provenance import sign_masters
from millamusic.release.signing import load_identity
from millamusic.release.tags import IPTC_DIGITAL_SOURCE_PREFIX, ReleaseTags
from millamusic.release.ttml import write_ttml
from millamusic.spec.profiles import PROFILES
from tests.signals import two_tone_mix

RATE = 44100
SLUG = "neon-rain"
PROFILE = PROFILES["spotify"]
IPTC = IPTC_DIGITAL_SOURCE_PREFIX
CREDITS = [
    {"stage": "lyrics", "engine": "human", "model": "-", "version": "-", "licence": "-", "generator": "human",
     "seed": None, "prompt": None, "by": "Milla Virta"},
    {"stage": "melody", "engine": "millamusic-composer", "model": "embedded", "version": "1",
     "licence": "MIT (millamusic)", "generator": "algorithmic", "seed": 11, "prompt": None, "by": None},
    {"stage": "backing", "engine": "arranger", "model": "embedded", "version": "0.1.0",
     "licence": "MIT (millamusic)", "generator": "algorithmic", "seed": 11, "prompt": None, "by": None},
    {"stage": "vocals", "engine": "singer", "model": "espeak-ng + WORLD", "version": "0.1.0",
     "licence": "GPL-3.0-or-later", "generator": "algorithmic", "seed": 11, "prompt": None, "by": None},
]
DISCLOSURE = "Milla Virta is a virtual artist. This recording was made with AI and algorithmic tools."
LINES = [
    TimedLine("First line", 1.5, 3.0, (TimedWord("First", 1.5, 2.0), TimedWord("line", 2.0, 3.0)), "Verse 1"),
    TimedLine("Second line", 4.25, 5.5, (TimedWord("Second", 4.25, 4.9), TimedWord("line", 4.9, 5.5)),
                "Chorus"),
]


def image_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 40, 90)).save(buf, format=fmt)
    return buf.getvalue()


@dataclass(frozen=True)
class Release:
    root: Path

    @property
    def folder(self) -> Path:
        return self.root / "masters" / SLUG / PROFILE.name

    @property
    def wav(self) -> Path:
        return self.folder / f"{SLUG}.wav"

    @property
    def flac(self) -> Path:
        return self.folder / f"{SLUG}.flac"

    @property
    def mp3(self) -> Path:
        return self.folder / f"{SLUG}.320.mp3"

    @property
    def v0(self) -> Path:
        return self.folder / f"{SLUG}.v0.mp3"

    @property
    def release_json(self) -> Path:
        return self.root / "masters" / SLUG / "release.json"

    def record(self, *paths: Path) -> None:
        """Write release.json's files entries for `paths` as they are now (the renderer's job)."""
        data = json.loads(self.release_json.read_text()) if self.release_json.exists() else {}
        for path in paths:
            data.setdefault("files", {})[path.relative_to(self.root).as_posix()] = {
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
        self.release_json.write_text(json.dumps(data, indent=1))


def sign_as_rendered(tags: ReleaseTags, *paths: Path) -> None:
    """Sign delivery files with the tests' local identity, as the export stage does (tags first)."""
    credits = [StageCredit(**credit) for credit in json.loads(tags.ai_credits_json)]
    sign_masters(list(paths), tags=tags, credits=credits, roles=ai_roles(credits), identity=load_identity(),
                 version="test")


@dataclass(frozen=True)
class Made:
    release: Release
    master: Audio
    tags: ReleaseTags


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Made:
    from millamusic.mastering.chain import master

    mastered, _ = master(two_tone_mix(6.0, rate=RATE), PROFILE)
    tags = ReleaseTags(
        title="Neon Rain", artist="Milla Virta", album="First Light", album_artist="Milla Virta",
        track_number=3, track_total=11, disc_number=1, year=2026, genre="Pop Rock", isrc="FI-MLA-26-00042",
        upc="012345678905", composer="Test Composer", lyricist="Milla Virta", copyright="(P) 2026 millamusic",
        label="millamusic", producer="millamusic pipeline", cover_image=image_bytes(1400, 1400),
        cover_mime="image/png", lyrics_text="First line\nSecond line\n", synced_words=sylt_words(LINES),
        synced_lrc=lrc_text(LINES, title="Neon Rain", artist="Milla Virta", length_seconds=6.0),
        disclosure=DISCLOSURE, contains_ai="Partly", digital_source_type=IPTC + "compositeSynthetic",
        ai_credits_json=json.dumps(CREDITS),
    )
    release = Release(tmp_path_factory.mktemp("release"))
    write_wav(mastered, release.wav, bit_depth=PROFILE.bit_depth)
    write_flac(mastered, release.flac, tags)
    for path, mode in ((release.mp3, "cbr320"), (release.v0, "v0")):
        write_mp3_under(mastered, path, tags, mode=mode, max_true_peak_dbtp=PROFILE.lossy_true_peak_dbtp)
    (release.folder / f"{SLUG}.report.png").write_bytes(image_bytes(8, 8))
    sign_as_rendered(tags, release.wav, release.flac, release.mp3, release.v0)
    lyrics = release.root / "lyrics"
    write_lrc(LINES, lyrics / f"{SLUG}.lrc", title="Neon Rain", artist="Milla Virta", length_seconds=6.0)
    write_ttml(LINES, lyrics / f"{SLUG}.ttml", title="Neon Rain", artist="Milla Virta", language="en",
                 length_seconds=6.0)
    release.release_json.write_text(json.dumps({
        "title": "Neon Rain", "slug": SLUG,
        "track": {"title": "Neon Rain", "isrc": tags.isrc, "upc": tags.upc},
        "credits": CREDITS, "contains_ai": "Partly", "digital_source_type": IPTC + "compositeSynthetic",
        "disclosure": DISCLOSURE, "files": {},
    }))
    release.record(release.wav, release.flac, release.mp3, release.v0, lyrics / f"{SLUG}.lrc",
                   lyrics / f"{SLUG}.ttml")
    return Made(release, mastered, tags)


@pytest.fixture
def copy(made: Made, tmp_path: Path) -> Release:
    """A copy of the valid release to break."""
    shutil.copytree(made.release.root, tmp_path / "out")
    return Release(tmp_path / "out")


def by_rule(results: list[CheckResult]) -> dict[str, CheckResult]:
    assert [r.rule for r in results] == list(RULES)
    return {r.rule: r for r in results}


def failing(results: list[CheckResult]) -> set[str]:
    """The failing rules other than provenance: every edit below is made after signing, which
    always breaks the signature too (that row is tests/test_provenance.py's); these tests look at
    the rule each edit is aimed at."""
    return {r.rule for r in results if r.status == "fail" and r.rule != "provenance"}


def check(path: Path) -> dict[str, CheckResult]:
    return by_rule(check_file(path, PROFILE))


# ------------------------------------------------------------------ the valid release


def test_valid_release_passes(made: Made) -> None:
    results = check_paths([made.release.root], None)
    assert {r.file.name for r in results} == {f"{SLUG}.wav", f"{SLUG}.flac", f"{SLUG}.320.mp3", f"{SLUG}.v0.mp3"}
    assert len(results) == 4 * len(RULES)
    assert not failed(results), [r for r in results if r.status == "fail"]
    assert not [r for r in results if r.status == "warn"]
    for result in results:
        expected_na = result.file.suffix == ".wav" and result.rule in ("tags", "cover")
        assert (result.status == "n/a") == expected_na, result
    wav = {r.rule: r for r in results if r.file.suffix == ".wav"}
    assert "LUFS" in wav["loudness"].detail and "-14.0" in wav["loudness"].detail
    assert "release.json contains_ai Partly" in wav["ai"].detail and "from release.json" in wav["identifiers"].detail
    assert f"{SLUG}.lrc" in wav["lyrics"].detail and f"{SLUG}.ttml" in wav["lyrics"].detail
    assert wav["tags"].detail == "delivery WAV carries no tags; see release.json"
    assert "0 failed, 0 warnings" in summary(results)
    # the same with the release record handed in (found for its location) as a CLI might
    given = check_file(made.release.wav, PROFILE, release=json.loads(made.release.release_json.read_text()))
    assert [(r.rule, r.status) for r in given] == [(r.rule, r.status) for r in results if r.file.suffix == ".wav"]


def test_table_and_failed(made: Made) -> None:
    from rich.console import Console

    results = check_file(made.release.flac, PROFILE)
    broken = [*results, CheckResult(made.release.flac, "record", "fail", "changed since release.json was written")]
    assert not failed(results) and failed(broken)
    console = Console(record=True, width=200, color_system=None)
    console.print(results_table(broken, base=made.release.root))
    text = console.export_text()
    assert f"masters/{SLUG}/spotify/{SLUG}.flac" in text
    for word in ("true_peak", "identifiers", "OK", "FAIL", "changed since release.json"):
        assert word in text


# ------------------------------------------------------------------ format / header


def test_48k_wav(made: Made, copy: Release) -> None:
    write_wav(resample(made.master, 48000), copy.wav)
    copy.record(copy.wav)
    results = check(copy.wav)
    assert failing(results.values()) == {"format", "header"}
    assert "48000 Hz" in results["format"].detail and "48000 Hz" in results["header"].detail


def test_16bit_wav_under_spotify(made: Made, copy: Release) -> None:
    write_wav(made.master, copy.wav, bit_depth=16)
    copy.record(copy.wav)
    results = check(copy.wav)
    assert failing(results.values()) == {"format", "header"}
    assert "16-bit" in results["format"].detail


def test_wav_with_list_chunk_after_data(copy: Release) -> None:
    data = bytearray(copy.wav.read_bytes())
    payload = b"INFO" + b"ISFT" + struct.pack("<I", 4) + b"mm\x00\x00"
    data += b"LIST" + struct.pack("<I", len(payload)) + payload
    data[4:8] = struct.pack("<I", len(data) - 8)
    copy.wav.write_bytes(bytes(data))
    copy.record(copy.wav)
    results = check(copy.wav)
    assert failing(results.values()) == {"header"}
    assert "LIST" in results["header"].detail


def test_wave_format_extensible(made: Made, copy: Release) -> None:
    import soundfile as sf

    sf.write(str(copy.wav), made.master.samples.T, RATE, subtype="PCM_24", format="WAVEX")
    copy.record(copy.wav)
    results = check(copy.wav)
    assert failing(results.values()) == {"header"}
    assert "WAVE_FORMAT_EXTENSIBLE" in results["header"].detail


def test_mp3_named_320_but_vbr(copy: Release) -> None:
    shutil.copyfile(copy.v0, copy.mp3)
    copy.record(copy.mp3)
    results = check(copy.mp3)
    assert failing(results.values()) == {"format"}
    assert "not CBR 320" in results["format"].detail


def test_mp3_with_id3v1(copy: Release) -> None:
    with open(copy.v0, "ab") as fh:
        fh.write(b"TAG" + b"Neon Rain".ljust(30, b"\x00") + bytes(95))
    copy.record(copy.v0)
    results = check(copy.v0)
    assert failing(results.values()) == {"header"}
    assert "ID3v1" in results["header"].detail


# ------------------------------------------------------------------ loudness / true peak


def test_loudness_off_by_2_lu(made: Made, copy: Release) -> None:
    write_wav(Audio(made.master.samples * np.float32(10 ** (-2 / 20)), RATE), copy.wav)
    copy.record(copy.wav)
    results = check(copy.wav)
    assert failing(results.values()) == {"loudness"}
    assert "-16.0" in results["loudness"].detail and "-14.0" in results["loudness"].detail


def test_mp3_loudness_window_is_lopsided(made: Made, copy: Release) -> None:
    # an MP3 trimmed for its true peak may sit up to 1 LU under the target, never 0.3 LU over it
    write_mp3(Audio(made.master.samples * np.float32(10 ** (-0.7 / 20)), RATE), copy.mp3, made.tags, mode="cbr320")
    write_mp3(Audio(made.master.samples * np.float32(10 ** (0.6 / 20)), RATE), copy.v0, made.tags, mode="v0")
    copy.record(copy.mp3, copy.v0)
    assert not failing(check(copy.mp3).values())
    assert failing(check(copy.v0).values()) == {"loudness"}


def test_true_peak_over(made: Made, copy: Release) -> None:
    # a short full-scale click: the true peak goes over -1 dBTP, the loudness stays on target
    samples = made.master.samples.copy()
    samples[:, 3 * RATE: 3 * RATE + 4] = 0.98
    write_flac(Audio(samples, RATE), copy.flac, made.tags)
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"true_peak"}
    assert "dBTP" in results["true_peak"].detail and "over" in results["true_peak"].detail


# ------------------------------------------------------------------ tags / identifiers


def flac_edit(path: Path, **fields: str | None) -> None:
    from mutagen.flac import FLAC

    flac = FLAC(path)
    for key, value in fields.items():
        if value is None:
            del flac[key]
        else:
            flac[key] = [value]
    flac.save()


def id3_edit(path: Path, edit) -> None:
    from mutagen.id3 import ID3

    id3 = ID3(path)
    edit(id3)
    id3.save(path, v2_version=4, v1=0)


def test_flac_missing_title(copy: Release) -> None:
    flac_edit(copy.flac, TITLE=None)
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"tags"}
    assert "TITLE" in results["tags"].detail


def test_track_number_over_total(copy: Release) -> None:
    flac_edit(copy.flac, TRACKNUMBER="12")
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"tags"}
    assert "TRACKTOTAL 11" in results["tags"].detail


def test_bad_isrc(copy: Release) -> None:
    flac_edit(copy.flac, ISRC="NOT-AN-ISRC")
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"identifiers"}
    assert "NOT-AN-ISRC" in results["identifiers"].detail


def test_upc_wrong_check_digit(copy: Release) -> None:
    from mutagen.id3 import TXXX, Encoding

    def edit(id3) -> None:
        id3.delall("TXXX:BARCODE")
        id3.add(TXXX(encoding=Encoding.UTF8, desc="BARCODE", text=["012345678906"]))

    id3_edit(copy.mp3, edit)
    copy.record(copy.mp3)
    results = check(copy.mp3)
    assert failing(results.values()) == {"identifiers"}
    assert "check digit 6" in results["identifiers"].detail and "give 5" in results["identifiers"].detail


def test_missing_identifiers_warn(copy: Release) -> None:
    flac_edit(copy.flac, ISRC=None, BARCODE=None)
    copy.record(copy.flac)
    results = check(copy.flac)
    assert not failing(results.values())
    assert results["identifiers"].status == "warn"


# ------------------------------------------------------------------ cover


def flac_cover(path: Path, data: bytes, mime: str = "image/png") -> None:
    from mutagen.flac import FLAC, Picture

    flac = FLAC(path)
    flac.clear_pictures()
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, mime, data
    flac.add_picture(picture)
    flac.save()


@pytest.mark.parametrize("data, words", [
    (image_bytes(1000, 1000), "under the 1400x1400"),
    (b"this is not an image at all", "not a readable image"),
])
def test_flac_cover_bad(copy: Release, data: bytes, words: str) -> None:
    flac_cover(copy.flac, data)
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"cover"}
    assert words in results["cover"].detail


def test_mp3_cover_not_square(copy: Release) -> None:
    from mutagen.id3 import APIC, Encoding, PictureType

    def edit(id3) -> None:
        id3.delall("APIC")
        id3.add(APIC(encoding=Encoding.UTF8, mime="image/jpeg", type=PictureType.COVER_FRONT, desc="Front cover",
                     data=image_bytes(1400, 1200, "JPEG")))

    id3_edit(copy.mp3, edit)
    copy.record(copy.mp3)
    results = check(copy.mp3)
    assert failing(results.values()) == {"cover"}
    assert "1400x1200 px (JPEG), not square" in results["cover"].detail


# ------------------------------------------------------------------ lyrics


def test_mp3_missing_uslt(copy: Release) -> None:
    id3_edit(copy.mp3, lambda id3: id3.delall("USLT"))
    copy.record(copy.mp3)
    results = check(copy.mp3)
    assert failing(results.values()) == {"lyrics"}
    assert "USLT" in results["lyrics"].detail


def test_sylt_beyond_duration(copy: Release) -> None:
    from mutagen.id3 import SYLT, Encoding

    def edit(id3) -> None:
        id3.delall("SYLT")
        id3.add(SYLT(encoding=Encoding.UTF8, lang="eng", format=2, type=1, desc="",
                     text=[("First line", 1500), ("\nSecond line", 9000)]))

    id3_edit(copy.v0, edit)
    copy.record(copy.v0)
    results = check(copy.v0)
    assert failing(results.values()) == {"lyrics"}
    assert "9.000 s is past the end" in results["lyrics"].detail


def test_flac_synced_lyrics_out_of_order(copy: Release) -> None:
    flac_edit(copy.flac, SYNCEDLYRICS="[ti:Neon Rain]\n[00:04.00]Second line\n[00:01.50]First line\n")
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"lyrics"}
    assert "not after" in results["lyrics"].detail


def test_wav_lyrics_file_beyond_duration(copy: Release) -> None:
    lrc = copy.root / "lyrics" / f"{SLUG}.lrc"
    lrc.write_text("[ti:Neon Rain]\n[00:01.50]First line\n[00:09.00]Second line\n", encoding="utf-8")
    results = check(copy.wav)
    assert failing(results.values()) == {"lyrics"}
    assert f"{SLUG}.lrc" in results["lyrics"].detail and "past the end" in results["lyrics"].detail


def test_parse_lrc() -> None:
    text = "\ufeff[ti:X]\n[length:00:06]\n\n[00:01.50]<00:01.50>Hello, <00:02.10>world<00:02.90>\n[01:02.345]Bye\n"
    assert parse_lrc(text) == [(1.5, "Hello, world", (1.5, 2.1, 2.9)), (62.345, "Bye", ())]
    with pytest.raises(ValueError, match="line 2"):
        parse_lrc("[00:01.00]ok\njust text\n")


# ------------------------------------------------------------------ ai


def test_contains_ai_maybe(copy: Release) -> None:
    flac_edit(copy.flac, CONTAINS_AI="Maybe")
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"ai"}
    assert "'Maybe'" in results["ai"].detail


def test_ai_credits_not_json(copy: Release) -> None:
    from mutagen.id3 import TXXX, Encoding

    def edit(id3) -> None:
        id3.delall("TXXX:AI_CREDITS")
        id3.add(TXXX(encoding=Encoding.UTF8, desc="AI_CREDITS", text=["[{stage: lyrics"]))

    id3_edit(copy.mp3, edit)
    copy.record(copy.mp3)
    results = check(copy.mp3)
    assert failing(results.values()) == {"ai"}
    assert "AI_CREDITS is not JSON" in results["ai"].detail


def test_contains_ai_none_with_machine_credits(copy: Release) -> None:
    flac_edit(copy.flac, CONTAINS_AI="None")
    copy.record(copy.flac)
    results = check(copy.flac)
    assert failing(results.values()) == {"ai"}
    assert "'Partly'" in results["ai"].detail and "backing" in results["ai"].detail


def test_wav_ai_from_release_json(copy: Release) -> None:
    data = json.loads(copy.release_json.read_text())
    data["digital_source_type"] = IPTC + "madeUpTerm"
    del data["disclosure"]
    copy.release_json.write_text(json.dumps(data))
    results = check(copy.wav)
    assert failing(results.values()) == {"ai"}
    assert "madeUpTerm" in results["ai"].detail and "release.json disclosure is missing" in results["ai"].detail


def test_wav_without_release_json(copy: Release, tmp_path: Path) -> None:
    lone = tmp_path / "lone" / "spotify" / f"{SLUG}.wav"
    lone.parent.mkdir(parents=True)
    shutil.copyfile(copy.wav, lone)
    results = by_rule(check_paths([lone.parent.parent], None))
    assert failing(results.values()) == {"ai"}
    assert "no release.json beside this WAV" in results["ai"].detail
    assert results["record"].status == "warn"
    assert results["identifiers"].status == results["lyrics"].status == "n/a"


# ------------------------------------------------------------------ record / broken files


def test_wav_edited_after_release_json(copy: Release) -> None:
    data = bytearray(copy.wav.read_bytes())
    data[44 + 3000] ^= 0x01  # one LSB in the data chunk: sounds the same, is not the recorded file
    copy.wav.write_bytes(bytes(data))
    results = check(copy.wav)
    assert failing(results.values()) == {"record"}
    assert "changed since release.json was written" in results["record"].detail


def test_broken_release_json(copy: Release) -> None:
    copy.release_json.write_text("{ not json")
    results = check_paths([copy.folder], "spotify")
    assert {(r.file.suffix, r.rule) for r in results if r.status == "fail"} == {
        (".wav", "ai"), (".wav", "record"), (".flac", "record"), (".mp3", "record")}
    assert all("not valid JSON" in r.detail for r in results if r.status == "fail")


def test_truncated_flac_fails_cleanly(copy: Release) -> None:
    data = copy.flac.read_bytes()
    copy.flac.write_bytes(data[: len(data) // 2])
    results = check(copy.flac)
    assert {"format", "loudness", "true_peak", "record"} <= failing(results.values())
    assert "decode" in results["format"].detail
    assert results["tags"].status == "ok"  # the tags sit before the audio and survive the cut


def test_garbage_files_fail_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "spotify"
    folder.mkdir()
    for name in ("x.wav", "x.flac", "x.320.mp3"):
        (folder / name).write_bytes(b"\x00garbage" * 100)
    (folder / "empty.flac").write_bytes(b"")
    results = check_paths([folder], None)
    assert len(results) == 4 * len(RULES)
    for result in results:
        assert result.status in ("fail", "warn", "n/a"), result
    assert all(r.status == "fail" for r in results if r.rule in ("format", "header", "loudness"))


# ------------------------------------------------------------------ usage errors


def test_profile_given_skips_other_profiles_folders(copy: Release) -> None:
    shutil.copytree(copy.folder, copy.folder.parent / "apple")
    results = check_paths([copy.root], "spotify")
    assert {r.file.parent.name for r in results} == {"spotify"}
    with pytest.raises(CheckUsageError, match="other profiles' folders"):
        check_paths([copy.folder.parent / "apple"], "spotify")


def test_usage_errors(copy: Release, tmp_path: Path) -> None:
    with pytest.raises(CheckUsageError, match="does not exist"):
        check_paths([tmp_path / "nowhere"], "spotify")
    with pytest.raises(CheckUsageError, match="unknown delivery profile 'tidal'.*spotify, apple"):
        check_paths([copy.folder], "tidal")
    with pytest.raises(CheckUsageError, match="no .wav, .flac or .mp3 files"):
        check_paths([copy.root / "lyrics"], "spotify")
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copyfile(copy.wav, loose / "song.wav")
    with pytest.raises(CheckUsageError, match="cannot tell the delivery profile.*'loose'.*--profile"):
        check_paths([loose], None)
    with pytest.raises(CheckUsageError, match="not a .wav, .flac or .mp3"):
        check_paths([copy.release_json], "spotify")
    assert issubclass(CheckUsageError, ValueError)
