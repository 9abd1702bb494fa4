"""The engine boundary: what every backing and vocal engine takes and returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from millamusic.core.audio import Audio
from millamusic.music.score import Score, SungSyllable


@dataclass(frozen=True)
class EngineInfo:
    name: str
    kind: str  # "backing" | "vocals"
    version: str
    model: str  # model id, local folder, or "embedded"
    licence: str  # licence of the model/weights (or of the code for embedded engines)
    generator: str  # "algorithmic" (rules, no training data) | "trained" (learned weights)
    weights_hash: str | None = None


@dataclass(frozen=True)
class BackingRequest:
    seed: int
    genre: str  # "pop" | "rock"
    style: tuple[str, ...]
    sample_rate: int
    options: dict = field(default_factory=dict)  # engine-specific, from the spec
    reference: str | None = None  # the spec's reference recording (covers), when it has one
    reference_start: float = 0.0  # seconds into the reference where bar 1 starts
    transpose: int = 0  # semitones from the reference's key to the song's (the score is already moved)


@dataclass(frozen=True)
class BackingResult:
    stems: dict[str, Audio]  # stereo, each exactly score.total_frames(sample_rate) long
    midi: bytes  # Standard MIDI File (type 1) of the parts, b"" if the engine has none
    prompt: str | None = None  # what a generative model was asked, for the credits
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VocalRequest:
    seed: int
    language: str  # espeak-style language code, e.g. "en-us"
    voice: str  # engine-specific voice name, e.g. "female"
    sample_rate: int
    options: dict = field(default_factory=dict)
    # where an engine may keep work it can reuse across renders (kokoro: its sung phrases); set by
    # the pipeline beside the stage cache, never part of a cache key
    reuse_dir: Path | None = None


@dataclass(frozen=True)
class VocalResult:
    stems: dict[str, Audio]  # at least "lead"; stereo, score length
    syllables: tuple[SungSyllable, ...]
    details: dict = field(default_factory=dict)
    # set when an option swapped the model (e.g. a Piper voice): the credits name this instead
    engine_info: EngineInfo | None = None


class BackingEngine(ABC):
    info: ClassVar[EngineInfo]

    def describe(self, request: BackingRequest) -> EngineInfo:  # noqa: ARG002 (engines with a model option use it)
        """What would make this request: engines whose model is an option (MusicGen) name that model,
        its licence and its content hash here, before anything renders (cache key, licence guard)."""
        return self.info

    @abstractmethod
    def render(self, score: Score, request: BackingRequest) -> BackingResult: ...


class VocalEngine(ABC):
    info: ClassVar[EngineInfo]

    def describe(self, request: VocalRequest) -> EngineInfo:  # noqa: ARG002 (engines with a voice option use it)
        """What would sing this request: engines whose voice is an option (Kokoro's packs) name it
        and its content hash here, before anything renders (cache key, licence guard)."""
        return self.info

    @abstractmethod
    def render(self, score: Score, request: VocalRequest) -> VocalResult: ...
