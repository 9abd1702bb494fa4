"""Section key changes, tempo changes and ritardandos: the tempo map's maths, the spec fields and
their hostile cases, the composed melody in a new key, the MIDI conductor track, synced lyrics
after a change, and a backing measured section by section."""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import mido
import numpy as np
import pytest

from millamusic.compose import DEFAULT_RANGE, compose
from millamusic.core.errors import SpecError
from millamusic.instruments.midi_file import PPQ, midi_bytes, tempo_events
from millamusic.music.score import RITARDANDO_SHARE, Score, TempoChange
from millamusic.music.theory import Key, parse_chord
from millamusic.release.midi import midi_with_vocal
from millamusic.spec.song import load_song
from tests.test_arranger import make_score

# --- the tempo map ------------------------------------------------------------------------


def _numeric_seconds(score: Score, beat: float, steps: int = 20_000) -> float:
    """Seconds to `beat` by the midpoint rule over tiny steps of 60/bpm: what the closed form must equal."""
    width = beat / steps
    return sum(score.seconds_per_beat_at((k + 0.5) * width) for k in range(steps)) * width


def test_a_song_in_one_tempo_is_the_plain_product():
    score = make_score(tempo=96.0)
    assert score.tempo_changes == ()
    for beat in (0.0, 1.0, 7.25, 31.0):
        assert score.beat_to_seconds(beat) == beat * 60.0 / 96.0
        assert score.seconds_to_beat(score.beat_to_seconds(beat)) == pytest.approx(beat, abs=1e-12)
    assert score.tempo_at(20.0) == 96.0
    assert score.span_seconds(4.0, 2.0) == (4.0 * 60 / 96, 2.0 * 60 / 96)
    assert score.tail_beats == score.tail_seconds / score.seconds_per_beat
    # The backing cache key of a song without changes is what it was before the tempo map.
    harmony = score.harmony_dict()
    assert "tempo_changes" not in harmony and all("key" not in s for s in harmony["sections"])


def test_a_step_change_of_tempo():
    score = replace(make_score(tempo=120.0, bars_per_section=2), tempo_changes=(TempoChange(8.0, 60.0),))
    assert score.beat_to_seconds(8.0) == pytest.approx(4.0)
    assert score.beat_to_seconds(10.0) == pytest.approx(6.0)  # two beats at 60 BPM
    assert score.seconds_to_beat(5.0) == pytest.approx(9.0)
    assert score.tempo_at(7.99) == 120.0 and score.tempo_at(8.0) == 60.0
    assert score.music_seconds == pytest.approx(4.0 + 24 * 1.0)  # 32 beats: 8 at 120, 24 at 60
    assert score.tail_beats == pytest.approx(2.5)  # the tail at the tempo the song ends in


def test_a_ritardando_integrates_exactly_and_inverts():
    # 110 BPM, then a linear ramp to 88 over beats 12..16, holding 88 after it.
    score = replace(make_score(tempo=110.0, bars_per_section=2, kinds=("verse", "outro")),
                    tempo_changes=(TempoChange(12.0, 110.0, 4.0, 88.0),))
    ramp = score.beat_to_seconds(16.0) - score.beat_to_seconds(12.0)
    slope = (88.0 - 110.0) / 4.0
    assert ramp == pytest.approx(60.0 / slope * math.log(88.0 / 110.0), rel=1e-12)  # closed form
    assert score.beat_to_seconds(16.0) == pytest.approx(_numeric_seconds(score, 16.0), rel=1e-6)
    assert score.tempo_at(14.0) == pytest.approx(99.0)  # half way down the ramp
    assert score.seconds_per_beat_at(20.0) == pytest.approx(60.0 / 88.0)
    for beat in np.linspace(0.0, 30.0, 61):
        assert score.seconds_to_beat(score.beat_to_seconds(float(beat))) == pytest.approx(beat, abs=1e-9)
    # Seconds grow with beats everywhere, across the ramp's ends too.
    times = [score.beat_to_seconds(b) for b in np.linspace(0, 30, 301)]
    assert all(b > a for a, b in zip(times, times[1:]))


