"""The embedded singer measured from its audio: pitch, vowel timing, intelligibility.

Everything here is measured on the rendered lead stem, never read from what the engine
says it did (the engine's syllable starts are used only to cut away the *next*
syllable's consonants from a note's pitch window). Default options throughout: vibrato,
portamento and drift are part of the sound being measured.

* Pitch and voicing: librosa's pYIN at 22050 Hz, 512-sample frames, ~5 ms hop. pYIN's f0
  lies on a 10-cent grid, so a "0 cents" median means within +-5 cents.
* Vowel timing: where pYIN's voicing starts after an unvoiced onset (method and its
  calibration below, in `vowel_onsets` and `test_onset_detector_is_calibrated`).
* Intelligibility: pocketsphinx (CMU's HMM recogniser with its bundled US-English model)
  in a machine version of the Modified Rhyme Test (see `RhymeTest`).

The engine is called in one place, `sing`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from millamusic.compose import compose
from millamusic.engines.base import VocalRequest, VocalResult
from millamusic.engines.singer import Singer
from millamusic.music import espeak
from millamusic.music.lyrics import syllables
from millamusic.music.score import Bar, LyricLine, Note, Score, Section, Word
from millamusic.spec.song import load_song

pytestmark = pytest.mark.slow  # renders and measures sung lines (setup 7-30 s, the calibration 2.6 s)

RATE = 44100
PYIN_RATE = 22050
PYIN_FRAME = 512  # 23 ms: a 1024 frame starts voicing 6-21 ms early (see the calibration test)
PYIN_HOP = 110  # ~5 ms
HOP_S = PYIN_HOP / PYIN_RATE
TEMPO = 120.0  # beats per minute of the scores built here: a beat is 0.5 s
SONGS = Path(__file__).resolve().parents[1] / "songs"


# --- the engine ------------------------------------------------------------------------------
def sing(score: Score, **options) -> tuple[np.ndarray, VocalResult]:
    """The one call into the engine: (mono lead at RATE as float64, the result)."""
    request = VocalRequest(seed=7, language="en-us", voice="female", sample_rate=RATE, options=options)
    result = Singer().render(score, request)
    return result.stems["lead"].samples.mean(axis=0).astype(np.float64), result


# --- scores ------------------------------------------------------------------------------------
def build_score(lines: list[list[tuple[str, float, float, int]]]) -> Score:
    """Score at TEMPO from lines of (syllable, start_s, length_s, midi); a word's later
    syllables are written '-syl' (joined to the word before), a melisma note ''."""
    spb = 60.0 / TEMPO
    words, notes, lyric_lines = [], [], []
    last = 0.0
    for line_index, line in enumerate(lines):
        grouped: list[list[tuple]] = []
        for note in line:
            if note[0] == "" or note[0].startswith("-"):
                grouped[-1].append(note)
            else:
                grouped.append([note])
        texts = []
        for group in grouped:
            parts = tuple(n[0].lstrip("-") for n in group if n[0])
            texts.append("".join(parts))
            words.append(Word(texts[-1], line_index, parts))
            for syllable, start, length, midi in group:
                notes.append(Note(start / spb, length / spb, midi, syllable.lstrip("-"), len(words) - 1, line_index))
                last = max(last, start + length)
        lyric_lines.append(LyricLine(0, " ".join(texts)))
    n_bars = int(np.ceil(last / spb / 4)) + 1
    return Score(
        title="measured", tempo_bpm=TEMPO, beats_per_bar=4, beat_unit=4, key="C major", tonic_pc=0, mode="major",
        language="en-us", seed=1, sections=(Section("Verse 1", "verse", 0, n_bars),),
        bars=tuple(Bar(i, 0, 4.0 * i, 4, ("C",)) for i in range(n_bars)), lines=tuple(lyric_lines),
        words=tuple(words), notes=tuple(notes), melody_source="composed",
    )  # fmt: skip


def phrase(words: list[tuple[str, list[tuple[float, int]]]], start: float) -> list[tuple[str, float, float, int]]:
    """Notes of one line from (word, [(seconds, midi) per syllable]) played back to back."""
    out, t = [], start
    for word, sung in words:
        parts = syllables(word) if len(sung) > 1 else (word,)
        assert len(parts) == len(sung), (word, parts)
        for k, (part, (seconds, midi)) in enumerate(zip(parts, sung)):
            out.append((part if k == 0 else "-" + part, t, seconds, midi))
            t += seconds
    return out


# Three registers of the default (female) voice; note lengths 0.25-1.5 s.
REGISTERS = {
    "low A3-C4": [("take", [(0.5, 57)]), ("the", [(0.25, 59)]), ("time", [(0.5, 60)]), ("to", [(0.25, 59)]),
                  ("feel", [(1.0, 57)]), ("the", [(0.25, 59)]), ("cold", [(0.5, 60)]), ("sea", [(1.5, 57)])],
    "middle D4-A4": [("sing", [(0.5, 62)]), ("a", [(0.25, 64)]), ("happy", [(0.25, 65), (0.5, 67)]),
                     ("song", [(0.5, 69)]), ("for", [(0.25, 67)]), ("me", [(0.5, 65)]),
                     ("tonight", [(0.25, 64), (1.5, 62)])],
    "high C5-E5": [("call", [(0.5, 72)]), ("me", [(0.25, 74)]), ("when", [(0.25, 76)]), ("the", [(0.25, 74)]),
                   ("sun", [(0.5, 72)]), ("comes", [(0.5, 74)]), ("up", [(0.25, 76)]), ("so", [(0.5, 74)]),
                   ("high", [(1.5, 72)])],
}  # fmt: skip

# Lyric lines of the example songs, sung to their composed melodies (all words in CMUdict).
SONG_LINES = [("set-me-spinning", i) for i in (1, 2, 3, 6, 7, 8, 9)] + [
    ("northern-static", i) for i in (0, 1, 2, 3, 6, 7, 8, 9)
]


def register_score() -> Score:
    lines, t = [], 0.5
    for words in REGISTERS.values():
        lines.append(phrase(words, t))
        t = lines[-1][-1][1] + lines[-1][-1][2] + 1.5
    return build_score(lines)


def song_lines_score(gap_s: float = 2.0) -> tuple[Score, list[tuple[str, float, float]]]:
    """The SONG_LINES with their composed rhythm and pitches, each alone between rests.

    Returns the score and (text, first note start, last note end) per line, seconds.
    """
    lines, spans, t = [], [], 0.5
    composed = {}
    for name, index in SONG_LINES:
        if name not in composed:
            composed[name] = compose(load_song(SONGS / f"{name}.yaml"))
        score = composed[name]
        notes = [n for n in score.notes if n.line_index == index]
        zero = score.beat_to_seconds(notes[0].start_beat)
        line, previous_word = [], None
        for n in notes:
            joined = n.word_index == previous_word and n.syllable
            text = ("-" + n.syllable) if joined else n.syllable
            start = t + score.beat_to_seconds(n.start_beat) - zero
            line.append((text, start, score.beat_to_seconds(n.length_beats), n.pitch))
            previous_word = n.word_index
        lines.append(line)
        end = line[-1][1] + line[-1][2]
        spans.append((score.lines[index].text, t, end))
        t = end + gap_s
    return build_score(lines), spans


# --- measuring -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Track:
    f0: np.ndarray  # (frames,) Hz, nan where unvoiced
    voiced: np.ndarray  # (frames,) bool
    times: np.ndarray  # (frames,) seconds into the song


def pyin_track(mono: np.ndarray, lowest_midi: int, highest_midi: int, start_s: float = 0.0,
               end_s: float | None = None) -> Track:
    """pYIN over [start_s, end_s) of a mono signal at RATE; search range a fifth past the notes."""
    import librosa
    import soxr

    a = int(start_s * RATE)
    b = len(mono) if end_s is None else int(end_s * RATE)
    x = soxr.resample(mono[a:b], RATE, PYIN_RATE)
    f0, voiced, _ = librosa.pyin(x, fmin=librosa.midi_to_hz(lowest_midi - 7), fmax=librosa.midi_to_hz(highest_midi + 7),
                                 sr=PYIN_RATE, frame_length=PYIN_FRAME, hop_length=PYIN_HOP)
    return Track(f0, voiced, start_s + np.arange(len(f0)) * HOP_S)


def note_spans(score: Score) -> list[tuple[float, float]]:
    return [(score.beat_to_seconds(n.start_beat), score.beat_to_seconds(n.start_beat + n.length_beats))
            for n in score.notes]


@dataclass(frozen=True)
class NotePitch:
    note: Note
    sung_s: float  # from the note's start to the next syllable's first sound (or the note's end)
    voiced_s: float  # pYIN-voiced time in that span
    cents: np.ndarray  # error of each voiced frame in the pitch window

    @property
    def voiced(self) -> bool:
        """The note has its own sound (>= 30 ms) and voice in at least 40 ms or half of it."""
        return self.sung_s >= 0.03 and self.voiced_s >= min(0.04, 0.5 * self.sung_s)

    @property
    def voiced_fraction(self) -> float:
        return self.voiced_s / self.sung_s if self.sung_s > 0 else 0.0


def note_pitches(score: Score, result: VocalResult, track: Track) -> list[NotePitch]:
    """Per note: voicing from its start to the next syllable's first sound (that syllable's
    onset consonants belong to the next note) or its end; pitch over the voiced frames of
    that span less its first 60 ms (portamento) and last 20 ms."""
    onsets = sorted(s.start_seconds for s in result.syllables)
    out = []
    for note, (start, end) in zip(score.notes, note_spans(score)):
        following = [t for t in onsets if t > start + 0.01]
        stop = min(end, following[0] if following else end)
        span = (track.times >= start) & (track.times < stop)
        window = (track.times >= start + 0.06) & (track.times < stop - 0.02) & track.voiced
        cents = 1200 * np.log2(track.f0[window] / (440.0 * 2 ** ((note.pitch - 69) / 12)))
        voiced_s = float((span & track.voiced).sum() * HOP_S)
        out.append(NotePitch(note, max(stop - start, 0.0), voiced_s, cents))
    return out


_VOWELS = set("aeiouyæɑɐɒɔəɘɚɛɜɝɞɤɨɪɯɵøœɶʉʊʌʏᵻ")
_UNVOICED = set("ptkfθsʃhçxʔ")  # tʃ is t + ʃ


@cache
def word_onset(word: str) -> str:
    """'unvoiced', 'vowel' or 'voiced': what comes before the first vowel of `word` in espeak."""
    ipa = re.sub("[ˈˌːʰ]", "", espeak.text_to_phonemes(word, "en-us"))
    lead = ""
    for ch in ipa:
        if ch in _VOWELS:
            break
        lead += ch
    if not lead:
        return "vowel"
    return "unvoiced" if all(ch in _UNVOICED for ch in lead) else "voiced"


def vowel_onsets(score: Score, track: Track, rest_s: float = 0.15) -> list[tuple[str, float, float]]:
    """(word, note start, measured vowel onset or nan) for every note whose vowel onset can be
    seen in the audio.

    Method: a syllable's vowel onset is visible where voicing begins, so only two kinds of
    notes are measured: the first syllable of a word whose espeak phonemes before the
    vowel are all unvoiced (p t k f θ s ʃ h tʃ: "take", "spin", "shake"), and vowel-initial
    words after at least `rest_s` of rest. Clusters with a voiced consonant ("street",
    "play") and voiced onsets ("me") are skipped: there voicing starts before the vowel.
    In [start - 250 ms, start + 250 ms] every unvoiced -> voiced change of the pYIN flag
    that is followed by >= 30 ms of voicing is a candidate; the one nearest the note start
    is the onset (its first voiced frame). No candidate: nan (counted as a miss).
    pYIN with 512-sample frames and a ~5 ms hop finds the start of a harmonic tone after
    a noise burst within 7 ms (test_onset_detector_is_calibrated).
    """
    out = []
    spans = note_spans(score)
    previous_end = -np.inf
    for k, (note, (start, end)) in enumerate(zip(score.notes, spans)):
        first_syllable = k == 0 or score.notes[k - 1].word_index != note.word_index
        rest = start - previous_end
        previous_end = end
        if not first_syllable or not note.syllable:
            continue
        word = score.words[note.word_index].text
        kind = word_onset(word)
        if not (kind == "unvoiced" or (kind == "vowel" and rest >= rest_s)):
            continue
        frames = np.flatnonzero((track.times >= start - 0.25) & (track.times <= start + 0.25))
        if len(frames) < 10:
            continue
        v = track.voiced[frames]
        hold = int(np.ceil(0.03 / HOP_S))
        rises = [i for i in range(1, len(frames) - hold) if v[i] and not v[i - 1] and v[i : i + hold].all()]
        onset = min((track.times[frames[i]] for i in rises), key=lambda t: abs(t - start), default=np.nan)
        out.append((word, start, float(onset)))
    return out


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registers():
    score = register_score()
    mono, result = sing(score)
    pitches = [n.pitch for n in score.notes]
    return score, result, pyin_track(mono, min(pitches), max(pitches))


def artist_singing() -> dict:
    """The example artist's singing options (formants, breath, vibrato), without the extra stems."""
    from millamusic.spec.artist import load_artist

    singing = load_artist(SONGS.parent / "artists" / "milla-virta.yaml").profile.singing
    return {k: v for k, v in singing.items() if k not in ("double_track", "harmony")}


