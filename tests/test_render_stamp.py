"""The render stamp (pipeline.stamp): an unchanged re-render answers from it, equal to what the normal
path prints; any change to what the render rests on sends it down the normal path, which stays correct."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import millamusic.pipeline.stamp as stamp
from millamusic.cli import main
from millamusic.release.signing import CERT_ENV, KEY_ENV, identity_dir

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
title: Stamp Song
artist: Milla Virta
artist_profile: ../artists/milla-virta.yaml
genre: pop
style: [test]
tempo: 120
key: A minor
seed: 3
structure:
  - {section: Verse, bars: 2, chords: [Am, F]}
  - {section: Chorus, bars: 2, chords: [C, G]}
lyrics: ../lyrics/stamp-song.txt
artwork: ../artwork/cover.jpg
release: {album: Test Album, year: 2026}
"""
LYRICS = "[Verse]\nHold the light tonight\n[Chorus]\nSpin me round again\n"

pytestmark = pytest.mark.slow  # every test renders (mostly from the cache: a second or two each)


def _render(song, *args: str, debug: bool = True):
    """(the --json result, the stamp's word on this run) of `render` on the catalogue's song."""
    spec, out = song
    result = CliRunner().invoke(main, [*(["--debug"] if debug else []), "render", str(spec), "--out", str(out),
                                       "--json", *args])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("render stamp:")]
    return json.loads(result.stdout), said


def _settle() -> None:
    """Wait until files just written count as older than the next render (stamp.SETTLE_NS)."""
    time.sleep(2 * stamp.SETTLE_NS / 1e9)


def _replayed(said: list[str]) -> bool:
    return said[:1] == ["render stamp: nothing changed, result replayed"]


def _comparable(result: dict) -> dict:
    """A render's JSON without its timings (they differ every run)."""
    return {**result, "seconds": None, "stages": [{**s, "seconds": None} for s in result["stages"]]}


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """A catalogue (spec, lyric file, artwork, artist profile) rendered once: (spec, out)."""
    base = tmp_path_factory.mktemp("stamp")
    for folder in ("songs", "lyrics", "artwork", "artists"):
        (base / folder).mkdir()
    shutil.copyfile(ROOT / "artwork" / "set-me-spinning.jpg", base / "artwork" / "cover.jpg")
    shutil.copyfile(ROOT / "artists" / "milla-virta.yaml", base / "artists" / "milla-virta.yaml")
    (base / "lyrics" / "stamp-song.txt").write_text(LYRICS)
    spec = base / "songs" / "stamp-song.yaml"
    spec.write_text(SPEC)
    _settle()
    song = (spec, base / "out")
    _render(song)
    return song


@pytest.fixture
def unchanged(song):
    """The song with its stamp in force (a render after any other test's changes, which re-stamps)."""
    _settle()
    _, said = _render(song)
    if not _replayed(said):
        _, said = _render(song)
    assert _replayed(said), said
    return song


def test_an_unchanged_render_replays_what_the_normal_path_prints(unchanged):
    spec, out = unchanged
    replayed, said = _render(unchanged)
    assert _replayed(said)
    assert all(stage["cached"] and stage["why"] == "" for stage in replayed["stages"])
    stamp.RenderCall(spec, out, out / ".millamusic" / "cache").path.unlink()  # the normal path, all cached
    normal, said = _render(unchanged)
    assert said[0].startswith("render stamp: not used: no stamp"), said
    assert all(stage["cached"] for stage in normal["stages"])
    assert _comparable(replayed) == _comparable(normal)
    again, said = _render(unchanged)  # the normal path wrote the stamp again
    assert _replayed(said) and _comparable(again) == _comparable(normal)


def test_the_replay_prints_the_lines_of_an_all_cached_render(unchanged):
    spec, out = unchanged
    plain = ["render", str(spec), "--out", str(out)]
    replayed = CliRunner().invoke(main, plain)
    stamp.RenderCall(spec, out, out / ".millamusic" / "cache").path.unlink()
    normal = CliRunner().invoke(main, plain)
    assert replayed.exit_code == normal.exit_code == 0, normal.output

    def lines(result) -> list[str]:  # the side-by-side stages print in either order; "done in" is a timing
        return sorted(line for line in result.stderr.splitlines() if not line.startswith("  done in"))

    assert "publish  unchanged" in normal.stderr
    assert lines(replayed) == lines(normal)


def test_a_replay_records_the_render_for_cache_gc(unchanged):
    spec, out = unchanged
    records = out / ".millamusic" / "cache" / "renders" / "stamp-song"
    before = sorted(records.glob("*.json"))
    _, said = _render(unchanged)
    assert _replayed(said)
    [new] = sorted(set(records.glob("*.json")) - set(before))
    last = json.loads(before[-1].read_text())
    assert {k: v for k, v in json.loads(new.read_text()).items() if k != "time_ns"} == \
        {k: v for k, v in last.items() if k != "time_ns"}


