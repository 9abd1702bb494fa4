import pytest

from millamusic.music.lyrics import display_line, line_words, parse_sheet, split_backing, syllables, words_of


@pytest.mark.parametrize("word, expected", [
    ("tonight", ("to", "night")), ("spinning", ("spin", "ning")), ("fire", ("fire",)), ("alive", ("a", "live")),
    ("radio", ("ra", "di", "o")), ("lonely", ("lone", "ly")), ("beautiful", ("beau", "ti", "ful")),
    ("loved", ("loved",)), ("wanted", ("wan", "ted")), ("little", ("lit", "tle")), ("the", ("the",)),
    ("spin-ning", ("spin", "ning")), ("yeah", ("yeah",)),
    # '|' forces a split; a hyphen is a real hyphen, and each side is split as a word of its own
    ("spin|ning", ("spin", "ning")), ("ev|ery", ("ev", "ery")), ("twenty-four", ("twen", "ty", "four")),
    ("ice-cold", ("ice", "cold")), ("brand-new", ("brand", "new")),
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
    words = line_words("Spin_|ning round __ and love_ me, _ oh", "en-us")
    assert [(w.text, w.syllables, w.holds) for w in words] == [
        ("Spinning", ("Spin", "ning"), (1, 0)), ("round", ("round",), (2,)), ("and", ("and",), (0,)),
        ("love", ("love",), (1,)), ("me", ("me",), (1,)), ("oh", ("oh",), (0,))]
    assert sum(w.notes for w in words) == 7 + 5
    assert words_of("love_ me _ now") == ["love", "me", "now"]


def test_a_line_cannot_start_with_a_melisma():
    _blocks, problems = parse_sheet("[Verse]\n_ and on\n", file="x.txt")
    assert [(p.line, "cannot start with a melisma" in p.message) for p in problems] == [(2, True)]


# --- real hyphens and the split mark ----------------------------------------------------------------

def test_a_hyphen_is_published_and_still_splits_syllables():
    words = line_words("Twenty-four brand-new ice-cold nights", "en-us")
    assert [(w.text, w.syllables) for w in words] == [
        ("Twenty-four", ("Twen", "ty", "four")), ("brand-new", ("brand", "new")), ("ice-cold", ("ice", "cold")),
        ("nights", ("nights",))]
    assert display_line("Twenty-four brand-new ice-cold nights") == "Twenty-four brand-new ice-cold nights"


def test_the_split_mark_is_never_published_and_holds_work_with_it():
    assert display_line("Spin_|ning round __ the sun") == "Spinning round the sun"
    assert words_of("spin|ning twen|ty-four") == ["spinning", "twenty-four"]
    words = line_words("twen|ty_-four_", "en-us")
    assert [(w.text, w.syllables, w.holds) for w in words] == [("twenty-four", ("twen", "ty", "four"), (0, 1, 1))]


@pytest.mark.parametrize("line, column", [
    ("|spin me", 1), ("spin| me", 5), ("spin||ning", 5), ("a | b", 3), ("spin_| me", 6),
])
def test_a_split_mark_at_a_word_edge_is_a_located_error(line, column):
    blocks, problems = parse_sheet(f"[Verse]\n{line}\n", file="x.txt")
    assert [(p.file, p.line, p.column, p.field, p.value) for p in problems] == [("x.txt", 2, column, "lyrics", line)]
    assert "split mark '|'" in problems[0].message and "spin|ning" in problems[0].fix
    assert blocks[0].lines == ()


# --- backing vocals in parentheses ------------------------------------------------------------------

@pytest.mark.parametrize("line, lead, backing", [
    ("Hold me close (hold on)", "Hold me close", "hold on"),
    ("I'm falling (ooh)", "I'm falling", "ooh"),
    ("(ooh ooh_)", "", "ooh ooh_"),
    ("Hold me close (hold on).", "Hold me close", "hold on"),
    ("Hold me close", "Hold me close", ""),
])
def test_backing_part_is_the_parenthesis_at_the_end(line, lead, backing):
    blocks, problems = parse_sheet(f"[Verse]\n{line}\n", file="x.txt")
    assert problems == [] and blocks[0].lines[0].text == line
    assert split_backing(line) == (lead, backing)


def test_backing_part_is_published_as_lyric_sites_print_it():
    assert display_line("Hold me close ( hold_ on )") == "Hold me close (hold on)"
    assert display_line("(ooh ooh_)") == "(ooh ooh)"


@pytest.mark.parametrize("line, column, problem", [
    ("Hold me (close", 9, "unbalanced parenthesis"),
    ("Hold me close)", 14, "unbalanced parenthesis"),
    ("Hold me ((close))", 10, "more than one parenthesis"),
    ("Hold (me) close", 6, "in the middle of a line"),
    ("Hold me (close) (on)", 17, "more than one parenthesis"),
    ("Hold me close ()", 15, "holds no singable words"),
    ("Hold me close ( !? )", 15, "holds no singable words"),
    (") Hold me (", 1, "')' before its '('"),
    ("Hold me close (_ on)", -1, "cannot start with a melisma"),  # the line's start: -1 + 2
])
def test_hostile_parentheses_are_located_errors(line, column, problem):
    blocks, problems = parse_sheet(f"[Verse]\n  {line}\n", file="x.txt")
    assert [(p.line, p.field, p.value) for p in problems] == [(2, "lyrics", line)]
    assert problems[0].column == column + 2 and problem in problems[0].message  # the line is indented by 2
    assert problems[0].fix


def test_backing_words_are_not_lead_words():
    lead, backing = split_backing("Hold me close (hold_ on)")
    assert [w.text for w in line_words(lead)] == ["Hold", "me", "close"]
    assert [(w.text, w.holds) for w in line_words(backing)] == [("hold", (1,)), ("on", (0,))]
