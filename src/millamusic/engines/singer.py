"""The embedded `singer` vocal engine: espeak-ng speaks the lyrics, WORLD makes them sing.

How a song is sung:

1. Each lyric line is spoken once by espeak-ng with a private, echo-free voice variant
   (`voice/espeak_voices.py`). espeak reports word and phoneme events in order; phonemes are
   given to words by that order (never by sample position) and split into one group per sung
   syllable: onset consonants + vowel nucleus + coda (`voice/syllables.py`).
2. The spoken audio is analysed with WORLD (DIO + StoneMask f0, CheapTrick envelope,
   D4C aperiodicity) at espeak's rate, 5 ms frames (`voice/speech_analysis.py`).
3. Every syllable is re-timed on the 5 ms grid: onset consonants just before the beat so
   the vowel lands on it, the vowel's steady core stretched to the note, the coda at
   the end of the note. Consonants keep their natural length unless a fast passage
   forces them shorter (`voice/retiming.py`).
4. f0 is replaced by the note pitches with portamento, delayed vibrato and slow drift;
   WORLD resynthesises each phrase, each syllable is levelled (`voice/world_singing.py`,
   voice colour in `voice/world.py`), and the song-long buffer is resampled to the
   requested rate.

This module holds the engine, its options and the glue: the speech source, the takes
(lead, double, harmony) and the finished stems.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from millamusic.core.audio import Audio, resample
from millamusic.core.errors import RenderError
from millamusic.engines import load_speech_source
from millamusic.engines.base import EngineInfo, VocalEngine, VocalRequest, VocalResult
from millamusic.music import espeak
from millamusic.music.score import Score, SungSyllable
from millamusic.voice import piper
from millamusic.voice.espeak_voices import ANALYSIS_F0, VARIANTS
from millamusic.voice.melody import chorus_lines, double_take, word_text
from millamusic.voice.retiming import PHRASE_GAP_S, Unit, place_units, split_phrases, sung_units
from millamusic.voice.speech_analysis import FRAME_MS, FRAME_S, Analysis, analyse_line, source_of
from millamusic.voice.syllables import clean_word, spoken_words, syllable_groups, third_above
from millamusic.voice.world_singing import breath_before, sing_phrase

PEAK_DBFS = -6.0  # the lead stem is normalised to this peak: headroom for the mix

DEFAULT_OPTIONS = {
    "vibrato_rate_hz": 5.5,
    "vibrato_depth_cents": 30.0,
    "vibrato_delay_s": 0.25,  # vibrato starts this long after a note starts
    "portamento_s": 0.05,  # glide time between notes
    "drift_cents": 5.0,  # peak of the slow random pitch drift
    "speech_rate_wpm": 140,  # espeak speaking rate: slower gives longer, cleaner vowels
    "breath_db": -28.0,  # breath before a phrase, relative to the sung level; None: no breaths
    "formant_shift": 1.0,  # spectral envelope stretched by this factor: > 1 a smaller, brighter voice
    "breathiness": 0.0,  # 0..1: air mixed into the voiced sound, most above 2 kHz
    "double_track": False,  # a second take as the stem `lead_double`: true (whole song) or "chorus"
    "harmony": False,  # also sing a third above the lead in choruses as the stem `harmony`
}
# Set by the pipeline from the artist profile, not by hand: where the speech comes from.
SOURCE_OPTIONS = {"source": "espeak", "piper_model": None}
# The kokoro engine's: one artist profile serves both vocal engines (the singer is the fast draft
# voice), so these pass here and are named as not used in the render's details.
KOKORO_PROFILE_OPTIONS = ("kokoro_pack", "kokoro_ceiling")
KOKORO_OPTIONS = ("ceiling", "pronunciations", "device")
_OPTION_RANGES = {
    "vibrato_rate_hz": (0.0, 12.0),
    "vibrato_depth_cents": (0.0, 200.0),
    "vibrato_delay_s": (0.0, 5.0),
    "portamento_s": (0.0, 0.5),
    "drift_cents": (0.0, 100.0),
    "speech_rate_wpm": (80, 400),
    "breath_db": (-80.0, 0.0),
    "formant_shift": (0.75, 1.35),
    "breathiness": (0.0, 1.0),
}
_FLAG_OPTIONS = ("harmony",)


def _espeak_model() -> str:
    try:
        return f"espeak-ng {espeak.version()} + WORLD (pyworld)"
    except (OSError, ImportError):  # library missing: the registry reports the engine unavailable
        return "espeak-ng + WORLD (pyworld)"


def option_problems(options: dict) -> list[tuple[str, str, str]]:
    """(option, problem, fix) for every bad singing option a person wrote; [] when all are fine."""
    problems = []
    for key in sorted(set(options) & set(SOURCE_OPTIONS)):
        problems.append((key, "the speech source is part of the artist's voice",
                         f"set voice.{key} in the artist profile (docs/singing.md)"))
    for key in sorted(set(options) - set(DEFAULT_OPTIONS) - set(SOURCE_OPTIONS) - set(KOKORO_OPTIONS)
                      - set(KOKORO_PROFILE_OPTIONS)):
        problems.append((key, "unknown singing option", f"use one of: {', '.join(DEFAULT_OPTIONS)}"))
    for key, (lo, hi) in _OPTION_RANGES.items():
        if key not in options or (key == "breath_db" and options[key] is None):
            continue
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            problems.append((key, f"must be a number from {lo} to {hi}", f"write a number from {lo} to {hi}"))
    for key in _FLAG_OPTIONS:
        if key in options and not isinstance(options[key], bool):
            problems.append((key, "must be true or false", "write true or false"))
    if options.get("double_track", False) not in (True, False, "chorus"):
        problems.append(("double_track", "must be true, false or chorus", "write true, false or chorus"))
    return problems


# --- the speech source -------------------------------------------------------------------------
@dataclass(frozen=True)
class Speaker:
    """Where the spoken syllables come from: espeak-ng's own voice or a Piper voice."""

    name: str  # "espeak" | "piper"
    description: str  # for the release record, e.g. "en-us+milla_f" or the Piper model file
    sample_rate: int
    f0_range: tuple[float, float]  # f0 search range for analysing the spoken voice (Hz)
    speak: Callable[[str], espeak.Utterance]
    engine_info: EngineInfo | None = None  # what the credits name when it is not the embedded voice


