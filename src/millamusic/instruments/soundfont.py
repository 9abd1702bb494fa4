"""Render the arranger's MIDI with a producer's own SoundFont, in process, through TinySoundFont.

`tinysoundfont` (MIT; wheels for CPython on Linux, macOS and Windows) is the synthesizer. We do
not use its sequencer: mido reads the MIDI file and its tempo map, and every event starts on its
own sample frame, so a render is sample-accurate, the same bytes every time, and needs no
program on PATH. A font is checked before a note plays: its preset data must be consistent
(TinySoundFont trusts it), it must load, and it must have each preset the MIDI asks for (a drum
kit in bank 128 for channel 10), or the render stops with a RenderError naming what is wrong;
TinySoundFont alone would crash, play silence, or substitute another preset.
"""

from __future__ import annotations

import importlib
import io
import struct
from importlib import metadata
from pathlib import Path

import mido
import numpy as np

from millamusic.core.errors import EngineUnavailable, RenderError
from millamusic.core.units import gain_to_db
from millamusic.instruments.parts import DRUM_CHANNEL  # MIDI channel 10: General MIDI's percussion

# tinysoundfont declares PyAudio as a requirement for its live playback, which we never use, and
# PyAudio has wheels for Windows only (elsewhere it compiles against PortAudio's headers). So the
# project does not list tinysoundfont, and the install skips that requirement with --no-deps.
TINYSOUNDFONT_HINT = (
    "install the SoundFont synthesizer with `pip install --no-deps tinysoundfont` (`--no-deps` skips "
    "PyAudio, which tinysoundfont uses only for live playback and which would need PortAudio's C headers "
    "to build outside Windows)"
)

DRUM_BANK = 128  # SoundFont 2 keeps drum kits in bank 128
STANDARD_KIT = 0


def _tinysoundfont():
    """The tinysoundfont module, or EngineUnavailable with the install hint."""
    try:  # imported on first use: it is not a dependency of the project (see TINYSOUNDFONT_HINT)
        return importlib.import_module("tinysoundfont")
    except ModuleNotFoundError as e:
        if e.name != "tinysoundfont":  # something it needs is missing: a broken install keeps its traceback
            raise
        raise EngineUnavailable(f"the SoundFont renderer needs the `tinysoundfont` package, which is not "
                                f"installed. Fix: {TINYSOUNDFONT_HINT}") from e


def synthesizer() -> str:
    """Which synthesizer renders SoundFonts, with its version, for release records and cache keys."""
    try:
        return f"tinysoundfont {metadata.version('tinysoundfont')}"
    except metadata.PackageNotFoundError as e:
        raise EngineUnavailable(f"the `tinysoundfont` package is not installed. Fix: {TINYSOUNDFONT_HINT}") from e


def is_soundfont(path: Path) -> bool:
    """True if the file starts like a SoundFont 2 (RIFF form type 'sfbk'). Raises OSError if unreadable."""
    with Path(path).open("rb") as f:
        head = f.read(12)
    return len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def check_soundfont(path: Path) -> None:
    """Raise RenderError unless `path` starts like a SoundFont (RIFF form type 'sfbk').

    TinySoundFont also reads SF3 and its own SFO; we take SoundFont 2 only, so the error for a
    WAV or SFZ named .sf2 says what the file is not.
    """
    path = Path(path)
    try:
        looks_right = is_soundfont(path)
    except OSError as e:
        raise RenderError(f"cannot read SoundFont {path}: {e.strerror or e}. "
                          "Fix: point the soundfont setting at an existing .sf2 file") from e
    if not looks_right:
        raise RenderError(f"{path} is not a SoundFont (no RIFF 'sfbk' header). "
                          "Fix: use a SoundFont 2 (.sf2) file; convert other formats (SFZ, DLS, GIG) first")


# The preset data ("hydra", SoundFont 2.01 section 7): nine arrays of fixed-size records.
_HYDRA_RECORD_SIZES = {b"phdr": 38, b"pbag": 4, b"pmod": 10, b"pgen": 4, b"inst": 22, b"ibag": 4, b"imod": 10,
                       b"igen": 4, b"shdr": 46}