def _edit_and_back(song, path: Path, edit, reason: str) -> None:
    """Edit `path`, render (the normal path, for `reason`), restore it, render (normal again), then replay."""
    original = path.read_bytes()
    edit(path)
    _settle()
    try:
        result, said = _render(song)
        assert said and reason in said[0], said
        assert result["stages"]  # a real render's answer
    finally:
        path.write_bytes(original)
    _settle()
    _, said = _render(song)
    assert not _replayed(said), said  # the stamp describes the edited file now
    _, said = _render(song)
    assert _replayed(said), said


@pytest.mark.parametrize("which, edit", [
    ("songs/stamp-song.yaml", lambda p: p.write_bytes(p.read_bytes() + b"# one byte more\n")),
    ("lyrics/stamp-song.txt", lambda p: p.write_text(LYRICS.replace("tonight", "tonite"))),
    ("artwork/cover.jpg", lambda p: p.write_bytes(p.read_bytes() + b"\0")),
    ("artists/milla-virta.yaml", lambda p: p.write_bytes(p.read_bytes() + b"# a comment\n")),
])
def test_an_edited_source_file_takes_the_normal_path(unchanged, which, edit):
    spec, _ = unchanged
    path = spec.parent.parent / which
    _edit_and_back(unchanged, path, edit, f"not used: {path} changed")


def test_an_edited_lyric_is_sung_again(unchanged):
    spec, _ = unchanged
    lyrics = spec.parent.parent / "lyrics" / "stamp-song.txt"
    original = lyrics.read_text()
    lyrics.write_text(LYRICS.replace("round", "back"))  # words no other test sings
    try:
        result, _ = _render(unchanged)
        ran = {stage["name"] for stage in result["stages"] if not stage["cached"]}
        assert "vocals" in ran and "backing" not in ran, ran
    finally:
        lyrics.write_text(original)


def test_a_touched_or_deleted_published_file_takes_the_normal_path(unchanged):
    spec, out = unchanged
    wav = out / "masters" / "stamp-song" / "spotify" / "stamp-song.wav"
    copy = wav.with_name("copy.tmp")  # the same bytes, written after the release (published files are
    shutil.copy(wav, copy)             # hard links to cache entries: edited in place, the entry would change too)
    os.replace(copy, wav)
    _, said = _render(unchanged)
    assert said and f"{wav} changed since it was published" in said[0], said
    _, said = _render(unchanged)
    assert _replayed(said), said  # republished by the normal path, and stamped again
    lrc = out / "lyrics" / "stamp-song.lrc"
    lrc.unlink()
    _, said = _render(unchanged)
    assert said and f"{lrc} is gone" in said[0], said
    assert lrc.is_file()  # the normal path published it again
    extra = out / "masters" / "stamp-song" / "notes.txt"
    extra.write_text("mine")
    _, said = _render(unchanged)
    assert said and "holds other files than the release" in said[0], said
    assert not extra.exists()  # the normal path swapped in exactly the release


def test_a_missing_cache_entry_takes_the_normal_path(unchanged):
    _, out = unchanged
    release = json.loads((out / "masters" / "stamp-song" / "release.json").read_text())
    shutil.rmtree(out / ".millamusic" / "cache" / "lyrics" / release["stages"]["lyrics"]["key"])
    result, said = _render(unchanged)
    assert said and "cache entry lyrics/" in said[0], said
    assert [s["name"] for s in result["stages"] if not s["cached"]] == ["lyrics"]


@pytest.mark.parametrize("args, reason", [
    (["--acknowledge-noncommercial"], "the command line differs (acknowledge_noncommercial)"),
    (["--profile", "spotify"], "the command line differs (profiles)"),
    (["--backing", "arranger"], "the command line differs (backing)"),
])
def test_other_options_take_the_normal_path(unchanged, args, reason):
    _, said = _render(unchanged, *args)
    assert said and reason in said[0], said
    _, said = _render(unchanged, *args)
    assert _replayed(said), said  # the same options again: their own stamp
    _, said = _render(unchanged)
    assert said and "the command line differs" in said[0], said


def test_a_signing_identity_from_the_environment_takes_the_normal_path(unchanged, monkeypatch):
    folder = identity_dir()
    monkeypatch.setenv(CERT_ENV, str(folder / "chain.pem"))
    monkeypatch.setenv(KEY_ENV, str(folder / "key.pem"))
    result, said = _render(unchanged)
    assert said and "environment differs (MILLAMUSIC_SIGNING_CERT, MILLAMUSIC_SIGNING_KEY)" in said[0], said
    monkeypatch.delenv(CERT_ENV)
    monkeypatch.delenv(KEY_ENV)
    _, said = _render(unchanged)
    assert not _replayed(said)


