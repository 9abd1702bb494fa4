"""Faults: a damaged cache entry is found and recomputed; a full disk or a crashing engine fails the
run with a clear message (no traceback), keeps no half entry and never leaves a half-published
master. (A killed build is tests/test_album_resume.py's.)

Real renders of conftest's short song. One render is made for the module; each test works on a
copy of it (the spec, the published catalogue and the stage cache), so most runs are cache hits.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import millamusic.core.audio as audio_module
import millamusic.core.files as files_module
import millamusic.pipeline.publish as publish_module
import millamusic.pipeline.render as render_module
from millamusic.cli import main
from millamusic.core.audio import save_npy
from millamusic.core.cache import ENTRY_FILE, StageCache, _legacy_content_hash, read_entry
from millamusic.release.provenance import unsigned_bytes
from tests.conftest import SHORT_SONG

pytestmark = pytest.mark.slow  # whole renders under injected faults: 1-3 s each

SLUG = "tiny-test-song"
PUBLISHED = ("masters", "stems", "lyrics")
# Deterministic for the same inputs (release.json holds timestamps and timings; report.png is a plot).
SAME_BYTES = (".wav", ".flac", ".mp3", ".lrc", ".ttml", ".txt", ".mid")


def _disk_full(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([str(path)] if path is not None else []))


# --- helpers --------------------------------------------------------------------------------------


class Project:
    """A copy of the module's render: songs/tiny.yaml, out/ (masters, stems, lyrics) and cache/."""

    def __init__(self, root: Path):
        self.root, self.spec, self.out, self.cache = root, root / "songs" / "tiny.yaml", root / "out", root / "cache"

    def render(self, *args: str):
        """`millamusic render --json` in this process (so monkeypatched faults apply)."""
        return CliRunner().invoke(main, ["render", str(self.spec), "--out", str(self.out),
                                         "--cache-dir", str(self.cache), "--json", *args])

    def rendered(self, *args: str) -> dict:
        result = self.render(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def published(self, *, signed: bool = True) -> dict[str, bytes]:
        """Relative path -> bytes of every file under masters/, stems/ and lyrics/; `signed=False`:
        a master's without its C2PA manifest, which every export signs afresh (a new salt and
        nonce), so only a re-exported master's audio and tags can be the same bytes."""
        def read(p: Path) -> bytes:
            return p.read_bytes() if signed or p.parent.parent.parent.name != "masters" else unsigned_bytes(p)

        return {p.relative_to(self.out).as_posix(): read(p) for folder in PUBLISHED
                for p in sorted((self.out / folder).rglob("*")) if p.is_file()}

    def entries(self, stage: str) -> list[Path]:
        folder = self.cache / stage
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []

    def entry(self, stage: str) -> Path:
        (found,) = self.entries(stage)
        return found

    def hidden(self) -> list[str]:
        """Temp names left anywhere (staging folders, half-built entries, temp files). OUT/.millamusic (the
        render stamps, pipeline.stamp) is millamusic's own folder, not a temp name: only what is in it counts."""
        return sorted(str(p) for base in (self.out, self.cache) if base.is_dir() for p in base.rglob(".*")
                      if p != self.out / ".millamusic")

    def set_lyric(self, line: str) -> None:
        text = self.spec.read_text()
        assert "Spin me round again" in text
        self.spec.write_text(text.replace("Spin me round again", line))


def _failed(result, code: int) -> str:
    """The failed run's output, after checking its exit code and that it printed no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), f"not a clean exit: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output, result.output
    return " ".join(result.output.split())  # rich wraps long lines


def _assert_release_matches_its_folder(out: Path, *, outside: bool = True) -> None:
    """masters/<slug>/release.json lists exactly the files in its folder, each as it is on disk (and,
    with `outside`, the stems and lyrics it lists too)."""
    folder = out / "masters" / SLUG
    release = json.loads((folder / "release.json").read_text())
    listed = {name for name in release["files"] if name.startswith(f"masters/{SLUG}/")}
    present = {p.relative_to(out).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "release.json"}
    assert listed == present, (sorted(listed ^ present), "release.json and masters/ disagree")
    for name, record in release["files"].items():
        path = out / name
        if name in present or outside:
            data = path.read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (record["bytes"], record["sha256"]), name


def _stages(summary: dict) -> dict[str, tuple[bool, str]]:
    return {stage["name"]: (stage["cached"], stage["why"]) for stage in summary["stages"]}


@pytest.fixture(scope="module")
def first_render(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("faults")
    project = Project(base)
    project.spec.parent.mkdir()
    project.spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=3, extra=""))
    summary = project.rendered()
    assert not any(cached for cached, _ in _stages(summary).values())
    assert not project.hidden(), project.hidden()
    return base


@pytest.fixture
def project(first_render, tmp_path) -> Project:
    shutil.copytree(first_render, tmp_path / "p", symlinks=True)
    return Project(tmp_path / "p")


# --- corrupt cache entries ------------------------------------------------------------------------


def _flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _entry_with_file(tmp_path: Path) -> tuple[StageCache, list[int], callable]:
    cache = StageCache(tmp_path / "cache")
    calls: list[int] = []

    def produce(folder: Path) -> None:
        calls.append(1)
        (folder / "mix.npy").write_bytes(bytes(range(256)) * 64)
        (folder / "sub").mkdir()
        (folder / "sub" / "mix.json").write_text('{"lufs": -14}')

    return cache, calls, lambda: cache.run("mix", {"a": 1}, produce, label="song")


UNREADABLE = "entry.json cannot be read (not the JSON millamusic writes)"
DAMAGE = {  # what is done to a sound entry -> the reason its next use must give
    "flipped byte": (lambda e: _flip_byte(e / "mix.npy"), "mix.npy checksum mismatch"),
    "flipped last byte": (lambda e: _flip_byte(e / "mix.npy", -1), "mix.npy checksum mismatch"),
    "truncated": (lambda e: os.truncate(e / "mix.npy", 100), "mix.npy is 100 bytes, recorded 16384"),
    "missing file": (lambda e: (e / "sub" / "mix.json").unlink(), "sub/mix.json is missing"),
    "extra file": (lambda e: (e / "stray.npy").write_bytes(b"x"), "stray.npy is not one of the entry's files"),
    "garbage entry.json": (lambda e: (e / ENTRY_FILE).write_bytes(b"\x00\xffnot json"), UNREADABLE),
    "empty entry.json": (lambda e: (e / ENTRY_FILE).write_bytes(b""), UNREADABLE),
    "entry.json not an object": (lambda e: (e / ENTRY_FILE).write_text("[1, 2]"), UNREADABLE),
    "no entry.json": (lambda e: (e / ENTRY_FILE).unlink(), "entry.json is missing"),
    "edited entry.json": (lambda e: (e / ENTRY_FILE).write_text((e / ENTRY_FILE).read_text().replace(
        '"content_hash": "', '"content_hash": "0')), "entry.json checksum mismatch"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_named_moved_aside_and_recomputed(tmp_path, damage):
    _, calls, run = _entry_with_file(tmp_path)
    first = run()
    assert (first.hit, len(calls)) == (False, 1)
    harm, reason = DAMAGE[damage]
    harm(first.path)
    again = run()
    assert (again.hit, len(calls)) == (False, 2), "a damaged entry was used"
    assert again.why == f"cache entry corrupt: {reason}; recomputed"
    assert again.content_hash == first.content_hash  # the same inputs made the same files again
    record, problem = read_entry(again.path)
    assert problem is None and record["files"]["mix.npy"]["bytes"] == 16384
    assert sorted(os.listdir(tmp_path / "cache" / "mix")) == [first.key], "the damaged entry was left behind"
    third = run()
    assert (third.hit, third.why, len(calls)) == (True, "", 2)


def test_status_lookup_checks_sizes_and_render_checks_bytes(tmp_path):
    """`lookup` (what `status` uses) stats every file; `verify=True` (what a render's hit does) hashes."""
    cache, _, run = _entry_with_file(tmp_path)
    entry = run()
    _flip_byte(entry.path / "mix.npy")
    assert cache.lookup("mix", {"a": 1}) is not None  # same size: only hashing finds it
    assert cache.lookup("mix", {"a": 1}, verify=True) is None
    os.truncate(entry.path / "mix.npy", 10)
    assert cache.lookup("mix", {"a": 1}) is None
    assert entry.path.is_dir(), "lookup computes and changes nothing"


def test_entries_written_before_file_records_still_hit_and_are_still_checked(tmp_path):
    _, calls, run = _entry_with_file(tmp_path)
    entry = run()
    record_path = entry.path / ENTRY_FILE
    record = json.loads(record_path.read_text())
    old = {k: v for k, v in record.items() if k not in ("files", "record_sha256")}  # millamusic before this change
    old["content_hash"] = _legacy_content_hash(entry.path)  # which hashed names and bytes in one pass
    record_path.write_text(json.dumps(old))
    hit = run()
    assert (hit.hit, hit.content_hash, len(calls)) == (True, old["content_hash"], 1)
    assert json.loads(record_path.read_text())["files"] == record["files"], "the old entry got its file records"
    record_path.write_text(json.dumps(old))
    _flip_byte(entry.path / "mix.npy")
    again = run()
    assert (again.hit, len(calls)) == (False, 2)
    assert again.why == "cache entry corrupt: files do not match the recorded content hash; recomputed"


def test_corrupt_entries_in_a_real_render_are_recomputed_to_the_same_release(project):
    before = project.published(signed=False)
    harm = {
        "compose": lambda e: (e / ENTRY_FILE).write_text("{ garbage"),
        "backing": lambda e: os.truncate(e / "drums.flac", 1000),
        "stems": lambda e: (e / "stems.json").unlink(),
        "mix": lambda e: _flip_byte(e / "mix.npy"),
        "export": lambda e: _flip_byte(e / f"{SLUG}.flac", 5000),
    }
    for stage, damage in harm.items():
        damage(project.entry(stage))
    stages = _stages(project.rendered())
    assert stages == {
        "compose": (False, f"cache entry corrupt: {UNREADABLE}; recomputed"),
        "backing": (False, stages["backing"][1]),
        "vocals": (True, ""),
        "stems": (False, "cache entry corrupt: stems.json is missing; recomputed"),
        "mix": (False, "cache entry corrupt: mix.npy checksum mismatch; recomputed"),
        "lyrics": (True, ""),
        "master[spotify]": (True, ""),  # the recomputed mix is the same bytes: the master's key holds
        "export[spotify]": (False, f"cache entry corrupt: {SLUG}.flac checksum mismatch; recomputed"),
    }
    assert stages["backing"][1].startswith("cache entry corrupt: drums.flac is 1000 bytes, recorded ")
    after = project.published(signed=False)
    assert sorted(after) == sorted(before)
    different = [name for name in after if name.endswith(SAME_BYTES) and after[name] != before[name]]
    assert not different, f"recomputed entries gave other files: {different}"
    for stage in harm:
        assert read_entry(project.entry(stage))[1] is None
    _assert_release_matches_its_folder(project.out)
    assert not project.hidden(), project.hidden()
    assert all(cached for cached, _ in _stages(project.rendered()).values())


def test_large_files_are_checked_when_read_not_on_every_hit(tmp_path, monkeypatch):
    """Audio files (over EAGER_VERIFY_BYTES) are hashed when a stage reads them, not on every hit."""
    from millamusic.core import cache as cache_module

    monkeypatch.setattr(cache_module, "EAGER_VERIFY_BYTES", 1000)  # mix.npy (16 KiB) counts as large
    _, calls, run = _entry_with_file(tmp_path)
    first = run()
    assert first.verified("mix.npy") == first.path / "mix.npy"  # hashed when stored: nothing to check
    _flip_byte(first.path / "mix.npy")
    hit = run()
    assert (hit.hit, len(calls)) == (True, 1), "a large file is not hashed on the hit"
    assert hit.verified("sub/mix.json").is_file()  # small: already hashed with the hit
    with pytest.raises(cache_module.CorruptEntry, match="mix.npy checksum mismatch"):
        hit.verified("mix.npy")
    with pytest.raises(cache_module.CorruptEntry, match="mix.npy checksum mismatch"):
        hit.copy_verified("mix.npy", tmp_path / "copy.npy")


def test_a_corrupt_file_found_when_read_is_recomputed_and_the_render_goes_on(project, monkeypatch):
    """With every file treated as large: a flipped byte in the mix is harmless while nothing reads it
    (an unchanged re-render), and found, moved aside and recomputed when a master reads it; a
    flipped byte in an export is found when publish copies it."""
    from millamusic.core import cache as cache_module

    monkeypatch.setattr(cache_module, "EAGER_VERIFY_BYTES", 0)
    project.rendered()  # the copy's release.json names the copy's spec
    before = project.published()
    unsigned_before = project.published(signed=False)
    _flip_byte(project.entry("mix") / "mix.npy")
    assert all(cached for cached, _ in _stages(project.rendered()).values())
    assert project.published() == before, "an unchanged re-render publishes nothing"

    result = project.render("--profile", "apple")  # master[apple] reads the mix
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "cache entry corrupt: mix.npy checksum mismatch; moved aside, rendering again" in shown, shown
    stages = _stages(json.loads(result.stdout))
    assert stages["mix"] == (False, "cache entry corrupt: mix.npy checksum mismatch; recomputed")
    assert stages["master[apple]"][0] is False and stages["vocals"] == (True, "")
    assert read_entry(project.entry("mix"))[1] is None
    _assert_release_matches_its_folder(project.out)

    (spotify,) = [e for e in project.entries("export") if json.loads((e / ENTRY_FILE).read_text())
                  ["inputs"]["profile"]["name"] == "spotify"]
    _flip_byte(spotify / f"{SLUG}.flac", 5000)
    stages = _stages(project.rendered("--profile", "spotify"))  # publish copies the spotify files again
    assert stages["export[spotify]"] == (False, f"cache entry corrupt: {SLUG}.flac checksum mismatch; recomputed")
    after = project.published(signed=False)  # the re-exported masters are signed afresh
    assert sorted(after) == sorted(unsigned_before)
    assert [name for name in after if after[name] != unsigned_before[name]] == [f"masters/{SLUG}/release.json"]
    _assert_release_matches_its_folder(project.out)
    assert not project.hidden(), project.hidden()


def _stats(out: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for folder in PUBLISHED for p in sorted((out / folder).rglob("*")) if p.is_file()}


def test_publish_writes_only_what_changed(project):
    """An unchanged re-render writes nothing; a new mastering target leaves the stems and lyrics
    alone; a published file edited afterwards is put back."""
    project.rendered()  # the copy's release.json names the copy's spec
    before, unsigned = _stats(project.out), project.published(signed=False)
    project.rendered()
    assert _stats(project.out) == before, "an unchanged re-render wrote files"

    project.rendered("--profile", "apple")
    after = _stats(project.out)
    kept = [name for name in before if name.startswith(("stems/", "lyrics/"))]
    assert {name: after[name] for name in kept} == {name: before[name] for name in kept}, "stems or lyrics rewritten"
    assert not any(name.startswith(f"masters/{SLUG}/spotify/") for name in after)
    _assert_release_matches_its_folder(project.out)

    project.rendered("--profile", "spotify")
    wav = project.out / "masters" / SLUG / "spotify" / f"{SLUG}.wav"
    cached = [e / wav.name for e in project.entries("export") if (e / wav.name).is_file()]
    assert wav.stat().st_ino in {c.stat().st_ino for c in cached}, "published by hard link, not copied"
    _flip_byte(wav, 100)  # same size, later mtime: a hand edit
    (project.out / "stems" / SLUG / "bass.wav").unlink()
    project.rendered("--profile", "spotify")
    # the hand edit reached the cache entry through the hard link: the export ran again and signed afresh
    assert project.published(signed=False) == {**unsigned, f"masters/{SLUG}/release.json": project.published()[
        f"masters/{SLUG}/release.json"]}, "the edited and the deleted file were not put back"
    _assert_release_matches_its_folder(project.out)
    assert not project.hidden(), project.hidden()


def test_a_lyric_edit_leaves_the_backing_stems_alone(project, monkeypatch):
    """Only the vocals' stems are made again: the stems stage takes the backing's WAV hashes from the
    last stems entry and the new vocals' from what the vocals stage recorded (no decoding), and publish
    leaves the backing's published WAVs in place (same inodes)."""
    project.rendered()  # the copy's release.json names the copy's spec
    (before,) = project.entries("stems")
    published = {p.name: p.stat().st_ino for p in (project.out / "stems" / SLUG).glob("*.wav")}
    decoded: list[str] = []
    real = render_module.stem_wav_record
    monkeypatch.setattr(render_module, "stem_wav_record", lambda source: decoded.append(source.name) or real(source))
    project.set_lyric("Spin me round and round")
    stages = _stages(project.rendered())
    assert stages["backing"] == (True, "") and stages["stems"][0] is False
    (after,) = [entry for entry in project.entries("stems") if entry != before]
    backing = set(json.loads((project.entry("backing") / "backing.json").read_text())["stems"])
    vocals = {name for name in published if name[:-4] not in backing}
    assert backing and vocals and decoded == []
    old, new = (json.loads((entry / "stems.json").read_text())["stems"] for entry in (before, after))
    assert {name: new[name] for name in backing} == {name: old[name] for name in backing}
    now = {p.name: p.stat().st_ino for p in (project.out / "stems" / SLUG).glob("*.wav")}
    assert {name for name in now if now[name] == published[name]} == {f"{name}.wav" for name in backing}
    assert read_entry(after)[1] is None and not list(after.glob("*.wav")), "the stems entry holds WAVs"
    _assert_release_matches_its_folder(project.out)


def test_published_stem_wavs_are_the_stem_flacs_samples(project):
    """stems/<slug>/<name>.wav holds the 24-bit integers of the backing's or vocals' <name>.flac, byte
    for byte what the delivery WAV writer gives the stem as the engine made it, rounded to 24 bits."""
    import soundfile

    from millamusic.core.audio import load_pcm24
    from millamusic.release.pcm import check_wav_delivery, write_wav

    listed = json.loads((project.entry("stems") / "stems.json").read_text())["stems"]
    assert set(listed) == {p.stem for p in (project.out / "stems" / SLUG).glob("*.wav")} and len(listed) >= 4
    for name, source in listed.items():
        flac = project.cache / source["stage"] / source["key"] / source["file"]
        wav = project.out / "stems" / SLUG / f"{name}.wav"
        assert soundfile.info(str(flac)).subtype == "PCM_24" and check_wav_delivery(wav, bit_depth=24) == []
        pcm, _ = soundfile.read(str(wav), dtype="int32")
        assert np.array_equal(pcm, soundfile.read(str(flac), dtype="int32")[0]), name
        assert np.any(pcm), f"{name}: silent"
        write_wav(load_pcm24(flac), project.root / "today.wav", bit_depth=24)  # the float route: same bytes
        assert wav.read_bytes() == (project.root / "today.wav").read_bytes(), name
        assert (source["bytes"], source["sha256"]) == (wav.stat().st_size, hashlib.sha256(wav.read_bytes()).hexdigest())


def test_a_stem_wav_written_otherwise_than_recorded_retires_the_stems_entry(project, monkeypatch):
    """Another WAV writer (a libsndfile upgrade writing other bytes, here the last sample changed) that
    says it is the same one: what publish writes no longer matches stems.json, so the stems entry is
    moved aside and made again by decoding with this writer (not from the hashes the backing and
    vocals recorded, which just proved wrong), and the release still agrees with its files."""
    real = audio_module.pcm24_wav

    def other_writer(source, target):
        real(source, target)
        handle = open(target, "r+b") if isinstance(target, Path) else target
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 1]))
        if handle is not target:
            handle.close()

    project.rendered()
    shutil.rmtree(project.out / "stems")  # publish writes every stem again
    monkeypatch.setattr(publish_module, "pcm24_wav", other_writer)
    monkeypatch.setattr(audio_module, "pcm24_wav", other_writer)  # what the stems stage decodes with
    result = project.render()
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert "cache entry corrupt: stems.json says " in shown and "moved aside, rendering again" in shown, shown
    stages = _stages(json.loads(result.stdout))
    assert stages["stems"][0] is False and stages["stems"][1].startswith("cache entry corrupt: stems.json says ")
    assert [name for name, (cached, _) in stages.items() if not cached] == ["stems"]
    _assert_release_matches_its_folder(project.out)
    assert not project.hidden(), project.hidden()


