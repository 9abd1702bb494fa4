"""Album builds through the CLI: a 3-track album of short songs (src/millamusic/album_build.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from millamusic.cli import main
from millamusic.release.provenance import unsigned_bytes
from tests.conftest import SHORT_SONG

pytestmark = pytest.mark.slow  # album builds: 10-32 s each

ROOT = Path(__file__).resolve().parents[1]

ALBUM = """\
title: Short Album
artist: Milla Virta
year: 2026
upc: "6418000000014"
label: millamusic
copyright: "(P) 2026 millamusic"
artwork: {artwork}
master:
  profiles: [spotify]
  loudness: {loudness}
tracks:
  - song: one.yaml
    isrc: FI-MLA-26-00101
  - song: two.yaml
    isrc: FI-MLA-26-00102
  - song: three.yaml
    isrc: FI-MLA-26-00103
"""


def make_album(folder: Path, loudness: str = "album") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, tempo, key, seed, title in (("one", 120, "A minor", 1, "One"), ("two", 96, "C major", 2, "Two"),
                                          ("three", 132, "E minor", 3, "Three")):
        text = SHORT_SONG.format(genre="pop" if seed != 2 else "rock", tempo=tempo, key=key, seed=seed, extra="")
        text = text.replace("title: Tiny Test Song", f"title: Track {title}").replace("  isrc: FI-MLA-26-00042\n", "")
        if name == "two":  # a quieter track: album gain must keep it quieter
            text = text.replace("Hold the light tonight", "Hold the quiet light")
        (folder / f"{name}.yaml").write_text(text)
    album = folder / "album.yaml"
    shutil.copyfile(ROOT / "artwork" / "northern-signals.jpg", folder / "cover.jpg")  # inside the catalogue
    album.write_text(ALBUM.format(artwork="cover.jpg", loudness=loudness))
    return album


def build(album: Path, out: Path, *args: str):
    result = CliRunner().invoke(main, ["album", str(album), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return json.loads((out / "album" / "short-album" / "release.json").read_text()), result.output


def status(album: Path, out: Path) -> dict:
    """`millamusic status --json` for the album, run from the album's folder (paths shown relative to it)."""
    import os

    here = os.getcwd()
    os.chdir(album.parent)
    try:
        result = CliRunner().invoke(main, ["status", str(album), "--out", str(out), "--json"])
    finally:
        os.chdir(here)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def masters_bytes(out: Path, *, signed: bool = True) -> dict[str, bytes]:
    """Every master's bytes; `signed=False`: without its C2PA manifest, which two cold builds never
    share (a signature is salted and randomised), while the audio and tags must be identical."""
    read = Path.read_bytes if signed else unsigned_bytes
    return {p.relative_to(out).as_posix(): read(p)
            for p in sorted((out / "masters").rglob("*")) if p.suffix in (".wav", ".flac", ".mp3")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("album")
    album = make_album(base / "songs")
    out = base / "out"
    first, output = build(album, out)
    return album, out, first, output


def test_album_build_writes_every_track_with_album_tags_and_album_gain(built):
    from mutagen.flac import FLAC

    _, out, record, output = built
    assert [t["title"] for t in record["tracks"]] == ["Track One", "Track Two", "Track Three"]
    assert record["loudness_mode"] == "album" and abs(record["album_lufs"]["spotify"] + 14.0) <= 0.3
    for number, track in enumerate(record["tracks"], start=1):
        flac = FLAC(str(out / track["masters"]["spotify"]["files"]["flac"]))
        assert flac["ALBUM"] == ["Short Album"] and flac["TRACKNUMBER"] == [str(number)]
        assert flac["TRACKTOTAL"] == ["3"] and flac["BARCODE"] == ["6418000000014"]
        assert flac["ISRC"] == [f"FIMLA26001{number:02d}"]
        assert track["masters"]["spotify"]["true_peak_dbtp"] <= -1.0
    assert (out / "album" / "short-album" / "report.html").is_file()
    assert "Track Three" in output and "cache hits" in output
    # millamusic check accepts album-gain masters (each track at its own recorded level)
    result = CliRunner().invoke(main, ["check", str(out / "masters")])
    assert result.exit_code == 0, result.output


def test_every_track_is_signed_and_the_album_record_sums_up_who_signed(built):
    from millamusic.release.provenance import read_provenance

    _, out, record, _ = built
    summary = record["provenance"]
    assert summary["tracks_signed"] == 3 and summary["self_signed"] is True and len(summary["signed_by"]) == 1
    assert summary["ai_roles"] == {"vocals": "Yes", "instrumental": "Yes", "lyrics": "No", "composition": "Yes"}
    for track in record["tracks"]:
        assert track["signed_by"] == summary["signed_by"][0]
        for relative in track["masters"]["spotify"]["files"].values():
            if relative.endswith((".wav", ".flac", ".mp3")):
                found = read_provenance(out / relative)
                assert found.present and not found.failures, (relative, found)


def test_second_build_is_all_cache_hits_and_byte_identical(built):
    album, out, first, _ = built
    before = masters_bytes(out)
    second, _ = build(album, out)
    assert all(t["cache_hits"] == t["stages"] for t in second["tracks"])
    assert masters_bytes(out) == before


def test_editing_one_lyric_reruns_only_that_track_downstream(built):
    album, out, _, _ = built
    song = album.parent / "three.yaml"
    song.write_text(song.read_text().replace("Spin me round again", "Spin me round and round"))
    predicted = status(album, out)
    assert predicted["album"] == [{"stage": "album_master[spotify]", "state": "waits",
                                   "why": "reads the mix of track 3 Track Three, which runs first"}]
    for track in predicted["tracks"][:2]:  # the other tracks: everything up to their masters is cached
        assert {s["stage"]: s["state"] for s in track["stages"]} == {
            "compose": "cached", "backing": "cached", "vocals": "cached", "stems": "cached", "mix": "cached",
            "lyrics": "cached", "export[spotify]": "waits"}
    third = {s["stage"]: s for s in predicted["tracks"][2]["stages"]}
    assert third["compose"]["state"] == "runs" and third["compose"]["why"].startswith("three.yaml changed")
    assert third["backing"]["state"] == "cached"  # the chords did not change
    assert third["vocals"]["state"] == "runs" and "three.yaml changed" in third["vocals"]["why"]
    assert third["mix"]["state"] == "waits"
    record, _ = build(album, out)
    assert all(s["state"] == "cached" for t in status(album, out)["tracks"] for s in t["stages"])
    release = json.loads((out / record["tracks"][2]["release"]).read_text())
    rerun = sorted(name for name, stage in release["stages"].items() if not stage["cached"])
    assert "backing" not in rerun and "vocals" in rerun and "export[spotify]" in rerun
    for track in record["tracks"][:2]:
        other = json.loads((out / track["release"]).read_text())
        # album gain: one track's new mix changes every track's master and export, nothing before
        assert not [n for n, s in other["stages"].items() if not s["cached"] and not n.startswith("export")]


def test_jobs_2_equals_serial(tmp_path):
    album = make_album(tmp_path / "songs", loudness="track")
    serial, _ = build(album, tmp_path / "serial")
    parallel, _ = build(album, tmp_path / "parallel", "--jobs", "2")
    assert masters_bytes(tmp_path / "serial", signed=False) == masters_bytes(tmp_path / "parallel", signed=False)
    assert [t["masters"] for t in serial["tracks"]] == [t["masters"] for t in parallel["tracks"]]
    for track in serial["tracks"]:
        assert abs(track["masters"]["spotify"]["integrated_lufs"] + 14.0) <= 0.3