def test_a_new_local_identity_takes_the_normal_path_and_signs_again(unchanged, monkeypatch, tmp_path):
    monkeypatch.setenv("MILLAMUSIC_IDENTITY_DIR", str(tmp_path / "identity"))
    result, said = _render(unchanged)
    assert said and "environment differs (MILLAMUSIC_IDENTITY_DIR)" in said[0], said
    assert [s["name"] for s in result["stages"] if not s["cached"]] == ["export[spotify]"]


def test_changed_code_takes_the_normal_path(unchanged, monkeypatch):
    monkeypatch.setattr(stamp, "installed_code", lambda package=None: "edited")
    _, said = _render(unchanged)
    assert said and "millamusic's code or an installed package changed" in said[0], said


def test_the_code_fingerprint_sees_an_edit(tmp_path):
    package = tmp_path / "millamusic"
    package.mkdir()
    module = package / "x.py"
    module.write_text("x = 1\n")
    before = stamp.installed_code(package)
    assert stamp.installed_code(package) == before
    module.write_text("x = 22\n")
    assert stamp.installed_code(package) != before
    (package / "y.py").write_text("")
    assert stamp.installed_code(package) != before


@pytest.mark.parametrize("garbage", [b"{not json", b"[]", b'{"stamp": 1}', b"\xff\xfe", b""])
def test_a_corrupt_stamp_takes_the_normal_path_and_is_replaced(unchanged, garbage):
    spec, out = unchanged
    path = stamp.RenderCall(spec, out, out / ".millamusic" / "cache").path
    good = json.loads(path.read_text())
    path.write_bytes(garbage)
    result, said = _render(unchanged)
    assert said and said[0].startswith("render stamp: not used: stamp unreadable"), said
    assert _comparable(result) == _comparable({**good["result"], "stages": [
        {**s, "cached": True, "why": ""} for s in good["result"]["stages"]]})
    _, said = _render(unchanged)
    assert _replayed(said), said


def test_a_stamp_naming_another_release_folder_is_not_trusted(unchanged):
    spec, out = unchanged
    path = stamp.RenderCall(spec, out, out / ".millamusic" / "cache").path
    record = json.loads(path.read_text())
    record["entries"][0][1] = "0" * 64
    path.write_text(json.dumps(record))
    _, said = _render(unchanged)
    assert said and "is missing, damaged or from an older version" in said[0], said


def test_force_and_previews_never_replay(unchanged):
    result, said = _render(unchanged, "--force")
    assert not any("replayed" in line for line in said)
    assert not any(stage["cached"] for stage in result["stages"])


def test_importing_the_cli_loads_no_spec_machinery():
    code = ("import sys, millamusic.cli, millamusic.pipeline.stamp; "
            "print(sorted(m for m in ('pydantic', 'numpy', 'ruamel', 'rich', 'millamusic.spec') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_a_file_edited_during_the_render_leaves_no_stamp(unchanged, monkeypatch):
    """The render read the old words; the stamp would otherwise vouch for the new ones."""
    import millamusic.pipeline.render as render_module

    spec, _ = unchanged
    lyrics = spec.parent.parent / "lyrics" / "stamp-song.txt"
    original = lyrics.read_text()
    real_render = render_module.render

    def render_then_edit(*args, **kwargs):
        result = real_render(*args, **kwargs)
        lyrics.write_text(original.replace("Hold", "Keep"))  # as if saved from an editor mid-render
        return result

    monkeypatch.setattr(render_module, "render", render_then_edit)
    try:
        _, said = _render(unchanged, "--profile", "spotify")  # another command line: the normal path
        assert said[-1] == f"render stamp: no stamp: {lyrics} changed during the render (or just before it)", said
        monkeypatch.undo()
        result, said = _render(unchanged, "--profile", "spotify")
        assert said[0].startswith("render stamp: not used: no stamp"), said
        assert "vocals" in {s["name"] for s in result["stages"] if not s["cached"]}  # the new words are sung
    finally:
        lyrics.write_text(original)


def test_a_stamp_that_is_a_folder_takes_the_normal_path(unchanged):
    spec, out = unchanged
    path = stamp.RenderCall(spec, out, out / ".millamusic" / "cache").path
    path.unlink()
    path.mkdir()
    try:
        result, said = _render(unchanged)
        assert said[0].startswith("render stamp: not used: stamp unreadable"), said
        assert all(stage["cached"] for stage in result["stages"])
    finally:
        path.rmdir()
