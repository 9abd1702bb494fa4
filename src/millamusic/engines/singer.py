"""The embedded `singer` vocal engine: espeak-ng speaks the lyrics, WORLD makes them sing.

How a song is sung:

1. Each lyric line is spoken once by espeak-ng with a private, echo-free voice variant.
   espeak reports word and phoneme events in order; phonemes are given to words by
   that order (never by sample position) and split into one group per sung syllable:
   onset consonants + vowel nucleus + coda.
2. The spoken audio is analysed with WORLD (DIO + StoneMask f0, CheapTrick envelope,
   D4C aperiodicity) at espeak's rate, 5 ms frames.
3. Every syllable is re-timed on the 5 ms grid: onset consonants just before the beat so
   the vowel lands on it, the vowel's steady core stretched to the note, the coda at
   the end of the note. Consonants keep their natural length unless a fast passage
   forces them shorter.
4. f0 is replaced by the note pitches with portamento, delayed vibrato and slow drift;
   WORLD resynthesises each phrase, each syllable is levelled, and the song-long
   buffer is resampled to the requested rate.

Frame arrays below are indexed by 5 ms WORLD frames; `sp` and `ap` are
(frames, fft_size // 2 + 1) float64 as pyworld returns them.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from millamusic import espeak
from millamusic.audio import Audio, fade_edges, resample
from millamusic.engines.base import EngineInfo, SungSyllable, VocalEngine, VocalRequest, VocalResult
from millamusic.engines.melody import chorus_lines, double_take, drift, note_groups, vibrato, word_text
from millamusic.engines.syllables import Group as _Group
from millamusic.engines.syllables import Phone as _Phone
from millamusic.engines.syllables import clean_word as _clean_word
from millamusic.engines.syllables import phones_per_word, spoken_words, syllable_groups, third_above
from millamusic.errors import RenderError
from millamusic.score import Score
from millamusic.theory import midi_to_hz

FRAME_S = 0.005  # WORLD frame period
FRAME_MS = FRAME_S * 1000.0
PEAK_DBFS = -6.0  # the lead stem is normalised to this peak: headroom for the mix
SYLLABLE_RMS = 0.1  # every syllable's vowel is levelled towards this RMS before the peak normalisation
PHRASE_GAP_S = 0.3  # a silence longer than this between syllables starts a new synthesis phrase

# Voice variants written into espeak's private data dir. Based on f3/f4 (female) and
# m3 (male) formants, but without echo (the 120-140 ms echo of f2-f5 smears WORLD's
# analysis), flutter, roughness or breath noise (WORLD's aperiodicity handles that).
_VARIANTS = {
    "female": (
        "milla_f",
        """language variant
name milla_female
gender female

pitch 175 215
formant 0 110  80 150
formant 1 118  78 155 -35
formant 2 132  72 150 -220
formant 3 124  78 150
formant 4 125  80 150
formant 5 125  80 150
formant 6 115  75 150
formant 7 110  72 150
formant 8 110  72 150
stressAmp 18 18 20 20 20 20 20 20
echo 0 0
flutter 0
roughness 0
breath 0
""",
    ),
    "male": (
        "milla_m",
        """language variant
name milla_male
gender male

