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
(lead, double, harmony, backing vocals), the line and phrase caches and the finished stems.

A phrase's samples depend only on its own inputs (its spoken lines, its placed syllables and
pitches, the take's options and a seed derived from the take and what the phrase sings), so
they are kept in a phrase cache under `VocalRequest.reuse_dir` (set by the pipeline), beside
what each spoken line gives its syllables (the line cache): editing one lyric line speaks
that line again and re-sings its phrases; every other phrase comes from the cache, and the
stems are byte-identical to a render without the cache.

The backing-vocal part of the lyric sheet ("Hold me close (hold on)", Score.backing_notes) is
sung as its own take, `backing_vocals`, by a voice that is not the lead: a smaller, airier
vocal tract with less vibrato (BACKING_VOICE), spoken and re-sung like the lead.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import zipfile
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, ClassVar, Iterable, NamedTuple

import numpy as np

from millamusic.core.audio import Audio, resample
from millamusic.core.errors import RenderError
from millamusic.engines import load_speech_source
from millamusic.engines.base import EngineInfo, VocalEngine, VocalRequest, VocalResult
from millamusic.music import espeak
from millamusic.music.score import Score, SungSyllable
from millamusic.voice import piper
from millamusic.voice.espeak_voices import ANALYSIS_F0, VARIANTS
from millamusic.voice.melody import backing_part, chorus_lines, double_take, harmony_take, word_text
from millamusic.voice.phrase_cache import load_samples, publish, store_samples
from millamusic.voice.retiming import PHRASE_GAP_S, Unit, place_units, split_phrases, sung_units
from millamusic.voice.speech_analysis import (
    FRAME_MS,
    FRAME_S,
    Analysis,
    SpokenLine,
    analyse_line,
    line_from_file,
    line_to_file,
    source_of,
)
from millamusic.voice.syllables import clean_word, spoken_words, syllable_groups
from millamusic.voice.world_singing import breath_before, phrase_start, sing_phrase

VERSION = "0.5.0"  # 0.5: per-phrase seeds from what the phrase sings, phrases summed as float32 (phrase cache)

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
# Options that do not change a phrase's samples: left out of its cache key, so turning the
# harmony on does not sing the lead again (the speech rate and source are in the line's key;
# the breath before a phrase is made anew every render).
_NOT_PHRASE_OPTIONS = ("double_track", "harmony", "breath_db", "speech_rate_wpm", *SOURCE_OPTIONS,
                       *KOKORO_OPTIONS, *KOKORO_PROFILE_OPTIONS)
ESPEAK_PITCH_RANGE = 15  # espeak's intonation range for the spoken lines: flat speech analyses cleanly

# How the backing voice differs from the lead's options: another singer, not a copy of her.
BACKING_SEED = 3  # the backing take's seed: the request's seed + 3 (lead + 0, double + 1, harmony + 2)
BACKING_VOICE = {"formant_shift": 1.05, "breathiness": 0.25, "vibrato_depth_cents": 0.5, "drift_cents": 1.6}


def backing_options(opts: dict) -> dict:
    """The lead's options turned into the backing voice's: formants and breath moved, vibrato
    shallower, drift wider (BACKING_VOICE: shifts are factors or added air), within the option ranges."""
    lo, hi = _OPTION_RANGES["formant_shift"]
    return {**opts,
            "formant_shift": min(max(opts["formant_shift"] * BACKING_VOICE["formant_shift"], lo), hi),
            "breathiness": min(opts["breathiness"] + BACKING_VOICE["breathiness"], 1.0),
            "vibrato_depth_cents": opts["vibrato_depth_cents"] * BACKING_VOICE["vibrato_depth_cents"],
            "drift_cents": opts["drift_cents"] * BACKING_VOICE["drift_cents"]}


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
    # everything besides the text that decides the speech (program versions, voice, settings):
    # part of the line cache's key; None: its lines are not cached
    identity: str | None = None


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
    identity = json.dumps(["espeak", espeak.version(), voice, text, rate, ESPEAK_PITCH_RANGE])
    return Speaker("espeak", voice, espeak.sample_rate(), ANALYSIS_F0[request.voice],
                   lambda line: espeak.speak(line, voice, rate_wpm=rate, pitch_range=ESPEAK_PITCH_RANGE),
                   identity=identity)


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
    import onnxruntime  # loaded by load_voice; its version is part of what the voice says

    identity = json.dumps(["piper", voice.sha256, voice.language, voice.noise_scale, voice.length_scale,
                           voice.noise_w, sorted(voice.phoneme_id_map.items()), espeak.version(),
                           onnxruntime.__version__])
    # Piper voices speak with their own natural pitch, male or female: search widely
    return Speaker("piper", Path(model).name, voice.sample_rate, (60.0, 500.0),
                    lambda line: piper.speak(line, voice), info, identity)


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


