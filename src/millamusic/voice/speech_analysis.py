"""The singer's speech source, analysed: WORLD features of one spoken line, and where each sung
syllable comes from in it.

A lyric line spoken by espeak-ng (or a Piper voice) is analysed with WORLD (DIO + StoneMask f0,
CheapTrick envelope, D4C aperiodicity) at the speech's own rate, 5 ms frames; its phonemes are
given to words by event order, and every sung syllable gets frame ranges into the analysis:
onset consonants, the vowel's head, steady core and tail, and the coda. Frame arrays are indexed
by 5 ms WORLD frames; `sp` and `ap` are (frames, fft_size // 2 + 1) float64 as pyworld returns them.

What the syllables need before synthesis (phones per word, each frame's level) is small: a
`SpokenLine`, kept in the singer's line cache (`line_to_file`, `line_from_file`). The full
`Analysis` (megabytes per line) is made only for a line whose phrases must be sung.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyworld

from millamusic.music import espeak
from millamusic.voice.syllables import Group, Phone, phones_per_word
from millamusic.voice.world import bridge_f0

FRAME_S = 0.005  # WORLD frame period
FRAME_MS = FRAME_S * 1000.0


@dataclass
class Source:
    """Where one syllable comes from in a spoken line: frame ranges into the line's analysis."""

    line: str  # the spoken line's key (SpokenLine.key): which Analysis the frames index
    onset: tuple[int, int]  # consonants sung before the beat
    head: tuple[int, int]  # vowel start up to the steady core (natural speed)
    core: tuple[int, int]  # the steady part of the vowel: stretched to fill the note
    tail: tuple[int, int]  # rest of the nucleus after the core (natural speed)
    coda: tuple[int, int]  # consonants after the vowel, sung at the end of the note


@dataclass
class Analysis:
    """WORLD features of one spoken line plus its phones per word."""

    f0: np.ndarray  # (frames,) Hz, 0 where unvoiced
    sp: np.ndarray  # (frames, bins) spectral envelope (power)
    ap: np.ndarray  # (frames, bins) aperiodicity 0..1
    vowel: np.ndarray  # (frames,) bool: frame lies inside a vowel phone
    ap_voiced: np.ndarray  # (bins,) median aperiodicity of voiced vowel frames
    words: list[list[Phone]] = field(default_factory=list)  # phones per spoken word

    @property
    def level_db(self) -> np.ndarray:
        """(frames,) envelope power in dB."""
        return 10 * np.log10(self.sp.sum(axis=1) + 1e-30)


@dataclass(frozen=True)
class SpokenLine:
    """What a line's sung syllables take from it before synthesis: phones per word and levels."""

    key: str  # content hash of everything that determines the line's analysis
    words: list[list[Phone]]  # phones per spoken word (frames on the 5 ms grid)
    level_db: np.ndarray  # (frames,) envelope power in dB, as Analysis.level_db

    @classmethod
    def of(cls, key: str, analysis: Analysis) -> SpokenLine:
        return cls(key, analysis.words, analysis.level_db)


def line_to_file(line: SpokenLine, handle) -> None:
    """Write `line` as .npz into an open binary file: levels as float64, phones as JSON."""
    phones = [[[ph.ipa, int(ph.start), int(ph.end)] for ph in word] for word in line.words]
    np.savez(handle, level_db=np.asarray(line.level_db, dtype=np.float64), phones=np.array(json.dumps(phones)))


def line_from_file(path: Path, key: str) -> SpokenLine:
    """A SpokenLine written by `line_to_file`. Raises ValueError (or OSError) for a damaged file."""
    with np.load(path, allow_pickle=False) as data:
        level_db, phones = data["level_db"], json.loads(str(data["phones"]))
    if level_db.dtype != np.float64 or level_db.ndim != 1:
        raise ValueError(f"{path}: level_db is {level_db.dtype} {level_db.shape}, not float64 (frames,)")
    words = [[Phone(str(ipa), int(start), int(end)) for ipa, start, end in word] for word in phones]
    if any(not 0 <= ph.start <= ph.end <= len(level_db) for word in words for ph in word):
        raise ValueError(f"{path}: a phone lies outside the line's {len(level_db)} frames")
    return SpokenLine(key, words, level_db)


def analyse_line(utt: espeak.Utterance, spans: list[tuple[int, int]], f0_range: tuple[float, float]) -> Analysis:
    """WORLD analysis of a spoken line; every word gets its phones by event order.

    No randomness and no shared state (pyworld releases the GIL): lines may be analysed
    side by side on threads.
    """

    x = utt.samples.astype(np.float64)
    if len(x) < utt.sample_rate // 10:
        x = np.concatenate([x, np.zeros(utt.sample_rate // 10 - len(x))])
    fs = utt.sample_rate
    f0, t = pyworld.dio(x, fs, f0_floor=f0_range[0], f0_ceil=f0_range[1], frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, t, fs)
    # CheapTrick's window follows f0; bridging unvoiced gaps keeps vowel edges consistent
    fft_size = pyworld.get_cheaptrick_fft_size(fs, f0_range[0])  # sp and ap must share it
    sp = _fill_valleys(pyworld.cheaptrick(x, bridge_f0(f0), t, fs, f0_floor=f0_range[0], fft_size=fft_size), fs)
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
    return Analysis(f0, sp, ap, vowel, ap_voiced, words_phones)


def _fill_valleys(sp: np.ndarray, fs: int) -> np.ndarray:
    """Limit how deep the envelope falls between formants. Shape (frames, bins).

    espeak's formant synthesiser leaves valleys 60-70 dB deep (an 'ee' between F1 and
    F2); a human voice has 30-40. The floor is 35 dB under the frame's peak at 500 Hz
    and falls 12 dB per octave above, so the natural high-frequency roll-off stays.
    """
    freqs = np.linspace(0.0, fs / 2, sp.shape[1])
    floor_db = -35.0 - 12.0 * np.log2(np.maximum(freqs, 500.0) / 500.0)
    return np.maximum(sp, sp.max(axis=1, keepdims=True) * 10 ** (floor_db / 10)[None, :])


def source_of(group: Group, phones: list[Phone], line: SpokenLine) -> Source:
    """Frame ranges of a syllable group; the core is the steady part of the main vowel."""
    main = phones[group.main]
    length = main.end - main.start
    if main.vowel_letters >= 2:  # a diphthong is held on its first target, as singers do
        core0 = main.start + int(np.floor(0.15 * length))
        core1 = main.start + int(np.ceil(0.45 * length))
    else:  # the loudest half between 10 % and 90 %: spoken vowels often fade at the end
        width = max(int(round(0.5 * length)), 1)
        first, last = main.start + int(0.1 * length), main.start + int(0.4 * length)
        level = line.level_db[main.start : main.end]
        sums = np.convolve(level, np.ones(width), mode="valid")[first - main.start : last - main.start + 1]
        core0 = first + int(np.argmax(sums)) if len(sums) else main.start
        core1 = core0 + width
    core1 = min(max(core1, core0 + 1), main.end)
    core0 = min(core0, core1 - 1)
    n_start, n_end = phones[group.n0].start, phones[group.n1 - 1].end
    onset_start = phones[group.o].start if group.o < group.n0 else n_start
    coda_end = phones[group.c - 1].end if group.c > group.n1 else n_end
    return Source(
        line.key, (onset_start, n_start), (n_start, core0), (core0, core1), (core1, n_end), (n_end, coda_end)
    )
