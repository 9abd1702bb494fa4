"""Hand-written hostile inputs: YAML that costs more than it says, paths that leave the
catalogue, files that are not what they claim. Each ends in exit 2 with the file, the field and
a fix, before any stage runs, within bounded work (function calls counted, tests/counting.py) and
memory, with nothing written."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from millamusic.cli import main
from tests.conftest import SHORT_SONG
from tests.counting import counting_calls

BASE = SHORT_SONG.format(genre="pop", tempo=120, key="A minor", seed=1, extra="")
INLINE_LYRICS = "lyrics: |\n  [Verse]\n  Hold the light tonight\n  [Chorus]\n  Spin me round again\n"


def _alias_bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for this, previous in zip("bcdefgh", "abcdefg"):
        lines.append(f"{this}: &{this} [{', '.join([f'*{previous}'] * 9)}]")
    lines.append(f"i: [{', '.join(['*h'] * 9)}]")  # 9^9 = 387 million strings once expanded
    return "\n".join(lines) + "\n" + BASE


def _media(folder: Path) -> None:
    """Files a hostile spec points at, in the catalogue's media/ folder."""
    media = folder / "media"
    media.mkdir()
    (media / "not-audio.wav").write_text("hello")
    soundfile.write(media / "full.wav", np.zeros((88200, 2), dtype=np.float32), 44100)
    data = (media / "full.wav").read_bytes()
    (media / "truncated.wav").write_bytes(data[: len(data) // 3])
    (media / "not-image.jpg").write_text("not an image")
    with open(media / "huge.png", "wb") as handle:  # sparse: 100 MB on paper, no disk used
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(100 << 20)
    (media / "not-utf8.txt").write_bytes(b"[Verse]\nHold \xff light\n[Chorus]\nSpin\n")
    (media / "escape.mid").symlink_to("/etc/hostname")
    import mido

    empty = mido.MidiFile()
    empty.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    empty.save(media / "no-notes.mid")
    (media / "garbage.mid").write_bytes(bytes(range(256)) * 8)
    with open(media / "big-lyrics.txt", "wb") as handle:
        handle.truncate(5 << 20)


# Work one refusal may take, in function calls (tests/counting.py), in place of a time limit.
# Measured: 1k-200k for a spec refused before or after parsing it, 2.9-5.8 million for the
# 5000-deep list. Expanding the alias bomb (387 million strings) or starting a stage would be far over.
FILE_CALLS = 1_000_000
BIG_FILE_CALLS = 10_000_000  # "deeply nested list"

# name -> (spec text, the field the message must name, words the message must contain)
CASES = {
    "yaml alias bomb": (_alias_bomb(), "yaml", "aliases are not allowed"),
    "yaml alias in a field": (BASE.replace("title: Tiny Test Song", "title: &t Tiny\nstyle_ref: *t"), "yaml",
                              "aliases are not allowed"),
    "deeply nested list": ("x: " + "[" * 5000 + "]" * 5000 + "\n" + BASE, "yaml", "nested deeper"),
    "deeply nested map": (BASE.replace("style: [test]", "style: " + "{a: " * 3000 + "1" + "}" * 3000), "yaml",
                          "nested deeper"),
    "spec over 1 MB": (BASE + "# " + "x" * (1 << 20) + "\n", "file", "larger than 1024 KB"),
    "spec not UTF-8": (BASE.encode().replace(b"Hold the light", b"Hold \xff\xfe light"), "file", "not UTF-8"),
    "lyrics not UTF-8": (BASE.replace(INLINE_LYRICS, "lyrics: ../media/not-utf8.txt\n"), "lyrics", "not UTF-8"),
    "lyrics absolute path": (BASE.replace(INLINE_LYRICS, "lyrics: /etc/passwd\n"), "lyrics", "outside the catalogue"),
    "lyrics .. path": (BASE.replace(INLINE_LYRICS, "lyrics: ../../../../../../etc/hostname\n"), "lyrics",
                       "outside the catalogue"),
    "lyrics file of 5 MB": (BASE.replace(INLINE_LYRICS, "lyrics: ../media/big-lyrics.txt\n"), "lyrics", "over 1024 KB"),
    "melody symlink out": (BASE + "melody: ../media/escape.mid\n", "melody", "outside the catalogue"),
    "melody without notes": (BASE + "melody: ../media/no-notes.mid\n", "melody", "0 notes"),
    "melody not MIDI": (BASE + "melody: ../media/garbage.mid\n", "melody", "cannot read the MIDI file"),
    "reference not audio": (BASE + "reference: ../media/not-audio.wav\n", "reference", "not a readable audio file"),
    "reference truncated": (BASE + "reference: ../media/truncated.wav\n", "reference", "truncated"),
    "reference absolute": (BASE + "reference: /etc/passwd\n", "reference", "outside the catalogue"),
    "artwork not an image": (BASE + "artwork: ../media/not-image.jpg\n", "artwork", "not a readable image"),
    "artwork of 100 MB": (BASE + "artwork: ../media/huge.png\n", "artwork", "over the 20 MB limit"),
    "artist profile outside": (BASE + "artist_profile: /etc/passwd\n", "artist_profile", "outside the catalogue"),
}


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catalogue")
    (folder / "songs").mkdir()
    _media(folder)
    return folder


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("command", ["check", "render", "album"])
def test_hostile_file_is_exit_2_naming_file_field_and_fix(catalogue, name, command):
    text, field, words = CASES[name]
    spec = catalogue / "songs" / (name.replace(" ", "-").replace(".", "") + ".yaml")
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = catalogue / "out" / f"{command}-{name.replace(' ', '-')}"
    args = [command, str(spec)] + (["--out", str(out)] if command == "render" else [])
    if command == "album":  # the same song as an album's only track
        album = spec.with_name(spec.stem + ".album.yaml")
        album.write_text(f"title: Hostile\nartist: Milla Virta\ntracks:\n  - song: {spec.name}\n")
        args = ["album", str(album), "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with counting_calls() as count:
        result = CliRunner().invoke(main, args)
    calls = count.calls
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not (result.exception and not isinstance(result.exception, SystemExit))
    assert spec.name in result.output or "media" in result.output  # the file (the spec, or the file it names)
    assert f"{field} = " in result.output and words in result.output, result.output
    assert "Fix:" in result.output
    bound = BIG_FILE_CALLS if name == "deeply nested list" else FILE_CALLS
    assert calls < bound and grown_mb < 200, (f"{calls:,} calls, bound {bound:,}", f"{grown_mb:.0f} MB")
    published = [p for p in out.rglob("*") if p.is_file() and ".millamusic" not in p.parts] if out.exists() else []
    assert published == []  # refused before anything was published (at most the cache of earlier stages)


def test_a_wider_catalogue_is_given_on_the_command_line(catalogue, tmp_path):
    """Files outside the spec's catalogue are allowed when --catalogue names a folder holding them."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "lyrics.txt").write_text("[Verse]\nHold the light tonight\n[Chorus]\nSpin me round again\n")
    spec = catalogue / "songs" / "outside-lyrics.yaml"
    spec.write_text(BASE.replace(INLINE_LYRICS, f"lyrics: {outside / 'lyrics.txt'}\n"))
    refused = CliRunner().invoke(main, ["check", str(spec)])
    assert refused.exit_code == 2 and "outside the catalogue" in refused.output
    allowed = CliRunner().invoke(main, ["check", str(spec), "--catalogue", str(tmp_path)])
    assert allowed.exit_code == 0, allowed.output


@pytest.mark.slow  # renders a song per title: 1.5-2 s each
@pytest.mark.parametrize("title, slug", [("CON", "con-song"), ("../../etc/passwd", "etc-passwd"),
                                         ("東京 Ωmega", "mega")])
def test_hostile_titles_render_inside_the_output_folder(tmp_path, title, slug):
    spec = tmp_path / "songs" / "song.yaml"
    spec.parent.mkdir()
    spec.write_text(BASE.replace("title: Tiny Test Song", f'title: "{title}"'))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = {p.resolve() for p in tmp_path.rglob("*") if p.is_file()} - {spec.resolve()}
    assert all(out.resolve() in p.parents for p in written)
    assert (out / "masters" / slug / "spotify" / f"{slug}.flac").is_file()
    from mutagen.flac import FLAC

    assert FLAC(str(out / "masters" / slug / "spotify" / f"{slug}.flac"))["TITLE"] == [title]
    assert os.path.getsize(out / "stems" / slug / f"{slug}.mid") > 0  # MIDI text events in UTF-8