# --- the spoken lines ---------------------------------------------------------------------------
class _Lines:
    """The spoken lines of one render, each spoken and analysed at most once.

    `add` (on the render's thread, in line order) takes a line from the line cache or speaks it
    and analyses it on the pool while the next line is spoken; `spoken` gives a line's small
    SpokenLine; `analyses` the full WORLD analyses of the lines a phrase to sing needs, a
    cached line spoken and analysed again only then. Speaking is serialised by a lock (the
    speech source keeps global state); the analysis has no randomness, so it is the same
    whichever way it was made.
    """

    def __init__(self, speaker: Speaker, pool: Executor | None, folder: Path | None):
        self.speaker, self.pool = speaker, pool
        self.folder = folder
        self.texts: dict[str, tuple[int, list[str]]] = {}  # key -> (first lyric line, words spoken)
        self.light: dict[str, SpokenLine] = {}
        self.full: dict[str, Future] = {}
        self.from_cache = 0
        self._lock = threading.Lock()

    def key(self, texts: list[str]) -> str:
        text = json.dumps([VERSION, self.speaker.name, self.speaker.identity, self.speaker.sample_rate,
                           self.speaker.f0_range, texts])
        return hashlib.sha256(text.encode()).hexdigest()

    def add(self, line: int, texts: list[str]) -> str:
        """The key of lyric line `line` spoken as the words `texts` (a repeated line: the same key)."""
        key = self.key(texts)
        if key in self.texts:
            return key
        self.texts[key] = (line, texts)
        cached = self._load(key)
        if cached is not None:
            self.light[key] = cached
            self.from_cache += 1
        else:
            with self._lock:
                self.full[key] = self._start(key)
        return key

    def spoken(self, key: str) -> SpokenLine:
        if key not in self.light:
            self.light[key] = SpokenLine.of(key, self.full[key].result())
            self._store(self.light[key])
        return self.light[key]

    def analyses(self, keys: Iterable[str]) -> dict[str, Analysis]:
        keys = sorted(set(keys))
        with self._lock:  # lines from the cache that a phrase to sing needs: spoken again, one at a time
            for key in keys:
                if key not in self.full:
                    self.full[key] = self._start(key)
        return {key: self.full[key].result() for key in keys}

    def _start(self, key: str) -> Future:
        """Speak the line now (the caller holds the lock) and analyse it on the pool."""
        line, texts = self.texts[key]
        try:
            spoken = _speak_words(texts, self.speaker)
        except espeak.EspeakError as exc:
            said = " ".join(texts)
            raise RenderError(f"singer: {self.speaker.name} failed on line {line} ({said!r}): {exc}") from exc
        if self.pool is not None:
            return self.pool.submit(analyse_line, *spoken, self.speaker.f0_range)
        done: Future = Future()
        done.set_result(analyse_line(*spoken, self.speaker.f0_range))
        return done

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / "lines" / key[:2] / f"{key}.npz"

    def _load(self, key: str) -> SpokenLine | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            return line_from_file(path, key)
        except (ValueError, TypeError, OSError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged entry
            return None  # spoken again and replaced

    def _store(self, line: SpokenLine) -> None:
        path = self._path(line.key)
        if path is not None:
            publish(path, lambda handle: line_to_file(line, handle))


def _attach_sources(score: Score, units: list[Unit], lines: _Lines) -> list[dict]:
    """Speak each lyric line once (or take it from the line cache) and give every unit its source
    frames. Returns the words whose espeak vowel count differed from their sung syllable count.
    """
    by_line: dict[int, list[int]] = {}
    for u in units:
        words = by_line.setdefault(u.line, [])
        if u.word not in words:
            words.append(u.word)
    spoken = []  # (line, word ids, cleaned texts, key)
    for line, word_ids in by_line.items():
        texts = [clean_word(word_text(score, units, w)) for w in word_ids]
        spoken.append((line, word_ids, texts, lines.add(line, texts)))
    mismatches = []
    for line, word_ids, texts, key in spoken:
        said = lines.spoken(key)
        for slots in spoken_words(said.words):
            word_units = [u for u in units if u.line == line and u.word in {word_ids[k] for k in slots}]
            phones = said.words[slots[0]]
            if not phones:
                continue  # espeak said nothing for it: those notes stay silent
            groups, found = syllable_groups(phones, len(word_units))
            if found != len(word_units):
                text = " ".join(texts[k] for k in slots)
                mismatches.append({"word": text, "espeak_vowels": found, "sung_syllables": len(word_units)})
            for u, g in zip(word_units, groups):
                u.source = source_of(g, phones, said)
    return mismatches


# --- the engine ---------------------------------------------------------------------------------
class Singer(VocalEngine):
    """espeak-ng + WORLD singing synthesis; no trained weights."""

    info: ClassVar[EngineInfo] = EngineInfo(
        name="singer",
        kind="vocals",
        version=VERSION,
        model=_espeak_model(),
        licence="GPL-3.0-or-later (espeak-ng data); WORLD: modified BSD",
        generator="algorithmic",
    )

    def render(self, score: Score, request: VocalRequest) -> VocalResult:
        """Sing `score`: stereo stems score.total_frames(rate) long, each peaking at PEAK_DBFS.

        Stems: `lead`, plus `lead_double` and `harmony` when those options are on, and
        `backing_vocals` when the score has a backing part.
        """
        speaker, opts = _check_request(request)
        # one pool for the whole render: the lines' WORLD analysis, then every phrase of
        # every take (WORLD releases the GIL, so threads keep all cores busy)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return self._render(score, request, speaker, opts, pool)

    def _render(self, score: Score, request: VocalRequest, speaker: Speaker, opts: dict,
                pool: Executor) -> VocalResult:
        folder = _cache_folder(request, speaker)
        lines = _Lines(speaker, pool, folder)
        units, mismatches = _sourced_units(score, lines)
        fs = speaker.sample_rate
        takes = {"lead": (units, opts, request.seed)}
        if opts["double_track"]:
            # a second take: its own vibrato, drift and breath noise, a slightly different
            # vocal tract and timing a few ms apart, as a singer's double is
            double = {**opts, "formant_shift": opts["formant_shift"] * 1.015, "drift_cents": opts["drift_cents"] + 3.0}
            doubled = [u for u in units if u.line in chorus_lines(score)] if opts["double_track"] == "chorus" else units
            takes["lead_double"] = (double_take(doubled, request.seed, PHRASE_GAP_S), double, request.seed + 1)
        if opts["harmony"]:
            takes["harmony"] = (harmony_take(score, units), opts, request.seed + 2)
        backing_units: list[Unit] = []
        if score.backing_notes:  # the backing part sung as a score of its own: its words, its notes
            backing_units, backing_mismatches = _sourced_units(backing_part(score), lines)
            mismatches += backing_mismatches
            takes["backing_vocals"] = (backing_units, backing_options(opts), request.seed + BACKING_SEED)

        def sing_take(name: str) -> tuple[Audio, float, _Sung]:
            take_units, take_opts, seed = takes[name]
            return _sing_take(score, take_units, take_opts, _Take(name, seed, lines, pool, folder), fs,
                              request.sample_rate)

        # each take waits on its own thread for its phrases (sung on the shared pool) and
        # then resamples while the other takes' phrases are still being sung; each take has
        # its own units and seed, each phrase its own random streams, so the result does
        # not depend on the order
        with ThreadPoolExecutor(max_workers=len(takes)) as takers:
            sung = dict(zip(takes, takers.map(sing_take, takes)))
        stems = {name: stem for name, (stem, _, _) in sung.items()}
        peaks = {name: peak for name, (_, peak, _) in sung.items()}
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
            "phrases": {name: s.phrases for name, (_, _, s) in sung.items()},
            "phrases_from_cache": sum(s.from_cache for _, _, s in sung.values()),
            "lines_spoken": len(lines.full),
            "lines_from_cache": lines.from_cache,
            "sung_syllables": len(syllables),
            "notes": len(score.notes),
            "backing_notes": len(score.backing_notes),
            "backing_sung_syllables": len(backing_units),
            "peak_dbfs": {name: PEAK_DBFS if peak > 0 else None for name, peak in peaks.items()},
            "vowel_count_mismatches": mismatches,
            "options": {k: v for k, v in opts.items() if k not in KOKORO_PROFILE_OPTIONS},
            "options_not_used": sorted(k for k in opts if k in KOKORO_OPTIONS or k in KOKORO_PROFILE_OPTIONS),
        }
        return VocalResult(stems=stems, syllables=syllables, details=details, engine_info=speaker.engine_info)