def test_stem_wav_facts_recorded_at_save_are_what_decoding_the_flacs_gives(project, monkeypatch):
    """The backing and vocals stages record each stem WAV's sha256 and size as they save its FLAC
    (core.audio.save_stem): the stems stage decodes nothing. Facts recorded by another WAV writer
    (another libsndfile) are not taken: every FLAC is decoded, and both routes list the same WAVs."""
    decoded: list[str] = []
    real = render_module.stem_wav_record
    monkeypatch.setattr(render_module, "stem_wav_record", lambda source: decoded.append(source.name) or real(source))
    recorded = json.loads((project.entry("stems") / "stems.json").read_text())["stems"]
    for stage in ("backing", "vocals"):
        listing = json.loads((project.entry(stage) / f"{stage}.json").read_text())
        assert sorted(listing["wavs"]) == listing["stems"]
    shutil.rmtree(project.entry("stems"))  # made again, with no earlier stems entry to take hashes from
    monkeypatch.setattr(render_module, "wav_facts_writer", lambda: "libsndfile 0.0, another build")
    assert _stages(project.rendered())["stems"][0] is False
    assert sorted(decoded) == sorted(f"{name}.flac" for name in recorded) and len(recorded) >= 4
    assert json.loads((project.entry("stems") / "stems.json").read_text())["stems"] == recorded
    _assert_release_matches_its_folder(project.out)