pitch 100 125
formant 0 100 100 100
formant 1  96  97 100
formant 2  96  97 100
formant 3  96 103 100
formant 4  95 103 100
formant 5  95 103 100
formant 6 100 100 100
formant 7 100 100 100
formant 8 100 100 100
echo 0 0
flutter 0
roughness 0
breath 0
""",
    ),
}
# f0 search range for analysing the spoken voice (Hz), per voice
_ANALYSIS_F0 = {"female": (100.0, 500.0), "male": (60.0, 300.0)}

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


# --- the score side: notes grouped into sung syllables -----------------------------------
@dataclass
class _Unit:
    """One sung syllable: a note with text plus any melisma ('') notes after it."""

    notes: list[int]  # indices into score.notes, time order
    word: int  # index into score.words (or -1)
    line: int
    start: float  # seconds: the beat the vowel lands on
    end: float  # seconds: end of the last note (clipped at the next unit's start)
    pitches: list[tuple[float, float, int]]  # (start_s, end_s, midi) per note
    source: _Source | None = None
    # placement, seconds (filled by _place)
    onset_s: float = 0.0
    coda_s: float = 0.0
    onset_start: float = 0.0
    vowel_end: float = 0.0
    coda_end: float = 0.0


@dataclass
class _Source:
    """Where one syllable comes from in a spoken line: frame ranges into `analysis`."""

    analysis: _Analysis
    onset: tuple[int, int]  # consonants sung before the beat
    head: tuple[int, int]  # vowel start up to the steady core (natural speed)
    core: tuple[int, int]  # the steady part of the vowel: stretched to fill the note
    tail: tuple[int, int]  # rest of the nucleus after the core (natural speed)
    coda: tuple[int, int]  # consonants after the vowel, sung at the end of the note



@dataclass
class _Analysis:
    """WORLD features of one spoken line plus its phones per word."""

    f0: np.ndarray  # (frames,) Hz, 0 where unvoiced
    sp: np.ndarray  # (frames, bins) spectral envelope (power)
    ap: np.ndarray  # (frames, bins) aperiodicity 0..1
    vowel: np.ndarray  # (frames,) bool: frame lies inside a vowel phone
    ap_voiced: np.ndarray  # (bins,) median aperiodicity of voiced vowel frames
    words: list[list[_Phone]] = field(default_factory=list)  # phones per spoken word

    @property
    def level_db(self) -> np.ndarray:
        """(frames,) envelope power in dB."""
        return 10 * np.log10(self.sp.sum(axis=1) + 1e-30)


def _units(score: Score) -> list[_Unit]:
    """Group the notes into sung syllables, in time order."""
    return [_Unit(group, score.notes[group[0]].word_index, score.notes[group[0]].line_index, start, end, pitches)
            for group, start, end, pitches in note_groups(score, FRAME_S)]


# --- the speech side: espeak + WORLD -------------------------------------------------------
def _speak_words(words: list[str], speaker: _Speaker) -> tuple[espeak.Utterance, list[tuple[int, int]]]:
    """Speak `words` as one line: the utterance and each word's character span in the text.

    The espeak binding keeps global state: call this from one thread at a time.
    """
    text_parts, spans, pos = [], [], 0
    for word in words:
        spans.append((pos, pos + len(word)))
        text_parts.append(word)
        pos += len(word) + 1
    return speaker.speak(" ".join(text_parts)), spans


def _analyse_line(utt: espeak.Utterance, spans: list[tuple[int, int]], f0_range: tuple[float, float]) -> _Analysis:
    """WORLD analysis of a spoken line; every word gets its phones by event order.

    No randomness and no shared state (pyworld releases the GIL): lines may be analysed
    side by side on threads.
    """
    import pyworld

    x = utt.samples.astype(np.float64)
    if len(x) < utt.sample_rate // 10:
        x = np.concatenate([x, np.zeros(utt.sample_rate // 10 - len(x))])
    fs = utt.sample_rate
    f0, t = pyworld.dio(x, fs, f0_floor=f0_range[0], f0_ceil=f0_range[1], frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, t, fs)
    # CheapTrick's window follows f0; bridging unvoiced gaps keeps vowel edges consistent
    fft_size = pyworld.get_cheaptrick_fft_size(fs, f0_range[0])  # sp and ap must share it
    sp = _fill_valleys(pyworld.cheaptrick(x, _bridge_f0(f0), t, fs, f0_floor=f0_range[0], fft_size=fft_size), fs)
    # threshold 0: no D4C voicing decision, DIO's f0 decides; vowels are fixed up below
    ap = pyworld.d4c(x, f0, t, fs, threshold=0.0, fft_size=fft_size)
    n_frames = len(f0)
    words_phones = phones_per_word(utt, spans, n_frames, FRAME_S)
    vowel = np.zeros(n_frames, dtype=bool)
    for phones in words_phones:
        for ph in phones:
            if ph.is_vowel:
                vowel[ph.start : ph.end] = True
    voiced_vowel = vowel & (f0 > 0)
    ap_voiced = np.median(ap[voiced_vowel], axis=0) if voiced_vowel.any() else np.full(ap.shape[1], 0.05)
    # vowel frames that DIO found unvoiced would be sung as noise: give them a typical
    # voiced aperiodicity (their envelope is fine)
    ap[vowel & (f0 <= 0)] = ap_voiced
    return _Analysis(f0, sp, ap, vowel, ap_voiced, words_phones)


def _fill_valleys(sp: np.ndarray, fs: int) -> np.ndarray:
    """Limit how deep the envelope falls between formants. Shape (frames, bins).

    espeak's formant synthesiser leaves valleys 60-70 dB deep (an 'ee' between F1 and
    F2); a human voice has 30-40. The floor is 35 dB under the frame's peak at 500 Hz
    and falls 12 dB per octave above, so the natural high-frequency roll-off stays.
    """
    freqs = np.linspace(0.0, fs / 2, sp.shape[1])
    floor_db = -35.0 - 12.0 * np.log2(np.maximum(freqs, 500.0) / 500.0)
    return np.maximum(sp, sp.max(axis=1, keepdims=True) * 10 ** (floor_db / 10)[None, :])


def _bridge_f0(f0: np.ndarray) -> np.ndarray:
    """f0 with unvoiced frames filled by linear interpolation (for CheapTrick only)."""
    voiced = np.flatnonzero(f0 > 0)
    if len(voiced) == 0:
        return np.full_like(f0, 200.0)
    return np.interp(np.arange(len(f0)), voiced, f0[voiced])


def _source_of(group: _Group, phones: list[_Phone], analysis: _Analysis) -> _Source:
    """Frame ranges of a syllable group; the core is the steady part of the main vowel."""
    main = phones[group.main]
    length = main.end - main.start
    if main.vowel_letters >= 2:  # a diphthong is held on its first target, as singers do
        core0 = main.start + int(np.floor(0.15 * length))
        core1 = main.start + int(np.ceil(0.45 * length))
    else:  # the loudest half between 10 % and 90 %: spoken vowels often fade at the end
        width = max(int(round(0.5 * length)), 1)
        first, last = main.start + int(0.1 * length), main.start + int(0.4 * length)
        level = analysis.level_db[main.start : main.end]
        sums = np.convolve(level, np.ones(width), mode="valid")[first - main.start : last - main.start + 1]
        core0 = first + int(np.argmax(sums)) if len(sums) else main.start
        core1 = core0 + width
    core1 = min(max(core1, core0 + 1), main.end)
    core0 = min(core0, core1 - 1)
    n_start, n_end = phones[group.n0].start, phones[group.n1 - 1].end
    onset_start = phones[group.o].start if group.o < group.n0 else n_start
    coda_end = phones[group.c - 1].end if group.c > group.n1 else n_end
    return _Source(
        analysis, (onset_start, n_start), (n_start, core0), (core0, core1), (core1, n_end), (n_end, coda_end)
    )


# --- timing ---------------------------------------------------------------------------------
def _place(units: list[_Unit]) -> None:
    """Decide onset start, vowel end and coda end (seconds) of every unit.

    The vowel lands on the beat, so a syllable's onset consonants take time from the
    previous note. Each note keeps at least half its length (or 60 ms) of vowel; where
    the consonants do not fit they are shortened together.
    """
    for u in units:
        src = u.source
        u.onset_s = min((src.onset[1] - src.onset[0]) * FRAME_S, 0.35)
        u.coda_s = min((src.coda[1] - src.coda[0]) * FRAME_S, 0.35)
    min_vowel = [min(max(0.06, 0.5 * (u.end - u.start)), u.end - u.start) for u in units]
    units[0].onset_s = min(units[0].onset_s, units[0].start)
    for k in range(len(units) - 1):
        u, nxt = units[k], units[k + 1]
        budget = max(nxt.start - u.start - min_vowel[k], 0.0)
        need = u.coda_s + nxt.onset_s
        if need > budget:
            u.coda_s *= budget / need
            nxt.onset_s *= budget / need
        u.coda_s = min(u.coda_s, max(u.end - u.start - min_vowel[k], 0.0))
    for k, u in enumerate(units):
        u.onset_start = u.start - u.onset_s
        release = min(u.end, units[k + 1].start - units[k + 1].onset_s) if k + 1 < len(units) else u.end
        u.vowel_end = max(release - u.coda_s, u.start + FRAME_S)
        u.coda_end = u.vowel_end + u.coda_s


def _phrases(units: list[_Unit]) -> list[list[_Unit]]:
    """Split the units where the voice is silent for longer than PHRASE_GAP_S."""
    phrases: list[list[_Unit]] = []
    for u in units:
        if phrases and u.onset_start - phrases[-1][-1].coda_end <= PHRASE_GAP_S:
            phrases[-1].append(u)
        else:
            phrases.append([u])
    return phrases


# --- frames of one phrase ---------------------------------------------------------------------
def _linear_positions(count: int, span: tuple[int, int]) -> np.ndarray:
    """`count` source positions spread evenly over the frame range `span`."""
    a, b = span
    if count <= 0:
        return np.zeros(0)
    if b <= a:
        return np.full(count, float(a))
    return np.clip(a + (np.arange(count) + 0.5) * (b - a) / count - 0.5, a, b - 1)


def _vowel_positions(count: int, src: _Source) -> tuple[np.ndarray, np.ndarray]:
    """Source positions for the vowel (head, stretched core, tail) and a core mask."""
    head, tail = src.head[1] - src.head[0], src.tail[1] - src.tail[0]
    core_min = src.core[1] - src.core[0]
    if count < head + tail + core_min:  # short note: play the whole nucleus faster
        pos = _linear_positions(count, (src.head[0], src.tail[1]))
        return pos, np.zeros(count, dtype=bool)
    core_n = count - head - tail
    pos = np.concatenate(
        [
            np.arange(src.head[0], src.head[1], dtype=float),
            # slow motion through the core: looping it back and forth was tried and makes
            # moving vowels (diphthongs, r-coloured vowels) wobble audibly
            _linear_positions(core_n, src.core),
            np.arange(src.tail[0], src.tail[1], dtype=float),
        ]
    )
    mask = np.zeros(count, dtype=bool)
    mask[head : head + core_n] = True
    return pos, mask


@dataclass
class _Frames:
    """Frame-wise features of one phrase, ready for pyworld.synthesize."""

    first: int  # absolute frame index of frame 0 (time = first * FRAME_S)
    sp: np.ndarray  # (frames, bins)
    ap: np.ndarray  # (frames, bins)
    voiced: np.ndarray  # (frames,) bool
    units: list[tuple[int, int, int]]  # per unit, phrase-relative frames: onset start, beat, vowel end


def _to_frame(t: float) -> int:
    return int(round(t / FRAME_S))


def _phrase_frames(phrase: list[_Unit], bins: int) -> _Frames:
    """Lay out every unit's onset, vowel and coda frames on the phrase's frame grid."""
    first = max(_to_frame(phrase[0].onset_start) - 4, 0)
    layout = []  # per unit: onset start, beat, vowel end, coda end (phrase frames)
    for u in phrase:
        f_on, f_beat = _to_frame(u.onset_start) - first, _to_frame(u.start) - first
        f_vend = max(_to_frame(u.vowel_end) - first, f_beat + 1)
        layout.append((f_on, f_beat, f_vend, max(_to_frame(u.coda_end) - first, f_vend)))
    n = max(f_cend for *_, f_cend in layout) + 4
    sp = np.full((n, bins), 1e-16)
    ap = np.ones((n, bins))
    voiced = np.zeros(n, dtype=bool)
    for u, (f_on, f_beat, f_vend, f_cend) in zip(phrase, layout):
        src = u.source
        vowel_pos, core = _vowel_positions(f_vend - f_beat, src)
        pos = np.concatenate(
            [
                _linear_positions(f_beat - f_on, src.onset),
                vowel_pos,
                _linear_positions(f_cend - f_vend, src.coda),
            ]
        )
        forced = np.zeros(len(pos), dtype=bool)
        forced[f_beat - f_on : f_vend - f_on] = core  # the held core is always sung
        seg_sp, seg_ap, seg_voiced = _gather(src.analysis, pos, forced)
        vowel = np.zeros(len(pos), dtype=bool)
        vowel[f_beat - f_on : f_vend - f_on] = True
        seg_sp *= _level_gains(seg_sp, forced, vowel)[:, None]
        sp[f_on:f_cend], ap[f_on:f_cend], voiced[f_on:f_cend] = seg_sp, seg_ap, seg_voiced
    return _Frames(first, sp, ap, voiced, [(f_on, f_beat, f_vend) for f_on, f_beat, f_vend, _ in layout])


def _gather(an: _Analysis, pos: np.ndarray, forced: np.ndarray):
    """Interpolate the analysis at fractional frame positions.

    Returns sp, ap (len(pos), bins) and voiced (len(pos),). Frames inside a vowel (or
    `forced`) are voiced even where DIO found none (their aperiodicity was already
    fixed up in `_analyse_line`).
    """
    i0 = np.clip(np.floor(pos).astype(int), 0, len(an.f0) - 1)
    i1 = np.minimum(i0 + 1, len(an.f0) - 1)
    w = (pos - np.floor(pos))[:, None]
    log_sp = (1 - w) * np.log(an.sp[i0] + 1e-20) + w * np.log(an.sp[i1] + 1e-20)
    ap = (1 - w) * an.ap[i0] + w * an.ap[i1]
    nearest = np.clip(np.round(pos).astype(int), 0, len(an.f0) - 1)
    voiced = (an.f0[nearest] > 0) | an.vowel[nearest]
    ap[forced & ~voiced] = an.ap_voiced
    return np.exp(log_sp), ap, voiced | forced


def _level_gains(sp: np.ndarray, core: np.ndarray, vowel: np.ndarray) -> np.ndarray:
    """Per-frame power gains (shape (frames,)) for one syllable's frames.

    The stretched core is held at its mean level: spoken vowels swell and fade, which
    slowed down would sound as a tremolo. Nothing else in the syllable (consonants,
    vowel transitions) may be louder than that level: a spoken 'w' or a fading word-end
    vowel would otherwise come out louder than the sung note. `vowel` is the
    reference where the note is too short for a core.
    """
    level_db = 10 * np.log10(sp.sum(axis=1) + 1e-30)
    reference = core if core.any() else vowel
    target = float(np.mean(level_db[reference]))
    gain_db = np.where(core, np.clip(target - level_db, -12.0, 12.0), np.minimum(target + 1.0 - level_db, 0.0))
    width = 5
    smooth = np.convolve(np.pad(gain_db, width, mode="edge"), np.ones(width) / width, mode="same")[width:-width]
    return 10 ** (smooth / 10)


# --- pitch ------------------------------------------------------------------------------------
def _pitch_curve(phrase: list[_Unit], first: int, n: int, opts: dict, rng: np.random.Generator) -> np.ndarray:
    """f0 in Hz for each frame of a phrase: notes, portamento, vibrato and drift. Shape (n,)."""
    times = (first + np.arange(n)) * FRAME_S
    bounds, pitches = [], []
    for u in phrase:
        for k, (start, _end, midi) in enumerate(u.pitches):
            bounds.append(u.onset_start if k == 0 else start)  # voiced onsets already sing the new note
            pitches.append(float(midi))
    bounds = np.maximum.accumulate(bounds)  # an early onset may not undo a melisma note
    idx = np.clip(np.searchsorted(bounds, times, side="right") - 1, 0, len(pitches) - 1)
    semis = np.asarray(pitches)[idx]
    glide = max(int(round(opts["portamento_s"] / FRAME_S)), 1)
    if glide > 1:  # a Hann-weighted moving average turns each step into a smooth glide
        kernel = np.hanning(glide + 2)[1:-1]
        padded = np.pad(semis, (glide, glide), mode="edge")
        semis = np.convolve(padded, kernel / kernel.sum(), mode="same")[glide:-glide]
    notes = [(start, min(end, u.vowel_end)) for u in phrase for start, end, _midi in u.pitches]
    semis = semis + vibrato(notes, times, opts, rng) + drift(times, opts, rng) / 100.0
    return midi_to_hz(semis)  # plain arithmetic: works element-wise on arrays


# --- audio ------------------------------------------------------------------------------------
def _level_syllables(y: np.ndarray, frames: _Frames, fs: int) -> np.ndarray:
    """Even out the syllables of one phrase. `y` shape (samples,) at `fs`.

    Each syllable (from its onset to the next onset) is scaled so its vowel has RMS
    ~ SYLLABLE_RMS, and nothing in it (a vowel's attack, a loud consonant) may rise
    more than ~3 dB over that: a soft limiter. The gain curve is a running minimum then
    a running mean, so smoothing never lifts a point above the gain it needs.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    per_frame = fs * FRAME_S
    width = max(int(0.01 * fs), 1)
    # moving averages as running sums (the same windows as np.convolve(..., "same") with a
    # box, in O(n) rather than O(n * width)); a running sum may round a hair below 0
    envelope = np.sqrt(np.maximum(uniform_filter1d(y**2, width, mode="constant"), 0.0)) + 1e-9
    gains = np.ones(len(y))
    starts = [int(f_on * per_frame) for f_on, _, _ in frames.units] + [len(y)]
    for k, (_, f_beat, f_vend) in enumerate(frames.units):
        a, b = int(f_beat * per_frame), min(int(f_vend * per_frame), len(y))
        rms = float(np.sqrt(np.mean(y[a:b] ** 2))) if b > a else 0.0
        if rms < 1e-6:
            continue
        lo, hi = (0 if k == 0 else starts[k]), starts[k + 1]
        ceiling = 1.4 * rms
        gains[lo:hi] = np.clip(SYLLABLE_RMS / rms, 0.25, 4.0) * np.minimum(1.0, ceiling / envelope[lo:hi])
    gains = minimum_filter1d(gains, size=2 * width + 1)
    gains = uniform_filter1d(gains, size=2 * width + 1, mode="nearest")  # edge-padded running mean
    return y * gains


def _breath(fs: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A soft intake of breath: band-limited noise under a smooth swell. Shape (samples,)."""
    from scipy.signal import butter, sosfilt

    n = int(seconds * fs)
    noise = rng.standard_normal(n + 2048)
    sos = butter(2, [600.0, min(6000.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    shaped = sosfilt(sos, noise)[2048:]
    env = np.sin(np.pi * np.linspace(0, 1, n)) ** 2
    shaped = shaped * env
    rms = np.sqrt(np.mean(shaped**2)) + 1e-12
    return shaped / rms


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

    def _render(self, score: Score, request: VocalRequest, speaker: _Speaker, opts: dict,
                pool: Executor) -> VocalResult:
        units = _units(score)
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


def _sing(units: list[_Unit], buffer: np.ndarray, fs: int, opts: dict, streams: _Streams) -> list:
    """Place, synthesise and add every phrase (and the breaths before them) into `buffer`.

    With a pool in `streams` the phrases are synthesised on it, longest first (WORLD
    releases the GIL); they are added into `buffer` in time order whatever order they
    finish in, so the sum is the same run to run.
    """
    if not units:
        return []
    _place(units)
    phrases = _phrases(units)

    def sing(k: int) -> list[tuple[int, np.ndarray]]:
        phrase = phrases[k]
        gap_before = phrase[0].onset_start - (phrases[k - 1][-1].coda_end if k else 0.0)
        parts = [_sing_phrase(phrase, fs, opts, streams.rng(k, 1))]
        breath = _breath_before(fs, phrase[0].onset_start, gap_before, opts, streams.rng(k, 2))
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


@dataclass(frozen=True)
class _Speaker:
    """Where the spoken syllables come from: espeak-ng's own voice or a Piper voice."""

    name: str  # "espeak" | "piper"
    description: str  # for the release record, e.g. "en-us+milla_f" or the Piper model file
    sample_rate: int
    f0_range: tuple[float, float]  # f0 search range for analysing the spoken voice (Hz)
    speak: Callable[[str], espeak.Utterance]
    engine_info: EngineInfo | None = None  # what the credits name when it is not the embedded voice


def _check_request(request: VocalRequest) -> tuple[_Speaker, dict]:
    """Validate voice, language and options; return the speech source and options."""
    if request.voice not in _VARIANTS:
        raise RenderError(f"singer: unknown voice {request.voice!r}; valid voices: {', '.join(_VARIANTS)}")
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
    if opts["source"] not in ("espeak", "piper"):
        raise RenderError(f"singer: unknown speech source {opts['source']!r}; use espeak or piper")
    if opts["source"] == "piper":
        return _piper_speaker(opts["piper_model"]), opts
    name, text = _VARIANTS[request.voice]
    espeak.install_variant(name, text)
    voice = f"{language}+{name}"
    rate = int(opts["speech_rate_wpm"])
    return _Speaker("espeak", voice, espeak.sample_rate(), _ANALYSIS_F0[request.voice],
                    lambda line: espeak.speak(line, voice, rate_wpm=rate, pitch_range=15)), opts


def _piper_speaker(model: str | None) -> _Speaker:
    if not model:
        raise RenderError("singer: source piper needs a voice model. Fix: set voice.piper_model in the artist profile")
    from millamusic import piper

    voice = piper.load_voice(model)
    info = EngineInfo(name="singer", kind="vocals", version=Singer.info.version,
                      model=f"Piper voice {Path(model).name} (onnxruntime) + WORLD (pyworld)",
                      licence=f"voice: {voice.licence}; WORLD: modified BSD", generator="trained",
                      weights_hash=voice.sha256)
    # Piper voices speak with their own natural pitch, male or female: search widely
    return _Speaker("piper", Path(model).name, voice.sample_rate, (60.0, 500.0),
                    lambda line: piper.speak(line, voice), info)


def _attach_sources(score: Score, units: list[_Unit], speaker: _Speaker, pool: Executor | None = None) -> list[dict]:
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
        texts = [_clean_word(word_text(score, units, w)) for w in word_ids]
        lines.append((line, word_ids, texts, " ".join(texts)))
    analyses: dict[str, Future | _Analysis] = {}  # a repeated chorus line is spoken and analysed once
    for line, _word_ids, texts, key in lines:
        if key in analyses:
            continue
        try:
            spoken = _speak_words(texts, speaker)
        except espeak.EspeakError as exc:
            raise RenderError(f"singer: {speaker.name} failed on line {line} ({key!r}): {exc}") from exc
        if pool is None:
            analyses[key] = _analyse_line(*spoken, speaker.f0_range)
        else:
            analyses[key] = pool.submit(_analyse_line, *spoken, speaker.f0_range)
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
                u.source = _source_of(g, phones, analysis)
    return mismatches


def _sing_phrase(phrase: list[_Unit], fs: int, opts: dict, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Synthesise one phrase with WORLD: (start sample, mono samples), at the analysis rate."""
    import pyworld

    bins = phrase[0].source.analysis.sp.shape[1]
    frames = _phrase_frames(phrase, bins)
    f0 = _pitch_curve(phrase, frames.first, len(frames.voiced), opts, rng)
    f0 = np.where(frames.voiced, f0, 0.0)
    sp = _shift_formants(frames.sp, opts["formant_shift"])
    sp = _tune_first_formant(sp, f0, fs)
    ap = _add_breathiness(_shift_formants(frames.ap, opts["formant_shift"]), opts["breathiness"], fs)
    y = pyworld.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap), fs, FRAME_MS)
    y = fade_edges(_level_syllables(y, frames, fs), fs)
    return int(round(frames.first * FRAME_S * fs)), y


def _shift_formants(envelope: np.ndarray, factor: float) -> np.ndarray:
    """Stretch an envelope (frames, bins) along frequency: formants move by `factor`.

    A factor above 1 is a shorter vocal tract (a younger, brighter or more female voice),
    below 1 a longer one. The pitch is untouched: WORLD keeps f0 and envelope apart. Bins
    beyond the top of the source repeat its last bin.
    """
    if abs(factor - 1.0) < 1e-6:
        return envelope
    bins = envelope.shape[1]
    source = np.clip(np.arange(bins) / factor, 0, bins - 1)
    i0 = np.floor(source).astype(int)
    i1 = np.minimum(i0 + 1, bins - 1)
    w = (source - i0)[None, :]
    log_env = np.log(np.maximum(envelope, 1e-20))
    return np.exp((1 - w) * log_env[:, i0] + w * log_env[:, i1])


def _add_breathiness(ap: np.ndarray, amount: float, fs: int) -> np.ndarray:
    """Mix air into the voice: aperiodicity (frames, bins) raised towards 1, most above 2 kHz.

    `amount` 0 leaves the voice as analysed; 1 makes the top of the spectrum pure breath
    and the bottom a third breathy, so the pitch stays clear.
    """
    if amount <= 0:
        return ap
    freqs = np.linspace(0.0, fs / 2, ap.shape[1])
    weight = amount * (0.33 + 0.67 * np.clip((freqs - 500.0) / 1500.0, 0.0, 1.0))
    return 1.0 - (1.0 - ap) * (1.0 - weight[None, :])


def _tune_first_formant(sp: np.ndarray, f0: np.ndarray, fs: int) -> np.ndarray:
    """Raise the envelope around f0 where the note is above the vowel's first formant.

    Sung high, an 'ee' (F1 ~ 300 Hz) has no harmonic near its F1 and loses its
    fundamental; sopranos open the vowel so F1 follows f0. Here the strongest envelope
    level below f0 is moved up to a bell around f0 (3 dB down). Notes below F1 are
    left alone: there the envelope below f0 is lower than at f0. Shapes (frames, bins).
    """
    bins = sp.shape[1]
    hz_per_bin = fs / 2 / (bins - 1)
    k0 = f0 / hz_per_bin  # (frames,) fundamental in bins; 0 where unvoiced
    k = np.arange(bins)[None, :]
    below = k <= k0[:, None]
    lost = np.where(below, sp, 0.0).max(axis=1)  # (frames,) strongest level under f0
    width = np.maximum(0.35 * k0, 1.0)[:, None]
    bell = np.exp(-0.5 * ((k - k0[:, None]) / width) ** 2)
    lifted = np.maximum(sp, 0.5 * lost[:, None] * bell)
    return np.where((f0 > 0)[:, None], lifted, sp)


def _breath_before(fs: int, onset: float, gap: float, opts: dict,
                   rng: np.random.Generator) -> tuple[int, np.ndarray] | None:
    """A breath before a phrase when the silence before it is long enough (>= 0.45 s):
    (start sample, mono samples) at `fs`, or None."""
    if opts["breath_db"] is None or gap < 0.45:
        return None
    seconds = min(0.35, gap - 0.1)
    end = onset - 0.06
    start = int(round((end - seconds) * fs))
    if start < 0:
        return None
    return start, _breath(fs, seconds, rng) * SYLLABLE_RMS * 10 ** (opts["breath_db"] / 20)