def sing_backing(score: Score, request: VocalRequest) -> Audio:
    """The score's backing-vocal part alone, sung by this engine's backing voice from espeak-ng's
    speech: the stem `backing_vocals` for a vocal engine that sings only the lead (diffsinger).
    Only the singer's own options of `request` are used; its phrases share the singer's caches."""
    own = {k: v for k, v in request.options.items() if k in DEFAULT_OPTIONS}
    speaker, opts = _check_request(replace(request, options=own))
    folder = _cache_folder(request, speaker)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        lines = _Lines(speaker, pool, folder)
        units, _ = _sourced_units(backing_part(score), lines)
        take = _Take("backing_vocals", request.seed + BACKING_SEED, lines, pool, folder)
        return _sing_take(score, units, backing_options(opts), take, speaker.sample_rate, request.sample_rate)[0]


def _sourced_units(score: Score, lines: _Lines) -> tuple[list[Unit], list[dict]]:
    """The score's sung units that have source frames in their spoken lines, and the vowel count
    mismatches (_attach_sources)."""
    units = sung_units(score)
    mismatches = _attach_sources(score, units, lines)
    return [u for u in units if u.source is not None], mismatches


def _sing_take(score: Score, units: list[Unit], opts: dict, take: _Take, fs: int, rate: int
               ) -> tuple[Audio, float, _Sung]:
    """One take of `score` sung into its stem (_finish: the stem and its peak before normalisation)."""
    buffer = np.zeros(int(np.ceil(score.total_seconds * fs)) + fs)  # mono, at the analysis rate
    sung = _sing(units, buffer, fs, opts, take)
    return (*_finish(buffer, fs, rate, score.total_frames(rate)), sung)


