from pathlib import Path

import pytest

from millamusic.errors import SpecError
from millamusic.spec import load_song, slugify

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