def test_the_map_composes_with_a_compound_meter():
    """6/8's tempo counts dotted quarters: a change halves or doubles seconds per eighth the same way."""
    base = make_score(beats=6, bars_per_section=2, tempo=60.0)
    score = replace(base, beat_unit=8, beats_per_bar=6, tempo_changes=(TempoChange(12.0, 120.0),))
    assert score.seconds_per_beat == pytest.approx(60.0 / (60.0 * 3))
    assert score.beat_to_seconds(12.0) == pytest.approx(12 / 3)  # four dotted quarters at 60
    assert score.beat_to_seconds(18.0) == pytest.approx(4.0 + 6 / 3 / 2)  # two more at 120


def test_bad_tempo_changes_are_bugs_not_silence():
    with pytest.raises(ValueError):
        TempoChange(4.0, 0.0)
    with pytest.raises(ValueError):
        TempoChange(4.0, 100.0, 4.0, None)
    score = replace(make_score(), tempo_changes=(TempoChange(8.0, 90.0), TempoChange(4.0, 100.0)))
    with pytest.raises(ValueError, match="out of order"):
        score.beat_to_seconds(10.0)


def test_scores_round_trip_and_old_scores_still_load():
    score = replace(make_score(), tempo_changes=(TempoChange(8.0, 90.0), TempoChange(28.0, 90.0, 4.0, 72.0)))
    score = replace(score, sections=(replace(score.sections[0], key="B minor"), *score.sections[1:]))
    again = Score.from_json(score.to_json())
    assert again == score and again.section_key(0) == Key(11, "minor") and again.section_key(1) == score.key_value
    old = json.loads(make_score().to_json())
    del old["tempo_changes"]
    for section in old["sections"]:
        del section["key"]
    assert Score.from_json(json.dumps(old)) == make_score()


# --- the spec -------------------------------------------------------------------------------

SONG = """\
title: Key Change
artist: Milla Virta
genre: pop
tempo: 100
key: A minor
{top}structure:
  - {{section: Verse, bars: 4, chords: [Am, F, C, G]}}
  - {{section: Chorus, bars: 4, chords: [Am, Dm, E, Am]}}
  - {{section: Last Chorus, kind: chorus, bars: 4, chords: [{last_chords}]{last}}}
lyrics: |
  [Verse]
  Hold the light tonight
  Walking home alone
  [Chorus]
  Spin me round again
  Never let me go
  [Last Chorus]
  Spin me round again
  Never let me go
"""
UP_A_TONE = "Bm, Em, F#, Bm"


def _song(write_spec, last: str = ", key: B minor, tempo: 112, ritardando: true", top: str = "",
          last_chords: str = UP_A_TONE):
    return write_spec(text=SONG.format(last=last, top=top, last_chords=last_chords))


def _problems(path: Path):
    with pytest.raises(SpecError) as caught:
        load_song(path)
    return caught.value.problems


def test_a_spec_with_a_key_change_a_tempo_change_and_a_ritardando(write_spec):
    song = load_song(_song(write_spec))
    last = song.spec.structure[2]
    assert (last.key, last.tempo, last.ritardando) == ("B minor", 112.0, True)
    assert [s.key for s in song.spec.structure[:2]] == [None, None]
    numeric = load_song(_song(write_spec, last=", tempo: 112, ritardando: 90", last_chords="Am, Dm, E, Am"))
    assert numeric.spec.structure[2].ritardando == 90.0
    off = load_song(_song(write_spec, last=", ritardando: false", last_chords="Am, Dm, E, Am"))
    assert compose(off).tempo_changes == ()


@pytest.mark.parametrize(("last", "field", "words"), [
    (", key: H major", "structure[2].key", "not a key"),  # a key change to nowhere
    (", key: B minr", "structure[2].key", "not a key"),
    (", key: 7", "structure[2].key", ""),
    (", tempo: 500", "structure[2].tempo", "240"),
    (", tempo: 12", "structure[2].tempo", "40"),
    (", tempo: .nan", "structure[2].tempo", ""),
    (", tempo: true", "structure[2].tempo", "true/false"),
    (", ritardando: slowly", "structure[2].ritardando", "true/false or a tempo"),
    (", ritardando: 300", "structure[2].ritardando", "true/false or a tempo"),
    (", ritardando: .inf", "structure[2].ritardando", "true/false or a tempo"),
    (", ritardando: [80]", "structure[2].ritardando", "true/false or a tempo"),
    (", ritardando: 100", "structure[2].ritardando", "does not slow down"),  # the tempo in force is 100
    (", tempo: 90, ritardando: 95", "structure[2].ritardando", "does not slow down"),
])
def test_hostile_section_fields_are_located_errors_with_a_fix(write_spec, last, field, words):
    problems = _problems(_song(write_spec, last=last, last_chords="Am, Dm, E, Am"))
    problem = next(p for p in problems if p.field == field)
    assert words in problem.message, problem
    assert problem.line == 9 and problem.column is not None and problem.fix, problem