# --- a full disk ----------------------------------------------------------------------------------


def test_disk_full_while_a_stage_writes_keeps_no_half_entry_and_the_old_masters(project, monkeypatch):

    before = project.published()
    for entry in project.entries("mix"):
        shutil.rmtree(entry)  # the mix runs again
    real_save = save_npy

    def save_until_full(audio, path):
        if path.name != "mix.npy":
            return real_save(audio, path)
        path.write_bytes(b"\x93NUMPY" + bytes(4096))  # part of the file made it to disk
        raise _disk_full(path)

    monkeypatch.setattr(render_module, "save_npy", save_until_full)
    said = _failed(project.render(), 4)
    assert "stage 'mix' failed" in said and str(project.spec) in said
    assert "the disk is full (No space left on device)" in said
    assert f"Fix: free space on the disk that holds {project.cache.resolve()}" in said
    assert project.entries("mix") == [], "a half-built entry was published"
    assert not project.hidden(), project.hidden()
    assert project.published() == before, "the earlier masters changed"
    monkeypatch.undo()
    stages = _stages(project.rendered())
    assert [name for name, (cached, _) in stages.items() if not cached] == ["mix"]
    assert project.published().keys() == before.keys()


def _copyfile_fails_at(monkeypatch, out: Path, nth: int) -> list[Path]:
    """Publishing's nth file put into `out` (a hard link or a copy of a cache file) fails with
    ENOSPC, after writing half the file."""
    from millamusic.pipeline.publish import _Publication

    real_copy, real_wav = _Publication.copy, _Publication.wav
    copies: list[Path] = []

    def fails(self, entry, name, final, temp=None) -> bool:
        if Path(out) in Path(final).parents:
            copies.append(Path(final))
            if len(copies) == nth:
                self.writing = final
                data = (entry.path / name).read_bytes()
                (temp or self.path(final)).write_bytes(data[: len(data) // 2])
                raise _disk_full()  # as a write() reports it: no file name
        return False

    monkeypatch.setattr(_Publication, "copy", lambda self, entry, name, final: fails(self, entry, name, final)
                        or real_copy(self, entry, name, final))
    # a stem WAV, written from its FLAC on one of publish's threads, into the temp path publish took for it
    monkeypatch.setattr(_Publication, "wav", lambda self, item, final, temp: fails(self, item.entry, item.name, final,
                                                                                   temp)
                        or real_wav(self, item, final, temp))
    return copies


def test_disk_full_while_publishing_leaves_the_previous_release_intact(project, monkeypatch):
    before = project.published()
    project.set_lyric("Spin me round and round")  # vocals, lyrics and everything after them change
    real_write_bytes = Path.write_bytes

    def release_json_fails(self, data):
        if self.name == "release.json":
            real_write_bytes(self, data[: len(data) // 3])
            raise _disk_full(self)
        return real_write_bytes(self, data)

    copies: list[Path] = []  # what publish copies (the files that change; the backing's stems are linked)
    for fault in ("release.json", "copy 1", "copy 6", "last copy"):
        with monkeypatch.context() as patch:
            if fault == "release.json":
                patch.setattr(Path, "write_bytes", release_json_fails)
                copies = _copyfile_fails_at(patch, project.out, 0)  # counts them, fails none
            else:
                nth = len(copies) if fault == "last copy" else int(fault.split()[1])
                _copyfile_fails_at(patch, project.out, nth)
            said = _failed(project.render(), 5)
        if fault == "release.json":
            assert 6 < len(copies) < len(before) - 1, copies
        assert "cannot publish 'Tiny Test Song'" in said and "the disk is full" in said, (fault, said)
        assert "Nothing was published" in said and f"Fix: free space on the disk that holds {project.out.resolve()}" \
            in said, (fault, said)
        written = re.search(r"cannot write (\S+): the disk is full", said)
        assert written and written[1].split("/")[0] in PUBLISHED, said  # names what it was writing
        if fault == "release.json":
            assert written[1] == f"masters/{SLUG}/release.json", said
        assert project.published() == before, f"{fault}: the previous release changed"
        assert not project.hidden(), (fault, project.hidden())
        _assert_release_matches_its_folder(project.out)

    summary = project.rendered()
    assert [name for name, (cached, _) in _stages(summary).items() if not cached] == [], "the stages were cached"
    after = project.published()
    assert after[f"masters/{SLUG}/lyrics.txt"] != before[f"masters/{SLUG}/lyrics.txt"]
    assert b"round and round" in after[f"masters/{SLUG}/lyrics.txt"]
    _assert_release_matches_its_folder(project.out)
    assert not project.hidden(), project.hidden()


def test_a_failure_while_swapping_in_keeps_the_masters_folder_whole(project, monkeypatch):
    """The masters folder goes in last: if putting the release in place fails before it (after the
    stems and lyrics went in), masters/<slug>/ is still the whole previous release."""

    before = project.published()
    project.set_lyric("Spin me round and round")
    real_replace = files_module.replace_folder

    def replace_folder(new, final):
        if Path(final).parent.name == "masters":
            raise _disk_full(final)
        return real_replace(new, final)

    monkeypatch.setattr(publish_module, "replace_folder", replace_folder)
    said = _failed(project.render(), 5)
    assert "Publishing stopped part way" in said and f"masters/{SLUG}/ still the previous release" in said, said
    after = project.published()
    masters = [name for name in before if name.startswith("masters/")]
    assert {name: after.get(name) for name in masters} == {name: before[name] for name in masters}
    assert sorted(after) == sorted(before)
    # the stems and lyrics are the new render's already (the failure says so): only a re-run mends them
    _assert_release_matches_its_folder(project.out, outside=False)
    assert not project.hidden(), project.hidden()
    monkeypatch.undo()
    project.rendered()
    _assert_release_matches_its_folder(project.out)
    release = json.loads((project.out / "masters" / SLUG / "release.json").read_text())
    for name, record in release["files"].items():  # stems and lyrics agree with the record again
        assert hashlib.sha256((project.out / name).read_bytes()).hexdigest() == record["sha256"], name


def test_a_real_write_failure_in_a_stage_is_reported_without_a_traceback(tmp_path):
    """No monkeypatching: the kernel refuses the write (RLIMIT_FSIZE makes every file past 256 KiB
    fail; CPython ignores SIGXFSZ, so the write returns an error as a full disk's does)."""
    spec = tmp_path / "songs" / "tiny.yaml"
    spec.parent.mkdir()
    spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=3, extra=""))
    out, cache = tmp_path / "out", tmp_path / "cache"
    limit = 256 << 10
    script = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
              "from millamusic.cli import main; sys.exit(main())")
    env = {k: v for k, v in os.environ.items() if k != "MILLAMUSIC_CACHE"}
    result = subprocess.run(
        [sys.executable, "-c", script, "render", str(spec), "--out", str(out), "--cache-dir", str(cache)],
        capture_output=True, text=True, env={**env, "COLUMNS": "400"}, timeout=300, check=False)
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 4, said
    assert "Traceback" not in said, said
    # the backing and the vocals run side by side and both write more than the limit: either is named.
    # A write across the limit comes up short (said as a full disk); libsndfile's next one (the stems are
    # FLAC) gets EFBIG, said as the file size limit it is.
    assert re.search(r"stage '(backing|vocals)' failed", said), said
    assert "Fix: free space on the disk" in said or "Fix: raise the file size limit (ulimit -f)" in said, said
    assert not (out / "masters").exists() and not (out / "stems").exists()
    for stage in ("backing", "vocals"):
        assert [p.name for p in (cache / stage).iterdir()] == [], f"a half-built {stage} entry was kept"


# --- an engine that fails mid-song ----------------------------------------------------------------


def test_an_engine_failing_mid_song_is_a_bug_that_keeps_its_traceback_publishes_nothing_and_resumes(
        tmp_path, monkeypatch):
    """An exception that is not a MillaError is a bug: exit 70, one line naming the stage and the
    song, and the full traceback in a file (docs/errors.md); nothing half-done is kept."""
    from millamusic.engines import singer

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the traceback file goes
    project = Project(tmp_path)
    project.spec.parent.mkdir()
    project.spec.write_text(SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=3, extra=""))
    real_sing = singer._sing

    def sing_then_crash(units, buffer, fs, opts, rng):
        real_sing(units, buffer, fs, opts, rng)  # the take is sung (the work is done), then it breaks
        raise RuntimeError("WORLD synthesis crashed")

    monkeypatch.setattr(singer, "_sing", sing_then_crash)
    said = _failed(project.render(), 70)
    assert ("internal error (a bug in millamusic, not in your input): RuntimeError: WORLD synthesis crashed"
            in said), said
    assert f"in stage 'vocals' of {project.spec}" in said, said
    [trace] = tmp_path.glob("millamusic-bug-*.txt")
    assert str(trace) in said.replace(" ", "") or trace.name in said, said
    text = trace.read_text()
    assert "Traceback (most recent call last)" in text and "in sing_then_crash" in text, text
    assert "RuntimeError: WORLD synthesis crashed" in text and "in stage 'vocals'" in text, text
    assert not any((project.out / folder).exists() for folder in PUBLISHED), "something was published"
    assert project.entries("vocals") == [] and not project.hidden(), project.hidden()
    assert len(project.entries("compose")) == len(project.entries("backing")) == 1
    monkeypatch.undo()
    stages = _stages(project.rendered())
    assert stages["compose"] == (True, "") and stages["backing"] == (True, "")
    assert stages["vocals"][0] is False
    _assert_release_matches_its_folder(project.out)
