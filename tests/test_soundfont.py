"""The SoundFont renderer: real TinySoundFont renders of a sine SoundFont written by the tests."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

from millamusic.cli import exit_code_for
from millamusic.core.errors import EngineUnavailable, RenderError
from millamusic.instruments.parts import DRUM_CHANNEL
from millamusic.instruments.presets import PRESETS
from millamusic.instruments.soundfont import TINYSOUNDFONT_HINT, check_soundfont, render_midi, synthesizer
from tests.programs import require_module
from tests.sf2_builder import DRUM_BANK, write_sine_soundfont

RATE = 44100
ARRANGER_PROGRAMS = sorted({part["program"] for preset in PRESETS.values() for part in preset["instruments"].values()})


@pytest.fixture
def synth() -> None:
    """tinysoundfont is installed apart from the project (`pip install --no-deps`); CI requires it."""
    require_module("tinysoundfont", "the tinysoundfont package", TINYSOUNDFONT_HINT)


@pytest.fixture(scope="module")
def sine_font(tmp_path_factory) -> Path:
    return write_sine_soundfont(tmp_path_factory.mktemp("sf2") / "sine.sf2", sample_rate=RATE)


def midi_file(*tracks: list[mido.Message | mido.MetaMessage]) -> bytes:
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    for messages in tracks:
        midi.tracks.append(mido.MidiTrack([*messages, mido.MetaMessage("end_of_track", time=0)]))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def one_note_midi(note: int, *, seconds: float = 1.0, program: int | None = 0, channel: int = 0) -> bytes:
    """A type-1 file at the default 120 bpm (960 ticks a second) with one note from time 0."""
    track = [] if program is None else [mido.Message("program_change", program=program, channel=channel, time=0)]
    track += [mido.Message("note_on", note=note, velocity=100, channel=channel, time=0),
              mido.Message("note_off", note=note, velocity=0, channel=channel, time=round(seconds * 960))]
    return midi_file(track)


def dominant_frequency(signal: np.ndarray, rate: int) -> float:
    """FFT peak of a Hann-windowed signal, zero-padded 8x for bins finer than 1 % at 220 Hz."""
    n = 8 * len(signal)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), n=n))
    return float(np.fft.rfftfreq(n, 1 / rate)[np.argmax(spectrum)])


def onsets(audio: np.ndarray, threshold: float = 1e-3) -> list[int]:
    """Frames where sound starts after at least 10 ms of silence."""
    loud = np.flatnonzero(np.abs(audio).max(axis=0) > threshold)
    if not len(loud):
        return []
    starts = [int(loud[0])]
    starts += [int(b) for a, b in zip(loud[:-1], loud[1:]) if b - a > 0.01 * RATE]
    return starts


@pytest.mark.parametrize(("note", "hz"), [(69, 440.0), (57, 220.0)])
def test_one_note_renders_in_tune(synth, sine_font, note, hz):
    audio = render_midi(one_note_midi(note), sine_font, sample_rate=RATE, frames=RATE)

    assert audio.shape == (2, RATE) and audio.dtype == np.float32 and audio.flags.c_contiguous
    assert np.all(np.isfinite(audio))
    assert np.sqrt(np.mean(audio**2)) > 1e-3, "the render is silent"
    found = dominant_frequency(audio[0, int(0.1 * RATE):int(0.9 * RATE)], RATE)
    assert found == pytest.approx(hz, rel=0.01)
    assert onsets(audio) == [pytest.approx(0, abs=2)]


@pytest.mark.parametrize(("channel", "program"), [(0, p) for p in ARRANGER_PROGRAMS] + [(DRUM_CHANNEL, None)])
def test_every_program_the_arranger_uses_sounds(synth, sine_font, channel, program):
    audio = render_midi(one_note_midi(60, seconds=0.5, program=program, channel=channel), sine_font,
                        sample_rate=RATE, frames=RATE // 2)
    assert np.abs(audio).max() > 1e-2


def test_rendering_twice_gives_identical_bytes(synth, sine_font):
    midi = midi_file([mido.Message("program_change", program=33, time=0)]
                     + [mido.Message(kind, note=48 + i, velocity=90, time=120) for i in range(12)
                        for kind in ("note_on", "note_off")])
    first = render_midi(midi, sine_font, sample_rate=RATE, frames=4 * RATE)
    second = render_midi(midi, sine_font, sample_rate=RATE, frames=4 * RATE)
    assert np.abs(first).max() > 1e-2
    assert first.tobytes() == second.tobytes()


def test_tempo_map_places_every_note(synth, sine_font):
    # Conductor track: 120 bpm, then 60 bpm from beat 2 and 6/8 from there; the notes are on a
    # track of their own, so the renderer must merge the tracks by time to place them.
    conductor = [mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                 mido.MetaMessage("set_tempo", tempo=1_000_000, time=960),
                 mido.MetaMessage("time_signature", numerator=6, denominator=8, time=0)]
    notes = []
    for tick, (note, length) in zip((0, 960, 1440), ((69, 240), (72, 240), (76, 240))):
        gap = tick - sum(m.time for m in notes)
        notes += [mido.Message("note_on", note=note, velocity=100, time=gap),
                  mido.Message("note_off", note=note, velocity=0, time=length)]
    audio = render_midi(midi_file(conductor, notes), sine_font, sample_rate=RATE, frames=3 * RATE)
    # beat 0 at 0 s; beat 2 at 1.0 s (two beats at 120 bpm); beat 3 at 2.0 s (one more at 60 bpm)
    assert onsets(audio) == [pytest.approx(0, abs=2), pytest.approx(RATE, abs=2), pytest.approx(2 * RATE, abs=2)]
    # The second note's half beat lasts 0.5 s at 60 bpm, not 0.25 s: it still sounds at 1.4 s.
    assert np.abs(audio[:, int(1.4 * RATE):int(1.45 * RATE)]).max() > 1e-2
    assert not audio[:, int(1.6 * RATE):int(1.99 * RATE)].any(), "its release should be over"


def test_output_is_trimmed_or_padded_to_frames(synth, sine_font):
    midi = one_note_midi(69, seconds=0.5)
    short = render_midi(midi, sine_font, sample_rate=RATE, frames=1000)
    long = render_midi(midi, sine_font, sample_rate=RATE, frames=10 * RATE)
    assert short.shape == (2, 1000) and long.shape == (2, 10 * RATE)
    assert np.array_equal(short, long[:, :1000])
    assert np.abs(long[:, int(0.52 * RATE):int(0.54 * RATE)]).max() > 0, "the release is cut off"
    assert not long[:, RATE:].any(), "after the release the stem must be silent"
    assert render_midi(midi, sine_font, sample_rate=RATE, frames=0).shape == (2, 0)


def test_other_sample_rate_and_gain(synth, sine_font):
    quiet = render_midi(one_note_midi(69), sine_font, sample_rate=48000, frames=48000, gain=0.25)
    loud = render_midi(one_note_midi(69), sine_font, sample_rate=48000, frames=48000, gain=0.5)
    assert dominant_frequency(loud[0, 4800:43200], 48000) == pytest.approx(440.0, rel=0.01)
    assert np.abs(loud).max() / np.abs(quiet).max() == pytest.approx(2.0, rel=0.01)
    with pytest.raises(ValueError, match="gain"):
        render_midi(one_note_midi(69), sine_font, sample_rate=48000, frames=48000, gain=0.0)


def test_synthesizer_names_its_version(synth):
    name, version = synthesizer().split(" ")
    assert name == "tinysoundfont" and version[0].isdigit()


# --- hostile fonts and a missing synthesizer ---------------------------------------------------
def test_missing_package_is_engine_unavailable_with_install_hint(monkeypatch, sine_font):
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # what `import` sees when it is not installed
    with pytest.raises(EngineUnavailable) as caught:
        render_midi(one_note_midi(69), sine_font, sample_rate=RATE, frames=RATE)
    assert TINYSOUNDFONT_HINT in str(caught.value) and "pip install --no-deps tinysoundfont" in str(caught.value)
    assert exit_code_for(caught.value) == 3


def test_file_that_is_not_a_soundfont_is_render_error(tmp_path):
    bogus = tmp_path / "notes.sf2"
    bogus.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(RenderError, match="notes.sf2"):
        check_soundfont(bogus)
    # The header is looked at before the synthesizer is loaded, so this needs no tinysoundfont.
    with pytest.raises(RenderError, match="notes.sf2.*not a SoundFont") as caught:
        render_midi(one_note_midi(69), bogus, sample_rate=RATE, frames=RATE)
    assert exit_code_for(caught.value) == 4
    with pytest.raises(RenderError, match="missing.sf2"):
        check_soundfont(tmp_path / "missing.sf2")
    empty = tmp_path / "empty.sf2"
    empty.write_bytes(b"")
    with pytest.raises(RenderError, match="empty.sf2"):
        render_midi(one_note_midi(69), empty, sample_rate=RATE, frames=RATE)


@pytest.mark.parametrize("keep", [12, 100, 2000, 0.5, 0.99])
def test_truncated_soundfont_is_render_error(synth, sine_font, tmp_path, keep):
    # Right header, cut short: in the INFO list, in the samples, in the preset data.
    data = sine_font.read_bytes()
    damaged = tmp_path / "damaged.sf2"
    damaged.write_bytes(data[:keep if isinstance(keep, int) else int(keep * len(data))])
    check_soundfont(damaged)
    with pytest.raises(RenderError, match="damaged.sf2 (is damaged|could not be loaded)") as caught:
        render_midi(one_note_midi(69), damaged, sample_rate=RATE, frames=RATE)
    assert exit_code_for(caught.value) == 4


def test_soundfont_with_garbage_after_its_header_is_render_error(synth, tmp_path):
    garbage = tmp_path / "garbage.sf2"
    garbage.write_bytes(b"RIFF" + (4000).to_bytes(4, "little") + b"sfbk" + bytes(range(256)) * 16)
    with pytest.raises(RenderError, match="garbage.sf2 (is damaged|could not be loaded)"):
        render_midi(one_note_midi(69), garbage, sample_rate=RATE, frames=RATE)


def _record_offset(data: bytes, chunk: bytes, index: int, size: int) -> int:
    """Where record `index` of the pdta array `chunk` starts in a font written by sf2_builder."""
    return data.index(chunk, data.rindex(b"pdta")) + 8 + index * size


# Indices the SoundFont 2.01 spec forbids. Without the check in font_presets, TinySoundFont crashed the process on the
# three 'past'/'out of order' zone cases (segfault, found by fuzzing), played silence for a missing
# instrument or sample, and ignored the other two.
BAD_INDICES = {
    "preset zone past pbag": (b"phdr", 38, -1, 24, 999),  # the terminal record's bag index
    "preset zones out of order": (b"phdr", 38, 0, 24, 35000),
    "instrument zone past ibag": (b"inst", 22, -1, 20, 999),
    "generator past pgen": (b"pbag", 4, -1, 0, 999),
    "modulator past imod": (b"ibag", 4, -1, 2, 999),
    "instrument past inst": (b"pgen", 4, 0, 2, 7),
    "sample past shdr": (b"igen", 4, 4, 2, 5),
}


@pytest.mark.parametrize("case", sorted(BAD_INDICES))
def test_soundfont_whose_records_point_outside_their_arrays_is_render_error(synth, tmp_path, case):
    chunk, size, index, field, value = BAD_INDICES[case]
    font = write_sine_soundfont(tmp_path / "hostile.sf2", presets=((0, 0), (DRUM_BANK, 0)))
    data = bytearray(font.read_bytes())
    count = int.from_bytes(data[data.index(chunk, data.rindex(b"pdta")) + 4:][:4], "little") // size
    at = _record_offset(bytes(data), chunk, index % count, size) + field
    data[at:at + 2] = value.to_bytes(2, "little")
    font.write_bytes(bytes(data))
    with pytest.raises(RenderError, match=f"hostile.sf2 is damaged: '{chunk.decode()}' record") as caught:
        render_midi(one_note_midi(69), font, sample_rate=RATE, frames=RATE)
    assert exit_code_for(caught.value) == 4


def test_font_without_a_program_names_it(synth, tmp_path):
    piano_only = write_sine_soundfont(tmp_path / "piano.sf2", presets=((0, 0), (DRUM_BANK, 0)))
    assert np.abs(render_midi(one_note_midi(60, program=0), piano_only, sample_rate=RATE, frames=RATE)).max() > 0
    with pytest.raises(RenderError, match=r"piano.sf2 has no preset for GM program 33 \(bank 0\)") as caught:
        render_midi(one_note_midi(40, program=33), piano_only, sample_rate=RATE, frames=RATE)
    assert "General MIDI SoundFont" in str(caught.value) and exit_code_for(caught.value) == 4
    # A channel that never gets a program change plays GM program 0, which this font has.
    assert np.abs(render_midi(one_note_midi(60, program=None), piano_only, sample_rate=RATE, frames=RATE)).max() > 0


def test_preset_names_that_are_not_utf8_still_play(synth, tmp_path):
    # Latin-1 names ("Fl\xfbte") are common in old fonts; TinySoundFont's own preset_name fails on them.
    font = write_sine_soundfont(tmp_path / "latin1.sf2", presets=((0, 0), (DRUM_BANK, 0)))
    data = bytearray(font.read_bytes())
    at = data.index(b"Sine 0:0")
    data[at:at + 5] = "Fl\xfbte".encode("latin-1")
    font.write_bytes(bytes(data))
    assert np.abs(render_midi(one_note_midi(69), font, sample_rate=RATE, frames=RATE)).max() > 1e-2


def test_font_without_a_drum_kit_is_render_error_not_a_piano(synth, tmp_path):
    # TinySoundFont alone would play bank 0's program 0 on the drum channel.
    no_drums = write_sine_soundfont(tmp_path / "nodrums.sf2", presets=((0, 0),))
    with pytest.raises(RenderError, match=r"nodrums.sf2 has no preset for the drum kit \(bank 128"):
        render_midi(one_note_midi(36, program=None, channel=DRUM_CHANNEL), no_drums, sample_rate=RATE, frames=RATE)


# --- through the arranger and the command line --------------------------------------------------
@pytest.mark.slow
def test_the_arranger_plays_its_parts_with_a_soundfont(synth, sine_font):
    from millamusic.engines.arranger import Arranger
    from millamusic.engines.base import BackingRequest
    from tests.test_arranger import make_score

    score = make_score(kinds=("verse", "chorus"), bars_per_section=2)
    request = BackingRequest(seed=1, genre="pop", style=(), sample_rate=RATE, options={"soundfont": str(sine_font)})
    result = Arranger().render(score, request)
    assert result.details["soundfont"] == "sine.sf2"
    assert result.details["instruments"] == "soundfont"
    builtin = Arranger().render(score, BackingRequest(seed=1, genre="pop", style=(), sample_rate=RATE))
    assert set(result.stems) == set(builtin.stems)
    for name, audio in result.stems.items():
        assert audio.samples.shape == (2, score.total_frames(RATE)) and audio.peak() < 1.0
        assert not np.allclose(audio.samples, builtin.stems[name].samples, atol=1e-3), name  # the font's sound
    assert result.midi == builtin.midi  # same notes, other instruments
    again = Arranger().render(score, request)
    assert all(again.stems[name].samples.tobytes() == audio.samples.tobytes() for name, audio in result.stems.items())


def test_cli_soundfont_errors(write_spec, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from millamusic.cli import main

    not_a_font = tmp_path / "songs" / "font.sf2"
    spec = write_spec(extra="soundfont: font.sf2\n")
    not_a_font.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "soundfont" in result.output and "not a SoundFont 2 file" in result.output
    assert not (tmp_path / "out" / "masters").exists()

    good = write_sine_soundfont(tmp_path / "songs" / "font.sf2", sample_rate=RATE)
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3, result.output
    assert "tinysoundfont" in result.output and "pip install --no-deps tinysoundfont" in result.output
    assert not list((tmp_path / "out").glob("masters/**/*.wav"))

    result = CliRunner().invoke(main, ["render", str(write_spec(name="plain.yaml")), "--soundfont",
                                       str(tmp_path / "missing.sf2")])
    assert result.exit_code == 2 and "--soundfont" in result.output
    assert good.exists()
