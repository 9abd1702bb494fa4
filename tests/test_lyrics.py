import pytest

from millamusic.lyrics import parse_sheet, syllables, words_of


@pytest.mark.parametrize("word, expected", [
    ("tonight", ("to", "night")), ("spinning", ("spin", "ning")), ("fire", ("fire",)), ("alive", ("a", "live")),
    ("radio", ("ra", "di", "o")), ("lonely", ("lone", "ly")), ("beautiful", ("beau", "ti", "ful")),
    ("loved", ("loved",)), ("wanted", ("wan", "ted")), ("little", ("lit", "tle")), ("the", ("the",)),
    ("spin-ning", ("spin", "ning")), ("yeah", ("yeah",)),
])
def test_syllables(word, expected):
    assert syllables(word) == expected


def test_sheet_blocks_comments_and_orphans():
    blocks, problems = parse_sheet("# comment\nstray\n[Verse 1]\nHello world\n\n[Chorus]\nSing it, now!\n", file="x.txt")
    assert [(b.header, b.line, [l.text for l in b.lines]) for b in blocks] == [
        ("Verse 1", 3, ["Hello world"]), ("Chorus", 6, ["Sing it, now!"])]
    assert [(p.line, p.value) for p in problems] == [(2, "stray")]


def test_words_keep_apostrophes_and_hyphens():
    assert words_of("Nothing's gonna spin-ning, (oh)") == ["Nothing's", "gonna", "spin-ning", "oh"]