def _check_request(request: VocalRequest) -> tuple[Speaker, dict]:
    """Validate voice, language and options; return the speech source and options."""
    if request.voice not in VARIANTS:
        raise RenderError(f"singer: unknown voice {request.voice!r}; valid voices: {', '.join(VARIANTS)}")
    language = (request.language or "").strip().lower()
    fix = espeak.language_fix(language)
    if fix is not None:
        raise RenderError(f"singer: unknown language {request.language!r}; {fix}")
    sung = {k: v for k, v in request.options.items()  # the source and the kokoro voice come from the pipeline
            if k not in SOURCE_OPTIONS and k not in KOKORO_PROFILE_OPTIONS}
    problems = option_problems(sung)
    if problems:
        raise RenderError("singer: " + "; ".join(f"option {key}: {message} ({fix})" for key, message, fix in problems))
    opts = {**DEFAULT_OPTIONS, **SOURCE_OPTIONS, **request.options}
    return load_speech_source(opts["source"])(request, opts), opts


def espeak_speaker(request: VocalRequest, opts: dict) -> Speaker:
    """espeak-ng's own voice, in the singer's echo-free variant for the request's voice."""
    name, text = VARIANTS[request.voice]
    espeak.install_variant(name, text)
    voice = f"{(request.language or '').strip().lower()}+{name}"
    rate = int(opts["speech_rate_wpm"])
    return Speaker("espeak", voice, espeak.sample_rate(), ANALYSIS_F0[request.voice],
                   lambda line: espeak.speak(line, voice, rate_wpm=rate, pitch_range=15))


def piper_speaker(request: VocalRequest, opts: dict) -> Speaker:  # noqa: ARG001 (the registry's signature)
    """A Piper voice (the artist profile's `voice.piper_model`)."""
    model = opts["piper_model"]
    if not model:
        raise RenderError("singer: source piper needs a voice model. Fix: set voice.piper_model in the artist profile")

    voice = piper.load_voice(model)
    info = EngineInfo(name="singer", kind="vocals", version=Singer.info.version,
                      model=f"Piper voice {Path(model).name} (onnxruntime) + WORLD (pyworld)",
                      licence=f"voice: {voice.licence}; WORLD: modified BSD", generator="trained",
                      weights_hash=voice.sha256)
    # Piper voices speak with their own natural pitch, male or female: search widely
    return Speaker("piper", Path(model).name, voice.sample_rate, (60.0, 500.0),
                    lambda line: piper.speak(line, voice), info)


def _speak_words(words: list[str], speaker: Speaker) -> tuple[espeak.Utterance, list[tuple[int, int]]]:
    """Speak `words` as one line: the utterance and each word's character span in the text.

    The espeak binding keeps global state: call this from one thread at a time.
    """
    text_parts, spans, pos = [], [], 0
    for word in words:
        spans.append((pos, pos + len(word)))
        text_parts.append(word)
        pos += len(word) + 1
    return speaker.speak(" ".join(text_parts)), spans


