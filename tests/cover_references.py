"""Reference recordings whose tempo, key, chords, form and melody we know: songs rendered by the
project's own engines (the arranger's band, the singer's lead), mixed, with the score as the truth.

Used by the cover tests (tests/test_cover_*.py) and bench/cover.py. Each reference is rendered
once per process and kept on disk under a folder the caller gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from millamusic.compose import compose
from millamusic.core.audio import Audio
from millamusic.engines.arranger import Arranger
from millamusic.engines.base import BackingRequest
from millamusic.engines.singer import Singer
from millamusic.mix import mix
from millamusic.music.score import Score
from millamusic.pipeline.stages import vocal_request_for
from millamusic.release.pcm import write_wav
from millamusic.spec.song import load_song

RATE = 44100

WORDS = ["Morning light is falling on the town", "I keep walking and I won't look down",
         "Every window holds a little sun", "Every road I take is not the one",
         "Open up the door and let me in", "Sing it loud and let the night begin",
         "Rivers run and mountains turn to sand", "I will find you if you take my hand"]


@dataclass(frozen=True)
class ReferenceSong:
    """What a test reference is made of: the spec's musical fields."""

    name: str
    tempo: float
    key: str
    preset: str
    form: tuple[tuple[str, int, tuple[str, ...]], ...]  # (section name, bars, chords per bar, repeating)
    time_signature: str = "4/4"
    drums: bool = True
    sung: tuple[str, ...] = ("Verse", "Chorus")  # section names that get lyrics
    seed: int = 3


@dataclass
class Reference:
    song: ReferenceSong
    score: Score
    mix_path: Path  # the full mix, 24-bit WAV
    vocal_path: Path  # the sung lead alone (an a-cappella stem)
    mix: np.ndarray = field(repr=False)  # (2, n) float32
    vocals: np.ndarray = field(repr=False)

    @property
    def seconds_per_bar(self) -> float:
        return self.score.beats_per_bar * self.score.seconds_per_beat

    @property
    def bar_starts(self) -> np.ndarray:
        return np.array([bar.start_beat * self.score.seconds_per_beat for bar in self.score.bars])

    @property
    def section_starts_bars(self) -> list[int]:
        return [section.start_bar for section in self.score.sections]

    @property
    def note_truth(self) -> tuple[np.ndarray, np.ndarray]:
        """(intervals (k, 2) seconds, pitches Hz) of the sung notes, melisma notes merged into
        their syllable's note where the pitch stays."""
        spb = self.score.seconds_per_beat
        intervals, pitches = [], []
        for note in sorted(self.score.notes, key=lambda n: n.start_beat):
            start, end = note.start_beat * spb, (note.start_beat + note.length_beats) * spb
            intervals.append((start, end))
            pitches.append(440.0 * 2 ** ((note.pitch - 69) / 12))
        return np.array(intervals), np.array(pitches)


def _spec_text(song: ReferenceSong, lyrics_file: str) -> str:
    structure = "\n".join(f"  - {{section: {name}, bars: {bars}, chords: [{', '.join(chords)}]}}"
                          for name, bars, chords in song.form)
    return (f"title: {song.name}\nartist: Test Band\ngenre: pop\ntempo: {song.tempo:g}\nkey: {song.key}\n"
            f"time_signature: {song.time_signature}\nseed: {song.seed}\nstructure:\n{structure}\n"
            f"lyrics: {lyrics_file}\nengines:\n  backing: arranger\n  backing_options: {{preset: {song.preset}}}\n")


