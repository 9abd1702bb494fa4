"""The SoundFont renderer: the real fluidsynth program, with a sine SoundFont written by the tests."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

from millamusic.cli import exit_code_for
from millamusic.core.errors import EngineUnavailable, RenderError
from millamusic.instruments import soundfont
from millamusic.instruments.soundfont import FLUIDSYNTH_HINT, check_soundfont, render_midi
from tests.programs import require_program
from tests.sf2_builder import write_sine_soundfont

RATE = 44100
ARRANGER_PROGRAMS = [0, 4, 29, 30, 33, 34, 89]  # the GM programs the arranger's presets use
DRUM_CHANNEL = 9


def require_fluidsynth() -> None:
    """Skip when fluidsynth is absent (it is optional), but fail on CI, which installs it."""
    require_program(soundfont.fluidsynth_program(), "the optional fluidsynth program", FLUIDSYNTH_HINT)


@pytest.fixture
def fluidsynth() -> None:
    require_fluidsynth()


@pytest.fixture(scope="module")
def sine_font(tmp_path_factory) -> Path:
    return write_sine_soundfont(tmp_path_factory.mktemp("sf2") / "sine.sf2", sample_rate=RATE)


def one_note_midi(note: int, *, seconds: float = 1.0, program: int | None = 0, channel: int = 0) -> bytes:
    """A type-1 file at 120 bpm (960 ticks a second) with one note from time 0."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    if program is not None:
        track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    track.append(mido.Message("note_on", note=note, velocity=100, channel=channel, time=0))
    track.append(mido.Message("note_off", note=note, velocity=0, channel=channel, time=round(seconds * 960)))
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def dominant_frequency(signal: np.ndarray, rate: int) -> float:
    """FFT peak of a Hann-windowed signal, zero-padded 8x for bins finer than 1 % at 220 Hz."""
    n = 8 * len(signal)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), n=n))
    return float(np.fft.rfftfreq(n, 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(("note", "hz"), [(69, 440.0), (57, 220.0)])
def test_one_note_renders_in_tune(fluidsynth, sine_font, note, hz):
    audio = render_midi(one_note_midi(note), sine_font, sample_rate=RATE, frames=RATE)

    assert audio.shape == (2, RATE) and audio.dtype == np.float32
    assert np.all(np.isfinite(audio))
    assert np.sqrt(np.mean(audio**2)) > 1e-3, "the render is silent"
    found = dominant_frequency(audio[0, int(0.1 * RATE):int(0.9 * RATE)], RATE)
    assert found == pytest.approx(hz, rel=0.01)


@pytest.mark.parametrize(("channel", "program"), [(0, p) for p in ARRANGER_PROGRAMS] + [(DRUM_CHANNEL, None)])
def test_every_program_the_arranger_uses_sounds(fluidsynth, sine_font, channel, program):
    # fluidsynth falls back only to bank 0 (melodic) or bank 128 program 0 (drums), so a font
    # without the program renders silence; the test font must have them all.
    audio = render_midi(one_note_midi(60, seconds=0.5, program=program, channel=channel), sine_font,
                        sample_rate=RATE, frames=RATE // 2)
    assert np.abs(audio).max() > 1e-2


def test_rendering_twice_gives_identical_samples(fluidsynth, sine_font):
    midi = one_note_midi(64, seconds=0.75)
    first = render_midi(midi, sine_font, sample_rate=RATE, frames=RATE)
    second = render_midi(midi, sine_font, sample_rate=RATE, frames=RATE)
    assert np.array_equal(first, second)


def test_output_is_trimmed_or_padded_to_frames(fluidsynth, sine_font):
    midi = one_note_midi(69, seconds=0.5)
    short = render_midi(midi, sine_font, sample_rate=RATE, frames=1000)
    long = render_midi(midi, sine_font, sample_rate=RATE, frames=10 * RATE)
    assert short.shape == (2, 1000) and long.shape == (2, 10 * RATE)
    assert np.array_equal(short, long[:, :1000])
    assert not long[:, -RATE:].any(), "the padding past fluidsynth's output is not zeros"


def test_other_sample_rate_and_gain(fluidsynth, sine_font):
    quiet = render_midi(one_note_midi(69), sine_font, sample_rate=48000, frames=48000, gain=0.25)
    loud = render_midi(one_note_midi(69), sine_font, sample_rate=48000, frames=48000, gain=0.5)
    assert dominant_frequency(loud[0, 4800:43200], 48000) == pytest.approx(440.0, rel=0.01)
    assert np.abs(loud).max() / np.abs(quiet).max() == pytest.approx(2.0, rel=0.01)


def test_missing_program_is_engine_unavailable_with_install_hint(monkeypatch, sine_font):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    assert soundfont.fluidsynth_program() is None
    with pytest.raises(EngineUnavailable) as caught:
        render_midi(one_note_midi(69), sine_font, sample_rate=RATE, frames=RATE)
    assert FLUIDSYNTH_HINT in str(caught.value)
    assert exit_code_for(caught.value) == 3


def test_file_that_is_not_a_soundfont_is_render_error(monkeypatch, tmp_path):
    bogus = tmp_path / "notes.sf2"
    bogus.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(RenderError, match="notes.sf2"):
        check_soundfont(bogus)
    # render_midi looks at the font before it ever runs fluidsynth, so no program is needed here.
    monkeypatch.setattr(soundfont, "fluidsynth_program", lambda: "fluidsynth-never-run")
    with pytest.raises(RenderError, match="notes.sf2") as caught:
        render_midi(one_note_midi(69), bogus, sample_rate=RATE, frames=RATE)
    assert exit_code_for(caught.value) == 4
    with pytest.raises(RenderError, match="missing.sf2"):
        check_soundfont(tmp_path / "missing.sf2")


def test_damaged_soundfont_is_render_error(fluidsynth, sine_font, tmp_path):
    # Right header, cut short: fluidsynth exits 0 after failing to load it, so we read its log.
    damaged = tmp_path / "damaged.sf2"
    damaged.write_bytes(sine_font.read_bytes()[:2000])
    check_soundfont(damaged)
    with pytest.raises(RenderError, match="damaged.sf2"):
        render_midi(one_note_midi(69), damaged, sample_rate=RATE, frames=RATE)


def test_fluidsynth_failure_quotes_its_output(fluidsynth, sine_font):
    # 192 kHz is outside fluidsynth's sample-rate range: it exits non-zero and says why.
    with pytest.raises(RenderError, match="sample-rate"):
        render_midi(one_note_midi(69), sine_font, sample_rate=192000, frames=1000)


# --- through the arranger and the command line --------------------------------------------------
def test_the_arranger_plays_its_parts_with_a_soundfont(fluidsynth, sine_font):
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
    monkeypatch.setattr(soundfont, "fluidsynth_program", lambda: None)
    result = CliRunner().invoke(main, ["render", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3, result.output
    assert "fluidsynth" in result.output and "apt-get install --no-install-recommends fluidsynth" in result.output
    assert not list((tmp_path / "out").glob("masters/**/*.wav"))

    result = CliRunner().invoke(main, ["render", str(write_spec(name="plain.yaml")), "--soundfont",
                                       str(tmp_path / "missing.sf2")])
    assert result.exit_code == 2 and "--soundfont" in result.output
    assert good.exists()