def _attach_sources(score: Score, units: list[Unit], speaker: Speaker, pool: Executor | None = None) -> list[dict]:
    """Speak each lyric line once and give every unit its source frames.

    The lines are spoken one after another on this thread (the speech source keeps global
    state) and, given a `pool`, analysed side by side on it while the next line is
    spoken. The analysis has no randomness: the result is the same either way.

    Returns the words whose espeak vowel count differed from their sung syllable count.
    """
    by_line: dict[int, list[int]] = {}
    for u in units:
        words = by_line.setdefault(u.line, [])
        if u.word not in words:
            words.append(u.word)
    lines = []  # (line, word ids, cleaned texts, key)
    for line, word_ids in by_line.items():
        texts = [clean_word(word_text(score, units, w)) for w in word_ids]
        lines.append((line, word_ids, texts, " ".join(texts)))
    analyses: dict[str, Future | Analysis] = {}  # a repeated chorus line is spoken and analysed once
    for line, _word_ids, texts, key in lines:
        if key in analyses:
            continue
        try:
            spoken = _speak_words(texts, speaker)
        except espeak.EspeakError as exc:
            raise RenderError(f"singer: {speaker.name} failed on line {line} ({key!r}): {exc}") from exc
        if pool is None:
            analyses[key] = analyse_line(*spoken, speaker.f0_range)
        else:
            analyses[key] = pool.submit(analyse_line, *spoken, speaker.f0_range)
    mismatches = []
    for line, word_ids, texts, key in lines:
        analysis = analyses[key]
        if isinstance(analysis, Future):
            analysis = analyses[key] = analysis.result()
        for slots in spoken_words(analysis.words):
            word_units = [u for u in units if u.line == line and u.word in {word_ids[k] for k in slots}]
            phones = analysis.words[slots[0]]
            if not phones:
                continue  # espeak said nothing for it: those notes stay silent
            groups, found = syllable_groups(phones, len(word_units))
            if found != len(word_units):
                text = " ".join(texts[k] for k in slots)
                mismatches.append({"word": text, "espeak_vowels": found, "sung_syllables": len(word_units)})
            for u, g in zip(word_units, groups):
                u.source = source_of(g, phones, analysis)
    return mismatches


# --- the engine ---------------------------------------------------------------------------------
class Singer(VocalEngine):
    """espeak-ng + WORLD singing synthesis; no trained weights."""

    info: ClassVar[EngineInfo] = EngineInfo(
        name="singer",
        kind="vocals",
        version="0.3.0",
        model=_espeak_model(),
        licence="GPL-3.0-or-later (espeak-ng data); WORLD: modified BSD",
        generator="algorithmic",
    )

    def render(self, score: Score, request: VocalRequest) -> VocalResult:
        """Sing `score`: stereo stems score.total_frames(rate) long, each peaking at PEAK_DBFS.

        Stems: `lead`, plus `lead_double` and `harmony` when those options are on.
        """
        speaker, opts = _check_request(request)
        # one pool for the whole render: the lines' WORLD analysis, then every phrase of
        # every take (WORLD releases the GIL, so threads keep all cores busy)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return self._render(score, request, speaker, opts, pool)

    def _render(self, score: Score, request: VocalRequest, speaker: Speaker, opts: dict,
                pool: Executor) -> VocalResult:
        units = sung_units(score)
        mismatches = _attach_sources(score, units, speaker, pool)
        units = [u for u in units if u.source is not None]
        fs = speaker.sample_rate
        frames = score.total_frames(request.sample_rate)
        takes = {"lead": (units, opts, request.seed)}
        if opts["double_track"]:
            # a second take: its own vibrato, drift and breath noise, a slightly different
            # vocal tract and timing a few ms apart, as a singer's double is
            double = {**opts, "formant_shift": opts["formant_shift"] * 1.015, "drift_cents": opts["drift_cents"] + 3.0}
            doubled = [u for u in units if u.line in chorus_lines(score)] if opts["double_track"] == "chorus" else units
            takes["lead_double"] = (double_take(doubled, request.seed, PHRASE_GAP_S), double, request.seed + 1)
        if opts["harmony"]:
            harmony = [replace(u, pitches=[(a, b, third_above(m, score.key_value.scale_pcs)) for a, b, m in u.pitches])
                       for u in [u for u in units if u.line in chorus_lines(score)]]
            takes["harmony"] = (harmony, opts, request.seed + 2)
        def sing_take(take: tuple) -> tuple[Audio, float, int]:
            take_units, take_opts, seed = take
            buffer = np.zeros(int(np.ceil(score.total_seconds * fs)) + fs)  # mono, at the analysis rate
            phrases = _sing(take_units, buffer, fs, take_opts, _Streams(seed, pool))
            return (*_finish(buffer, fs, request.sample_rate, frames), len(phrases))

        # each take waits on its own thread for its phrases (sung on the shared pool) and
        # then resamples while the other takes' phrases are still being sung; each take has
        # its own units and seed, each phrase its own random streams, so the result does
        # not depend on the order
        with ThreadPoolExecutor(max_workers=len(takes)) as takers:
            sung = dict(zip(takes, takers.map(sing_take, takes.values())))
        stems = {name: stem for name, (stem, _, _) in sung.items()}
        peaks = {name: peak for name, (_, peak, _) in sung.items()}
        phrase_counts = {name: count for name, (_, _, count) in sung.items()}
        syllables = tuple(
            SungSyllable(u.notes[0], round(u.onset_start, 4), round(max(u.coda_end, u.start + FRAME_S), 4),
                         round(u.start, 4))
            for u in units
        )
        details = {
            "source": speaker.name,
            "voice": speaker.description,
            "espeak_version": espeak.version(),
            "analysis_sample_rate": fs,
            "frame_period_ms": FRAME_MS,
            "phrases": phrase_counts,
            "sung_syllables": len(syllables),
            "notes": len(score.notes),
            "peak_dbfs": {name: PEAK_DBFS if peak > 0 else None for name, peak in peaks.items()},
            "vowel_count_mismatches": mismatches,
            "options": {k: v for k, v in opts.items() if k not in KOKORO_PROFILE_OPTIONS},
            "options_not_used": sorted(k for k in opts if k in KOKORO_OPTIONS or k in KOKORO_PROFILE_OPTIONS),
        }
        return VocalResult(stems=stems, syllables=syllables, details=details, engine_info=speaker.engine_info)


