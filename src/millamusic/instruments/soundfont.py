"""Render the arranger's MIDI with a producer's own SoundFont, through the `fluidsynth` program.

FluidSynth is optional and installed by the user (apt, brew, ...). We call its command-line
program rather than binding the library, so there is no Python dependency and no build step;
a missing program is an EngineUnavailable with an install hint.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from millamusic.core.errors import EngineUnavailable, RenderError

FLUIDSYNTH_HINT = (
    "install the FluidSynth program: on Debian/Ubuntu `sudo apt-get install --no-install-recommends fluidsynth`, "
    "on macOS `brew install fluid-synth`, on Windows download a release from "
    "https://github.com/FluidSynth/fluidsynth/releases and put its bin folder on PATH; "
    "`fluidsynth --version` must then work in a new terminal"
)


# Lines of fluidsynth's own output to quote when it fails.
_TAIL_LINES = 12


def fluidsynth_program() -> str | None:
    """The fluidsynth executable on PATH, or None."""
    return shutil.which("fluidsynth")


def is_soundfont(path: Path) -> bool:
    """True if the file starts like a SoundFont 2 (RIFF form type 'sfbk'). Raises OSError if unreadable."""
    with Path(path).open("rb") as f:
        head = f.read(12)
    return len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"sfbk"


def check_soundfont(path: Path) -> None:
    """Raise RenderError unless `path` starts like a SoundFont (RIFF form type 'sfbk').

    fluidsynth itself only warns about a file it cannot load and then renders silence (or,
    worse, its default GM font), so we look before we call it.
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


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(f"  {line}" for line in lines[-_TAIL_LINES:]) or "  (no output)"


def fluidsynth_command(program: str, soundfont: Path, midi: Path, out: Path, config: Path, *,
                       sample_rate: int, gain: float) -> list[str]:
    """The command line; every flag is there for one of: no devices, reproducible, no extra effects."""
    return [
        program,
        "-n",  # no MIDI input driver: nothing to open on a headless machine
        "-i",  # no interactive shell: never waits on stdin
        "-q",  # no banner
        "-f", str(config),  # an empty config, so a user's ~/.fluidsynth cannot change gain or effects
        "-g", f"{gain:g}",
        "-r", str(sample_rate),
        "-o", "synth.reverb.active=0",  # our mix stage adds the reverb
        "-o", "synth.chorus.active=0",
        # If the font fails to load, fluidsynth would quietly play its default GM font instead.
        "-o", "synth.default-soundfont=",
        "-o", "synth.lock-memory=0",  # pinning a large font in RAM is pointless offline, and warns under ulimit
        "-O", "float",  # 32-bit float: no dither, no clipping, no 16-bit rounding before our mix
        "-T", "wav",
        "-F", str(out),  # fast render to a file: no audio driver at all
        str(soundfont),
        str(midi),
    ]


def render_midi(midi: bytes, soundfont: Path, *, sample_rate: int, frames: int, gain: float = 0.5,
                timeout: float | None = None) -> np.ndarray:
    """Render a Standard MIDI File with `soundfont`; float32 stereo (2, frames), trimmed or zero-padded.

    The timeout defaults to two minutes plus twice the audio's duration (fluidsynth renders far
    faster than real time; loading a large font is the slow part).
    """

    program = fluidsynth_program()
    if program is None:
        raise EngineUnavailable(f"the SoundFont renderer needs the `fluidsynth` program, which is not on PATH. "
                                f"Fix: {FLUIDSYNTH_HINT}")
    soundfont = Path(soundfont).resolve()
    check_soundfont(soundfont)
    if timeout is None:
        timeout = 120.0 + 2.0 * frames / sample_rate

    with tempfile.TemporaryDirectory(prefix="millamusic-fluidsynth-") as tmp:
        folder = Path(tmp)
        midi_path = folder / "parts.mid"
        midi_path.write_bytes(midi)
        config = folder / "empty.cfg"
        config.write_text("")
        out = folder / "out.wav"
        command = fluidsynth_command(program, soundfont, midi_path, out, config, sample_rate=sample_rate, gain=gain)
        try:
            done = subprocess.run(command, cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise RenderError(f"fluidsynth did not finish within {timeout:.0f} s rendering with {soundfont}") from e
        except OSError as e:
            raise RenderError(f"cannot run {program}: {e}. Fix: {FLUIDSYNTH_HINT}") from e
        said = (done.stdout or "") + "\n" + (done.stderr or "")
        # fluidsynth exits 0 when a font fails to load, so its own message is the only sign.
        if "Failed to load the SoundFont" in said or "Failed to load SoundFont" in said:
            raise RenderError(f"fluidsynth could not load the SoundFont {soundfont} (damaged or unsupported).\n"
                              f"{_tail(said)}\nFix: open it in a SoundFont editor (e.g. Polyphone) and save it again")
        if done.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            raise RenderError(f"fluidsynth failed (exit {done.returncode}) rendering with {soundfont}:\n{_tail(said)}")
        try:
            data, rate = sf.read(out, dtype="float32", always_2d=True)
        except RuntimeError as e:  # soundfile's LibsndfileError is one
            raise RenderError(f"fluidsynth wrote an unreadable file: {e}\n{_tail(said)}") from e

    if rate != sample_rate or data.shape[1] != 2:
        raise RenderError(f"fluidsynth wrote {data.shape[1]} channel(s) at {rate} Hz; "
                          f"expected stereo at {sample_rate} Hz")
    samples = np.zeros((2, frames), dtype=np.float32)
    n = min(frames, data.shape[0])
    samples[:, :n] = data[:n].T
    return samples
