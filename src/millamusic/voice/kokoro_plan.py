"""The kokoro engine's phrase planning: sung syllables cut into phrases, and for each phrase a *plan*
on Kokoro's 25 ms frame grid.

Every vowel starts on its note, onset consonants before it at their natural length (from
Kokoro's own duration predictor, squeezed together in fast passages), the coda at the note's
end, melismas held; an F0 curve from the notes with portamento, delayed vibrato and drift (zero
only in the lead-in and rests), lowered under the voice's clean ceiling with the shift back up
alongside; and an energy curve from Kokoro's prosody predictor, held through each vowel (a
stretched vowel otherwise fades). A phrase's audio depends only on its plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from millamusic.music.theory import midi_to_hz
from millamusic.voice import kokoro_model
from millamusic.voice.kokoro_model import HALF_S
from millamusic.voice.kokoro_symbols import Syllable
from millamusic.voice.melody import drift, vibrato

FRAME_S = kokoro_model.FRAME_S  # 25 ms: one duration frame
LEAD_FRAMES = 20  # Kokoro keeps the first 0.3-0.5 s of an utterance silent: sung over, then trimmed
TAIL_FRAMES = 4  # the closing pad: room for the last consonant to ring out
VOWEL_DELAY_FRAMES = 2  # vowels are heard ~35 ms before their token starts (smooth C-V transitions): measured
MIN_VOWEL_SHARE = 0.7  # of a note that the vowel keeps when consonants crowd it (0.5: 7 points fewer notes voiced)
MAX_CONSONANT_FRAMES = 5  # a consonant keeps its natural length up to 125 ms
PHRASE_GAP_S = 1.0  # a rest longer than this starts a new phrase (longer phrases: more words understood)
MAX_PHRASE_SYMBOLS = kokoro_model.MAX_TOKENS - 2  # two pads around every phrase


def split_phrases(syllables: list[Syllable]) -> list[list[Syllable]]:
    """Cut at rests longer than PHRASE_GAP_S and before the token limit.

    Measured (bench/vocals.py, words understood per line): phrases cut at every 0.3 s rest, or
    one per lyric line, were understood 13-15 points worse than phrases that run across
    the short rests between lines: Kokoro speaks the start of an utterance least clearly.
    """
    phrases: list[list[Syllable]] = []
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
class Plan:
    """Everything the decoder is given for one phrase; its audio depends on nothing else."""

    symbols: tuple[str, ...]  # without the two pads
    durations: tuple[int, ...]  # frames per token, pads included
    f0: tuple[float, ...]  # Hz per half frame as sung (already lowered under the ceiling), 0 unvoiced
    shift: tuple[float, ...]  # semitones per half frame the sung audio is moved up afterwards
    holds: tuple[tuple[int, int], ...]  # half-frame spans whose energy is held (vowels)
    rests: tuple[tuple[int, int], ...]  # half-frame spans that are silent
    origin: float  # song seconds of the first sample after the lead is trimmed

    def key(self, version: str, voice_sha: str, method: str) -> str:
        """The phrase cache's key: every input of the decoder and of the shift (`version`: the
        engine's, so a new engine sings every phrase again)."""
        text = json.dumps([version, kokoro_model.model_sha256(), voice_sha, method, self.symbols, self.durations,
                           np.round(self.f0, 3).tolist(), np.round(self.shift, 4).tolist(), self.holds, self.rests])
        return hashlib.sha256(text.encode()).hexdigest()


def phrase_tokens(phrase: list[Syllable]) -> tuple[list[str], list[dict[str, list[int]]]]:
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


def plan_phrase(phrase: list[Syllable], tokens: list[str], parts: list[dict[str, list[int]]], natural: np.ndarray,
          opts: dict, rng: np.random.Generator, ceiling: int | None) -> tuple[Plan, list[tuple[float, float]]]:
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


def _curves(phrase: list[Syllable], tokens: list[str], parts: list[dict[str, list[int]]], frames: np.ndarray,
            origin: float, opts: dict, rng: np.random.Generator, ceiling: int | None,
            rests: list[tuple[int, int]]) -> tuple[Plan, list[tuple[float, float]]]:
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
    plan = Plan(tuple(tokens), tuple(int(f) for f in frames), tuple(np.round(f0, 4).tolist()),
                 tuple(np.round(over, 5).tolist()), holds, half_rests, origin + int(frames[0]) * FRAME_S)
    sung = []
    for mine in parts:
        ids = sorted(i for group in mine.values() for i in group)
        sung.append((origin + edge[ids[0] + 1] * HALF_S, origin + edge[ids[-1] + 2] * HALF_S))
    return plan, sung


def hold_energy(energy: np.ndarray, plan: Plan) -> np.ndarray:
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


def phrase_seed(seed: int, take: str, phrase: list[Syllable], tokens: list[str]) -> np.random.Generator:
    """A phrase's random stream from what it sings, not where it stands: inserting a line does
    not change the vibrato of every later phrase (and so their cache entries)."""
    text = json.dumps([take, tokens, [[round(a - phrase[0].start, 4), round(b - phrase[0].start, 4), m]
                                      for syl in phrase for a, b, m in syl.pitches]])
    return np.random.default_rng([seed, int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)])