@dataclass(frozen=True)
class _Streams:
    """How a take is sung: its seed and, optionally, the thread pool its phrases share.

    Every phrase draws from its own random streams (pitch; breath), derived from the
    seed and the phrase's index, so a phrase sounds the same whichever thread sings it
    and in whatever order.
    """

    seed: int
    pool: Executor | None = None

    def rng(self, phrase: int, purpose: int) -> np.random.Generator:
        """The stream of phrase `phrase` for `purpose` (1: pitch, 2: breath)."""
        return np.random.default_rng([self.seed, phrase, purpose])


def _sing(units: list[Unit], buffer: np.ndarray, fs: int, opts: dict, streams: _Streams) -> list:
    """Place, synthesise and add every phrase (and the breaths before them) into `buffer`.

    With a pool in `streams` the phrases are synthesised on it, longest first (WORLD
    releases the GIL); they are added into `buffer` in time order whatever order they
    finish in, so the sum is the same run to run.
    """
    if not units:
        return []
    place_units(units)
    phrases = split_phrases(units)

    def sing(k: int) -> list[tuple[int, np.ndarray]]:
        phrase = phrases[k]
        gap_before = phrase[0].onset_start - (phrases[k - 1][-1].coda_end if k else 0.0)
        parts = [sing_phrase(phrase, fs, opts, streams.rng(k, 1))]
        breath = breath_before(fs, phrase[0].onset_start, gap_before, opts, streams.rng(k, 2))
        return parts + ([breath] if breath is not None else [])

    if streams.pool is None:
        sung = [sing(k) for k in range(len(phrases))]
    else:
        longest_first = sorted(range(len(phrases)), key=lambda k: phrases[k][0].onset_start - phrases[k][-1].coda_end)
        futures = {k: streams.pool.submit(sing, k) for k in longest_first}
        sung = [futures[k].result() for k in range(len(phrases))]
    for parts in sung:
        for start, y in parts:
            end = min(start + len(y), len(buffer))
            if end > start:
                buffer[start:end] += y[: end - start]
    return phrases


def _finish(buffer: np.ndarray, fs: int, rate: int, frames: int) -> tuple[Audio, float]:
    """Mono buffer at `fs` -> stereo Audio at `rate`, exactly `frames` long, peak at PEAK_DBFS.

    Returns the stem and the peak before normalisation (0.0 for silence).
    """
    lead = resample(Audio(buffer[None, :].astype(np.float32), fs), rate).fit_length(frames)
    samples = lead.samples[0]
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if not np.isfinite(peak):  # NaN or inf from a broken synthesis (never seen): made finite
        samples = np.nan_to_num(samples.astype(np.float64))
        peak = float(np.max(np.abs(samples)))
    # song-long arrays: scaled in float64 straight into the float32 stem, no temporaries
    out = np.empty((2, len(samples)), dtype=np.float32)
    if peak > 0:
        np.multiply(samples, 10 ** (PEAK_DBFS / 20) / peak, out=out[0], dtype=np.float64, casting="unsafe")
    else:
        out[0] = samples
    out[1] = out[0]
    return Audio(out, rate), peak
