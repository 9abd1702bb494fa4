"""The embedded `arranger` backing engine: score -> one stem per instrument + a General-MIDI file.

Rules, not trained weights. One list of note events is generated per part (the preset's patterns
x the score's bars, chords and sections, humanised from the request seed); the audio stems and
the Standard MIDI File are both rendered from those events, so the MIDI is what you hear.

Everything a genre or style decides is data in `millamusic.instruments.presets` (documented
in docs/arranger.md); this module picks and merges the preset and holds the engine. The part
writing is in `millamusic.instruments.parts`, the audio rendering in
`millamusic.instruments.rendering` (instrument synthesis in `millamusic.instruments.synth`; with a
user's SoundFont the parts are rendered by TinySoundFont instead, `millamusic.instruments.soundfont`)
and the MIDI file in `millamusic.instruments.midi_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from millamusic.core.audio import Audio
from millamusic.core.errors import RenderError
from millamusic.engines.base import (
    BackingEngine,
    BackingRequest,
    BackingResult,
    EngineInfo,
)
from millamusic.instruments.midi_file import midi_bytes
from millamusic.instruments.parts import (
    DRUM_CHANNEL,
    Arrangement,
    Part,
    bar_contexts,
    drum_events,
    part_rng,
    pitched_events,
)
from millamusic.instruments.presets import GENRE_DEFAULT, PRESET_WORDS, PRESETS, STYLE_MODS
from millamusic.instruments.rendering import render_arrangement, sum_stems
from millamusic.music.score import Score

OPTION_NAMES = ("preset", "overrides", "soundfont")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def option_problems(options: dict) -> list[tuple[str, str, str]]:
    """(option, problem, fix) for spec options the arranger does not know; checked when the spec loads."""
    problems = [(key, "unknown arranger option", f"use one of: {', '.join(OPTION_NAMES)}")
                for key in sorted(set(options) - set(OPTION_NAMES))]
    if "preset" in options and (not isinstance(options["preset"], str) or options["preset"] not in PRESETS):
        problems.append(("preset", "no such arranger preset", f"use one of: {', '.join(PRESETS)}"))
    return problems


def resolve_preset(genre: str, style: tuple[str, ...] = (), options: dict | None = None) -> tuple[str, dict, list[str]]:
    """(preset name, preset with style words and option overrides merged in, style words used).

    The preset is `options["preset"]` if given, else the first style word (or phrase) that names
    one for this genre (PRESET_WORDS), else the genre's default.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise RenderError(f"arranger options {unknown} are not known; valid options: {', '.join(OPTION_NAMES)}")
    genre_name = genre.strip().lower()
    if genre_name not in GENRE_DEFAULT:
        raise RenderError(f"arranger has no preset for genre {genre!r}; "
                          f"valid genres: {', '.join(sorted(GENRE_DEFAULT))}")
    words = [w.strip().lower() for w in style if w.strip()]
    used: list[str] = []
    name = options.get("preset")
    if name is not None:
        if name not in PRESETS:
            raise RenderError(f"arranger preset {name!r} does not exist; valid presets: {', '.join(PRESETS)}")
    else:
        name = next((PRESET_WORDS[genre_name][w] for w in words if w in PRESET_WORDS[genre_name]), None)
        if name is None:
            name = GENRE_DEFAULT[genre_name]
        else:
            used.append(next(w for w in words if PRESET_WORDS[genre_name].get(w) == name))
    preset = PRESETS[name]
    for word in words:
        if word in STYLE_MODS:
            preset = _merge(preset, STYLE_MODS[word])
            used.append(word)
    overrides = options.get("overrides")
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise RenderError("arranger option 'overrides' must be a mapping of preset fields (see docs/arranger.md)")
        preset = _merge(preset, overrides)
    return name, preset, used


def arrange(score: Score, request: BackingRequest) -> Arrangement:
    """The note events of every part (what is rendered and written to MIDI)."""
    name, preset, used = resolve_preset(request.genre, tuple(request.style), request.options)
    contexts = bar_contexts(score, preset)
    # Parts are written in beats (a bar's pattern is the same at any tempo; rendering places the
    # beats on the tempo map). Their few ms of human timing convert at the opening tempo.
    spb = score.seconds_per_beat
    tail_beats = score.tail_beats
    parts = [Part("drums", 0, DRUM_CHANNEL, drum_events(contexts, preset, part_rng(request.seed, "drums"), spb))]
    channels = (c for c in range(16) if c != DRUM_CHANNEL)
    for part_name, cfg in preset["instruments"].items():
        if cfg is None:  # an override set this instrument to null: leave it out
            continue
        events = pitched_events(cfg, contexts, preset, part_rng(request.seed, part_name), spb, tail_beats)
        parts.append(Part(part_name, cfg["program"], next(channels), events))
    return Arrangement(name, tuple(used), preset, tuple(parts))


def _dbfs(x: np.ndarray) -> float:
    return round(20.0 * float(np.log10(max(float(np.max(np.abs(x))), 1e-12))), 2)


class Arranger(BackingEngine):
    """Algorithmic pop/rock band from genre presets: one stem per instrument. Same seed -> same bits."""

    info: ClassVar[EngineInfo] = EngineInfo(
        name="arranger",
        kind="backing",
        version="0.3.0",  # 0.3: SoundFont parts through TinySoundFont (was FluidSynth)
        model="embedded",
        licence="MIT (millamusic)",
        generator="algorithmic",
    )

    def render(self, score: Score, request: BackingRequest) -> BackingResult:
        if not score.bars:
            raise RenderError("the score has no bars: nothing for the arranger to play")
        arrangement = arrange(score, request)
        soundfont = request.options.get("soundfont")
        stems = render_arrangement(score, arrangement, request.seed, request.sample_rate,
                                   Path(soundfont) if soundfont else None)
        mix = sum_stems(stems)
        details = {
            "parts": list(stems),
            "soundfont": Path(soundfont).name if soundfont else None,
            "preset": arrangement.preset_name,
            "style_words": list(arrangement.style_words),
            "instruments": "soundfont" if soundfont else "embedded synthesizer",
            "notes": {p.name: len(p.events) for p in arrangement.parts},
            "peak_dbfs": {name: _dbfs(x) for name, x in stems.items()},
            "sum_peak_dbfs": _dbfs(mix),
        }
        return BackingResult(
            stems={name: Audio(x, request.sample_rate) for name, x in stems.items()},
            midi=midi_bytes(score, arrangement.parts),
            prompt=None,
            details=details,
        )
