import mido
import pytest

from millamusic.compose import DEFAULT_RANGE, compose
from millamusic.core.errors import SpecError
from millamusic.music.score import Score
from millamusic.music.theory import parse_chord, parse_key
from millamusic.spec.song import load_song
from tests.conftest import CROWDED_SONG


def test_score_grid_and_one_note_per_syllable(write_spec):
    song = load_song(write_spec(tempo=120))
    score = compose(song)
    assert [b.chords for b in score.bars] == [("Am",), ("F",), ("C",), ("G",)]
    assert [b.start_beat for b in score.bars] == [0, 4, 8, 12]
    assert score.music_seconds == pytest.approx(8.0)
    sung = [n.syllable for n in score.notes]
    assert sung == ["Hold", "the", "light", "to", "night", "Spin", "me", "round", "a", "gain"]
    starts = [n.start_beat for n in score.notes]
    assert starts == sorted(starts)
    for a, b in zip(score.notes, score.notes[1:]):
        assert a.start_beat + a.length_beats <= b.start_beat + 1e-9  # monophonic


def test_melody_is_singable_and_follows_the_chords(write_spec):
    song = load_song(write_spec(seed=5))
    score = compose(song)
    key = parse_key(score.key)
    stable = {key.tonic_pc, key.scale_pcs[2], key.scale_pcs[4]}
    for note in score.notes:
        assert DEFAULT_RANGE[0] <= note.pitch <= DEFAULT_RANGE[1]
        bar = score.bars[int(note.start_beat // score.beats_per_bar)]
        chord = parse_chord(bar.chord_at(note.start_beat - bar.start_beat))
        if note.start_beat == int(note.start_beat):  # strong beat: a chord tone
            assert note.pitch % 12 in chord.pitch_classes
        else:
            assert note.pitch % 12 in key.scale_pcs
    last_of_line = {}
    for note in score.notes:
        last_of_line[note.line_index] = note
    for note in last_of_line.values():
        assert note.pitch % 12 in stable | set(parse_chord(score.bars[int(note.start_beat // 4)].chords[0]).pitch_classes)


def test_deterministic_for_seed_and_different_for_another(write_spec):
    a = compose(load_song(write_spec(seed=1)))
    b = compose(load_song(write_spec(seed=1)))
    c = compose(load_song(write_spec(seed=2)))
    assert a == b
    assert [n.pitch for n in a.notes] != [n.pitch for n in c.notes] or [n.length_beats for n in a.notes] != [
        n.length_beats for n in c.notes]


def test_score_json_round_trip(write_spec):
    score = compose(load_song(write_spec()))
    assert Score.from_json(score.to_json()) == score


def test_repeated_section_repeats_its_melody(write_spec):
    path = write_spec(text="""\
title: Twice
artist: M
genre: pop
tempo: 100
key: C major
structure:
  - {section: Chorus, bars: 2, chords: [C, G]}
  - {section: Verse, bars: 2, chords: [Am, F]}
  - {section: Chorus, bars: 2, chords: [C, G]}
lyrics: |
  [Chorus]
  We sing it twice tonight
  [Verse]
  In between the lines
""")
    score = compose(load_song(path))
    choruses = [[(n.pitch, n.length_beats) for n in score.notes if score.lines[n.line_index].section_index == i]
                for i in (0, 2)]
    assert choruses[0] == choruses[1] and choruses[0]


def _write_midi(path, notes, ticks=480):
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    now = 0
    for start, length, pitch in notes:
        track.append(mido.Message("note_on", note=pitch, velocity=90, time=int(start * ticks) - now))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=int(length * ticks)))
        now = int((start + length) * ticks)
    midi.save(str(path))


def test_melody_from_midi(write_spec):
    notes = [(i * 0.5, 0.5, 60 + i) for i in range(5)] + [(8 + i * 0.5, 0.5, 67 - i) for i in range(5)]
    path = write_spec(extra="melody: m.mid\n")
    _write_midi(path.parent / "m.mid", notes)
    score = compose(load_song(path))
    assert [(n.start_beat, n.pitch) for n in score.notes] == [(s, p) for s, _, p in notes]
    assert score.melody_source.startswith("midi:")


def test_midi_syllable_mismatch_is_a_clear_error(write_spec):
    path = write_spec(extra="melody: m.mid\n")
    _write_midi(path.parent / "m.mid", [(i * 0.5, 0.5, 60) for i in range(7)])
    with pytest.raises(SpecError) as caught:
        compose(load_song(path))
    message = str(caught.value)
    assert "7 notes but the lyrics have 10 sung notes" in message
    assert "Verse: 7 notes / 5 syllables  <-- differs" in message
    # the verse is one MIDI phrase and one lyric line: the line itself is named, at its line in the spec
    line_problem = next(p for p in caught.value.problems if p.field == "lyrics")
    assert line_problem.line == 13 and "has 5 sung notes (Hold the light to night)" in line_problem.message
    assert "phrase starting in bar 1 has 7 notes" in line_problem.message


def test_melisma_marks_add_held_notes(write_spec):
    path = write_spec(extra="")
    text = path.read_text().replace("Hold the light tonight", "Hold_ the light to_-night __")
    path.write_text(text)
    score = compose(load_song(path))
    verse = [n for n in score.notes if n.line_index == 0]
    assert [n.syllable for n in verse] == ["Hold", "", "the", "light", "to", "", "night", "", ""]
    assert [w.syllables for w in score.words[:4]] == [("Hold",), ("the",), ("light",), ("to", "night")]
    assert all(n.word_index == verse[0].word_index for n in verse[:2])


def test_melisma_notes_take_midi_notes(write_spec):
    path = write_spec(extra="melody: m.mid\n")
    text = path.read_text().replace("Hold the light tonight", "Hold_ the light to-night")
    path.write_text(text)
    _write_midi(path.parent / "m.mid", [(i * 0.5, 0.5, 60 + i) for i in range(6)] + [(8 + i * 0.5, 0.5, 67) for i in range(5)])
    score = compose(load_song(path))
    assert [(n.syllable, n.pitch) for n in score.notes[:3]] == [("Hold", 60), ("", 61), ("the", 62)]


def test_line_too_long_for_its_bars_names_the_line(write_spec):
    path = write_spec(text=CROWDED_SONG)
    with pytest.raises(SpecError) as caught:
        compose(load_song(path))
    (problem,) = caught.value.problems
    assert problem.line == 10 and "do not fit" in problem.message