_GEN_INSTRUMENT, _GEN_SAMPLE_ID = 41, 53


def _hydra(path: Path) -> dict[bytes, bytes]:
    """The pdta sub-chunks of a file that starts like a SoundFont, by id; those it cannot find are left out."""
    arrays: dict[bytes, bytes] = {}
    with path.open("rb") as f:
        riff_end = 8 + struct.unpack("<I", f.read(8)[4:])[0]
        at = 12
        while at + 12 <= riff_end:  # top-level LIST chunks: INFO, sdta, pdta; skip the samples unread
            f.seek(at)
            head = f.read(12)
            if len(head) < 12:
                break
            ck_id, size, list_type = head[:4], struct.unpack("<I", head[4:8])[0], head[8:12]
            if ck_id == b"LIST" and list_type == b"pdta":
                data = f.read(max(0, size - 4))  # a lying size reads at most to the end of the file
                inner = 0
                while inner + 8 <= len(data):
                    sub_id, sub_size = data[inner:inner + 4], struct.unpack("<I", data[inner + 4:inner + 8])[0]
                    arrays[sub_id] = data[inner + 8:inner + 8 + sub_size]
                    inner += 8 + sub_size + (sub_size & 1)
            at += 8 + size + (size & 1)
    return arrays


def font_presets(path: Path) -> frozenset[tuple[int, int]]:
    """The (bank, program) presets of a font; RenderError unless its preset data is consistent.

    TinySoundFont follows the records' indices without checking them, so a damaged or hostile
    font crashes the whole process (found by fuzzing); FluidSynth checks the same things on load.
    The presets come from here, not from TinySoundFont, whose preset_name fails on a name that
    is not UTF-8 (fonts from the 1990s use Latin-1).
    """
    path = Path(path)

    def damaged(what: str) -> RenderError:
        return RenderError(f"the SoundFont {path} is damaged: {what}. Fix: open it in a SoundFont editor "
                           "(e.g. Polyphone) and save it again, or use another .sf2")

    arrays = _hydra(path)
    records: dict[bytes, list[bytes]] = {}
    for name, size in _HYDRA_RECORD_SIZES.items():
        data = arrays.get(name)
        if data is None:
            raise damaged(f"its preset data has no '{name.decode()}' chunk")
        if len(data) % size or not data:
            raise damaged(f"its '{name.decode()}' chunk is {len(data)} bytes, not a whole number of "
                          f"{size}-byte records")
        records[name] = [data[i:i + size] for i in range(0, len(data), size)]

    def check_indices(name: bytes, offset: int, target: bytes) -> None:
        """Each record's index into `target` (a uint16 at `offset`) rises and stays inside it."""
        previous = 0
        for i, record in enumerate(records[name]):
            index = struct.unpack_from("<H", record, offset)[0]
            if index < previous or index >= len(records[target]):
                raise damaged(f"'{name.decode()}' record {i} points at '{target.decode()}' record {index} "
                              f"({len(records[target])} records, previous index {previous})")
            previous = index

    check_indices(b"phdr", 24, b"pbag")
    check_indices(b"pbag", 0, b"pgen")
    check_indices(b"pbag", 2, b"pmod")
    check_indices(b"inst", 20, b"ibag")
    check_indices(b"ibag", 0, b"igen")
    check_indices(b"ibag", 2, b"imod")
    for gens, oper, target in ((b"pgen", _GEN_INSTRUMENT, b"inst"), (b"igen", _GEN_SAMPLE_ID, b"shdr")):
        for i, record in enumerate(records[gens][:-1]):
            number, amount = struct.unpack("<HH", record)
            if number == oper and amount >= len(records[target]) - 1:  # the last record only ends the list
                raise damaged(f"'{gens.decode()}' record {i} names '{target.decode()}' record {amount} "
                              f"of {len(records[target]) - 1}")
    # phdr: name (20 bytes), wPreset, wBank, ...; the last record only ends the list
    return frozenset(struct.unpack_from("<HH", record, 20)[::-1] for record in records[b"phdr"][:-1])