def test_a_key_its_chords_contradict_is_refused(write_spec):
    """`key: B minor` on chords left in A minor: the chords would play in A while the melody sings in B."""
    problems = _problems(_song(write_spec, last=", key: B minor", last_chords="Am, Dm, E, Am"))
    [problem] = [p for p in problems if p.field == "structure[2].key"]
    assert "not in B minor" in problem.message and "key: A minor" in problem.fix, problem
    assert problem.line == 9
    # Borrowed chords are fine: a secondary dominant (A major in G major) keeps the key.
    load_song(_song(write_spec, last=", key: G major", last_chords="G, Em, A, D"))


def test_the_song_length_limit_reads_the_tempo_map(write_spec):
    """Two 128-bar sections are 4 min at 240 BPM but 25 min when they slow to 40."""
    long_song = SONG.replace("bars: 4, chords: [Am, F, C, G]}", "bars: 128, chords: [Am, F, C, G], tempo: 40}")
    long_song = long_song.replace("bars: 4, chords: [Am, Dm, E, Am]}", "bars: 128, chords: [Am, Dm, E, Am]}")
    path = write_spec(text=long_song.format(last="", top="", last_chords="Am").replace("tempo: 100", "tempo: 240"))
    [problem] = _problems(path)
    assert problem.field == "structure" and "20-minute limit" in problem.message
    load_song(write_spec(text=long_song.replace("tempo: 40}", "}").format(last="", top="", last_chords="Am")
                         .replace("tempo: 100", "tempo: 240")))


# --- composing ------------------------------------------------------------------------------

