from pathlib import Path

import pytest

from millamusic.core.errors import SpecError
from millamusic.spec.song import load_song, slugify

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["set-me-spinning", "northern-static"])
def test_example_specs_load(name):
    song = load_song(ROOT / "songs" / f"{name}.yaml")
    assert song.slug == name
    assert song.artwork_path is not None and "artwork" in song.input_hashes
    assert {b.header for b in song.lyric_blocks} <= {s.section for s in song.spec.structure}


def test_three_mistakes_are_all_reported_with_lines(write_spec):
    path = write_spec(text="""\
title: Three Mistakes
artist: Milla
genre: pop
tempo: fast
key: H minor
structure:
  - {section: Verse, bars: 2, chords: [Am, Xm7]}
lyrics: |
  [Verse]
  la la la
""")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    problems = caught.value.problems
    assert [(p.field, p.line) for p in problems] == [("tempo", 4), ("key", 5), ("structure[0].chords[1]", 7)]
    text = str(caught.value)
    assert f"{path}:4:8: tempo = 'fast'" in text
    assert "Fix:" in text and "3 problems" in text


def test_lyric_header_without_section_points_into_the_lyric_text(write_spec):
    path = write_spec(text="""\
title: Wrong Header
artist: Milla
genre: rock
tempo: 100
key: E minor
structure:
  - {section: Verse, bars: 2, chords: [Em]}
lyrics: |
  [Verse]
  one line here
  [Chors]
  another line
""")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    (problem,) = caught.value.problems
    assert problem.line == 11 and problem.value == "[Chors]" and "Verse" in problem.fix


def test_lyrics_file_errors_name_the_lyric_file(tmp_path, write_spec):
    (tmp_path / "lyrics").mkdir()
    (tmp_path / "lyrics" / "x.txt").write_text("orphan line\n[Verse]\nsung line\n")
    path = write_spec(text="""\
title: File Lyrics
artist: Milla
genre: pop
tempo: 100
key: C
structure:
  - {section: Verse, bars: 2, chords: [C]}
lyrics: ../lyrics/x.txt
""")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    (problem,) = caught.value.problems
    assert problem.file.endswith("x.txt") and problem.line == 1


def test_missing_files_and_unknown_fields(write_spec):
    path = write_spec(extra="melody: nothere.mid\nartwork: cover.gif\ncolour: red\n")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    fields = [p.field for p in caught.value.problems]
    assert fields == ["colour"]  # shape errors first; file checks need a valid shape
    path = write_spec(extra="melody: nothere.mid\nartwork: cover.gif\n")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    assert sorted(p.field for p in caught.value.problems) == ["artwork", "melody"]


def test_yaml_syntax_error_is_located(write_spec):
    path = write_spec(text="title: x\nartist: [unclosed\ngenre: pop\n")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    assert caught.value.problems[0].line is not None


def test_more_chords_than_bars_and_bad_isrc(write_spec):
    path = write_spec(text="""\
title: Too Many
artist: Milla
genre: pop
tempo: 100
key: C
structure:
  - {section: Verse, bars: 2, chords: [C, F, G]}
lyrics: |
  [Verse]
  la la
release: {isrc: NOT-AN-ISRC}
""")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    assert [p.field for p in caught.value.problems] == ["structure[0]", "release.isrc"]


@pytest.mark.parametrize("title, slug", [("Set Me Spinning", "set-me-spinning"), ("../../etc/passwd", "etc-passwd"),
                                         ("Sydän / Heart", "sydan-heart"), ("???", "untitled")])
def test_slugs_are_safe(title, slug):
    assert slugify(title) == slug


_PLAIN = """\
title: Plain
artist: Milla
genre: pop
tempo: 100
key: C
structure:
  - {section: Verse, bars: 2, chords: [C, F]}
lyrics: |
  [Verse]
  la la
"""


def test_profiles_and_upc(write_spec):
    song = load_song(write_spec(text=_PLAIN + "master: {profiles: apple}\nrelease: {upc: '0 12345 67890 5'}\n"))
    assert song.spec.master.profiles == ["apple"] and song.spec.release.upc == "012345678905"
    assert load_song(write_spec(text=_PLAIN)).spec.master.profiles == ["spotify"]
    path = write_spec(text=_PLAIN + "master:\n  profiles: [spotify, vinyl]\nrelease:\n  upc: '6418000123457'\n")
    with pytest.raises(SpecError) as caught:
        load_song(path)
    text = str(caught.value)
    assert [(p.field, p.line) for p in caught.value.problems] == [("master.profiles", 12), ("release.upc", 14)]
    assert "unknown delivery profile 'vinyl'" in text and "cd, loud" in text
    assert "check digit 7; the digits before it give 4" in text


@pytest.mark.parametrize("profiles, message", [("[]", "no delivery profile"), ("[cd, cd]", "'cd' given more than once"),
                                               ("{a: 1}", "not a profile name")])
def test_bad_profile_lists(write_spec, profiles, message):
    with pytest.raises(SpecError, match=message):
        load_song(write_spec(text=_PLAIN + f"master: {{profiles: {profiles}}}\n"))


@pytest.mark.parametrize("text, digits", [("012345678905", "012345678905"), ("4006381333931", "4006381333931"),
                                          ("0-12345-67890-5", "012345678905")])
def test_upc_ean_check_digits(text, digits):
    from millamusic.spec.identifiers import normalise_upc, upc_check_digit

    assert normalise_upc(text) == digits
    assert upc_check_digit(digits[:-1]) == int(digits[-1])


@pytest.mark.parametrize("text", ["012345678904", "12345", "40063813339310", "01234567890X"])
def test_upc_ean_rejects(text):
    from millamusic.spec.identifiers import normalise_upc

    with pytest.raises(ValueError):
        normalise_upc(text)
