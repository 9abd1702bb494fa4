"""Arrangement craft, read from the arranger's note events (what the MIDI file holds):
preset choice, fills, crashes, builds, breakdowns, the ending, humanisation, swing, voicings."""

from __future__ import annotations

import numpy as np
import pytest

from millamusic.engines.arranger import arrange
from millamusic.engines.base import BackingRequest
from millamusic.instruments import synth
from millamusic.instruments.presets import GM_DRUMS, PRESETS
from millamusic.music.theory import midi_to_hz, parse_chord
from tests.test_arranger import make_score

RATE = 44100
SONG_FORM = ("intro", "verse", "prechorus", "chorus", "bridge", "chorus", "outro")
SCORE = make_score(kinds=SONG_FORM, bars_per_section=4, tempo=120.0)
FILL_VOICES = {GM_DRUMS[v] for v in ("snare", "tom_hi", "tom_mid", "tom_low")}


def arrangement(preset: str, seed: int = 1, style=(), score=SCORE, genre=None):
    genre = genre or PRESETS[preset]["genre"]
    return arrange(score, BackingRequest(seed=seed, genre=genre, style=tuple(style), sample_rate=RATE,
                                         options={"preset": preset}))


def part(arr, name):
    return next(p for p in arr.parts if p.name == name).events


def in_bar(events, bar, first_beat=0.0, last_beat=4.0, score=SCORE):
    start = score.bars[bar].start_beat
    return [e for e in events if start + first_beat - 0.05 <= e.start_beat < start + last_beat - 0.05]


def section_bars(kind, nth=0, score=SCORE):
    section = [s for s in score.sections if s.kind == kind][nth]
    return list(range(section.start_bar, section.start_bar + section.bars))


@pytest.mark.parametrize(("genre", "style", "expected"), [
    ("pop", (), "synth-pop"), ("pop", ("dreamy", "piano ballad"), "piano-ballad"), ("pop", ("Ballad",), "piano-ballad"),
    ("rock", (), "driving-rock"), ("rock", ("power ballad",), "power-ballad"), ("rock", ("anthem",), "power-ballad"),
])
def test_style_words_choose_the_preset(genre, style, expected):
    arr = arrange(SCORE, BackingRequest(seed=1, genre=genre, style=style, sample_rate=RATE))
    assert arr.preset_name == expected
    assert [p.name for p in arr.parts] == ["drums", *PRESETS[expected]["instruments"]]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_fills_close_every_section_and_crashes_open_the_next(preset):
    drums = part(arrangement(preset), "drums")
    grooves = PRESETS[preset]["drums"]["grooves"]
    for section in SCORE.sections[1:]:
        level = PRESETS[preset]["sections"][section.kind]["level"]
        before = SCORE.sections[SCORE.bars[section.start_bar - 1].section_index]
        before_level = PRESETS[preset]["sections"][before.kind].get("second_half") or \
            PRESETS[preset]["sections"][before.kind]["level"]
        if grooves.get(level):  # a section with drums starts on a crash
            assert GM_DRUMS["crash"] in [e.pitch for e in in_bar(drums, section.start_bar, 0, 0.25)], section
        if grooves.get(before_level):  # ... and the drummer fills into it: the last beat is snare/toms
            fill = [e for e in in_bar(drums, section.start_bar - 1, 3, 4) if e.pitch in FILL_VOICES]
            assert len(fill) >= 2, (preset, section.name)
    # no crash inside a section, except on the final hit
    first_bars = {s.start_bar for s in SCORE.sections} | {len(SCORE.bars) - 1}
    for bar in range(len(SCORE.bars)):
        if bar not in first_bars:
            assert GM_DRUMS["crash"] not in [e.pitch for e in in_bar(drums, bar, 0, 0.25)], bar