@pytest.fixture(scope="module")
def song_lines():
    """The example-song lines sung in the artist's voice (her profile's options), plus one
    pYIN track per line (silence is not analysed)."""
    score, spans = song_lines_score()
    mono, result = sing(score, **artist_singing())
    tracks = []
    for k, (_, start, end) in enumerate(spans):
        pitches = [n.pitch for n in score.notes if n.line_index == k]
        tracks.append(pyin_track(mono, min(pitches), max(pitches), start - 0.4, end + 0.2))
    return score, spans, mono, result, tracks


# --- pitch -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", range(len(REGISTERS)), ids=list(REGISTERS))
def test_pitch_follows_the_notes_in_every_register(registers, line):
    score, result, track = registers
    measured = [p for p in note_pitches(score, result, track) if p.note.line_index == line]
    silent = [p.note.syllable for p in measured if not p.voiced]
    assert len(silent) <= 0.1 * len(measured), f"notes without voice in their middle: {silent}"
    frames = np.concatenate([p.cents for p in measured])
    median = float(np.median(np.abs(frames)))
    per_note = [(p.note.syllable, round(float(np.median(p.cents)), 1)) for p in measured if len(p.cents)]
    assert median <= 15.0, f"median |error| {median:.1f} cents over {len(frames)} frames; per note {per_note}"
    # vibrato is part of the sound, but a pop vibrato stays within ~40 cents: the default
    # (30 cents, after 0.25 s) gives a 90th percentile of 20-30; a 60-cent vibrato gives 50
    wide = float(np.percentile(np.abs(frames), 90))
    assert wide <= 40.0, f"90th percentile |error| {wide:.0f} cents: vibrato or wobble too wide"
    assert all(abs(c) <= 50.0 for _, c in per_note), f"a note sung off its pitch: {per_note}"