def test_a_last_chorus_up_a_tone_sings_in_its_key_inside_the_range(write_spec):
    song = load_song(_song(write_spec))
    score = compose(song)
    assert [s.key for s in score.sections] == [None, None, "B minor"]
    last = score.sections[2]
    last_bars = score.bars[last.start_bar:last.start_bar + last.bars]
    assert [bar.chords for bar in last_bars] == [("Bm",), ("Em",), ("F#",), ("Bm",)]  # the chords as written
    sung = {i: [n for n in score.notes if score.lines[n.line_index].section_index == i] for i in range(3)}
    b_minor = set(Key(11, "minor").scale_pcs)
    for note in sung[2]:  # scale tones of B minor, or tones of the chord under them (F# major's A#)
        bar = score.bars[int(note.start_beat // 4)]
        chord = parse_chord(bar.chord_at(note.start_beat - bar.start_beat))
        assert note.pitch % 12 in b_minor | set(chord.pitch_classes), note
    assert {n.pitch % 12 for n in sung[2]} - set(Key(9, "minor").scale_pcs)  # B minor's C#/F# are heard
    lowest, highest = DEFAULT_RANGE
    assert all(lowest <= n.pitch <= highest for n in score.notes)
    # The key lifts the chorus a tone: its lines sit no lower than the first chorus's.
    assert np.mean([n.pitch for n in sung[2]]) >= np.mean([n.pitch for n in sung[1]])
    # The tempo map: 112 from the last chorus, slowing to 80 % over its last bar.
    start = last_bars[0].start_beat
    assert score.tempo_changes == (TempoChange(start, 112.0), TempoChange(start + 12, 112.0, 4, 112 * RITARDANDO_SHARE))


def test_a_transposed_song_moves_its_section_keys_too(write_spec):
    score = compose(load_song(_song(write_spec, top="transpose: -2\n")))
    assert score.key == "G minor" and score.sections[2].key == "A minor"
    assert score.bars[-1].chords == ("Am",)


@pytest.mark.parametrize("key", ["E minor", "D# minor"])
def test_a_big_lift_stays_in_range_for_a_narrow_singer(write_spec, key, monkeypatch):
    """Up a fourth or a tritone for a singer with under an octave and a half: the register narrows
    or drops an octave, never past the top."""
    chords = {"E minor": "Em, Am, B, Em", "D# minor": "D#m, G#m, A#, D#m"}[key]
    song = load_song(_song(write_spec, last=f", key: {key}", last_chords=chords))
    monkeypatch.setattr(type(song), "voice_range", property(lambda self: (57, 72)))
    score = compose(song)
    assert all(57 <= n.pitch <= 72 for n in score.notes)
    scale = set(Key(4 if key == "E minor" else 3, "minor").scale_pcs)
    last = [n for n in score.notes if score.lines[n.line_index].section_index == 2]
    assert sum(n.pitch % 12 in scale for n in last) >= 0.8 * len(last)


def test_a_ritardando_on_a_one_bar_section_ramps_that_bar(write_spec):
    """Allowed: the one bar is the section's last; the ramp starts where its tempo does."""
    text = SONG.format(last="", top="", last_chords="Am, Dm, E, Am").replace(
        "  - {section: Last Chorus", "  - {section: Tag, bars: 1, chords: [Am], tempo: 90, ritardando: 70}\n"
                                     "  - {section: Last Chorus")
    score = compose(load_song(write_spec(text=text)))
    tag = score.bars[score.sections[2].start_bar].start_beat
    assert score.tempo_changes == (TempoChange(tag, 90.0, 4, 70.0), TempoChange(tag + 4, 90.0))
    # A tempo: the next section is back at the tempo in force, the 90 the Tag set (a `tempo:` lasts).
    assert score.tempo_at(tag + 4) == 90.0 and score.tempo_at(tag + 2) == pytest.approx(80.0)


# --- MIDI -----------------------------------------------------------------------------------

def _tick_seconds(midi: mido.MidiFile) -> dict[int, float]:
    """Seconds at every tick the conductor track has an event, integrating its set_tempo events."""
    at, tempo, seconds, out = 0, 500000, 0.0, {}
    for message in midi.tracks[0]:
        seconds += mido.tick2second(message.time, midi.ticks_per_beat, tempo)
        at += message.time
        out[at] = seconds
        if message.type == "set_tempo":
            tempo = message.tempo
    return out


def test_the_midi_carries_the_tempo_map_time_and_key_signatures(write_spec):
    score = compose(load_song(_song(write_spec)))
    midi = mido.MidiFile(file=io.BytesIO(midi_bytes(score, [])))
    conductor = midi.tracks[0]
    ticks, events = 0, []
    for message in conductor:
        ticks += message.time
        events.append((ticks, message))
    last = score.bars[score.sections[2].start_bar].start_beat
    keys = [(tick, m.key) for tick, m in events if m.type == "key_signature"]
    assert keys == [(0, "Am"), (int(last * PPQ), "Bm")]
    assert [(tick, m.numerator, m.denominator) for tick, m in events if m.type == "time_signature"] == [(0, 4, 4)]
    tempos = [(tick, round(mido.tempo2bpm(m.tempo), 3)) for tick, m in events if m.type == "set_tempo"]
    assert tempos[0] == (0, 100.0) and (int(last * PPQ), 112.0) in tempos
    ramp = [t for t in tempos if t[0] >= (last + 12) * PPQ]
    assert len(ramp) == 9  # one per eighth of the last bar, then the held 89.6
    assert [bpm for _, bpm in ramp] == sorted((bpm for _, bpm in ramp), reverse=True)
    assert ramp[-1] == ((last + 16) * PPQ, round(112 * RITARDANDO_SHARE, 3))
    # Played back, the MIDI's clock is the score's: every step of the ramp lands where the audio does.
    clock = _tick_seconds(midi)
    for tick, _ in tempos:
        assert clock[tick] == pytest.approx(score.beat_to_seconds(tick / PPQ), abs=1e-4)
    assert clock[max(clock)] == pytest.approx(score.total_seconds, abs=1e-3)


def test_one_tempo_writes_one_set_tempo():
    assert tempo_events(make_score(tempo=120.0)) == [(0.0, 500000)]


def test_the_release_midi_has_the_tempo_map_even_without_a_backing_midi(write_spec, tmp_path):
    score = compose(load_song(_song(write_spec)))
    empty = tmp_path / "backing.mid"
    empty.write_bytes(b"")  # MusicGen writes no MIDI
    midi = mido.MidiFile(file=io.BytesIO(midi_with_vocal(empty, score)))
    assert [m.type for m in midi.tracks[0]].count("set_tempo") == len(tempo_events(score))
    vocal = midi.tracks[-1]
    ticks, first_on = 0, None
    last_line = min(n.start_beat for n in score.notes if score.lines[n.line_index].section_index == 2)
    for message in vocal:
        ticks += message.time
        if message.type == "note_on" and ticks >= last_line * PPQ and first_on is None:
            first_on = ticks
    assert first_on == round(last_line * PPQ)
    assert _tick_seconds_all(midi, first_on) == pytest.approx(score.beat_to_seconds(last_line), abs=1e-4)


def _tick_seconds_all(midi: mido.MidiFile, tick: int) -> float:
    """Seconds at `tick` through the conductor's tempo map."""
    at, tempo, seconds = 0, 500000, 0.0
    for message in midi.tracks[0]:
        if at + message.time > tick:
            break
        seconds += mido.tick2second(message.time, midi.ticks_per_beat, tempo)
        at += message.time
        if message.type == "set_tempo":
            tempo = message.tempo
    return seconds + mido.tick2second(tick - at, midi.ticks_per_beat, tempo)


# --- rendered and measured -------------------------------------------------------------------

MEASURED_SONG = """\
title: Up A Tone
artist: Milla Virta
genre: pop
tempo: 96
key: A minor
seed: 5
structure:
  - {section: Chorus, bars: 8, chords: [Am, Dm, Em, Am]}
  - {section: Last Chorus, kind: chorus, bars: 9, chords: [Bm, G, A, Bm], key: B minor, tempo: 120,
     ritardando: true}
lyrics: |
  [Chorus]
  Spin me round again
  Never let me go
  [Last Chorus]
  Spin me round again
  Never let me go
"""


@pytest.mark.slow
def test_the_backing_measures_at_each_sections_key_and_tempo(write_spec):
    from millamusic.analysis.features import estimate_key, estimate_tempo
    from millamusic.engines.arranger import Arranger
    from millamusic.engines.base import BackingRequest
    from millamusic.instruments.rendering import sum_stems

    score = compose(load_song(write_spec(text=MEASURED_SONG)))
    rate = 22050
    result = Arranger().render(score, BackingRequest(seed=5, genre="pop", style=(), sample_rate=rate))
    mix = sum_stems({name: audio.samples for name, audio in result.stems.items()})
    assert mix.shape[1] == score.total_frames(rate)
    for index, section in enumerate(score.sections):
        first = score.bars[section.start_bar].start_beat
        last_bar = score.bars[section.start_bar + section.bars - 1]  # the ritardando's bar is left out
        a, b = (int(round(score.beat_to_seconds(beat) * rate)) for beat in (first, last_bar.start_beat))
        audio = mix[:, a:b]
        key = estimate_key(audio, rate)
        assert key.name == score.section_key(index).name and key.margin > 0.05, (section.name, key)
        spec_tempo = score.tempo_at(first)
        measured = estimate_tempo(audio, rate, prior_bpm=spec_tempo).bpm
        assert abs(measured / spec_tempo - 1) < 0.02, (section.name, measured, spec_tempo)


@pytest.mark.slow
def test_a_rendered_song_times_its_lyrics_and_midi_on_the_tempo_map(write_spec, tmp_path):
    from click.testing import CliRunner

    from millamusic.cli import main

    spec = write_spec(text=MEASURED_SONG)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    score = compose(load_song(spec))
    lrc = out / "lyrics" / "up-a-tone.lrc"
    stamps = [(int(m[1]) * 60 + float(m[2]), m[3].strip()) for m in
              re.finditer(r"^\[(\d+):(\d+\.\d+)\](.*)$", lrc.read_text(encoding="utf-8"), re.M)]
    # The last line sings bars after the change of tempo: it starts where its first note is on the
    # tempo map (its consonants a little before), not where one tempo would put it.
    line = max(k for k, ln in enumerate(score.lines) if ln.section_index == 1)
    first_note = min(n.start_beat for n in score.notes if n.line_index == line)
    on_map, one_tempo = score.beat_to_seconds(first_note), first_note * score.seconds_per_beat
    assert abs(one_tempo - on_map) > 1.0  # the test can tell the two apart
    seconds = stamps[line][0]
    print("LRC line after the change:", stamps[line], "on the map", round(on_map, 3), "one tempo", round(one_tempo, 3))
    assert on_map - 0.35 <= seconds <= on_map + 0.05, (seconds, on_map)
    midi = mido.MidiFile(str(out / "stems" / "up-a-tone" / "up-a-tone.mid"))
    assert [round(mido.tempo2bpm(m.tempo), 3) for m in midi.tracks[0] if m.type == "set_tempo"][:2] == [96.0, 120.0]
    assert [m.key for m in midi.tracks[0] if m.type == "key_signature"] == ["Am", "Bm"]


def test_key_at_follows_the_sections():
    score = make_score(kinds=("verse", "chorus"), bars_per_section=2)
    score = replace(score, sections=(score.sections[0], replace(score.sections[1], key="B minor")))
    assert score.key_at(7.9).name == "A minor" and score.key_at(8.0).name == "B minor"
    assert score.key_at(0.0) == score.key_value


def test_musicgen_prompts_each_section_in_its_own_tempo_and_key(write_spec):
    from millamusic.engines.base import BackingRequest
    from millamusic.engines.musicgen import prompt_name, section_prompts

    score = compose(load_song(_song(write_spec)))
    prompts = section_prompts(score, BackingRequest(seed=1, genre="pop", style=(), sample_rate=32000), "")
    assert [prompt_name(score, i) for i in range(3)] == ["verse", "chorus", "chorus, 112 bpm, B minor"]
    assert prompts["chorus"].endswith("100 bpm, A minor")
    assert prompts["chorus, 112 bpm, B minor"].endswith("112 bpm, B minor")


def test_the_tempo_map_and_section_keys_are_in_the_backing_cache_key(write_spec):
    changed = compose(load_song(_song(write_spec)))
    plain = replace(changed, tempo_changes=())
    assert changed.harmony_dict() != plain.harmony_dict()
    assert changed.harmony_dict()["sections"][2]["key"] == "B minor"
    assert changed.harmony_dict()["tempo_changes"][0] == {"start_beat": 32.0, "bpm": 112.0, "ramp_beats": 0.0,
                                                          "ramp_to_bpm": None}


SHORT_CHANGE = """\
title: Short Change
artist: Milla Virta
genre: pop
tempo: 120
key: A minor
structure:
  - {section: Verse, bars: 2, chords: [Am, F]}
  - {section: Chorus, bars: 2, chords: [Bm, G], key: B minor, tempo: 132, ritardando: true}
lyrics: |
  [Verse]
  Hold the light tonight
  [Chorus]
  Spin me round again
"""


@pytest.mark.slow
def test_musicgen_renders_a_song_with_a_tempo_map_and_says_it_did_not_stretch(write_spec, tmp_path):
    pytest.importorskip("torch")  # the [musicgen] extra
    from millamusic.engines.base import BackingRequest
    from millamusic.engines.musicgen import MusicGen
    from tests.musicgen_tiny import build_tiny_musicgen

    score = compose(load_song(write_spec(text=SHORT_CHANGE)))
    model = build_tiny_musicgen(tmp_path / "melody", melody=True)
    request = BackingRequest(seed=3, genre="pop", style=(), sample_rate=44100,
                             options={"model": str(model), "window_seconds": 4, "context_seconds": 2,
                                      "fit_key": "shift"})
    result = MusicGen().render(score, request)
    assert result.stems["backing"].frames == score.total_frames(44100)
    details = result.details
    assert set(details["prompts"]) == {"verse", "chorus, 132 bpm, B minor"}
    assert details["tempo"]["stretch"] == 1.0  # one stretch would pull the other tempo off
    assert details["key"]["pitch_shift"] == 0
    assert any("not stretched onto the tempo map" in w for w in details["warnings"])
    assert any("not pitch-shifted" in w for w in details["warnings"])


def test_a_first_section_tempo_replaces_the_opening_tempo(write_spec):
    text = SONG.format(last="", top="", last_chords="Am, Dm, E, Am").replace(
        "chords: [Am, F, C, G]}", "chords: [Am, F, C, G], tempo: 90}")
    score = compose(load_song(write_spec(text=text)))
    assert score.tempo_changes == (TempoChange(0.0, 90.0),) and score.tempo_at(0.0) == 90.0
    assert score.beat_to_seconds(4.0) == pytest.approx(4 * 60 / 90)  # the song's 100 never sounds
    assert tempo_events(score) == [(0.0, round(60e6 / 90))]