@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_pre_chorus_builds_into_the_chorus(preset):
    drums = part(arrangement(preset), "drums")
    last = section_bars("prechorus")[-1]
    snares = [e for e in in_bar(drums, last) if e.pitch == GM_DRUMS["snare"]]
    assert len(snares) >= 8  # a roll, not a backbeat
    first_half = np.mean([e.velocity for e in snares[: len(snares) // 2]])
    second_half = np.mean([e.velocity for e in snares[len(snares) // 2:]])
    assert second_half > first_half + 8  # crescendo


@pytest.mark.parametrize("preset", ["synth-pop", "driving-rock"])
def test_the_bridge_breaks_down_then_builds(preset):
    arr = arrangement(preset)
    drums = part(arr, "drums")
    bridge = section_bars("bridge")
    chorus = section_bars("chorus")
    hits = lambda bars: sum(len(in_bar(drums, b)) for b in bars)  # noqa: E731
    assert hits(bridge[:2]) < 0.5 * hits(chorus[:2])
    assert hits(bridge[2:]) > hits(bridge[:2])
    assert np.mean([e.velocity for e in in_bar(drums, bridge[0])]) < np.mean(
        [e.velocity for e in in_bar(drums, chorus[1])])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_real_ending(preset):
    """The song ends on one hit: every part strikes the last chord on the last downbeat and lets
    it ring into the tail; nothing is struck after it."""
    arr = arrangement(preset)
    last_bar = SCORE.bars[-1]
    spb = SCORE.seconds_per_beat
    for p in arr.parts:
        if not p.events:
            continue
        final = max(p.events, key=lambda e: e.start_beat)
        assert abs(final.start_beat - last_bar.start_beat) < 0.1, p.name
        if p.name == "drums":
            assert {GM_DRUMS["crash"], GM_DRUMS["kick"]} <= {e.pitch for e in in_bar(p.events, len(SCORE.bars) - 1)}
        else:
            assert final.start_beat + final.length_beats > SCORE.total_beats + 0.5 * SCORE.tail_seconds / spb, p.name


def test_energy_follows_the_sections():
    drums = part(arrangement("synth-pop"), "drums")
    velocity = {kind: np.mean([e.velocity for b in section_bars(kind) for e in in_bar(drums, b)
                               if e.pitch == GM_DRUMS["kick"]]) for kind in ("intro", "verse", "chorus")}
    assert velocity["intro"] < velocity["verse"] < velocity["chorus"]
    pad = part(arrangement("synth-pop"), "pad")
    assert not [e for b in section_bars("verse") for e in in_bar(pad, b)]  # the pad lifts the chorus
    assert [e for b in section_bars("chorus") for e in in_bar(pad, b)]


def test_piano_ballad_drums_enter_late_and_the_piano_is_pedalled():
    arr = arrangement("piano-ballad")
    assert not [e for b in section_bars("intro") for e in in_bar(part(arr, "drums"), b)]
    piano = part(arr, "piano")
    bar = section_bars("verse")[0]  # one chord per bar: every note of the arpeggio rings to the bar's end
    notes = in_bar(piano, bar)
    assert len(notes) >= 6
    end = SCORE.bars[bar].start_beat + 4
    assert all(abs(e.start_beat + e.length_beats - end) < 0.1 for e in notes)
    left_hand = min(notes, key=lambda e: e.pitch)
    assert left_hand.start_beat - SCORE.bars[bar].start_beat < 0.1  # the root first, below the arpeggio
    assert left_hand.pitch % 12 == parse_chord(SCORE.bars[bar].chords[0]).root_pc
    assert left_hand.pitch < min(e.pitch for e in notes if e is not left_hand) - 2


def test_rock_guitar_palm_mutes_the_verse_and_opens_up_in_the_chorus():
    guitar = part(arrangement("driving-rock"), "guitar")
    verse = [e for b in section_bars("verse") for e in in_bar(guitar, b)]
    chorus = [e for b in section_bars("chorus") for e in in_bar(guitar, b)]
    assert verse and all(e.articulation == "mute" for e in verse)
    assert chorus and not any(e.articulation == "mute" for e in chorus)
    bar = section_bars("chorus")[0]
    chord = parse_chord(SCORE.bars[bar].chords[0])
    struck = sorted({e.pitch for e in in_bar(guitar, bar, 0, 0.5)})
    root = struck[0]
    assert root % 12 == chord.root_pc and root + 7 in struck and root + 12 in struck  # power chord
    assert any(p % 12 == (chord.root_pc + 3) % 12 for p in struck)  # and the (minor) third on top: Am


def test_bass_approaches_the_next_chord():
    bass = part(arrangement("synth-pop"), "bass")
    bar = section_bars("prechorus")[1]  # pattern ends on 'a': a semitone below the next bar's root
    last = max(in_bar(bass, bar), key=lambda e: e.start_beat)
    next_root = parse_chord(SCORE.bars[bar + 1].chords[0]).bass_pc
    assert last.pitch % 12 == (next_root - 1) % 12


def test_humanisation_is_small_seeded_and_swing_is_data():
    straight = part(arrangement("synth-pop", seed=5), "drums")
    again = part(arrangement("synth-pop", seed=5), "drums")
    other = part(arrangement("synth-pop", seed=6), "drums")
    assert straight == again and straight != other
    spb = SCORE.seconds_per_beat
    offsets = np.array([(e.start_beat * 4 - round(e.start_beat * 4)) / 4 * spb for e in straight])
    assert 0.001 < np.std(offsets) < 0.006 and np.max(np.abs(offsets)) < 0.012  # a few ms, never sloppy
    assert len({e.velocity for e in straight}) > 20
    swung = part(arrangement("synth-pop", seed=5, style=("shuffle",)), "drums")
    hats = [e for e in swung if e.pitch == GM_DRUMS["hat"]]
    late = [(e.start_beat * 4) % 1 for e in hats if round(e.start_beat * 4 - 0.33) % 2 == 1]
    assert late and np.median(late) == pytest.approx(0.33, abs=0.03)  # off-beat 16ths a third late


@pytest.mark.parametrize(("voice", "pitch"), [(v, p) for v in ("piano", "epiano") for p in (40, 57, 69, 84)]
                         + [(v, p) for v in ("synth_bass", "bass") for p in (28, 40, 52)]
                         + [("pluck", p) for p in (64, 72, 84)])
def test_pitched_voices_are_in_tune_and_release_cleanly(voice, pitch):
    freq = midi_to_hz(pitch)
    note = synth.PITCHED_VOICES[voice](freq, RATE // 2, RATE, np.random.default_rng(0))
    assert note.dtype == np.float32 and np.max(np.abs(note)) <= 1.0 and np.all(np.isfinite(note))
    spectrum = np.abs(np.fft.rfft(note * np.hanning(len(note)), 8 * len(note)))
    freqs = np.fft.rfftfreq(8 * len(note), 1 / RATE)
    band = (freqs > freq * 0.9) & (freqs < freq * 1.1)
    found = freqs[band][np.argmax(spectrum[band])]
    assert abs(1200 * np.log2(found / freq)) < 15
    assert np.max(np.abs(note[-100:])) < 0.05  # released to silence, no click
