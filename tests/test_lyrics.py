import pytest

from millamusic.music.lyrics import parse_sheet, syllables, words_of


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


@pytest.mark.parametrize("language, word, expected", [
    # English: espeak's count wins over spelling ("ev-ery" is two, "qui-et" and "be-ing" are two)
    ("en-us", "every", ("e", "very")), ("en-us", "quiet", ("qui", "et")), ("en-us", "being", ("be", "ing")),
    ("en-us", "hour", ("hour",)), ("en-us", "candles", ("can", "dles")), ("en-us", "remember", ("re", "mem", "ber")),
    # Finnish: a consonant before a vowel starts a syllable; diphthongs and long vowels stay whole
    ("fi", "rakastan", ("ra", "kas", "tan")), ("fi", "sinua", ("si", "nu", "a")), ("fi", "paistaa", ("pais", "taa")),
    ("fi", "kauan", ("kau", "an")), ("fi", "tiedän", ("tie", "dän")), ("fi", "pimeää", ("pi", "me", "ää")),
    ("fi", "kartta", ("kart", "ta")), ("fi", "yö", ("yö",)), ("fi", "hämärä", ("hä", "mä", "rä")),
    # Swedish: the last consonant of a cluster starts the next syllable
    ("sv", "stjärnorna", ("stjär", "nor", "na")), ("sv", "älskar", ("äls", "kar")), ("sv", "alltid", ("all", "tid")),
    ("sv", "hjärta", ("hjär", "ta")), ("sv", "jag", ("jag",)),
])
def test_syllables_per_language(language, word, expected):
    assert syllables(word, language) == expected


def test_syllable_counts_agree_with_espeak_for_every_example_word():
    from pathlib import Path

    from millamusic.music.lyrics import spoken_syllable_count

    root = Path(__file__).resolve().parents[1] / "lyrics"
    words = {w.lower() for path in root.glob("*.txt") for line in path.read_text().splitlines()
             if not line.startswith(("[", "#")) for w in words_of(line) if "-" not in w}
    disagree = [w for w in sorted(words) if spoken_syllable_count(w, "en-us")
                and len(syllables(w)) != spoken_syllable_count(w, "en-us")]
    # the only words allowed to differ are those where espeak hears a diphthong + r/schwa as two
    assert all(spoken_syllable_count(w, "en-us") == 2 and len(syllables(w)) == 1 for w in disagree), disagree


def test_melisma_marks():
    from millamusic.music.lyrics import line_words

    words = line_words("Spin_-ning round __ and love_ me, _ oh", "en-us")
    assert [(w.text, w.syllables, w.holds) for w in words] == [
        ("Spinning", ("Spin", "ning"), (1, 0)), ("round", ("round",), (2,)), ("and", ("and",), (0,)),
        ("love", ("love",), (1,)), ("me", ("me",), (1,)), ("oh", ("oh",), (0,))]
    assert sum(w.notes for w in words) == 7 + 5
    assert words_of("love_ me _ now") == ["love", "me", "now"]


def test_a_line_cannot_start_with_a_melisma():
    _blocks, problems = parse_sheet("[Verse]\n_ and on\n", file="x.txt")
    assert [(p.line, "cannot start with a melisma" in p.message) for p in problems] == [(2, True)]
