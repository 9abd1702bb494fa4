"""The files a spec names (melody, reference, artwork, ...): where they may lie and what they must hold."""

from __future__ import annotations

from pathlib import Path

import mido
import soundfile

from millamusic.core.errors import ExportError, SpecProblem
from millamusic.spec.artwork import validate_cover

# Device names Windows reserves as file names, with any extension
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)), *(f"lpt{n}" for n in range(1, 10))}


# --- loading ---------------------------------------------------------------------------------

def default_catalogue(spec_path: Path) -> Path:
    """The folder a spec may read from unless --catalogue names another: the one above the spec's
    own folder (songs/x.yaml -> the project, with lyrics/, artwork/, artists/ beside songs/)."""
    return Path(spec_path).resolve().parent.parent


def outside_catalogue(resolved: Path, catalogue: Path) -> bool:
    """Whether a resolved input path (symlinks followed) lies outside the catalogue."""
    return resolved != catalogue and catalogue not in resolved.parents


def outside(shown: str, line, col, field_name: str, value, resolved: Path, catalogue: Path) -> SpecProblem:
    return SpecProblem(shown, line, col, field_name, value,
                       f"points outside the catalogue {catalogue} (to {resolved})",
                       "keep the file inside the catalogue, or name a wider catalogue on the command line with "
                       "--catalogue DIR (a spec alone cannot reach outside it; symlinks are followed)")


# Largest files a spec may name (checked before they are read)
MAX_INPUT_BYTES = {"melody": 1 << 20, "reference": 1 << 30, "artwork": 20 << 20, "soundfont": 2 << 30}


MAX_REFERENCE_SECONDS = 20 * 60


REFERENCE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")  # what libsndfile decodes for us
REFERENCE_FIX = "export the reference again as WAV, FLAC, MP3 or OGG"
AUDIO_READ_ERRORS = (soundfile.LibsndfileError, RuntimeError, ValueError)  # what libsndfile raises on bad audio


def reference_header_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when a recording's header already says it is unusable: not audio libsndfile
    reads, over MAX_REFERENCE_SECONDS, or a WAV cut short. Reads no audio."""
    try:
        info = soundfile.info(str(path))
    except AUDIO_READ_ERRORS as error:
        return f"not a readable audio file ({error})", REFERENCE_FIX
    if info.duration > MAX_REFERENCE_SECONDS:
        return (f"the recording is {info.duration / 60:.0f} minutes long, over the "
                f"{MAX_REFERENCE_SECONDS // 60}-minute limit", "trim it to the song")
    if info.format == "WAV":  # libsndfile reads a cut-off WAV without complaint: compare the header's size
        with open(path, "rb") as handle:
            head = handle.read(12)
        declared = int.from_bytes(head[4:8], "little") + 8
        if head[:4] == b"RIFF" and declared > path.stat().st_size:
            return (f"the WAV is truncated: its header says {declared} bytes, the file has {path.stat().st_size}",
                    REFERENCE_FIX)
    return None


def _reference_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when the reference recording is not whole, readable audio; decodes it all
    (in blocks) so a corrupt or truncated file is refused here, not minutes into a render."""
    problem = reference_header_problem(path)
    if problem is not None:
        return problem
    try:
        for _ in soundfile.blocks(str(path), blocksize=1 << 16):
            pass
    except AUDIO_READ_ERRORS as error:
        return f"not a readable audio file ({error})", REFERENCE_FIX
    return None


def _artwork_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when the cover would be refused at export: say so before rendering."""

    try:
        validate_cover(path)
    except ExportError as error:
        message, _, fix = str(error).partition(". Fix: ")
        return message.rstrip("."), fix or "use a square JPEG or PNG of at least 1400 x 1400 px"
    return None


def _melody_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when the melody is not a Standard MIDI File with notes (the note count
    against the lyrics is checked when composing)."""

    try:
        midi = mido.MidiFile(str(path))
    except Exception as error:  # mido raises several types (OSError, EOFError, KeyError, ValueError) for broken files
        return f"cannot read the MIDI file ({error})", "export it again as a Standard MIDI File"
    if not any(message.type == "note_on" and message.velocity > 0 for track in midi.tracks for message in track):
        return "the MIDI file has 0 notes", "export the track that holds the sung melody"
    return None


_CONTENT_CHECKS = {"reference": _reference_problem, "artwork": _artwork_problem, "melody": _melody_problem}


def input_size_problem(field_name: str, path: Path) -> tuple[str, str] | None:
    """(problem, fix) when a file named by `field_name` is over its size limit."""
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES[field_name]:
        return (f"the file is {size / 2**20:.0f} MB, over the {MAX_INPUT_BYTES[field_name] >> 20} MB limit for "
                f"`{field_name}`", "use a smaller file (see docs/errors.md for the limits)")
    return None


def input_file_problem(field_name: str, path: Path) -> tuple[str, str] | None:
    """(problem, fix) when a file named by `field_name` is over its size limit or not what it
    should be (checked before any work starts); None when it is fine."""
    check = _CONTENT_CHECKS.get(field_name)
    return input_size_problem(field_name, path) or (check(path) if check else None)
