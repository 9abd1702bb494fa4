"""Backing vocals written in parentheses ("Hold me close (hold on)") and real hyphens: from the
lyric sheet to the score, the sung stem, the mix and the published lyrics (issue 23)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from millamusic.compose import compose
from millamusic.core.errors import SpecError
from millamusic.music.score import Score
from millamusic.music.theory import parse_chord
from millamusic.release.lyric_files import (
    TimedLine,
    TimedWord,
    backing_pieces,
    lrc_text,
    pieces,
    sylt_words,
    timed_lines_problems,
)
from millamusic.release.ttml import parse_ttml, ttml_text
from millamusic.spec.song import load_song
from millamusic.voice.melody import backing_word_times
from tests.test_compose import _write_midi

RATE = 44_100

SONG = """\
title: Backing Test
artist: Milla Virta
genre: pop
style: [test]
tempo: 120
key: A minor
seed: 3
structure:
  - {section: Verse, bars: 4, chords: [Am, F]}
lyrics: |
  [Verse]
  Twenty-four hours (ooh)
  (ooh ooh_)
"""


def _score(write_spec, text: str = SONG) -> Score:
    return compose(load_song(write_spec(text=text)))


def _bar_chord(score: Score, beat: float):
    bar = score.bars[int(beat // score.beats_per_bar)]
    return parse_chord(bar.chord_at(beat - bar.start_beat))


# --- the score ----------------------------------------------------------------------------------

def test_the_backing_part_gets_its_own_notes_in_the_gap_after_its_line(write_spec):
    score = _score(write_spec)
    assert [line.text for line in score.lines] == ["Twenty-four hours (ooh)", "(ooh ooh)"]
    assert [line.backing for line in score.lines] == ["ooh", "ooh ooh"]
    # the lead sings the lead words only, hyphenated word published whole and split into syllables
    assert [n.syllable for n in score.notes] == ["Twen", "ty", "four", "hours"]
    assert [(w.text, w.syllables) for w in score.words] == [("Twenty-four", ("Twen", "ty", "four")),
                                                            ("hours", ("hours",))]
    assert [(w.text, w.line_index) for w in score.backing_words] == [("ooh", 0), ("ooh", 1), ("ooh", 1)]
    # one note per syllable (and per melisma mark), after the lead's last note, never overlapping
    assert [(n.syllable, n.line_index) for n in score.backing_notes] == [("ooh", 0), ("ooh", 1), ("ooh", 1),
                                                                         ("", 1)]
    lead_end = max(n.start_beat + n.length_beats for n in score.notes)
    starts = [n.start_beat for n in score.backing_notes]
    assert starts[0] >= lead_end and starts == sorted(starts)
    assert all(a.start_beat + a.length_beats <= b.start_beat + 1e-9
               for a, b in zip(score.backing_notes, score.backing_notes[1:]))
    # a chord tone a third to a sixth under the lead's last note
    anchor = score.notes[-1].pitch
    for note in score.backing_notes:
        assert 3 <= anchor - note.pitch <= 9 and note.pitch % 12 in _bar_chord(score, note.start_beat).pitch_classes
    assert score.backing_notes[-1].start_beat + score.backing_notes[-1].length_beats <= score.total_beats


def test_the_score_round_trips_and_an_old_score_without_a_backing_part_loads(write_spec):
    score = _score(write_spec)
    assert Score.from_json(score.to_json()) == score
    raw = json.loads(score.to_json())
    del raw["backing_notes"], raw["backing_words"]
    for line in raw["lines"]:
        del line["backing"]
    old = Score.from_json(json.dumps(raw))
    assert old.backing_notes == () and old.backing_words == () and old.lines[0].backing == ""


MIDI_SONG = """\
title: Under
artist: M
genre: pop
tempo: 120
key: C major
melody: m.mid
structure:
  - {section: Verse, bars: 4, chords: [C, G]}
lyrics: |
  [Verse]
  Hold me close (hold on)
  Spin me round