def test_song_lines_are_voiced_and_in_tune(song_lines):
    score, _, _, result, tracks = song_lines
    measured = []
    for k, track in enumerate(tracks):
        measured += [p for p in note_pitches(score, result, track) if p.note.line_index == k]
    silent = [(score.lines[p.note.line_index].text, p.note.syllable) for p in measured if not p.voiced]
    assert len(silent) <= 0.1 * len(measured), f"{len(silent)}/{len(measured)} notes unvoiced: {silent}"
    frames = np.concatenate([p.cents for p in measured if len(p.cents)])
    assert float(np.median(np.abs(frames))) <= 15.0


# --- timing -------------------------------------------------------------------------------------------
def test_onset_detector_is_calibrated():
    """A noise burst (an 's') then a harmonic tone starting at a known time, with a 5 or
    20 ms attack, at pitches across the female range, searched with the register test's
    range (A3-E5 plus a fifth): the detector finds the tone within 7 ms (the hop is 5 ms)."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(0)
    t0 = 0.5
    errors = []
    for midi in (57, 62, 67, 72, 76):
        for attack in (0.005, 0.02):
            hz = 440.0 * 2 ** ((midi - 69) / 12)
            x = np.zeros(RATE)
            a, b = int((t0 - 0.12) * RATE), int(t0 * RATE)
            hiss = sosfilt(butter(4, [3000, 8000], btype="band", fs=RATE, output="sos"), rng.standard_normal(b - a))
            x[a:b] = 0.05 * hiss / np.std(hiss)
            m = np.arange(RATE - b) / RATE
            tone = sum(0.7**k * np.sin(2 * np.pi * hz * (k + 1) * m) for k in range(12))
            x[b:] = 0.2 * np.minimum(m / attack, 1) * tone
            track = pyin_track(x, 57, 76)
            errors.append(1000 * (track.times[np.flatnonzero(track.voiced)[0]] - t0))
    assert np.max(np.abs(errors)) <= 7.0, np.round(errors, 1)


def test_vowels_start_on_the_beat(registers, song_lines):
    """Vowel onsets measured from the audio (see `vowel_onsets`) lie within 20 ms of the
    note start: median and 90th percentile."""
    score, _, track = registers
    onsets = vowel_onsets(score, track)
    line_score, _, _, _, tracks = song_lines
    for line_track in tracks:  # notes of other lines have no frames in this track: skipped
        onsets += vowel_onsets(line_score, line_track)
    errors_ms = np.array([1000 * (onset - start) for _, start, onset in onsets])
    report = {f"{w}@{s:.2f}": round(e) for (w, s, _), e in zip(onsets, errors_ms)}
    assert len(onsets) >= 30, report
    misses = np.isnan(errors_ms)
    assert misses.sum() <= 0.05 * len(onsets), f"no vowel onset found: {report}"
    size = np.abs(errors_ms[~misses])
    assert np.median(size) <= 20.0, report
    assert np.percentile(size, 90) <= 20.0, report


# --- intelligibility ------------------------------------------------------------------------------------
def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("’", "'"))


def word_accuracy(reference: str, hypothesis: str) -> float:
    """1 - WER: (substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        new = [i]
        for j, h in enumerate(hyp, 1):
            new.append(min(row[j] + 1, new[j - 1] + 1, row[j - 1] + (r != h)))
        row = new
    return 1.0 - row[-1] / len(ref)


class RhymeTest:
    """pocketsphinx constrained to a Modified-Rhyme-Test grammar, one per lyric line.

    Open-vocabulary pocketsphinx is no judge of espeak: its US-English model recognises
    ~10 % of the words of espeak's *spoken* lines, and ~15 % with the vocabulary cut to
    1,400 words (lyrics + the 1,000 most frequent words + neighbours). So each line gets a
    grammar: its words in order, each word slot open to the word and its 5 most frequent
    (by the bundled LM's unigram) phonetic neighbours from CMUdict: words one phone away
    (substituted, inserted or deleted), homophones excluded ('set' -> get, said, says,
    let, yet). The recogniser must hear which of 6 similar words was sung in every slot,
    as a listener does in the rhyme test; chance is ~1/6 per word and a line it cannot fit
    at all scores 0.

    The listener's front end puts every recording on one monotone 180 Hz voice with
    WORLD, keeping spectral envelope and aperiodicity: pocketsphinx's model was trained on
    speech pitch and fails on high voices whatever they say (espeak's spoken lines moved
    to 450 Hz fall from ~72 % to ~28 % word accuracy; the sung lines at their real pitch,
    350-660 Hz, score ~6 %). English words do not live in f0; they live in the envelope.
    """

    NEIGHBOURS = 5
    LISTEN_F0 = 180.0
    RATE = 16000

    def __init__(self) -> None:
        from pocketsphinx import Decoder, get_model_path

        self.decoder = Decoder(loglevel="FATAL")
        lm = self.decoder.get_lm()
        self.pron: dict[str, tuple[str, ...]] = {}
        with open(get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as f:
            for line in f:
                word, *phones = line.split()
                if "(" not in word:
                    self.pron[word] = tuple(phones)
        self.logp = {w: lm.prob([w]) for w in self.pron}
        self.index: dict[tuple, set[str]] = defaultdict(set)
        for word, phones in self.pron.items():
            if self.logp[word] > -5e8:  # in the language model: it has a frequency
                for key in self._keys(phones):
                    self.index[key].add(word)

    @staticmethod
    def _keys(phones: tuple[str, ...]) -> set[tuple[str, ...]]:
        """Words one substitution, insertion or deletion apart share a key (a few that are
        two apart, by deletions at different places, do too)."""
        subs = {phones[:i] + ("*",) + phones[i + 1 :] for i in range(len(phones))}
        return subs | {phones[:i] + phones[i + 1 :] for i in range(len(phones))} | {phones}

    def alternatives(self, word: str) -> list[str]:
        near = {c for key in self._keys(self.pron[word]) for c in self.index[key]}
        near = {c for c in near if self.pron[c] != self.pron[word]}
        return [word] + sorted(near, key=lambda c: (-self.logp[c], c))[: self.NEIGHBOURS]

    def knows(self, text: str) -> bool:
        return all(w in self.pron for w in words_of(text))

    def listen(self, x: np.ndarray, rate: int) -> np.ndarray:
        """Front end: mono float at `rate` -> 16 kHz, voiced frames re-pitched to LISTEN_F0."""
        import pyworld
        import soxr

        y = soxr.resample(np.ascontiguousarray(x, dtype=np.float64), rate, self.RATE)
        f0, t = pyworld.dio(y, self.RATE, f0_floor=70.0, f0_ceil=1000.0, frame_period=5.0)
        f0 = pyworld.stonemask(y, f0, t, self.RATE)
        sp = pyworld.cheaptrick(y, f0, t, self.RATE)
        ap = pyworld.d4c(y, f0, t, self.RATE)
        return pyworld.synthesize(np.where(f0 > 0, self.LISTEN_F0, 0.0), sp, ap, self.RATE, 5.0)

    def recognise(self, text: str, y: np.ndarray) -> str:
        """The words heard in `y` (from `listen`) under the rhyme grammar of `text` ('' when nothing fits)."""
        slots = " ".join("( " + " | ".join(self.alternatives(w)) + " )" for w in words_of(text))
        self.decoder.add_jsgf_string("line", f"#JSGF V1.0;\ngrammar line;\npublic <line> = {slots};\n")
        self.decoder.activate_search("line")
        y = y / (np.max(np.abs(y)) + 1e-9) * 0.5
        pad = np.zeros(int(0.3 * self.RATE))
        pcm = (np.concatenate([pad, y, pad]) * 32767).astype(np.int16)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def rhyme_scores(spans: list[tuple[str, float, float]], mono: np.ndarray) -> tuple[dict, dict]:
    """Mean word accuracy and the hypotheses per condition over the lines in `spans`:
    spoken by espeak, sung, and two negative controls."""
    test = RhymeTest()
    texts = [text for text, _, _ in spans]
    assert all(test.knows(t) for t in texts)
    cuts = [mono[int((a - 0.5) * RATE) : int((b + 0.5) * RATE)] for _, a, b in spans]
    scores: dict[str, list[float]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    # the singer's own espeak voice, spoken: flutter-free, so it repeats exactly (the stock
    # voices carry flutter state from call to call, which moved this score by 0.02)
    from millamusic.voice.espeak_voices import VARIANTS

    espeak.install_variant(*VARIANTS["female"])
    for k, (text, cut) in enumerate(zip(texts, cuts)):
        spoken = espeak.speak(text, "en-us+milla_f", rate_wpm=140)
        sung = test.listen(cut, RATE)
        for name, (reference, audio) in {
            "spoken": (text, test.listen(spoken.samples, spoken.sample_rate)),
            "sung": (text, sung),
            "sung, reversed": (text, test.listen(cut[::-1], RATE)),
            "sung, other line's words": (texts[(k + 1) % len(texts)], sung),
        }.items():
            hyp = test.recognise(reference, audio)
            hyps[name].append(f"{reference!r} -> {hyp!r}")
            scores[name].append(word_accuracy(reference, hyp))
    return {name: float(np.mean(v)) for name, v in scores.items()}, hyps


@pytest.fixture(scope="module")
def heard(song_lines):
    _, spans, mono, _, _ = song_lines
    return rhyme_scores(spans, mono)


# Measured (15 lines, espeak-ng 1.52, pocketsphinx 5.1.1, the artist profile's voice): spoken
# 0.62, sung 0.45 (0.50 with the default options), sung reversed 0.08, sung scored as the
# next line 0.07. Chance with six choices per word is about 0.17.
def test_spoken_reference_is_recognised(heard):
    """The judge works: espeak's own speech of the lines (the singer's voice, 140 wpm) is recognised."""
    accuracy, hyps = heard
    assert accuracy["spoken"] >= 0.55, hyps["spoken"]


def test_sung_words_are_understood(heard):
    """Sung lines keep most of the words espeak's speech carries, far above the controls."""
    accuracy, hyps = heard
    assert accuracy["sung"] >= 0.40, (accuracy, hyps["sung"])
    assert accuracy["sung"] >= 0.6 * accuracy["spoken"], (accuracy, hyps["sung"])


def test_rhyme_test_can_fail(heard):
    """Negative controls: the same sung audio played backwards, or scored against the next
    line's words, must stay near chance, far under the sung score."""
    accuracy, hyps = heard
    for control in ("sung, reversed", "sung, other line's words"):
        assert accuracy[control] <= 0.2, (control, accuracy, hyps[control])
        assert accuracy[control] <= 0.4 * accuracy["sung"], (control, accuracy)