def _cache_folder(request: VocalRequest, speaker: Speaker) -> Path | None:
    """Where the singer keeps its lines and phrases: a folder of its own in the reuse dir. None
    (nothing kept) without a reuse dir or for a speech source that cannot say what decides its
    speech (Speaker.identity): its lines' keys could not tell two voices apart."""
    if request.reuse_dir is None or speaker.identity is None:
        return None
    return Path(request.reuse_dir) / "singer"


def _json_value(value):  # numpy scalars in the keys (frame indices, pitches) as plain numbers
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _frames_of(u: Unit) -> list:
    """What a unit sings from: its spoken line's key and its frame ranges there."""
    s = u.source
    return [s.line, s.onset, s.head, s.core, s.tail, s.coda]


@dataclass(frozen=True)
class _Take:
    """How one take is sung: its name and seed, the render's spoken lines, the thread pool its
    phrases share (or None) and the singer's cache folder (or None: no phrase cache).

    Every phrase draws from its own random streams (pitch; breath), derived from the seed, the
    take and what the phrase sings (its syllables, their pitches and times relative to its
    start), never from its index or an earlier phrase: a phrase sounds the same whichever
    thread sings it, and a lyric edit elsewhere leaves it and its cache entry alone.
    """

    name: str
    seed: int
    lines: _Lines
    pool: Executor | None = None
    folder: Path | None = None

    def rng(self, phrase: list[Unit], purpose: int) -> np.random.Generator:
        """The stream of `phrase` for `purpose` (1: pitch, 2: breath)."""
        t0 = phrase[0].start
        sings = [[*_frames_of(u), [[round(a - t0, 4), round(b - t0, 4), m] for a, b, m in u.pitches]] for u in phrase]
        text = json.dumps([self.name, sings], default=_json_value)
        return np.random.default_rng([self.seed, int(hashlib.sha256(text.encode()).hexdigest()[:12], 16), purpose])

    def path(self, phrase: list[Unit], fs: int, opts: dict) -> Path | None:
        """The phrase cache entry of `phrase`: keyed on every input of its samples (placement and
        pitches exactly, as floats; the spoken lines by their keys), or None without a cache."""
        if self.folder is None:
            return None
        placed = [[*_frames_of(u), u.onset_start, u.start, u.vowel_end, u.coda_end, u.pitches] for u in phrase]
        synthesis = {k: v for k, v in sorted(opts.items()) if k not in _NOT_PHRASE_OPTIONS}
        text = json.dumps([VERSION, fs, self.name, self.seed, synthesis, placed], default=_json_value)
        key = hashlib.sha256(text.encode()).hexdigest()
        return self.folder / "phrases" / key[:2] / f"{key}.npy"