"""


def test_with_no_gap_the_backing_part_is_sung_under_the_last_note(write_spec):
    path = write_spec(text=MIDI_SONG)
    # the lead holds "close" until "Spin" starts: no gap at all
    _write_midi(path.parent / "m.mid", [(0, 1, 64), (1, 1, 65), (2, 6, 67), (8, 1, 64), (9, 1, 62), (10, 4, 60)])
    score = compose(load_song(path))
    assert [n.syllable for n in score.notes] == ["Hold", "me", "close", "Spin", "me", "round"]
    close = score.notes[2]
    backing = score.backing_notes
    assert [n.syllable for n in backing] == ["hold", "on"]
    assert all(close.start_beat < n.start_beat < close.start_beat + close.length_beats for n in backing)
    assert all(n.pitch < close.pitch for n in backing)


def test_a_backing_part_that_fits_nowhere_is_a_located_error(write_spec):
    text = ("title: Crowded\nartist: M\ngenre: pop\ntempo: 100\nkey: C major\nstructure:\n"
            "  - {section: Verse, bars: 1, chords: [C]}\nlyrics: |\n  [Verse]\n  (" + " ".join(["la"] * 16) + ")\n")
    with pytest.raises(SpecError) as caught:
        _score(write_spec, text)
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (10, "lyrics")
    assert "backing part" in problem.message and "16 sung notes" in problem.message and problem.fix


def test_backing_word_times_come_from_the_backing_notes(write_spec):
    score = _score(write_spec)
    times = backing_word_times(score)
    spb = 60.0 / score.tempo_bpm
    first, *rest = score.backing_notes
    assert times[0] == [("ooh", first.start_beat * spb, (first.start_beat + first.length_beats) * spb)]
    # the melisma note belongs to the last "ooh": it ends where its held note ends
    held = score.backing_notes[-1]
    assert [w[0] for w in times[1]] == ["ooh", "ooh"]
    assert times[1][-1][2] == pytest.approx((held.start_beat + held.length_beats) * spb)
    assert times[1][0][2] == pytest.approx(times[1][1][1])


# --- published lyrics ---------------------------------------------------------------------------

LINES = [
    TimedLine("Hold me close (hold on)", 1.0, 4.0,
              (TimedWord("Hold", 1.0, 1.5), TimedWord("me", 1.5, 2.0), TimedWord("close", 2.0, 3.2)), "Verse",
              (TimedWord("hold", 3.0, 3.5), TimedWord("on", 3.5, 4.0))),  # "hold" starts under "close"
    TimedLine("Twenty-four hours", 5.0, 7.0, (TimedWord("Twenty-four", 5.0, 6.0), TimedWord("hours", 6.0, 7.0)),
              "Verse"),
    TimedLine("(ooh ooh)", 8.0, 9.0, (), "Chorus", (TimedWord("ooh", 8.0, 8.5), TimedWord("ooh", 8.5, 9.0))),
]


def test_pieces_split_the_lead_from_the_parenthesis():
    assert timed_lines_problems(LINES) == []
    assert pieces(LINES[0]) == [("Hold", False), ("me", True), ("close", True)]
    assert backing_pieces(LINES[0]) == [("(hold", False), ("on)", True)]
    assert pieces(LINES[2]) == [] and backing_pieces(LINES[2]) == [("(ooh", False), ("ooh)", True)]


def test_lrc_and_sylt_print_the_backing_part_in_parentheses_with_times_that_never_go_back():
    from millamusic.qa.lyric_rules import _lrc_problems

    text = lrc_text(LINES, title="t", artist="a")
    assert "[00:01.00]<00:01.00>Hold <00:01.50>me <00:02.00>close <00:03.00>(hold <00:03.50>on)<00:04.00>" in text
    assert "[00:05.00]<00:05.00>Twenty-four <00:06.00>hours<00:07.00>" in text
    assert "[00:08.00]<00:08.00>(ooh <00:08.50>ooh)<00:09.00>" in text
    assert _lrc_problems(text, 10.0, "x.lrc") == ([], 3)
    assert "[00:01.00]Hold me close (hold on)" in lrc_text(LINES, title="t", artist="a", words=False)
    # under the lead's last word: stamped no earlier than the entry before it (SYLT is one voice)
    early = [replace(LINES[0], backing=(TimedWord("hold", 1.8, 3.5), TimedWord("on", 3.5, 4.0)))]
    entries = sylt_words(early)
    assert [t for t, _ in entries] == sorted(t for t, _ in entries)
    assert entries[-2:] == ((2.0, " (hold"), (3.5, " on)"))
    assert sylt_words(LINES)[3:] == ((3.0, " (hold"), (3.5, " on)"), (5.0, "\nTwenty-four"), (6.0, " hours"),
                                     (8.0, "\n(ooh"), (8.5, " ooh)"))


def test_ttml_carries_the_backing_part_as_apples_background_vocal_span_and_reads_it_back():
    text = ttml_text(LINES, title="t", artist="a", language="en-US")
    assert ('<span begin="00:00:02.000" end="00:00:03.200">close</span> <span ttm:role="x-bg" begin="00:00:03.000" '
            'end="00:00:04.000"><span begin="00:00:03.000" end="00:00:03.500">(hold</span> '
            '<span begin="00:00:03.500" end="00:00:04.000">on)</span></span></p>') in text
    assert '<span begin="00:00:05.000" end="00:00:06.000">Twenty-four</span>' in text
    back = parse_ttml(text)
    assert [line.text for line in back] == [line.text for line in LINES]
    assert [[w.text for w in line.backing] for line in back] == [["(hold", "on)"], [], ["(ooh", "ooh)"]]
    assert [[(w.start, w.end) for w in line.backing] for line in back] == [
        [(w.start, w.end) for w in line.backing] for line in LINES]
    assert timed_lines_problems(back) == []


@pytest.mark.parametrize("line, problem", [
    (replace(LINES[0], text="Hold me close hold on"), "does not end with them in parentheses"),
    (replace(LINES[0], backing=(TimedWord("hold", 3.0, 3.5), TimedWord("off", 3.5, 4.0))), "not in its parenthesis"),
    (replace(LINES[0], backing=(TimedWord("on", 3.5, 4.0), TimedWord("hold", 3.0, 3.5))), "in sung order"),
    (replace(LINES[0], backing=(TimedWord("hold", 3.0, 3.5), TimedWord("on", 3.5, 4.5))), "outside its line"),
    (replace(LINES[0], backing=(TimedWord("hold", float("nan"), 3.5),)), "not finite"),
    (replace(LINES[0], backing=(TimedWord(" hold", 3.0, 3.5),)), "not a stripped"),
])
def test_bad_backing_words_are_named(line, problem):
    problems = timed_lines_problems([line])
    assert problems and any(problem in p for p in problems) and all("Fix:" in p for p in problems)


# --- the mix ------------------------------------------------------------------------------------

def test_the_backing_stem_is_mixed_as_a_vocal_wide_and_under_the_lead():
    from millamusic.core.audio import Audio
    from millamusic.mix import MIX, STEM_SETTINGS, VOCAL_STEMS, mix

    assert "backing_vocals" in VOCAL_STEMS
    lead, backing = STEM_SETTINGS["lead"], STEM_SETTINGS["backing_vocals"]
    assert backing.gain_db < lead.gain_db and backing.reverb_send > lead.reverb_send and backing.pan != 0
    click = np.zeros((2, RATE), np.float32)
    click[:, 1000] = 0.5
    no_room = replace(MIX, plate=replace(MIX.plate, room_size=0.0), stems={
        "backing_vocals": replace(backing, reverb_send=0.0, compress=None, highpass_hz=None, pan=0.0)})
    out, _ = mix({"backing_vocals": Audio(click, RATE)}, no_room)
    delay = int(np.argmax(np.abs(out.samples[1]))) - int(np.argmax(np.abs(out.samples[0])))
    assert delay == round(backing.spread_ms * RATE / 1000)


# --- singing (slow) -----------------------------------------------------------------------------

def _db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-9))


@pytest.mark.slow
def test_the_singer_sings_the_backing_part_as_its_own_stem_in_the_gap(write_spec):
    from millamusic.engines.base import VocalRequest
    from millamusic.engines.singer import Singer

    score = _score(write_spec)
    result = Singer().render(score, VocalRequest(seed=3, language="en-us", voice="female", sample_rate=RATE))
    assert set(result.stems) == {"lead", "backing_vocals"}
    assert result.details["backing_sung_syllables"] == 3
    # the lead's syllables only: the backing words are not the lead's
    assert len(result.syllables) == len([n for n in score.notes if n.syllable])
    backing, lead, before, after = _gap_levels(score, result)
    assert backing > -30  # sung where it is timed (the stem peaks at -6 dBFS)
    # silent a second before it (a breath and the onset consonants come just before) and after it
    assert before < -80 and after < -80
    assert lead < backing - 30  # the lead rests in the gap


@pytest.mark.slow
def test_a_rendered_song_publishes_the_backing_part_and_real_hyphens(write_spec, tmp_path):
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3

    from millamusic.cli import main

    spec = write_spec(text=SONG)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    stems = out / "stems" / "backing-test"
    assert (stems / "backing_vocals.wav").is_file() and (stems / "lead.wav").is_file()
    masters = out / "masters" / "backing-test"
    assert (masters / "lyrics.txt").read_text() == "Twenty-four hours (ooh)\n(ooh ooh)\n"
    lrc = (out / "lyrics" / "backing-test.lrc").read_text()
    assert re.search(r"<\d\d:\d\d\.\d\d>Twenty-four <", lrc)  # one word, hyphen kept, timed as sung
    assert '>Twenty-four</span>' in (out / "lyrics" / "backing-test.ttml").read_text()
    flac = FLAC(next(masters.glob("*/backing-test.flac")))
    assert flac["LYRICS"] == ["Twenty-four hours (ooh)\n(ooh ooh)"]
    tags = ID3(next(masters.glob("*/backing-test.320.mp3")))
    assert tags.getall("USLT")[0].text == "Twenty-four hours (ooh)\n(ooh ooh)"
    # the LRC copy in the tags (the SYLT frame does not survive signing: release/tags.py)
    assert "]Twenty-four hours (ooh)\n" in tags.getall("TXXX:SYNCEDLYRICS")[0].text[0]
    assert "]Twenty-four hours (ooh)\n" in flac["SYNCEDLYRICS"][0]
    release = json.loads((masters / "release.json").read_text())
    assert "backing_vocals" in json.dumps(release)


def _gap_levels(score: Score, result) -> tuple[float, float, float, float]:
    """(backing dB inside the backing part's time, lead dB there, backing dB from a second before it
    back to the start, backing dB from half a second after it to the end)."""
    spb = 60.0 / score.tempo_bpm
    first, last = score.backing_notes[0], score.backing_notes[-1]
    start, end = first.start_beat * spb, (last.start_beat + last.length_beats) * spb
    lead, backing = (result.stems[name].samples[0] for name in ("lead", "backing_vocals"))
    window = slice(int((start + 0.1) * RATE), int(end * RATE))
    return (_db(backing[window]), _db(lead[window]), _db(backing[: int((start - 1.0) * RATE)]),
            _db(backing[int((end + 0.5) * RATE):]))


@pytest.mark.slow
def test_kokoro_sings_the_backing_part_as_its_own_stem_not_as_lead_words(write_spec):
    from millamusic.engines.base import VocalRequest
    from millamusic.engines.kokoro import Kokoro

    score = _score(write_spec)
    result = Kokoro().render(score, VocalRequest(seed=3, language="en-us", voice="female", sample_rate=RATE))
    assert set(result.stems) == {"lead", "backing_vocals"} and result.details["phrases"]["backing_vocals"] >= 1
    assert len(result.syllables) == len([n for n in score.notes if n.syllable])
    backing, lead, before, _ = _gap_levels(score, result)
    assert backing > -30 and lead < backing - 30 and before < -80


@pytest.mark.slow
def test_diffsinger_sings_the_lead_and_the_embedded_singer_the_backing_part_and_the_credits_say_so(
        write_spec, tmp_path):
    from millamusic.engines.base import VocalRequest
    from millamusic.engines.diffsinger import DiffSinger
    from millamusic.engines.singer import Singer
    from tests import diffsinger_tiny as tiny
    from tests.test_diffsinger import spell

    score = _score(write_spec)
    words = {"twenty-four": None, "hours": None, "ooh": None}
    bank = tiny.build_bank(tmp_path / "tiny", dictionary={w: spell(w) for w in words})
    options = {"diffsinger_voicebank": str(bank), "diffsinger_licence": {"name": "CC0 1.0", "commercial": True},
               "steps": 2}
    result = DiffSinger().render(score, VocalRequest(seed=3, language="en-us", voice="female", sample_rate=RATE,
                                                     options=options))
    assert set(result.stems) == {"lead", "backing_vocals"}
    assert "backing vocals: embedded singer" in result.engine_info.model and result.engine_info.name == "diffsinger"
    assert result.details["backing_vocals"].startswith(f"embedded singer {Singer.info.version}")
    backing, lead, before, _ = _gap_levels(score, result)
    assert backing > -30 and before < -80


@pytest.mark.parametrize("word, said", [
    ("Twenty-four", "Twenty-four"), ("ice-cold!", "ice-cold"), ("-oh-", "oh"), ("(ooh", "ooh"), ("x - y", "x y"),
    ("don’t", "don't"), ("_", "la"),
])
def test_engines_say_a_hyphenated_word_as_one_word(word, said):
    from millamusic.voice.syllables import clean_word

    assert clean_word(word) == said
