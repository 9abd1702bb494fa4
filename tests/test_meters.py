"""Compound meters (6/8, 9/8, 12/8): the spec takes them, the composer phrases in dotted quarters,
the arranger plays compound grooves, and the backing measures at the spec's tempo and bar length."""

from __future__ import annotations

import io
from pathlib import Path

import mido
import numpy as np
import pytest
from click.testing import CliRunner

from millamusic.analysis.beat_grid import estimate_beat_grid
from millamusic.analysis.features import estimate_tempo
from millamusic.cli import main
from millamusic.compose import compose
from millamusic.core.errors import RenderError, SpecError
from millamusic.cover.draft import DraftNote
from millamusic.cover.files import midi_bytes as draft_midi_bytes
from millamusic.engines.arranger import Arranger, arrange
from millamusic.engines.base import BackingRequest
from millamusic.instruments.midi_file import midi_bytes
from millamusic.instruments.presets import GM_DRUMS, PRESETS
from millamusic.instruments.rendering import sum_stems
from millamusic.spec.song import load_song

SPEC = """\
title: Meter Test
artist: Milla Virta
genre: {genre}
tempo: {tempo}
key: A minor
time_signature: {signature}
seed: 3
structure:
{structure}
lyrics: |
  [Verse]
  Hold the light tonight
  we sing the morning in
  [Chorus]
  Spin me round again
  and never let me go
{extra}"""

SHORT = ("  - {section: Verse, bars: 4, chords: [Am, F]}\n"
         "  - {section: Chorus, bars: 4, chords: [C, G]}")

FORM = ("  - {{section: Intro, bars: {bars}, chords: [Am, F, C, G]}}\n"
        "  - {{section: Verse, bars: {bars}, chords: [Am, F, C, G]}}\n"
        "  - {{section: Pre-Chorus, bars: {bars}, chords: [F, G, Am, G]}}\n"
        "  - {{section: Chorus, bars: {bars}, chords: [C, G, Am, F]}}\n"
        "  - {{section: Outro, bars: {bars}, chords: [Am, F, C, G]}}")


def write(tmp_path: Path, signature: str, *, tempo: float = 60, genre: str = "pop", structure: str = SHORT,
          extra: str = "", name: str = "meter.yaml") -> Path:
    folder = tmp_path / "songs"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(SPEC.format(genre=genre, tempo=tempo, signature=signature, structure=structure, extra=extra),
                    encoding="utf-8")
    return path


# --- the spec ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("written", "kept", "beats", "unit"), [
    ("6/8", "6/8", 6, 8), ("9/8", "9/8", 9, 8), ("12/8", "12/8", 12, 8), (" 6 / 8 ", "6/8", 6, 8),
    ("4/4", "4/4", 4, 4), ("6/4", "6/4", 6, 4), ("3/4", "3/4", 3, 4)])
def test_compound_and_simple_meters_are_accepted(tmp_path, written, kept, beats, unit):
    spec = load_song(write(tmp_path, f'"{written}"')).spec
    assert (spec.time_signature, spec.beats_per_bar, spec.beat_unit) == (kept, beats, unit)


@pytest.mark.parametrize(("written", "problem", "fix"), [
    ("7/8", "7/8 is an asymmetric meter", "6/8, 9/8 or 12/8"),
    ("5/8", "5/8 is an asymmetric meter", "6/8, 9/8 or 12/8"),
    ("3/8", "3/8 (one dotted-quarter pulse a bar)", "write 6/8 with half as many bars"),
    ("4/8", "unsupported time signature: 4/8", "write 2/4"),
    ("2/8", "unsupported time signature: 2/8", "write 2/4 at the quarter-note tempo with half as many bars"),
    ("12/16", "unsupported time signature: 12/16", "write 12/8"),
    ("6/16", "unsupported time signature: 6/16", "write 6/8"),
    ("15/8", "unsupported time signature: 15/8", "6/8, 9/8 or 12/8"),
    ("8/4", "8 beats of 4 a bar", "N/4 with N from 2 to 7"),
    ("6/2", "unsupported time signature: 6/2", "6/8, 9/8 or 12/8"),
    ("0/8", "unsupported time signature: 0/8", "6/8, 9/8 or 12/8"),
    ("6/8/8", "not beats/unit", "6/8, 9/8 or 12/8"),
    ("six/eight", "not beats/unit", "6/8, 9/8 or 12/8"),
    ("99999999/8", "not beats/unit", "6/8, 9/8 or 12/8"),
])
def test_other_meters_are_located_errors_with_a_fix(tmp_path, written, problem, fix):
    with pytest.raises(SpecError) as caught:
        load_song(write(tmp_path, f'"{written}"'))
    [found] = caught.value.problems
    assert found.field == "time_signature" and found.value == written
    assert (found.line, found.column) == (6, 17)  # the value in the spec, not the file
    assert problem in found.message and fix in found.fix, (found.message, found.fix)