class _Player:
    """One TinySoundFont synthesizer with one font, fed MIDI channel messages."""

    def __init__(self, soundfont: Path, presets: frozenset[tuple[int, int]], *, sample_rate: int, gain: float):
        tsf = _tinysoundfont()
        self.soundfont, self.presets = soundfont, presets
        self.synth = tsf.Synth(gain=gain_to_db(gain), samplerate=sample_rate)
        try:
            self.sfid = self.synth.sfload(str(soundfont))
        except RuntimeError as e:  # TinySoundFont says only that it could not load the file
            raise RenderError(f"the SoundFont {soundfont} could not be loaded (damaged, truncated or "
                              f"unsupported: {e}). Fix: open it in a SoundFont editor (e.g. Polyphone) and "
                              "save it again, or use another .sf2") from e
        self.selected: set[int] = set()

    def select(self, channel: int, program: int) -> None:
        """Put the font's preset for `program` on `channel`; the drum channel always gets the standard kit."""
        is_drums = channel == DRUM_CHANNEL
        bank, number = (DRUM_BANK, STANDARD_KIT) if is_drums else (0, program)
        # Look first: TinySoundFont would quietly play bank 0's piano for a missing drum kit.
        if (bank, number) not in self.presets:
            name = "the drum kit (bank 128, program 0)" if is_drums else f"GM program {program} (bank 0)"
            raise RenderError(f"the SoundFont {self.soundfont} has no preset for {name}. "
                              "Fix: use a General MIDI SoundFont that has it, or render without --soundfont")
        self.synth.program_select(channel, self.sfid, bank, number, is_drums)
        self.selected.add(channel)

    def send(self, message: mido.Message) -> None:
        kind = message.type
        if kind == "program_change":
            self.select(message.channel, message.program)
        elif kind == "note_on" and message.velocity > 0:
            if message.channel not in self.selected:  # General MIDI: a channel starts on program 0
                self.select(message.channel, 0)
            self.synth.noteon(message.channel, message.note, message.velocity)
        elif kind in ("note_on", "note_off"):
            self.synth.noteoff(message.channel, message.note)
        elif kind == "control_change":
            self.synth.control_change(message.channel, message.control, message.value)
        elif kind == "pitchwheel":
            self.synth.pitchbend(message.channel, message.pitch + 8192)
        # Aftertouch, SysEx and meta events change nothing TinySoundFont plays.

    def render_into(self, out: np.ndarray) -> None:
        """Fill `out` (frames, 2) float32, C-contiguous, with the sound from here on."""
        if len(out):
            self.synth.generate_simple(len(out), buffer=memoryview(out).cast("B"))


def render_midi(midi: bytes, soundfont: Path, *, sample_rate: int, frames: int, gain: float = 0.5) -> np.ndarray:
    """Render a Standard MIDI File with `soundfont`; float32 stereo (2, frames), trimmed or zero-padded.

    No reverb or chorus (our mix stage adds the reverb). `gain` scales the synthesizer's output linearly.
    """
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain}")
    soundfont = Path(soundfont).resolve()
    check_soundfont(soundfont)
    player = _Player(soundfont, font_presets(soundfont), sample_rate=sample_rate, gain=gain)
    song = mido.MidiFile(file=io.BytesIO(midi))

    buffer = np.zeros((frames, 2), dtype=np.float32)
    done, seconds = 0, 0.0
    # Iterating a MidiFile merges its tracks and turns ticks into seconds through the tempo map.
    for message in song:
        seconds += message.time
        at = round(seconds * sample_rate)
        if at >= frames:
            break
        if at > done:
            player.render_into(buffer[done:at])
            done = at
        if not message.is_meta:
            player.send(message)
    player.render_into(buffer[done:])  # the last notes' release, up to the frames asked for
    return np.ascontiguousarray(buffer.T)