def _lyrics_text(song: ReferenceSong) -> str:
    blocks, used = [], 0
    for name in dict.fromkeys(name for name, _, _ in song.form):
        if name.split()[0] not in song.sung:
            continue
        bars = next(b for n, b, _ in song.form if n == name)
        lines = max(1, bars // 2)
        blocks.append(f"[{name}]\n" + "\n".join(WORDS[(used + i) % len(WORDS)] for i in range(lines)))
        used += lines
    return "\n\n".join(blocks) + "\n"


_BUILT: dict[tuple, Reference] = {}


def build_reference(song: ReferenceSong, folder: Path) -> Reference:
    """Render `song` (arranger + singer, mixed by the project's mixer) into `folder`; cached per process."""
    key = (song, str(folder))
    if key in _BUILT:
        return _BUILT[key]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lyrics.txt").write_text(_lyrics_text(song))
    spec_path = folder / "truth.yaml"
    spec_path.write_text(_spec_text(song, "lyrics.txt"))
    loaded = load_song(spec_path)
    score = compose(loaded)
    backing = Arranger().render(score, BackingRequest(seed=song.seed, genre="pop", style=(), sample_rate=RATE,
                                                      options={"preset": song.preset}))
    stems = {name: audio for name, audio in backing.stems.items() if song.drums or name != "drums"}
    vocals = Singer().render(score, vocal_request_for(loaded)).stems
    stems.update(vocals)
    mixed, _ = mix(stems)
    peak = float(np.max(np.abs(mixed.samples)))
    mixed = Audio((mixed.samples * (0.9 / peak)).astype(np.float32), RATE)
    lead = vocals["lead"]
    mix_path, vocal_path = folder / "reference.wav", folder / "vocals.wav"
    write_wav(mixed, mix_path, bit_depth=24)
    write_wav(lead, vocal_path, bit_depth=24)
    built = Reference(song, score, mix_path, vocal_path, mixed.samples, lead.samples)
    _BUILT[key] = built
    return built


def _form(*sections: tuple[str, int, tuple[str, ...]]) -> tuple:
    return tuple(sections)


VERSE_AM = ("Am", "F", "C", "G")
CHORUS_AM = ("F", "G", "C", "Am")

# Several tempos 70-160 BPM, 4/4 and 3/4, major and minor, with and without drums; every one sung.
REFERENCES = {
    "pop-118-am": ReferenceSong(
        "Pop 118", 118, "A minor", "synth-pop",
        _form(("Intro", 4, VERSE_AM), ("Verse", 8, VERSE_AM), ("Chorus", 8, CHORUS_AM),
              ("Verse", 8, VERSE_AM), ("Chorus", 8, CHORUS_AM), ("Outro", 4, ("F", "G", "Am", "Am")))),
    "ballad-72-c": ReferenceSong(
        "Ballad 72", 72, "C major", "piano-ballad",
        _form(("Intro", 2, ("C", "G")), ("Verse", 4, ("C", "Am", "F", "G")), ("Chorus", 4, ("F", "G", "C", "C")),
              ("Verse", 4, ("C", "Am", "F", "G")), ("Chorus", 4, ("F", "G", "C", "C")), ("Outro", 2, ("F", "C")))),
    "rock-150-em": ReferenceSong(
        "Rock 150", 150, "E minor", "driving-rock",
        _form(("Intro", 4, ("Em", "C", "G", "D")), ("Verse", 8, ("Em", "C", "G", "D")),
              ("Chorus", 8, ("C", "D", "G", "Em")), ("Verse", 8, ("Em", "C", "G", "D")),
              ("Chorus", 8, ("C", "D", "G", "Em")), ("Outro", 4, ("C", "D", "Em", "Em")))),
    "waltz-96-g": ReferenceSong(
        "Waltz 96", 96, "G major", "synth-pop", time_signature="3/4",
        form=_form(("Intro", 4, ("G", "Em", "C", "D")), ("Verse", 8, ("G", "Em", "C", "D")),
                   ("Chorus", 8, ("C", "D", "G", "G")), ("Verse", 8, ("G", "Em", "C", "D")),
                   ("Chorus", 8, ("C", "D", "G", "G")))),
    "acoustic-100-dm": ReferenceSong(
        "Acoustic 100", 100, "D minor", "power-ballad", drums=False,
        form=_form(("Intro", 4, ("Dm", "Bb", "F", "C")), ("Verse", 8, ("Dm", "Bb", "F", "C")),
                   ("Chorus", 8, ("Bb", "C", "F", "Dm")), ("Verse", 8, ("Dm", "Bb", "F", "C")),
                   ("Chorus", 8, ("Bb", "C", "F", "Dm")))),
    "rock-160-a": ReferenceSong(
        "Rock 160", 160, "A major", "driving-rock",
        _form(("Intro", 4, ("A", "E", "D", "E")), ("Verse", 8, ("A", "E", "D", "E")),
              ("Chorus", 8, ("D", "E", "A", "F#m")), ("Verse", 8, ("A", "E", "D", "E")),
              ("Chorus", 8, ("D", "E", "A", "F#m")), ("Outro", 4, ("D", "E", "A", "A")))),
}


# --------------------------------------------------------------------------- scores


def _mir_chord(symbol: str) -> str:
    """'Am' -> 'A:min', 'F#' -> 'F#:maj', 'N' -> 'N' (mir_eval's chord syntax)."""
    from millamusic.music.theory import parse_chord

    if symbol == "N":
        return "N"
    chord = parse_chord(symbol)
    root = symbol[:2] if len(symbol) > 1 and symbol[1] in "#b" else symbol[0]
    return f"{root}:{'min' if chord.is_minor else 'maj'}"


@dataclass(frozen=True)
class CoverScores:
    tempo_error_percent: float
    downbeat_error_ms: float
    meter_right: bool
    key_right: bool
    chord_root: float  # mir_eval, duration-weighted over the truth's bars
    chord_majmin: float
    boundary_hit_rate: float  # truth section boundaries with a drafted one within one bar
    melody_f1: float | None  # mir_eval transcription F1 of the analysed melody (50 ms, 50 cents)


def score_analysis(reference: Reference, analysis) -> CoverScores:
    """How close `analysis` (a millamusic.cover.analysis.ReferenceAnalysis) is to the truth."""
    import mir_eval

    score, grid = reference.score, analysis.grid
    spans = score.chord_spans()
    ref_intervals = [(start, end) for _, _, start, end in spans]
    ref_labels = [_mir_chord(symbol) for _, symbol, _, _ in spans]
    bar_seconds = grid.beats_per_bar * grid.seconds_per_beat
    est_intervals, est_labels = [], []
    for chords, start in zip(analysis.bars, grid.bar_starts(len(analysis.bars))):
        part = bar_seconds / len(chords)
        for i, symbol in enumerate(chords):
            est_intervals.append((start + i * part, start + (i + 1) * part))
            est_labels.append(_mir_chord(symbol))
    # mir_eval.chord.evaluate's own steps, without its segmentation scores: the estimate is cut to
    # the truth's span (no-chord outside it), both are merged, and agreement is weighted by time.
    ref_intervals = np.round(np.array(ref_intervals), 6)
    est_i, est_l = mir_eval.util.adjust_intervals(np.round(np.array(est_intervals), 6), est_labels,
                                                  ref_intervals.min(), ref_intervals.max(), "N", "N")
    merged, ref_l, est_l = mir_eval.util.merge_labeled_intervals(ref_intervals, ref_labels, est_i, est_l)
    durations = mir_eval.util.intervals_to_durations(merged)
    chords = {measure: mir_eval.chord.weighted_accuracy(getattr(mir_eval.chord, measure)(ref_l, est_l), durations)
              for measure in ("root", "majmin")}

    truth_bounds = reference.bar_starts[[s.start_bar for s in score.sections[1:]]]
    est_bounds = grid.bar_starts(len(analysis.bars))[[s.start_bar for s in analysis.sections[1:]]]
    hits = [np.any(np.abs(est_bounds - t) <= reference.seconds_per_bar * 1.01) for t in truth_bounds]

    f1 = None
    if analysis.melody is not None and analysis.melody.notes:
        ref_notes, ref_hz = reference.note_truth
        est = np.array([(n.start_seconds, n.end_seconds) for n in analysis.melody.notes])
        est_hz = np.array([440.0 * 2 ** ((n.midi - 69) / 12) for n in analysis.melody.notes])
        _, _, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
            ref_notes, ref_hz, est, est_hz, onset_tolerance=0.05, pitch_tolerance=50.0, offset_ratio=None)
    return CoverScores(
        tempo_error_percent=100.0 * (grid.bpm / score.tempo_bpm - 1.0),
        downbeat_error_ms=1000.0 * grid.first_downbeat_seconds,  # the truth's bar 1 starts at 0
        meter_right=grid.beats_per_bar == score.beats_per_bar,
        key_right=analysis.key.name == score.key,
        chord_root=float(chords["root"]), chord_majmin=float(chords["majmin"]),
        boundary_hit_rate=float(np.mean(hits)) if hits else 1.0,
        melody_f1=None if f1 is None else float(f1),
    )