def test_a_bad_meter_stops_a_render_with_exit_2_and_nothing_written(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", str(write(tmp_path, "7/8")), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "time_signature" in result.output and "asymmetric" in result.output
    assert not out.exists() or not any(out.rglob("*.*"))


def test_song_length_counts_the_dotted_quarter_tempo(tmp_path):
    """12/8 at 40: a bar is four pulses of 1.5 s (6 s), not twelve beats of 1.5 s. 200 bars are 20
    minutes (the limit), 201 are over."""
    def structure(bars: int) -> str:
        return "".join(f"  - {{section: {name}, bars: {n}, chords: [Am]}}\n"
                       for name, n in (("Verse", 128), ("Chorus", bars - 128))).rstrip("\n")

    ok = load_song(write(tmp_path, "12/8", tempo=40, structure=structure(200), extra="", name="ok.yaml"))
    assert sum(section.bars for section in ok.spec.structure) == 200
    with pytest.raises(SpecError) as caught:
        load_song(write(tmp_path, "12/8", tempo=40, structure=structure(201), name="long.yaml"))
    [found] = caught.value.problems
    assert found.field == "structure" and "201 bars of 12/8 at 40 BPM" in found.message


# --- the composer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("signature", ["6/8", "9/8", "12/8"])
def test_compose_counts_eighths_and_phrases_in_dotted_quarters(tmp_path, signature):
    beats = int(signature.split("/")[0])
    score = compose(load_song(write(tmp_path, signature, tempo=60)))
    assert (score.beats_per_bar, score.beat_unit, score.pulse_beats) == (beats, 8, 3)
    assert {bar.beats for bar in score.bars} == {beats}
    assert [bar.start_beat for bar in score.bars] == [i * beats for i in range(len(score.bars))]
    assert score.seconds_per_beat == pytest.approx(60 / (60 * 3))  # tempo 60 counts dotted quarters
    assert score.music_seconds == pytest.approx(len(score.bars) * beats / 3)
    for line in range(len(score.lines)):
        notes = [n for n in score.notes if n.line_index == line]
        assert len(notes) >= 5
        # a line starts and ends on a pulse; its syllables fall on eighths (these lines have room)
        assert notes[0].start_beat % 3 == 0 and notes[-1].start_beat % 3 == 0, notes
        assert all(n.start_beat == int(n.start_beat) and n.length_beats >= 1 for n in notes), notes
        # every pulse the line sings through starts a syllable or holds one: no 4/4 rhythm squeezed in
        for a, b in zip(notes, notes[1:]):
            assert a.start_beat + a.length_beats == b.start_beat, (a, b)
    # the melody moves in eighths inside its pulses, not only in dotted quarters
    assert any(n.start_beat % 3 for n in score.notes)


def test_a_crowded_compound_line_uses_sixteenths_and_an_overfull_one_is_located(tmp_path):
    """Two lines in two 6/8 bars: two pulses a line, the last one for the line's last syllable."""
    tight = SHORT.replace("bars: 4", "bars: 2")
    score = compose(load_song(write(tmp_path, "6/8", structure=tight)))
    first = [n for n in score.notes if n.line_index == 0]  # "Hold the light to-night": four in one pulse
    assert [n.start_beat for n in first] == [0.0, 1.0, 2.0, 2.5, 3.0]
    path = write(tmp_path, "6/8", structure=tight, name="over.yaml")
    path.write_text(path.read_text().replace("we sing the morning in", "we sing the morning in again"))
    with pytest.raises(SpecError) as caught:
        compose(load_song(path))
    [found] = caught.value.problems
    assert found.field == "lyrics" and found.value == "we sing the morning in again"
    assert "8 syllables do not fit in 6 beats of [Verse] (at most 7 sixteenth notes)" in found.message
    assert found.line is not None and found.fix


def test_a_six_eight_midi_melody_loads_in_eighths(tmp_path):
    """The MIDI file counts quarter notes whatever its meter: 1.5 quarters is one dotted quarter,
    three eighths of the score."""
    quarters = [0.0, 1.0, 1.5, 2.5, 3.0, 6.0, 7.0, 7.5, 8.5, 9.0, 10.0,  # the verse's two lines: 5 + 6 syllables
                12.0, 12.5, 13.0, 14.0, 15.0, 18.0, 19.0, 19.5, 20.0, 20.5, 21.0]  # the chorus's
    notes = [DraftNote(q, 0.5, 60 + i % 5) for i, q in enumerate(quarters)]
    path = write(tmp_path, "6/8", extra="melody: m.mid\n")
    (path.parent / "m.mid").write_bytes(draft_midi_bytes(notes, 90.0, "6/8"))
    song = load_song(path)
    syllables = sum(len(w.syllables) for w in compose(load_song(write(tmp_path, "6/8", name="plain.yaml"))).words)
    assert syllables == len(notes)  # the test's own arithmetic: one note per syllable
    score = compose(song)
    assert [n.start_beat for n in score.notes] == [2 * q for q in quarters]
    assert [n.length_beats for n in score.notes] == [1.0] * len(quarters)


# --- the arranger --------------------------------------------------------------------------------------

def _arranged(tmp_path: Path, signature: str, preset: str, tempo: float = 60):
    score = compose(load_song(write(tmp_path, signature, tempo=tempo, genre=PRESETS[preset]["genre"],
                                    structure=FORM.format(bars=4))))
    request = BackingRequest(seed=1, genre=PRESETS[preset]["genre"], style=(), sample_rate=44100,
                             options={"preset": preset})
    return score, arrange(score, request)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("signature", ["6/8", "9/8", "12/8"])
def test_every_preset_plays_a_compound_groove_in_every_compound_meter(tmp_path, preset, signature):
    score, arrangement = _arranged(tmp_path, signature, preset)
    beats = score.beats_per_bar
    end = score.total_beats + score.tail_seconds / score.seconds_per_beat
    drums = arrangement.parts[0]
    for part in arrangement.parts:
        assert part.events, part.name
        assert all(0 <= e.start_beat < end and e.length_beats > 0 for e in part.events), part.name
    # the drums sit on the 16th grid (half an eighth beat), give or take their few ms of humanising
    assert all(abs(e.start_beat * 2 - round(e.start_beat * 2)) < 0.1 for e in drums.events)
    chorus = score.sections[3]
    bars = range(chorus.start_bar, chorus.start_bar + chorus.bars - 1)  # its last bar has a fill
    at = {id(e): round(e.start_beat * 2) / 2 for e in drums.events}  # to the 16th: no humanising
    hits = {name: sorted({at[id(e)] % beats for e in drums.events if e.pitch == GM_DRUMS[name]
                          and int(at[id(e)] // beats) in bars}) for name in ("kick", "snare")}
    # the backbeat on the 2nd (and 4th) dotted quarter: 4 (and 10) counting eighths from 1; the kick on 1
    assert hits["snare"] == [p for p in (3, 9) if p < beats], hits
    assert 0 in hits["kick"], hits
    cymbal = [e for e in drums.events if e.pitch in (GM_DRUMS["hat"], GM_DRUMS["ride"], GM_DRUMS["open_hat"])
              and int(at[id(e)] // beats) in bars]
    # eighths: three a pulse, as many a bar as the bar has beats (less the one the chorus crash replaces)
    assert len(cymbal) == beats * len(bars) - 1, (len(cymbal), beats, len(bars))


def test_compound_meters_write_midi_in_eighths(tmp_path):
    score, arrangement = _arranged(tmp_path, "12/8", "driving-rock", tempo=80)
    midi = mido.MidiFile(file=io.BytesIO(midi_bytes(score, arrangement.parts)))
    metas = [m for m in midi.tracks[0] if m.type in ("time_signature", "set_tempo")]
    assert [(m.numerator, m.denominator) for m in metas if m.type == "time_signature"] == [(12, 8)]
    # 80 dotted quarters a minute are 120 quarter notes
    assert [round(mido.tempo2bpm(m.tempo), 3) for m in metas if m.type == "set_tempo"] == [120.0]
    assert midi.length == pytest.approx(score.total_seconds, abs=0.01)


def test_an_instrument_without_compound_patterns_is_refused_by_name(tmp_path):
    score = compose(load_song(write(tmp_path, "6/8")))
    extra = {"role": "chords", "voice": "pad", "program": 89, "range": [50, 72], "balance": -7.0, "time_ms": 0.0,
             "legato": 1.0, "fx": [], "patterns": {"verse": "x---------------"}}
    request = BackingRequest(seed=1, genre="pop", style=(), sample_rate=44100,
                             options={"preset": "synth-pop", "overrides": {"instruments": {"organ": extra}}})
    with pytest.raises(RenderError, match="voice 'pad'.*compound_patterns"):
        arrange(score, request)
    four = compose(load_song(write(tmp_path, "4/4", name="four.yaml")))
    assert any(p.name == "organ" and p.events for p in arrange(four, request).parts)  # 4/4 plays its patterns


# --- measured --------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("signature", "tempo", "preset"), [("6/8", 60.0, "piano-ballad"),
                                                           ("12/8", 80.0, "driving-rock")])
def test_compound_backing_measures_at_the_spec_tempo_and_bar(tmp_path, signature, tempo, preset):
    """A 6/8 ballad and a 12/8 rock song, beat-tracked (librosa) and bar-gridded like a cover's
    reference. The pulse is the dotted quarter; without a prior the tracker may hear it, its
    eighths, or the eighths in pairs (the 3/4 reading of 6/8 that the bar grid starts from)."""
    rate = 22050
    score = compose(load_song(write(tmp_path, signature, tempo=tempo, genre=PRESETS[preset]["genre"],
                                    structure=FORM.format(bars=4))))
    request = BackingRequest(seed=1, genre=PRESETS[preset]["genre"], style=(), sample_rate=rate,
                             options={"preset": preset})
    result = Arranger().render(score, request)
    mix = sum_stems({name: audio.samples for name, audio in result.stems.items()})
    assert estimate_tempo(mix, rate, prior_bpm=tempo).bpm == pytest.approx(tempo, rel=0.01)
    blind = estimate_tempo(mix, rate).bpm
    assert min(abs(blind / (tempo * level) - 1) for level in (1, 1.5, 3)) < 0.01, blind
    grid = estimate_beat_grid(mix, rate)
    bar = score.beats_per_bar * score.seconds_per_beat
    heard_bar = grid.beats_per_bar * grid.seconds_per_beat
    if signature == "6/8":
        assert grid.heard_meter == "6/8" and heard_bar == pytest.approx(bar, rel=0.01), grid
    else:  # 12/8 is heard as four dotted-quarter beats: a bar of 4/4 at the pulse
        assert grid.bpm == pytest.approx(tempo, rel=0.01) and heard_bar == pytest.approx(bar, rel=0.01), grid
    offset = grid.first_downbeat_seconds % bar
    assert min(offset, bar - offset) < 0.05, grid.first_downbeat_seconds
    assert np.max(np.abs(mix)) < 1.0