class _Sung(NamedTuple):
    phrases: int  # phrases in the take
    from_cache: int  # of them, taken from the phrase cache


def _sing(units: list[Unit], buffer: np.ndarray, fs: int, opts: dict, take: _Take) -> _Sung:
    """Place, synthesise and add every phrase (and the breaths before them) into `buffer`.

    Phrases in the phrase cache are taken from it; the rest are synthesised (on the take's
    pool, longest first: WORLD releases the GIL) as float32, as the cache keeps them, and
    stored. All are added into `buffer` in time order whatever order they finish in, so the
    sum is the same run to run, cached or not.
    """
    if not units:
        return _Sung(0, 0)
    place_units(units)
    phrases = split_phrases(units)
    paths = [take.path(phrase, fs, opts) for phrase in phrases]
    audio = [load_samples(path) for path in paths]
    missing = [k for k, y in enumerate(audio) if y is None]
    analyses = take.lines.analyses(u.source.line for k in missing for u in phrases[k])

    def sing(k: int) -> np.ndarray:
        y = sing_phrase(phrases[k], fs, opts, take.rng(phrases[k], 1), analyses)[1].astype(np.float32)
        if paths[k] is not None:
            store_samples(paths[k], y)
        return y

    if take.pool is None:
        for k in missing:
            audio[k] = sing(k)
    else:
        longest_first = sorted(missing, key=lambda k: phrases[k][0].onset_start - phrases[k][-1].coda_end)
        futures = {k: take.pool.submit(sing, k) for k in longest_first}
        for k in missing:
            audio[k] = futures[k].result()
    for k, phrase in enumerate(phrases):
        gap_before = phrase[0].onset_start - (phrases[k - 1][-1].coda_end if k else 0.0)
        breath = breath_before(fs, phrase[0].onset_start, gap_before, opts, take.rng(phrase, 2))
        for start, y in [(phrase_start(phrase, fs), audio[k])] + ([breath] if breath is not None else []):
            end = min(start + len(y), len(buffer))
            if end > start:
                buffer[start:end] += y[: end - start]
    return _Sung(len(phrases), len(phrases) - len(missing))


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
